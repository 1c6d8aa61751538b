//! Step results from an imported cache (`--cache-from`), used lazily.
//!
//! A hit on an imported record puts the record's id on the stage like any other layer, but
//! fetches nothing. The content is fetched and unpacked only when something reads the
//! filesystem (a step that runs on top, a `COPY --from`, a mount, a local output), and the blob
//! alone when an output needs the layer: a rebuild that hits everything and pushes to the
//! registry it imported from downloads no layer at all.

use std::fs::File;
use std::sync::{Arc, OnceLock};

use super::{BaseError, BuildError, Solver, StepFailure};
use crate::cache::transfer::{BlobError, BlobSource, CacheRecord};
use crate::digest::{Digest, HashingReader};
use crate::snapshot::extract::{self, UnpackOptions};
use crate::snapshot::layer::{LayerBlob, SnapshotMeta};
use crate::snapshot::view::View;

/// An imported step result that this build hit.
pub(super) struct RemoteLayer {
    record: CacheRecord,
    source: Arc<dyn BlobSource>,
    /// Set once the content is in the local store.
    local: OnceLock<Result<(), Arc<BaseError>>>,
}

impl Solver<'_> {
    /// An imported record with this key, from the first `--cache-from` that has it.
    pub(super) fn imported(&self, key: &str) -> Option<Arc<RemoteLayer>> {
        self.opts.cache_from.iter().find_map(|imp| {
            imp.records.get(key).map(|record| {
                Arc::new(RemoteLayer {
                    record: record.clone(),
                    source: imp.source.clone(),
                    local: OnceLock::new(),
                })
            })
        })
    }

    /// The id of the result an imported record holds (its key, which differs from the key it
    /// was found under when that is an alias).
    pub(super) fn imported_id(remote: &RemoteLayer) -> &str {
        &remote.record.key
    }

    /// Use an imported record as the result of step `id`. Empty results are made locally at
    /// once (there is nothing to fetch); the others wait until they are needed.
    pub(super) fn use_imported(
        &self,
        id: &str,
        remote: Arc<RemoteLayer>,
    ) -> Result<(), BuildError> {
        if remote.record.empty || remote.record.layer.is_none() {
            let pending = self.snapshots.begin()?;
            let meta = SnapshotMeta {
                parent: None,
                diff_id: None,
                empty: true,
                blob: None,
            };
            self.snapshots.commit(pending, id, meta)?;
            return Ok(());
        }
        self.shared
            .stats
            .imported
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        super::shared::lock(&self.shared.remote).insert(id.to_string(), remote);
        Ok(())
    }

    fn remote(&self, id: &str) -> Option<Arc<RemoteLayer>> {
        super::shared::lock(&self.shared.remote).get(id).cloned()
    }

    /// Whether a step's result is still only in an imported cache.
    pub(super) fn is_remote(&self, id: &str) -> bool {
        self.remote(id).is_some_and(|r| r.local.get().is_none())
    }

    /// Whether a layer is empty (it adds no directory to the overlay chain).
    pub fn is_empty(&self, id: &str) -> bool {
        match self.remote(id) {
            Some(r) => r.record.empty,
            None => self.snapshots.get(id).is_none_or(|m| m.empty),
        }
    }

    /// The layer blob of an imported result that has not been made local.
    pub(super) fn remote_blob(&self, id: &str) -> Option<LayerBlob> {
        self.remote(id).and_then(|r| r.record.layer.clone())
    }

    /// A base image layer that is fetched from `source` only when something needs it.
    pub(super) fn lazy_layer(&self, id: &str, layer: LayerBlob, source: Arc<dyn BlobSource>) {
        let remote = RemoteLayer {
            record: CacheRecord {
                key: id.to_string(),
                empty: false,
                layer: Some(layer),
                aliases: vec![],
            },
            source,
            local: OnceLock::new(),
        };
        super::shared::lock(&self.shared.remote)
            .entry(id.to_string())
            .or_insert_with(|| Arc::new(remote));
    }

    /// Make every layer of a chain local: fetch and unpack what is still only imported, the
    /// layers in parallel.
    pub fn materialise(&self, chain: &[String]) -> Result<(), BuildError> {
        let remotes: Vec<(&String, Arc<RemoteLayer>)> = chain
            .iter()
            .filter_map(|id| self.remote(id).map(|r| (id, r)))
            .filter(|(_, r)| r.local.get().is_none_or(|done| done.is_err()))
            .collect();
        let local = |(id, remote): &(&String, Arc<RemoteLayer>)| {
            remote
                .local
                .get_or_init(|| self.unpack_remote(id, remote).map_err(Arc::new))
                .clone()
                .map_err(BuildError::Base)
        };
        if remotes.len() <= 1 {
            return remotes.iter().try_for_each(local);
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = remotes
                .iter()
                .map(|r| scope.spawn(move || local(r)))
                .collect();
            handles.into_iter().try_for_each(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BaseError::Invalid("layer fetch panicked".into()).into())
                })
            })
        })
    }

    /// The filesystem of a stage this one reads from, made local first.
    pub(super) fn stage_view(&self, stage: usize) -> Result<View, StepFailure> {
        let result = self.wait_stage(stage)?;
        self.materialise(&result.chain)?;
        Ok(result.view(self))
    }

    /// A checksum of `what` in a stage's filesystem (what a COPY or a bind mount reads from
    /// it), from the snapshots' checksum cache when it was computed before: only a miss reads
    /// (and, for an imported cache hit, fetches) the stage's files.
    pub(super) fn stage_checksum(
        &self,
        stage: usize,
        what: &str,
        compute: impl FnOnce(&View) -> Result<Digest, StepFailure>,
    ) -> Result<Digest, StepFailure> {
        let result = self.wait_stage(stage)?;
        if let Some(digest) = self.snapshots.checksum(&result.chain, what) {
            return Ok(digest);
        }
        self.materialise(&result.chain)?;
        let digest = compute(&result.view(self))?;
        self.snapshots.record_checksum(&result.chain, what, &digest);
        Ok(digest)
    }

    /// Fetch a blob from an imported cache into the store, checking its digest.
    fn fetch_blob(&self, source: &dyn BlobSource, blob: &LayerBlob) -> Result<(), BlobError> {
        let store = self.snapshots.store();
        if store.has_blob(&blob.digest) {
            return Ok(());
        }
        source.fetch(blob, store)
    }

    /// Make sure the store has these blobs, fetching imported ones. For outputs that copy
    /// blobs out of the store.
    pub fn fetch_missing_blobs(&self, blobs: &[LayerBlob]) -> Result<(), BuildError> {
        let remotes: Vec<Arc<RemoteLayer>> = super::shared::lock(&self.shared.remote)
            .values()
            .cloned()
            .collect();
        for blob in blobs {
            if self.snapshots.store().has_blob(&blob.digest) {
                continue;
            }
            let Some(r) = remotes.iter().find(|r| {
                r.record
                    .layer
                    .as_ref()
                    .is_some_and(|l| l.digest == blob.digest)
            }) else {
                continue;
            };
            self.fetch_blob(r.source.as_ref(), blob)
                .map_err(BaseError::Fetch)?;
        }
        Ok(())
    }

    fn unpack_remote(&self, id: &str, remote: &RemoteLayer) -> Result<(), BaseError> {
        let blob = remote
            .record
            .layer
            .as_ref()
            .ok_or_else(|| BaseError::Invalid(format!("cache record {id} has no layer")))?;
        self.fetch_blob(remote.source.as_ref(), blob)?;
        let path = self.snapshots.store().blob_path(&blob.digest);
        let file = File::open(&path)?;
        let mut hashing = HashingReader::new(file);
        let pending = self.snapshots.begin()?;
        let opts = UnpackOptions::image_layer();
        let unpacked = extract::unpack(&mut hashing, &pending.fs(), &opts).map_err(|source| {
            BaseError::Unpack {
                origin: remote.source.describe(),
                digest: blob.digest.to_string(),
                source,
            }
        })?;
        if unpacked.diff_id != blob.diff_id {
            return Err(BaseError::Invalid(format!(
                "layer {} from the cache {}: its diff id is {}, the record says {}",
                blob.digest,
                remote.source.describe(),
                unpacked.diff_id,
                blob.diff_id
            )));
        }
        self.snapshots.commit(
            pending,
            id,
            SnapshotMeta {
                parent: None,
                diff_id: Some(blob.diff_id.clone()),
                empty: false,
                blob: Some(blob.clone()),
            },
        )?;
        self.snapshots.touch(id);
        Ok(())
    }
}
