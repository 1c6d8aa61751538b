//! OCI images: the config, and (with the executor) manifests, indexes, layouts and archives.

#[cfg(feature = "executor")]
pub mod attestation;
pub mod config;
#[cfg(feature = "executor")]
pub mod layout;
#[cfg(feature = "executor")]
pub mod oci;
