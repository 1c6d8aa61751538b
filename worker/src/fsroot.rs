//! A directory that is a root, and the operations a build does inside it.
//!
//! Every path a build controls (a Dockerfile's mount target, a layer's or an archive's entry
//! names, what a step left in its upper directory) is resolved from a directory descriptor with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, and the object it names is then changed
//! through the descriptor that call returned (`fchmod`, `fchownat(AT_EMPTY_PATH)`, `futimens`,
//! `fsetxattr`), or through `*at` calls on its parent's descriptor with `AT_SYMLINK_NOFOLLOW`.
//! A path string checked and then used again later is a race that a hostile step (or a second
//! build sharing a cache directory) can win, swapping a directory for a symlink in between; a
//! descriptor keeps pointing at what was checked.
//!
//! - `..` and absolute symlink targets never leave the root ([`Follow::InRoot`], the kernel's
//!   chroot semantics), or any symlink at all is refused ([`Follow::Never`]);
//! - `/proc/self/fd/N` is used only for descriptors this module opened itself: to `chmod` or
//!   set times on an `O_PATH` descriptor (which `fchmod` does not accept), and as the target of
//!   a mount, which then lands on the very directory that was resolved.
//!
//! [`resolve_lexically`] is the same resolution done over a tree that is not a single directory
//! (the merged view of a stack of layers), given a way to read a link.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Timespec, Timestamps};
use rustix::io::Errno;

/// Symlinks followed before a lookup gives up with `ELOOP` (Linux's own limit is 40).
pub const MAX_SYMLINKS: usize = 255;

/// How symlinks on the way are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Follow them as the kernel would inside a chroot at the root: `..` stops at the root and
    /// absolute targets start from it.
    InRoot,
    /// As `InRoot` for the parents; the last component is never followed (`lstat`).
    NotLast,
    /// Refuse any symlink, the last component included (`ELOOP`).
    Never,
}

