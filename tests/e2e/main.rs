//! Kiln's end-to-end suite, against a real Kubernetes cluster (`make e2e`).

mod cache;
mod crd;
mod disrupt;
mod faults;
mod git;
mod helm;
mod invalid;
mod leak;
mod operator;
mod quickstart;
mod rbac;
