//! The system calls the sandbox makes, behind a trait.
//!
//! [`Linux`] calls the kernel, through `rustix` and, where `rustix` has no wrapper,
//! [`crate::kernel`]. In tests, `Recorder` writes down what would be called, so the container's
//! assembly (which mounts, with which flags, in which order), the process's confinement and the
//! rootless id mapping are unit-tested without root and without namespaces, as youki does with
//! its `Syscall` trait.

use std::io;
use std::path::{Path, PathBuf};

pub use crate::kernel::{MountAttrs, Namespaces};

/// Mount flags the sandbox passes to `mount(2)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MountFlags {
    pub bind: bool,
    pub recursive: bool,
    pub readonly: bool,
    pub remount: bool,
    pub private: bool,
    pub nosuid: bool,
    pub nodev: bool,
    pub noexec: bool,
}

/// The names whose flag is set, in order (for errors and the recorder).
fn names_of<const N: usize>(flags: [(bool, &'static str); N]) -> Vec<&'static str> {
    flags
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
}

impl MountFlags {
    const NONE: MountFlags = MountFlags {
        bind: false,
        recursive: false,
        readonly: false,
        remount: false,
        private: false,
        nosuid: false,
        nodev: false,
        noexec: false,
    };
    /// A bind mount of one mount.
    pub const BIND: MountFlags = MountFlags {
        bind: true,
        ..MountFlags::NONE
    };
    /// A bind mount of a mount and every mount below it.
    pub const RBIND: MountFlags = MountFlags {
        recursive: true,
        ..MountFlags::BIND
    };
    /// Stop propagation to and from every mount below the target.
    pub const PRIVATE_TREE: MountFlags = MountFlags {
        recursive: true,
        private: true,
        ..MountFlags::NONE
    };
    /// A kernel filesystem or tmpfs with no setuid file, device or program on it.
    pub const LOCKED: MountFlags = MountFlags {
        nosuid: true,
        nodev: true,
        noexec: true,
        ..MountFlags::NONE
    };
    /// [`MountFlags::LOCKED`], read-only.
    pub const LOCKED_RO: MountFlags = MountFlags {
        readonly: true,
        ..MountFlags::LOCKED
    };

    /// The names of the flags that are set, in a fixed order (for logs and the recorder).
    pub fn names(self) -> Vec<&'static str> {
        names_of([
            (self.bind, "bind"),
            (self.recursive, "rec"),
            (self.readonly, "ro"),
            (self.remount, "remount"),
            (self.private, "private"),
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
        ])
    }
}

impl MountAttrs {
    /// The names of the attributes that are set, in a fixed order.
    pub fn names(self) -> Vec<&'static str> {
        names_of([
            (self.readonly, "ro"),
            (self.nosuid, "nosuid"),
            (self.nodev, "nodev"),
            (self.noexec, "noexec"),
        ])
    }
}

/// The kernel interface of the sandbox and of the rootless re-entry.
pub trait Syscall {
    // The filesystem.
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()>;
    /// Mount an overlay with the new mount API, which takes any number of lower layers.
    fn mount_overlay(
        &self,
        target: &Path,
        lowers: &[PathBuf],
        upper: Option<&Path>,
        work: Option<&Path>,
        userxattr: bool,
    ) -> io::Result<()>;
    /// Add attributes to the mount at `target`, and with `recursive` to every mount below it.
    fn mount_setattr(&self, target: &Path, attrs: MountAttrs, recursive: bool) -> io::Result<()>;
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Create an empty file if nothing exists at `path` (a bind target for a file).
    fn touch(&self, path: &Path) -> io::Result<()>;
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;
    fn chdir(&self, path: &Path) -> io::Result<()>;
    /// Create a file with this content, mode and owner (a secret on the private tmpfs).
    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<()>;
    /// Write to an existing file (a `/proc/PID/uid_map`).
    fn write(&self, path: &Path, content: &str) -> io::Result<()>;
    /// Resolve the mount target `path` inside `root` (symlinks followed, never out of it) and
    /// create it if missing: a directory, or an empty file when `file`. The real kernel
    /// resolves with `openat2(RESOLVE_IN_ROOT)` and hands back a descriptor to mount on.
    fn mount_target(&self, root: &Path, path: &str, file: bool) -> io::Result<MountTarget>;

    // Namespaces.
    fn unshare(&self, ns: Namespaces) -> io::Result<()>;
    fn sethostname(&self, name: &str) -> io::Result<()>;
    /// Bring up the loopback interface of a new network namespace.
    fn loopback_up(&self) -> io::Result<()>;
    /// Run a program to completion (`newuidmap`), failing with its standard error.
    fn run(&self, program: &str, args: &[String]) -> io::Result<()>;

    // The process.
    /// A new session, without a controlling terminal.
    fn setsid(&self) -> io::Result<()>;
    fn set_groups(&self, gids: &[u32]) -> io::Result<()>;
    /// Real, effective and saved group and user ids, the group first.
    fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()>;
    /// Keep only the capabilities in `keep` (a bit per capability): the bounding set is cut to
    /// it, the permitted and effective sets become it, the inheritable and ambient sets empty.
    fn limit_capabilities(&self, keep: u64) -> io::Result<()>;
    fn set_no_new_privs(&self) -> io::Result<()>;
    /// Mark every descriptor from `first` up close-on-exec.
    fn cloexec_from(&self, first: u32) -> io::Result<()>;
    /// Install seccomp filters, in order.
    fn seccomp(&self, filters: &[seccompiler::BpfProgram]) -> io::Result<()>;
}

/// A mount target resolved inside a container's root.
#[derive(Debug)]
pub struct MountTarget {
    /// What to hand to `mount(2)`: `/proc/self/fd/N` of the descriptor the target was resolved
    /// to, so the mount lands there even if a path component is swapped for a symlink since.
    pub mount: PathBuf,
    /// The path it resolved to: for joins into a filesystem just mounted on it, and messages.
    pub inside: PathBuf,
    /// Held open for as long as `mount` is used.
    _fd: Option<std::os::fd::OwnedFd>,
}

/// The error of `what` on `path`, keeping the kind.
fn context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The real kernel.
pub struct Linux;

impl Syscall for Linux {
    fn mount_target(&self, root: &Path, path: &str, file: bool) -> io::Result<MountTarget> {
        use crate::fsroot::{Follow, Root};
        use rustix::fs::OFlags;
        let r = Root::open(root)?;
        let rel = Path::new(path);
        let fd = if file {
            match r.open_path(rel, Follow::InRoot) {
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if let Some(parent) = rel.parent() {
                        r.mkdir_all(parent, 0o755, Follow::InRoot)?;
                    }
                    r.open_at(rel, Follow::InRoot, OFlags::CREATE | OFlags::RDONLY)?
                }
                other => other?,
            }
        } else {
            r.mkdir_all(rel, 0o755, Follow::InRoot)?
        };
        let inside = root.join(r.resolve_fd(std::os::fd::AsFd::as_fd(&fd))?);
        Ok(MountTarget {
            mount: crate::fsroot::proc_path(std::os::fd::AsFd::as_fd(&fd)),
            inside,
            _fd: Some(fd),
        })
    }

    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        use rustix::mount::MountFlags as F;
        let bits = crate::kernel::flags_of(
            F::empty(),
            [
                (flags.readonly, F::RDONLY),
                (flags.nosuid, F::NOSUID),
                (flags.nodev, F::NODEV),
                (flags.noexec, F::NOEXEC),
            ],
        );
        let result = if flags.private {
            use rustix::mount::MountPropagationFlags as P;
            let mut p = P::PRIVATE;
            if flags.recursive {
                p |= P::REC;
            }
            rustix::mount::mount_change(target, p)
        } else if flags.remount && flags.bind {
            rustix::mount::mount_remount(target, bits | F::BIND, "")
        } else if flags.bind {
            if flags.recursive {
                rustix::mount::mount_bind_recursive(source, target)
            } else {
                rustix::mount::mount_bind(source, target)
            }
        } else {
            let data = (!data.is_empty())
                .then(|| std::ffi::CString::new(data))
                .transpose()
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
            rustix::mount::mount(source, target, fstype, bits, data.as_deref())
        };
        result.map_err(|e| {
            context(
                e.into(),
                format!("mounting {source} on {}", target.display()),
            )
        })
    }

    fn mount_overlay(
        &self,
        target: &Path,
        lowers: &[PathBuf],
        upper: Option<&Path>,
        work: Option<&Path>,
        userxattr: bool,
    ) -> io::Result<()> {
        overlay_fsmount(target, lowers, upper, work, userxattr).map_err(|e| {
            context(
                e,
                format!(
                    "mounting an overlay of {} layers on {}",
                    lowers.len(),
                    target.display()
                ),
            )
        })
    }

    fn mount_setattr(&self, target: &Path, attrs: MountAttrs, recursive: bool) -> io::Result<()> {
        crate::kernel::mount_setattr(target, attrs, recursive).map_err(|e| {
            context(
                e,
                format!("making {} {}", target.display(), attrs.names().join(",")),
            )
        })
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        // pivot_root(".", ".") stacks the old root under the new one; unmounting "." then
        // detaches the old root without needing a directory for it.
        self.chdir(new_root)?;
        rustix::process::pivot_root(".", ".")
            .map_err(|e| context(e.into(), "pivot_root".into()))?;
        rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| context(e.into(), "detaching the old root".into()))?;
        self.chdir(Path::new("/"))
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(path)
    }

    fn touch(&self, path: &Path) -> io::Result<()> {
        if std::fs::symlink_metadata(path).is_ok() {
            return Ok(());
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map(drop)
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        std::os::unix::fs::symlink(target, link)
    }

    fn exists(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path).is_ok()
    }

    fn is_dir(&self, path: &Path) -> bool {
        std::fs::metadata(path).is_ok_and(|m| m.is_dir())
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        rustix::process::chdir(path)
            .map_err(|e| context(e.into(), format!("chdir {}", path.display())))
    }

    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)?;
        f.write_all(content)?;
        std::os::unix::fs::fchown(&f, Some(uid), Some(gid))?;
        f.set_permissions(std::fs::Permissions::from_mode(mode))
    }

    fn write(&self, path: &Path, content: &str) -> io::Result<()> {
        std::fs::write(path, content).map_err(|e| context(e, path.display().to_string()))
    }

    fn unshare(&self, ns: Namespaces) -> io::Result<()> {
        crate::kernel::unshare(ns).map_err(|e| context(e, "unshare".into()))
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        rustix::system::sethostname(name.as_bytes())
            .map_err(|e| context(e.into(), "sethostname".into()))
    }

    fn loopback_up(&self) -> io::Result<()> {
        crate::kernel::loopback_up().map_err(|e| context(e, "bringing up loopback".into()))
    }

    fn run(&self, program: &str, args: &[String]) -> io::Result<()> {
        let out = std::process::Command::new(program)
            .args(args)
            .output()
            .map_err(|e| context(e, format!("running {program}")))?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "{program} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }

    fn setsid(&self) -> io::Result<()> {
        rustix::process::setsid()
            .map(drop)
            .map_err(|e| context(e.into(), "setsid".into()))
    }

    fn set_groups(&self, gids: &[u32]) -> io::Result<()> {
        let gids: Vec<rustix::process::Gid> = gids
            .iter()
            .map(|g| rustix::process::Gid::from_raw(*g))
            .collect();
        rustix::thread::set_thread_groups(&gids).map_err(|e| context(e.into(), "setgroups".into()))
    }

    fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()> {
        // The sandbox and the rootless re-entry are single-threaded, so the calling thread's
        // ids are the process's.
        let g = rustix::process::Gid::from_raw(gid);
        rustix::thread::set_thread_res_gid(g, g, g)
            .map_err(|e| context(e.into(), format!("setgid {gid}")))?;
        let u = rustix::process::Uid::from_raw(uid);
        rustix::thread::set_thread_res_uid(u, u, u)
            .map_err(|e| context(e.into(), format!("setuid {uid}")))
    }

    fn limit_capabilities(&self, keep: u64) -> io::Result<()> {
        use rustix::thread::{CapabilitySet, CapabilitySets};
        let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
            .min(63);
        for cap in (0..=last).filter(|c| keep & (1 << c) == 0) {
            let set = CapabilitySet::from_bits_retain(1 << cap);
            match rustix::thread::remove_capability_from_bounding_set(set) {
                // Already dropped by whoever started the engine.
                Ok(()) | Err(rustix::io::Errno::INVAL) => {}
                Err(e) => return Err(context(e.into(), format!("dropping capability {cap}"))),
            }
        }
        let current =
            rustix::thread::capabilities(None).map_err(|e| context(e.into(), "capget".into()))?;
        let keep = CapabilitySet::from_bits_retain(keep) & current.permitted;
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: keep,
                permitted: keep,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(|e| context(e.into(), "capset".into()))?;
        rustix::thread::clear_ambient_capability_set()
            .map_err(|e| context(e.into(), "clearing the ambient capabilities".into()))
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        rustix::thread::set_no_new_privs(true)
            .map_err(|e| context(e.into(), "PR_SET_NO_NEW_PRIVS".into()))
    }

    fn cloexec_from(&self, first: u32) -> io::Result<()> {
        crate::kernel::cloexec_from(first).map_err(|e| context(e, "close_range".into()))
    }

    fn seccomp(&self, filters: &[seccompiler::BpfProgram]) -> io::Result<()> {
        for filter in filters {
            seccompiler::apply_filter(filter)
                .map_err(|e| io::Error::other(format!("installing the seccomp filter: {e}")))?;
        }
        Ok(())
    }
}

