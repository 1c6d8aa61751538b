//! Committed snapshots and their layer blobs.
//!
//! ```text
//! snapshots/<id>/fs            the layer's changes, overlay upper format
//! snapshots/<id>/meta.json     written last: its presence means the snapshot is complete
//! snapshots/<id>/layer-<c>-<sde>.json   the layer blob for compression c and epoch sde
//! snapshots/<id>/checksum-<key>         a content checksum of files in the chain topped by <id>
//! ```
//!
//! A snapshot directory is the source of truth; a layer blob is derived from it and can be
//! derived again if a crash lost it. A snapshot is committed by renaming a finished temporary
//! directory into place, so a reader never sees half a snapshot.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::compress::{Compression, Compressor};
use super::diff::{TarOptions, write_tar};
use crate::digest::{Digest, HashingWriter};
use crate::store::{Store, remove_tree};

/// The metadata of a committed snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotMeta {
    /// The snapshot below this one, if any.
    pub parent: Option<String>,
    /// The diff id, when known without tarring (imported layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_id: Option<Digest>,
    /// True when the directory holds no change at all.
    #[serde(default)]
    pub empty: bool,
    /// The original blob of an imported layer, exported as it is instead of recompressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<LayerBlob>,
}

/// A layer blob derived from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LayerBlob {
    pub diff_id: Digest,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

/// A snapshot being written.
pub struct Pending {
    tmp: PathBuf,
}

impl Pending {
    /// The directory to fill (the overlay upper directory, for a RUN step).
    pub fn fs(&self) -> PathBuf {
        self.tmp.join("fs")
    }

    /// A scratch directory beside `fs` on the same filesystem (overlayfs's work directory).
    pub fn work(&self) -> PathBuf {
        self.tmp.join("work")
    }

    pub fn path(&self) -> &Path {
        &self.tmp
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.tmp.exists() {
            let _ = remove_tree(&self.tmp);
        }
    }
}

/// The snapshots of a store.
#[derive(Debug, Clone)]
pub struct Snapshots {
    store: Store,
    /// What this process has read or committed. A committed snapshot never changes, and none
    /// is removed while a build holds the store lock, so a build reads each `meta.json` once.
    known: Arc<Mutex<HashMap<String, SnapshotMeta>>>,
    /// Snapshots marked as used by this process: once is enough.
    touched: Arc<Mutex<HashSet<String>>>,
}

impl Snapshots {
    pub fn new(store: Store) -> Snapshots {
        Snapshots {
            store,
            known: Arc::default(),
            touched: Arc::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.store.root().join("snapshots").join(id)
    }

    /// Mark a snapshot as used now.
    pub fn touch(&self, id: &str) {
        if self
            .touched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string())
        {
            crate::cache::touch(&self.dir(id));
        }
    }

    /// The layer directory of a snapshot.
    pub fn fs(&self, id: &str) -> PathBuf {
        self.dir(id).join("fs")
    }

