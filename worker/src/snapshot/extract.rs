//! Unpacking tarballs: layers into snapshot directories, and `ADD` archives into a root.
//!
//! Nothing a tarball says may reach outside the destination:
//! - entry names are cleaned lexically, and a `..` that would climb above the root is refused;
//! - every parent directory is checked with `lstat` before use, so a symlink planted by an
//!   earlier entry (`a -> /etc`, then `a/passwd`) is refused instead of followed;
//! - hardlink targets are resolved the same way and must be regular files inside the root.
//!
//! In layer mode, OCI whiteouts become overlayfs whiteouts (a 0:0 character device, which Linux
//! lets anyone create since 5.8) and opaque markers become the `overlay.opaque` xattr, so the
//! directory can serve directly as an overlayfs lower layer.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;
use thiserror::Error;

use super::diff::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::digest::{Digest, HashingReader};

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
    let mut hashing = HashingReader::new(decompress(reader)?);
    let entries = unpack_tar(&mut hashing, dest, opts)?;
    // Read the end-of-archive blocks and padding too: the diff id covers the whole stream.
    io::copy(&mut hashing, &mut io::sink())?;
    let (diff_id, size) = hashing.finish();
    Ok(Unpacked {
        diff_id,
        size,
        entries,
    })
}

fn unpack_tar(
    reader: &mut impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<u64, ExtractError> {
    let mut archive = tar::Archive::new(reader);
    let mut dirs: Vec<(PathBuf, u32, i64)> = Vec::new();
    let mut count = 0;
    let mut hardlinks: HashMap<PathBuf, PathBuf> = HashMap::new();
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
        let name = rel
            .file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let parent = ensure_dirs(dest, &parent_rel, &display)?;

        if opts.layer && name == OPAQUE_MARKER.as_bytes() {
            set_opaque(&parent, opts.overlay_xattr_prefix)?;
            continue;
        }
        if opts.layer && name.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            let target = parent.join(OsStr::from_bytes(&name[WHITEOUT_PREFIX.len()..]));
            remove_any(&target)?;
            mknod_whiteout(&target)?;
            continue;
        }

        let path = parent.join(OsStr::from_bytes(&name));
        let kind = header.entry_type();
        // An entry replaces what was there, except a directory over a directory, which merges.
        if let Ok(existing) = fs::symlink_metadata(&path)
            && !(existing.is_dir() && kind == EntryType::Directory)
        {
            remove_any(&path)?;
        }
        let mode = header.mode()? & 0o7777;
        let mtime = header.mtime()? as i64;
        let (uid, gid) = opts
            .chown
            .unwrap_or((header.uid()? as u32, header.gid()? as u32));
        match kind {
            EntryType::Directory => {
                if !path.is_dir() {
                    fs::create_dir(&path)?;
                }
                dirs.push((path.clone(), mode, mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)?;
                io::copy(&mut entry, &mut file)?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| ExtractError::Escape(display.clone()))?;
                symlink(&target, &path)?;
            }
            EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .ok_or_else(|| ExtractError::BadLink(display.clone(), String::new()))?
                    .into_owned();
                let target_display = String::from_utf8_lossy(&target_raw).into_owned();
                let target_rel = clean(OsStr::from_bytes(&target_raw))
                    .ok()
                    .flatten()
                    .ok_or_else(|| {
                        ExtractError::BadLink(display.clone(), target_display.clone())
                    })?;
                let target_parent = target_rel.parent().unwrap_or(Path::new(""));
                check_no_symlinks(dest, target_parent, &display)?;
                let target = dest.join(&target_rel);
                match fs::symlink_metadata(&target) {
                    Ok(m) if !m.is_dir() => fs::hard_link(&target, &path)?,
                    _ => return Err(ExtractError::BadLink(display, target_display)),
                }
                hardlinks.insert(path.clone(), target);
                continue; // a hardlink shares its target's metadata
            }
            EntryType::Fifo => mknod(&path, libc::S_IFIFO | mode, 0)?,
            EntryType::Char | EntryType::Block => {
                let major = header.device_major()?.unwrap_or(0);
                let minor = header.device_minor()?.unwrap_or(0);
                let ty = if kind == EntryType::Char {
                    libc::S_IFCHR
                } else {
                    libc::S_IFBLK
                };
                if let Err(e) = mknod(&path, ty | mode, libc::makedev(major, minor)) {
                    // Device nodes need CAP_MKNOD in the initial namespace; rootless builders
                    // skip them, as BuildKit and buildah do.
                    if e.raw_os_error() != Some(libc::EPERM) {
                        return Err(e.into());
                    }
                    continue;
                }
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => {
                continue;
            }
            _ => continue,
        }
        chown(&path, uid, gid, opts.ignore_chown_errors)?;
        if kind != EntryType::Symlink && kind != EntryType::Directory {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        }
        // After the chown, which clears `security.capability`.
        set_xattrs(&mut entry, &path);
        if kind != EntryType::Directory {
            set_mtime(&path, mtime)?;
        }
    }
    // Directories last and deepest first: creating their children changed their mtimes, and a
    // read-only mode must not stop the children from being written.
    for (path, mode, mtime) in dirs.into_iter().rev() {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        set_mtime(&path, mtime)?;
    }
    Ok(count)
}

