//! The build context: a directory (or a tarball unpacked into one), seen through its
//! `.dockerignore`.
//!
//! As in BuildKit, an ignored file does not exist for the build: COPY cannot read it, a
//! wildcard does not match it, and it never enters a cache key. `<Dockerfile>.dockerignore`
//! next to the Dockerfile takes precedence over the context's `.dockerignore`.

pub mod glob;
pub mod hash;
pub mod ignore;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::snapshot::extract::{self, UnpackOptions};
use crate::store::{Store, TempDir};
use ignore::Ignore;

/// Why the context could not be used.
#[derive(Debug, Error)]
pub enum ContextError {
    #[error("the build context {0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}")]
    Ignore(#[from] ignore::PatternError),
    #[error("unpacking the context: {0}")]
    Extract(#[from] extract::ExtractError),
    #[error("{path}: not found in the build context")]
    NotFound { path: String },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A build context.
#[derive(Debug)]
pub struct Context {
    root: PathBuf,
    ignore: Ignore,
    _unpacked: Option<TempDir>,
}

impl Context {
    /// A directory context. `dockerfile` is the Dockerfile's path, for its own `.dockerignore`.
    pub fn from_dir(dir: &Path, dockerfile: Option<&Path>) -> Result<Context, ContextError> {
        if !dir.is_dir() {
            return Err(ContextError::NotADirectory(dir.to_path_buf()));
        }
        let ignore = load_ignore(dir, dockerfile)?;
        Ok(Context {
            root: dir.to_path_buf(),
            ignore,
            _unpacked: None,
        })
    }

    /// A tarball context (`-` on stdin, or a `.tar[.gz|.zst|...]` file), unpacked into the store.
    pub fn from_tar(
        reader: impl Read,
        store: &Store,
        dockerfile: Option<&Path>,
    ) -> Result<Context, ContextError> {
        let dir = store.temp_dir("context")?;
        extract::unpack(
            reader,
            dir.path(),
            &UnpackOptions {
                ignore_chown_errors: true,
                limits: Some(crate::fetch::Limits::current()),
                ..Default::default()
            },
        )?;
        let dockerfile = dockerfile.map(|d| dir.path().join(d));
        let ignore = load_ignore(dir.path(), dockerfile.as_deref())?;
        Ok(Context {
            root: dir.path().to_path_buf(),
            ignore,
            _unpacked: Some(dir),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a `.dockerignore` applies at all.
    pub fn has_ignores(&self) -> bool {
        !self.ignore.is_empty()
    }

    /// Make `mask` an overlay layer that hides, over the context directory `rel`, every path
    /// `.dockerignore` excludes: an overlayfs whiteout (a 0:0 character device) for each
    /// excluded entry whose directory is not excluded itself. `Ok(false)` when no such layer
    /// can say it: a `!pattern` may bring back a path inside an excluded directory, which a
    /// whiteout would hide too.
    pub fn mask_ignored(&self, rel: &str, mask: &Path) -> io::Result<bool> {
        if self.ignore.has_reincludes() {
            return Ok(false);
        }
        fs::create_dir_all(mask)?;
        let rel = self.resolve(rel, true)?;
        let mut stack = vec![rel.clone()];
        while let Some(dir) = stack.pop() {
            for entry in fs::read_dir(self.root.join(&dir))? {
                let entry = entry?;
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                let child = join(&dir, &name);
                let sub = Path::new(&child)
                    .strip_prefix(&rel)
                    .unwrap_or(Path::new(&child))
                    .to_path_buf();
                if self.is_ignored(&child) {
                    if let Some(parent) = sub.parent() {
                        fs::create_dir_all(mask.join(parent))?;
                    }
                    crate::snapshot::extract::mknod_whiteout(&mask.join(&sub))?;
                } else if entry.file_type()?.is_dir() {
                    stack.push(child);
                }
            }
        }
        Ok(true)
    }

    /// Whether `.dockerignore` hides this path (relative, `/`-separated).
    pub fn is_ignored(&self, rel: &str) -> bool {
        !rel.is_empty() && self.ignore.excludes(rel)
    }

    /// The paths a COPY source names: the path itself, or every match of its wildcards, sorted.
    /// The source is relative to the context root; `..` cannot climb above it.
    pub fn expand(&self, source: &str) -> Result<Vec<String>, ContextError> {
        let cleaned = ignore::clean(source);
        let comps: Vec<&str> = cleaned.split('/').filter(|c| !c.is_empty()).collect();
        let mut found = vec![String::new()];
        for comp in &comps {
            let mut next = Vec::new();
            for base in &found {
                let dir = self.root.join(base);
                if glob::has_meta(comp) {
                    let mut names: Vec<String> = match fs::read_dir(&dir) {
                        Ok(rd) => rd
                            .flatten()
                            .filter_map(|e| e.file_name().into_string().ok())
                            .collect(),
                        Err(_) => continue,
                    };
                    names.sort();
                    for name in names {
                        if glob::matches(comp, &name) {
                            let rel = join(base, &name);
                            if !self.is_ignored(&rel) {
                                next.push(rel);
                            }
                        }
                    }
                } else {
                    let rel = join(base, comp);
                    let exists = self
                        .resolve(&rel, false)
                        .is_ok_and(|r| fs::symlink_metadata(self.root.join(r)).is_ok());
                    if exists {
                        next.push(rel);
                    }
                }
            }
            found = next;
        }
        if found.is_empty() {
            return Err(ContextError::NotFound {
                path: source.to_string(),
            });
        }
        Ok(found)
    }

    /// Resolve symlinks in `rel` inside the context (the last component too when
    /// `follow_last`), refusing what `.dockerignore` hides, under its own name or an alias.
    /// Errors name the path as the Dockerfile gave it, never where a symlink pointed.
    pub fn resolve(&self, rel: &str, follow_last: bool) -> io::Result<String> {
        let not_found = || {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{rel}: no such file or directory in the build context"),
            )
        };
        let resolved = crate::snapshot::view::View::new(vec![self.root.clone()])
            .resolve(Path::new(rel), follow_last)
            .map_err(|_| not_found())?;
        let resolved = resolved.to_string_lossy().into_owned();
        if self.is_ignored(&resolved) || self.is_ignored(&ignore::clean(rel)) {
            return Err(not_found());
        }
        Ok(resolved)
    }

    /// Visit a context path and, for a directory, everything below it that is not ignored,
    /// depth-first in byte order. Paths are relative to the context root. An ignored directory
    /// that holds a re-included path (`build/` then `!build/dist`) is visited just before that
    /// path, so that it exists to hold it.
    ///
    /// `rel`'s directories are resolved inside the context, as a chroot at its root would (a
    /// symlink to `/etc` there is the context's `etc`, never the host's), and the paths visited
    /// are the resolved ones. A path that is ignored, or that resolves to an ignored one through
    /// a symlink alias, does not exist.
    pub fn walk(
        &self,
        rel: &str,
        visit: &mut dyn FnMut(&str, &fs::Metadata) -> io::Result<()>,
    ) -> io::Result<()> {
        let resolved = self.resolve(rel, false)?;
        let rel = resolved.as_str();
        let meta = fs::symlink_metadata(self.root.join(rel))?;
        visit(rel, &meta)?;
        if meta.is_dir() {
            self.walk_dir(rel, &mut Vec::new(), visit)?;
        }
        Ok(())
    }

    fn walk_dir(
        &self,
        rel: &str,
        pending: &mut Vec<(String, fs::Metadata)>,
        visit: &mut dyn FnMut(&str, &fs::Metadata) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(self.root.join(rel))?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        names.sort_by(|a, b| {
            use std::os::unix::ffi::OsStrExt;
            a.as_bytes().cmp(b.as_bytes())
        });
        for name in names {
            let Some(name) = name.to_str() else { continue };
            let child = join(rel, name);
            let meta = fs::symlink_metadata(self.root.join(&child))?;
            if self.is_ignored(&child) {
                if meta.is_dir() && self.ignore.could_reinclude_inside(&child) {
                    pending.push((child.clone(), meta));
                    self.walk_dir(&child, pending, visit)?;
                    if pending.last().is_some_and(|(p, _)| *p == child) {
                        pending.pop();
                    }
                }
                continue;
            }
            for (p, m) in pending.drain(..) {
                visit(&p, &m)?;
            }
            visit(&child, &meta)?;
            if meta.is_dir() {
                self.walk_dir(&child, pending, visit)?;
            }
        }
        Ok(())
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

fn load_ignore(dir: &Path, dockerfile: Option<&Path>) -> Result<Ignore, ContextError> {
    let specific = dockerfile.map(|d| {
        let mut p = d.as_os_str().to_os_string();
        p.push(".dockerignore");
        PathBuf::from(p)
    });
    for candidate in specific.into_iter().chain([dir.join(".dockerignore")]) {
        match fs::read_to_string(&candidate) {
            Ok(text) => return Ok(Ignore::parse(&text)?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(Ignore::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(files: &[&str], ignore: &str) -> (tempfile::TempDir, Context) {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            let p = d.path().join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, f).unwrap();
        }
        if !ignore.is_empty() {
            fs::write(d.path().join(".dockerignore"), ignore).unwrap();
        }
        let c = Context::from_dir(d.path(), None).unwrap();
        (d, c)
    }

    #[test]
    fn wildcards_expand_sorted_and_skip_ignored_files() {
        let (_d, c) = ctx(
            &[
                "src/b.go",
                "src/a.go",
                "src/a_test.go",
                "src/x.rs",
                "docs/a.md",
            ],
            "*_test.go\nsrc/*_test.go\n",
        );
        assert_eq!(c.expand("src/*.go").unwrap(), ["src/a.go", "src/b.go"]);
        assert_eq!(c.expand("/src/../src/x.rs").unwrap(), ["src/x.rs"]);
        assert_eq!(c.expand("*/a.*").unwrap(), ["docs/a.md", "src/a.go"]);
        assert!(matches!(
            c.expand("src/*_test.go"),
            Err(ContextError::NotFound { .. })
        ));
        assert!(matches!(
            c.expand("nope"),
            Err(ContextError::NotFound { .. })
        ));
        assert_eq!(
            c.expand("../../src/a.go").unwrap(),
            ["src/a.go"],
            "sources cannot climb out"
        );
    }

    #[test]
    fn walk_honours_ignore_with_exceptions() {
        let (_d, c) = ctx(
            &[
                "a/keep.txt",
                "a/drop.txt",
                "logs/x.log",
                "logs/keep.log",
                "b",
            ],
            "a/drop.txt\nlogs\n!logs/keep.log\n",
        );
        let mut seen = Vec::new();
        c.walk("", &mut |p, _| {
            seen.push(p.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [
                "",
                ".dockerignore",
                "a",
                "a/keep.txt",
                "b",
                "logs",
                "logs/keep.log"
            ]
        );
    }

    #[test]
    fn dockerfile_specific_ignore_wins() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("a"), "").unwrap();
        fs::write(d.path().join("b"), "").unwrap();
        fs::write(d.path().join(".dockerignore"), "a\n").unwrap();
        fs::write(d.path().join("Dockerfile.dockerignore"), "b\n").unwrap();
        let c = Context::from_dir(d.path(), Some(&d.path().join("Dockerfile"))).unwrap();
        assert!(c.is_ignored("b") && !c.is_ignored("a"));
    }
}
