//! The copy-based snapshotter, for when overlayfs cannot be mounted (an upper directory on an
//! overlay or on a filesystem without the needed xattrs, an old kernel in a user namespace).
//!
//! A RUN step then gets a full copy of its root filesystem. Before the step, every entry's
//! metadata is recorded; after it, the tree is compared with the record and what changed is
//! written into the snapshot directory in overlay upper format, like an overlay's upper
//! directory would have it: new and changed entries with their parent directories, and a
//! whiteout for each deleted path (the topmost one only). A directory deleted and recreated
//! shows as per-entry whiteouts rather than an opaque directory, as with BuildKit's native
//! snapshotter. Change detection uses the change time, which a process cannot set back, so a
//! file rewritten with the same size and mtime is still seen.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use super::extract::{mknod_whiteout, set_mtime};
use super::view::View;
use crate::fsroot::{Follow, Root};

/// What is recorded of each entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: u32,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl Meta {
    fn of(m: &fs::Metadata) -> Meta {
        Meta {
            kind: m.mode() & libc::S_IFMT,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            size: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
        }
    }
}

/// The metadata of every entry of a tree, by path relative to its root.
#[derive(Debug, Default)]
pub struct Manifest {
    entries: HashMap<PathBuf, Meta>,
}

impl Manifest {
    /// Record a tree. Mount points (`skip`, relative) are not descended into.
    pub fn scan(root: &Path, skip: &HashSet<PathBuf>) -> io::Result<Manifest> {
        let mut entries = HashMap::new();
        scan_into(root, Path::new(""), skip, &mut entries)?;
        Ok(Manifest { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn scan_into(
    root: &Path,
    rel: &Path,
    skip: &HashSet<PathBuf>,
    out: &mut HashMap<PathBuf, Meta>,
) -> io::Result<()> {
    for entry in fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let child = rel.join(entry.file_name());
        let meta = fs::symlink_metadata(root.join(&child))?;
        out.insert(child.clone(), Meta::of(&meta));
        if meta.is_dir() && !skip.contains(&child) {
            scan_into(root, &child, skip, out)?;
        }
    }
    Ok(())
}

/// Copy the merged view of `layers` into the empty directory `dest`, keeping owners, modes,
/// times, hardlinks, symlinks and xattrs.
pub fn materialize(layers: &View, dest: &Path) -> Result<(), crate::copy::CopyError> {
    crate::copy::copy_tree(crate::copy::Source::View(layers), "/", dest)?;
    // overlayfs breaks a hardlink group of a lower layer when one name is written (the
    // written name is copied up alone); separate copies give a step the same outcome.
    break_hardlinks(dest)?;
    // The root directory itself keeps the image's metadata.
    if let Some(found) = layers.lstat(Path::new("")) {
        let m = found.meta;
        std::os::unix::fs::lchown(dest, Some(m.uid()), Some(m.gid()))?;
        fs::set_permissions(dest, fs::Permissions::from_mode(m.mode() & 0o7777))?;
    }
    Ok(())
}

/// Give every name of a hardlink group under `dir` its own copy of the file.
fn break_hardlinks(dir: &Path) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(dir).into_iter().flatten() {
        let Ok(meta) = entry.path().symlink_metadata() else {
            continue;
        };
        if !meta.is_file() || meta.nlink() < 2 {
            continue;
        }
        let path = entry.path();
        let tmp = path.with_file_name(format!(".kiln-unlink-{}", std::process::id()));
        fs::copy(path, &tmp)?;
        std::os::unix::fs::lchown(&tmp, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        set_mtime(&tmp, meta.mtime())?;
        fs::rename(&tmp, path)?;
    }
    Ok(())
}

/// Write what changed in `root` since `before` into `upper`, in overlay upper format.
/// `skip` lists mount points (relative) whose content is not the step's.
pub fn diff(
    root: &Path,
    before: &Manifest,
    upper: &Path,
    skip: &HashSet<PathBuf>,
) -> io::Result<()> {
    let mut seen = HashSet::new();
    let mut links: HashMap<u64, PathBuf> = HashMap::new();
    let mut dir_times: Vec<(PathBuf, i64)> = Vec::new();
    // The step's tree is read through a descriptor of its root, never following a symlink: a
    // process the step left behind could swap a file for a symlink to a host file between the
    // `lstat` and the read.
    let src = Root::open(root)?;
    walk_changes(
        &src,
        root,
        Path::new(""),
        before,
        upper,
        skip,
        &mut seen,
        &mut links,
        &mut dir_times,
    )?;
    // Deleted paths: a whiteout for each one whose parent still exists.
    let mut deleted: Vec<&PathBuf> = before
        .entries
        .keys()
        .filter(|p| !seen.contains(*p))
        .collect();
    deleted.sort();
    for path in deleted {
        let parent = path.parent().unwrap_or(Path::new(""));
        if !parent.as_os_str().is_empty() && !seen.contains(parent) {
            continue; // its directory went too: one whiteout is enough
        }
        ensure_parents(root, upper, path, &mut dir_times)?;
        mknod_whiteout(&upper.join(path))?;
    }
    dir_times.sort();
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn walk_changes(
    src: &Root,
    root: &Path,
    rel: &Path,
    before: &Manifest,
    upper: &Path,
    skip: &HashSet<PathBuf>,
    seen: &mut HashSet<PathBuf>,
    links: &mut HashMap<u64, PathBuf>,
    dir_times: &mut Vec<(PathBuf, i64)>,
) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(root.join(rel))?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let child = rel.join(&name);
        let path = root.join(&child);
        let meta = fs::symlink_metadata(&path)?;
        seen.insert(child.clone());
        let now = Meta::of(&meta);
        let changed = match before.entries.get(&child) {
            None => true,
            Some(was) if meta.is_dir() => {
                was.kind != now.kind
                    || was.mode != now.mode
                    || was.uid != now.uid
                    || was.gid != now.gid
            }
            Some(was) => *was != now,
        };
        if changed {
            ensure_parents(root, upper, &child, dir_times)?;
            copy_entry(src, &child, &meta, &upper.join(&child), links, dir_times)?;
        }
        if meta.is_dir() && !skip.contains(&child) {
            walk_changes(
                src, root, &child, before, upper, skip, seen, links, dir_times,
            )?;
        }
    }
    Ok(())
}

/// Create the parent directories of `rel` in `upper` with the metadata they have in `root`.
fn ensure_parents(
    root: &Path,
    upper: &Path,
    rel: &Path,
    dir_times: &mut Vec<(PathBuf, i64)>,
) -> io::Result<()> {
    let mut prefix = PathBuf::new();
    let parents: Vec<_> = rel
        .parent()
        .map(|p| p.components().collect())
        .unwrap_or_default();
    for comp in parents {
        prefix.push(comp);
        let dest = upper.join(&prefix);
        if fs::symlink_metadata(&dest).is_ok() {
            continue;
        }
        let meta = fs::symlink_metadata(root.join(&prefix))?;
        fs::create_dir(&dest)?;
        std::os::unix::fs::lchown(&dest, Some(meta.uid()), Some(meta.gid()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        dir_times.push((dest, meta.mtime()));
    }
    Ok(())
}

fn copy_entry(
    root: &Root,
    rel: &Path,
    meta: &fs::Metadata,
    dst: &Path,
    links: &mut HashMap<u64, PathBuf>,
    dir_times: &mut Vec<(PathBuf, i64)>,
) -> io::Result<()> {
    let ft = meta.file_type();
    if ft.is_dir() {
        if fs::symlink_metadata(dst).is_err() {
            fs::create_dir(dst)?;
        }
        dir_times.push((dst.to_path_buf(), meta.mtime()));
    } else if ft.is_symlink() {
        let (parent, name) = root.open_parent(rel, Follow::Never)?;
        let target = rustix::fs::readlinkat(&parent, name.as_os_str(), Vec::new())?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target.as_bytes()), dst)?;
    } else if ft.is_file() {
        if meta.nlink() > 1 {
            if let Some(first) = links.get(&meta.ino()) {
                return fs::hard_link(first, dst);
            }
            links.insert(meta.ino(), dst.to_path_buf());
        }
        let mut from = fs::File::from(root.open_at(rel, Follow::Never, OFlags::RDONLY)?);
        let mut to = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dst)?;
        io::copy(&mut from, &mut to)?;
    } else {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dst,
            rustix::fs::FileType::from_raw_mode(meta.mode()),
            rustix::fs::Mode::from_raw_mode(meta.mode()),
            meta.rdev(),
        )?;
    }
    std::os::unix::fs::lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
    if !ft.is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    if !ft.is_dir() {
        set_mtime(dst, meta.mtime())?;
    }
    // Read through an O_PATH descriptor of the entry itself (never a symlink's target).
    let src = root.open_at(rel, Follow::Never, OFlags::PATH)?;
    let src = crate::fsroot::proc_path(src.as_fd());
    if let Ok(names) = xattr::list_deref(&src) {
        for name in names {
            if let Ok(Some(v)) = xattr::get_deref(&src, &name) {
                let _ = xattr::set(dst, &name, &v);
            }
        }
    }
    Ok(())
}

