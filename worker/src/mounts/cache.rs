//! Cache mounts (`RUN --mount=type=cache`), with BuildKit's semantics, across processes.
//!
//! A cache is keyed by its namespace (`--cache-mount-ns`), id, `uid`, `gid`, `mode` and, when it
//! is seeded, the `from`/`source` it is seeded from: the same key is the same cache. Its content
//! lives outside any layer and never reaches a step's cache key.
//!
//! ```text
//! <root>/<key>/meta.json         id, owner, mode, namespace: what `kiln du` shows
//! <root>/<key>/<n>/              instance n of the cache
//! <root>/<key>/<n>.lock          its lock, beside (never inside) the content
//! <root>/<key>/<n>.used          touched when a step releases it: the last-used time
//! ```
//!
//! `sharing` (Dockerfile reference, `RUN --mount=type=cache`):
//! - `shared` (the default): every step uses instance 0 at once (a shared `flock`);
//! - `locked`: a step waits until no other step holds instance 0 (an exclusive `flock`);
//! - `private`: a step takes the first instance nobody holds, or creates a new one.
//!
//! The locks are `flock`s on files in the cache directory, so two `kiln` processes sharing one
//! `--cache-dir` (two pods on one volume) coordinate exactly like two steps of one build.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, KeyHasher};
use crate::plan::step::Sharing;

/// What identifies a cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheKey {
    pub namespace: String,
    pub id: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// The content the cache is seeded from (a stage's or image's key and the source path).
    pub seed: Option<String>,
}

impl CacheKey {
    pub fn digest(&self) -> Digest {
        let mut h = KeyHasher::new("cache-mount/v1");
        h.str(&self.namespace)
            .str(&self.id)
            .str(&self.uid.to_string())
            .str(&self.gid.to_string());
        h.str(&format!("{:o}", self.mode))
            .str(self.seed.as_deref().unwrap_or(""));
        h.finish()
    }
}

/// The cache mounts under one root directory.
#[derive(Debug, Clone)]
pub struct CacheMounts {
    root: PathBuf,
}

/// A cache instance in use by one step; the lock is released when it is dropped.
#[derive(Debug)]
pub struct Lease {
    pub dir: PathBuf,
    pub instance: usize,
    lock: File,
    used: PathBuf,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = File::create(&self.used);
        let _ = rustix::fs::flock(&self.lock, FlockOperation::Unlock);
    }
}

enum Try {
    Acquired,
    Busy,
}

fn flock(file: &File, how: FlockOperation) -> io::Result<Try> {
    loop {
        match rustix::fs::flock(file, how) {
            Ok(()) => return Ok(Try::Acquired),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(Try::Busy),
            Err(e) => return Err(e.into()),
        }
    }
}

