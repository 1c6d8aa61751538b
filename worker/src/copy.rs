//! COPY and ADD: writing files into a new snapshot, as BuildKit's file operations do.
//!
//! The rules (Dockerfile reference, and BuildKit where the reference is silent):
//! - a source directory copies its *contents*; a source file lands at `dest` or, when `dest`
//!   ends with `/` or is an existing directory, at `dest/<name>`;
//! - several sources (after wildcards) need a directory destination ending with `/`;
//! - a relative `dest` is relative to the WORKDIR; missing directories are created;
//! - the source path itself is followed if it is a symlink; symlinks inside are copied as
//!   symlinks; hardlinks within one COPY stay hardlinks;
//! - files from the context belong to root, files from a stage or image keep their owner, and
//!   `--chown` overrides both (directories it creates too); `--chmod` overrides modes;
//!   modification times are kept;
//! - `ADD` extracts local tar archives (plain, gzip, bzip2, xz, zstd) into `dest`, unless
//!   `--unpack=false`; a download is extracted only with `--unpack`;
//! - `--link` resolves `dest` against an empty filesystem, so the layer does not depend on
//!   what lies below it;
//! - nothing is ever written through a symlink: destination paths are resolved inside the
//!   image's root, and the new snapshot is written with `O_NOFOLLOW`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::OFlags;
use thiserror::Error;

use crate::context::ignore::{self, Ignore};
use crate::context::{Context, ContextError, glob};
use crate::fsroot::{self, Root};
use crate::plan::step::{Copy, CopySource};
use crate::snapshot::extract::{self, ExtractError, UnpackOptions, set_mtime};
use crate::snapshot::view::View;
use crate::userdb::{self, UserError};

/// Why a COPY or ADD failed.
#[derive(Debug, Error)]
pub enum CopyError {
    #[error("{0}")]
    Context(#[from] ContextError),
    #[error("{0}: not found")]
    NotFound(String),
    #[error("{0}")]
    User(#[from] UserError),
    #[error("invalid --chmod {0:?}: use octal (0755) or symbolic (u+x,go-w) notation")]
    Chmod(String),
    #[error(
        "when using COPY with more than one source file, the destination must be a directory and end with a /"
    )]
    NeedsDirectory,
    #[error("cannot copy to {0}: a symlink is in the way")]
    Symlink(String),
    #[error("{0} is not supported yet")]
    Unsupported(String),
    #[error("extracting {0}: {1}")]
    Extract(String, ExtractError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Where COPY reads from.
pub enum Source<'a> {
    Context(&'a Context),
    /// A stage's or an image's filesystem.
    View(&'a View),
}

/// A COPY or ADD to perform.
pub struct Request<'a> {
    pub op: &'a Copy,
    pub source: Source<'a>,
    /// The filesystem the step builds on, for `--chown` names and the destination.
    pub base: &'a View,
    /// The new snapshot directory.
    pub upper: &'a Path,
    /// `ADD <url>` sources, already downloaded, by URL.
    pub downloads: &'a HashMap<String, crate::fetch::Downloaded>,
}

/// A `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    /// `(who mask, op, permission bits, X)` clauses.
    Symbolic(Vec<(u32, char, u32, bool)>),
}

impl Chmod {
    pub fn parse(text: &str) -> Option<Chmod> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let mode = u32::from_str_radix(text, 8).ok()?;
            return (mode <= 0o7777).then_some(Chmod::Octal(mode));
        }
        let mut clauses = Vec::new();
        for clause in text.split(',') {
            let op_at = clause.find(['+', '-', '='])?;
            let (who, rest) = clause.split_at(op_at);
            let mut who_mask = 0;
            for c in who.chars() {
                who_mask |= match c {
                    'u' => 0o4700,
                    'g' => 0o2070,
                    'o' => 0o1007,
                    'a' => 0o7777,
                    _ => return None,
                };
            }
            if who.is_empty() {
                who_mask = 0o7777;
            }
            let op = rest.chars().next()?;
            let mut bits = 0;
            let mut big_x = false;
            for c in rest[1..].chars() {
                bits |= match c {
                    'r' => 0o444,
                    'w' => 0o222,
                    'x' => 0o111,
                    'X' => {
                        big_x = true;
                        0
                    }
                    's' => 0o6000,
                    't' => 0o1000,
                    _ => return None,
                };
            }
            clauses.push((who_mask, op, bits, big_x));
        }
        (!clauses.is_empty()).then_some(Chmod::Symbolic(clauses))
    }

    /// The mode a file of mode `mode` (permission bits) gets.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        match self {
            // BuildKit drops the setuid, setgid and sticky bits of an octal --chmod.
            Chmod::Octal(m) => *m & 0o777,
            Chmod::Symbolic(clauses) => {
                let mut m = mode & 0o7777;
                for &(who, op, bits, big_x) in clauses {
                    let mut b = bits;
                    if big_x && (is_dir || m & 0o111 != 0) {
                        b |= 0o111;
                    }
                    let b = b & who;
                    match op {
                        '+' => m |= b,
                        '-' => m &= !b,
                        _ => m = (m & !who) | b,
                    }
                }
                m
            }
        }
    }
}

