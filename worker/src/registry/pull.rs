//! Pulling an image: from a reference to a manifest, its config, and its layer blobs in the
//! store.
//!
//! The OCI image spec's index rule: a client picks, from an index's `manifests`, an entry whose
//! `platform` matches the target. Kiln requires `os` and `architecture` to be equal and, when
//! both sides name one, the `variant` too, preferring an entry with the exact variant; entries
//! for `unknown/unknown` (BuildKit's attestation manifests) never match. Docker manifest lists
//! follow the same rule. A digest-pinned reference (`name@sha256:…`) is verified against the
//! bytes of the manifest or index it names, and every manifest reached from an index is fetched
//! by digest and verified too.

use std::sync::Arc;

use kiln_crds::reference::Reference;

use super::RegistryError;
use super::client::{Host, Registries};
use super::sources::Sources;
use crate::digest::Digest;
use crate::image::oci::{
    Descriptor, Image, Index, MEDIA_TYPE_DOCKER_LIST, MEDIA_TYPE_INDEX, Manifest, Platform,
};
use crate::store::Store;

/// The layer media types Kiln unpacks: OCI tar (plain, gzip, zstd) and Docker's gzip layer.
pub const LAYER_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
];

/// An image resolved in a registry: its manifest and config are known, its config is in the
/// store.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The normalised reference it was resolved from.
    pub reference: Reference,
    /// The digest the reference named: its index's when it names one, else its manifest's
    /// (what provenance records, as BuildKit pins an image source).
    pub digest: Digest,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config_digest: Digest,
    pub image: Image,
}

/// Pulls from one repository into one store.
pub struct Puller {
    host: Arc<Host>,
    reference: Reference,
    store: Store,
}

impl Puller {
    /// A puller for `reference` (as written in a Dockerfile: `busybox`, `reg:5000/app@sha256:…`).
    pub fn new(
        registries: &Registries,
        reference: &str,
        store: &Store,
    ) -> Result<Puller, RegistryError> {
        let parsed = Reference::parse(reference).map_err(|e| RegistryError::Reference {
            image: reference.to_string(),
            message: e.to_string(),
        })?;
        let host = crate::fetch::runtime().block_on(registries.host(&parsed.registry))?;
        Ok(Puller {
            host,
            reference: parsed,
            store: store.clone(),
        })
    }

    /// Resolve the reference for `platform`: index → manifest → config.
    pub fn resolve(&self, platform: &Platform) -> Result<Resolved, RegistryError> {
        crate::fetch::runtime().block_on(self.resolve_async(platform))
    }