/// An open directory that paths are resolved in, and never out of.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    /// Open `path` (a path the caller trusts, such as a snapshot directory in the store) as a
    /// root.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// The path the root was opened from: for messages only, never to act on.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// `openat2` inside the root. `rel` may be absolute: it is taken from the root either way.
    pub fn open_at(&self, rel: &Path, follow: Follow, flags: OFlags) -> io::Result<OwnedFd> {
        open_beneath(self.fd.as_fd(), rel, follow, flags, true)
    }

    /// An `O_PATH` descriptor of whatever `rel` names: enough to stat it, to use it as the
    /// directory of `*at` calls, and to mount on.
    pub fn open_path(&self, rel: &Path, follow: Follow) -> io::Result<OwnedFd> {
        self.open_at(rel, follow, OFlags::PATH)
    }

    /// A directory, opened for reading (`fchmod`, `fsetxattr` and listing work on it).
    pub fn open_dir(&self, rel: &Path, follow: Follow) -> io::Result<OwnedFd> {
        self.open_at(rel, follow, OFlags::RDONLY | OFlags::DIRECTORY)
    }

    /// The directory that holds `rel`, and the last component's name. The name is never `..`
    /// or empty: `rel` is cleaned lexically first, and the root itself has no parent.
    pub fn open_parent(&self, rel: &Path, follow: Follow) -> io::Result<(OwnedFd, OsString)> {
        let comps = normal_components(rel).ok_or_else(escapes)?;
        let (name, parents) = comps
            .split_last()
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        let parent: PathBuf = parents.iter().collect();
        let parent_follow = if follow == Follow::Never {
            Follow::Never
        } else {
            Follow::InRoot
        };
        let fd = self.open_at(&parent, parent_follow, OFlags::PATH | OFlags::DIRECTORY)?;
        Ok((fd, name.clone()))
    }

    /// `mkdir -p` inside the root: every missing directory of `rel` is created with `mode`, and
    /// a descriptor (`O_PATH`) of the last one returned. With [`Follow::InRoot`] symlinks on the
    /// way are followed inside the root (a dangling one gets its target created, as `mkdir -p`
    /// through a chroot would); with [`Follow::Never`] any symlink is an error.
    pub fn mkdir_all(&self, rel: &Path, mode: u32, follow: Follow) -> io::Result<OwnedFd> {
        let follow = if follow == Follow::NotLast {
            Follow::InRoot
        } else {
            follow
        };
        let dir = OFlags::PATH | OFlags::DIRECTORY;
        match self.open_at(rel, follow, dir) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            other => return other,
        }
        // Slow path: one component at a time, each new directory made in the descriptor of its
        // parent and the walk resumed from the root, so a directory swapped for a symlink
        // between the two steps is resolved inside the root again, never outside.
        let mut pending: Vec<OsString> = lexical_components(rel);
        pending.reverse();
        let mut done = PathBuf::new();
        let mut hops = 0;
        let mut current = self.open_at(Path::new(""), Follow::Never, dir)?;
        while let Some(comp) = pending.pop() {
            let next = done.join(&comp);
            match self.open_at(&next, follow, dir) {
                Ok(fd) => {
                    current = fd;
                    done = next;
                    continue;
                }
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) || comp == ".." => return Err(e),
                Err(_) => {}
            }
            match rustix::fs::mkdirat(&current, comp.as_os_str(), Mode::from_raw_mode(mode)) {
                Ok(()) => {}
                Err(Errno::EXIST) if follow == Follow::InRoot => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(Errno::LOOP.into());
                    }
                    // A dangling symlink: make its target instead, from where it points. Not a
                    // symlink: someone made the directory meanwhile; look again.
                    let target =
                        match rustix::fs::readlinkat(&current, comp.as_os_str(), Vec::new()) {
                            Ok(t) => t,
                            Err(Errno::INVAL) => {
                                pending.push(comp);
                                continue;
                            }
                            Err(e) => return Err(e.into()),
                        };
                    let target = PathBuf::from(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        done = PathBuf::new();
                        current = self.open_at(Path::new(""), Follow::Never, dir)?;
                    }
                    let mut more = lexical_components(&target);
                    more.reverse();
                    pending.extend(more);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            current = self.open_at(&next, follow, dir)?;
            done = next;
        }
        Ok(current)
    }

    /// Create (or truncate) a regular file for writing, never through a symlink in its last
    /// component.
    pub fn create(&self, rel: &Path, mode: u32) -> io::Result<File> {
        let fd = self
            .open_at(
                rel,
                Follow::NotLast,
                OFlags::WRONLY | OFlags::CREATE | OFlags::TRUNC | OFlags::NOFOLLOW,
            )
            .and_then(|fd| {
                set_mode(fd.as_fd(), mode)?;
                Ok(fd)
            })?;
        Ok(File::from(fd))
    }

    /// Remove `rel` (a file, a symlink, or a directory with everything below it) without
    /// following any symlink. A missing path is not an error.
    pub fn remove_all(&self, rel: &Path) -> io::Result<()> {
        match self.open_parent(rel, Follow::NotLast) {
            Ok((parent, name)) => remove_at(parent.as_fd(), &name),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Read the symlink `rel` (its parents followed inside the root).
    pub fn read_link(&self, rel: &Path) -> io::Result<PathBuf> {
        let (parent, name) = self.open_parent(rel, Follow::NotLast)?;
        let target = rustix::fs::readlinkat(&parent, name.as_os_str(), Vec::new())?;
        Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
    }

    /// Where `rel` resolves to inside the root, as a path relative to it (for messages and for
    /// trees mounted afresh on it; act on the descriptor, not on this path).
    pub fn resolve(&self, rel: &Path, follow: Follow) -> io::Result<PathBuf> {
        let fd = self.open_path(rel, follow)?;
        self.resolve_fd(fd.as_fd())
    }

    /// Where a descriptor opened inside the root lies, relative to it.
    pub fn resolve_fd(&self, fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
        let here = fd_path(fd)?;
        let top = fd_path(self.fd.as_fd())?;
        here.strip_prefix(&top)
            .map(Path::to_path_buf)
            .map_err(|_| escapes())
    }
}

impl Root {
    /// Give the directory `rel` this mode and modification time, through a descriptor reached
    /// without following any symlink. `Ok(false)` when there is no such directory any more
    /// (something replaced it, a symlink perhaps): then there is nothing of ours to change, and
    /// a `chmod` by path would have followed the symlink.
    pub fn set_dir_meta(&self, rel: &Path, mode: u32, mtime: i64) -> io::Result<bool> {
        let fd = match self.open_dir(rel, Follow::Never) {
            Ok(fd) => fd,
            // Not readable (a parent or the directory itself is locked): O_PATH suffices.
            Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
                self.open_at(rel, Follow::Never, OFlags::PATH | OFlags::DIRECTORY)?
            }
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENOTDIR | libc::ENOENT)
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        set_mode(fd.as_fd(), mode)?;
        set_times(fd.as_fd(), mtime)?;
        Ok(true)
    }
}

