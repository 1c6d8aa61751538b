//! Unpacking tarballs: layers into snapshot directories, and `ADD` archives into a root.
//!
//! Nothing a tarball says may reach outside the destination:
//! - entry names are cleaned lexically, and a `..` that would climb above the root is refused;
//! - every parent directory is reached one name at a time from the destination's descriptor
//!   ([`crate::fsroot`]), never through a symlink, so one planted by an earlier entry
//!   (`a -> /etc`, then `a/passwd`) is refused instead of followed;
//! - hardlink targets are resolved the same way and must be non-directories inside the root;
//! - owners, modes, times and xattrs are set through the descriptor of what was just created,
//!   or `*at` calls that do not follow; directories' modes and times, applied at the end, are
//!   applied to the directory opened again without following anything, so an entry that
//!   replaced a directory with a symlink does not redirect a `chmod` to the host;
//! - only the extended attributes an image may carry are applied ([`xattr_allowed`]).
//!
//! In layer mode, OCI whiteouts become overlayfs whiteouts (a 0:0 character device, which Linux
//! lets anyone create since 5.8) and opaque markers become the `overlay.opaque` xattr, so the
//! directory can serve directly as an overlayfs lower layer.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, FileType, Mode, OFlags, linkat, mkdirat, mknodat, statat, symlinkat};
use rustix::io::Errno;
use tar::EntryType;
use thiserror::Error;

use super::diff::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::digest::{Digest, HashingReader};
use crate::fsroot::{self, Follow, Root};

/// Why a tarball could not be unpacked.
#[derive(Debug, Error)]
pub enum ExtractError {
    #[error("tar entry {0:?} escapes the destination")]
    Escape(String),
    #[error("tar entry {0:?} would be written through the symlink {1:?}")]
    ThroughSymlink(String, String),
    #[error("tar entry {0:?} is a hardlink to {1:?}, which is not a file in this archive")]
    BadLink(String, String),
    #[error("reading the archive: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    TooLarge(String),
}

impl From<Errno> for ExtractError {
    fn from(e: Errno) -> Self {
        ExtractError::Io(e.into())
    }
}

/// How to unpack.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    /// Translate OCI whiteouts into overlayfs whiteouts (layer mode). Without it (ADD of an
    /// archive), `.wh.` files are ordinary files.
    pub layer: bool,
    /// The xattr namespace overlayfs reads opaque markers from: `trusted` as root, `user` in a
    /// user namespace (`userxattr`).
    pub overlay_xattr_prefix: &'static str,
    /// Give every entry this owner instead of the archive's (`ADD --chown`).
    pub chown: Option<(u32, u32)>,
    /// Ignore ownership changes the process may not make (a single-id user namespace).
    pub ignore_chown_errors: bool,
    /// Stop with [`ExtractError::TooLarge`] past these bounds (`ADD` of an archive; a layer is
    /// bounded by its digest-checked size instead).
    pub limits: Option<crate::fetch::Limits>,
}

impl UnpackOptions {
    /// An image layer unpacked into a snapshot as this process's user namespace allows: OCI
    /// whiteouts as overlayfs ones, the archive's owners (unless the namespace maps one id).
    pub fn image_layer() -> UnpackOptions {
        UnpackOptions {
            layer: true,
            overlay_xattr_prefix: crate::userns::overlay_xattr_prefix(),
            chown: None,
            ignore_chown_errors: matches!(
                crate::userns::current(),
                Some(crate::userns::Mapping::Single { .. })
            ),
            limits: None,
        }
    }
}

/// What an unpack produced.
#[derive(Debug, Clone)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar stream: the layer's diff id.
    pub diff_id: Digest,
    pub size: u64,
    pub entries: u64,
}

/// The compression of a stream, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Gzip,
    Zstd,
    Bzip2,
    Xz,
    Plain,
}

