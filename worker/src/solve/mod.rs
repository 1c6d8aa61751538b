//! Running a plan: every stage the target needs, in parallel where the graph allows, each step
//! answered from the cache when its key is known.
//!
//! Each stage runs on its own thread and waits for another stage only when it needs it: its
//! base (`FROM stage`), a `COPY --from`, a `RUN --mount from=`. The front end has already
//! dropped the stages the target does not need and refused cycles, so nothing waits forever.
//! The first failure stops every stage: running steps are killed, and nothing is exported.
//!
//! Layer tarballs are compressed on background threads as soon as a step's snapshot is
//! committed, while the next steps run; export only waits for what is not yet done.
//!
//! A multi-platform build runs one solver per target platform, all at once, sharing what
//! [`Shared`] holds: a step two platforms have in common runs once.

mod base;
mod copy_step;
mod error;
mod key;
mod remote;
mod run;
mod run_mounts;
mod shared;
mod stage;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Condvar, Mutex};

pub use base::{BaseImage, ImageSource};
pub use error::{BaseError, BuildError, Interrupt, StepError, StepFailure, Stop, is_disk_full};
pub use shared::Shared;
pub use stage::StageResult;

use crate::context::Context;
use crate::image::config::ImageConfig;
use crate::image::oci::Platform;
use crate::plan::step::{Base, LoweredStage};
use crate::progress::{Event, Sink};
use crate::sandbox::run::Runner;
use crate::snapshot::compress::Compression;
use crate::snapshot::diff::TarOptions;
use crate::snapshot::layer::{LayerBlob, Snapshots};
use crate::store::Store;

/// What the solver needs from the front end.
pub trait Frontend: Sync {
    /// How many stages the plan has, needed or not.
    fn stage_count(&self) -> usize;
    /// Whether the target needs a stage; the others never run.
    fn needed(&self, stage: usize) -> bool;
    /// The stage to export.
    fn target(&self) -> usize;
    /// What a stage starts from.
    fn base(&self, stage: usize) -> Base;
    /// The stage's name in progress output: its `AS` name, or `stage-N`.
    fn label(&self, stage: usize) -> String;
    /// The stage's `AS` name, if it has one.
    fn name(&self, stage: usize) -> Option<String>;
    /// The platform the stage runs on: its `FROM --platform`, else the target platform.
    fn platform(&self, stage: usize) -> Platform;
    /// The platform the build is for (`TARGETPLATFORM`): that of images named by
    /// `COPY --from` and `RUN --mount from=`, as in BuildKit.
    fn target_platform(&self) -> Platform;
    /// Lower a stage given its base's config.
    fn lower(
        &self,
        stage: usize,
        base: &ImageConfig,
    ) -> Result<LoweredStage, crate::dockerfile::Diagnostics>;
}

/// A named build context (`--build-context NAME=...`).
#[derive(Debug, Clone)]
pub enum NamedContext {
    /// `oci-layout://DIR[:TAG|@DIGEST]`.
    OciLayout {
        dir: PathBuf,
        reference: Option<String>,
    },
    /// A local directory.
    Dir(PathBuf),
}

/// Where a build secret's value comes from (`--secret`).
#[derive(Clone)]
pub enum SecretSource {
    File(PathBuf),
    /// An environment variable of the `kiln` process.
    Env(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "File({})", p.display()),
            SecretSource::Env(v) => write!(f, "Env({v})"),
        }
    }
}

/// How RUN steps get a writable root filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Snapshotter {
    /// overlayfs: the layers as lower directories, changes in the snapshot directory.
    Overlay,
    /// A full copy per step, and a comparison afterwards (no overlayfs available).
    Copy,
}

