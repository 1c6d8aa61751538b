//! Remote build contexts: `kiln build https://host/org/repo.git#ref:subdir` (a Git
//! repository) and `kiln build https://host/path/ctx.tar.gz` (a tarball), as `docker build URL`
//! takes them.
//!
//! - **Git**: the ref's commit is fetched into the state directory's `git/` and its tree (or
//!   the subdirectory) checked out into a temporary directory, which is then a context like any
//!   other (`.dockerignore`, symlinks resolved inside it). The `.git` directory is not part of
//!   it, unless `BUILDKIT_CONTEXT_KEEP_GIT_DIR=1` (or the URL's `keep-git-dir`) asks, and never
//!   for a subdirectory, as in BuildKit.
//! - **URL**: the download is bounded as an `ADD` is (`--add-max-bytes`,
//!   `--fetch-read-timeout`), hashed on the way and refused before use when it does not match
//!   `--context-sha256`; a tar (plain, gzip, bzip2, xz or zstd) is unpacked through the safe
//!   extraction path (no entry leaves the directory, no write through a symlink, bounded size
//!   and ratio). Anything else is taken as the Dockerfile itself, with an empty context, as
//!   BuildKit does with a plain-text URL.

use std::fs::File;
use std::path::{Path, PathBuf};

use super::{Context, ContextError, Origin};
use crate::git::{self, GitAuth, GitRef};
use crate::store::Store;

/// A context fetched from a remote.
#[derive(Debug)]
pub struct Remote {
    pub context: Context,
    /// The Dockerfile, when the URL was one: the context is then empty.
    pub dockerfile: Option<PathBuf>,
    /// Submodule directories of a Git context, left empty.
    pub submodules: usize,
}

/// Where bare repositories are kept in the state directory.
pub fn repos_dir(store: &Store) -> PathBuf {
    store.root().join("git")
}

/// Fetch a Git context. `dockerfile` is the Dockerfile's path in it, for its own
/// `.dockerignore`.
pub fn git(
    git: &GitRef,
    auth: &GitAuth,
    keep_git_dir: bool,
    store: &Store,
    dockerfile: Option<&Path>,
) -> Result<Remote, ContextError> {
    let fetched = git::fetch(git, auth, None, &repos_dir(store))?;
    let dir = store.temp_dir("context")?;
    let root = dir.path().join("tree");
    let checkout = git::checkout(&fetched, git, &git::Options { keep_git_dir }, &root)?;
    let origin = Origin {
        source: git.describe(),
        revision: Some(checkout.commit.clone()),
    };
    Ok(Remote {
        context: Context::fetched(dir, root, dockerfile, origin)?,
        dockerfile: None,
        submodules: checkout.submodules,
    })
}

/// Download a URL context; `sha256` (64 hex digits, `sha256:` optional) must match it.
pub fn url(
    url: &str,
    sha256: Option<&str>,
    store: &Store,
    dockerfile: Option<&Path>,
) -> Result<Remote, ContextError> {
    let dir = store.temp_dir("context")?;
    let checksum = sha256.map(|s| format!("sha256:{}", s.trim_start_matches("sha256:")));
    let downloaded = crate::fetch::fetch(url, dir.path(), checksum.as_deref())?;
    let origin = Origin {
        source: crate::git::reference::redact(url),
        revision: None,
    };
    let root = dir.path().join("context");
    std::fs::create_dir(&root)?;
    if crate::copy::is_archive(&downloaded.path)? {
        crate::snapshot::extract::unpack(
            File::open(&downloaded.path)?,
            &root,
            &crate::snapshot::extract::UnpackOptions {
                ignore_chown_errors: true,
                limits: Some(crate::fetch::Limits::current()),
                ..Default::default()
            },
        )?;
        std::fs::remove_file(&downloaded.path)?;
        return Ok(Remote {
            context: Context::fetched(dir, root, dockerfile, origin)?,
            dockerfile: None,
            submodules: 0,
        });
    }
    let path = downloaded.path.clone();
    Ok(Remote {
        context: Context::fetched(dir, root, None, origin)?,
        dockerfile: Some(path),
        submodules: 0,
    })
}

/// Whether `s` is a valid `--context-sha256`: 64 hex digits, `sha256:` optional.
pub fn valid_sha256(s: &str) -> bool {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}
