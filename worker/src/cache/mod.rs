//! The build cache as records: what `kiln du` shows and `kiln prune` removes.
//!
//! | kind | what | where |
//! |---|---|---|
//! | `step` | a step's result: its snapshot and the layer blobs made from it | `snapshots/<key>`, `blobs/` |
//! | `layer` | a base image layer, unpacked, with its original blob | `snapshots/<chain id>`, `blobs/` |
//! | `cache-mount` | one instance of a `RUN --mount=type=cache` | `cache-mounts/<key>/<n>` |
//! | `source` | remembered context file digests | `context-hashes/` |
//! | `blob` | a blob no snapshot refers to (image configs and manifests, leftovers) | `blobs/` |
//!
//! Builds hold a shared lock on the store while they run; `prune` takes it exclusively for the
//! records builds use (steps, layers, blobs), and skips cache-mount instances another process
//! holds. Nothing a running build uses is ever removed.

pub mod prune;
pub mod registry;
pub mod transfer;

use rustix::fs::FlockOperation;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::snapshot::layer::{LayerBlob, SnapshotMeta};

/// The kinds of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Step,
    Layer,
    CacheMount,
    Source,
    Blob,
}

impl Kind {
    pub fn parse(text: &str) -> Option<Kind> {
        Some(match text {
            "step" | "step-result" | "regular" => Kind::Step,
            "layer" | "image-layer" => Kind::Layer,
            "cache-mount" | "exec.cachemount" => Kind::CacheMount,
            "source" | "source.local" => Kind::Source,
            "blob" => Kind::Blob,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Step => "step",
            Kind::Layer => "layer",
            Kind::CacheMount => "cache-mount",
            Kind::Source => "source",
            Kind::Blob => "blob",
        }
    }
}

/// One record of the cache.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub kind: Kind,
    /// A snapshot id, a blob digest, or `<cache id>#<instance>`.
    pub id: String,
    /// Bytes on disk.
    pub size: u64,
    /// Seconds since the epoch.
    pub last_used: u64,
    pub description: String,
    /// Held by a running build right now (cache-mount instances only; the rest is protected by
    /// the store lock).
    pub in_use: bool,
    /// What deleting the record removes.
    #[serde(skip)]
    pub paths: Vec<PathBuf>,
    /// Blobs the record uses, its own or not: prune keeps a blob while any kept record uses it.
    #[serde(skip)]
    pub refers: Vec<PathBuf>,
    /// The lock a step holds while it uses the record (cache-mount instances).
    #[serde(skip)]
    pub lock: Option<PathBuf>,
}

/// The store's lock file: builds hold it shared, `prune` exclusively.
pub struct StoreLock {
    _file: File,
}

fn lock_file(root: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("lock"))
}

