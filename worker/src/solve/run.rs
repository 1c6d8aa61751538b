//! RUN steps: the sandbox spec from the step (its mounts are `run_mounts`), its output, and the
//! mount points that must not stay in the layer.

use std::collections::VecDeque;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::stage::State;
use super::{Solver, StepFailure};
use crate::digest::Digest;
use crate::fsroot::{self, Follow, Root};
use crate::plan::step::{Input, Mount, Network, Run, Security};
use crate::progress::Event;
use crate::result::Redactor;
use crate::sandbox::run::{Cancel, RunError, Stream};
use crate::sandbox::spec::{self, MountKind, Overlay, Rootfs, Spec};
use crate::snapshot::layer::Pending;
use crate::snapshot::view::View;

/// `/etc/hosts` of a step, as BuildKit writes it.
const HOSTS: &str =
    "127.0.0.1\tlocalhost buildkitsandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n";
const HOSTNAME: &str = "buildkitsandbox";
/// Lines of output kept for the error report of a failed step.
const TAIL_LINES: usize = 20;
/// Where `--ssh-known-hosts` puts the known hosts of a step's ssh ids (OpenSSH's global file).
const SSH_KNOWN_HOSTS: &str = "/etc/ssh/ssh_known_hosts";

/// The last lines of a step's output.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: String,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.partial.push_str(&String::from_utf8_lossy(data));
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.lines.push_back(line.trim_end().to_string());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
    }

    /// The lines, with the values of the step's secrets replaced.
    fn into_lines(mut self, secrets: &[Vec<u8>]) -> Vec<String> {
        if !self.partial.is_empty() {
            self.lines.push_back(std::mem::take(&mut self.partial));
        }
        let redactor = Redactor::new(secrets);
        self.lines.iter().map(|l| redactor.redact(l)).collect()
    }
}

/// A step's output on its way to progress. A step that mounts secrets has its output passed
/// on in whole lines, with the secrets' values replaced: a value split between two reads would
/// escape a replacement made read by read. Other steps' output passes as it comes.
struct Output {
    redactor: Option<Redactor>,
    /// The unfinished line of stdout and of stderr.
    partial: [(&'static str, String); 2],
}

impl Output {
    fn new(secrets: &[Vec<u8>]) -> Output {
        Output {
            redactor: (!secrets.is_empty()).then(|| Redactor::new(secrets)),
            partial: [("stdout", String::new()), ("stderr", String::new())],
        }
    }

    /// What to show of a chunk of output now.
    fn push(&mut self, stream: &'static str, data: &[u8]) -> Option<String> {
        let text = String::from_utf8_lossy(data);
        let Some(redactor) = &self.redactor else {
            return Some(text.into_owned());
        };
        let partial = &mut self.partial[usize::from(stream == "stderr")].1;
        partial.push_str(&text);
        let end = partial.rfind('\n')? + 1;
        let lines: String = partial.drain(..end).collect();
        Some(redactor.redact(&lines))
    }

    /// The unfinished lines, once the step has ended.
    fn flush(&mut self) -> Vec<(&'static str, String)> {
        let Some(redactor) = &self.redactor else {
            return vec![];
        };
        self.partial
            .iter_mut()
            .filter(|(_, p)| !p.is_empty())
            .map(|(stream, p)| (*stream, redactor.redact(&std::mem::take(p))))
            .collect()
    }
}

impl Solver<'_> {
    /// What a RUN reads besides its own filesystem: bind mount sources.
    pub(super) fn run_inputs(&self, run: &Run) -> Result<Vec<Digest>, StepFailure> {
        self.run_inputs_by(run, false)
    }

    /// The inputs of a RUN; with `content`, a bind mount from a stage counts by the digest of
    /// what it mounts rather than by the stage's key.
    pub(super) fn run_inputs_by(
        &self,
        run: &Run,
        content: bool,
    ) -> Result<Vec<Digest>, StepFailure> {
        let mut inputs = Vec::new();
        for m in &run.mounts {
            if let Mount::Bind { from, source, .. } = m {
                inputs.push(match (from, content) {
                    (Input::Stage(j), true) => {
                        let rel = crate::context::ignore::clean(source);
                        self.stage_checksum(*j, &format!("paths {rel:?}"), |view| {
                            crate::copy::digest_view_paths(view, std::slice::from_ref(&rel))
                                .map_err(|e| {
                                    StepFailure::Other(format!("bind mount source {source:?}: {e}"))
                                })
                        })?
                    }
                    _ => self.input_key(from)?,
                });
                if *from == Input::Context {
                    let rel = crate::context::ignore::clean(source);
                    let rels = if rel.is_empty() {
                        vec![String::new()]
                    } else {
                        vec![rel]
                    };
                    let mut hashes = super::shared::lock(&self.shared.hashes);
                    let d = crate::context::hash::digest_paths(self.context, &rels, &mut hashes)
                        .map_err(|e| {
                            StepFailure::Other(format!("bind mount source {source:?}: {e}"))
                        })?;
                    inputs.push(d);
                }
            }
        }
        Ok(inputs)
    }

    pub(super) fn execute_run(
        &self,
        state: &State,
        run: &Run,
        pending: &Pending,
        vertex: usize,
    ) -> Result<(), (StepFailure, Vec<String>)> {
        let plain = |e: StepFailure| (e, Vec::new());
        if run.security == Security::Insecure && !self.opts.allow_insecure {
            return Err(plain(StepFailure::Other("RUN --security=insecure is not allowed: pass --allow security.insecure to permit it".into())));
        }
        let mut lowers = state.lowers(self);
        let view = View::new(lowers.clone());
        if lowers.is_empty() {
            lowers.push(self.empty_dir().map_err(|e| plain(e.into()))?);
        }
        let passwd =
            String::from_utf8_lossy(&view.read(Path::new("etc/passwd")).unwrap_or_default())
                .into_owned();
        let group = String::from_utf8_lossy(&view.read(Path::new("etc/group")).unwrap_or_default())
            .into_owned();
        let user = crate::userdb::exec_user(&run.user, &passwd, &group)
            .map_err(|e| plain(StepFailure::Other(e.to_string())))?;
        let mut env = run.env.clone();
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!(
                "HOME={}",
                user.home
                    .as_deref()
                    .filter(|h| !h.is_empty())
                    .unwrap_or("/")
            ));
        }

