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
//!
//! The module's parts: this file reads the step (sources, wildcards, destination, `--parents`)
//! and hands each source to the tree writer (`tree`), which is also the generic copier of a
//! whole filesystem (local outputs, cache seeding, materialised snapshots); `chmod` parses
//! `--chmod`, `archive` recognises the tarballs ADD extracts, and `digest` keys what a COPY
//! reads from a stage.

mod archive;
mod chmod;
mod digest;
mod tree;

pub(crate) use archive::is_archive;
pub use chmod::Chmod;
pub use digest::{digest_view_paths, digest_view_sources};
pub use tree::copy_tree;

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::context::ignore::{self, Ignore};
use crate::context::{Context, ContextError, glob};
use crate::fsroot::Root;
use crate::plan::step::{Copy, CopySource};
use crate::snapshot::extract::ExtractError;
use crate::snapshot::view::View;
use crate::userdb::{self, UserError};
use tree::{Writer, finish};
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
    let mut w = Writer::new(req.upper, base_layers, owner, chmod);
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
                        op.unpack,
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
pub(super) fn apply_dir_meta(upper: &Path, dirs: &[(PathBuf, u32, i64)]) -> Result<(), CopyError> {
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

pub(super) fn expand(source: &Source<'_>, pattern: &str) -> Result<Vec<String>, CopyError> {
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
pub(super) fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