/// `openat2(dirfd, rel)` with the root's resolve rules. `in_root` picks `RESOLVE_IN_ROOT`
/// (symlinks resolved against `dirfd`) over `RESOLVE_BENEATH` (any escape is an error).
fn open_beneath(
    dirfd: BorrowedFd<'_>,
    rel: &Path,
    follow: Follow,
    flags: OFlags,
    in_root: bool,
) -> io::Result<OwnedFd> {
    let mut resolve = ResolveFlags::NO_MAGICLINKS;
    resolve |= if in_root {
        ResolveFlags::IN_ROOT
    } else {
        ResolveFlags::BENEATH
    };
    let mut flags = flags | OFlags::CLOEXEC;
    match follow {
        Follow::InRoot => {}
        Follow::NotLast => flags |= OFlags::NOFOLLOW,
        Follow::Never => {
            resolve |= ResolveFlags::NO_SYMLINKS;
            flags |= OFlags::NOFOLLOW;
        }
    }
    let bytes = rel.as_os_str().as_bytes();
    let start = bytes.iter().take_while(|&&b| b == b'/').count();
    let rel: &OsStr = match &bytes[start..] {
        [] => OsStr::new("."),
        rest => OsStr::from_bytes(rest),
    };
    // RESOLVE_IN_ROOT answers EAGAIN when a rename elsewhere raced the lookup: try again.
    // openat2 wants no mode unless it creates.
    let mode = if flags.contains(OFlags::CREATE) {
        Mode::from_raw_mode(0o600)
    } else {
        Mode::empty()
    };
    let mut tries = 0;
    loop {
        match rustix::fs::openat2(dirfd, rel, flags, mode, resolve) {
            Err(Errno::AGAIN) if tries < 64 => tries += 1,
            other => return other.map_err(Into::into),
        }
    }
}

/// Remove `name` in `dir`, recursively and without following symlinks.
pub fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(e.into()),
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::NOTEMPTY) | Err(Errno::EXIST) | Err(Errno::ACCESS) => {}
        Err(e) => return Err(e.into()),
    }
    let child = match open_child_dir(dir, name) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::EACCES) => {
            // A step can leave `chmod 0` directories behind: open it up, then empty it.
            let p = open_beneath(dir, Path::new(name), Follow::Never, OFlags::PATH, false)?;
            set_mode(p.as_fd(), 0o700)?;
            open_child_dir(dir, name)?
        }
        Err(e) => return Err(e),
    };
    if rustix::fs::fstat(&child)?.st_mode & 0o700 != 0o700 {
        set_mode(child.as_fd(), 0o700)?;
    }
    for name in list(child.as_fd())? {
        remove_at(child.as_fd(), &name)?;
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn open_child_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<OwnedFd> {
    open_beneath(
        dir,
        Path::new(name),
        Follow::Never,
        OFlags::RDONLY | OFlags::DIRECTORY,
        false,
    )
}

/// The names in a directory (an `O_RDONLY` descriptor), `.` and `..` left out, in no order.
pub fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    let mut out = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            out.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    Ok(out)
}