/// One thing to copy, after wildcards.
enum Item {
    /// A downloaded file (`ADD <url>`).
    Download(crate::fetch::Downloaded),
    /// A path in the source, relative to its root, and the part of it `--parents` keeps.
    Path {
        rel: String,
        kept: String,
    },
    HereDoc {
        name: String,
        content: String,
    },
}

struct Writer<'a> {
    upper: &'a Path,
    /// The destination as the step sees it: the new snapshot over the base.
    view: View,
    /// The base alone: what a directory looked like before this COPY.
    base: View,
    owner: Option<(u32, u32)>,
    chmod: Option<Chmod>,
    /// Directories whose metadata must be set once their content is in place.
    dirs: Vec<(PathBuf, u32, i64)>,
    /// Hardlinked source files already copied: source (dev, inode) → path in the snapshot.
    links: HashMap<(u64, u64), PathBuf>,
    /// Regular files of a tree walk, copied together by `flush_files`.
    files: Vec<FileJob>,
}

struct FileJob {
    src: PathBuf,
    meta: fs::Metadata,
    dst: PathBuf,
    owner: (u32, u32),
}

/// Copy `path` of `source` and everything below it into `dest` as a flagless `COPY --link`
/// would: owners, modes, times, links and xattrs kept. For local outputs, cache-mount seeding
/// and materialised snapshots.
pub fn copy_tree(source: Source<'_>, path: &str, dest: &Path) -> Result<(), CopyError> {
    let op = Copy {
        is_add: false,
        // Unused by `copy`, which reads `source`.
        from: crate::plan::step::Input::Context,
        sources: vec![CopySource::Path(path.to_string())],
        dest: "/".into(),
        workdir: "/".into(),
        chown: None,
        chmod: None,
        link: true,
        parents: false,
        exclude: vec![],
        checksum: None,
        keep_git_dir: false,
        unpack: false,
        unpack_downloads: false,
    };
    copy(&Request {
        op: &op,
        source,
        base: &View::new(vec![]),
        upper: dest,
        downloads: &HashMap::new(),
    })
}