        let scratch = self
            .snapshots
            .store()
            .temp_dir("run")
            .map_err(|e| plain(e.into()))?;
        let files = scratch.path().join("files");
        std::fs::create_dir_all(&files).map_err(|e| plain(e.into()))?;
        std::fs::write(files.join("hosts"), HOSTS).map_err(|e| plain(e.into()))?;
        let resolv = std::fs::read("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(files.join("resolv.conf"), resolv).map_err(|e| plain(e.into()))?;
        let mut mounts = vec![
            spec::Mount {
                target: "/etc/hosts".into(),
                kind: MountKind::Bind {
                    source: files.join("hosts"),
                },
                readonly: true,
            },
            spec::Mount {
                target: "/etc/resolv.conf".into(),
                kind: MountKind::Bind {
                    source: files.join("resolv.conf"),
                },
                readonly: true,
            },
        ];
        for (n, file) in run.files.iter().enumerate() {
            let host = files.join(format!("inline-{n}"));
            std::fs::write(&host, &file.content).map_err(|e| plain(e.into()))?;
            std::fs::set_permissions(&host, std::fs::Permissions::from_mode(file.mode))
                .map_err(|e| plain(e.into()))?;
            mounts.push(spec::Mount {
                target: file.path.clone(),
                kind: MountKind::Bind { source: host },
                readonly: true,
            });
        }
        let mut secrets: Vec<Vec<u8>> = Vec::new();
        let mut secret_env = Vec::new();
        // Cache locks and ssh agents, held until the step is over.
        let mut guards: Vec<Box<dyn std::any::Any>> = Vec::new();
        for (n, m) in run.mounts.iter().enumerate() {
            if let Mount::Secret {
                id,
                target,
                env,
                required,
                mode,
                uid,
                gid,
            } = m
            {
                let Some(content) = self.secret(id).map_err(plain)? else {
                    if *required {
                        return Err(plain(StepFailure::MissingSecret { id: id.clone() }));
                    }
                    continue;
                };
                let index = secrets.len();
                secrets.push(content);
                if let Some(var) = env {
                    secret_env.push((var.clone(), index));
                }
                let target = target
                    .clone()
                    .or_else(|| env.is_none().then(|| format!("/run/secrets/{id}")));
                if let Some(target) = target {
                    mounts.push(spec::Mount {
                        target,
                        kind: MountKind::Secret {
                            index,
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                        },
                        readonly: true,
                    });
                }
                continue;
            }
            if let Some(mount) = self
                .step_mount(m, scratch.path(), n, vertex, &mut guards)
                .map_err(plain)?
            {
                if matches!(m, Mount::Ssh { .. })
                    && !env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK="))
                {
                    env.push(format!("SSH_AUTH_SOCK={}", mount.target));
                }
                mounts.push(mount);
            }
        }
        // What is redacted from the step's output: the secrets, not the known hosts below.
        let redacted = secrets.len();
        // `--ssh-known-hosts ID=FILE`: a step that mounts ssh id ID sees those lines at
        // /etc/ssh/ssh_known_hosts, a read-only file on the step's own tmpfs (never in a layer).
        let mut known_hosts: Vec<u8> = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for m in &run.mounts {
            if let Mount::Ssh { id, .. } = m
                && self.opts.ssh.contains_key(id)
                && !seen.contains(&id.as_str())
                && let Some(file) = self.opts.ssh_known_hosts.get(id)
            {
                seen.push(id);
                let lines = std::fs::read(file).map_err(|source| {
                    plain(StepFailure::SecretFile {
                        id: format!("ssh known hosts {id}"),
                        path: file.clone(),
                        source,
                    })
                })?;
                known_hosts.extend_from_slice(&lines);
                if !known_hosts.ends_with(b"\n") {
                    known_hosts.push(b'\n');
                }
            }
        }
        if !known_hosts.is_empty() {
            mounts.push(spec::Mount {
                target: SSH_KNOWN_HOSTS.into(),
                kind: MountKind::Secret {
                    index: secrets.len(),
                    mode: 0o644,
                    uid: 0,
                    gid: 0,
                },
                readonly: true,
            });
            secrets.push(known_hosts);
        }
        // Mount points the image lacks are created for the step and removed after it, as
        // BuildKit's mount stub cleaner does; /dev, /proc and /sys stay, as in BuildKit.
        let stubs: Vec<PathBuf> = mounts
            .iter()
            .filter_map(|m| {
                let resolved = view
                    .resolve(Path::new(m.target.trim_start_matches('/')), true)
                    .ok()?;
                view.lstat(&resolved).is_none().then_some(resolved)
            })
            .collect();

        let mountpoint = scratch.path().join("rootfs");
        std::fs::create_dir(&mountpoint).map_err(|e| plain(e.into()))?;
        // Without overlayfs the step runs on a full copy of its root, and the changes are found
        // by comparing the copy with a record taken before the step.
        let copy = match self.opts.snapshotter {
            super::Snapshotter::Overlay => None,
            super::Snapshotter::Copy => {
                let tree = scratch.path().join("tree");
                std::fs::create_dir(&tree).map_err(|e| plain(e.into()))?;
                crate::snapshot::fallback::materialize(&view, &tree)
                    .map_err(|e| plain(StepFailure::Copy(e)))?;
                let before = crate::snapshot::fallback::Manifest::scan(&tree, &Default::default())
                    .map_err(|e| plain(e.into()))?;
                Some((tree, before))
            }
        };
        let rootfs = match &copy {
            None => Rootfs::Overlay(Overlay {
                lowers,
                upper: Some(pending.fs()),
                work: Some(pending.work()),
                userxattr: crate::userns::in_user_namespace(),
            }),
            Some((tree, _)) => Rootfs::Dir(tree.clone()),
        };
        let spec = Spec {
            rootfs,
            mountpoint,
            mounts,
            args: run.args.clone(),
            env,
            cwd: run.workdir.clone(),
            uid: user.uid,
            gid: user.gid,
            additional_gids: user.additional_gids,
            hostname: HOSTNAME.into(),
            isolate_network: run.network == Network::None,
            process_sandbox: self.opts.process_sandbox,
            insecure: run.security == Security::Insecure,
            error_file: scratch.path().join("error"),
            secret_count: secrets.len(),
            secret_env,
            secret_dir: {
                let d = scratch.path().join("secrets");
                std::fs::create_dir_all(&d).map_err(|e| plain(e.into()))?;
                d
            },
        };
        let cancel = Cancel::default();
        super::shared::lock(&self.shared.cancels).push(cancel.clone());
        if self.failed() {
            cancel.cancel();
        }
        self.shared
            .stats
            .runs
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut tail = Tail::default();
        let mut output = Output::new(&secrets[..redacted]);
        let emit = |stream: &'static str, data: String| {
            self.event(Event::Output {
                id: vertex,
                stream,
                data,
            })
        };
        let result = self.opts.runner.run(
            &spec,
            scratch.path(),
            &cancel,
            &secrets,
            &mut |stream, data| {
                tail.push(data);
                let stream = if stream == Stream::Stdout {
                    "stdout"
                } else {
                    "stderr"
                };
                if let Some(text) = output.push(stream, data) {
                    emit(stream, text);
                }
            },
        );
        for (stream, text) in output.flush() {
            emit(stream, text);
        }
        super::shared::lock(&self.shared.cancels).retain(|c| !c.same(&cancel));
        let command = run.args.join(" ");
        match result {
            Ok(0) => {}
            Ok(code) => {
                let failure = match full_volume(&spec) {
                    Some(volume) => StepFailure::VolumeFull {
                        command,
                        code,
                        volume,
                    },
                    None => StepFailure::Exit { command, code },
                };
                return Err((failure, tail.into_lines(&secrets[..redacted])));
            }
            Err(RunError::Cancelled) => return Err(plain(StepFailure::Cancelled)),
            Err(source) => {
                return Err((
                    StepFailure::Run { command, source },
                    tail.into_lines(&secrets[..redacted]),
                ));
            }
        }
        if let Some((tree, before)) = &copy {
            crate::snapshot::fallback::diff(tree, before, &pending.fs(), &Default::default())
                .map_err(|source| {
                    plain(StepFailure::Io {
                        what: "finding the step's changes",
                        source,
                    })
                })?;
        }
        clean_stubs(&pending.fs(), &view, &stubs).map_err(|source| {
            plain(StepFailure::Io {
                what: "cleaning mount points",
                source,
            })
        })?;
        Ok(())
    }
}