pub fn sniff(head: &[u8]) -> Format {
    match head {
        [0x1f, 0x8b, ..] => Format::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Format::Zstd,
        [b'B', b'Z', b'h', ..] => Format::Bzip2,
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Format::Xz,
        _ => Format::Plain,
    }
}

/// A reader that decompresses whatever compression the stream starts with.
pub fn decompress<'a, R: Read + 'a>(reader: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut reader = BufReader::with_capacity(1 << 20, reader);
    let head = io::BufRead::fill_buf(&mut reader)?.to_vec();
    Ok(match sniff(&head) {
        Format::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(reader)),
        Format::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(reader)?),
        Format::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(reader)),
        Format::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(reader)),
        Format::Plain => Box::new(reader),
    })
}

/// Unpack a (possibly compressed) tarball into `dest`, which must exist.
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<Unpacked, ExtractError> {
    let packed = Rc::new(std::cell::Cell::new(0u64));
    let exceeded = Rc::new(std::cell::Cell::new(None::<String>));
    let counted = Counted {
        inner: reader,
        count: packed.clone(),
    };
    let unpacked: Box<dyn Read> = match opts.limits {
        None => decompress(counted)?,
        Some(limits) => Box::new(Bounded {
            inner: decompress(counted)?,
            read: 0,
            packed,
            limits,
            exceeded: exceeded.clone(),
        }),
    };
    let mut hashing = HashingReader::new(unpacked);
    let result = unpack_tar(&mut hashing, dest, opts).and_then(|entries| {
        // Read the end-of-archive blocks and padding too: the diff id covers the whole stream.
        io::copy(&mut hashing, &mut io::sink())?;
        Ok(entries)
    });
    if let Some(why) = exceeded.take() {
        return Err(ExtractError::TooLarge(why));
    }
    let entries = result?;
    let (diff_id, size) = hashing.finish();
    Ok(Unpacked {
        diff_id,
        size,
        entries,
    })
}

/// Counts the bytes read through it (the packed size of an archive).
struct Counted<R> {
    inner: R,
    count: Rc<std::cell::Cell<u64>>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Fails the read that takes an archive's unpacked size past [`crate::fetch::Limits`].
struct Bounded<R> {
    inner: R,
    read: u64,
    packed: Rc<std::cell::Cell<u64>>,
    limits: crate::fetch::Limits,
    exceeded: Rc<std::cell::Cell<Option<String>>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        let packed = self.packed.get().max(1);
        let why = if self.read > self.limits.max_bytes {
            Some(format!(
                "the archive unpacks to more than {} bytes (raise the limit with --add-max-bytes or {})",
                self.limits.max_bytes,
                crate::fetch::ADD_MAX_BYTES
            ))
        } else if self.read > 64 << 20 && self.read / packed > self.limits.max_ratio {
            Some(format!(
                "the archive unpacks to more than {} times its size ({packed} bytes became over {}; raise the limit with --add-max-ratio or {})",
                self.limits.max_ratio,
                self.read,
                crate::fetch::ADD_MAX_RATIO
            ))
        } else {
            None
        };
        if let Some(why) = why {
            self.exceeded.set(Some(why.clone()));
            return Err(io::Error::other(why));
        }
        Ok(n)
    }
}

