//! Why a solve fails, typed: the worker's result names a stable reason for every failure
//! (`crate::result::Reason`), and it must come from what failed, never from the wording of a
//! message. Wrapping variants name what they wrap as their `source()` (not `transparent`, which
//! would skip a level), so that [`is_disk_full`] sees every error on the way down.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::dockerfile::Diagnostics;
use crate::registry::RegistryError;
use crate::result::Reason;
use crate::sandbox::run::RunError;
use crate::snapshot::extract::ExtractError;

/// Why a build failed.
#[derive(Debug, Error)]
pub enum BuildError {
    /// A Dockerfile error found when a stage is lowered with its base's config.
    #[error("{0}")]
    Frontend(Diagnostics),
    /// A step failed.
    #[error("{0}")]
    Step(#[source] Box<StepError>),
    /// A base image or named context could not be used.
    #[error("{0}")]
    Base(#[source] Arc<BaseError>),
    #[error("the build was cancelled because another stage failed")]
    Cancelled,
    /// Stopped from outside: a signal, or `--timeout`.
    #[error("{0}")]
    Interrupted(Stop),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A failed step, and where it is in the Dockerfile.
#[derive(Debug, Error)]
#[error("{location}: {instruction}: {failure}")]
pub struct StepError {
    /// `Dockerfile:12`.
    pub location: String,
    /// The Dockerfile as the build named it.
    pub file: String,
    /// The 1-based line, for showing the source.
    pub line: u32,
    pub instruction: String,
    #[source]
    pub failure: StepFailure,
    /// The last lines the step printed, secret values replaced.
    pub tail: Vec<String>,
}

impl From<BaseError> for BuildError {
    fn from(e: BaseError) -> Self {
        BuildError::Base(Arc::new(e))
    }
}

impl BuildError {
    /// The stable reason of this failure.
    pub fn reason(&self) -> Reason {
        if is_disk_full(self) {
            return Reason::DiskFull;
        }
        match self {
            BuildError::Frontend(_) => Reason::InvalidDockerfile,
            BuildError::Step(step) => step.failure.reason(),
            BuildError::Base(e) => e.reason(),
            BuildError::Interrupted(stop) => stop.reason(),
            // Only when nothing else failed: a stage stopped without a cause is a bug.
            BuildError::Cancelled | BuildError::Io(_) => Reason::Internal,
        }
    }
}

/// Why a step failed.
#[derive(Debug, Error)]
pub enum StepFailure {
    /// The step's process ran and exited non-zero.
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    Exit { command: String, code: i32 },
    /// The step's process exited non-zero and a volume it writes to has no space left: the
    /// likely cause, named (a full cache volume, or the build's own state directory).
    #[error(
        "process \"{command}\" did not complete successfully: exit code: {code}; {volume} is full (no space left on it)"
    )]
    VolumeFull {
        command: String,
        code: i32,
        volume: String,
    },
    /// The step's process could not be started (no such executable, a sandbox failure).
    #[error("process \"{command}\" could not run: {source}")]
    Run { command: String, source: RunError },
    #[error("secret {id} is required but was not provided: pass --secret id={id},src=FILE")]
    MissingSecret { id: String },
    #[error(
        "ssh key {id} is required but was not provided: pass --ssh {id}=KEYFILE or --ssh {id}=$SSH_AUTH_SOCK"
    )]
    MissingSsh { id: String },
    #[error("reading secret {id} from {}: {source}", path.display())]
    SecretFile {
        id: String,
        path: PathBuf,
        source: io::Error,
    },
    #[error("secret {id}: the environment variable {var} is not set")]
    SecretEnv { id: String, var: String },
    /// An ssh key that cannot be read, or an agent socket that cannot be served.
    #[error("{0}")]
    Ssh(#[from] crate::mounts::ssh::SshError),
    #[error("cache mount {id}: {source}")]
    CacheMount { id: String, source: io::Error },
    /// An `ADD <url>` that could not be downloaded.
    #[error("{0}")]
    Fetch(#[from] crate::fetch::FetchError),
    /// An `ADD <git-url>` that could not be fetched or checked out.
    #[error("{0}")]
    Git(#[source] Box<crate::git::GitError>),
    /// An image or a stage that the step reads could not be had.
    #[error("{0}")]
    Base(#[source] Arc<BaseError>),
    /// A COPY source that is not in the context (BuildKit's wording).
    #[error("failed to compute cache key: \"/{0}\" not found")]
    NotFound(String),
    #[error("{0}")]
    Copy(#[from] crate::copy::CopyError),
    /// A filesystem operation of the step's setup or teardown.
    #[error("{what}: {source}")]
    Io {
        what: &'static str,
        source: io::Error,
    },
    #[error("cancelled")]
    Cancelled,
    /// What the step's inputs, mounts or user made impossible, said in words.
    #[error("{0}")]
    Other(String),
}

impl From<crate::git::GitError> for StepFailure {
    fn from(e: crate::git::GitError) -> Self {
        StepFailure::Git(Box::new(e))
    }
}

impl From<io::Error> for StepFailure {
    fn from(source: io::Error) -> Self {
        StepFailure::Io {
            what: "preparing the step",
            source,
        }
    }
}

impl From<BuildError> for StepFailure {
    /// An input of the step (a stage, an image) that failed.
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Base(b) => StepFailure::Base(b),
            BuildError::Cancelled => StepFailure::Cancelled,
            BuildError::Io(source) => StepFailure::Io {
                what: "reading an input of the step",
                source,
            },
            e => StepFailure::Other(e.to_string()),
        }
    }
}

impl StepFailure {
    pub fn reason(&self) -> Reason {
        if is_disk_full(self) {
            return Reason::DiskFull;
        }
        match self {
            StepFailure::VolumeFull { .. } => Reason::DiskFull,
            StepFailure::MissingSecret { .. }
            | StepFailure::MissingSsh { .. }
            | StepFailure::SecretFile { .. }
            | StepFailure::SecretEnv { .. }
            | StepFailure::Ssh(crate::mounts::ssh::SshError::Key { .. }) => Reason::MissingSecret,
            StepFailure::Base(e) => e.reason(),
            // Exec failures (no such file) are the Dockerfile's; a sandbox that cannot be set
            // up is the environment's.
            StepFailure::Run {
                source: RunError::Setup(_) | RunError::Spawn(..) | RunError::Io(_),
                ..
            } => Reason::Internal,
            StepFailure::Cancelled => Reason::Cancelled,
            _ => Reason::StepFailed,
        }
    }

    /// The exit code of a process that ran and failed.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            StepFailure::Exit { code, .. } | StepFailure::VolumeFull { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Why a base image (or a named context standing for one) could not be used.
#[derive(Debug, Error)]
pub enum BaseError {
    #[error("{0}")]
    Registry(#[from] RegistryError),
    /// A named build context (`--build-context NAME=...`) that cannot be used.
    #[error("{source}")]
    NamedContext {
        name: String,
        #[source]
        source: Box<BaseError>,
    },
    /// An OCI layout or a directory that cannot be read.
    #[error("{0}")]
    Unreadable(String),
    /// A layer that cannot be unpacked.
    #[error("layer {digest} of {origin}: {source}")]
    Unpack {
        origin: String,
        digest: String,
        source: ExtractError,
    },
    /// An image that is not what it claims: a digest or diff id that does not match, layers
    /// and diff ids that do not pair up.
    #[error("{0}")]
    Invalid(String),
    /// A layer of an imported cache, or a lazily pulled base layer, that could not be fetched.
    #[error("{0}")]
    Fetch(#[from] crate::cache::transfer::BlobError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl BaseError {
    pub fn reason(&self) -> Reason {
        if is_disk_full(self) {
            return Reason::DiskFull;
        }
        match self {
            BaseError::Registry(e) if e.is_auth() => Reason::RegistryAuth,
            BaseError::Fetch(e) if e.is_auth() => Reason::RegistryAuth,
            BaseError::NamedContext { source, .. } => match source.reason() {
                Reason::DiskFull => Reason::DiskFull,
                _ => Reason::ContextFailed,
            },
            BaseError::Unreadable(_) => Reason::ContextFailed,
            BaseError::Io(_) => Reason::Internal,
            BaseError::Registry(_)
            | BaseError::Unpack { .. }
            | BaseError::Invalid(_)
            | BaseError::Fetch(_) => Reason::PullFailed,
        }
    }
}

/// Why a build is stopped from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// SIGTERM (a deleted pod), SIGINT (Ctrl-C).
    Signal(i32),
    /// `--timeout`.
    Timeout(Duration),
}

impl Stop {
    pub fn reason(self) -> Reason {
        match self {
            Stop::Signal(_) => Reason::Cancelled,
            Stop::Timeout(_) => Reason::Timeout,
        }
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stop::Signal(n) if *n == libc::SIGTERM => {
                f.write_str("the build was stopped (SIGTERM)")
            }
            Stop::Signal(n) if *n == libc::SIGINT => f.write_str("the build was stopped (SIGINT)"),
            Stop::Signal(n) => write!(f, "the build was stopped (signal {n})"),
            Stop::Timeout(d) => write!(
                f,
                "the build ran longer than its timeout ({}s)",
                d.as_secs()
            ),
        }
    }
}

/// A request to stop a build, shared by whoever may make it (a signal handler, a timer) and
/// the build, which looks at it between steps and kills running steps when it is made.
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<std::sync::OnceLock<Stop>>);

impl Interrupt {
    /// Ask the build to stop; the first reason given wins. False if one was already given.
    pub fn stop(&self, why: Stop) -> bool {
        self.0.set(why).is_ok()
    }

    pub fn get(&self) -> Option<Stop> {
        self.0.get().copied()
    }
}

/// Whether an error, or one under it, is a write that failed for lack of space (ENOSPC) or
/// quota (EDQUOT). Walks `source()`, and the custom errors that `io::Error` wraps.
pub fn is_disk_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if matches!(
                io.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ) {
                return true;
            }
            if let Some(inner) = io.get_ref() {
                next = Some(inner);
                continue;
            }
        }
        // `CopyError::Extract` holds its cause without naming it as the source.
        if let Some(crate::copy::CopyError::Extract(_, inner)) =
            e.downcast_ref::<crate::copy::CopyError>()
        {
            next = Some(inner);
            continue;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enospc() -> io::Error {
        io::Error::from_raw_os_error(libc::ENOSPC)
    }

    #[test]
    fn disk_full_is_found_under_any_wrapping() {
        assert!(BuildError::Io(enospc()).reason() == Reason::DiskFull);
        let wrapped = io::Error::other(ExtractError::Io(enospc()));
        assert_eq!(BuildError::Io(wrapped).reason(), Reason::DiskFull);
        let copy = crate::copy::CopyError::Extract("a.tar".into(), ExtractError::Io(enospc()));
        let step = BuildError::Step(Box::new(StepError {
            location: "Dockerfile:3".into(),
            file: "Dockerfile".into(),
            line: 3,
            instruction: "ADD a.tar /".into(),
            failure: StepFailure::Copy(copy),
            tail: vec![],
        }));
        assert_eq!(step.reason(), Reason::DiskFull);
        let quota = io::Error::from_raw_os_error(libc::EDQUOT);
        let base = BaseError::Unpack {
            origin: "busybox".into(),
            digest: "sha256:00".into(),
            source: ExtractError::Io(quota),
        };
        assert_eq!(BuildError::from(base).reason(), Reason::DiskFull);
        assert_eq!(
            BuildError::Io(io::Error::from_raw_os_error(libc::EIO)).reason(),
            Reason::Internal
        );
    }

    #[test]
    fn step_failures_have_their_reasons() {
        let exit = StepFailure::Exit {
            command: "false".into(),
            code: 3,
        };
        assert_eq!(
            (exit.reason(), exit.exit_code()),
            (Reason::StepFailed, Some(3))
        );
        let cases = [
            (
                StepFailure::MissingSecret { id: "a".into() },
                Reason::MissingSecret,
            ),
            (
                StepFailure::MissingSsh { id: "a".into() },
                Reason::MissingSecret,
            ),
            (
                StepFailure::SecretEnv {
                    id: "a".into(),
                    var: "A".into(),
                },
                Reason::MissingSecret,
            ),
            (
                StepFailure::Run {
                    command: "x".into(),
                    source: RunError::Exec("no such file".into()),
                },
                Reason::StepFailed,
            ),
            (
                StepFailure::Run {
                    command: "x".into(),
                    source: RunError::Setup("mount".into()),
                },
                Reason::Internal,
            ),
            (StepFailure::NotFound("a".into()), Reason::StepFailed),
            (StepFailure::Cancelled, Reason::Cancelled),
        ];
        for (f, want) in cases {
            assert_eq!(f.reason(), want, "{f}");
            assert_eq!(f.exit_code(), None);
        }
    }

    #[test]
    fn base_failures_have_their_reasons() {
        let unauthorized = RegistryError::Unauthorized {
            image: "r/a".into(),
            registry: "r".into(),
            hint: String::new(),
        };
        assert_eq!(
            BaseError::Registry(unauthorized).reason(),
            Reason::RegistryAuth
        );
        let missing = RegistryError::NotFound {
            image: "r/a".into(),
            registry: "r".into(),
            detail: String::new(),
        };
        assert_eq!(BaseError::Registry(missing).reason(), Reason::PullFailed);
        let named = BaseError::NamedContext {
            name: "base".into(),
            source: Box::new(BaseError::Invalid("bad".into())),
        };
        assert_eq!(named.reason(), Reason::ContextFailed);
        assert_eq!(named.to_string(), "bad");
        let fetch = |source| crate::cache::transfer::BlobError::Registry {
            what: "layer".into(),
            source,
        };
        let refused = RegistryError::Denied {
            image: "r/a".into(),
            registry: "r".into(),
            detail: String::new(),
        };
        assert_eq!(
            BaseError::Fetch(fetch(refused)).reason(),
            Reason::RegistryAuth
        );
        let full = crate::cache::transfer::BlobError::Io {
            what: "layer".into(),
            source: io::Error::from_raw_os_error(libc::ENOSPC),
        };
        assert_eq!(BaseError::Fetch(full).reason(), Reason::DiskFull);
    }

    #[test]
    fn interrupts_keep_the_first_reason() {
        let i = Interrupt::default();
        assert_eq!(i.get(), None);
        assert!(i.stop(Stop::Timeout(Duration::from_secs(5))));
        assert!(!i.stop(Stop::Signal(libc::SIGTERM)));
        assert_eq!(
            BuildError::Interrupted(i.get().unwrap()).reason(),
            Reason::Timeout
        );
        assert_eq!(
            BuildError::Interrupted(Stop::Signal(libc::SIGTERM)).reason(),
            Reason::Cancelled
        );
    }
}
