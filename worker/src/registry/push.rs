//! Pushing an image: its blobs, then its manifest under each tag.
//!
//! The distribution spec lets a registry refuse a manifest whose blobs it does not have, but
//! not every registry checks, so Kiln never relies on it: every blob is confirmed first and the
//! manifest goes last. A push that fails half-way leaves only blobs (which nothing references,
//! and the registry's garbage collection reclaims), never a tag pointing at a missing blob.
//!
//! For each blob (the config and the layers), in parallel:
//! 1. `HEAD` it in the target repository; if the registry has it, nothing moves. This is also
//!    what makes a push resumable: a second run uploads only what the first did not finish. A
//!    `HEAD` that keeps failing (5xx, cut connections) after its retries is not an answer: the
//!    blob is uploaded, and the registry checks it against its digest.
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
use crate::image::layout::Export;
use crate::image::oci::Descriptor;
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

/// Push `export` (whose blobs are in `store`) under every name in `names`: an image manifest,
/// or an index, whose manifests go first, each by its digest.
pub fn push(
    registries: &Registries,
    store: &Store,
    export: &Export,
    names: &[String],
) -> Result<PushReport, RegistryError> {
    crate::fetch::runtime().block_on(push_async(registries, store, export, names))
}

/// The names to push to, by repository: names that share a repository share its blobs.
type Repositories = BTreeMap<(String, String), Vec<Reference>>;

fn repositories(names: &[String]) -> Result<Repositories, RegistryError> {
    let mut repos: Repositories = BTreeMap::new();
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
    Ok(repos)
}

/// The blobs of `blobs` that the store lacks (hits on an imported cache that nothing needed to
/// download) and that no target repository can get without an upload: each is looked for in
/// the target repository, then mounted there from a repository of the same registry known to
/// have it. What this returns must be downloaded before the push.
pub fn unavailable(
    registries: &Registries,
    store: &Store,
    names: &[String],
    blobs: &[Descriptor],
) -> Result<Vec<Digest>, RegistryError> {
    let missing: Vec<&Descriptor> = blobs
        .iter()
        .filter(|b| !store.has_blob(&b.digest))
        .collect();
    if missing.is_empty() {
        return Ok(vec![]);
    }
    crate::fetch::runtime().block_on(async {
        let repos = repositories(names)?;
        let sources = Sources::new(store);
        let mut out: Vec<Digest> = vec![];
        for ((registry, _), refs) in &repos {
            let host = registries.host(registry).await?;
            for desc in &missing {
                if reach(&host, &sources, &refs[0], &desc.digest)
                    .await?
                    .is_none()
                    && !out.contains(&desc.digest)
                {
                    out.push(desc.digest.clone());
                }
            }
        }
        Ok(out)
    })
}

/// Whether the repository of `target` has the blob (`Some(false)`), or now has it by a
/// cross-repository mount (`Some(true)`); `None` when it must be uploaded.
async fn reach(
    host: &Host,
    sources: &Sources,
    target: &Reference,
    digest: &Digest,
) -> Result<Option<bool>, RegistryError> {
    let here = target.name();
    match host.blob_exists(target, digest).await {
        Ok(true) => {
            let _ = sources.add(digest, &here);
            return Ok(Some(false));
        }
        Ok(false) => {}
        // A `HEAD` that keeps failing with a 5xx or a broken connection only means the registry
        // could not say: upload the blob, which the registry verifies against its digest. A
        // refusal (401, 403) is an answer, and stops the push.
        Err(e @ RegistryError::GaveUp { .. }) => {
            tracing::warn!(%digest, error = %e, "cannot tell whether the registry has the blob; uploading it");
            return Ok(None);
        }
        Err(e) => return Err(e),
    }
    let prefix = format!("{}/", target.registry);
    for source in sources.get(digest) {
        let Some(repo) = source.strip_prefix(&prefix) else {
            continue;
        };
        if repo != target.repository && host.mount(target, repo, digest).await {
            let _ = sources.add(digest, &here);
            return Ok(Some(true));
        }
    }
    Ok(None)
}

async fn push_async(
    registries: &Registries,
    store: &Store,
    export: &Export,
    names: &[String],
) -> Result<PushReport, RegistryError> {
    let repos = repositories(names)?;
    let counts = Counts::default();
    let mut report = PushReport {
        digest: Some(export.digest().clone()),
        ..PushReport::default()
    };
    let sources = Sources::new(store);
    let blobs = export.blobs();
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
        // An index's manifests go before it, by digest: a registry may refuse an index whose
        // manifests it does not have.
        if let Export::Index { manifests, .. } = export {
            for m in manifests {
                let by_digest = Reference {
                    tag: None,
                    digest: Some(m.manifest_digest.to_string()),
                    ..target.clone()
                };
                let media_type = m
                    .manifest
                    .media_type
                    .as_deref()
                    .unwrap_or(crate::image::oci::MEDIA_TYPE_MANIFEST);
                host.put_manifest(&by_digest, &m.manifest_bytes, media_type)
                    .await?;
            }
        }
        for r in refs {
            host.put_manifest(r, export.bytes(), export.media_type())
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
    match reach(host, sources, target, digest).await? {
        Some(false) => {
            counts.existing.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        Some(true) => {
            counts.mounted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        None => {}
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