/// Remove the mount points a step created, and the directories created only to hold them. A
/// directory copied up from below is removed too when nothing else changed in it.
///
/// The step ran before this and may have replaced any of these paths with a symlink (to `/` on
/// the host, CVE-2024-23652's shape): every name is reached from the upper directory's
/// descriptor without following a symlink anywhere, and removed with `unlinkat` in the
/// descriptor of its parent. A symlink where a stub was is left as the step made it.
fn clean_stubs(upper: &Path, base: &View, stubs: &[PathBuf]) -> std::io::Result<()> {
    use rustix::fs::{AtFlags, FileType, statat, unlinkat};
    use std::os::fd::AsFd;

    let root = Root::open(upper)?;
    // The directory `rel` names, opened for reading, when it is an empty directory reached
    // without a symlink; its parent's descriptor and its name come along for the removal.
    let empty_dir =
        |rel: &Path| -> Option<(std::os::fd::OwnedFd, std::ffi::OsString, rustix::fs::Stat)> {
            let (parent, name) = root.open_parent(rel, Follow::Never).ok()?;
            let dir = root.open_dir(rel, Follow::Never).ok()?;
            let st = rustix::fs::fstat(&dir).ok()?;
            let empty = fsroot::is_empty_dir(dir.as_fd()).ok()?;
            let opaque = OVERLAY_OPAQUE
                .iter()
                .any(|x| matches!(rustix::fs::fgetxattr(&dir, *x, &mut [0u8; 4]), Ok(1)));
            (empty && !opaque).then_some((parent, name, st))
        };
    for stub in stubs {
        let Ok((parent, name)) = root.open_parent(stub, Follow::Never) else {
            continue;
        };
        let Ok(st) = statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Directory => {
                if empty_dir(stub).is_none() {
                    continue;
                }
                unlinkat(&parent, &name, AtFlags::REMOVEDIR)?;
            }
            FileType::RegularFile if st.st_size == 0 => unlinkat(&parent, &name, AtFlags::empty())?,
            _ => continue,
        }
        let mut up = stub.parent();
        while let Some(rel) = up.filter(|p| !p.as_os_str().is_empty()) {
            let Some((parent, name, meta)) = empty_dir(rel) else {
                break;
            };
            let unchanged_copy_up = base.lstat(rel).is_none_or(|below| {
                below.meta.is_dir()
                    && below.meta.mode() == meta.st_mode
                    && below.meta.uid() == meta.st_uid
                    && below.meta.gid() == meta.st_gid
            });
            if !unchanged_copy_up {
                break;
            }
            unlinkat(&parent, &name, AtFlags::REMOVEDIR)?;
            up = rel.parent();
        }
    }
    Ok(())
}

