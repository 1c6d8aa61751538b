//! One stage: its base, then each step, from the cache or executed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::{BuildError, Solver, StepError, StepFailure, key};
use crate::copy;
use crate::digest::Digest;
use crate::image::config::{DEFAULT_PATH, ImageConfig};
use crate::image::oci::{History, Image, Platform, now, rfc3339};
use crate::plan::step::{Base, Input, Location, Mount, Op, Step};
use crate::progress::Event;
use crate::snapshot::layer::{Pending, SnapshotMeta};
use crate::snapshot::view::View;

/// A filesystem as a chain of snapshots, with its image config: what a base image and a built
/// stage both are.
#[derive(Debug, Clone)]
pub struct ImageState {
    /// The key of the final filesystem.
    pub key: Digest,
    /// Snapshot ids of the non-empty layers, topmost first: the overlay lower layers.
    pub chain: Vec<String>,
    /// Snapshot ids of the image's layers, bottom first, one per non-empty history entry.
    pub layers: Vec<String>,
    /// Config and history; `rootfs.diff_ids` is filled at export.
    pub image: Image,
}

impl ImageState {
    /// The filesystem, read without mounting.
    pub fn view(&self, solver: &Solver<'_>) -> View {
        View::new(
            self.chain
                .iter()
                .map(|id| solver.snapshots.fs(id))
                .collect(),
        )
    }
}

/// The filesystem and image a stage produced, and the stage's name in progress.
#[derive(Debug, Clone)]
pub struct StageResult {
    pub label: String,
    pub state: ImageState,
}

impl std::ops::Deref for StageResult {
    type Target = ImageState;
    fn deref(&self) -> &ImageState {
        &self.state
    }
}

/// The state a stage carries from step to step.
pub(super) struct State {
    pub stage: usize,
    pub key: Digest,
    pub chain: Vec<String>,
    pub layers: Vec<String>,
    pub image: Image,
}

impl State {
    pub fn lowers(&self, solver: &Solver<'_>) -> Vec<PathBuf> {
        self.chain
            .iter()
            .map(|id| solver.snapshots.fs(id))
            .collect()
    }
}

/// The config BuildKit gives `FROM scratch`: the default `PATH` and `/` as working directory.
pub fn scratch_config() -> ImageConfig {
    ImageConfig {
        env: vec![format!("PATH={DEFAULT_PATH}")],
        working_dir: "/".into(),
        ..Default::default()
    }
}

fn location_text(l: &Location) -> String {
    format!("{}:{}", l.file, l.line)
}

