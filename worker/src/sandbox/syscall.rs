//! The system calls the sandbox makes, behind a trait.
//!
//! [`Linux`] calls the kernel. [`Recorder`] writes down what would be called, so the mount plan
//! is unit-tested without root and without namespaces, as youki does with its `Syscall` trait.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Mount flags the sandbox uses.
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

impl MountFlags {
    fn bits(self) -> libc::c_ulong {
        let mut f = 0;
        let set = |on: bool, bit: libc::c_ulong, f: &mut libc::c_ulong| {
            if on {
                *f |= bit;
            }
        };
        set(self.bind, libc::MS_BIND, &mut f);
        set(self.recursive, libc::MS_REC, &mut f);
        set(self.readonly, libc::MS_RDONLY, &mut f);
        set(self.remount, libc::MS_REMOUNT, &mut f);
        set(self.private, libc::MS_PRIVATE, &mut f);
        set(self.nosuid, libc::MS_NOSUID, &mut f);
        set(self.nodev, libc::MS_NODEV, &mut f);
        set(self.noexec, libc::MS_NOEXEC, &mut f);
        f
    }
}

/// The kernel interface of the sandbox.
pub trait Syscall {
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
    fn pivot_root(&self, new_root: &Path) -> io::Result<()>;
    fn mkdir_all(&self, path: &Path, mode: u32) -> io::Result<()>;
    /// Create an empty file if nothing exists at `path` (a bind target for a file).
    fn touch(&self, path: &Path) -> io::Result<()>;
    fn symlink(&self, target: &str, link: &Path) -> io::Result<()>;
    fn exists(&self, path: &Path) -> bool;
    fn is_dir(&self, path: &Path) -> bool;
    fn sethostname(&self, name: &str) -> io::Result<()>;
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

    /// Resolve the mount target `path` inside `root` (symlinks followed, never out of it) and
    /// create it if missing: a directory, or an empty file when `file`. The default resolves
    /// lexically through this trait's calls, for the recorder; the real kernel resolves with
    /// `openat2(RESOLVE_IN_ROOT)` and hands back a descriptor to mount on.
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
            self.touch(&target)?;
        } else if !self.is_dir(&target) {
            self.mkdir_all(&target, 0o755)?;
        }
        Ok(MountTarget {
            mount: target.clone(),
            inside: target,
            _fd: None,
        })
    }
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

fn cstr(s: &[u8]) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
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
        let source = cstr(source.as_bytes())?;
        let target_c = cstr(target.as_os_str().as_bytes())?;
        let fstype = cstr(fstype.as_bytes())?;
        let data = cstr(data.as_bytes())?;
        let ret = unsafe {
            libc::mount(
                source.as_ptr(),
                target_c.as_ptr(),
                if fstype.as_bytes().is_empty() {
                    std::ptr::null()
                } else {
                    fstype.as_ptr()
                },
                flags.bits(),
                if data.as_bytes().is_empty() {
                    std::ptr::null()
                } else {
                    data.as_ptr().cast()
                },
            )
        };
        check(ret).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "mounting {} on {}: {e}",
                    source.to_string_lossy(),
                    target.display()
                ),
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
            io::Error::new(
                e.kind(),
                format!(
                    "mounting an overlay of {} layers on {}: {e}",
                    lowers.len(),
                    target.display()
                ),
            )
        })
    }

    fn pivot_root(&self, new_root: &Path) -> io::Result<()> {
        // pivot_root(".", ".") stacks the old root under the new one; unmounting "." then
        // detaches the old root without needing a directory for it.
        self.chdir(new_root)?;
        let dot = cstr(b".")?;
        check(unsafe {
            libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) as libc::c_int
        })?;
        check(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) })?;
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

    fn sethostname(&self, name: &str) -> io::Result<()> {
        check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) })
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        let c = cstr(path.as_os_str().as_bytes())?;
        check(unsafe { libc::chdir(c.as_ptr()) })
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
}