/// The xattrs overlayfs marks an opaque directory with, as root and in a user namespace.
const OVERLAY_OPAQUE: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// A volume the failed step wrote to that has no space left, named for the user: a writable
/// cache (or other bind) mount by its target, else the build's state directory (where the
/// step's own changes go). Less than 256 KiB free counts as full: a failed write leaves about
/// that much behind on most filesystems.
fn full_volume(spec: &crate::sandbox::spec::Spec) -> Option<String> {
    use crate::sandbox::spec::{MountKind, Rootfs};
    const FULL: u64 = 256 * 1024;
    let full = |path: &std::path::Path| {
        rustix::fs::statvfs(path)
            .is_ok_and(|v| v.f_blocks > 0 && v.f_bavail.saturating_mul(v.f_frsize) < FULL)
    };
    for m in &spec.mounts {
        if let MountKind::Bind { source } = &m.kind
            && !m.readonly
            && full(source)
        {
            return Some(format!("the volume mounted at {}", m.target));
        }
    }
    let own = match &spec.rootfs {
        Rootfs::Overlay(o) => o.upper.clone(),
        Rootfs::Dir(d) => Some(d.clone()),
    };
    own.filter(|p| full(p))
        .map(|_| "the build's state directory (the step's own changes)".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..30 {
            t.push(format!("line {i}\n").as_bytes());
        }
        t.push(b"partial");
        let lines = t.into_lines(&[]);
        assert_eq!(lines.len(), TAIL_LINES + 1);
        assert_eq!(lines.last().unwrap(), "partial");
        assert_eq!(lines[0], "line 10");
    }

    #[test]
    fn output_of_a_step_with_secrets_is_passed_in_redacted_lines() {
        let secrets = vec![b"hunter2\n".to_vec()];
        let mut out = Output::new(&secrets);
        assert_eq!(out.push("stdout", b"pw: hun"), None);
        assert_eq!(out.push("stderr", b"err\n"), Some("err\n".into()));
        assert_eq!(
            out.push("stdout", b"ter2\nnext: hunt"),
            Some("pw: ****\n".into())
        );
        assert_eq!(out.flush(), [("stdout", "next: hunt".to_string())]);
        let mut t = Tail::default();
        t.push(b"pw: hunter2\n");
        assert_eq!(t.into_lines(&secrets), ["pw: ****"]);
        let mut plain = Output::new(&[]);
        assert_eq!(plain.push("stdout", b"as is"), Some("as is".into()));
        assert!(plain.flush().is_empty());
    }

    #[test]
    fn stubs_and_their_created_parents_are_removed_but_real_changes_stay() {
        let d = tempfile::tempdir().unwrap();
        let (upper, lower) = (d.path().join("u"), d.path().join("l"));
        std::fs::create_dir_all(lower.join("var")).unwrap();
        std::fs::create_dir_all(upper.join("var/cache/app")).unwrap();
        std::fs::create_dir_all(upper.join("run/secrets")).unwrap();
        std::fs::write(upper.join("run/secrets/token"), b"").unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        std::fs::write(upper.join("etc/hosts"), b"").unwrap();
        std::fs::write(upper.join("etc/real"), b"kept").unwrap();
        let view = View::new(vec![lower]);
        let stubs: Vec<PathBuf> = ["var/cache/app", "run/secrets/token", "etc/hosts"]
            .iter()
            .map(PathBuf::from)
            .collect();
        clean_stubs(&upper, &view, &stubs).unwrap();
        assert!(
            !upper.join("var").exists(),
            "var was only copied up to hold the stub"
        );
        assert!(!upper.join("run").exists());
        assert!(!upper.join("etc/hosts").exists());
        assert!(upper.join("etc/real").exists());
    }

    /// CVE-2024-23652's shape: the step replaced the stub's parent with a symlink to a host
    /// directory holding an empty file and an empty directory of the stubs' names.
    #[test]
    fn stubs_behind_a_symlink_the_step_planted_are_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let (upper, host) = (d.path().join("u"), d.path().join("host"));
        std::fs::create_dir_all(host.join("app")).unwrap();
        std::fs::write(host.join("token"), b"").unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::os::unix::fs::symlink(&host, upper.join("var")).unwrap();
        std::os::unix::fs::symlink(host.join("token"), upper.join("tok")).unwrap();
        let stubs: Vec<PathBuf> = ["var/app", "var/token", "tok"]
            .iter()
            .map(PathBuf::from)
            .collect();
        clean_stubs(&upper, &View::new(vec![]), &stubs).unwrap();
        assert!(host.join("app").is_dir());
        assert!(host.join("token").is_file());
        assert!(upper.join("tok").is_symlink());
        assert!(upper.join("var").is_symlink());
    }
}
