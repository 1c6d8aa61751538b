//! `RUN --mount` sources that outlive or outrun a single step: cache mounts (persistent, shared
//! between processes under `flock`) and ssh agents. Bind, tmpfs and secret mounts are set up by
//! the sandbox directly (see `solve::run`).

pub mod cache;
pub mod ssh;
pub mod volumes;
