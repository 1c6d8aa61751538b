//! Assembling a container's filesystem: the root, `/proc`, `/dev`, `/sys`, the step's mounts,
//! then `pivot_root`. Every kernel call goes through [`Syscall`], so the sequence is unit-tested
//! with a recorder.
//!
//! Mount targets are resolved inside the new root before anything is created: an image whose
//! `/run` is a symlink to `/etc` gets its mount under the container's `/etc`, never under the
//! host's, because nothing here follows a symlink out of the root.

use std::io;
use std::path::Path;

use super::spec::{MountKind, Rootfs, Spec};
use super::syscall::{MountFlags, Syscall};

/// Device nodes bound from the host into the container's `/dev`, as runc's defaults.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Build the container's filesystem and move into it. `secrets` are the contents of the
/// secret mounts, by index.
pub fn setup(sys: &dyn Syscall, spec: &Spec, secrets: &[Vec<u8>]) -> io::Result<()> {
    let root = spec.mountpoint.as_path();
    sys.mount(
        "",
        Path::new("/"),
        "",
        MountFlags {
            recursive: true,
            private: true,
            ..Default::default()
        },
        "",
    )?;
    match &spec.rootfs {
        Rootfs::Overlay(o) => sys.mount_overlay(
            root,
            &o.lowers,
            o.upper.as_deref(),
            o.work.as_deref(),
            o.userxattr,
        )?,
        Rootfs::Dir(dir) => sys.mount(
            &dir.display().to_string(),
            root,
            "",
            MountFlags {
                bind: true,
                recursive: true,
                ..Default::default()
            },
            "",
        )?,
    }

    let proc_target = sys.mount_target(root, "/proc", false)?;
    let proc_dir = proc_target.mount.clone();
    if spec.process_sandbox {
        sys.mount(
            "proc",
            &proc_dir,
            "proc",
            MountFlags {
                nosuid: true,
                nodev: true,
                noexec: true,
                ..Default::default()
            },
            "",
        )?;
    } else {
        sys.mount(
            "/proc",
            &proc_dir,
            "",
            MountFlags {
                bind: true,
                recursive: true,
                ..Default::default()
            },
            "",
        )?;
    }

    let dev_target = sys.mount_target(root, "/dev", false)?;
    sys.mount(
        "tmpfs",
        &dev_target.mount,
        "tmpfs",
        MountFlags {
            nosuid: true,
            ..Default::default()
        },
        "mode=755,size=65536k",
    )?;
    // A fresh tmpfs now: nothing of the image's is below, so paths into it are safe.
    let dev = dev_target.inside.clone();
    for name in DEVICES {
        let node = dev.join(name);
        sys.touch(&node)?;
        sys.mount(
            &format!("/dev/{name}"),
            &node,
            "",
            MountFlags {
                bind: true,
                ..Default::default()
            },
            "",
        )?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        sys.symlink(target, &dev.join(link))?;
    }
    sys.mkdir_all(&dev.join("pts"), 0o755)?;
    sys.mount(
        "devpts",
        &dev.join("pts"),
        "devpts",
        MountFlags {
            nosuid: true,
            noexec: true,
            ..Default::default()
        },
        "newinstance,ptmxmode=0666,mode=0620",
    )?;
    sys.mkdir_all(&dev.join("shm"), 0o1777)?;
    sys.mount(
        "shm",
        &dev.join("shm"),
        "tmpfs",
        MountFlags {
            nosuid: true,
            nodev: true,
            noexec: true,
            ..Default::default()
        },
        "mode=1777,size=65536k",
    )?;
    sys.mkdir_all(&dev.join("mqueue"), 0o755)?;
    sys.mount(
        "mqueue",
        &dev.join("mqueue"),
        "mqueue",
        MountFlags {
            nosuid: true,
            nodev: true,
            noexec: true,
            ..Default::default()
        },
        "",
    )?;

    let sys_target = sys.mount_target(root, "/sys", false)?;
    let sys_dir = sys_target.mount.clone();
    let ro = MountFlags {
        nosuid: true,
        nodev: true,
        noexec: true,
        readonly: true,
        ..Default::default()
    };
    if spec.isolate_network {
        sys.mount("sysfs", &sys_dir, "sysfs", ro, "")?;
    } else {
        // A sysfs of the host's network namespace may not be mounted from a user namespace;
        // bind the host's, read-only.
        sys.mount(
            "/sys",
            &sys_dir,
            "",
            MountFlags {
                bind: true,
                recursive: true,
                ..Default::default()
            },
            "",
        )?;
        sys.mount(
            "",
            &sys.mount_target(root, "/sys", false)?.mount,
            "",
            MountFlags {
                bind: true,
                remount: true,
                ..ro
            },
            "",
        )?;
    }

    sys.sethostname(&spec.hostname)?;

    if spec
        .mounts
        .iter()
        .any(|m| matches!(m.kind, MountKind::Secret { .. }))
    {
        // Secrets live on a tmpfs that only this mount namespace sees, never on disk.
        sys.mount(
            "tmpfs",
            &spec.secret_dir,
            "tmpfs",
            MountFlags {
                nosuid: true,
                nodev: true,
                noexec: true,
                ..Default::default()
            },
            "mode=0755,size=16m",
        )?;
    }

    for m in &spec.mounts {
        let is_file = match &m.kind {
            MountKind::Bind { source } => !sys.is_dir(source),
            MountKind::Secret { .. } => true,
            _ => false,
        };
        let pinned = sys.mount_target(root, &m.target, is_file)?;
        let target = pinned.mount.clone();
        // A remount must reach the mount just made, which the descriptor above (taken before
        // it) does not: resolve the target again, inside the root again.
        let again = || sys.mount_target(root, &m.target, is_file);
        match &m.kind {
            MountKind::Bind { source } => {
                sys.mount(
                    &source.display().to_string(),
                    &target,
                    "",
                    MountFlags {
                        bind: true,
                        recursive: true,
                        ..Default::default()
                    },
                    "",
                )?;
                if m.readonly {
                    sys.mount(
                        "",
                        &again()?.mount,
                        "",
                        MountFlags {
                            bind: true,
                            remount: true,
                            readonly: true,
                            ..Default::default()
                        },
                        "",
                    )?;
                }
            }
            MountKind::Tmpfs { size, mode } => {
                let mut data = format!("mode={mode:o}");
                if let Some(size) = size {
                    data.push_str(&format!(",size={size}"));
                }
                sys.mount(
                    "tmpfs",
                    &target,
                    "tmpfs",
                    MountFlags {
                        readonly: m.readonly,
                        nosuid: true,
                        nodev: true,
                        ..Default::default()
                    },
                    &data,
                )?;
            }
            MountKind::Overlay(o) => sys.mount_overlay(
                &target,
                &o.lowers,
                o.upper.as_deref(),
                o.work.as_deref(),
                o.userxattr,
            )?,
            MountKind::Secret {
                index,
                mode,
                uid,
                gid,
            } => {
                let content = secrets.get(*index).ok_or_else(|| {
                    io::Error::other(format!("secret #{index} was not passed to the sandbox"))
                })?;
                let staged = spec.secret_dir.join(index.to_string());
                sys.write_file(&staged, content, *mode, *uid, *gid)?;
                sys.mount(
                    &staged.display().to_string(),
                    &target,
                    "",
                    MountFlags {
                        bind: true,
                        ..Default::default()
                    },
                    "",
                )?;
                sys.mount(
                    "",
                    &again()?.mount,
                    "",
                    MountFlags {
                        bind: true,
                        remount: true,
                        readonly: true,
                        ..Default::default()
                    },
                    "",
                )?;
            }
        }
    }

    let cwd = sys.mount_target(root, &spec.cwd, false)?.inside;
    sys.pivot_root(root)?;
    let inside = Path::new("/").join(cwd.strip_prefix(root).unwrap_or(Path::new("")));
    sys.chdir(&inside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::{Mount, Overlay};
    use crate::sandbox::syscall::Recorder;

    fn spec() -> Spec {
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

    #[test]
    fn builds_the_container_in_order_and_pivots() {
        let rec = Recorder::default();
        setup(&rec, &spec(), &[]).unwrap();
        let calls = rec.calls();
        let pos = |prefix: &str| {
            calls
                .iter()
                .position(|c| c.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {calls:#?}"))
        };
        assert_eq!(calls[0], "mount / [rec,private]");
        assert_eq!(
            calls[1],
            "overlay /m lowers=/s/2:/s/1 upper=/s/up work=/s/work userxattr=true"
        );
        assert!(calls.contains(&"mount proc /m/proc proc [nosuid,nodev,noexec]".to_string()));
        assert!(calls.contains(&"mount /dev/null /m/dev/null [bind]".to_string()));
        assert!(calls.contains(&"mount sysfs /m/sys sysfs [ro,nosuid,nodev,noexec]".to_string()));
        assert!(calls.contains(&"mount /tmp/hosts /m/etc/hosts [bind,rec]".to_string()));
        assert!(calls.contains(&"mount /m/etc/hosts [bind,ro,remount]".to_string()));
        assert!(calls.contains(
            &"mount tmpfs /m/cache tmpfs [nosuid,nodev] mode=755,size=1048576".to_string()
        ));
        assert!(pos("mount /tmp/hosts") < pos("pivot_root /m"));
        assert!(pos("mkdir /m/src") < pos("pivot_root /m"));
        assert_eq!(calls.last().unwrap(), "chdir /src");
        assert!(pos("sethostname buildkitsandbox") < pos("pivot_root"));
    }

    #[test]
    fn without_process_sandbox_the_host_proc_is_bound() {
        let rec = Recorder::default();
        let mut s = spec();
        s.process_sandbox = false;
        s.isolate_network = false;
        setup(&rec, &s, &[]).unwrap();
        let calls = rec.calls();
        assert!(calls.contains(&"mount /proc /m/proc [bind,rec]".to_string()));
        assert!(calls.contains(&"mount /sys /m/sys [bind,rec]".to_string()));
        assert!(calls.contains(&"mount /m/sys [bind,ro,remount,nosuid,nodev,noexec]".to_string()));
    }

    #[test]
    fn symlinked_targets_resolve_inside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("run")).unwrap();
        std::os::unix::fs::symlink("../../../../../tmp", root.join("etc/up")).unwrap();
        let sys = super::super::syscall::Linux;
        let t = sys.mount_target(root, "/run/secrets/x", true).unwrap();
        assert_eq!(t.inside, root.join("etc/secrets/x"));
        assert!(root.join("etc/secrets/x").is_file());
        let t = sys.mount_target(root, "/etc/up/f", false).unwrap();
        assert_eq!(t.inside, root.join("tmp/f"));
        assert!(t.mount.starts_with("/proc/self/fd/"));
        assert!(root.join("tmp/f").is_dir());
    }
}

#[cfg(test)]
mod secret_tests {
    use super::*;
    use crate::sandbox::spec::{Mount, Overlay};
    use crate::sandbox::syscall::Recorder;

    #[test]
    fn secrets_go_to_a_private_tmpfs_and_are_bound_read_only() {
        let rec = Recorder::default();
        let spec = Spec {
            rootfs: Rootfs::Overlay(Overlay {
                lowers: vec!["/l".into()],
                upper: None,
                work: None,
                userxattr: false,
            }),
            mountpoint: "/m".into(),
            mounts: vec![Mount {
                target: "/run/secrets/token".into(),
                kind: MountKind::Secret {
                    index: 0,
                    mode: 0o400,
                    uid: 1000,
                    gid: 0,
                },
                readonly: true,
            }],
            args: vec![],
            env: vec![],
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            additional_gids: vec![],
            hostname: "h".into(),
            isolate_network: false,
            process_sandbox: true,
            insecure: false,
            error_file: "/e".into(),
            secret_count: 1,
            secret_env: vec![],
            secret_dir: "/s".into(),
        };
        setup(&rec, &spec, &[b"hunter2".to_vec()]).unwrap();
        let calls = rec.calls();
        let tmpfs = calls
            .iter()
            .position(|c| c == "mount tmpfs /s tmpfs [nosuid,nodev,noexec] mode=0755,size=16m")
            .expect("a tmpfs for secrets");
        let write = calls
            .iter()
            .position(|c| c == "write /s/0 (7 bytes) 400 1000:0")
            .expect("the secret written there");
        let bind = calls
            .iter()
            .position(|c| c == "mount /s/0 /m/run/secrets/token [bind]")
            .expect("bound to its target");
        assert!(calls.contains(&"mount /m/run/secrets/token [bind,ro,remount]".to_string()));
        assert!(tmpfs < write && write < bind);
        assert!(
            !calls.iter().any(|c| c.contains("hunter2")),
            "the content must not be logged"
        );
    }
}