impl StoreLock {
    /// Held by a build for as long as it runs.
    pub fn shared(root: &Path) -> io::Result<StoreLock> {
        let file = lock_file(root)?;
        loop {
            match rustix::fs::flock(&file, FlockOperation::LockShared) {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Taken by `prune`; `None` while builds are running.
    pub fn try_exclusive(root: &Path) -> io::Result<Option<StoreLock>> {
        let file = lock_file(root)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Some(StoreLock { _file: file })),
            Err(rustix::io::Errno::WOULDBLOCK) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// Mark a snapshot as used now (a cache hit, a new result, a base layer).
pub fn touch(snapshot_dir: &Path) {
    if let Ok(f) = File::create(snapshot_dir.join("used")) {
        let _ = f.set_modified(SystemTime::now());
    }
}

fn mtime_secs(path: &Path) -> Option<u64> {
    fs::metadata(path)
        .ok()?
        .modified()
        .ok()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Disk usage of a tree, counting each inode once.
pub fn disk_usage(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    for entry in walkdir::WalkDir::new(path).into_iter().flatten() {
        if let Ok(m) = entry.metadata()
            && seen.insert((m.dev(), m.ino()))
        {
            total += m.blocks() * 512;
        }
    }
    total
}

/// Every record of the store at `root`.
pub fn records(root: &Path) -> io::Result<Vec<Record>> {
    let mut out = Vec::new();
    let mut owned_blobs: HashSet<String> = HashSet::new();
    let blob_dir = root.join("blobs/sha256");

    // Steps and base layers, with the blobs made from them.
    if let Ok(entries) = fs::read_dir(root.join("snapshots")) {
        for entry in entries.flatten() {
            let dir = entry.path();
            let id = entry.file_name().to_string_lossy().into_owned();
            let Ok(bytes) = fs::read(dir.join("meta.json")) else {
                continue;
            };
            let Ok(meta) = serde_json::from_slice::<SnapshotMeta>(&bytes) else {
                continue;
            };
            let mut paths = vec![dir.clone()];
            let mut size = disk_usage(&dir);
            let mut blobs: Vec<LayerBlob> = meta.blob.iter().cloned().collect();
            for f in fs::read_dir(&dir)?.flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with("layer-")
                    && let Ok(b) = fs::read(f.path())
                    && let Ok(blob) = serde_json::from_slice::<LayerBlob>(&b)
                {
                    blobs.push(blob);
                }
            }
            let mut refers = Vec::new();
            for blob in &blobs {
                let path = blob_dir.join(blob.digest.hex());
                refers.push(path.clone());
                if owned_blobs.insert(blob.digest.hex().to_string()) && path.exists() {
                    size += fs::metadata(&path).map(|m| m.blocks() * 512).unwrap_or(0);
                    paths.push(path);
                }
            }
            let last_used = mtime_secs(&dir.join("used"))
                .or_else(|| mtime_secs(&dir.join("meta.json")))
                .unwrap_or(0);
            let (kind, description) = if meta.blob.is_some() {
                (
                    Kind::Layer,
                    format!(
                        "base image layer {}",
                        meta.diff_id
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ),
                )
            } else {
                (
                    Kind::Step,
                    if meta.empty {
                        "step result (no changes)".to_string()
                    } else {
                        "step result".to_string()
                    },
                )
            };
            out.push(Record {
                kind,
                id,
                size,
                last_used,
                description,
                in_use: false,
                paths,
                refers,
                lock: None,
            });
        }
    }

    // Cache-mount instances.
    if let Ok(entries) = fs::read_dir(root.join("cache-mounts")) {
        for entry in entries.flatten() {
            let dir = entry.path();
            let key: HashMap<String, serde_json::Value> = fs::read(dir.join("meta.json"))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            let id = key
                .get("id")
                .and_then(|v| v.as_str())
                .unwrap_or("?")
                .to_string();
            for inst in fs::read_dir(&dir)?.flatten() {
                let name = inst.file_name().to_string_lossy().into_owned();
                if !inst.path().is_dir() || name.parse::<usize>().is_err() {
                    continue;
                }
                let lock = dir.join(format!("{name}.lock"));
                let in_use = File::open(&lock)
                    .map(|f| {
                        let free =
                            rustix::fs::flock(&f, FlockOperation::NonBlockingLockExclusive).is_ok();
                        if free {
                            let _ = rustix::fs::flock(&f, FlockOperation::Unlock);
                        }
                        !free
                    })
                    .unwrap_or(false);
                let used = dir.join(format!("{name}.used"));
                out.push(Record {
                    kind: Kind::CacheMount,
                    id: format!("{id}#{name}"),
                    size: disk_usage(&inst.path()),
                    last_used: mtime_secs(&used)
                        .or_else(|| mtime_secs(&inst.path()))
                        .unwrap_or(0),
                    description: format!("cache mount {id}, instance {name}"),
                    in_use,
                    paths: vec![inst.path(), used],
                    refers: vec![],
                    lock: Some(lock),
                });
            }
        }
    }

    // Remembered context digests.
    if let Ok(entries) = fs::read_dir(root.join("context-hashes")) {
        for entry in entries.flatten() {
            let path = entry.path();
            out.push(Record {
                kind: Kind::Source,
                id: entry.file_name().to_string_lossy().into_owned(),
                size: fs::metadata(&path).map(|m| m.blocks() * 512).unwrap_or(0),
                last_used: mtime_secs(&path).unwrap_or(0),
                description: "context file digests".into(),
                in_use: false,
                paths: vec![path],
                refers: vec![],
                lock: None,
            });
        }
    }

    // Blobs no snapshot owns.
    if let Ok(entries) = fs::read_dir(&blob_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if owned_blobs.contains(&name) {
                continue;
            }
            let path = entry.path();
            out.push(Record {
                kind: Kind::Blob,
                id: format!("sha256:{name}"),
                size: fs::metadata(&path).map(|m| m.blocks() * 512).unwrap_or(0),
                last_used: mtime_secs(&path).unwrap_or(0),
                description: "blob (image config, manifest or leftover layer)".into(),
                in_use: false,
                paths: vec![path],
                refers: vec![],
                lock: None,
            });
        }
    }
    out.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Take the store for a build: clear what crashed processes left in `tmp/` (everything, when
/// nothing else uses the store; else the entries of processes that are gone), then hold the
/// shared lock for as long as the build runs.
pub fn open_for_build(root: &Path) -> io::Result<StoreLock> {
    if let Some(exclusive) = StoreLock::try_exclusive(root)? {
        if let Ok(entries) = fs::read_dir(root.join("tmp")) {
            for entry in entries.flatten() {
                // Our own owner lock stays (it is held, and names our entries to come).
                let name = entry.file_name().to_string_lossy().into_owned();
                if crate::store::owner::lock_token(&name)
                    .is_some_and(|t| crate::store::owner::is_live(&root.join("tmp"), t))
                {
                    continue;
                }
                let _ = crate::store::remove_entry(&entry.path());
            }
        }
        drop(exclusive);
    } else {
        clean_tmp(root);
    }
    StoreLock::shared(root)
}

/// Remove what crashed processes left in `tmp/`: entries whose owner (the token in their name,
/// `<prefix>-<owner>-<n>`) no longer holds its lock. Never decided by pid: a live build in
/// another pid namespace on the same volume looks dead by pid (see [`crate::store::owner`]).
pub fn clean_tmp(root: &Path) {
    use crate::store::owner;
    let tmp = root.join("tmp");
    let Ok(entries) = fs::read_dir(&tmp) else {
        return;
    };
    let mut dead = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(token) = owner::lock_token(&name) {
            dead.push(token.to_string());
            continue;
        }
        let mut parts = name.rsplitn(3, '-');
        let (Some(_n), Some(token), Some(_prefix)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if !owner::is_live(&tmp, token) {
            let _ = crate::store::remove_entry(&entry.path());
        }
    }
    for token in dead {
        if !owner::is_live(&tmp, &token) {
            owner::remove_dead(&tmp, &token);
        }
    }
}