/// A path that climbs above its root with `..`.
#[derive(Debug, Error)]
#[error("path climbs above its root")]
pub struct EscapesRoot;

/// Clean a tar entry name lexically. `None` is the root itself; `..` above the root is an error.
pub fn clean(name: &OsStr) -> Result<Option<PathBuf>, EscapesRoot> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(EscapesRoot);
                }
            }
            Component::Normal(n) => out.push(n),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Create the directories of `rel` under `root` as needed, refusing to pass through a symlink
/// or a non-directory.
fn ensure_dirs(root: &Path, rel: &Path, entry: &str) -> Result<PathBuf, ExtractError> {
    let mut path = root.to_path_buf();
    for c in rel.components() {
        path.push(c);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(ExtractError::ThroughSymlink(
                    entry.into(),
                    path.display().to_string(),
                ));
            }
            Ok(_) => {
                // A whiteout or a file where a directory must be: the directory wins.
                remove_any(&path)?;
                fs::create_dir(&path)?;
            }
            Err(_) => fs::create_dir(&path)?,
        }
    }
    Ok(path)
}

fn check_no_symlinks(root: &Path, rel: &Path, entry: &str) -> Result<(), ExtractError> {
    let mut path = root.to_path_buf();
    for c in rel.components() {
        path.push(c);
        if let Ok(m) = fs::symlink_metadata(&path)
            && m.file_type().is_symlink()
        {
            return Err(ExtractError::ThroughSymlink(
                entry.into(),
                path.display().to_string(),
            ));
        }
    }
    Ok(())
}

fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => crate::store::remove_tree(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
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

fn chown(path: &Path, uid: u32, gid: u32, ignore_errors: bool) -> io::Result<()> {
    match std::os::unix::fs::lchown(path, Some(uid), Some(gid)) {
        Err(e) if ignore_errors && e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        Err(e) if ignore_errors && e.raw_os_error() == Some(libc::EPERM) => Ok(()),
        other => other,
    }
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

fn set_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, path: &Path) {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return;
    };
    for ext in exts.flatten() {
        if let Ok(key) = ext.key()
            && let Some(name) = key.strip_prefix("SCHILY.xattr.")
        {
            // Some namespaces are off limits without privilege; an image is still usable
            // without them, as BuildKit's rootless mode also accepts.
            let _ = xattr::set(path, name, ext.value_bytes());
        }
    }
}

