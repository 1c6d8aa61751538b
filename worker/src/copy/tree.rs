//! The tree writer: entries of a context or of a stage's filesystem written into a new
//! snapshot, never through a symlink, with owners, modes, times, hardlinks and xattrs; a
//! directory's regular files several at a time.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;

use super::{Chmod, CopyError, Source, apply_dir_meta, expand, is_archive};
use crate::context::Context;
use crate::context::ignore::Ignore;
use crate::fsroot;
use crate::snapshot::extract::{self, UnpackOptions, set_mtime};
use crate::snapshot::view::View;

pub(super) struct Writer<'a> {
    upper: &'a Path,
    /// The destination as the step sees it: the new snapshot over the base.
    view: View,
    /// The base alone: what a directory looked like before this COPY.
    base: View,
    pub(super) owner: Option<(u32, u32)>,
    pub(super) chmod: Option<Chmod>,
    /// Directories whose metadata must be set once their content is in place.
    pub(super) dirs: Vec<(PathBuf, u32, i64)>,
    /// Hardlinked source files already copied: source (dev, inode) → path in the snapshot.
    links: HashMap<(u64, u64), PathBuf>,
    /// Regular files of a tree walk, copied together by `flush_files`.
    files: Vec<FileJob>,
}

struct FileJob {
    src: PathBuf,
    meta: fs::Metadata,
    dst: PathBuf,
    pub(super) owner: (u32, u32),
}
/// Copy `path` of `source` and everything below it into `dest` as a flagless `COPY --link`
/// would: owners, modes, times, links and xattrs kept. For local outputs, cache-mount seeding
/// and materialised snapshots.
pub fn copy_tree(source: Source<'_>, path: &str, dest: &Path) -> Result<(), CopyError> {
    let mut w = Writer::new(dest, vec![], None, None);
    let nothing_excluded = Ignore::default();
    let root = Path::new("/");
    for rel in expand(&source, path)? {
        match &source {
            Source::Context(ctx) => {
                w.copy_from_context(ctx, &rel, root, true, false, &nothing_excluded)?
            }
            Source::View(view) => w.copy_from_view(view, &rel, root, true, &nothing_excluded)?,
        }
    }
    apply_dir_meta(dest, &w.dirs)
}

