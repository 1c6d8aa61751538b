//! Kiln's end-to-end suite, against a real Kubernetes cluster (`make e2e`).

mod cache;
mod crd;
mod git;
mod helm;
mod operator;
mod quickstart;