/// Build options.
#[derive(Debug, Clone)]
pub struct Options {
    pub compression: Compression,
    pub source_date_epoch: Option<i64>,
    /// Run every step, ignoring cached results (they are still recorded).
    pub no_cache: bool,
    /// Stages whose steps run without the cache (`--no-cache-filter`).
    pub no_cache_stages: HashSet<usize>,
    pub named_contexts: HashMap<String, NamedContext>,
    /// A fresh pid namespace and `/proc` per step; off in pods whose `/proc` is masked.
    pub process_sandbox: bool,
    /// `--allow security.insecure`.
    pub allow_insecure: bool,
    pub runner: Runner,
    /// Where cache mounts live.
    pub cache_mounts: PathBuf,
    /// Caches that live on volumes of their own (`--cache-volume`), instead of `cache_mounts`.
    pub cache_volumes: Vec<crate::mounts::volumes::CacheVolume>,
    /// `--cache-mount-ns` / `BUILDKIT_CACHE_MOUNT_NS`.
    pub cache_mount_ns: String,
    /// `--secret`: where each secret id's value is read from when a step mounts it.
    pub secrets: HashMap<String, SecretSource>,
    /// `--ssh`: where each ssh id's keys come from.
    pub ssh: HashMap<String, crate::mounts::ssh::SshSource>,
    pub snapshotter: Snapshotter,
    /// Imported caches (`--cache-from`), searched in order on a local miss.
    pub cache_from: Vec<Arc<crate::cache::transfer::Imported>>,
    /// How base images are pulled from registries.
    pub registry: Arc<crate::registry::Registries>,
    /// A request to stop the build (a signal, `--timeout`): running steps are killed.
    pub interrupt: Interrupt,
    /// The credentials of `ADD <git-url>` sources.
    pub git_auth: crate::git::GitAuth,
    /// `--ssh-known-hosts`: known_hosts files by ssh id, for the steps that mount the id.
    pub ssh_known_hosts: HashMap<String, PathBuf>,
}

/// A stage's outcome, shared by the stages that wait for it.
struct Slot {
    state: Mutex<Option<Result<Arc<StageResult>, String>>>,
    ready: Condvar,
}

/// Runs one build (one platform of a multi-platform build).
pub struct Solver<'a> {
    frontend: &'a dyn Frontend,
    context: &'a Context,
    snapshots: Snapshots,
    opts: &'a Options,
    progress: &'a dyn Sink,
    slots: Vec<Slot>,
    shared: Arc<Shared>,
    /// Stages whose layers end up in the exported image: the target and its `FROM` ancestors.
    exported: HashSet<usize>,
    /// The steps of this build (stage, snapshot id), in order, for `--cache-to`.
    steps_done: Mutex<Vec<(usize, String)>>,
    /// Definition keys this build found a result under, by the result's id (COPY from a
    /// stage, found by content): exported with the result so that an import finds it the same way.
    aliases: Mutex<HashMap<String, Vec<String>>>,
    /// The images this solver used, by reference and platform (for provenance).
    used_images: Mutex<Vec<(String, String)>>,
    /// The URLs this solver downloaded (`ADD <url>`), in order (for provenance).
    used_downloads: Mutex<Vec<String>>,
    /// `ADD --checksum` URLs, by the checksum (known even when nothing is downloaded).
    pinned_urls: Mutex<Vec<(String, crate::digest::Digest)>>,
}

/// What a build did.
#[derive(Debug, Default)]
pub struct Stats {
    pub steps: AtomicUsize,
    pub cached: AtomicUsize,
    pub runs: AtomicUsize,
    /// Cached steps whose result came from an imported cache.
    pub imported: AtomicUsize,
}