/// overlayfs through fsopen/fsconfig/fsmount: `lowerdir+` (Linux 6.8) adds one layer per call,
/// so the layer count is not limited by the one-page option string of mount(2).
fn overlay_fsmount(
    target: &Path,
    lowers: &[PathBuf],
    upper: Option<&Path>,
    work: Option<&Path>,
    userxattr: bool,
) -> io::Result<()> {
    use rustix::mount::{
        FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, fsconfig_create,
        fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    };
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    let set = |key: &str, value: &Path| {
        fsconfig_set_string(&fs, key, value)
            .map_err(|e| context(e.into(), format!("overlay option {key}")))
    };
    for lower in lowers {
        set("lowerdir+", lower)?;
    }
    if let (Some(upper), Some(work)) = (upper, work) {
        set("upperdir", upper)?;
        set("workdir", work)?;
    }
    if userxattr {
        fsconfig_set_flag(&fs, "userxattr")
            .map_err(|e| context(e.into(), "overlay option userxattr".into()))?;
    }
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        target,
        // The target is `/proc/self/fd/N` of a descriptor resolved inside the container's
        // root: a magic link, which must be followed to reach it.
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_SYMLINKS,
    )?;
    Ok(())
}

/// A fake kernel that records every call and succeeds, for unit tests.
#[cfg(test)]
#[derive(Default)]
pub struct Recorder {
    pub calls: std::sync::Mutex<Vec<String>>,
    /// Paths that exist (everything else does not).
    pub existing: std::sync::Mutex<Vec<PathBuf>>,
    /// Those of them that are files, not directories.
    pub files: Vec<PathBuf>,
}