    /// The metadata of a committed snapshot, or `None` if there is none with that id.
    pub fn get(&self, id: &str) -> Option<SnapshotMeta> {
        if let Some(meta) = self.known.lock().unwrap_or_else(|e| e.into_inner()).get(id) {
            return Some(meta.clone());
        }
        let bytes = fs::read(self.dir(id).join("meta.json")).ok()?;
        let meta: SnapshotMeta = serde_json::from_slice(&bytes).ok()?;
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string(), meta.clone());
        Some(meta)
    }

    /// The layer directories of a snapshot and its ancestors, topmost first.
    pub fn chain(&self, id: &str) -> io::Result<Vec<(String, SnapshotMeta)>> {
        let mut out = Vec::new();
        let mut next = Some(id.to_string());
        while let Some(id) = next {
            let meta = self.get(&id).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("snapshot {id} is missing from the store"),
                )
            })?;
            next = meta.parent.clone();
            out.push((id, meta));
        }
        Ok(out)
    }

    /// Start a snapshot.
    pub fn begin(&self) -> io::Result<Pending> {
        let tmp = self.store.temp_path("snapshot");
        fs::create_dir_all(tmp.join("fs"))?;
        fs::create_dir_all(tmp.join("work"))?;
        Ok(Pending { tmp })
    }

    /// Commit a pending snapshot under `id`. If another build committed the same id first, its
    /// snapshot is kept and ours discarded: equal ids mean equal content.
    pub fn commit(&self, pending: Pending, id: &str, meta: SnapshotMeta) -> io::Result<()> {
        // Another process committed the same key first: its result stands.
        self.try_commit(pending, id, meta).map(drop)
    }

    /// Like [`Snapshots::commit`], but hands the pending snapshot back when `id` is already
    /// taken, so that the caller can keep its own result under another id.
    pub fn try_commit(
        &self,
        pending: Pending,
        id: &str,
        mut meta: SnapshotMeta,
    ) -> io::Result<Result<(), Pending>> {
        let work = pending.work();
        if work.exists() {
            remove_tree(&work)?;
        }
        meta.empty = fs::read_dir(pending.fs())?.next().is_none();
        fs::write(
            pending.tmp.join("meta.json"),
            serde_json::to_vec(&meta).map_err(io::Error::other)?,
        )?;
        let dest = self.dir(id);
        match fs::rename(&pending.tmp, &dest) {
            Ok(()) => Ok(Ok(())),
            Err(_) if self.get(id).is_some() => Ok(Err(pending)),
            Err(e) => {
                // A stale, incomplete directory (a crash before meta.json): replace it.
                if dest.exists() && self.get(id).is_none() {
                    remove_tree(&dest)?;
                    return fs::rename(&pending.tmp, &dest).map(Ok);
                }
                Err(e)
            }
        }
    }

    fn layer_record(&self, id: &str, compression: Compression, opts: &TarOptions) -> PathBuf {
        let epoch = opts
            .source_date_epoch
            .map_or("none".to_string(), |e| e.to_string());
        let c = match compression {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::Uncompressed => "tar",
        };
        self.dir(id).join(format!("layer-{c}-{epoch}.json"))
    }

    /// The layer blob of a snapshot, computing and storing it if needed.
    pub fn layer(
        &self,
        id: &str,
        compression: Compression,
        opts: &TarOptions,
    ) -> io::Result<LayerBlob> {
        let record = self.layer_record(id, compression, opts);
        // The blob was not synced (it can be made again): one cut short by a power loss has
        // the wrong size and is made again.
        if let Ok(bytes) = fs::read(&record)
            && let Ok(blob) = serde_json::from_slice::<LayerBlob>(&bytes)
            && fs::metadata(self.store.blob_path(&blob.digest)).is_ok_and(|m| m.len() == blob.size)
        {
            return Ok(blob);
        }
        let blob = write_layer(&self.store, &self.fs(id), compression, opts)?;
        let tmp = self.store.temp_path("layer-record");
        fs::write(&tmp, serde_json::to_vec(&blob).map_err(io::Error::other)?)?;
        fs::rename(&tmp, &record)?;
        Ok(blob)
    }

    /// Where the checksum of `what` (a COPY's sources, a bind mount's source) over the
    /// filesystem of `chain` (snapshot ids, topmost first) is kept: beside the top snapshot,
    /// named by the whole chain (a `COPY --link` layer sits on different chains) and `what`.
    fn checksum_path(&self, chain: &[String], what: &str) -> Option<PathBuf> {
        let top = chain.first()?;
        let mut key = String::from("checksum/v1\0");
        for id in chain {
            key.push_str(id);
            key.push('\0');
        }
        key.push_str(what);
        Some(
            self.dir(top)
                .join(format!("checksum-{}", Digest::of(key.as_bytes()).hex())),
        )
    }

    /// A checksum recorded by [`Snapshots::record_checksum`]. Committed snapshots never change,
    /// so a checksum of their files, once computed, holds for as long as they exist: a later
    /// definition miss (another build, another platform) reads it instead of every file again,
    /// as BuildKit's per-snapshot checksum cache does.
    pub fn checksum(&self, chain: &[String], what: &str) -> Option<Digest> {
        let text = fs::read_to_string(self.checksum_path(chain, what)?).ok()?;
        Digest::parse(text.trim()).ok()
    }

    /// Remember a checksum of `chain`'s files (best effort: it can always be computed again).
    pub fn record_checksum(&self, chain: &[String], what: &str, digest: &Digest) {
        let Some(path) = self.checksum_path(chain, what) else {
            return;
        };
        let tmp = self.store.temp_path("checksum");
        if fs::write(&tmp, digest.as_str()).is_err() || fs::rename(&tmp, &path).is_err() {
            let _ = fs::remove_file(&tmp);
        }
    }

    /// Record a layer blob that is already known (an imported layer).
    pub fn record_layer(
        &self,
        id: &str,
        compression: Compression,
        opts: &TarOptions,
        blob: &LayerBlob,
    ) -> io::Result<()> {
        let tmp = self.store.temp_path("layer-record");
        fs::write(&tmp, serde_json::to_vec(blob).map_err(io::Error::other)?)?;
        fs::rename(&tmp, self.layer_record(id, compression, opts))
    }
}

/// Tar and compress a directory into a blob.
pub fn write_layer(
    store: &Store,
    dir: &Path,
    compression: Compression,
    opts: &TarOptions,
) -> io::Result<LayerBlob> {
    let blob = store.blob_writer()?;
    let compressor = Compressor::new(blob, compression)?;
    let tar_hasher = HashingWriter::new(BufWriter::with_capacity(1 << 20, compressor));
    let (tar_hasher, _) = write_tar(dir, opts, tar_hasher)?;
    let (diff_id, _, buffered) = tar_hasher.finish();
    let compressor = buffered.into_inner().map_err(|e| e.into_error())?;
    let blob = compressor.finish()?;
    let (digest, size) = blob.commit_derived()?;
    Ok(LayerBlob {
        diff_id,
        digest,
        size,
        media_type: compression.media_type().to_string(),
    })
}

