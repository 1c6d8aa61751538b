//! The local content store.
//!
//! ```text
//! <root>/blobs/sha256/<hex>     content-addressed blobs: layers, configs, manifests
//! <root>/snapshots/<id>/        unpacked layers (see `snapshot`)
//! <root>/tmp/                   work space; a crashed build leaves only this behind
//! ```
//!
//! Blobs are written to `tmp/` and renamed into place once their digest is known, so a blob
//! path always holds exactly the content its name promises, even after a crash mid-write.
//!
//! The store holds the images' setuid binaries and device nodes as they are: anyone who can
//! traverse it could run a setuid-root file from it or open a device through a 0666 node. So
//! the store's root is `0700` (created so, and corrected when an older store is opened), and
//! everything below is reached only through it.

pub mod owner;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, HashingWriter};

/// The content store under one root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Open (and create) a store.
    pub fn open(root: impl Into<PathBuf>) -> io::Result<Store> {
        let root = root.into();
        create_private_dir(&root)?;
        for dir in ["blobs/sha256", "snapshots", "tmp"] {
            fs::create_dir_all(root.join(dir))?;
        }
        for dir in ["tmp", "snapshots"] {
            restrict(&root.join(dir))?;
        }
        spread_subdirectories(&root.join("tmp"));
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    pub fn read_blob(&self, digest: &Digest) -> io::Result<Vec<u8>> {
        fs::read(self.blob_path(digest))
    }

    /// Store bytes as a blob.
    pub fn put_blob(&self, bytes: &[u8]) -> io::Result<Digest> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            let mut w = self.blob_writer()?;
            w.write_all(bytes)?;
            w.commit()?;
        }
        Ok(digest)
    }

    /// A writer whose content becomes a blob on [`BlobWriter::commit`].
    pub fn blob_writer(&self) -> io::Result<BlobWriter> {
        let tmp = self.temp_path("blob");
        let file = File::create(&tmp)?;
        Ok(BlobWriter {
            store: self.clone(),
            tmp: Some(tmp),
            inner: Some(HashingWriter::new(BufWriter::with_capacity(1 << 20, file))),
        })
    }

    /// A fresh path under `tmp/` that nothing else uses, named `<prefix>-<owner>-<n>` after
    /// this process's owner token (see [`owner`]), which [`crate::cache::clean_tmp`] checks.
    pub fn temp_path(&self, prefix: &str) -> PathBuf {
        let n = TEMP_SEQ.fetch_add(1, Ordering::Relaxed);
        let tmp = self.root.join("tmp");
        let token = owner::claim(&tmp).unwrap_or_else(|_| owner::token());
        tmp.join(format!("{prefix}-{token}-{n}"))
    }

    /// A fresh directory under `tmp/` (mode 0700), removed when dropped.
    pub fn temp_dir(&self, prefix: &str) -> io::Result<TempDir> {
        let path = self.temp_path(prefix);
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(TempDir { path: Some(path) })
    }
}

/// Ask the filesystem to place each directory made in `dir` (a snapshot being written) as it
/// places top-level ones, in a block group with room, rather than beside `dir` (ext4's
/// `FS_TOPDIR_FL`, `chattr +T`; other filesystems refuse it and nothing changes).
///
/// Measured on this project's ext4 without a journal: inode allocation skips every inode of
/// the group freed in the last seconds and looks each one up, so creating 20k files beside a
/// tree just deleted (a pruned cache, a previous build's state) took 8 to 16 s instead of 1 to
/// 2 s. Spread out, new snapshots mostly land in other groups.
fn spread_subdirectories(dir: &Path) {
    let Ok(file) = File::open(dir) else {
        return;
    };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&file)
        && !flags.contains(rustix::fs::IFlags::TOPDIR)
    {
        let _ = rustix::fs::ioctl_setflags(&file, flags | rustix::fs::IFlags::TOPDIR);
    }
}