/// Perform a COPY or ADD into `req.upper`.
pub fn copy(req: &Request<'_>) -> Result<(), CopyError> {
    let op = req.op;
    let passwd =
        String::from_utf8_lossy(&req.base.read(Path::new("etc/passwd")).unwrap_or_default())
            .into_owned();
    let group = String::from_utf8_lossy(&req.base.read(Path::new("etc/group")).unwrap_or_default())
        .into_owned();
    let owner = op
        .chown
        .as_deref()
        .map(|c| userdb::chown(c, &passwd, &group))
        .transpose()?;
    let chmod = op
        .chmod
        .as_deref()
        .map(|c| Chmod::parse(c).ok_or_else(|| CopyError::Chmod(c.into())))
        .transpose()?;
    let excludes =
        Ignore::parse(&op.exclude.join("\n")).map_err(|e| CopyError::Unsupported(e.to_string()))?;

    let mut items = Vec::new();
    for source in &op.sources {
        match source {
            CopySource::Path(p) => {
                let found = match expand(&req.source, p) {
                    Ok(found) => found,
                    // A wildcard that matches nothing copies nothing (BuildKit).
                    Err(_) if glob::has_meta(p) => Vec::new(),
                    Err(e) => return Err(e),
                };
                // `--parents` keeps the source's directories, from a `/./` pivot if there is one.
                let pivot = p.split_once("/./").map(|(before, _)| ignore::clean(before));
                for rel in found {
                    if excludes.excludes(&rel) {
                        continue;
                    }
                    let kept = match &pivot {
                        Some(prefix) if !prefix.is_empty() => rel
                            .strip_prefix(prefix.as_str())
                            .map_or(rel.clone(), |k| k.trim_start_matches('/').to_string()),
                        _ => rel.clone(),
                    };
                    items.push(Item::Path { rel, kept });
                }
            }
            CopySource::HereDoc { name, content } => items.push(Item::HereDoc {
                name: name.clone(),
                content: content.clone(),
            }),
            CopySource::Url(u) => match req.downloads.get(u) {
                Some(d) => items.push(Item::Download(d.clone())),
                None => return Err(CopyError::NotFound(u.clone())),
            },
            CopySource::Git(g) => {
                return Err(CopyError::Unsupported(format!(
                    "ADD from a Git repository ({g})"
                )));
            }
        }
    }

    let dest_abs = absolute(&op.dest, &op.workdir);
    let dir_syntax = op.dest.ends_with('/') || op.dest.ends_with("/.") || op.dest == ".";
    // The rule counts the sources as written: BuildKit lets a wildcard match several files
    // into a file destination (moby/buildkit#4550).
    if op.sources.len() > 1 && !dir_syntax {
        return Err(CopyError::NeedsDirectory);
    }
    // `--link` builds the layer on nothing, so `dest` means the same whatever lies below.
    let base_layers = if op.link {
        vec![]
    } else {
        req.base.layers().to_vec()
    };
    let mut view_layers = vec![req.upper.to_path_buf()];
    view_layers.extend(base_layers.iter().cloned());
    let mut w = Writer {
        upper: req.upper,
        view: View::new(view_layers),
        base: View::new(base_layers),
        owner,
        chmod,
        dirs: Vec::new(),
        links: HashMap::new(),
        files: Vec::new(),
    };
    let dest_is_dir = dir_syntax || w.is_dir(&dest_abs)?;

    for item in &items {
        match item {
            Item::HereDoc { name, content } => {
                let target = if dest_is_dir {
                    dest_abs.join(name)
                } else {
                    dest_abs.clone()
                };
                let path = w.prepare_file(&target)?;
                fs::write(&path, content)?;
                let mode = w.chmod.as_ref().map_or(0o644, |c| c.apply(0o644, false));
                let (uid, gid) = w.owner.unwrap_or((0, 0));
                finish(&path, uid, gid, mode, None)?;
            }
            Item::Download(d) if op.unpack_downloads && is_archive(&d.path)? => {
                w.extract_into(&d.path, &dest_abs, &d.file_name)?;
            }
            Item::Download(d) => {
                let target = if dest_is_dir {
                    dest_abs.join(&d.file_name)
                } else {
                    dest_abs.clone()
                };
                let path = w.prepare_file(&target)?;
                fs::copy(&d.path, &path)?;
                // A remote file gets mode 0600 and the server's Last-Modified time.
                let mode = w.chmod.as_ref().map_or(0o600, |c| c.apply(0o600, false));
                let (uid, gid) = w.owner.unwrap_or((0, 0));
                finish(&path, uid, gid, mode, d.last_modified)?;
            }
            Item::Path { rel, kept } => {
                let parents = op.parents.then(|| parents_of(kept));
                let dest_dir = match &parents {
                    Some(Some(p)) => dest_abs.join(p),
                    _ => dest_abs.clone(),
                };
                match &req.source {
                    Source::Context(ctx) => w.copy_from_context(
                        ctx,
                        rel,
                        &dest_dir,
                        dest_is_dir || parents.is_some(),
                        op,
                        &excludes,
                    )?,
                    Source::View(view) => w.copy_from_view(
                        view,
                        rel,
                        &dest_dir,
                        dest_is_dir || parents.is_some(),
                        &excludes,
                    )?,
                }
            }
        }
    }
    apply_dir_meta(req.upper, &w.dirs)
}

/// Give the directories a COPY made or copied up their modes and times, last and deepest
/// first (their children are written by then). Each is opened again from the snapshot's root
/// without following any symlink, and changed through that descriptor: a later source may
/// have replaced a directory with a symlink (two sources, `dir/` and a `dir` symlink to a host
/// file), and a `chmod` by path would then land on the host.
fn apply_dir_meta(upper: &Path, dirs: &[(PathBuf, u32, i64)]) -> Result<(), CopyError> {
    if dirs.is_empty() {
        return Ok(());
    }
    let root = Root::open(upper)?;
    for (path, mode, mtime) in dirs.iter().rev() {
        root.set_dir_meta(path.strip_prefix(upper).unwrap_or(path), *mode, *mtime)?;
    }
    Ok(())
}

