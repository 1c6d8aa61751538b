//! What the solvers of one build share.
//!
//! A multi-platform build plans the Dockerfile once per target platform and runs one
//! [`Solver`](super::Solver) per plan, all at once. They share one store, and through this:
//! progress vertex numbers, the images they pull (by reference and platform), context digests,
//! downloads, imported cache hits, layer compression, the failure that stops them all, and the
//! steps themselves. A step is known by the key of its definition (parent, definition, inputs);
//! a step that two platforms have in common (every step of a `FROM --platform=$BUILDPLATFORM`
//! stage before its first `ARG TARGET...`, a `COPY --link`) has the same key in both, and runs
//! once: the first solver to reach it takes its key's lock and does it, the others wait on the
//! lock and take the result, showing no vertex of their own, as BuildKit's solver merges equal
//! vertices of the platforms' graphs.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::base::BaseImage;
use super::remote::RemoteLayer;
use super::{BaseError, Stats};
use crate::context::Context;
use crate::context::hash::HashCache;
use crate::digest::Digest;
use crate::sandbox::run::Cancel;
use crate::snapshot::layer::LayerBlob;
use crate::store::Store;

/// An image being resolved, or its outcome: stages that need it share one cell.
pub(super) type ImageCell = Arc<std::sync::OnceLock<Result<Arc<BaseImage>, Arc<BaseError>>>>;

/// A step done in this build, by the key of its definition.
#[derive(Debug, Clone)]
pub(super) struct Done {
    /// The snapshot that holds its result.
    pub id: String,
    /// The key its result is known by (the content key of a step that reads a stage, or a
    /// rerun's own key).
    pub key: Digest,
}

/// The state shared by the solvers of one build.
pub struct Shared {
    /// Whether more than one platform is built: progress then names each vertex's platform.
    pub(super) multi_platform: bool,
    pub(super) vertex: AtomicUsize,
    pub(super) hashes: Mutex<HashCache>,
    pub(super) layer_jobs: Mutex<HashMap<String, JoinHandle<io::Result<LayerBlob>>>>,
    /// Images, by reference and platform, resolved once each.
    pub(super) images: Mutex<HashMap<(String, String), ImageCell>>,
    /// `ADD <url>` downloads, by URL.
    pub(super) downloads: Mutex<HashMap<String, Arc<crate::fetch::Downloaded>>>,
    /// `ADD <git-url>` commits, fetched once each, by URL and checksum.
    pub(super) git: Mutex<HashMap<String, Arc<crate::git::Fetched>>>,
    /// Step results taken from an imported cache, and lazily pulled base layers, by id.
    pub(super) remote: Mutex<HashMap<String, Arc<RemoteLayer>>>,
    /// The first failure anywhere stops every solver.
    pub(super) failed: AtomicBool,
    /// Running steps, to kill on failure.
    pub(super) cancels: Mutex<Vec<Cancel>>,
    pub stats: Stats,
    /// A lock per step definition key being worked on.
    running: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    done: Mutex<HashMap<String, Done>>,
    /// Vertex names already shown (a shared stage's `FROM` line).
    shown: Mutex<HashSet<String>>,
}

impl Shared {
    /// The shared state of a build over `context`, with its context digests kept in `store`.
    pub fn new(store: &Store, context: &Context, multi_platform: bool) -> Arc<Shared> {
        let hashes = HashCache::load(
            store
                .root()
                .join("context-hashes")
                .join(Digest::of(context.root().as_os_str().as_encoded_bytes()).hex()),
        );
        Arc::new(Shared {
            multi_platform,
            vertex: AtomicUsize::new(0),
            hashes: Mutex::new(hashes),
            layer_jobs: Mutex::new(HashMap::new()),
            images: Mutex::new(HashMap::new()),
            downloads: Mutex::new(HashMap::new()),
            git: Mutex::new(HashMap::new()),
            remote: Mutex::new(HashMap::new()),
            failed: AtomicBool::new(false),
            cancels: Mutex::new(Vec::new()),
            stats: Stats::default(),
            running: Mutex::new(HashMap::new()),
            done: Mutex::new(HashMap::new()),
            shown: Mutex::new(HashSet::new()),
        })
    }

    /// A fresh progress vertex id.
    pub fn next_vertex(&self) -> usize {
        self.vertex.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Whether the build has failed (or was stopped).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }

    /// Fail the build: every running step of every solver is killed.
    pub(super) fn fail(&self) {
        if !self.failed.swap(true, Ordering::SeqCst) {
            for c in lock(&self.cancels).iter() {
                c.cancel();
            }
        }
    }

    /// The lock of a step definition key: held while the step is looked up and done, so that
    /// another platform's solver with the same step waits for its result.
    pub(super) fn step_lock(&self, key: &str) -> Arc<Mutex<()>> {
        lock(&self.running)
            .entry(key.to_string())
            .or_default()
            .clone()
    }

    /// The result of a step done earlier in this build.
    pub(super) fn done(&self, key: &str) -> Option<Done> {
        lock(&self.done).get(key).cloned()
    }

    pub(super) fn set_done(&self, key: &str, done: Done) {
        lock(&self.done).insert(key.to_string(), done);
    }

    /// Whether a vertex of this name is shown for the first time (and now counts as shown).
    pub(super) fn first_showing(&self, name: &str) -> bool {
        lock(&self.shown).insert(name.to_string())
    }

    /// Save what was learnt about the context's files.
    pub(super) fn save_hashes(&self) {
        let _ = lock(&self.hashes).save();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        for d in lock(&self.downloads).values() {
            let _ = std::fs::remove_file(&d.path);
        }
        // Let unfinished background compression finish; its results are cached for next time.
        for (_, job) in lock(&self.layer_jobs).drain() {
            let _ = job.join();
        }
    }
}

/// A mutex's guard, through poisoning (a panicked thread's state is still the best there is).
pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