/// A blob being written.
pub struct BlobWriter {
    store: Store,
    tmp: Option<PathBuf>,
    inner: Option<HashingWriter<BufWriter<File>>>,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.inner.as_ref().map_or(0, HashingWriter::count)
    }

    /// Commit only if the content has the `expected` digest; otherwise discard it, so a corrupt
    /// or truncated download never enters the store.
    pub fn commit_verified(self, expected: &Digest) -> io::Result<u64> {
        let mut this = self;
        let tmp = this.tmp.take().expect("commit once");
        let (digest, size, buf) = this.inner.take().expect("commit once").finish();
        // Synced before it has its name, as in `commit`.
        let result = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.sync_data());
        let checked = result.and_then(|()| {
            if digest == *expected {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("the content has digest {digest} ({size} bytes)"),
                ))
            }
        });
        if let Err(e) = checked {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        let dest = this.store.blob_path(&digest);
        if dest.exists() {
            fs::remove_file(&tmp)?;
        } else {
            fs::rename(&tmp, &dest)?;
        }
        Ok(size)
    }

    /// Move the content into place and return its digest and size.
    pub fn commit(self) -> io::Result<(Digest, u64)> {
        self.commit_with(true)
    }

    /// Like [`BlobWriter::commit`], without waiting for the disk: for a blob that can be made
    /// again from what the store keeps (a layer tarred from its snapshot). After a power loss
    /// such a blob may be present but short, so whoever reuses it checks its size against the
    /// record written after it (see `Snapshots::layer`), and a push is verified by the registry.
    pub fn commit_derived(self) -> io::Result<(Digest, u64)> {
        self.commit_with(false)
    }

    fn commit_with(mut self, sync: bool) -> io::Result<(Digest, u64)> {
        let tmp = self.tmp.take().expect("commit once");
        let (digest, size, buf) = self.inner.take().expect("commit once").finish();
        let file = buf.into_inner().map_err(|e| e.into_error())?;
        // On disk before it has its name: after a power loss a blob is whole or absent.
        if sync {
            file.sync_data()?;
        }
        drop(file);
        let dest = self.store.blob_path(&digest);
        // A blob already there is kept, unless a power loss cut it short (it was not synced).
        if fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            fs::remove_file(&tmp)?;
        } else {
            fs::rename(&tmp, &dest)?;
        }
        Ok((digest, size))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.as_mut().expect("not committed").write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.as_mut().expect("not committed").flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            let _ = fs::remove_file(tmp);
        }
    }
}

/// Create `dir` (and its parents) if missing, and make it `0700` whatever it was: a store or
/// state directory holds other people's setuid files and device nodes.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => restrict(dir),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            restrict(dir)
        }
        Err(e) => Err(e),
    }
}

/// `chmod go-rwx` of a directory we own, when it is not so already (an older store).
fn restrict(dir: &Path) -> io::Result<()> {
    let meta = fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(
            dir,
            fs::Permissions::from_mode(meta.permissions().mode() & 0o700),
        )?;
    }
    Ok(())
}

/// The entries of a `tmp/` directory, the owner locks left out (what a test expects gone).
pub fn temp_entries(tmp: &Path) -> usize {
    fs::read_dir(tmp).map_or(0, |entries| {
        entries
            .flatten()
            .filter(|e| owner::lock_token(&e.file_name().to_string_lossy()).is_none())
            .count()
    })
}

/// A temporary directory, removed (with its content) when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: Option<PathBuf>,
}

impl TempDir {
    pub fn path(&self) -> &Path {
        self.path.as_deref().expect("not yet dropped")
    }

    /// Keep the directory: the caller takes ownership of it.
    pub fn keep(mut self) -> PathBuf {
        self.path.take().expect("not yet dropped")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = remove_tree(&path);
        }
    }
}

/// Remove whatever `path` is: a file, a symlink, or a directory tree (see [`remove_tree`]).
pub fn remove_entry(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Remove a directory tree, making read-only directories writable first (a RUN step can leave
/// `chmod 0500` directories behind, which `remove_dir_all` alone cannot empty). Everything is
/// reached from directory descriptors without following a symlink, so a tree a step wrote
/// cannot redirect the removal (or the `chmod` that unlocks a directory) out of itself.
pub fn remove_tree(path: &Path) -> io::Result<()> {
    let Some(name) = path.file_name() else {
        return fs::remove_dir_all(path);
    };
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    match crate::fsroot::Root::open(parent) {
        Ok(dir) => crate::fsroot::remove_at(dir.fd(), name),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_are_content_addressed_and_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let a = store.put_blob(b"layer").unwrap();
        let b = store.put_blob(b"layer").unwrap();
        assert_eq!(a, b);
        assert_eq!(a, Digest::of(b"layer"));
        assert_eq!(store.read_blob(&a).unwrap(), b"layer");
        assert_eq!(crate::store::temp_entries(&dir.path().join("tmp")), 0);
    }

    #[test]
    fn an_abandoned_blob_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"partial").unwrap();
        drop(w);
        assert_eq!(crate::store::temp_entries(&dir.path().join("tmp")), 0);
        assert_eq!(
            fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn a_blob_with_the_wrong_digest_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"truncat").unwrap();
        assert_eq!(w.written(), 7);
        let e = w.commit_verified(&Digest::of(b"truncated")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(!store.has_blob(&Digest::of(b"truncat")));
        assert_eq!(crate::store::temp_entries(&dir.path().join("tmp")), 0);
        let mut w = store.blob_writer().unwrap();
        w.write_all(b"truncated").unwrap();
        assert_eq!(w.commit_verified(&Digest::of(b"truncated")).unwrap(), 9);
        assert!(store.has_blob(&Digest::of(b"truncated")));
    }

    #[test]
    fn remove_tree_handles_read_only_directories() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("t/ro");
        fs::create_dir_all(&ro).unwrap();
        fs::write(ro.join("f"), b"x").unwrap();
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        remove_tree(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
    }
}
