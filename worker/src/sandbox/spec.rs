//! What one sandboxed process needs: its root filesystem, mounts, identity and command.
//!
//! The executor fills a [`Spec`]; the sandbox helper process (`kiln __sandbox SPEC`) reads it
//! and builds the container. Everything is resolved before the helper starts: paths are host
//! paths, the user is numeric, the environment is complete.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A sandboxed process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// An empty directory where the root filesystem is assembled.
    pub mountpoint: PathBuf,
    /// Mounts on top of the root filesystem, in order (parents before children).
    pub mounts: Vec<Mount>,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// Absolute, inside the container; created if missing.
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub hostname: String,
    /// Run in a new network namespace with only loopback (`--network=none`).
    pub isolate_network: bool,
    /// A new pid namespace with a fresh `/proc`. Without it (restricted pods whose `/proc` is
    /// partly masked, where a new proc mount is refused), the host's `/proc` is bound instead.
    pub process_sandbox: bool,
    /// Keep every capability (`--security=insecure`); otherwise the bounding set is Docker's
    /// default set.
    pub insecure: bool,
    /// The helper writes the reason here if it cannot set the container up.
    pub error_file: PathBuf,
    /// How many secrets the helper reads from its standard input before anything else. Their
    /// contents never appear in the spec, which is a file on disk.
    #[serde(default)]
    pub secret_count: usize,
    /// Secrets exposed as environment variables: (variable, index of the secret).
    #[serde(default)]
    pub secret_env: Vec<(String, usize)>,
    /// An empty directory on which the helper mounts the private tmpfs that holds secret
    /// files; the mount lives only in the step's mount namespace.
    #[serde(default)]
    pub secret_dir: PathBuf,
}

/// The root filesystem of a sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rootfs {
    /// An overlay: `lowers` topmost first, changes going to `upper`.
    Overlay(Overlay),
    /// A plain directory, bind-mounted (the copy fallback when overlayfs is unavailable).
    Dir(PathBuf),
}

/// An overlayfs mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlay {
    /// Read-only layers, topmost first. May be empty when `upper` is set.
    pub lowers: Vec<PathBuf>,
    /// Where writes go; `None` makes a read-only overlay.
    pub upper: Option<PathBuf>,
    /// overlayfs's work directory, on the same filesystem as `upper`.
    pub work: Option<PathBuf>,
    /// Keep overlay metadata in `user.*` xattrs (needed inside a user namespace).
    pub userxattr: bool,
}

/// One mount inside the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Absolute path inside the container.
    pub target: String,
    pub kind: MountKind,
    pub readonly: bool,
}

/// The kinds of mounts a sandbox needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountKind {
    /// Bind a host file or directory.
    Bind { source: PathBuf },
    /// A fresh tmpfs.
    Tmpfs { size: Option<u64>, mode: u32 },
    /// An overlay (a bind mount `from` a stage, or an `rw` bind whose writes are discarded).
    Overlay(Overlay),
    /// A secret file, from the stream of secrets, on the private tmpfs, bound read-only.
    Secret {
        index: usize,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

#[cfg(test)]
impl Spec {
    /// A step with an overlay root, a read-only bind and a tmpfs, for unit tests.
    pub fn sample() -> Spec {
        Spec {
            rootfs: Rootfs::Overlay(Overlay {
                lowers: vec!["/s/2".into(), "/s/1".into()],
                upper: Some("/s/up".into()),
                work: Some("/s/work".into()),
                userxattr: true,
            }),
            mountpoint: "/m".into(),
            mounts: vec![
                Mount {
                    target: "/etc/hosts".into(),
                    kind: MountKind::Bind {
                        source: "/tmp/hosts".into(),
                    },
                    readonly: true,
                },
                Mount {
                    target: "/cache".into(),
                    kind: MountKind::Tmpfs {
                        size: Some(1 << 20),
                        mode: 0o755,
                    },
                    readonly: false,
                },
            ],
            args: vec!["sh".into()],
            env: vec![],
            cwd: "/src".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: "buildkitsandbox".into(),
            isolate_network: true,
            process_sandbox: true,
            insecure: false,
            error_file: "/tmp/err".into(),
            secret_count: 0,
            secret_env: vec![],
            secret_dir: "/tmp/secrets".into(),
        }
    }
}