impl Solver<'_> {
    pub(super) fn run_stage(&self, i: usize) -> Result<Arc<StageResult>, BuildError> {
        self.check()?;
        let label = self.frontend.label(i);
        // A named context with the stage's name replaces the whole stage (BuildKit's
        // `--build-context NAME=...` overriding `FROM ... AS NAME`).
        if let Some(name) = self.frontend.name(i)
            && self.named(&name).is_some()
        {
            let base = self.image(&name, &self.frontend.platform(i))?;
            return Ok(Arc::new(StageResult {
                label,
                state: base.state.clone(),
            }));
        }
        let platform = self.frontend.platform(i);
        let mut state = match self.frontend.base(i) {
            Base::Scratch => State {
                stage: i,
                key: key::scratch(&platform),
                chain: vec![],
                layers: vec![],
                image: Image {
                    config: scratch_config(),
                    ..Image::scratch(&platform)
                },
            },
            Base::Stage(j) => {
                let parent = self.wait_stage(j)?;
                State {
                    stage: i,
                    key: parent.key.clone(),
                    chain: parent.chain.clone(),
                    layers: parent.layers.clone(),
                    image: parent.image.clone(),
                }
            }
            Base::Image(reference) => {
                let base = self.image(&reference, &self.frontend.platform(i))?;
                let mut image = base.image.clone();
                // BuildKit gives a base without PATH the default one.
                if image.config.env_get("PATH").is_none() {
                    image.config.env.insert(0, format!("PATH={DEFAULT_PATH}"));
                }
                State {
                    stage: i,
                    key: base.key.clone(),
                    chain: base.chain.clone(),
                    layers: base.layers.clone(),
                    image,
                }
            }
        };
        let lowered = self
            .frontend
            .lower(i, &state.image.config)
            .map_err(BuildError::Frontend)?;
        let total = lowered
            .steps
            .iter()
            .filter(|s| !matches!(s.op, Op::Config))
            .count()
            + 1;
        let from = match self.frontend.base(i) {
            Base::Image(r) => r,
            Base::Scratch => "scratch".to_string(),
            Base::Stage(j) => self.frontend.label(j),
        };
        // A stage two platforms share shows its FROM line once.
        let name = format!(
            "[{}{label} 1/{total}] FROM {from}",
            self.platform_prefix(i, None)
        );
        if self.shared.first_showing(&name) {
            let vertex = self.next_vertex();
            self.event(Event::Start { id: vertex, name });
            self.event(Event::Done {
                id: vertex,
                seconds: 0.0,
            });
        }
        let mut position = 1;
        for step in &lowered.steps {
            self.check()?;
            let created = self
                .opts
                .source_date_epoch
                .map_or_else(now, |e| rfc3339(e, 0));
            let empty_layer = matches!(step.op, Op::Config);
            if !empty_layer {
                position += 1;
                let name = format!(
                    "[{}{label} {position}/{total}] {}",
                    self.platform_prefix(i, Some(step)),
                    step.display
                );
                self.step(&mut state, step, name)?;
            }
            state.image.history.push(History {
                created: Some(created),
                created_by: Some(step.created_by.clone()),
                author: None,
                comment: Some("buildkit.dockerfile.v0".into()),
                empty_layer,
            });
        }
        state.image.config = lowered.config;
        if !lowered.author.is_empty() {
            state.image.author = Some(lowered.author);
        }
        Ok(Arc::new(StageResult {
            label,
            state: ImageState {
                key: state.key,
                chain: state.chain,
                layers: state.layers,
                image: state.image,
            },
        }))
    }

    /// Run (or find in the cache) one filesystem step and put its snapshot on the stage.
    fn step(&self, state: &mut State, step: &Step, name: String) -> Result<(), BuildError> {
        // What the step reads from elsewhere is resolved first: that may wait for another stage,
        // and the step only shows as started once it can run.
        let inputs = match &step.op {
            Op::Run(run) => self
                .wait_cache_seeds(run)
                .and_then(|()| self.run_inputs(run))
                .map(|i| ("run", i, false)),
            Op::Copy(c) => self.copy_inputs(c).map(|i| ("copy", i, c.link)),
            Op::Workdir { .. } => Ok(("workdir", vec![], false)),
            Op::Config => unreachable!("config steps make no snapshot"),
        };
        // The key of the step's definition. Another platform's solver with the same step has
        // the same key: whichever takes its lock first does the step, and the other takes the
        // result, with no vertex of its own. Everything the step waits for (other stages) was
        // waited for above, so a solver never waits for another while holding a step's lock.
        let def = inputs.as_ref().ok().map(|(kind, inputs, link)| {
            let parent = if *link { None } else { Some(&state.key) };
            key::step(parent, kind, &step.op, inputs)
        });
        let lock = def.as_ref().map(|d| self.shared.step_lock(d.hex()));
        let _held = lock.as_deref().map(super::shared::lock);
        if let (Some(def), Ok((_, _, link))) = (&def, &inputs)
            && let Some(done) = self.shared.done(def.hex())
        {
            self.snapshots.touch(&done.id);
            if self.exported.contains(&state.stage) && !self.is_remote(&done.id) {
                self.start_layer(&done.id);
            }
            super::shared::lock(&self.steps_done).push((state.stage, done.id.clone()));
            self.put(state, done.id, done.key, *link);
            return Ok(());
        }
        let vertex = self.next_vertex();
        self.event(Event::Start { id: vertex, name });
        let started = Instant::now();
        let fail = |failure: StepFailure, tail: Vec<String>| {
            self.event(Event::Error {
                id: vertex,
                message: failure.to_string(),
            });
            BuildError::Step(Box::new(StepError {
                location: location_text(&step.location),
                file: step.location.file.clone(),
                line: step.location.line,
                instruction: step.display.clone(),
                failure,
                tail,
            }))
        };
        let (_, inputs, link) = inputs.map_err(|e| {
            if self.failed() {
                BuildError::Cancelled
            } else {
                fail(e, vec![])
            }
        })?;
        let parent = if link { None } else { Some(&state.key) };
        let def = def.expect("the inputs are there");
        let mut step_key = def.clone();
        let no_cache = self.opts.no_cache || self.opts.no_cache_stages.contains(&state.stage);
        // A step that reads another stage (COPY --from, RUN --mount=type=bind,from=) is found
        // by its definition, else by the content it reads (as BuildKit's content checksums
        // do): a stage rebuilt into the same files keeps the hit, and so does everything
        // after the step. The definition key becomes an alias of the content key.
        let mut alias = None;
        if !no_cache && reads_a_stage(&step.op) {
            if let Some(found) = self.alias(def.hex()) {
                step_key = found;
            } else if self.snapshots.get(def.hex()).is_none() {
                match self.imported(def.hex()) {
                    Some(remote) => step_key = Digest::from_hex(Self::imported_id(&remote)),
                    None => {
                        let content = self.content_inputs(&step.op, &inputs).map_err(|e| {
                            if self.failed() {
                                BuildError::Cancelled
                            } else {
                                fail(e, vec![])
                            }
                        })?;
                        step_key = key::step(parent, "content", &step.op, &content);
                    }
                }
            }
            if step_key != def {
                alias = Some(def.clone());
            }
        }
        let local = self.snapshots.get(step_key.hex()).is_some();
        let imported = if local || no_cache {
            None
        } else {
            self.imported(step_key.hex())
        };
        let known = local || imported.is_some();
        // Without the cache the step runs anyway; its result is recorded under the key when
        // there is none yet, else beside it, so that a result in use is never replaced.
        let beside = || {
            format!(
                "{}-{}-{}",
                step_key.hex(),
                std::process::id(),
                self.next_vertex()
            )
        };
        let mut id = if no_cache && known {
            beside()
        } else {
            step_key.hex().to_string()
        };
        self.shared
            .stats
            .steps
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let cached = !no_cache && known;
        tracing::debug!(
            stage = state.stage,
            step = %step.display,
            key = %step_key.hex(),
            local,
            imported = imported.is_some(),
            no_cache,
            "{}",
            if cached { "cache hit" } else { "cache miss" }
        );
        if let Some(remote) = imported {
            self.use_imported(&id, remote)?;
        }
        if cached {
            self.shared
                .stats
                .cached
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.event(Event::Cached { id: vertex });
        } else {
            // The step runs on its parent's filesystem: that must be local now.
            self.materialise(&state.chain)?;
            let pending = self.snapshots.begin()?;
            let result = match &step.op {
                Op::Run(run) => self.execute_run(state, run, &pending, vertex),
                Op::Copy(c) => self
                    .execute_copy(state, c, &pending)
                    .map_err(|e| (e, vec![])),
                Op::Workdir { path, user } => self
                    .execute_workdir(state, path, user, &pending)
                    .map_err(|e| (e, vec![])),
                Op::Config => unreachable!(),
            };
            if let Err((message, tail)) = result {
                return Err(if self.failed() {
                    BuildError::Cancelled
                } else {
                    fail(message, tail)
                });
            }
            let meta = SnapshotMeta {
                parent: state.chain.first().cloned(),
                diff_id: None,
                empty: false,
                blob: None,
            };
            if let Err(pending) = self.snapshots.try_commit(pending, &id, meta.clone())? {
                // Another build committed this key while the step ran. A cacheable result is
                // the same as ours; a rerun forced by --no-cache must keep what it made.
                if no_cache {
                    id = beside();
                    self.snapshots.commit(pending, &id, meta)?;
                }
            }
            self.event(Event::Done {
                id: vertex,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        self.snapshots.touch(&id);
        if self.exported.contains(&state.stage) && !self.is_remote(&id) {
            self.start_layer(&id);
        }
        if id == step_key.hex() {
            super::shared::lock(&self.steps_done).push((state.stage, id.clone()));
            if let Some(def) = &alias {
                self.set_alias(def.hex(), &id);
            }
        }
        // A result made beside the cached one may differ from it: what follows must not be
        // answered from the cache as if it were the same.
        let step_key = if id == step_key.hex() {
            step_key
        } else {
            key::step(Some(&step_key), "rerun", &id, &[])
        };
        self.shared.set_done(
            def.hex(),
            super::shared::Done {
                id: id.clone(),
                key: step_key.clone(),
            },
        );
        self.put(state, id, step_key, link);
        Ok(())
    }

    /// Put a step's result (snapshot `id`, known by `step_key`) on the stage.
    fn put(&self, state: &mut State, id: String, step_key: Digest, link: bool) {
        if !self.is_empty(&id) {
            state.chain.insert(0, id.clone());
        }
        // BuildKit gives every RUN, COPY, ADD and WORKDIR a layer, empty or not.
        state.layers.push(id);
        state.key = if link {
            key::rebase(&state.key, &step_key)
        } else {
            step_key
        };
    }

    /// Wait for the stages a RUN step's cache mounts are seeded from (`from=<stage>`): done
    /// before the step's lock is taken, like every other wait for a stage.
    fn wait_cache_seeds(&self, run: &crate::plan::step::Run) -> Result<(), StepFailure> {
        for m in &run.mounts {
            if let Mount::Cache {
                from: Some(Input::Stage(j)),
                ..
            } = m
            {
                self.wait_stage(*j)?;
            }
        }
        Ok(())
    }

    /// How a multi-platform build's progress names the platform of a stage's vertices, as
    /// BuildKit does: `linux/arm64 ` before the stage's name, and for a step that sees another
    /// platform in its `TARGET*` arguments, that one after an arrow (`[linux/amd64->arm64 build
    /// 3/4] RUN go build`). Kiln reads the arguments from a RUN step's environment, the only
    /// step that carries one. Empty in a single-platform build.
    fn platform_prefix(&self, stage: usize, step: Option<&Step>) -> String {
        if !self.shared.multi_platform {
            return String::new();
        }
        let base = self.frontend.platform(stage);
        let cross = step
            .map(|s| self.cross_target(&base, s))
            .unwrap_or_default();
        format!("{base}{cross} ")
    }

    fn cross_target(&self, base: &Platform, step: &Step) -> String {
        let Op::Run(run) = &step.op else {
            return String::new();
        };
        let get = |k: &str| {
            run.env
                .iter()
                .find_map(|e| e.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .map(str::to_string)
        };
        let target = match get("TARGETPLATFORM") {
            Some(p) => match crate::plan::Platform::parse(&p) {
                Ok(p) => Platform::from(&p),
                Err(_) => return String::new(),
            },
            None => {
                let (os, arch, variant) =
                    (get("TARGETOS"), get("TARGETARCH"), get("TARGETVARIANT"));
                if os.is_none() && arch.is_none() && variant.is_none() {
                    return String::new();
                }
                Platform {
                    os: os
                        .filter(|o| !o.is_empty())
                        .unwrap_or_else(|| base.os.clone()),
                    architecture: arch
                        .filter(|a| !a.is_empty())
                        .unwrap_or_else(|| base.architecture.clone()),
                    os_version: None,
                    variant: variant.filter(|v| !v.is_empty()),
                }
            }
        };
        if target.os != base.os {
            format!("->{target}")
        } else if target.architecture != base.architecture {
            match &target.variant {
                Some(v) => format!("->{}/{v}", target.architecture),
                None => format!("->{}", target.architecture),
            }
        } else {
            String::new()
        }
    }

    /// The inputs of a step that reads other stages, with each stage's key replaced by the
    /// digest of what the step reads from it.
    fn content_inputs(&self, op: &Op, inputs: &[Digest]) -> Result<Vec<Digest>, StepFailure> {
        match op {
            Op::Copy(c) => {
                let Input::Stage(j) = c.from else {
                    return Ok(inputs.to_vec());
                };
                let content = self.stage_checksum(j, &format!("copy {:?}", c.sources), |view| {
                    Ok(copy::digest_view_sources(view, c)?)
                })?;
                // The stage's key comes first; URL digests and the rest stay.
                let mut out = vec![content];
                out.extend(inputs.iter().skip(1).cloned());
                Ok(out)
            }
            Op::Run(run) => self.run_inputs_by(run, true),
            _ => Ok(inputs.to_vec()),
        }
    }

    /// The result a definition key is an alias of, if that result is in the store.
    fn alias(&self, def: &str) -> Option<Digest> {
        let path = self.snapshots.store().root().join("aliases").join(def);
        let id = std::fs::read_link(path).ok()?;
        let id = id.to_str()?;
        self.snapshots.get(id).map(|_| Digest::from_hex(id))
    }

    /// Remember that `def` finds the result `id` (a symlink, replaced atomically), for later
    /// builds and for cache exports.
    fn set_alias(&self, def: &str, id: &str) {
        self.aliases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id.to_string())
            .or_default()
            .push(def.to_string());
        let dir = self.snapshots.store().root().join("aliases");
        let tmp = self.snapshots.store().temp_path("alias");
        let _ = std::fs::create_dir_all(&dir);
        if std::os::unix::fs::symlink(id, &tmp).is_ok()
            && std::fs::rename(&tmp, dir.join(def)).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    pub(super) fn input_key(&self, input: &Input) -> Result<Digest, StepFailure> {
        Ok(match input {
            Input::Context => Digest::of(b"context"),
            Input::Stage(j) => self.wait_stage(*j)?.key.clone(),
            Input::Image(reference) => self
                .image(reference, &self.frontend.target_platform())?
                .key
                .clone(),
        })
    }

    /// WORKDIR: create every missing component, owned by the current user (BuildKit).
    fn execute_workdir(
        &self,
        state: &State,
        path: &str,
        user: &str,
        pending: &Pending,
    ) -> Result<(), StepFailure> {
        let view = View::new(state.lowers(self));
        let passwd =
            String::from_utf8_lossy(&view.read(Path::new("etc/passwd")).unwrap_or_default())
                .into_owned();
        let group = String::from_utf8_lossy(&view.read(Path::new("etc/group")).unwrap_or_default())
            .into_owned();
        let owner = if user.is_empty() {
            (0, 0)
        } else {
            let u = crate::userdb::exec_user(user, &passwd, &group)
                .map_err(|e| StepFailure::Other(e.to_string()))?;
            (u.uid, u.gid)
        };
        let upper = pending.fs();
        let mut overlay = vec![upper.clone()];
        overlay.extend(view.layers().iter().cloned());
        let merged = View::new(overlay);
        let resolved = merged.resolve(Path::new(path.trim_start_matches('/')), true)?;
        let mut rel = PathBuf::new();
        for comp in resolved.components() {
            let parent_rel = rel.clone();
            rel.push(comp);
            if merged.lstat(&rel).is_some_and(|f| f.meta.is_dir()) {
                continue;
            }
            // The parent is copied up, keeping its metadata, before the new directory appears.
            copy_up_dirs(&view, &upper, &parent_rel)?;
            let dir = upper.join(&rel);
            std::fs::create_dir(&dir)?;
            std::os::unix::fs::lchown(&dir, Some(owner.0), Some(owner.1))?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        }
        Ok(())
    }
}

/// Copy the directories of `rel` (all of its components) up from `base` into `upper`, with their
/// owners, modes and times, as overlayfs does before it changes a directory.
pub(super) fn copy_up_dirs(base: &View, upper: &Path, rel: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut path = PathBuf::new();
    for comp in rel.components() {
        path.push(comp);
        let dest = upper.join(&path);
        if dest.symlink_metadata().is_ok() {
            continue;
        }
        std::fs::create_dir(&dest)?;
        if let Some(found) = base.lstat(&path) {
            let m = found.meta;
            std::os::unix::fs::lchown(&dest, Some(m.uid()), Some(m.gid()))?;
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(m.mode() & 0o7777))?;
            crate::snapshot::extract::set_mtime(&dest, m.mtime())?;
        }
    }
    Ok(())
}

/// Whether a step reads the filesystem of another stage.
fn reads_a_stage(op: &Op) -> bool {
    match op {
        Op::Copy(c) => matches!(c.from, Input::Stage(_)),
        Op::Run(run) => run.mounts.iter().any(|m| {
            matches!(
                m,
                Mount::Bind {
                    from: Input::Stage(_),
                    ..
                }
            )
        }),
        _ => false,
    }
}
