//! Writing a fetched commit's tree into a directory.
//!
//! Kiln writes the tree itself, through descriptors (`mkdirat`, `openat` with `O_EXCL |
//! O_NOFOLLOW`, `symlinkat`) into a directory it has just created, as every remote input is
//! written (SECURITY.md). Names are checked as git checks them before a checkout: no `.git` (in
//! any case), `.`, `..`, empty names or names with `/`. Files are the committed bytes, with mode
//! 0644, or 0755 for executables (git's checkout under a 022 umask, as BuildKit runs it); symlinks
//! are symlinks, resolved inside the context later like any context's.
//!
//! Not done, and said in the docs: `.gitattributes` conversions (`eol`, `ident`, filters such as
//! Git LFS) are not applied, and submodules are not fetched (their directory is left empty, as
//! `git clone` without `--recurse-submodules` leaves it).
//!
//! With `keep-git-dir`, a `.git` directory is made before the tree is written: a shallow
//! repository holding exactly the commit (and an annotated tag), `HEAD` detached at it, the
//! ref it came from, an index of its tree and `origin` set to the URL without credentials,
//! which is what BuildKit leaves.

use std::ffi::OsStr;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::objs::tree::EntryKind;
use rustix::fs::{Mode, OFlags};

use super::fetch::Fetched;
use super::{GitError, GitRef, MTime, Options};

/// A commit written out.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The directory that holds the tree (or its subdirectory).
    pub dir: PathBuf,
    /// The commit, in hex.
    pub commit: String,
    /// Submodule directories left empty.
    pub submodules: usize,
    /// Bytes of file content written.
    pub bytes: u64,
}

struct Writer<'a> {
    repo: &'a gix::Repository,
    git: &'a GitRef,
    commit: ObjectId,
    /// Where the kept `.git` directory's objects go.
    keep: Option<gix::Repository>,
    mtime: Option<i64>,
    submodules: usize,
    bytes: u64,
}

/// Write `fetched`'s commit (its `git.subdir`) into `dest`, which must not exist.
pub fn checkout(
    fetched: &Fetched,
    git: &GitRef,
    opts: &Options,
    dest: &Path,
) -> Result<Checkout, GitError> {
    let remote = git.redacted();
    let io = |source: std::io::Error| GitError::Io {
        remote: remote.clone(),
        source,
    };
    let gix_err = |e: gix::Error| GitError::Io {
        remote: remote.clone(),
        source: std::io::Error::other(e.to_string()),
    };
    let repo = gix::open_opts(&fetched.repo, gix::open::Options::isolated()).map_err(gix_err)?;
    let commit = repo
        .find_object(fetched.commit)
        .and_then(|o| o.peel_to_commit())
        .map_err(gix_err)?;
    let commit_time = commit.time().map_err(gix_err)?.seconds;
    let root_tree = commit.tree_id().map_err(gix_err)?.detach();
    let mut tree = root_tree;
    let missing = || GitError::MissingSubdir {
        remote: remote.clone(),
        commit: fetched.commit.to_string(),
        subdir: git.subdir.clone(),
    };
    for comp in git.subdir.split('/').filter(|c| !c.is_empty()) {
        let object = repo.find_object(tree).map_err(gix_err)?;
        let decoded = object.try_into_tree().map_err(gix_err)?;
        let decoded = decoded.decode().map_err(gix_err)?;
        let entry = decoded
            .entries
            .iter()
            .find(|e| e.filename == comp.as_bytes())
            .ok_or_else(missing)?;
        if entry.mode.kind() != EntryKind::Tree {
            return Err(missing());
        }
        tree = entry.oid.to_owned();
    }

    rustix::fs::mkdir(dest, Mode::from_raw_mode(0o755)).map_err(|e| io(e.into()))?;
    let top = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io(e.into()))?;
    let keep = if git.keeps_git_dir(opts.keep_git_dir) {
        gix::init(dest).map_err(gix_err)?;
        // No reflog (nobody to sign it): the ref is written as a fetch leaves it.
        let overrides = [
            "core.logAllRefUpdates=false",
            "user.name=kiln",
            "user.email=kiln@localhost",
        ];
        Some(
            gix::open_opts(
                dest,
                gix::open::Options::isolated().config_overrides(overrides),
            )
            .map_err(gix_err)?,
        )
    } else {
        None
    };
    let mut w = Writer {
        repo: &repo,
        git,
        commit: fetched.commit,
        keep,
        mtime: (git.mtime == MTime::Commit).then_some(commit_time),
        submodules: 0,
        bytes: 0,
    };
    w.tree(tree, top.as_fd(), "")?;
    if let Some(secs) = w.mtime {
        crate::fsroot::set_times(top.as_fd(), secs).map_err(io)?;
    }
    if let Some(kept) = w.keep.take() {
        finish_git_dir(&repo, &kept, fetched, git, root_tree, dest).map_err(|e| match e {
            Finish::Io(e) => io(e),
            Finish::Gix(e) => gix_err(e),
        })?;
    }
    Ok(Checkout {
        dir: dest.to_path_buf(),
        commit: fetched.commit.to_string(),
        submodules: w.submodules,
        bytes: w.bytes,
    })
}

