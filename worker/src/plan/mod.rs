//! The build plan: stages as a graph, and each stage lowered into executable steps.

pub mod step;