/// The parent directories of a source that `--parents` keeps (`a/b/c.txt` → `a/b`).
fn parents_of(rel: &str) -> Option<String> {
    // A `/./` in the source marks where the kept part starts.
    let kept = rel.rsplit_once("/./").map_or(rel, |(_, k)| k);
    Path::new(kept)
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(|p| p.to_string_lossy().into_owned())
}

fn absolute(dest: &str, workdir: &str) -> PathBuf {
    let joined = if dest.starts_with('/') {
        dest.to_string()
    } else {
        format!("{workdir}/{dest}")
    };
    PathBuf::from("/").join(ignore::clean(&joined))
}

fn expand(source: &Source<'_>, pattern: &str) -> Result<Vec<String>, CopyError> {
    match source {
        Source::Context(ctx) => Ok(ctx.expand(pattern)?),
        Source::View(view) => {
            let cleaned = ignore::clean(pattern);
            let mut found = vec![String::new()];
            for comp in cleaned.split('/').filter(|c| !c.is_empty()) {
                let mut next = Vec::new();
                for base in &found {
                    if glob::has_meta(comp) {
                        let resolved = view.resolve(Path::new(base), true)?;
                        for name in view.read_dir(&resolved).unwrap_or_default() {
                            let name = name.to_string_lossy().into_owned();
                            if glob::matches(comp, &name) {
                                next.push(join(base, &name));
                            }
                        }
                    } else {
                        let rel = join(base, comp);
                        let resolved = view.resolve(Path::new(&rel), false)?;
                        if view.lstat(&resolved).is_some() {
                            next.push(rel);
                        }
                    }
                }
                found = next;
            }
            if found.is_empty() {
                return Err(CopyError::NotFound(pattern.into()));
            }
            Ok(found)
        }
    }
}

/// The digest of what a COPY reads from a stage or image filesystem: for each source (after
/// wildcards, with the top-level symlink followed as the copy follows it), every path below
/// it with its type, mode, owner, link target and content. Times are left out, as in BuildKit's
/// content checksums: a stage that is rebuilt into the same files gives the same digest.
pub fn digest_view_sources(view: &View, op: &Copy) -> Result<crate::digest::Digest, CopyError> {
    let mut rels = Vec::new();
    for source in &op.sources {
        let CopySource::Path(p) = source else {
            continue;
        };
        match expand(&Source::View(view), p) {
            Ok(found) => rels.extend(found),
            Err(_) if glob::has_meta(p) => {}
            Err(e) => return Err(e),
        }
    }
    digest_view_paths(view, &rels)
}