impl CacheMounts {
    pub fn new(root: impl Into<PathBuf>) -> CacheMounts {
        CacheMounts { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_file(&self, dir: &Path, n: usize) -> io::Result<File> {
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(format!("{n}.lock")))
    }

    /// Get an instance of a cache for one step. `seed` fills a new instance (`from=`).
    /// `waiting` is called once if the step must wait for a `locked` cache; `cancelled` is
    /// polled while it waits.
    pub fn acquire(
        &self,
        key: &CacheKey,
        sharing: Sharing,
        seed: &dyn Fn(&Path) -> io::Result<()>,
        waiting: &dyn Fn(),
        cancelled: &dyn Fn() -> bool,
    ) -> io::Result<Lease> {
        let dir = self.root.join(key.digest().hex());
        fs::create_dir_all(&dir)?;
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        // Named after this process's owner token (held as a lock in `dir`), which is what the
        // leftover cleaner checks: never a pid, which another pod's namespace does not share.
        let token = crate::store::owner::claim(&dir)?;
        let unique = || {
            format!(
                "{token}-{}",
                SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        };
        let meta = dir.join("meta.json");
        if !meta.exists() {
            // Unique per thread too: steps of one build may create the same cache at once.
            let tmp = dir.join(format!("meta.json.{}", unique()));
            fs::write(&tmp, serde_json::to_vec(key).map_err(io::Error::other)?)?;
            fs::rename(tmp, meta)?;
        }
        let (n, lock) = match sharing {
            Sharing::Shared | Sharing::Locked => {
                let lock = self.lock_file(&dir, 0)?;
                let how = if sharing == Sharing::Shared {
                    FlockOperation::NonBlockingLockShared
                } else {
                    FlockOperation::NonBlockingLockExclusive
                };
                let mut told = false;
                loop {
                    if let Try::Acquired = flock(&lock, how)? {
                        break;
                    }
                    if !told {
                        waiting();
                        told = true;
                    }
                    if cancelled() {
                        return Err(io::Error::new(
                            io::ErrorKind::Interrupted,
                            "cancelled while waiting for a cache lock",
                        ));
                    }
                    std::thread::sleep(Duration::from_millis(25));
                }
                (0, lock)
            }
            Sharing::Private => {
                let mut n = 0;
                loop {
                    let lock = self.lock_file(&dir, n)?;
                    if let Try::Acquired = flock(&lock, FlockOperation::NonBlockingLockExclusive)? {
                        break (n, lock);
                    }
                    n += 1;
                }
            }
        };
        let content = dir.join(n.to_string());
        if !content.exists() {
            // Made aside and renamed into place: an instance is whole or absent. Under a shared
            // lock two steps may both make it; the first rename wins and the other copy goes.
            let tmp = dir.join(format!("{n}.new-{}", unique()));
            fs::create_dir(&tmp)?;
            let made = (|| {
                seed(&tmp)?;
                std::os::unix::fs::lchown(&tmp, Some(key.uid), Some(key.gid))?;
                fs::set_permissions(&tmp, fs::Permissions::from_mode(key.mode))?;
                fs::rename(&tmp, &content)
            })();
            if let Err(e) = made {
                let _ = crate::store::remove_tree(&tmp);
                if !content.is_dir() {
                    return Err(e);
                }
            }
        }
        Ok(Lease {
            dir: content,
            instance: n,
            lock,
            used: dir.join(format!("{n}.used")),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    fn key(id: &str) -> CacheKey {
        CacheKey {
            namespace: String::new(),
            id: id.into(),
            uid: 0,
            gid: 0,
            mode: 0o755,
            seed: None,
        }
    }

    fn nothing(_: &Path) -> io::Result<()> {
        Ok(())
    }

    #[test]
    fn shared_leases_use_one_instance_at_once() {
        let d = tempfile::tempdir().unwrap();
        let c = CacheMounts::new(d.path());
        let a = c
            .acquire(&key("go"), Sharing::Shared, &nothing, &|| {}, &|| false)
            .unwrap();
        let b = c
            .acquire(&key("go"), Sharing::Shared, &nothing, &|| {}, &|| false)
            .unwrap();
        assert_eq!(a.dir, b.dir);
        fs::write(a.dir.join("f"), "x").unwrap();
        assert!(b.dir.join("f").exists());
    }

    #[test]
    fn shared_steps_creating_a_new_cache_at_once_all_get_it() {
        let d = tempfile::tempdir().unwrap();
        let c = CacheMounts::new(d.path());
        let slow = |dir: &Path| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            fs::write(dir.join("seeded"), "x")
        };
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        c.acquire(&key("new"), Sharing::Shared, &slow, &|| {}, &|| false)
                            .map(|l| l.dir.clone())
                    })
                })
                .collect();
            for h in handles {
                let dir = h.join().unwrap().unwrap();
                assert!(dir.join("seeded").exists());
            }
        });
        let left: Vec<_> = fs::read_dir(d.path().join(key("new").digest().hex()))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".new-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn private_leases_get_separate_instances_and_reuse_free_ones() {
        let d = tempfile::tempdir().unwrap();
        let c = CacheMounts::new(d.path());
        let a = c
            .acquire(&key("p"), Sharing::Private, &nothing, &|| {}, &|| false)
            .unwrap();
        let b = c
            .acquire(&key("p"), Sharing::Private, &nothing, &|| {}, &|| false)
            .unwrap();
        assert_ne!(a.dir, b.dir);
        assert_eq!((a.instance, b.instance), (0, 1));
        drop(a);
        let again = c
            .acquire(&key("p"), Sharing::Private, &nothing, &|| {}, &|| false)
            .unwrap();
        assert_eq!(again.instance, 0, "the first free instance is reused");
    }

    #[test]
    fn locked_waits_for_the_holder_and_can_be_cancelled() {
        let d = tempfile::tempdir().unwrap();
        let c = CacheMounts::new(d.path());
        let held = c
            .acquire(&key("l"), Sharing::Locked, &nothing, &|| {}, &|| false)
            .unwrap();
        let c2 = c.clone();
        let waited = Arc::new(AtomicBool::new(false));
        let w2 = waited.clone();
        let t = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let lease = c2
                .acquire(
                    &key("l"),
                    Sharing::Locked,
                    &nothing,
                    &|| w2.store(true, Ordering::SeqCst),
                    &|| false,
                )
                .unwrap();
            (start.elapsed(), lease.instance)
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
        let (elapsed, instance) = t.join().unwrap();
        assert!(waited.load(Ordering::SeqCst));
        assert!(
            elapsed >= Duration::from_millis(250),
            "it did not wait: {elapsed:?}"
        );
        assert_eq!(instance, 0);

        let _held = c
            .acquire(&key("l"), Sharing::Locked, &nothing, &|| {}, &|| false)
            .unwrap();
        let err = c
            .acquire(&key("l"), Sharing::Locked, &nothing, &|| {}, &|| true)
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Interrupted);
    }

    #[test]
    fn new_instances_are_seeded_owned_and_moded_once() {
        let d = tempfile::tempdir().unwrap();
        let c = CacheMounts::new(d.path());
        let mut k = key("seeded");
        k.mode = 0o700;
        k.seed = Some("stage-key:/src".into());
        let seeded = std::cell::Cell::new(0);
        let seed = |dir: &Path| {
            seeded.set(seeded.get() + 1);
            fs::write(dir.join("from-seed"), "s")
        };
        let a = c
            .acquire(&k, Sharing::Shared, &seed, &|| {}, &|| false)
            .unwrap();
        assert!(a.dir.join("from-seed").exists());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(fs::metadata(&a.dir).unwrap().mode() & 0o777, 0o700);
        drop(a);
        let _b = c
            .acquire(&k, Sharing::Shared, &seed, &|| {}, &|| false)
            .unwrap();
        assert_eq!(seeded.get(), 1, "an existing cache is not seeded again");
        assert_ne!(
            k.digest(),
            key("seeded").digest(),
            "the seed is part of the key"
        );
    }
}