impl<'a> Solver<'a> {
    /// A solver of its own (one platform, nothing shared with another solver).
    pub fn new(
        frontend: &'a dyn Frontend,
        context: &'a Context,
        store: &Store,
        opts: &'a Options,
        progress: &'a dyn Sink,
    ) -> Solver<'a> {
        let shared = Shared::new(store, context, false);
        Solver::with_shared(frontend, context, store, opts, progress, shared)
    }

    /// A solver that shares `shared` with the other platforms' solvers of the build.
    pub fn with_shared(
        frontend: &'a dyn Frontend,
        context: &'a Context,
        store: &Store,
        opts: &'a Options,
        progress: &'a dyn Sink,
        shared: Arc<Shared>,
    ) -> Solver<'a> {
        let mut exported = HashSet::new();
        let mut s = frontend.target();
        while exported.insert(s) {
            if let Base::Stage(parent) = frontend.base(s) {
                s = parent;
            }
        }
        Solver {
            frontend,
            context,
            snapshots: Snapshots::new(store.clone()),
            opts,
            progress,
            slots: (0..frontend.stage_count())
                .map(|_| Slot {
                    state: Mutex::new(None),
                    ready: Condvar::new(),
                })
                .collect(),
            shared,
            exported,
            steps_done: Mutex::new(Vec::new()),
            aliases: Mutex::new(HashMap::new()),
            used_images: Mutex::new(Vec::new()),
            used_downloads: Mutex::new(Vec::new()),
            pinned_urls: Mutex::new(Vec::new()),
        }
    }

    /// The URLs this solver's `ADD <url>` steps downloaded, with the digest of what came.
    pub fn downloads_used(&self) -> Vec<(String, crate::digest::Digest)> {
        let used = shared::lock(&self.used_downloads).clone();
        let downloads = shared::lock(&self.shared.downloads);
        let mut out: Vec<(String, crate::digest::Digest)> = used
            .into_iter()
            .filter_map(|url| {
                let d = downloads.get(&url)?.digest.clone();
                Some((url, d))
            })
            .collect();
        for (url, d) in shared::lock(&self.pinned_urls).iter() {
            if !out.iter().any(|(u, _)| u == url) {
                out.push((url.clone(), d.clone()));
            }
        }
        out
    }

    /// What this build did, counted over every platform.
    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    /// The platform this solver builds for.
    pub fn target_platform(&self) -> Platform {
        self.frontend.target_platform()
    }

    pub fn opts(&self) -> &Options {
        self.opts
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    /// Build every stage; return the target's result.
    pub fn solve(&self) -> Result<Arc<StageResult>, BuildError> {
        let n = self.frontend.stage_count();
        let target = self.frontend.target();
        let mut errors: Vec<(usize, BuildError)> = Vec::new();
        // Dropped when every stage has ended: the watcher below wakes at once instead of at its
        // next poll (a sleep there added up to 50 ms to every build, a no-op rebuild included).
        let (finished, watch) = crossbeam_channel::bounded::<()>(0);
        std::thread::scope(|scope| {
            // A stop from outside fails the build like a failed step: every step is killed. A
            // failure in another platform's solver stops this one too.
            scope.spawn(move || {
                while let Err(crossbeam_channel::RecvTimeoutError::Timeout) =
                    watch.recv_timeout(std::time::Duration::from_millis(50))
                {
                    if self.opts.interrupt.get().is_some() || self.shared.failed() {
                        self.fail();
                        return;
                    }
                }
            });
            let handles: Vec<_> = (0..n)
                .filter(|&i| self.frontend.needed(i))
                .map(|i| {
                    scope.spawn(move || {
                        let result = self.run_stage(i);
                        let slot = &self.slots[i];
                        let mut state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
                        *state = Some(match &result {
                            Ok(r) => Ok(r.clone()),
                            Err(e) => Err(e.to_string()),
                        });
                        slot.ready.notify_all();
                        drop(state);
                        if result.is_err() {
                            self.fail();
                        }
                        result.err()
                    })
                })
                .collect();
            for (i, h) in handles.into_iter().enumerate() {
                match h.join() {
                    Ok(Some(e)) => errors.push((i, e)),
                    Ok(None) => {}
                    Err(_) => errors.push((
                        i,
                        BuildError::Io(io::Error::other("a stage thread panicked")),
                    )),
                }
            }
            drop(finished);
        });
        self.shared.save_hashes();
        self.touch_used();
        // Report the first real failure, not the cancellations it caused; then a stop from
        // outside.
        if let Some(pos) = errors
            .iter()
            .position(|(_, e)| !matches!(e, BuildError::Cancelled))
        {
            return Err(errors.swap_remove(pos).1);
        }
        if let Some(stop) = self.opts.interrupt.get() {
            return Err(BuildError::Interrupted(stop));
        }
        if let Some((_, e)) = errors.pop() {
            return Err(e);
        }
        self.wait_stage(target)
    }

    /// Mark every layer this build used as used now, base image layers included: that is the
    /// last-used time `kiln du` shows and `kiln prune` goes by.
    fn touch_used(&self) {
        let mut ids: HashSet<String> = HashSet::new();
        for slot in &self.slots {
            if let Some(Ok(r)) = &*slot.state.lock().unwrap_or_else(|e| e.into_inner()) {
                ids.extend(r.layers.iter().cloned());
            }
        }
        for cell in shared::lock(&self.shared.images).values() {
            if let Some(Ok(image)) = cell.get() {
                ids.extend(image.layers.iter().cloned());
            }
        }
        for id in ids {
            self.snapshots.touch(&id);
        }
    }

    /// Stop everything: the first failure cancels the other stages (of every platform) and
    /// kills running steps.
    fn fail(&self) {
        self.shared.fail();
        for slot in &self.slots {
            slot.ready.notify_all();
        }
    }

    /// Whether the build has failed or was stopped: what the failure of one step makes of
    /// every other.
    fn failed(&self) -> bool {
        self.shared.failed()
    }

    fn check(&self) -> Result<(), BuildError> {
        if self.failed() {
            Err(BuildError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Wait for a stage's result.
    fn wait_stage(&self, i: usize) -> Result<Arc<StageResult>, BuildError> {
        if i >= self.slots.len() || !self.frontend.needed(i) {
            return Err(BuildError::Io(io::Error::other(format!(
                "stage {i} is not part of this build"
            ))));
        }
        let slot = &self.slots[i];
        let mut state = slot.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(r) = &*state {
                return r.clone().map_err(|_| BuildError::Cancelled);
            }
            if self.failed() {
                return Err(BuildError::Cancelled);
            }
            // Another platform's failure wakes nobody here: look again now and then.
            state = slot
                .ready
                .wait_timeout(state, std::time::Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// A fresh progress vertex id (also for work done after the solve, such as a push).
    pub fn next_vertex(&self) -> usize {
        self.shared.next_vertex()
    }

    fn event(&self, e: Event) {
        self.progress.event(e);
    }

    fn tar_options(&self) -> TarOptions {
        TarOptions {
            source_date_epoch: self.opts.source_date_epoch,
        }
    }

    /// Start compressing a snapshot's layer in the background.
    fn start_layer(&self, id: &str) {
        let mut jobs = shared::lock(&self.shared.layer_jobs);
        if jobs.contains_key(id) {
            return;
        }
        let snapshots = self.snapshots.clone();
        let (id_owned, compression, tar) =
            (id.to_string(), self.opts.compression, self.tar_options());
        jobs.insert(
            id.to_string(),
            std::thread::spawn(move || snapshots.layer(&id_owned, compression, &tar)),
        );
    }

    /// The layer blob of a snapshot: imported layers as they came, others compressed now or by
    /// the background job started at commit.
    pub fn layer(&self, id: &str) -> io::Result<LayerBlob> {
        if let Some(blob) = self.snapshots.get(id).and_then(|m| m.blob) {
            return Ok(blob);
        }
        if let Some(blob) = self.remote_blob(id) {
            return Ok(blob);
        }
        let job = shared::lock(&self.shared.layer_jobs).remove(id);
        match job {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("layer compression panicked"))),
            None => self
                .snapshots
                .layer(id, self.opts.compression, &self.tar_options()),
        }
    }

    /// The snapshot ids of the steps a `--cache-to` carries: those of the result's image
    /// (`min`), or every step of the build (`max`).
    pub fn cache_ids(
        &self,
        result: &StageResult,
        mode: crate::cache::transfer::Mode,
    ) -> Vec<String> {
        let done = self.steps_done.lock().unwrap_or_else(|e| e.into_inner());
        match mode {
            crate::cache::transfer::Mode::Max => done.iter().map(|(_, id)| id.clone()).collect(),
            crate::cache::transfer::Mode::Min => {
                let ids: HashSet<&String> = done.iter().map(|(_, id)| id).collect();
                result
                    .layers
                    .iter()
                    .filter(|id| ids.contains(id))
                    .cloned()
                    .collect()
            }
        }
    }

    /// The definition keys that lead to a result, besides its own id.
    pub fn aliases_of(&self, id: &str) -> Vec<String> {
        self.aliases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .unwrap_or_default()
    }

    /// The layer blobs of a result, in order.
    pub fn layers(&self, result: &StageResult) -> io::Result<Vec<LayerBlob>> {
        result.layers.iter().map(|id| self.layer(id)).collect()
    }
}
