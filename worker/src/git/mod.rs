//! Git sources: a build context at `https://host/org/repo.git#ref:subdir` (or `git@host:…`,
//! `ssh://…`, `git://…`), and `ADD <git-url> <dest>`.
//!
//! - [`reference`] says what a Git URL is and what its fragment or query asks for (pure; the
//!   front end uses it to tell an ADD source's kind).
//! - `fetch` resolves the ref on the remote and fetches exactly that commit, depth 1, with
//!   `gix` into a bare repository in the engine's state directory (reused by later builds: a
//!   commit already there is not fetched again).
//! - `checkout` writes the commit's tree (or its subdirectory) into a fresh directory through
//!   descriptors, as every other remote input is written (`fsroot`), refusing `.git` entries; the
//!   `.git` directory itself is made only when it is kept (`keep-git-dir`).
//! - `auth` finds the credentials a remote gets: `--git-auth-dir` (a mounted Kubernetes
//!   Secret), BuildKit's `GIT_AUTH_TOKEN`/`GIT_AUTH_HEADER` secrets, and ssh keys or agents.
//!
//! Credentials never appear in a message: URLs are shown redacted ([`GitRef::redacted`]), and
//! the errors of this module name the repository and the ref, never what was sent.

pub mod reference;

#[cfg(feature = "executor")]
pub mod auth;
#[cfg(feature = "executor")]
mod checkout;
#[cfg(feature = "executor")]
mod fetch;

pub use reference::{GitRef, GitRefError, MTime, Scheme, is_commit_sha};

#[cfg(feature = "executor")]
pub use executor::*;

#[cfg(feature = "executor")]
mod executor {
    use std::path::PathBuf;

    use thiserror::Error;

    pub use super::auth::{AuthDir, GitAuth};
    pub use super::checkout::Checkout;

    /// Why a Git source could not be used. [`GitError::is_missing`] separates what a retry cannot
    /// fix (the ref, the subdirectory or the pinned commit are not there) from what it may (the
    /// server, the network, credentials).
    #[derive(Debug, Error)]
    pub enum GitError {
        #[error(transparent)]
        Url(#[from] super::GitRefError),
        /// The server could not be reached, or the transfer failed: DNS, a refused connection,
        /// TLS, a server error, a broken pack, the ssh program.
        #[error("fetching {remote}: {message}")]
        Fetch { remote: String, message: String },
        /// The server asked for credentials and none were given.
        #[error(
            "{remote}: the server asks for credentials, and none were given (--git-auth-dir, or a GIT_AUTH_TOKEN secret)"
        )]
        AuthRequired { remote: String },
        /// The server refused the credentials Kiln sent (which are not shown).
        #[error("{remote}: the server refused the credentials from {from}")]
        AuthRefused { remote: String, from: String },
        /// No host key is known for an ssh server: host key checking is always on.
        #[error(
            "{host}: no ssh host key is known for this host in {files}: add its key (a known_hosts line, `ssh-keyscan {host}`) to the git auth Secret's known_hosts or to ~/.ssh/known_hosts"
        )]
        UnknownHostKey { host: String, files: String },
        /// The ssh program failed: a changed host key, refused keys, a closed connection.
        #[error("{remote}: ssh failed: {message}")]
        Ssh { remote: String, message: String },
        /// The ref is not on the remote.
        #[error("{remote}: the repository has no ref {reference:?}{hint}")]
        MissingRef {
            remote: String,
            reference: String,
            hint: String,
        },
        /// The commit is not the one the URL's `checksum=` (or `ADD --checksum`) pins.
        #[error("{remote}#{reference}: expected the commit to match {expected}, got {got}")]
        Checksum {
            remote: String,
            reference: String,
            expected: String,
            got: String,
        },
        /// The subdirectory is not a directory of the commit.
        #[error("{remote} at {commit}: {subdir:?} is not a directory of the repository")]
        MissingSubdir {
            remote: String,
            commit: String,
            subdir: String,
        },
        /// The commit holds a path Kiln refuses to write (`.git`, `..`, a name with `/`).
        #[error("{remote} at {commit}: refusing the path {path:?} in the repository")]
        BadPath {
            remote: String,
            commit: String,
            path: String,
        },
        /// `--git-auth-dir` could not be read.
        #[error("--git-auth-dir {}: {message}", path.display())]
        AuthDir { path: PathBuf, message: String },
        /// Writing the checkout.
        #[error("checking out {remote}: {source}")]
        Io {
            remote: String,
            source: std::io::Error,
        },
    }

    impl GitError {
        /// The source is not what was asked for, and will not be on a retry: a ref, a
        /// subdirectory or a pinned commit that is not there.
        pub fn is_missing(&self) -> bool {
            matches!(
                self,
                GitError::MissingRef { .. }
                    | GitError::MissingSubdir { .. }
                    | GitError::Checksum { .. }
                    | GitError::Url(_)
            )
        }
    }

    /// How to lay a checkout out.
    #[derive(Debug, Clone, Default)]
    pub struct Options {
        /// Keep the `.git` directory when the URL does not say (`ADD --keep-git-dir`,
        /// `BUILDKIT_CONTEXT_KEEP_GIT_DIR`).
        pub keep_git_dir: bool,
    }

    pub use super::checkout::checkout;
    pub use super::fetch::{Fetched, fetch};
}