/// Whether overlayfs can be mounted here, with the upper directory under `dir`: tried once on a
/// thread of its own with a private mount namespace, so nothing is left mounted.
pub fn overlay_supported(dir: &Path) -> bool {
    let probe = dir.join(format!("overlay-probe-{}", std::process::id()));
    let result = std::thread::scope(|s| {
        s.spawn(|| -> io::Result<()> {
            crate::kernel::unshare_thread_mounts()?;
            rustix::mount::mount_change(
                "/",
                rustix::mount::MountPropagationFlags::REC
                    | rustix::mount::MountPropagationFlags::PRIVATE,
            )?;
            for d in ["lower", "upper", "work", "merged"] {
                fs::create_dir_all(probe.join(d))?;
            }
            fs::write(probe.join("lower/f"), b"x")?;
            let sys = crate::sandbox::syscall::Linux;
            use crate::sandbox::syscall::Syscall;
            sys.mount_overlay(
                &probe.join("merged"),
                &[probe.join("lower")],
                Some(&probe.join("upper")),
                Some(&probe.join("work")),
                crate::userns::in_user_namespace(),
            )?;
            // A write and a delete: copy-up and whiteouts must work too.
            fs::write(probe.join("merged/g"), b"y")?;
            fs::remove_file(probe.join("merged/f"))?;
            let _ =
                rustix::mount::unmount(probe.join("merged"), rustix::mount::UnmountFlags::DETACH);
            Ok(())
        })
        .join()
    });
    let _ = crate::store::remove_tree(&probe);
    matches!(result, Ok(Ok(())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::diff::is_whiteout;

    #[test]
    fn diff_finds_new_changed_deleted_and_metadata_only() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let upper = d.path().join("upper");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(root.join("gone/deep")).unwrap();
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("etc/keep"), "same").unwrap();
        fs::write(root.join("etc/edit"), "before").unwrap();
        fs::write(root.join("etc/chmod"), "x").unwrap();
        fs::write(root.join("usr/bin/rm-me"), "x").unwrap();
        fs::write(root.join("gone/deep/f"), "x").unwrap();
        fs::create_dir(&upper).unwrap();
        let before = Manifest::scan(&root, &HashSet::new()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        fs::write(root.join("etc/edit"), "after!").unwrap();
        fs::set_permissions(root.join("etc/chmod"), fs::Permissions::from_mode(0o600)).unwrap();
        fs::remove_file(root.join("usr/bin/rm-me")).unwrap();
        crate::store::remove_tree(&root.join("gone")).unwrap();
        fs::write(root.join("new"), "new").unwrap();
        diff(&root, &before, &upper, &HashSet::new()).unwrap();

        assert_eq!(
            fs::read_to_string(upper.join("etc/edit")).unwrap(),
            "after!"
        );
        assert_eq!(
            fs::metadata(upper.join("etc/chmod")).unwrap().mode() & 0o777,
            0o600
        );
        assert!(!upper.join("etc/keep").exists());
        assert!(is_whiteout(
            &fs::symlink_metadata(upper.join("usr/bin/rm-me")).unwrap()
        ));
        assert!(is_whiteout(
            &fs::symlink_metadata(upper.join("gone")).unwrap()
        ));
        assert!(
            !upper.join("gone/deep").exists(),
            "one whiteout for a deleted tree"
        );
        assert_eq!(fs::read_to_string(upper.join("new")).unwrap(), "new");
    }

    #[test]
    fn materialize_copies_the_merged_view() {
        let d = tempfile::tempdir().unwrap();
        let (top, bottom, out) = (
            d.path().join("top"),
            d.path().join("bottom"),
            d.path().join("out"),
        );
        fs::create_dir_all(bottom.join("a")).unwrap();
        fs::write(bottom.join("a/x"), "old").unwrap();
        fs::write(bottom.join("a/y"), "kept").unwrap();
        fs::create_dir_all(top.join("a")).unwrap();
        fs::write(top.join("a/x"), "new").unwrap();
        fs::create_dir(&out).unwrap();
        materialize(&View::new(vec![top, bottom]), &out).unwrap();
        assert_eq!(fs::read_to_string(out.join("a/x")).unwrap(), "new");
        assert_eq!(fs::read_to_string(out.join("a/y")).unwrap(), "kept");
    }

    #[test]
    fn the_probe_answers_without_leaving_anything() {
        let d = tempfile::tempdir().unwrap();
        let _ = overlay_supported(d.path());
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 0);
    }
}