impl Writer<'_> {
    fn bad_path(&self, path: String) -> GitError {
        GitError::BadPath {
            remote: self.git.redacted(),
            commit: self.commit.to_string(),
            path,
        }
    }

    fn io(&self, source: impl Into<std::io::Error>) -> GitError {
        GitError::Io {
            remote: self.git.redacted(),
            source: source.into(),
        }
    }

    fn object(&self, id: &gix::oid) -> Result<(gix::objs::Kind, Vec<u8>), GitError> {
        let object = self.repo.find_object(id).map_err(|e| GitError::Io {
            remote: self.git.redacted(),
            source: std::io::Error::other(e.to_string()),
        })?;
        if let Some(keep) = &self.keep {
            use gix::objs::Write as _;
            keep.objects
                .write_buf(object.kind, &object.data)
                .map_err(|e| self.io(std::io::Error::other(e.to_string())))?;
        }
        Ok((object.kind, object.data.clone()))
    }

    /// Write the tree `id` into the directory `dir` (`rel` is its path, for messages).
    fn tree(&mut self, id: ObjectId, dir: BorrowedFd<'_>, rel: &str) -> Result<(), GitError> {
        let (_, data) = self.object(&id)?;
        let decoded = gix::objs::TreeRef::from_bytes(&data, self.repo.object_hash())
            .map_err(|e| self.io(std::io::Error::other(e.to_string())))?;
        for entry in &decoded.entries {
            let name = OsStr::from_bytes(entry.filename);
            let path = if rel.is_empty() {
                name.to_string_lossy().into_owned()
            } else {
                format!("{rel}/{}", name.to_string_lossy())
            };
            if !valid_name(entry.filename) {
                return Err(self.bad_path(path));
            }
            match entry.mode.kind() {
                EntryKind::Tree => {
                    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))
                        .map_err(|e| self.io(e))?;
                    let sub: OwnedFd = rustix::fs::openat(
                        dir,
                        name,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| self.io(e))?;
                    self.tree(entry.oid.to_owned(), sub.as_fd(), &path)?;
                    if let Some(secs) = self.mtime {
                        crate::fsroot::set_times(sub.as_fd(), secs).map_err(|e| self.io(e))?;
                    }
                }
                kind @ (EntryKind::Blob | EntryKind::BlobExecutable) => {
                    let (_, content) = self.object(entry.oid)?;
                    let mode = if kind == EntryKind::BlobExecutable {
                        0o755
                    } else {
                        0o644
                    };
                    let fd = rustix::fs::openat(
                        dir,
                        name,
                        OFlags::WRONLY
                            | OFlags::CREATE
                            | OFlags::EXCL
                            | OFlags::NOFOLLOW
                            | OFlags::CLOEXEC,
                        Mode::from_raw_mode(mode),
                    )
                    .map_err(|e| self.io(e))?;
                    let mut file = std::fs::File::from(fd);
                    file.write_all(&content).map_err(|e| self.io(e))?;
                    crate::fsroot::set_mode(file.as_fd(), mode).map_err(|e| self.io(e))?;
                    self.bytes += content.len() as u64;
                    if let Some(secs) = self.mtime {
                        crate::fsroot::set_times(file.as_fd(), secs).map_err(|e| self.io(e))?;
                    }
                }
                EntryKind::Link => {
                    let (_, target) = self.object(entry.oid)?;
                    if target.is_empty() || target.contains(&0) {
                        return Err(self.bad_path(path));
                    }
                    rustix::fs::symlinkat(OsStr::from_bytes(&target), dir, name)
                        .map_err(|e| self.io(e))?;
                    if let Some(secs) = self.mtime {
                        crate::fsroot::set_times_at(dir, name, secs).map_err(|e| self.io(e))?;
                    }
                }
                EntryKind::Commit => {
                    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755))
                        .map_err(|e| self.io(e))?;
                    self.submodules += 1;
                }
            }
        }
        Ok(())
    }
}

/// A name git itself would check out: not empty, `.`, `..` or `.git` (in any case), without
/// `/` or NUL.
fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && !name.eq_ignore_ascii_case(b".git")
        && !name.contains(&b'/')
        && !name.contains(&0)
}

enum Finish {
    Io(std::io::Error),
    Gix(gix::Error),
}

impl From<std::io::Error> for Finish {
    fn from(e: std::io::Error) -> Self {
        Finish::Io(e)
    }
}

impl From<gix::Error> for Finish {
    fn from(e: gix::Error) -> Self {
        Finish::Gix(e)
    }
}

/// Complete the kept `.git` directory: the commit (and tag) object, the ref, `HEAD` detached at the
/// commit, the shallow boundary, the index and `origin`.
fn finish_git_dir(
    repo: &gix::Repository,
    kept: &gix::Repository,
    fetched: &Fetched,
    git: &GitRef,
    tree: ObjectId,
    dest: &Path,
) -> Result<(), Finish> {
    use gix::objs::Write as _;
    let mut ids = vec![fetched.commit];
    if fetched.tip != fetched.commit {
        ids.push(fetched.tip);
    }
    for id in ids {
        let object = repo.find_object(id)?;
        kept.objects
            .write_buf(object.kind, &object.data)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
    }
    let dot_git = dest.join(".git");
    if let Some(name) = &fetched.ref_name {
        let target = if name.starts_with("refs/tags/") {
            fetched.tip
        } else {
            fetched.commit
        };
        kept.reference(
            name.as_str(),
            target,
            gix::refs::transaction::PreviousValue::Any,
            "kiln: fetched",
        )?;
    }
    std::fs::write(dot_git.join("HEAD"), format!("{}\n", fetched.commit))?;
    std::fs::write(dot_git.join("shallow"), format!("{}\n", fetched.commit))?;
    let mut index = kept.index_from_tree(&tree)?;
    index
        .write(Default::default(), Default::default())
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(dot_git.join("config"))?;
    write!(
        config,
        "[remote \"origin\"]\n\turl = {}\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
        git.redacted()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_git_refuses_are_refused() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b".git",
            b".GIT",
            b".Git",
            b"a/b",
            b"a\0",
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in [&b"a"[..], b".gitignore", b".github", b"git", b"..a"] {
            assert!(valid_name(good), "{good:?}");
        }
    }
}