const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
/// Follow a symlink at the target: mount targets are `/proc/self/fd/N` of a descriptor resolved
/// inside the container's root, a magic link that must be followed to reach it.
const MOVE_MOUNT_T_SYMLINKS: libc::c_uint = 0x10;

/// overlayfs through fsopen/fsconfig/fsmount: `lowerdir+` (Linux 6.8) adds one layer per call,
/// so the layer count is not limited by the one-page option string of mount(2).
fn overlay_fsmount(
    target: &Path,
    lowers: &[PathBuf],
    upper: Option<&Path>,
    work: Option<&Path>,
    userxattr: bool,
) -> io::Result<()> {
    let name = cstr(b"overlay")?;
    let fs = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), libc::FSOPEN_CLOEXEC) }
        as libc::c_int;
    if fs < 0 {
        return Err(io::Error::last_os_error());
    }
    let close = |fd: libc::c_int| unsafe {
        libc::close(fd);
    };
    let set = |key: &str, value: Option<&[u8]>| -> io::Result<()> {
        let k = cstr(key.as_bytes())?;
        let ret = match value {
            Some(v) => {
                let v = cstr(v)?;
                unsafe {
                    libc::syscall(
                        libc::SYS_fsconfig,
                        fs,
                        FSCONFIG_SET_STRING,
                        k.as_ptr(),
                        v.as_ptr(),
                        0,
                    )
                }
            }
            None => unsafe {
                libc::syscall(
                    libc::SYS_fsconfig,
                    fs,
                    FSCONFIG_SET_FLAG,
                    k.as_ptr(),
                    std::ptr::null::<u8>(),
                    0,
                )
            },
        };
        if ret < 0 {
            return Err(io::Error::new(
                io::Error::last_os_error().kind(),
                format!("overlay option {key}: {}", io::Error::last_os_error()),
            ));
        }
        Ok(())
    };
    let result = (|| {
        for lower in lowers {
            set("lowerdir+", Some(lower.as_os_str().as_bytes()))?;
        }
        if let (Some(upper), Some(work)) = (upper, work) {
            set("upperdir", Some(upper.as_os_str().as_bytes()))?;
            set("workdir", Some(work.as_os_str().as_bytes()))?;
        }
        if userxattr {
            set("userxattr", None)?;
        }
        if unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fs,
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<u8>(),
                std::ptr::null::<u8>(),
                0,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let mnt = unsafe { libc::syscall(libc::SYS_fsmount, fs, libc::FSMOUNT_CLOEXEC, 0) }
            as libc::c_int;
        if mnt < 0 {
            return Err(io::Error::last_os_error());
        }
        let empty = cstr(b"")?;
        let target_c = cstr(target.as_os_str().as_bytes())?;
        let ret = unsafe {
            libc::syscall(
                libc::SYS_move_mount,
                mnt,
                empty.as_ptr(),
                libc::AT_FDCWD,
                target_c.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_SYMLINKS,
            )
        };
        let err = io::Error::last_os_error();
        close(mnt);
        if ret < 0 { Err(err) } else { Ok(()) }
    })();
    close(fs);
    result
}

/// A fake kernel that records every call and succeeds, for unit tests.
#[derive(Default)]
pub struct Recorder {
    pub calls: Mutex<Vec<String>>,
    /// Paths that exist (everything else does not).
    pub existing: Mutex<Vec<PathBuf>>,
}

impl Recorder {
    fn log(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Syscall for Recorder {
    fn mount(
        &self,
        source: &str,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: &str,
    ) -> io::Result<()> {
        let mut f = Vec::new();
        for (on, name) in [
            (flags.bind, "bind"),
            (flags.recursive, "rec"),
            (flags.readonly, "ro"),
            (flags.remount, "remount"),
            (flags.private, "private"),
            (flags.nosuid, "nosuid"),
            (flags.nodev, "nodev"),
            (flags.noexec, "noexec"),
        ] {
            if on {
                f.push(name);
            }
        }
        let flags = format!("[{}]", f.join(","));
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
        self.exists(path)
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.log(format!("sethostname {name}"));
        Ok(())
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
}
