//! The harness of Kiln's integration and end-to-end suites.
//!
//! - [`cluster`]: `kubectl` against the test cluster that `make e2e` starts, and throwaway
//!   namespaces that clean up after themselves.
//! - [`facts`]: the canonical facts of an image (config, history, layers, merged filesystem),
//!   the form in which `tests/reference/` records what BuildKit builds.
//! - [`git`]: git servers on loopback (smart HTTP with basic auth, `git daemon`, sshd) and
//!   repositories made with the `git` program.
//! - [`registry`]: a real `docker-registry` on loopback (plain, TLS, htpasswd), stopped on drop.
//! - [`token`]: a token server, for registries with bearer-token authentication.
//! - [`proxy`]: a fault-injecting HTTP proxy (500, 429, cut connections) that counts requests.

pub mod cluster;
pub mod facts;
pub mod git;
pub mod proxy;
pub mod registry;
pub mod token;

use std::path::{Path, PathBuf};

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}