fn unpack_tar(
    reader: &mut impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<u64, ExtractError> {
    let root = Root::open(dest)?;
    let mut archive = tar::Archive::new(reader);
    let mut dirs: Vec<(PathBuf, u32, i64)> = Vec::new();
    let mut count = 0;
    let mut parents = Parents::default();
    let mut dropped: Vec<String> = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path_bytes().into_owned();
        let display = String::from_utf8_lossy(&raw).into_owned();
        let Some(rel) =
            clean(OsStr::from_bytes(&raw)).map_err(|_| ExtractError::Escape(display.clone()))?
        else {
            continue; // the root itself
        };
        count += 1;
        let header = entry.header().clone();
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let parent = parents.get(&root, &parent_rel, &display)?;
        let parent = parent.as_fd();

        if opts.layer && name.as_bytes() == OPAQUE_MARKER.as_bytes() {
            fsroot::set_xattr(
                parent,
                &format!("{}.overlay.opaque", opts.overlay_xattr_prefix),
                b"y",
            )?;
            continue;
        }
        if opts.layer && name.as_bytes().starts_with(WHITEOUT_PREFIX.as_bytes()) {
            let target = OsStr::from_bytes(&name.as_bytes()[WHITEOUT_PREFIX.len()..]);
            parents.forget(&parent_rel.join(target));
            fsroot::remove_at(parent, target)?;
            mknodat(parent, target, FileType::CharacterDevice, Mode::empty(), 0)?;
            continue;
        }

        let kind = header.entry_type();
        // An entry replaces what was there, except a directory over a directory, which merges.
        let existing = statat(parent, &name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let is_dir = |st: &rustix::fs::Stat| st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        let merge = existing.as_ref().is_some_and(is_dir) && kind == EntryType::Directory;
        if existing.is_some() && !merge {
            parents.forget(&rel);
            fsroot::remove_at(parent, &name)?;
        }
        let mode = header.mode()? & 0o7777;
        let mtime = header.mtime()? as i64;
        let (uid, gid) = opts
            .chown
            .unwrap_or((header.uid()? as u32, header.gid()? as u32));
        let xattrs = xattrs_of(&mut entry, &mut dropped);
        // What the entry became: a descriptor of it, or its name in `parent` for what cannot be
        // opened without side effects (a symlink, a fifo, a device).
        let fd: Option<OwnedFd> = match kind {
            EntryType::Directory => {
                if !merge {
                    mkdirat(parent, &name, Mode::from_raw_mode(0o755))?;
                }
                dirs.push((rel.clone(), mode, mtime));
                Some(open_child(
                    parent,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY,
                )?)
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let fd = open_child(
                    parent,
                    &name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
                )?;
                let mut file = File::from(fd);
                io::copy(&mut entry, &mut file)?;
                Some(file.into())
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| ExtractError::Escape(display.clone()))?;
                symlinkat(OsStr::from_bytes(&target), parent, &name)?;
                None
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| ExtractError::BadLink(display.clone(), String::new()))?
                    .into_owned();
                let target_display = String::from_utf8_lossy(&target_raw).into_owned();
                let bad = || ExtractError::BadLink(display.clone(), target_display.clone());
                let target_rel = clean(OsStr::from_bytes(&target_raw))
                    .ok()
                    .flatten()
                    .ok_or_else(bad)?;
                let (tparent, tname) = match root.open_parent(&target_rel, Follow::Never) {
                    Ok(p) => p,
                    Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                        return Err(ExtractError::ThroughSymlink(display, target_display));
                    }
                    Err(_) => return Err(bad()),
                };
                match statat(&tparent, &tname, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if !is_dir(&st) => {
                        linkat(&tparent, &tname, parent, &name, AtFlags::empty())?
                    }
                    _ => return Err(bad()),
                }
                continue; // a hardlink shares its target's metadata
            }
            EntryType::Fifo => {
                mknodat(
                    parent,
                    &name,
                    FileType::Fifo,
                    Mode::from_raw_mode(mode & 0o777),
                    0,
                )?;
                None
            }
            EntryType::Char | EntryType::Block => {
                let major = header.device_major()?.unwrap_or(0);
                let minor = header.device_minor()?.unwrap_or(0);
                let ty = if kind == EntryType::Char {
                    FileType::CharacterDevice
                } else {
                    FileType::BlockDevice
                };
                if let Err(e) = mknodat(
                    parent,
                    &name,
                    ty,
                    Mode::from_raw_mode(mode & 0o777),
                    rustix::fs::makedev(major, minor),
                ) {
                    // Device nodes need CAP_MKNOD in the initial namespace; rootless builders
                    // skip them, as BuildKit and buildah do.
                    if e != Errno::PERM {
                        return Err(io::Error::from(e).into());
                    }
                    continue;
                }
                None
            }
            _ => continue,
        };
        // Owner, then mode, then xattrs: a chown clears `security.capability`, so the xattrs
        // are set after it; the times last.
        match &fd {
            Some(fd) => {
                chown_ok(fsroot::set_owner(fd.as_fd(), uid, gid), opts)?;
                if kind != EntryType::Directory {
                    fsroot::set_mode(fd.as_fd(), mode)?;
                }
                for (k, v) in &xattrs {
                    // Some namespaces are off limits without privilege; an image is still
                    // usable without them, as BuildKit's rootless mode also accepts.
                    let _ = fsroot::set_xattr(fd.as_fd(), k, v);
                }
                if kind != EntryType::Directory {
                    fsroot::set_times(fd.as_fd(), mtime)?;
                }
            }
            None => {
                chown_ok(fsroot::set_owner_at(parent, &name, uid, gid), opts)?;
                if kind != EntryType::Symlink {
                    fsroot::set_mode_at(parent, &name, mode)?;
                }
                if !xattrs.is_empty()
                    && let Ok(fd) = open_child(parent, &name, OFlags::PATH)
                {
                    for (k, v) in &xattrs {
                        let _ = fsroot::set_xattr(fd.as_fd(), k, v);
                    }
                }
                fsroot::set_times_at(parent, &name, mtime)?;
            }
        }
    }
    drop(parents);
    // Directories last and deepest first: creating their children changed their mtimes, and a
    // read-only mode must not stop the children from being written. Each is opened again from
    // the root without following any symlink: a later entry may have replaced it with one
    // (the RUSTSEC-2026-0067 shape), and then there is nothing of ours left to change.
    for (rel, mode, mtime) in dirs.into_iter().rev() {
        root.set_dir_meta(&rel, mode, mtime)?;
    }
    if !dropped.is_empty() {
        dropped.sort();
        dropped.dedup();
        tracing::warn!(
            "ignored extended attributes an image may not set: {}",
            dropped.join(", ")
        );
    }
    Ok(count)
}

