//! The subcommands of `kiln`, one module each; `main.rs` parses the command line and
//! dispatches.

pub(crate) mod build;
pub(crate) mod cache;
pub(crate) mod host;
pub(crate) mod plan;

pub(crate) use build::*;
pub(crate) use cache::*;
pub(crate) use host::*;
pub(crate) use plan::*;

use crate::*;

/// How `kiln build` and `kiln plan` read a Git or URL context (docs/contexts.md).
#[derive(clap::Args)]
pub(crate) struct RemoteContextArgs {
    /// What the context argument is: auto (a local path if it exists, else a Git URL by
    /// BuildKit's rules, else an http(s) download), git (a Git URL whatever its form, such as
    /// https://host/org/repo without .git), url (a download) or local.
    #[arg(long, value_name = "auto|git|url|local", default_value = "auto")]
    context_type: String,
    /// The sha256 (64 hex digits) a URL context must have; checked while downloading, and a
    /// mismatch is refused before the download is used.
    #[arg(long, value_name = "HEX")]
    context_sha256: Option<String>,
    /// Credentials for a Git context's repository: a mounted Kubernetes Secret, with `username`
    /// and `password` (or `token`) for https, or `ssh-privatekey` and optionally `known_hosts`
    /// for ssh. Only the context's host gets them.
    #[arg(long, value_name = "DIR", env = "KILN_GIT_AUTH_DIR")]
    git_auth_dir: Option<PathBuf>,
}