#[cfg(test)]
impl Recorder {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// A recorder on which `dirs` and `files` exist.
    pub fn with(dirs: &[&str], files: &[&str]) -> Recorder {
        let rec = Recorder {
            files: files.iter().map(PathBuf::from).collect(),
            ..Default::default()
        };
        rec.existing
            .lock()
            .unwrap()
            .extend(dirs.iter().chain(files).map(PathBuf::from));
        rec
    }
}

#[cfg(test)]
impl Syscall for Recorder {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        let flags = format!("[{}]", flags.names().join(","));
        let target = target.display().to_string();
        let parts: Vec<&str> = ["mount", source, &target, fstype, &flags, data]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        self.log(parts.join(" "));
        Ok(())
    }

    fn mount_overlay(
        &self,
        target: &Path,
        lowers: &[PathBuf],
        upper: Option<&Path>,
        work: Option<&Path>,
        userxattr: bool,
    ) -> io::Result<()> {
        let lowers: Vec<String> = lowers.iter().map(|p| p.display().to_string()).collect();
        self.log(format!(
            "overlay {} lowers={} upper={} work={} userxattr={userxattr}",
            target.display(),
            lowers.join(":"),
            upper.map(|p| p.display().to_string()).unwrap_or_default(),
            work.map(|p| p.display().to_string()).unwrap_or_default(),
        ));
        Ok(())
    }

    fn mount_setattr(&self, target: &Path, attrs: MountAttrs, recursive: bool) -> io::Result<()> {
        self.log(format!(
            "setattr {} [{}]{}",
            target.display(),
            attrs.names().join(","),
            if recursive { " rec" } else { "" }
        ));
        Ok(())
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        self.log(format!("pivot_root {}", new_root.display()));
        Ok(())
    }

    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()> {
        self.log(format!("mkdir {} {mode:o}", path.display()));
        self.existing.lock().unwrap().push(path.to_path_buf());
        Ok(())
    }

    fn touch(&self, path: &Path) -> io::Result<()> {
        self.log(format!("touch {}", path.display()));
        self.existing.lock().unwrap().push(path.to_path_buf());
        Ok(())
    }

    fn symlink(&self, target: &str, link: &Path) -> io::Result<()> {
        self.log(format!("symlink {target} {}", link.display()));
        Ok(())
    }

    fn exists(&self, path: &Path) -> bool {
        self.existing.lock().unwrap().iter().any(|p| p == path)
    }

    fn is_dir(&self, path: &Path) -> bool {
        self.exists(path) && !self.files.iter().any(|f| f == path)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.log(format!("chdir {}", path.display()));
        Ok(())
    }

    fn write_file(
        &self,
        path: &Path,
        content: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
    ) -> io::Result<()> {
        // The content is not recorded: a recorder must not leak a secret into test output.
        self.log(format!(
            "write {} ({} bytes) {mode:o} {uid}:{gid}",
            path.display(),
            content.len()
        ));
        Ok(())
    }

    fn write(&self, path: &Path, content: &str) -> io::Result<()> {
        self.log(format!("write {} {content}", path.display()));
        Ok(())
    }

    /// Lexical, through the calls above (the recorder has no symlinks), so that creating a
    /// missing target is recorded; `mount` is the path itself.
    fn mount_target(&self, root: &Path, path: &str, file: bool) -> io::Result<MountTarget> {
        let rel: PathBuf = crate::fsroot::normal_components(Path::new(path))
            .unwrap_or_default()
            .iter()
            .collect();
        let target = root.join(rel);
        if file {
            if let Some(parent) = target.parent()
                && !self.is_dir(parent)
            {
                self.mkdir_all(parent, 0o755)?;
            }
            if !self.exists(&target) {
                self.touch(&target)?;
            }
        } else if !self.is_dir(&target) {
            self.mkdir_all(&target, 0o755)?;
        }
        Ok(MountTarget {
            mount: target.clone(),
            inside: target,
            _fd: None,
        })
    }

    fn unshare(&self, ns: Namespaces) -> io::Result<()> {
        let names = names_of([
            (ns.user, "user"),
            (ns.mount, "mount"),
            (ns.uts, "uts"),
            (ns.ipc, "ipc"),
            (ns.net, "net"),
            (ns.pid, "pid"),
        ]);
        self.log(format!("unshare {}", names.join(",")));
        Ok(())
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.log(format!("sethostname {name}"));
        Ok(())
    }

    fn loopback_up(&self) -> io::Result<()> {
        self.log("loopback up".into());
        Ok(())
    }

    fn run(&self, program: &str, args: &[String]) -> io::Result<()> {
        self.log(format!("run {program} {}", args.join(" ")));
        Ok(())
    }

    fn setsid(&self) -> io::Result<()> {
        self.log("setsid".into());
        Ok(())
    }

    fn set_groups(&self, gids: &[u32]) -> io::Result<()> {
        let gids: Vec<String> = gids.iter().map(u32::to_string).collect();
        self.log(format!("setgroups [{}]", gids.join(",")));
        Ok(())
    }

    fn set_ids(&self, uid: u32, gid: u32) -> io::Result<()> {
        self.log(format!("setids {uid}:{gid}"));
        Ok(())
    }

    fn limit_capabilities(&self, keep: u64) -> io::Result<()> {
        self.log(format!("capabilities {keep:#x}"));
        Ok(())
    }

    fn set_no_new_privs(&self) -> io::Result<()> {
        self.log("no_new_privs".into());
        Ok(())
    }

    fn cloexec_from(&self, first: u32) -> io::Result<()> {
        self.log(format!("cloexec_from {first}"));
        Ok(())
    }

    fn seccomp(&self, filters: &[seccompiler::BpfProgram]) -> io::Result<()> {
        let lens: Vec<String> = filters.iter().map(|f| f.len().to_string()).collect();
        self.log(format!("seccomp {}", lens.join("+")));
        Ok(())
    }
}