/// The directory descriptor of the last parent used: entries come grouped by directory, so one
/// cached descriptor saves the lookup of nearly every entry's parent.
#[derive(Default)]
struct Parents {
    last: Option<(PathBuf, Rc<OwnedFd>)>,
}

impl Parents {
    /// The directory `rel` (created as needed) as a descriptor, reached without passing through
    /// any symlink.
    fn get(&mut self, root: &Root, rel: &Path, entry: &str) -> Result<Rc<OwnedFd>, ExtractError> {
        if let Some((p, fd)) = &self.last
            && p == rel
        {
            return Ok(fd.clone());
        }
        let fd = Rc::new(ensure_dirs(root, rel, entry)?);
        self.last = Some((rel.to_path_buf(), fd.clone()));
        Ok(fd)
    }

    /// `rel` is about to be removed or replaced: drop the cached descriptor if it lies below.
    fn forget(&mut self, rel: &Path) {
        if self.last.as_ref().is_some_and(|(p, _)| p.starts_with(rel)) {
            self.last = None;
        }
    }
}

/// `openat` of one name in `dir`, never following a symlink.
fn open_child(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags) -> io::Result<OwnedFd> {
    Ok(rustix::fs::openat(
        dir,
        name,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?)
}

fn chown_ok(r: io::Result<()>, opts: &UnpackOptions) -> io::Result<()> {
    match r {
        Err(e)
            if opts.ignore_chown_errors
                && matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EPERM)) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Whether an image layer or archive may set this extended attribute.
///
/// containerd's archive applier refuses every `trusted.*` attribute from an archive, and
/// Docker's layer writer records only `security.capability`; overlayfs gives `trusted.overlay.*`
/// (and, in a user namespace, `user.overlay.*`) a meaning of its own (opaque directories,
/// redirects to other paths, metacopy), so an image could reshape the filesystem it lands on.
/// Kept: `user.*` (not overlay's), `security.capability` (file capabilities: the image's own
/// business, as with setuid bits) and the POSIX ACLs. Dropped: the rest, `security.selinux`
/// and friends included (labels are the host's policy, not the image's).
pub fn xattr_allowed(name: &str) -> bool {
    (name.starts_with("user.") && !name.starts_with("user.overlay."))
        || name == "security.capability"
        || name == "system.posix_acl_access"
        || name == "system.posix_acl_default"
}

/// The entry's `SCHILY.xattr.*` records that [`xattr_allowed`] keeps; the names of the others go
/// to `dropped`.
fn xattrs_of<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dropped: &mut Vec<String>,
) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ext in exts.flatten() {
        if let Ok(key) = ext.key()
            && let Some(name) = key.strip_prefix("SCHILY.xattr.")
        {
            if xattr_allowed(name) {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            } else if dropped.len() < 64 {
                dropped.push(name.to_string());
            }
        }
    }
    out
}

