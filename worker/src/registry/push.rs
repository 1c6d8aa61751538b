//! Pushing an image: its blobs, then its manifest under each tag.
//!
//! The distribution spec lets a registry refuse a manifest whose blobs it does not have, but
//! not every registry checks, so Kiln never relies on it: every blob is confirmed first and the
//! manifest goes last. A push that fails half-way leaves only blobs (which nothing references,
//! and the registry's garbage collection reclaims), never a tag pointing at a missing blob.
//!
//! For each blob (the config and the layers), in parallel:
//! 1. `HEAD` it in the target repository; if the registry has it, nothing moves. This is also
//!    what makes a push resumable: a second run uploads only what the first did not finish.
//! 2. If the store knows another repository of the same registry that has it (a base layer
//!    pulled from there, or an earlier push), ask for a cross-repository mount.
//! 3. Otherwise upload it, streamed from the store in one `PUT`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use futures::{StreamExt, TryStreamExt};
use kiln_crds::reference::Reference;

use super::RegistryError;
use super::client::{Host, Registries};
use super::sources::Sources;
use crate::digest::Digest;
use crate::image::layout::Artifact;
use crate::image::oci::{Descriptor, MEDIA_TYPE_MANIFEST};
use crate::store::Store;

/// What a push did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest digest, the same for every name.
    pub digest: Option<Digest>,
    /// The names pushed, normalised (`registry/repository:tag`).
    pub names: Vec<String>,
    pub uploaded: usize,
    pub uploaded_bytes: u64,
    pub mounted: usize,
    /// Blobs the registry already had.
    pub existing: usize,
}

#[derive(Default)]
struct Counts {
    uploaded: AtomicUsize,
    uploaded_bytes: AtomicU64,
    mounted: AtomicUsize,
    existing: AtomicUsize,
}

/// Push `artifact` (whose blobs are in `store`) under every name in `names`.
pub fn push(
    registries: &Registries,
    store: &Store,
    artifact: &Artifact,
    names: &[String],
) -> Result<PushReport, RegistryError> {
    crate::fetch::runtime().block_on(push_async(registries, store, artifact, names))
}

async fn push_async(
    registries: &Registries,
    store: &Store,
    artifact: &Artifact,
    names: &[String],
) -> Result<PushReport, RegistryError> {
    // Names that share a repository share its blobs: one blob pass per repository.
    let mut repos: BTreeMap<(String, String), Vec<Reference>> = BTreeMap::new();
    for name in names {
        let r = Reference::parse(name).map_err(|e| RegistryError::Reference {
            image: name.clone(),
            message: e.to_string(),
        })?;
        if r.digest.is_some() && r.tag.is_none() {
            return Err(RegistryError::Reference {
                image: name.clone(),
                message: "a push needs a tag, not a digest".into(),
            });
        }
        let r = Reference {
            digest: None,
            tag: Some(r.tag_or_latest().unwrap_or("latest").to_string()),
            ..r
        };
        repos
            .entry((r.registry.clone(), r.repository.clone()))
            .or_default()
            .push(r);
    }
    let counts = Counts::default();
    let mut report = PushReport {
        digest: Some(artifact.manifest_digest.clone()),
        ..PushReport::default()
    };
    let sources = Sources::new(store);
    let mut blobs: Vec<&Descriptor> = vec![&artifact.manifest.config];
    for l in &artifact.manifest.layers {
        if !blobs.iter().any(|b| b.digest == l.digest) {
            blobs.push(l);
        }
    }
    let media_type = artifact
        .manifest
        .media_type
        .clone()
        .unwrap_or_else(|| MEDIA_TYPE_MANIFEST.to_string());
    for ((registry, _), refs) in &repos {
        let host = registries.host(registry).await?;
        let target = &refs[0];
        futures::stream::iter(
            blobs
                .iter()
                .map(|desc| push_blob(&host, store, &sources, target, desc, &counts)),
        )
        .buffer_unordered(registries.options().parallelism.max(1))
        .try_collect::<Vec<()>>()
        .await?;
        for r in refs {
            host.put_manifest(r, &artifact.manifest_bytes, &media_type)
                .await?;
            report.names.push(r.to_string());
        }
    }
    report.uploaded = counts.uploaded.load(Ordering::Relaxed);
    report.uploaded_bytes = counts.uploaded_bytes.load(Ordering::Relaxed);
    report.mounted = counts.mounted.load(Ordering::Relaxed);
    report.existing = counts.existing.load(Ordering::Relaxed);
    Ok(report)
}

async fn push_blob(
    host: &Host,
    store: &Store,
    sources: &Sources,
    target: &Reference,
    desc: &Descriptor,
    counts: &Counts,
) -> Result<(), RegistryError> {
    let digest = &desc.digest;
    let here = target.name();
    if host.blob_exists(target, digest).await? {
        counts.existing.fetch_add(1, Ordering::Relaxed);
        let _ = sources.add(digest, &here);
        return Ok(());
    }
    let prefix = format!("{}/", target.registry);
    for source in sources.get(digest) {
        let Some(repo) = source.strip_prefix(&prefix) else {
            continue;
        };
        if repo != target.repository && host.mount(target, repo, digest).await {
            counts.mounted.fetch_add(1, Ordering::Relaxed);
            let _ = sources.add(digest, &here);
            return Ok(());
        }
    }
    let path = store.blob_path(digest);
    if !path.exists() {
        return Err(RegistryError::Other {
            image: target.to_string(),
            message: format!("blob {digest} is missing from the local store"),
        });
    }
    host.upload(target, &path, digest, desc.size).await?;
    counts.uploaded.fetch_add(1, Ordering::Relaxed);
    counts
        .uploaded_bytes
        .fetch_add(desc.size, Ordering::Relaxed);
    let _ = sources.add(digest, &here);
    Ok(())
}
