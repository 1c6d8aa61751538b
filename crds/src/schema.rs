//! Hand-written schema fragments, where the derived schema cannot say enough.

use schemars::{Schema, SchemaGenerator, json_schema};

/// The pattern of a Kubernetes quantity without a sign: `1Gi`, `500M`, `1.5e9`, `0`.
///
/// Kubernetes itself accepts a leading `-`; a size below zero means nothing for a volume, so the
/// schema rejects it rather than leaving the error to the storage provisioner.
pub const NON_NEGATIVE_QUANTITY: &str =
    r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$";

/// A quantity that is an integer or a string, and never negative.
pub fn non_negative_quantity(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "description": "A Kubernetes quantity such as 2Gi or 500M. Negative values are rejected.",
        "x-kubernetes-int-or-string": true,
        // Each keyword applies to its own type only: `minimum` to integers, `pattern` to strings.
        // (Inside an `anyOf` they would not work: a structural schema may not type the branches,
        // so every string would satisfy the `minimum` branch.)
        "minimum": 0,
        "pattern": NON_NEGATIVE_QUANTITY
    })
}