/// Open a file inside `root` by a relative path that has already been cleaned, refusing
/// symlinks in its parents.
pub fn open_in_root(root: &Path, rel: &Path) -> io::Result<File> {
    check_no_symlinks(root, rel.parent().unwrap_or(Path::new("")), "")
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(root.join(rel))
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    use tar::Header;

    use super::*;

    fn header(kind: EntryType, mode: u32, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h
    }

    /// Build a tarball; `path` is written raw, so tests can use names the builder would refuse.
    fn tarball(entries: &[(&str, EntryType, &[u8], &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, link) in entries {
            let mut h = header(*kind, 0o644, data.len() as u64);
            {
                let g = h.as_gnu_mut().unwrap();
                g.name = [0; 100];
                g.name[..path.len()].copy_from_slice(path.as_bytes());
                if !link.is_empty() {
                    g.linkname = [0; 100];
                    g.linkname[..link.len()].copy_from_slice(link.as_bytes());
                }
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn layer_opts() -> UnpackOptions {
        let root = rustix::process::geteuid().is_root();
        UnpackOptions {
            layer: true,
            overlay_xattr_prefix: if root { "trusted" } else { "user" },
            chown: None,
            ignore_chown_errors: !root,
        }
    }

    #[test]
    fn dotdot_escapes_are_refused() {
        let dest = tempfile::tempdir().unwrap();
        let tar = tarball(&[("../evil", EntryType::Regular, b"x", "")]);
        let err = unpack(&tar[..], dest.path(), &layer_opts()).unwrap_err();
        assert!(matches!(err, ExtractError::Escape(_)), "{err}");
        let tar = tarball(&[("a/../../evil", EntryType::Regular, b"x", "")]);
        assert!(matches!(
            unpack(&tar[..], dest.path(), &layer_opts()),
            Err(ExtractError::Escape(_))
        ));
        assert!(!dest.path().parent().unwrap().join("evil").exists());
    }

    #[test]
    fn absolute_names_stay_inside() {
        let dest = tempfile::tempdir().unwrap();
        let tar = tarball(&[("/etc/passwd", EntryType::Regular, b"root", "")]);
        unpack(&tar[..], dest.path(), &layer_opts()).unwrap();
        assert_eq!(fs::read(dest.path().join("etc/passwd")).unwrap(), b"root");
    }

    #[test]
    fn writing_through_a_symlink_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let target = outside.path().to_str().unwrap();
        let tar = tarball(&[
            ("a", EntryType::Symlink, b"", target),
            ("a/passwd", EntryType::Regular, b"pwned", ""),
        ]);
        let err = unpack(&tar[..], dest.path(), &layer_opts()).unwrap_err();
        assert!(matches!(err, ExtractError::ThroughSymlink(..)), "{err}");
        assert!(!outside.path().join("passwd").exists());
    }

    #[test]
    fn a_relative_symlink_climbing_out_is_not_followed_either() {
        let dest = tempfile::tempdir().unwrap();
        let tar = tarball(&[
            ("up", EntryType::Symlink, b"", "../../.."),
            ("up/x", EntryType::Regular, b"pwned", ""),
        ]);
        assert!(matches!(
            unpack(&tar[..], dest.path(), &layer_opts()),
            Err(ExtractError::ThroughSymlink(..))
        ));
    }

    #[test]
    fn a_symlink_replacing_a_file_then_written_to_is_refused() {
        let outside = tempfile::tempdir().unwrap();
        let dest = tempfile::tempdir().unwrap();
        let target = outside.path().join("f");
        fs::write(&target, b"safe").unwrap();
        let tar = tarball(&[
            ("f", EntryType::Regular, b"one", ""),
            ("f", EntryType::Symlink, b"", target.to_str().unwrap()),
            ("f", EntryType::Regular, b"pwned", ""),
        ]);
        unpack(&tar[..], dest.path(), &layer_opts()).unwrap();
        assert_eq!(
            fs::read(&target).unwrap(),
            b"safe",
            "the symlink was replaced, not followed"
        );
        assert_eq!(fs::read(dest.path().join("f")).unwrap(), b"pwned");
    }

    #[test]
    fn hardlinks_must_point_inside() {
        let dest = tempfile::tempdir().unwrap();
        let tar = tarball(&[("h", EntryType::Link, b"", "../../etc/passwd")]);
        assert!(matches!(
            unpack(&tar[..], dest.path(), &layer_opts()),
            Err(ExtractError::BadLink(..))
        ));
        let tar = tarball(&[
            ("f", EntryType::Regular, b"data", ""),
            ("h", EntryType::Link, b"", "f"),
        ]);
        unpack(&tar[..], dest.path(), &layer_opts()).unwrap();
        let a = fs::metadata(dest.path().join("f")).unwrap();
        let b = fs::metadata(dest.path().join("h")).unwrap();
        assert_eq!(a.ino(), b.ino());
    }

    #[test]
    fn whiteouts_and_opaque_markers_become_overlay_format() {
        let dest = tempfile::tempdir().unwrap();
        let tar = tarball(&[
            ("etc/", EntryType::Directory, b"", ""),
            ("etc/.wh.gone", EntryType::Regular, b"", ""),
            ("var/", EntryType::Directory, b"", ""),
            ("var/.wh..wh..opq", EntryType::Regular, b"", ""),
        ]);
        let opts = layer_opts();
        unpack(&tar[..], dest.path(), &opts).unwrap();
        let wh = fs::symlink_metadata(dest.path().join("etc/gone")).unwrap();
        assert!(super::super::diff::is_whiteout(&wh));
        assert!(super::super::diff::is_opaque(&dest.path().join("var")));
        assert!(!dest.path().join("var/.wh..wh..opq").exists());
    }

    #[test]
    fn outside_layer_mode_whiteout_names_are_plain_files() {
        let dest = tempfile::tempdir().unwrap();
        let tar = tarball(&[(".wh.keep", EntryType::Regular, b"k", "")]);
        unpack(&tar[..], dest.path(), &UnpackOptions::default()).unwrap();
        assert_eq!(fs::read(dest.path().join(".wh.keep")).unwrap(), b"k");
    }

    #[test]
    fn diff_id_is_the_digest_of_the_uncompressed_stream() {
        let dest = tempfile::tempdir().unwrap();
        let tar = tarball(&[("f", EntryType::Regular, b"content", "")]);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&tar).unwrap();
        let gz = gz.finish().unwrap();
        let out = unpack(&gz[..], dest.path(), &layer_opts()).unwrap();
        assert_eq!(out.diff_id, Digest::of(&tar));
        assert_eq!(out.size, tar.len() as u64);
    }

    #[test]
    fn modes_mtimes_and_readonly_dirs() {
        let dest = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = header(EntryType::Directory, 0o555, 0);
        h.set_path("ro/").unwrap();
        h.set_cksum();
        b.append(&h, io::empty()).unwrap();
        let mut h = header(EntryType::Regular, 0o4711, 2);
        h.set_path("ro/suid").unwrap();
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        unpack(&tar[..], dest.path(), &layer_opts()).unwrap();
        let f = fs::metadata(dest.path().join("ro/suid")).unwrap();
        assert_eq!(f.mode() & 0o7777, 0o4711);
        assert_eq!(f.mtime(), 1_000_000);
        let d = fs::metadata(dest.path().join("ro")).unwrap();
        assert_eq!(d.mode() & 0o7777, 0o555);
        assert_eq!(d.mtime(), 1_000_000);
        fs::set_permissions(dest.path().join("ro"), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn every_compression_is_detected() {
        let tar = tarball(&[("f", EntryType::Regular, b"z", "")]);
        let zst = zstd::encode_all(&tar[..], 3).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&tar).unwrap();
        let bz = bz.finish().unwrap();
        let mut xz = xz2::write::XzEncoder::new(Vec::new(), 1);
        xz.write_all(&tar).unwrap();
        let xz = xz.finish().unwrap();
        for data in [zst, bz, xz, tar.clone()] {
            let dest = tempfile::tempdir().unwrap();
            let out = unpack(&data[..], dest.path(), &UnpackOptions::default()).unwrap();
            assert_eq!(out.diff_id, Digest::of(&tar));
            assert_eq!(fs::read(dest.path().join("f")).unwrap(), b"z");
        }
    }
}
