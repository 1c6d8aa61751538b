//! Kiln's operator: the `ImageBuild` controller.
//!
//! - [`decide`]: the decisions, a pure function of one ImageBuild and what was observed.
//! - [`controller`]: the thin reconcile shell that observes, decides and applies.
//! - [`pod`]: the build and plan pods, as pure functions of the spec and the configuration.
//! - [`plan`], [`result`]: the worker's plan and build reports.
//! - [`admission`]: concurrency limits and the fair queue.
//! - [`status`], [`reasons`], [`names`]: what users read and match on.
//! - [`config`], [`metrics`], [`server`], [`leader`]: running it.

pub mod admission;
pub mod cache;
pub mod config;
pub mod controller;
pub mod decide;
pub mod gc;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod pod;
pub mod reasons;
pub mod result;
pub mod server;
pub mod status;
