//! Registries: pulling base images, pushing results, and everything between (credentials, TLS,
//! retries).
//!
//! The OCI distribution spec's flows are done by `oci-client`; this module adds what a build
//! engine needs around them:
//! - [`auth`]: credentials from docker `config.json`, Kubernetes dockerconfigjson Secrets and
//!   credential helpers, never shown in a log or an error;
//! - [`tls`]: a CA given on the command line, or `certs.d` directories per registry, and
//!   dockerd's insecure registries (named ones, and every one on loopback): TLS without a
//!   certificate check when they answer TLS, else plain HTTP;
//! - [`retry`]: exponential backoff on 429, 5xx and broken connections, bounded in attempts and
//!   in time;
//! - [`client`]: one `oci-client` client per registry host, and errors that name the image;
//! - [`pull`]: resolving a reference (index → platform → manifest → config) and downloading
//!   blobs into the store, verified while they stream;
//! - [`push`]: blobs first, in parallel, skipping what the registry has and mounting what another
//!   repository of it has; manifests last;
//! - [`sources`]: which repositories a blob is known to be in, for cross-repository mounts.
//!
//! Why `oci-client` and not our own HTTP code: it implements the token flow (`WWW-Authenticate`
//! challenges, scoped bearer tokens, basic auth fallback), upload sessions and their `Location`
//! rules, and digest checks of manifests, which are the error-prone parts of the spec. What it
//! does not do is here: retries, per-registry CAs (one client per host), platform selection with
//! variants, and verification of blobs before they enter the store.
//!
//! One limit follows from it: a cross-repository mount asks for a token scoped to the target
//! repository only, so a registry that wants `pull` on the source repository in the same token
//! (token-auth registries) answers the mount with an upload session, and Kiln uploads the blob
//! instead. Registries with basic auth or none (the Distribution registry, Harbor with basic
//! auth, Zot) mount.

pub mod auth;
pub mod client;
pub mod pull;
pub mod push;
pub mod retry;
pub mod sources;
pub mod tls;

use std::path::PathBuf;

use thiserror::Error;

pub use client::Registries;

/// How to reach registries: trust, insecure hosts, credentials and retries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `--registry-ca`: CA certificates (PEM) trusted for every registry, besides the system's.
    pub ca_files: Vec<PathBuf>,
    /// Roots of `certs.d`-style directories: `<root>/<host[:port]>/*.crt` are CAs trusted for
    /// that registry only.
    pub certs_dirs: Vec<PathBuf>,
    /// `--insecure-registry`: hosts (`host[:port]`) treated as dockerd treats insecure
    /// registries: TLS without a certificate check when they answer TLS, else plain HTTP.
    /// Loopback registries are treated so without being named (see [`tls::Transport`]).
    pub insecure: Vec<String>,
    /// `--registry-auth-file`: docker `config.json` files or Kubernetes dockerconfigjson Secret
    /// files, looked at before `$DOCKER_CONFIG/config.json` and `~/.docker/config.json`.
    pub auth_files: Vec<PathBuf>,
    /// Attempts and backoff for transient failures.
    pub retry: retry::RetryPolicy,
    /// How many blobs move at once.
    pub parallelism: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            ca_files: vec![],
            certs_dirs: tls::default_certs_dirs(),
            insecure: vec![],
            auth_files: vec![],
            retry: retry::RetryPolicy::default(),
            parallelism: 4,
        }
    }
}

/// Why a registry operation failed. Messages name the image, and never carry a credential.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error("{image}: invalid image reference: {message}")]
    Reference { image: String, message: String },
    #[error("{image}: 401 Unauthorized from {registry}: {hint}")]
    Unauthorized {
        image: String,
        registry: String,
        hint: String,
    },
    #[error("{image}: 403 Forbidden: {registry} denied access{detail}")]
    Denied {
        image: String,
        registry: String,
        detail: String,
    },
    #[error("{image}: not found in {registry} (404){detail}")]
    NotFound {
        image: String,
        registry: String,
        detail: String,
    },
    #[error("{image}: no manifest for platform {wanted}; the image has: {have}")]
    NoPlatform {
        image: String,
        wanted: String,
        have: String,
    },
    #[error("{image}: blob {expected} failed verification: {message}")]
    Verify {
        image: String,
        expected: String,
        message: String,
    },
    #[error("{image}: {message} (gave up after {attempts} attempts in {seconds:.1}s)")]
    GaveUp {
        image: String,
        message: String,
        attempts: u32,
        seconds: f64,
    },
    #[error("{image}: {message}")]
    Other { image: String, message: String },
    #[error("registry credentials: {0}")]
    Credentials(#[from] auth::AuthError),
    #[error("TLS for {registry}: {message}")]
    Tls { registry: String, message: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl RegistryError {
    /// Whether the registry refused the credentials (401, 403), or they could not be read: the
    /// same request with the same credentials fails the same way.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            RegistryError::Unauthorized { .. }
                | RegistryError::Denied { .. }
                | RegistryError::Credentials(_)
        )
    }
}
