//! Kiln's build engine.
//!
//! The engine is split along the seams of a build, one module per concern (see DESIGN.md). The
//! front end (`dockerfile`, `plan`) needs nothing from the host; everything that executes a build
//! sits behind the `executor` feature, so the operator can link the front end alone.
//!
//! `unsafe` code is allowed in one module, [`kernel`], and denied everywhere else.

#![deny(unsafe_code)]

pub mod dockerfile;
#[cfg(feature = "executor")]
pub mod fetch;
pub mod git;
pub mod image;
#[cfg(feature = "executor")]
pub mod mounts;
pub mod plan;
#[cfg(feature = "executor")]
pub mod registry;
pub mod result;

#[cfg(feature = "executor")]
pub mod build;
#[cfg(feature = "executor")]
pub mod cache;
#[cfg(feature = "executor")]
pub mod context;
#[cfg(feature = "executor")]
pub mod copy;
#[cfg(feature = "executor")]
pub mod digest;
#[cfg(feature = "executor")]
pub mod emulation;
#[cfg(feature = "executor")]
pub mod export;
#[cfg(feature = "executor")]
pub mod fsroot;
#[cfg(feature = "executor")]
pub mod kernel;
#[cfg(feature = "executor")]
pub mod progress;
#[cfg(feature = "executor")]
pub mod provenance;
#[cfg(feature = "executor")]
pub mod sandbox;
#[cfg(feature = "executor")]
pub mod snapshot;
#[cfg(feature = "executor")]
pub mod solve;
#[cfg(feature = "executor")]
pub mod stop;
#[cfg(feature = "executor")]
pub mod store;
#[cfg(feature = "executor")]
pub mod userdb;
#[cfg(feature = "executor")]
pub mod userns;
