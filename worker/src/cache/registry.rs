//! The step cache in a registry: `--cache-to/--cache-from type=registry,ref=REF`, and the inline
//! cache carried in an image's config (`--cache-to type=inline`).
//!
//! A registry cache is the manifest [`super::transfer::cache_artifact`] makes, pushed like an
//! image: an OCI image manifest whose config has Kiln's cache media type. Registries that
//! reject manifest lists of foreign media types store it, since it is a plain manifest.
//!
//! An inline cache is the same config, as the value of [`INLINE_KEY`] in the image config. Its
//! records describe the image's own layers only (`mode=min`), so the image's manifest lists
//! every blob they need.
//!
//! Importing reads a manifest and a config, nothing more. A record's blob is downloaded only
//! when the build needs its content; a push to the same registry mounts it from the cache's
//! repository instead (the blob's source is recorded for that).

use std::sync::Arc;

use kiln_crds::reference::Reference;

use super::transfer::{BlobError, BlobSource, CONFIG_MEDIA_TYPE, CacheConfig, Imported};
use crate::image::oci::{Index, Manifest, Platform};
use crate::registry::client::Host;
use crate::registry::sources::Sources;
use crate::registry::{Registries, RegistryError};
use crate::snapshot::layer::LayerBlob;
use crate::store::Store;

/// The image config key of an inline cache.
pub const INLINE_KEY: &str = "kiln.cache.v1";

/// A repository of a registry as a blob source.
struct RegistrySource {
    host: Arc<Host>,
    reference: Reference,
}

impl BlobSource for RegistrySource {
    fn describe(&self) -> String {
        self.reference.to_string()
    }
    fn fetch(&self, blob: &LayerBlob, store: &Store) -> Result<(), BlobError> {
        crate::fetch::runtime()
            .block_on(
                self.host
                    .blob_to_store(&self.reference, &blob.digest, blob.size, store),
            )
            .map_err(|source| BlobError::Registry {
                what: format!("layer {} from the cache", blob.digest),
                source,
            })
    }
}

/// Read the cache at `reference`: a Kiln cache manifest, or an image with an inline cache.
/// `Ok(None)` when there is nothing there (a first build) or the image carries no cache.
pub fn import(
    registries: &Registries,
    reference: &str,
    store: &Store,
    platform: &Platform,
) -> Result<Option<Imported>, RegistryError> {
    crate::fetch::runtime().block_on(import_async(registries, reference, store, platform))
}

async fn import_async(
    registries: &Registries,
    reference: &str,
    store: &Store,
    platform: &Platform,
) -> Result<Option<Imported>, RegistryError> {
    let r = Reference::parse(reference).map_err(|e| RegistryError::Reference {
        image: reference.to_string(),
        message: e.to_string(),
    })?;
    let other = |message: String| RegistryError::Other {
        image: r.to_string(),
        message,
    };
    let host = registries.host(&r.registry).await?;
    let (mut bytes, _) = match host.manifest(&r).await {
        Ok(m) => m,
        Err(RegistryError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    if let Ok(index) = serde_json::from_slice::<Index>(&bytes)
        && !index.manifests.is_empty()
    {
        // An image index: the inline cache of this platform's image.
        let Some(entry) = crate::registry::pull::select(&index, platform) else {
            return Ok(None);
        };
        bytes = host
            .manifest(&r.with_digest(entry.digest.as_str()))
            .await?
            .0;
    }
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| other(format!("the cache manifest is not valid: {e}")))?;
    host.blob_to_store(&r, &manifest.config.digest, manifest.config.size, store)
        .await?;
    let config_bytes = store.read_blob(&manifest.config.digest)?;
    let config = if manifest.config.media_type == CONFIG_MEDIA_TYPE {
        config_bytes
    } else {
        let image: serde_json::Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| other(format!("the image config is not valid: {e}")))?;
        match image.get(INLINE_KEY) {
            Some(inline) => serde_json::to_vec(inline).map_err(std::io::Error::other)?,
            None => return Ok(None),
        }
    };
    let source = Arc::new(RegistrySource {
        host,
        reference: r.clone(),
    });
    let imported = Imported::from_config(source, &config).map_err(other)?;
    // A push to this registry can mount these blobs from here rather than upload them.
    let sources = Sources::new(store);
    for blob in imported.records.values().filter_map(|r| r.layer.as_ref()) {
        let _ = sources.add(&blob.digest, &r.name());
    }
    Ok(Some(imported))
}

/// The inline cache value for an image config.
pub fn inline_value(config: &CacheConfig) -> serde_json::Value {
    serde_json::to_value(config).unwrap_or(serde_json::Value::Null)
}