/// The OCI chain id of a layer on top of a parent chain.
pub fn chain_id(parent: Option<&Digest>, diff_id: &Digest) -> Digest {
    match parent {
        None => diff_id.clone(),
        Some(p) => Digest::of(format!("{p} {diff_id}").as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    #[test]
    fn commit_then_layer_is_cached_and_deterministic() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let snaps = Snapshots::new(store.clone());
        let p = snaps.begin().unwrap();
        fs::write(p.fs().join("hello"), b"world").unwrap();
        snaps
            .commit(
                p,
                "a",
                SnapshotMeta {
                    parent: None,
                    diff_id: None,
                    empty: false,
                    blob: None,
                },
            )
            .unwrap();
        assert!(!snaps.get("a").unwrap().empty);
        let opts = TarOptions {
            source_date_epoch: Some(0),
        };
        let one = snaps.layer("a", Compression::Gzip, &opts).unwrap();
        let two = snaps.layer("a", Compression::Gzip, &opts).unwrap();
        assert_eq!(one, two);
        let again = write_layer(&store, &snaps.fs("a"), Compression::Gzip, &opts).unwrap();
        assert_eq!(
            again.digest, one.digest,
            "the same directory gives the same blob"
        );
        let mut tar = Vec::new();
        flate2::read::MultiGzDecoder::new(fs::File::open(store.blob_path(&one.digest)).unwrap())
            .read_to_end(&mut tar)
            .unwrap();
        assert_eq!(Digest::of(&tar), one.diff_id);
        assert_eq!(
            one.media_type,
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }

    #[test]
    fn chains_and_empty_snapshots() {
        let d = tempfile::tempdir().unwrap();
        let snaps = Snapshots::new(Store::open(d.path()).unwrap());
        let p = snaps.begin().unwrap();
        snaps
            .commit(
                p,
                "base",
                SnapshotMeta {
                    parent: None,
                    diff_id: None,
                    empty: false,
                    blob: None,
                },
            )
            .unwrap();
        let p = snaps.begin().unwrap();
        snaps
            .commit(
                p,
                "top",
                SnapshotMeta {
                    parent: Some("base".into()),
                    diff_id: None,
                    empty: false,
                    blob: None,
                },
            )
            .unwrap();
        let chain: Vec<String> = snaps
            .chain("top")
            .unwrap()
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(chain, ["top", "base"]);
        assert!(snaps.get("top").unwrap().empty);
        assert!(snaps.chain("nope").is_err());
    }

    #[test]
    fn a_dropped_pending_snapshot_leaves_nothing() {
        let d = tempfile::tempdir().unwrap();
        let snaps = Snapshots::new(Store::open(d.path()).unwrap());
        let p = snaps.begin().unwrap();
        fs::write(p.fs().join("x"), b"x").unwrap();
        drop(p);
        assert_eq!(crate::store::temp_entries(&d.path().join("tmp")), 0);
    }

    #[test]
    fn checksums_are_kept_per_chain_and_source() {
        let d = tempfile::tempdir().unwrap();
        let snaps = Snapshots::new(Store::open(d.path()).unwrap());
        for id in ["base", "top"] {
            let p = snaps.begin().unwrap();
            let meta = SnapshotMeta {
                parent: None,
                diff_id: None,
                empty: false,
                blob: None,
            };
            snaps.commit(p, id, meta).unwrap();
        }
        let chain = ["top".to_string(), "base".to_string()];
        let digest = Digest::of(b"files");
        assert_eq!(snaps.checksum(&chain, "copy a"), None);
        snaps.record_checksum(&chain, "copy a", &digest);
        assert_eq!(snaps.checksum(&chain, "copy a"), Some(digest.clone()));
        assert_eq!(snaps.checksum(&chain, "copy b"), None, "another source");
        assert_eq!(snaps.checksum(&chain[..1], "copy a"), None, "another chain");
        snaps.record_checksum(&[], "copy a", &digest);
        assert_eq!(snaps.checksum(&[], "copy a"), None, "no snapshot, no cache");
    }

    #[test]
    fn a_short_layer_blob_is_made_again() {
        let d = tempfile::tempdir().unwrap();
        let store = Store::open(d.path()).unwrap();
        let snaps = Snapshots::new(store.clone());
        let p = snaps.begin().unwrap();
        fs::write(p.fs().join("hello"), b"world").unwrap();
        let meta = SnapshotMeta {
            parent: None,
            diff_id: None,
            empty: false,
            blob: None,
        };
        snaps.commit(p, "a", meta).unwrap();
        let opts = TarOptions {
            source_date_epoch: Some(0),
        };
        let blob = snaps.layer("a", Compression::Gzip, &opts).unwrap();
        // What a power loss can leave of a blob that was not synced: its name, not its bytes.
        fs::write(store.blob_path(&blob.digest), b"").unwrap();
        let again = snaps.layer("a", Compression::Gzip, &opts).unwrap();
        assert_eq!(again, blob);
        assert_eq!(
            fs::metadata(store.blob_path(&blob.digest)).unwrap().len(),
            blob.size
        );
    }

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        assert_eq!(chain_id(None, &a), a);
        assert_eq!(
            chain_id(Some(&a), &b),
            Digest::of(format!("{a} {b}").as_bytes())
        );
    }
}
