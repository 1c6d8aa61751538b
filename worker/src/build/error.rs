//! Why `kiln build` failed, typed by where it failed, and the stable reason of each failure
//! for the worker's result (`crate::result::Reason`).

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::context::ContextError;
use crate::dockerfile::Diagnostics;
use crate::registry::RegistryError;
use crate::result::Reason;
use crate::solve::{BuildError, is_disk_full};

/// Why a build failed.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    Context(#[from] ContextError),
    #[error("reading the Dockerfile {}: {source}", path.display())]
    Dockerfile { path: PathBuf, source: io::Error },
    /// Dockerfile errors; they render with their source lines.
    #[error("{0}")]
    Plan(Diagnostics),
    /// Secrets or ssh keys that the Dockerfile requires and the build was not given.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    MissingRequired(Vec<MissingRequired>),
    /// An option that does not fit the Dockerfile.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Build(#[from] BuildError),
    /// A failed step, rendered with its Dockerfile lines and its last output.
    #[error("{rendered}")]
    Step {
        rendered: String,
        source: BuildError,
    },
    #[error("writing {}: {source}", path.display())]
    Output {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Reading a `--cache-from` cache.
    #[error("{0}")]
    CacheImport(String),
    /// Writing a `--cache-to` cache.
    #[error("--cache-to {reference}: {source}")]
    CacheExport {
        reference: String,
        source: Box<Error>,
    },
    #[error("pushing: {0}")]
    Push(#[from] RegistryError),
    /// Platforms whose RUN steps this machine cannot run, each with what is missing.
    #[error(
        "this machine cannot run the RUN steps of every platform of the build:\n{}",
        .0.iter().map(|m| format!("  {m}")).collect::<Vec<_>>().join("\n")
    )]
    Emulation(Vec<crate::emulation::Missing>),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A `required=true` secret or ssh mount whose id was not provided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingRequired {
    pub id: String,
    /// An ssh mount, not a secret.
    pub ssh: bool,
    /// The Dockerfile and the first line that needs it.
    pub file: String,
    pub line: u32,
}

impl fmt::Display for MissingRequired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let MissingRequired { id, line, .. } = self;
        if self.ssh {
            write!(
                f,
                "ssh key {id:?} is required (line {line}) but was not provided: pass --ssh {id}=KEYFILE or --ssh {id}=$SSH_AUTH_SOCK"
            )
        } else {
            write!(
                f,
                "secret {id:?} is required (line {line}) but was not provided: pass --secret id={id},src=FILE"
            )
        }
    }
}

impl Error {
    /// The stable reason of this failure, from its type (and, for ENOSPC, from the
    /// `io::Error` under it), never from its message.
    pub fn reason(&self) -> Reason {
        if is_disk_full(self) {
            return Reason::DiskFull;
        }
        match self {
            Error::Context(e) if e.is_missing() => Reason::MissingContext,
            Error::Context(_) => Reason::ContextFailed,
            // A Dockerfile the context does not have is the spec's mistake, like a bad line.
            Error::Dockerfile { .. } | Error::Plan(_) => Reason::InvalidDockerfile,
            Error::MissingRequired(_) => Reason::MissingSecret,
            Error::Usage(_) => Reason::InvalidArgument,
            Error::Build(e) | Error::Step { source: e, .. } => e.reason(),
            Error::Push(e) if e.is_auth() => Reason::RegistryAuth,
            Error::Push(_) => Reason::PushFailed,
            Error::CacheExport { source, .. } => source.reason(),
            // The machine lacks what the build needs: another node may have it.
            Error::Output { .. } | Error::CacheImport(_) | Error::Emulation(_) | Error::Io(_) => {
                Reason::Internal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_errors_have_their_reasons() {
        let auth = || RegistryError::Unauthorized {
            image: "r/a".into(),
            registry: "r".into(),
            hint: String::new(),
        };
        let gave_up = || RegistryError::GaveUp {
            image: "r/a".into(),
            message: "connection refused".into(),
            attempts: 1,
            seconds: 0.0,
        };
        let cases = [
            (
                Error::Context(ContextError::NotADirectory("/x".into())),
                Reason::MissingContext,
            ),
            (
                Error::Context(ContextError::Io(io::Error::from_raw_os_error(libc::EIO))),
                Reason::ContextFailed,
            ),
            (
                Error::Context(ContextError::Io(io::Error::from_raw_os_error(libc::ENOSPC))),
                Reason::DiskFull,
            ),
            (
                Error::Dockerfile {
                    path: "Dockerfile".into(),
                    source: io::ErrorKind::NotFound.into(),
                },
                Reason::InvalidDockerfile,
            ),
            (Error::Plan(Diagnostics::new()), Reason::InvalidDockerfile),
            (
                Error::MissingRequired(vec![MissingRequired {
                    id: "tok".into(),
                    ssh: false,
                    file: "Dockerfile".into(),
                    line: 2,
                }]),
                Reason::MissingSecret,
            ),
            (Error::Usage("x".into()), Reason::InvalidArgument),
            (Error::Push(auth()), Reason::RegistryAuth),
            (Error::Push(gave_up()), Reason::PushFailed),
            (
                Error::CacheExport {
                    reference: "r/cache".into(),
                    source: Box::new(Error::Push(auth())),
                },
                Reason::RegistryAuth,
            ),
            (Error::CacheImport("x".into()), Reason::Internal),
            (
                Error::Output {
                    path: "out".into(),
                    source: Box::new(io::Error::from_raw_os_error(libc::ENOSPC)),
                },
                Reason::DiskFull,
            ),
            (
                Error::Build(BuildError::Frontend(Diagnostics::new())),
                Reason::InvalidDockerfile,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(e.reason(), want, "{e:?}");
        }
    }
}