/// Whether a directory (an `O_RDONLY` descriptor) has no entries.
pub fn is_empty_dir(dir: BorrowedFd<'_>) -> io::Result<bool> {
    for entry in rustix::fs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `/proc/self/fd/N` of a descriptor this process holds.
pub fn proc_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Whether `path` is a descriptor's `/proc/self/fd/N`, as [`proc_path`] makes them.
pub fn is_proc_path(path: &Path) -> bool {
    path.parent() == Some(Path::new("/proc/self/fd"))
        && path
            .file_name()
            .is_some_and(|n| !n.is_empty() && n.as_bytes().iter().all(u8::is_ascii_digit))
}

fn fd_path(fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
    std::fs::read_link(proc_path(fd))
}

/// `chmod` of the object a descriptor names. `fchmod` refuses `O_PATH` descriptors, so those go
/// through `/proc/self/fd/N`, which names the same inode whatever happened to its path.
pub fn set_mode(fd: BorrowedFd<'_>, mode: u32) -> io::Result<()> {
    let mode = Mode::from_raw_mode(mode & 0o7777);
    match rustix::fs::fchmod(fd, mode) {
        Err(Errno::BADF) => Ok(rustix::fs::chmod(proc_path(fd), mode)?),
        other => Ok(other?),
    }
}

/// `chown` of the object a descriptor names (a symlink's own owner for an `O_PATH` descriptor
/// of one).
pub fn set_owner(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::chownat(
        fd,
        "",
        id(uid).map(rustix::fs::Uid::from_raw),
        id(gid).map(rustix::fs::Gid::from_raw),
        AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// `-1` leaves an id unchanged: never pass it on as an id.
fn id(raw: u32) -> Option<u32> {
    (raw != u32::MAX).then_some(raw)
}

/// The access and modification times of a descriptor's object, both set to `secs`.
pub fn set_times(fd: BorrowedFd<'_>, secs: i64) -> io::Result<()> {
    let t = times(secs);
    match rustix::fs::futimens(fd, &t) {
        Err(Errno::BADF) => Ok(rustix::fs::utimensat(
            rustix::fs::CWD,
            proc_path(fd),
            &t,
            AtFlags::empty(),
        )?),
        other => Ok(other?),
    }
}

fn times(secs: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// An xattr of a descriptor's object.
pub fn set_xattr(fd: BorrowedFd<'_>, name: &str, value: &[u8]) -> io::Result<()> {
    let flags = rustix::fs::XattrFlags::empty();
    match rustix::fs::fsetxattr(fd, name, value, flags) {
        Err(Errno::BADF) => Ok(rustix::fs::setxattr(proc_path(fd), name, value, flags)?),
        other => Ok(other?),
    }
}

/// `chown` of `name` in `dir`, never following it.
pub fn set_owner_at(dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
    Ok(rustix::fs::chownat(
        dir,
        name,
        id(uid).map(rustix::fs::Uid::from_raw),
        id(gid).map(rustix::fs::Gid::from_raw),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// The times of `name` in `dir` (a symlink's own), never following it.
pub fn set_times_at(dir: BorrowedFd<'_>, name: &OsStr, secs: i64) -> io::Result<()> {
    Ok(rustix::fs::utimensat(
        dir,
        name,
        &times(secs),
        AtFlags::SYMLINK_NOFOLLOW,
    )?)
}

/// `chmod` of `name` in `dir`, never following it (a symlink there is left alone: Linux has no
/// mode for symlinks).
pub fn set_mode_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> io::Result<()> {
    let fd = open_beneath(dir, Path::new(name), Follow::NotLast, OFlags::PATH, false)?;
    if rustix::fs::fstat(&fd)?.st_mode & libc::S_IFMT == libc::S_IFLNK {
        return Ok(());
    }
    set_mode(fd.as_fd(), mode)
}

fn escapes() -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        "path climbs above its root",
    )
}

/// The normal components of a path cleaned lexically (`.` dropped, `..` popping the one
/// before); `None` when a `..` climbs above the start.
pub fn normal_components(path: &Path) -> Option<Vec<OsString>> {
    let mut out: Vec<OsString> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::ParentDir => {
                out.pop()?;
            }
            _ => {}
        }
    }
    Some(out)
}

/// The normal and `..` components of a path, in order (what a symlink-aware walk consumes).
fn lexical_components(path: &Path) -> Vec<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// Resolve `rel` inside a root the kernel cannot see as one directory (the merged view of a
/// stack of layers), with the rules of [`Follow::InRoot`]: `read_link(p)` answers the target of
/// `p` (relative to the root, symlinks already resolved in its parents) when `p` is a symlink.
/// The last component is followed only when `follow_last` is set; the result need not exist.
pub fn resolve_lexically(
    rel: &Path,
    follow_last: bool,
    read_link: &mut dyn FnMut(&Path) -> io::Result<Option<PathBuf>>,
) -> io::Result<PathBuf> {
    let mut resolved: Vec<OsString> = Vec::new();
    let mut pending = lexical_components(rel);
    pending.reverse();
    let mut hops = 0;
    while let Some(comp) = pending.pop() {
        if comp == ".." {
            resolved.pop();
            continue;
        }
        let mut candidate: PathBuf = resolved.iter().collect();
        candidate.push(&comp);
        let is_last = pending.is_empty();
        let target = if !is_last || follow_last {
            read_link(&candidate)?
        } else {
            None
        };
        match target {
            Some(target) => {
                hops += 1;
                if hops > MAX_SYMLINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                if target.is_absolute() {
                    resolved.clear();
                }
                let mut more = lexical_components(&target);
                more.reverse();
                pending.extend(more);
            }
            None => resolved.push(comp),
        }
    }
    Ok(resolved.iter().collect())
}

/// Hold `flock` on `file` (`exclusive` or shared), waiting unless `wait` is false. `Ok(false)`:
/// someone else holds it and `wait` is false.
pub fn lock(file: &File, exclusive: bool, wait: bool) -> io::Result<bool> {
    use rustix::fs::FlockOperation as Op;
    let op = match (exclusive, wait) {
        (true, true) => Op::LockExclusive,
        (true, false) => Op::NonBlockingLockExclusive,
        (false, true) => Op::LockShared,
        (false, false) => Op::NonBlockingLockShared,
    };
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};

    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("secret"), b"host").unwrap();
        fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o644)).unwrap();
        (d, root, outside)
    }

    #[test]
    fn absolute_and_climbing_symlinks_stay_inside() {
        let (_d, root, outside) = setup();
        symlink(&outside, root.join("abs")).unwrap();
        symlink("../../../../outside", root.join("etc/up")).unwrap();
        let r = Root::open(&root).unwrap();
        assert_eq!(
            r.resolve(Path::new("abs"), Follow::InRoot)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ENOENT),
            "{} is looked up inside the root",
            outside.display()
        );
        let dir = r
            .mkdir_all(Path::new("abs/made"), 0o755, Follow::InRoot)
            .unwrap();
        set_mode(dir.as_fd(), 0o700).unwrap();
        assert!(
            root.join(outside.strip_prefix("/").unwrap())
                .join("made")
                .is_dir()
        );
        assert!(!outside.join("made").exists());
        r.mkdir_all(Path::new("etc/up/x"), 0o755, Follow::InRoot)
            .unwrap();
        assert!(root.join("outside/x").is_dir());
        assert_eq!(
            r.mkdir_all(Path::new("abs/y"), 0o755, Follow::Never)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(
            r.resolve(Path::new("/../../etc"), Follow::InRoot).unwrap(),
            Path::new("etc")
        );
    }

    #[test]
    fn modes_owners_and_times_go_through_descriptors() {
        let (_d, root, outside) = setup();
        let r = Root::open(&root).unwrap();
        symlink(outside.join("secret"), root.join("link")).unwrap();
        // Whatever the last component is, a symlink there is not followed.
        set_mode_at(r.fd(), OsStr::new("link"), 0o6777).unwrap();
        set_times_at(r.fd(), OsStr::new("link"), 5).unwrap();
        let uid = fs::metadata(outside.join("secret")).unwrap().uid();
        set_owner_at(r.fd(), OsStr::new("link"), uid, u32::MAX).unwrap();
        let m = fs::metadata(outside.join("secret")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o644);
        assert_ne!(m.mtime(), 5);
        assert_eq!(fs::symlink_metadata(root.join("link")).unwrap().mtime(), 5);
        let fd = r.open_path(Path::new("etc"), Follow::Never).unwrap();
        set_mode(fd.as_fd(), 0o751).unwrap();
        set_times(fd.as_fd(), 7).unwrap();
        let m = fs::metadata(root.join("etc")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o751, 7));
        assert!(r.open_dir(Path::new("link"), Follow::Never).is_err());
        // O_PATH of a symlink names the symlink itself.
        let l = r.open_path(Path::new("link"), Follow::Never).unwrap();
        assert_eq!(
            rustix::fs::fstat(&l).unwrap().st_mode & libc::S_IFMT,
            libc::S_IFLNK
        );
    }

    #[test]
    fn remove_all_never_follows_and_empties_locked_dirs() {
        let (_d, root, outside) = setup();
        let r = Root::open(&root).unwrap();
        fs::create_dir_all(root.join("t/ro/deep")).unwrap();
        fs::write(root.join("t/ro/deep/f"), b"x").unwrap();
        symlink(&outside, root.join("t/ro/out")).unwrap();
        fs::set_permissions(root.join("t/ro/deep"), fs::Permissions::from_mode(0o0)).unwrap();
        fs::set_permissions(root.join("t/ro"), fs::Permissions::from_mode(0o500)).unwrap();
        r.remove_all(Path::new("t")).unwrap();
        assert!(!root.join("t").exists());
        assert!(outside.join("secret").exists());
        symlink(&outside, root.join("l")).unwrap();
        r.remove_all(Path::new("l/secret")).unwrap();
        assert!(outside.join("secret").exists());
        r.remove_all(Path::new("missing")).unwrap();
    }

    #[test]
    fn create_and_read_link() {
        let (_d, root, outside) = setup();
        let r = Root::open(&root).unwrap();
        symlink(outside.join("secret"), root.join("etc/l")).unwrap();
        assert_eq!(
            r.create(Path::new("etc/l"), 0o600)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
        assert_eq!(fs::read(outside.join("secret")).unwrap(), b"host");
        assert_eq!(
            r.read_link(Path::new("/etc/l")).unwrap(),
            outside.join("secret")
        );
        use std::io::Write;
        r.create(Path::new("etc/new"), 0o640)
            .unwrap()
            .write_all(b"n")
            .unwrap();
        let m = fs::metadata(root.join("etc/new")).unwrap();
        assert_eq!(m.mode() & 0o777, 0o640);
    }

    #[test]
    fn only_a_descriptors_own_proc_path_is_one() {
        let f = File::open("/").unwrap();
        assert!(is_proc_path(&proc_path(f.as_fd())));
        for p in [
            "/proc/self/fd",
            "/proc/self/fd/",
            "/proc/self/fd/3/x",
            "/proc/1/fd/3",
        ] {
            assert!(!is_proc_path(Path::new(p)), "{p}");
        }
        assert!(!is_proc_path(Path::new("/proc/self/fd/3a")));
    }

    #[test]
    fn the_lexical_resolver_agrees_with_the_kernel() {
        let (_d, root, _outside) = setup();
        symlink("/etc", root.join("e")).unwrap();
        symlink("../../e/../etc/x", root.join("etc/c")).unwrap();
        symlink("l2", root.join("l1")).unwrap();
        symlink("l1", root.join("l2")).unwrap();
        let r = Root::open(&root).unwrap();
        let mut read = |p: &Path| -> io::Result<Option<PathBuf>> {
            match fs::symlink_metadata(root.join(p)) {
                Ok(m) if m.file_type().is_symlink() => Ok(Some(fs::read_link(root.join(p))?)),
                _ => Ok(None),
            }
        };
        fs::write(root.join("etc/x"), b"").unwrap();
        for p in ["e/c", "e/../e/x", "etc/c"] {
            assert_eq!(
                resolve_lexically(Path::new(p), true, &mut read).unwrap(),
                r.resolve(Path::new(p), Follow::InRoot).unwrap(),
                "{p}"
            );
        }
        assert_eq!(
            resolve_lexically(Path::new("l1"), true, &mut read)
                .unwrap_err()
                .raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// Whatever symlinks a build plants and whatever paths it asks for, `mkdir -p`, open,
        /// create and remove inside a root never touch anything beside it, and never panic.
        #[test]
        fn nothing_escapes_the_root(
            links in proptest::collection::vec(("[ab]{1,2}", "(/|\\.\\./|\\.\\./\\.\\./)?[ab./]{0,6}"), 0..4),
            paths in proptest::collection::vec("(/|\\.\\./)?[ab./]{0,10}", 1..6),
        ) {
            let d = tempfile::tempdir().unwrap();
            let root = d.path().join("root");
            let outside = d.path().join("outside");
            fs::create_dir_all(&root).unwrap();
            fs::create_dir_all(&outside).unwrap();
            for (name, target) in &links {
                let target = target.replace("outside", "x");
                let _ = symlink(&target, root.join(name));
            }
            let r = Root::open(&root).unwrap();
            for p in &paths {
                let p = Path::new(p);
                let _ = r.mkdir_all(p, 0o755, Follow::InRoot);
                let _ = r.mkdir_all(p, 0o755, Follow::Never);
                let _ = r.create(&p.join("f"), 0o644);
                let _ = r.resolve(p, Follow::InRoot);
                let _ = r.read_link(p);
                let _ = r.remove_all(&p.join("f"));
            }
            let beside: Vec<_> = fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name()).collect();
            proptest::prop_assert_eq!(beside.len(), 2, "{:?}", beside);
            proptest::prop_assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
        }
    }
}