    async fn resolve_async(&self, platform: &Platform) -> Result<Resolved, RegistryError> {
        let r = &self.reference;
        let image_name = r.to_string();
        let other = |message: String| RegistryError::Other {
            image: image_name.clone(),
            message,
        };
        let (bytes, digest) = self.host.manifest(r).await?;
        let (bytes, manifest_digest) = if is_index(&bytes) {
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| other(format!("the index {digest} is not valid JSON: {e}")))?;
            let entry = select(&index, platform).ok_or_else(|| RegistryError::NoPlatform {
                image: image_name.clone(),
                wanted: platform.to_string(),
                have: platforms(&index),
            })?;
            let child = r.with_digest(entry.digest.as_str());
            let (bytes, got) = self.host.manifest(&child).await?;
            if is_index(&bytes) {
                return Err(other(format!(
                    "the index entry {} for {platform} is another index; nested indexes are not supported",
                    entry.digest
                )));
            }
            (bytes, got)
        } else {
            (bytes, digest.clone())
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| other(format!("the manifest {manifest_digest} is not valid: {e}")))?;
        if let Some(bad) = manifest
            .layers
            .iter()
            .find(|l| !LAYER_TYPES.contains(&l.media_type.as_str()))
        {
            return Err(other(format!(
                "layer {} has media type {}, which Kiln cannot unpack",
                bad.digest, bad.media_type
            )));
        }
        let config = &manifest.config;
        self.host
            .blob_to_store(r, &config.digest, config.size, &self.store)
            .await?;
        let config_bytes = self.store.read_blob(&config.digest)?;
        let image: Image = serde_json::from_slice(&config_bytes).map_err(|e| {
            other(format!(
                "the image config {} is not valid: {e}",
                config.digest
            ))
        })?;
        if !image.architecture.is_empty() && !platform.matches(&image.platform()) {
            return Err(RegistryError::NoPlatform {
                image: image_name,
                wanted: platform.to_string(),
                have: image.platform().to_string(),
            });
        }
        self.record(&config.digest);
        Ok(Resolved {
            reference: r.clone(),
            digest,
            manifest_digest,
            config_digest: config.digest.clone(),
            manifest,
            image,
        })
    }

    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// Download a layer blob into the store (unless it is there), verified as it streams.
    pub fn layer(&self, desc: &Descriptor) -> Result<(), RegistryError> {
        crate::fetch::runtime().block_on(self.host.blob_to_store(
            &self.reference,
            &desc.digest,
            desc.size,
            &self.store,
        ))?;
        self.record(&desc.digest);
        Ok(())
    }

    /// Remember where the blob came from, for cross-repository mounts when pushing.
    fn record(&self, digest: &Digest) {
        let _ = Sources::new(&self.store).add(digest, &self.reference.name());
    }
}

/// Whether a manifest document is an index (OCI) or a manifest list (Docker).
pub fn is_index(bytes: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(p) => match p.media_type.as_deref() {
            Some(MEDIA_TYPE_INDEX | MEDIA_TYPE_DOCKER_LIST) => true,
            Some(_) => false,
            None => p.manifests.is_some(),
        },
        Err(_) => false,
    }
}

/// The index entry for `platform`: an exact variant match first, then any compatible one.
pub fn select<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    let candidates = || {
        index
            .manifests
            .iter()
            .filter(|m| m.platform.as_ref().is_some_and(|p| platform.matches(p)))
    };
    candidates()
        .find(|m| m.platform.as_ref().and_then(|p| p.variant.as_ref()) == platform.variant.as_ref())
        .or_else(|| candidates().next())
}

fn platforms(index: &Index) -> String {
    let list: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|m| m.platform.as_ref())
        .filter(|p| p.os != "unknown")
        .map(ToString::to_string)
        .collect();
    if list.is_empty() {
        "no platform entries".into()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(platform: &str, n: u8) -> Descriptor {
        let mut d = Descriptor::new(crate::image::oci::MEDIA_TYPE_MANIFEST, Digest::of(&[n]), 1);
        d.platform = Platform::parse(platform);
        d
    }

    #[test]
    fn platforms_are_selected_with_variants() {
        let index = Index::new(vec![
            entry("linux/amd64", 1),
            entry("linux/arm/v6", 2),
            entry("linux/arm/v7", 3),
            entry("linux/arm64", 4),
            entry("unknown/unknown", 5),
        ]);
        let pick = |p: &str| select(&index, &Platform::parse(p).unwrap()).map(|d| d.digest.clone());
        assert_eq!(pick("linux/amd64"), Some(Digest::of(&[1])));
        assert_eq!(pick("linux/arm/v7"), Some(Digest::of(&[3])));
        assert_eq!(pick("linux/arm/v6"), Some(Digest::of(&[2])));
        assert_eq!(pick("linux/arm64/v8"), Some(Digest::of(&[4])));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(
            platforms(&index),
            "linux/amd64, linux/arm/v6, linux/arm/v7, linux/arm64"
        );
    }

    #[test]
    fn indexes_are_recognised_by_media_type_or_shape() {
        assert!(is_index(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#
        ));
        assert!(is_index(br#"{"schemaVersion":2,"manifests":[]}"#));
        assert!(!is_index(
            br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}"#
        ));
    }
}
