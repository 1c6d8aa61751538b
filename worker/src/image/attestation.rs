//! Attestation manifests in an image index, as BuildKit stores them
//! (`docs/attestations/attestation-storage.md`, `exporter/containerimage/writer.go`).
//!
//! Each platform image with attestations gets one more manifest in the index, after every
//! platform image:
//! - its entry's platform is `unknown/unknown`, so that no runtime picks it, and it carries
//!   the annotations `vnd.docker.reference.type: attestation-manifest` and
//!   `vnd.docker.reference.digest: <the image manifest's digest>`;
//! - each layer is one in-toto statement, `application/vnd.in-toto+json`, annotated with
//!   `in-toto.io/predicate-type`;
//! - its config is an image config for `unknown/unknown` whose `diff_ids` are the statements'
//!   digests (BuildKit's default form, `oci-artifact=false`; the OCI-artifact form with an empty
//!   config, an `artifactType` and a `subject` is BuildKit's opt-in, and a registry without
//!   the OCI 1.1 referrers API ignores the `subject` anyway).

use std::collections::BTreeMap;
use std::io;

use super::layout::Artifact;
use super::oci::{Descriptor, Image, MEDIA_TYPE_CONFIG, Platform, RootFs};
use crate::store::Store;

pub const MEDIA_TYPE_IN_TOTO: &str = "application/vnd.in-toto+json";
pub const ANNOTATION_PREDICATE_TYPE: &str = "in-toto.io/predicate-type";
pub const ANNOTATION_REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const ANNOTATION_REFERENCE_DIGEST: &str = "vnd.docker.reference.digest";
pub const REFERENCE_TYPE_ATTESTATION: &str = "attestation-manifest";

/// The platform of an attestation manifest's index entry.
pub fn unknown_platform() -> Platform {
    Platform {
        architecture: "unknown".into(),
        os: "unknown".into(),
        os_version: None,
        variant: None,
    }
}

/// The attestation manifest for `subject` (a platform image), holding `statements`
/// (predicate type, in-toto statement JSON); its blobs are put in `store`.
pub fn manifest(
    store: &Store,
    subject: &Artifact,
    statements: &[(String, Vec<u8>)],
) -> io::Result<Artifact> {
    let mut layers = Vec::with_capacity(statements.len());
    for (predicate_type, bytes) in statements {
        let digest = store.put_blob(bytes)?;
        let mut d = Descriptor::new(MEDIA_TYPE_IN_TOTO, digest, bytes.len() as u64);
        d.annotations
            .insert(ANNOTATION_PREDICATE_TYPE.into(), predicate_type.clone());
        layers.push(d);
    }
    let platform = unknown_platform();
    let config = Image {
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.digest.clone()).collect(),
        },
        ..Image::scratch(&platform)
    };
    let config_bytes = serde_json::to_vec(&config).map_err(io::Error::other)?;
    let mut artifact = Artifact::put(
        store,
        MEDIA_TYPE_CONFIG,
        config_bytes,
        layers,
        None,
        platform,
    )?;
    artifact.entry_annotations = BTreeMap::from([
        (
            ANNOTATION_REFERENCE_DIGEST.to_string(),
            subject.manifest_digest.to_string(),
        ),
        (
            ANNOTATION_REFERENCE_TYPE.to_string(),
            REFERENCE_TYPE_ATTESTATION.to_string(),
        ),
    ]);
    Ok(artifact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_names_unknown_and_the_statements() {
        let platform = unknown_platform();
        let config = Image {
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![crate::digest::Digest::of(b"s")],
            },
            ..Image::scratch(&platform)
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"architecture":"unknown","os":"unknown","config":{{}},"rootfs":{{"type":"layers","diff_ids":["{}"]}}}}"#,
                crate::digest::Digest::of(b"s")
            )
        );
    }
}