/// A path that climbs above its root with `..`.
#[derive(Debug, Error)]
#[error("path climbs above its root")]
pub struct EscapesRoot;

/// Clean a tar entry name lexically. `None` is the root itself; `..` above the root is an error.
pub fn clean(name: &OsStr) -> Result<Option<PathBuf>, EscapesRoot> {
    let comps = fsroot::normal_components(Path::new(name)).ok_or(EscapesRoot)?;
    Ok((!comps.is_empty()).then(|| comps.iter().collect()))
}

/// Create the directories of `rel` under `root` as needed, one name at a time from the root's
/// descriptor, refusing to pass through a symlink; a non-directory in the way is replaced.
fn ensure_dirs(root: &Root, rel: &Path, entry: &str) -> Result<OwnedFd, ExtractError> {
    let dir = OFlags::PATH | OFlags::DIRECTORY;
    match root.open_at(rel, Follow::Never, dir) {
        Ok(fd) => return Ok(fd),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
            ) => {}
        Err(e) => return Err(e.into()),
    }
    let mut current = root.open_at(Path::new(""), Follow::Never, dir)?;
    let mut done = PathBuf::new();
    for c in rel.components() {
        let name = c.as_os_str();
        done.push(name);
        match statat(&current, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {}
            Ok(st) if st.st_mode & libc::S_IFMT == libc::S_IFLNK => {
                return Err(ExtractError::ThroughSymlink(
                    entry.into(),
                    done.display().to_string(),
                ));
            }
            Ok(_) => {
                // A whiteout or a file where a directory must be: the directory wins.
                fsroot::remove_at(current.as_fd(), name)?;
                mkdirat(&current, name, Mode::from_raw_mode(0o755))?;
            }
            Err(_) => mkdirat(&current, name, Mode::from_raw_mode(0o755))?,
        }
        current = open_child(current.as_fd(), name, dir)?;
    }
    Ok(current)
}

fn mknod(path: &Path, mode: u32, dev: u64) -> io::Result<()> {
    use rustix::fs::{FileType, Mode};
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::from_raw_mode(mode),
        Mode::from_raw_mode(mode),
        dev,
    )?;
    Ok(())
}

/// An overlayfs whiteout: a 0:0 character device.
pub fn mknod_whiteout(path: &Path) -> io::Result<()> {
    mknod(path, libc::S_IFCHR, 0)
}

/// Mark a directory opaque for overlayfs.
pub fn set_opaque(dir: &Path, prefix: &str) -> io::Result<()> {
    xattr::set(dir, format!("{prefix}.overlay.opaque"), b"y")
}

/// Set a path's modification time (and access time to the same), without following symlinks.
pub fn set_mtime(path: &Path, secs: i64) -> io::Result<()> {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

#[cfg(test)]
#[path = "extract_tests.rs"]
mod tests;