/// Owner, mode and time of a file just made at `path` (whose parents hold no symlink), through
/// a descriptor that does not follow its last component.
pub(super) fn finish(
    path: &Path,
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: Option<i64>,
) -> io::Result<()> {
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    fsroot::set_owner(fd.as_fd(), uid, gid)?;
    if rustix::fs::fstat(&fd)?.st_mode & libc::S_IFMT != libc::S_IFLNK {
        fsroot::set_mode(fd.as_fd(), mode)?;
    }
    if let Some(t) = mtime {
        fsroot::set_times(fd.as_fd(), t)?;
    }
    Ok(())
}
impl<'a> Writer<'a> {
    /// A writer into the snapshot `upper`, over the layers `base` (top first).
    pub(super) fn new(
        upper: &'a Path,
        base: Vec<PathBuf>,
        owner: Option<(u32, u32)>,
        chmod: Option<Chmod>,
    ) -> Writer<'a> {
        let mut view_layers = vec![upper.to_path_buf()];
        view_layers.extend(base.iter().cloned());
        Writer {
            upper,
            view: View::new(view_layers),
            base: View::new(base),
            owner,
            chmod,
            dirs: Vec::new(),
            links: HashMap::new(),
            files: Vec::new(),
        }
    }

    pub(super) fn is_dir(&self, abs: &Path) -> io::Result<bool> {
        let resolved = self
            .view
            .resolve(abs.strip_prefix("/").unwrap_or(abs), true)?;
        Ok(self.view.lstat(&resolved).is_some_and(|f| f.meta.is_dir()))
    }

    /// Make sure the directory `abs` exists in the snapshot, with every parent: copied up from
    /// the base where it exists there, created otherwise. Returns its path in the snapshot.
    pub(super) fn ensure_dir(&mut self, abs: &Path) -> Result<PathBuf, CopyError> {
        let resolved = self
            .view
            .resolve(abs.strip_prefix("/").unwrap_or(abs), true)?;
        let mut rel = PathBuf::new();
        for comp in resolved.components() {
            rel.push(comp);
            let in_upper = self.upper.join(&rel);
            match fs::symlink_metadata(&in_upper) {
                Ok(m) if m.is_dir() => continue,
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(CopyError::Symlink(format!("/{}", rel.display())));
                }
                Ok(_) => fs::remove_file(&in_upper)?,
                Err(_) => {}
            }
            let below = self.base.lstat(&rel).filter(|f| f.meta.is_dir());
            fs::create_dir(&in_upper)?;
            match below {
                Some(below) => {
                    // Copy-up: the directory keeps what the base says about it.
                    let m = below.meta;
                    std::os::unix::fs::lchown(&in_upper, Some(m.uid()), Some(m.gid()))?;
                    self.dirs
                        .push((in_upper.clone(), m.mode() & 0o7777, m.mtime()));
                }
                None => {
                    let (uid, gid) = self.owner.unwrap_or((0, 0));
                    std::os::unix::fs::lchown(&in_upper, Some(uid), Some(gid))?;
                    fs::set_permissions(&in_upper, fs::Permissions::from_mode(0o755))?;
                }
            }
        }
        Ok(self.upper.join(resolved))
    }

    /// The snapshot path for a file at `abs`, its directory in place and the path free.
    pub(super) fn prepare_file(&mut self, abs: &Path) -> Result<PathBuf, CopyError> {
        let name = abs
            .file_name()
            .ok_or_else(|| CopyError::NotFound(abs.display().to_string()))?;
        let parent = self.ensure_dir(abs.parent().unwrap_or(Path::new("/")))?;
        let path = parent.join(name);
        if let Ok(m) = fs::symlink_metadata(&path) {
            if m.is_dir() {
                crate::store::remove_tree(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
        }
        Ok(path)
    }

    fn mode_of(&self, meta: &fs::Metadata) -> u32 {
        let mode = meta.mode() & 0o7777;
        match &self.chmod {
            Some(c) => c.apply(mode, meta.is_dir()),
            None => mode,
        }
    }

    /// Copy a regular file's content, xattrs, owner, mode and mtime into `to`, just created.
    fn fill_file(
        &self,
        src: &Path,
        meta: &fs::Metadata,
        mut to: File,
        owner: (u32, u32),
    ) -> Result<(), CopyError> {
        let mut from = File::open(src)?;
        io::copy(&mut from, &mut to)?;
        let t = rustix::fs::Timespec {
            tv_sec: meta.mtime(),
            tv_nsec: 0,
        };
        let times = rustix::fs::Timestamps {
            last_access: t,
            last_modification: t,
        };
        rustix::fs::fchown(
            &to,
            Some(rustix::fs::Uid::from_raw(owner.0)),
            Some(rustix::fs::Gid::from_raw(owner.1)),
        )
        .map_err(io::Error::from)?;
        rustix::fs::fchmod(&to, rustix::fs::Mode::from_raw_mode(self.mode_of(meta)))
            .map_err(io::Error::from)?;
        rustix::fs::futimens(&to, &times).map_err(io::Error::from)?;
        // Last: a chown clears `security.capability` (and a write would too).
        copy_xattrs(src, &to);
        Ok(())
    }

    /// ADD of an archive: extract it into the directory `dest`. `--chown` owns the directories
    /// the step creates; extracted entries keep the archive's owners (BuildKit).
    pub(super) fn extract_into(
        &mut self,
        archive: &Path,
        dest: &Path,
        name: &str,
    ) -> Result<(), CopyError> {
        let dest_dir = self.ensure_dir(dest)?;
        let opts = UnpackOptions {
            layer: false,
            overlay_xattr_prefix: "",
            chown: None,
            ignore_chown_errors: crate::userns::current()
                .is_some_and(|m| matches!(m, crate::userns::Mapping::Single { .. })),
            // An archive's unpacked size is not pinned by any digest: bounded, as a download.
            limits: Some(crate::fetch::Limits::current()),
        };
        extract::unpack(File::open(archive)?, &dest_dir, &opts)
            .map_err(|e| CopyError::Extract(name.into(), e))?;
        Ok(())
    }

    pub(super) fn copy_from_context(
        &mut self,
        ctx: &Context,
        rel: &str,
        dest: &Path,
        dest_is_dir: bool,
        unpack: bool,
        excludes: &Ignore,
    ) -> Result<(), CopyError> {
        let root = ctx.root();
        // The source path itself is followed if it is a symlink, but only inside the context,
        // and not to a file `.dockerignore` hides.
        let real = PathBuf::from(
            ctx.resolve(rel, true)
                .map_err(|_| CopyError::NotFound(rel.to_string()))?,
        );
        let meta =
            fs::metadata(root.join(&real)).map_err(|_| CopyError::NotFound(rel.to_string()))?;
        let owner = self.owner.unwrap_or((0, 0));
        if meta.is_dir() {
            // The destination directory is made like any missing parent (0755, --chown's
            // owner); the source directory's own metadata does not travel (BuildKit copies
            // contents, and --chmod does not reach this directory).
            let dest_dir = self.ensure_dir(dest)?;
            let real_rel = real.to_string_lossy().into_owned();
            ctx.walk(&real_rel, &mut |p, m| {
                let sub = Path::new(p).strip_prefix(&real_rel).unwrap_or(Path::new(p));
                // --exclude patterns are relative to the source being copied.
                if p == real_rel || excludes.excludes(&sub.to_string_lossy()) {
                    return Ok(());
                }
                self.place_later(&root.join(p), m, &dest_dir.join(sub), owner)
                    .map_err(io::Error::other)
            })?;
            return self.flush_files();
        }
        let name = Path::new(rel).file_name().unwrap_or_default();
        if unpack && meta.is_file() && is_archive(&root.join(&real))? {
            return self.extract_into(&root.join(&real), dest, rel);
        }
        let target = if dest_is_dir {
            dest.join(name)
        } else {
            dest.to_path_buf()
        };
        let path = self.prepare_file(&target)?;
        self.place(&root.join(&real), &meta, &path, owner)?;
        Ok(())
    }

    pub(super) fn copy_from_view(
        &mut self,
        view: &View,
        rel: &str,
        dest: &Path,
        dest_is_dir: bool,
        excludes: &Ignore,
    ) -> Result<(), CopyError> {
        let resolved = view.resolve(Path::new(rel), true)?;
        let found = view
            .lstat(&resolved)
            .ok_or_else(|| CopyError::NotFound(rel.into()))?;
        if found.meta.is_dir() {
            let dest_dir = self.ensure_dir(dest)?;
            view.walk(&resolved, &mut |p, f| {
                let sub = p.strip_prefix(&resolved).unwrap_or(p);
                if p == resolved || excludes.excludes(&sub.to_string_lossy()) {
                    return Ok(());
                }
                let owner = self.owner.unwrap_or((f.meta.uid(), f.meta.gid()));
                self.place_later(&f.real, &f.meta, &dest_dir.join(sub), owner)
                    .map_err(io::Error::other)
            })?;
            self.flush_files()?;
            return Ok(());
        }
        let name = Path::new(rel).file_name().unwrap_or_default();
        let target = if dest_is_dir {
            dest.join(name)
        } else {
            dest.to_path_buf()
        };
        let path = self.prepare_file(&target)?;
        let owner = self.owner.unwrap_or((found.meta.uid(), found.meta.gid()));
        self.place(&found.real, &found.meta, &path, owner)
    }

    fn set_dir_meta(
        &mut self,
        dir: &Path,
        meta: &fs::Metadata,
        owner: (u32, u32),
    ) -> Result<(), CopyError> {
        std::os::unix::fs::lchown(dir, Some(owner.0), Some(owner.1))?;
        let mode = self.mode_of(meta);
        self.dirs.retain(|(p, _, _)| p != dir);
        self.dirs.push((dir.to_path_buf(), mode, meta.mtime()));
        Ok(())
    }

    /// Copy one entry of a tree walk (not descending). A regular file waits in `files` for
    /// [`Writer::flush_files`], which copies them in parallel; its directory is made now.
    fn place_later(
        &mut self,
        src: &Path,
        meta: &fs::Metadata,
        dst: &Path,
        owner: (u32, u32),
    ) -> Result<(), CopyError> {
        if meta.file_type().is_file() && meta.nlink() == 1 {
            self.files.push(FileJob {
                src: src.to_path_buf(),
                meta: meta.clone(),
                dst: dst.to_path_buf(),
                owner,
            });
            return Ok(());
        }
        self.place(src, meta, dst, owner)
    }

    /// Copy the regular files `place_later` kept: each is created once and finished on its
    /// descriptor, several at a time (many small files are bound by per-file latency, not by
    /// bandwidth). A file whose destination exists goes through [`Writer::place`] afterwards.
    fn flush_files(&mut self) -> Result<(), CopyError> {
        let jobs = std::mem::take(&mut self.files);
        let create = |job: &FileJob| -> Result<bool, CopyError> {
            match create_new(&job.dst) {
                Ok(to) => self
                    .fill_file(&job.src, &job.meta, to, job.owner)
                    .map(|()| true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e.into()),
            }
        };
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 8);
        // Creating a file takes its directory's lock: two threads creating in one directory
        // spin on each other (a third of the CPU of a 50k-file COPY went there). Each thread
        // takes a directory's files at a time instead (jobs come in walk order, a directory's
        // files together). Fewer directories than threads: file by file, as the content copies
        // still overlap.
        let mut batches = Vec::new();
        let mut start = 0;
        for i in 1..=jobs.len() {
            if i == jobs.len() || jobs[i].dst.parent() != jobs[start].dst.parent() {
                batches.push(start..i);
                start = i;
            }
        }
        if batches.len() < workers {
            batches = (0..jobs.len()).map(|i| i..i + 1).collect();
        }
        let next = std::sync::atomic::AtomicUsize::new(0);
        let work = || -> Result<Vec<usize>, CopyError> {
            let mut existing = Vec::new();
            loop {
                let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(batch) = batches.get(b) else {
                    return Ok(existing);
                };
                for i in batch.clone() {
                    if !create(&jobs[i])? {
                        existing.push(i);
                    }
                }
            }
        };
        let mut existing = if jobs.len() < 64 {
            work()?
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..workers).map(|_| scope.spawn(work)).collect();
                let mut all = Vec::new();
                for h in handles {
                    all.extend(h.join().map_err(|_| {
                        CopyError::Io(io::Error::other("a copy thread panicked"))
                    })??);
                }
                Ok::<_, CopyError>(all)
            })?
        };
        existing.sort_unstable();
        for i in existing {
            let job = &jobs[i];
            self.place(&job.src, &job.meta, &job.dst, job.owner)?;
        }
        Ok(())
    }

    /// Copy one entry (not descending) from `src` to `dst` in the snapshot.
    fn place(
        &mut self,
        src: &Path,
        meta: &fs::Metadata,
        dst: &Path,
        owner: (u32, u32),
    ) -> Result<(), CopyError> {
        let ft = meta.file_type();
        // A new regular file costs one create and works on the descriptor; anything already
        // at `dst` takes the general path below.
        if ft.is_file() && meta.nlink() == 1 {
            match create_new(dst) {
                Ok(to) => return self.fill_file(src, meta, to, owner),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e.into()),
            }
        }
        if let Ok(existing) = fs::symlink_metadata(dst)
            && !(existing.is_dir() && ft.is_dir())
        {
            if existing.is_dir() {
                crate::store::remove_tree(dst)?;
            } else {
                fs::remove_file(dst)?;
            }
        }
        if ft.is_dir() {
            if !dst.is_dir() {
                fs::create_dir(dst)?;
            }
            return self.set_dir_meta(dst, meta, owner);
        }
        if ft.is_symlink() {
            symlink(fs::read_link(src)?, dst)?;
            std::os::unix::fs::lchown(dst, Some(owner.0), Some(owner.1))?;
            set_mtime(dst, meta.mtime())?;
            return Ok(());
        }
        if ft.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = self.links.get(&key) {
                    fs::hard_link(first, dst)?;
                    return Ok(());
                }
                self.links.insert(key, dst.to_path_buf());
            }
            let mut from = File::open(src)?;
            let mut to = create_new(dst)?;
            io::copy(&mut from, &mut to)?;
            finish(
                dst,
                owner.0,
                owner.1,
                self.mode_of(meta),
                Some(meta.mtime()),
            )?;
            // After the chown, which clears `security.capability`.
            copy_xattrs(src, &to);
            return Ok(());
        }
        // Devices, fifos: recreate them (a rootless build skips devices it may not create).
        let mode = meta.mode();
        if let Err(e) = rustix::fs::mknodat(
            rustix::fs::CWD,
            dst,
            rustix::fs::FileType::from_raw_mode(mode),
            rustix::fs::Mode::from_raw_mode(mode),
            meta.rdev(),
        ) {
            if e == rustix::io::Errno::PERM {
                return Ok(());
            }
            return Err(io::Error::from(e).into());
        }
        finish(
            dst,
            owner.0,
            owner.1,
            self.mode_of(meta),
            Some(meta.mtime()),
        )
        .map_err(Into::into)
    }
}
/// Create a new regular file at `path` (mode 0600 until it is finished), never through a
/// symlink; `AlreadyExists` if anything is there.
fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

fn copy_xattrs(src: &Path, dst: &File) {
    use xattr::FileExt;
    if let Ok(names) = xattr::list(src) {
        for name in names {
            let n = name.to_string_lossy();
            if n.starts_with("trusted.overlay.") || n.starts_with("user.overlay.") {
                continue;
            }
            if let Ok(Some(v)) = xattr::get(src, &name) {
                let _ = dst.set_xattr(&name, &v);
            }
        }
    }
}
