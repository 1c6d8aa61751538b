//! The `RUN --mount=type=bind|cache|tmpfs|secret|ssh` of a step as sandbox mounts: a bind's
//! source resolved inside its context or stage, a cache volume locked and seeded, a secret read
//! from where `--secret` said, an ssh agent socket.

use std::path::{Path, PathBuf};

use super::{Solver, StepFailure};
use crate::mounts::cache::{CacheKey, CacheMounts};
use crate::plan::step::{Input, Mount};
use crate::progress::Event;
use crate::sandbox::spec::{self, MountKind, Overlay};
use crate::snapshot::view::View;
impl Solver<'_> {
    /// A secret's content, from where `--secret` said; `None` when it was not given.
    pub(super) fn secret(&self, id: &str) -> Result<Option<Vec<u8>>, StepFailure> {
        match self.opts.secrets.get(id) {
            None => Ok(None),
            Some(super::SecretSource::File(path)) => {
                std::fs::read(path)
                    .map(Some)
                    .map_err(|source| StepFailure::SecretFile {
                        id: id.to_string(),
                        path: path.clone(),
                        source,
                    })
            }
            Some(super::SecretSource::Env(var)) => match std::env::var_os(var) {
                Some(v) => Ok(Some(v.into_encoded_bytes())),
                None => Err(StepFailure::SecretEnv {
                    id: id.to_string(),
                    var: var.clone(),
                }),
            },
        }
    }

    /// Fill a new cache instance from `source` in a stage, an image or the context (`from=`).
    pub(super) fn seed_cache(
        &self,
        from: &Input,
        source: &str,
        dir: &Path,
    ) -> Result<(), StepFailure> {
        let view;
        let src = match from {
            Input::Context => crate::copy::Source::Context(self.context),
            Input::Stage(j) => {
                view = self.stage_view(*j)?;
                crate::copy::Source::View(&view)
            }
            Input::Image(r) => {
                view = self.image(r, &self.frontend.target_platform())?.view(self);
                crate::copy::Source::View(&view)
            }
        };
        crate::copy::copy_tree(src, source, dir)
            .map_err(|e| StepFailure::Other(format!("seeding the cache from {source}: {e}")))
    }

    /// An empty directory, the lower layer of a step on an empty filesystem.
    pub(super) fn empty_dir(&self) -> std::io::Result<PathBuf> {
        let dir = self.snapshots.store().root().join("empty");
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }

    /// The sandbox mount for one `RUN --mount`; `None` when it is skipped (an optional secret or
    /// ssh key that was not given). What must live as long as the step (a cache lock, an ssh
    /// agent) goes into `guards`.
    pub(super) fn step_mount(
        &self,
        m: &Mount,
        scratch: &Path,
        n: usize,
        vertex: usize,
        guards: &mut Vec<Box<dyn std::any::Any>>,
    ) -> Result<Option<spec::Mount>, StepFailure> {
        Ok(Some(match m {
            Mount::Bind {
                target,
                from,
                source,
                readwrite,
            } => {
                let (layers, file) = match from {
                    Input::Context => {
                        let not_found = || {
                            StepFailure::Other(format!(
                                "bind mount source \"{source}\" not found in the build context"
                            ))
                        };
                        let rel = self
                            .context
                            .resolve(source.trim_start_matches('/'), true)
                            .map_err(|_| not_found())?;
                        let root = View::new(vec![self.context.root().to_path_buf()]);
                        let found = root.lstat(Path::new(&rel)).ok_or_else(not_found)?;
                        let mask = scratch.join(format!("bind-{n}-mask"));
                        if found.meta.is_dir()
                            && self.context.has_ignores()
                            && self.context.mask_ignored(&rel, &mask).map_err(|source| {
                                StepFailure::Io {
                                    what: "hiding ignored files from a bind mount",
                                    source,
                                }
                            })?
                        {
                            // `.dockerignore` hides files from the whole build: a layer of
                            // whiteouts over the directory hides them from the step too.
                            (vec![mask, found.real], None)
                        } else if found.meta.is_dir() && self.context.has_ignores() {
                            // `!patterns` bring paths back inside excluded directories, which
                            // whiteouts cannot say: the step sees a copy without the rest.
                            let copy = scratch.join(format!("bind-{n}-context"));
                            std::fs::create_dir_all(&copy)?;
                            crate::copy::copy_tree(
                                crate::copy::Source::Context(self.context),
                                &rel,
                                &copy,
                            )?;
                            (vec![copy], None)
                        } else if found.meta.is_dir() {
                            (vec![found.real], None)
                        } else {
                            (vec![], Some(found.real))
                        }
                    }
                    Input::Stage(_) | Input::Image(_) => {
                        let view = match from {
                            Input::Stage(j) => self.stage_view(*j)?,
                            Input::Image(r) => {
                                self.image(r, &self.frontend.target_platform())?.view(self)
                            }
                            Input::Context => unreachable!(),
                        };
                        let rel = view
                            .resolve(Path::new(source.trim_start_matches('/')), true)
                            .map_err(|e| StepFailure::Other(e.to_string()))?;
                        let found = view.lstat(&rel).ok_or_else(|| {
                            StepFailure::Other(format!("bind mount source \"{source}\" not found"))
                        })?;
                        if found.meta.is_dir() {
                            (view.dir_layers(&rel).unwrap_or_default(), None)
                        } else {
                            (vec![], Some(found.real))
                        }
                    }
                };
                let kind = if let Some(file) = file {
                    if *readwrite {
                        // Writes to an `rw` bind are discarded: give the step a copy.
                        let copy = scratch.join(format!("bind-{n}"));
                        std::fs::copy(&file, &copy)?;
                        MountKind::Bind { source: copy }
                    } else {
                        MountKind::Bind { source: file }
                    }
                } else {
                    let mut lowers = layers;
                    // A second, empty lower makes overlayfs hide whiteouts even when only one
                    // layer contributes.
                    lowers.push(self.empty_dir()?);
                    let (upper, work) = if *readwrite {
                        let (u, w) = (
                            scratch.join(format!("bind-{n}-upper")),
                            scratch.join(format!("bind-{n}-work")),
                        );
                        std::fs::create_dir_all(&u)?;
                        std::fs::create_dir_all(&w)?;
                        (Some(u), Some(w))
                    } else {
                        (None, None)
                    };
                    if self.opts.snapshotter == super::Snapshotter::Copy {
                        // No overlayfs: the step gets a copy, so writes are discarded with it.
                        let dir = scratch.join(format!("bind-{n}-copy"));
                        std::fs::create_dir_all(&dir)?;
                        let layers: Vec<_> = lowers
                            .into_iter()
                            .filter(|l| !l.ends_with("empty"))
                            .collect();
                        crate::snapshot::fallback::materialize(&View::new(layers), &dir)?;
                        MountKind::Bind { source: dir }
                    } else {
                        MountKind::Overlay(Overlay {
                            lowers,
                            upper,
                            work,
                            userxattr: crate::userns::in_user_namespace(),
                        })
                    }
                };
                spec::Mount {
                    target: target.clone(),
                    kind,
                    readonly: !*readwrite,
                }
            }
            Mount::Cache {
                id,
                target,
                readonly,
                sharing,
                from,
                source,
                mode,
                uid,
                gid,
            } => {
                let seed = match from {
                    Some(input) => Some(format!("{}:{source}", self.input_key(input)?)),
                    None => None,
                };
                let key = CacheKey {
                    namespace: self.opts.cache_mount_ns.clone(),
                    id: id.clone(),
                    uid: *uid,
                    gid: *gid,
                    mode: *mode,
                    seed,
                };
                let seed_from = |dir: &Path| -> std::io::Result<()> {
                    match from {
                        Some(input) => self
                            .seed_cache(input, source, dir)
                            .map_err(std::io::Error::other),
                        None => Ok(()),
                    }
                };
                let waiting = || {
                    self.event(Event::Output {
                        id: vertex,
                        stream: "stderr",
                        data: format!("waiting for the cache mount {id} (sharing={sharing:?}), which another step holds\n").to_lowercase(),
                    })
                };
                let cancelled = || self.failed();
                let root = crate::mounts::volumes::root_for(
                    &self.opts.cache_volumes,
                    &self.opts.cache_mounts,
                    &crate::mounts::volumes::Identity {
                        id,
                        uid: *uid,
                        gid: *gid,
                        mode: *mode,
                        from: from.as_ref(),
                        source,
                    },
                );
                let lease = CacheMounts::new(root)
                    .acquire(&key, *sharing, &seed_from, &waiting, &cancelled)
                    .map_err(|source| StepFailure::CacheMount {
                        id: id.clone(),
                        source,
                    })?;
                let dir = lease.dir.clone();
                guards.push(Box::new(lease));
                spec::Mount {
                    target: target.clone(),
                    kind: MountKind::Bind { source: dir },
                    readonly: *readonly,
                }
            }
            Mount::Tmpfs { target, size } => spec::Mount {
                target: target.clone(),
                kind: MountKind::Tmpfs {
                    size: *size,
                    mode: 0o1777,
                },
                readonly: false,
            },
            Mount::Secret { .. } => return Ok(None),
            Mount::Ssh {
                id,
                target,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(source) = self.opts.ssh.get(id) else {
                    if *required {
                        return Err(StepFailure::MissingSsh { id: id.clone() });
                    }
                    return Ok(None);
                };
                let agent = crate::mounts::ssh::serve(
                    source,
                    &scratch.join(format!("ssh-{n}")),
                    *mode,
                    *uid,
                    *gid,
                )?;
                let socket = agent.path().to_path_buf();
                guards.push(Box::new(agent));
                spec::Mount {
                    target: target.clone(),
                    kind: MountKind::Bind { source: socket },
                    readonly: false,
                }
            }
        }))
    }
}