/// The digest of paths in a view and everything below them, as [`digest_view_sources`] makes
/// it (a bind mount's `source` in a stage, too).
pub fn digest_view_paths(view: &View, rels: &[String]) -> Result<crate::digest::Digest, CopyError> {
    let mut h = crate::digest::KeyHasher::new("view-paths/v1");
    for rel in rels {
        let root = view.resolve(Path::new(rel), true)?;
        h.str("root").str(rel);
        view.walk(&root, &mut |path, found| {
            let meta = &found.meta;
            let inside = path.strip_prefix(&root).unwrap_or(path);
            h.str(&inside.to_string_lossy()).str(&format!(
                "{:o} {} {}",
                meta.mode(),
                meta.uid(),
                meta.gid()
            ));
            if meta.file_type().is_symlink() {
                h.str(&fs::read_link(&found.real)?.to_string_lossy());
            } else if meta.is_file() {
                let mut hashing = crate::digest::HashingWriter::new(io::sink());
                io::copy(&mut File::open(&found.real)?, &mut hashing)?;
                h.str(hashing.finish().0.as_str());
            }
            Ok(())
        })?;
    }
    Ok(h.finish())
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

/// Owner, mode and time of a file just made at `path` (whose parents hold no symlink), through
/// a descriptor that does not follow its last component.
fn finish(path: &Path, uid: u32, gid: u32, mode: u32, mtime: Option<i64>) -> io::Result<()> {
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

/// Whether a file is a tar archive, compressed or not (its first block is a tar header).
pub(crate) fn is_archive(path: &Path) -> io::Result<bool> {
    let mut head = [0u8; 512];
    let mut f = File::open(path)?;
    let n = read_up_to(&mut f, &mut head)?;
    if extract::sniff(&head[..n]) != extract::Format::Plain {
        // A compressed file is an archive only if it holds a tar.
        let mut inner = extract::decompress(File::open(path)?)?;
        let mut block = [0u8; 512];
        let n = match read_up_to(&mut inner, &mut block) {
            Ok(n) => n,
            Err(_) => return Ok(false),
        };
        return Ok(n == 512 && is_tar_header(&block));
    }
    Ok(n == 512 && is_tar_header(&head))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn is_tar_header(block: &[u8]) -> bool {
    let magic = &block[257..263];
    if magic == b"ustar\0" || &block[257..262] == b"ustar" {
        return true;
    }
    // A v7 tar has no magic: check the header checksum.
    let stored = std::str::from_utf8(&block[148..156])
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim_matches(|c: char| c == '\0' || c == ' '), 8).ok());
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    stored == Some(sum) && block[0] != 0
}

impl Writer<'_> {
    fn is_dir(&self, abs: &Path) -> io::Result<bool> {
        let resolved = self
            .view
            .resolve(abs.strip_prefix("/").unwrap_or(abs), true)?;
        Ok(self.view.lstat(&resolved).is_some_and(|f| f.meta.is_dir()))
    }

    /// Make sure the directory `abs` exists in the snapshot, with every parent: copied up from
    /// the base where it exists there, created otherwise. Returns its path in the snapshot.
    fn ensure_dir(&mut self, abs: &Path) -> Result<PathBuf, CopyError> {
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
    fn prepare_file(&mut self, abs: &Path) -> Result<PathBuf, CopyError> {
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
    fn extract_into(&mut self, archive: &Path, dest: &Path, name: &str) -> Result<(), CopyError> {
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

    fn copy_from_context(
        &mut self,
        ctx: &Context,
        rel: &str,
        dest: &Path,
        dest_is_dir: bool,
        op: &Copy,
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
        if op.unpack && meta.is_file() && is_archive(&root.join(&real))? {
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

    fn copy_from_view(
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
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&job.dst)
            {
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
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dst)
            {
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
            let mut to = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(dst)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_octal_and_symbolic() {
        assert_eq!(Chmod::parse("0755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("755").unwrap().apply(0o600, false), 0o755);
        assert_eq!(Chmod::parse("u+x").unwrap().apply(0o644, false), 0o744);
        assert_eq!(Chmod::parse("go-w,a+r").unwrap().apply(0o666, false), 0o644);
        assert_eq!(Chmod::parse("a+X").unwrap().apply(0o644, true), 0o755);
        assert_eq!(Chmod::parse("a+X").unwrap().apply(0o644, false), 0o644);
        assert_eq!(Chmod::parse("u=rw,go=").unwrap().apply(0o777, false), 0o600);
        assert_eq!(Chmod::parse("+x").unwrap().apply(0o600, false), 0o711);
        assert!(Chmod::parse("99999").is_none());
        assert!(Chmod::parse("z+x").is_none());
        assert!(Chmod::parse("").is_none());
    }

    #[test]
    fn parents_keep_the_source_directories() {
        assert_eq!(parents_of("a/b/c.txt").as_deref(), Some("a/b"));
        assert_eq!(parents_of("c.txt"), None);
        assert_eq!(parents_of("x/./a/c.txt").as_deref(), Some("a"));
    }

    #[test]
    fn relative_destinations_use_the_workdir() {
        assert_eq!(absolute("app/", "/src"), Path::new("/src/app"));
        assert_eq!(absolute("/app", "/src"), Path::new("/app"));
        assert_eq!(absolute(".", "/"), Path::new("/"));
        assert_eq!(absolute("../../x", "/a"), Path::new("/x"));
    }

    #[test]
    fn tar_headers_are_recognised() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_path("f").unwrap();
        h.set_size(1);
        h.set_cksum();
        b.append(&h, &b"x"[..]).unwrap();
        let t = b.into_inner().unwrap();
        assert!(is_tar_header(&t[..512]));
        assert!(!is_tar_header(&[0u8; 512]));
        assert!(!is_tar_header(&[b'a'; 512]));
    }
}
