//! `kiln build`: from a context and a Dockerfile to an image on disk.
//!
//! This is the library side of the command: the CLI parses flags into a [`Request`], this
//! module reads the context, plans the Dockerfile, solves it and writes the outputs.

mod attest;
mod caches;
mod error;
mod load;
mod output;
mod platforms;
mod report;

use caches::*;
pub use error::{Error, MissingRequired};
pub use load::{load, load_with};
pub(crate) use platforms::Built;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use crate::cache::transfer::{self, CacheRecord, CacheSpec, Imported};
use crate::context::Context;
use crate::export::{self, ImageOptions};
use crate::image::layout::Export;
use crate::image::oci::Platform;
use crate::mounts::ssh::SshSource;
use crate::plan::{self, Plan, PlanOptions};
use crate::progress::{Event, Sink};
use crate::registry::{Registries, RegistryOptions};
use crate::sandbox::run::Runner;
use crate::snapshot::compress::Compression;
use crate::solve::{
    BuildError, Interrupt, NamedContext, Options, SecretSource, Shared, Snapshotter, Solver,
    StepError,
};
use crate::store::Store;

/// Where the context comes from.
#[derive(Debug, Clone)]
pub enum ContextSource {
    Dir(PathBuf),
    /// A tarball, possibly compressed; `-` is standard input.
    Tar(PathBuf),
    /// A Git repository, at a ref and in a subdirectory (`context::remote`).
    Git(crate::git::GitRef),
    /// A tarball (or a Dockerfile) downloaded from a URL; `sha256` must match it when given.
    Url {
        url: String,
        sha256: Option<String>,
    },
}

/// An output of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// An OCI image layout: a directory, or a tarball (`-` for standard output).
    Oci { dest: PathBuf, tar: bool },
    /// A docker-archive tarball for `docker load` / `podman load`.
    Docker { dest: PathBuf },
    /// The final filesystem, as a directory.
    Local { dest: PathBuf },
    /// An image in a registry: `type=image,name=REF[,push=true]` (or `type=registry`, which
    /// implies `push=true`). With no `name`, the `-t` tags are used. Kiln has no local image
    /// store, so an image output that does not push is refused before the build starts.
    Image { names: Vec<String>, push: bool },
}

impl Output {
    /// Parse `--output type=oci,dest=DIR|FILE.tar` and friends.
    pub fn parse(text: &str) -> Result<Output, String> {
        let mut kind = None;
        let mut dest = None;
        let mut tar = None;
        let mut names = vec![];
        let mut push = None;
        for part in text.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("--output {text:?}: expected key=value, got {part:?}"))?;
            match k {
                "type" => kind = Some(v.to_string()),
                "dest" => dest = Some(PathBuf::from(v)),
                "tar" => tar = Some(v == "true"),
                "name" => names.push(v.to_string()),
                "push" => push = Some(v == "true"),
                other => return Err(format!("--output: unknown option {other:?}")),
            }
        }
        match kind.as_deref() {
            Some("image") => {
                return Ok(Output::Image {
                    names,
                    push: push.unwrap_or(false),
                });
            }
            Some("registry") => {
                return Ok(Output::Image {
                    names,
                    push: push.unwrap_or(true),
                });
            }
            _ if !names.is_empty() || push.is_some() => {
                return Err(format!(
                    "--output {text:?}: name= and push= belong to type=image"
                ));
            }
            _ => {}
        }
        let dest = dest.ok_or_else(|| format!("--output {text:?}: dest= is required"))?;
        match kind.as_deref() {
            Some("oci") => {
                let is_tar = tar.unwrap_or_else(|| {
                    dest.as_os_str() == "-" || dest.extension().is_some_and(|e| e == "tar")
                });
                Ok(Output::Oci { dest, tar: is_tar })
            }
            Some("docker") => Ok(Output::Docker { dest }),
            Some("local") => Ok(Output::Local { dest }),
            Some(other) => Err(format!(
                "--output: unknown type {other:?}; use oci, docker, local, image or registry"
            )),
            None => Err(format!("--output {text:?}: type= is required")),
        }
    }
}

/// Everything a build needs.
#[derive(Debug, Clone)]
pub struct Request {
    pub context: ContextSource,
    /// The Dockerfile; default `Dockerfile` in the context.
    pub dockerfile: Option<PathBuf>,
    pub build_args: BTreeMap<String, String>,
    pub target: Option<String>,
    /// `--platform`: the platforms to build, each to its image (an image index when there are
    /// several). Empty: this machine's platform, and the image's platform is its base's.
    pub platforms: Vec<plan::Platform>,
    /// An image index even for one platform (`BUILDKIT_MULTI_PLATFORM=1`).
    pub multi_platform: bool,
    /// `--provenance` / `--attest type=provenance`: attach SLSA provenance to each image.
    pub provenance: Option<crate::provenance::Options>,
    pub labels: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub outputs: Vec<Output>,
    pub named_contexts: HashMap<String, NamedContext>,
    pub no_cache: bool,
    /// `--no-cache-filter`: stages (by name or index) that run without the cache.
    pub no_cache_filter: Vec<String>,
    /// The automatic GC run after the build, when configured.
    pub gc: Option<crate::cache::prune::Policy>,
    /// `--cache-to`: where to export the step cache.
    pub cache_to: Vec<transfer::CacheExport>,
    /// `--cache-from`: caches to import, searched in order.
    pub cache_from: Vec<CacheSpec>,
    pub source_date_epoch: Option<i64>,
    pub compression: Compression,
    /// The store and cache root.
    pub state_dir: PathBuf,
    pub process_sandbox: bool,
    pub allow_insecure: bool,
    pub cache_mount_ns: String,
    /// `--cache-volume`: caches kept on volumes of their own.
    pub cache_volumes: Vec<crate::mounts::volumes::CacheVolume>,
    pub metadata_file: Option<PathBuf>,
    /// The sandbox helper (normally this executable).
    pub helper: Option<PathBuf>,
    /// `--secret`: secret id → where to read it.
    pub secrets: HashMap<String, SecretSource>,
    /// `None` picks overlayfs when it can be mounted, else the copy snapshotter.
    pub snapshotter: Option<Snapshotter>,
    /// `--ssh`: ssh id → keys or an agent socket.
    pub ssh: HashMap<String, SshSource>,
    /// Registries: credentials, TLS, insecure hosts, retries.
    pub registry: RegistryOptions,
    /// A request to stop the build from outside (a signal, `--timeout`).
    pub interrupt: Interrupt,
    /// `--git-auth-dir`: credentials for a Git context's repository (`git::auth`).
    pub git_auth_dir: Option<PathBuf>,
    /// Keep a Git context's `.git` directory (`BUILDKIT_CONTEXT_KEEP_GIT_DIR`).
    pub keep_git_dir: bool,
    /// `--ssh-known-hosts ID=FILE`: known_hosts lines for the steps that mount ssh id ID, at
    /// `/etc/ssh/ssh_known_hosts`.
    pub ssh_known_hosts: HashMap<String, PathBuf>,
}

/// What a successful build produced.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    #[serde(rename = "containerimage.digest")]
    pub manifest_digest: String,
    /// The image config's digest; none for an image index (several platforms).
    #[serde(
        rename = "containerimage.config.digest",
        skip_serializing_if = "Option::is_none"
    )]
    pub config_digest: Option<String>,
    /// The platforms built, one image each.
    #[serde(rename = "kiln.platforms")]
    pub platforms: Vec<String>,
    #[serde(rename = "image.name", skip_serializing_if = "String::is_empty")]
    pub names: String,
    #[serde(rename = "kiln.steps")]
    pub steps: usize,
    #[serde(rename = "kiln.cached")]
    pub cached: usize,
    #[serde(rename = "kiln.runs")]
    pub runs: usize,
    /// Cached steps answered from an imported cache.
    #[serde(rename = "kiln.imported")]
    pub imported: usize,
    /// What the push did, when the build pushed.
    #[serde(rename = "kiln.push", skip_serializing_if = "Option::is_none")]
    pub push: Option<PushSummary>,
    /// The `-t` names.
    #[serde(skip)]
    pub tags: Vec<String>,
    /// `--cache-to` destinations written.
    #[serde(skip)]
    pub exported: usize,
    /// The source revision of the context (a git commit), when the context says.
    #[serde(rename = "vcs.revision", skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Where a remote context came from: its URL without credentials, with a Git context's
    /// ref and subdirectory (BuildKit's `vcs:source` frontend attribute).
    #[serde(rename = "vcs.source", skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The push part of the result: where the image went and what moved.
#[derive(Debug, Clone, Serialize)]
pub struct PushSummary {
    /// `registry/repository:tag@sha256:…` for every name pushed.
    pub pushed: Vec<String>,
    pub uploaded: usize,
    #[serde(rename = "uploadedBytes")]
    pub uploaded_bytes: u64,
    pub mounted: usize,
    /// Blobs the registry already had.
    pub existing: usize,
}

/// The Dockerfile text and the name errors show for it.
pub struct DockerfileText {
    pub name: String,
    pub text: String,
}

impl Request {
    /// The credentials Git sources get: `--git-auth-dir` for the context's repository, the
    /// `GIT_AUTH_*` secrets, and the `default` ssh id.
    pub fn git_auth(&self) -> crate::git::GitAuth {
        let dir = match (&self.context, &self.git_auth_dir) {
            (ContextSource::Git(git), Some(path)) => Some(crate::git::AuthDir {
                path: path.clone(),
                scheme: git.scheme,
                host: git.host.clone(),
            }),
            _ => None,
        };
        crate::git::GitAuth {
            dir,
            secrets: self.secrets.clone(),
            ssh: self.ssh.get("default").cloned(),
            home: None,
        }
    }
}

/// Plan the Dockerfile; errors are rendered with their source lines.
pub fn make_plan(req: &Request, dockerfile: &DockerfileText) -> Result<Plan, Error> {
    let opts = PlanOptions {
        build_args: req.build_args.clone(),
        target: req.target.clone(),
        ..PlanOptions::default()
    };
    plan::from_text(&dockerfile.name, &dockerfile.text, &opts).map_err(Error::Plan)
}

/// A `required` secret or ssh key that was not given fails the build before any step runs,
/// naming the id and the line that needs it.
fn check_required(req: &Request, plan: &Plan) -> Result<(), Error> {
    let summary = plan::summary::summarize(plan);
    let missing = |id: &String, ssh: bool, line: u32| MissingRequired {
        id: id.clone(),
        ssh,
        file: summary.dockerfile.clone(),
        line,
    };
    let mut out: Vec<MissingRequired> = Vec::new();
    for s in summary
        .secrets
        .iter()
        .filter(|s| s.required && !req.secrets.contains_key(&s.id))
    {
        out.push(missing(&s.id, false, s.usage.line));
    }
    for s in summary
        .ssh
        .iter()
        .filter(|s| s.required && !req.ssh.contains_key(&s.id))
    {
        out.push(missing(&s.id, true, s.usage.line));
    }
    out.dedup_by(|a, b| a.id == b.id && a.ssh == b.ssh);
    if out.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingRequired(out))
    }
}

/// Whether overlayfs works for this store. The probe (a mount in a private namespace) costs tens
/// of milliseconds, so a success is remembered in the store, for this kernel, this user
/// namespace setup and this filesystem.
fn overlay_usable(root: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let kernel = rustix::system::uname()
        .release()
        .to_string_lossy()
        .into_owned();
    let dev = std::fs::metadata(root.join("tmp")).map_or(0, |m| m.dev());
    let fingerprint = format!(
        "kernel={kernel} userns={:?} nested={} dev={dev}\n",
        crate::userns::current(),
        crate::userns::in_user_namespace()
    );
    let marker = root.join("overlay-ok");
    if std::fs::read_to_string(&marker).is_ok_and(|m| m == fingerprint) {
        return true;
    }
    let ok = crate::snapshot::fallback::overlay_supported(&root.join("tmp"));
    if ok {
        let tmp = root
            .join("tmp")
            .join(format!("overlay-ok-{}", std::process::id()));
        if std::fs::write(&tmp, &fingerprint).is_ok() {
            let _ = std::fs::rename(&tmp, &marker);
        }
    }
    ok
}

/// The stages `--no-cache-filter` names; an unknown name is an error.
fn no_cache_stages(req: &Request, plan: &Plan) -> Result<HashSet<usize>, Error> {
    let mut out = HashSet::new();
    for wanted in &req.no_cache_filter {
        let found = plan
            .stages
            .iter()
            .position(|s| {
                s.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(wanted))
            })
            .or_else(|| {
                wanted
                    .parse::<usize>()
                    .ok()
                    .filter(|&i| i < plan.stages.len())
            });
        match found {
            Some(i) => {
                out.insert(i);
            }
            None => {
                return Err(Error::Usage(format!(
                    "--no-cache-filter {wanted}: the Dockerfile has no stage with that name or index"
                )));
            }
        }
    }
    Ok(out)
}

/// Run a build, then the automatic GC when one is configured.
pub fn run(req: &Request, progress: &dyn Sink) -> Result<Outcome, Error> {
    let store = Store::open(&req.state_dir)?;
    // What crashed builds left behind goes first; the shared lock keeps `prune` away from
    // everything this build may use until it is done.
    let lock = crate::cache::open_for_build(store.root())?;
    let outcome = build(req, &store, progress);
    drop(lock);
    if let Some(policy) = &req.gc {
        match crate::cache::prune::prune(store.root(), policy) {
            Ok(report) if !report.removed.is_empty() => progress.event(Event::Info {
                message: format!(
                    "cache GC: removed {} records, freed {}",
                    report.removed.len(),
                    crate::cache::prune::human_size(report.freed)
                ),
            }),
            Ok(_) => {}
            Err(e) => progress.event(Event::Info {
                message: format!("cache GC failed: {e}"),
            }),
        }
    }
    outcome
}

fn build(req: &Request, store: &Store, progress: &dyn Sink) -> Result<Outcome, Error> {
    let note = |message: String| progress.event(Event::Info { message });
    let started_on = crate::image::oci::now();
    let (context, dockerfile) = load_with(req, store, &note)?;
    let targets = platforms::targets(req);
    output::check(req, targets.len())?;
    let plans = platforms::plans(req, &dockerfile)?;
    let plan = &plans[0];
    check_required(req, plan)?;
    let no_cache_stages = no_cache_stages(req, plan)?;
    let registries = Arc::new(Registries::new(req.registry.clone()));
    let cache_from = import_caches(req, &registries, store, progress)?;
    for w in &plan.warnings {
        progress.event(Event::Info {
            message: w.to_string(),
        });
    }
    platforms::check_emulation(&plans, &store.root().join("tmp"), progress)?;
    let runner = match &req.helper {
        Some(h) => Runner { helper: h.clone() },
        None => Runner::current_exe()?,
    };
    let opts = Options {
        compression: req.compression,
        source_date_epoch: req.source_date_epoch,
        no_cache: req.no_cache,
        no_cache_stages,
        named_contexts: req.named_contexts.clone(),
        process_sandbox: req.process_sandbox,
        allow_insecure: req.allow_insecure,
        runner,
        cache_mounts: req.state_dir.join("cache-mounts"),
        cache_volumes: req.cache_volumes.clone(),
        cache_mount_ns: req.cache_mount_ns.clone(),
        secrets: req.secrets.clone(),
        ssh: req.ssh.clone(),
        cache_from,
        registry: registries.clone(),
        interrupt: req.interrupt.clone(),
        git_auth: req.git_auth(),
        ssh_known_hosts: req.ssh_known_hosts.clone(),
        snapshotter: match req.snapshotter {
            Some(s) => {
                tracing::debug!(snapshotter = ?s, "snapshotter chosen by --snapshotter");
                s
            }
            None if overlay_usable(store.root()) => {
                tracing::debug!("snapshotter: overlayfs mounts here");
                Snapshotter::Overlay
            }
            None => {
                tracing::debug!("snapshotter: overlayfs cannot be mounted here, copying");
                progress.event(Event::Info { message: "overlayfs cannot be mounted here: RUN steps use the copy snapshotter, which is slower".into() });
                Snapshotter::Copy
            }
        },
    };
    let frontends: Vec<platforms::PlanFrontend> = plans
        .iter()
        .zip(&targets)
        .map(|(plan, t)| platforms::PlanFrontend {
            plan,
            target: Platform::from(t),
        })
        .collect();
    let multi = frontends.len() > 1 || req.multi_platform;
    let shared = Shared::new(store, &context, multi);
    let solvers: Vec<Solver> = frontends
        .iter()
        .map(|f| Solver::with_shared(f, &context, store, &opts, progress, shared.clone()))
        .collect();
    let built = platforms::solve_all(&solvers).map_err(|e| match e {
        BuildError::Step(_) => Error::Step {
            rendered: render_step_error(&e, &dockerfile),
            source: e,
        },
        e => Error::Build(e),
    })?;
    let stopped = || match req.interrupt.get() {
        Some(stop) => Err(Error::Build(BuildError::Interrupted(stop))),
        None => Ok(()),
    };
    let mut images = Vec::with_capacity(built.len());
    for b in &built {
        let inline_cache = if req.cache_to.iter().any(|c| c.spec == CacheSpec::Inline) {
            Some(transfer::CacheConfig {
                version: 1,
                records: cache_records(&[b], transfer::Mode::Min)?,
            })
        } else {
            None
        };
        let image_opts = ImageOptions {
            labels: req.labels.clone(),
            source_date_epoch: req.source_date_epoch,
            inline_cache,
            // With --platform, the image names the target platform, whatever its stage's
            // (BuildKit's rule).
            platform: (!req.platforms.is_empty()).then(|| b.solver.target_platform()),
        };
        images.push(export::assemble(b.solver, &b.result, &image_opts)?);
    }
    let names = output::push_names(req).unwrap_or_else(|| req.tags.clone());
    let attestations = match &req.provenance {
        Some(p) => {
            // A Git context's URL and commit are the config source, as in BuildKit.
            let git = context
                .origin()
                .and_then(|o| Some((o.source.clone(), o.revision.clone()?)));
            let request = attest::request_inputs(req, plan, &dockerfile, git, started_on);
            attest::provenance(store, p, &request, &built, &images, &names)?
        }
        None => vec![],
    };
    let statements: Vec<Vec<u8>> = attestations.iter().map(|a| a.statement.clone()).collect();
    // BuildKit writes an index when several platforms are built, or attestations attached.
    let image = if images.len() == 1 && !multi && attestations.is_empty() {
        Export::Image(Box::new(images.remove(0)))
    } else {
        images.extend(attestations.into_iter().map(|a| a.manifest));
        Export::index(store, images)?
    };
    let solver = built[0].solver;
    for out in &req.outputs {
        stopped()?;
        progress.event(Event::Info {
            message: format!("exporting to {}", output::describe(out)),
        });
        // A push fetches only what the registry cannot get otherwise (see `push`).
        if !matches!(out, Output::Local { .. } | Output::Image { .. }) {
            for b in &built {
                solver.fetch_missing_blobs(&b.solver.layers(&b.result)?)?;
            }
        }
        output::write_output(&built, &statements, store, &image, out, &req.tags, progress)?;
    }
    let mut exported = 0;
    for export in &req.cache_to {
        stopped()?;
        match export_cache(&built, store, &export.spec, progress) {
            Ok(()) => exported += 1,
            Err(e) if export.ignore_error => progress.event(Event::Info {
                message: format!("warning: cache export failed (ignore-error=true): {e}"),
            }),
            Err(e) => return Err(e),
        }
    }
    stopped()?;
    let push = output::push_names(req)
        .map(|names| {
            let id = solver.next_vertex();
            let mut blobs = vec![];
            for b in &built {
                blobs.extend(b.solver.layers(&b.result)?);
            }
            output::push(solver, &blobs, &image, &names, progress, id)
        })
        .transpose()?;
    let stats = solver.stats();
    let outcome = Outcome {
        manifest_digest: image.digest().to_string(),
        config_digest: match &image {
            Export::Image(a) => Some(a.manifest.config.digest.to_string()),
            Export::Index { .. } => None,
        },
        platforms: targets.iter().map(ToString::to_string).collect(),
        names: match &push {
            Some(p) => p
                .pushed
                .iter()
                .map(|n| n.split('@').next().unwrap_or(n))
                .collect::<Vec<_>>()
                .join(","),
            None => req.tags.join(","),
        },
        steps: stats.steps.load(std::sync::atomic::Ordering::Relaxed),
        cached: stats.cached.load(std::sync::atomic::Ordering::Relaxed),
        runs: stats.runs.load(std::sync::atomic::Ordering::Relaxed),
        imported: stats.imported.load(std::sync::atomic::Ordering::Relaxed),
        push,
        tags: req.tags.clone(),
        exported,
        revision: context.origin().and_then(|o| o.revision.clone()),
        source: context.origin().map(|o| o.source.clone()),
    };
    if let Some(path) = &req.metadata_file {
        std::fs::write(
            path,
            serde_json::to_vec_pretty(&outcome).map_err(io::Error::other)?,
        )
        .map_err(|e| Error::Output {
            path: path.clone(),
            source: e.into(),
        })?;
    }
    Ok(outcome)
}

/// A failed step as BuildKit shows it: the Dockerfile lines around it, the error, and the last
/// lines of its output.
pub fn render_step_error(e: &BuildError, dockerfile: &DockerfileText) -> String {
    let BuildError::Step(step) = e else {
        return e.to_string();
    };
    let StepError {
        location,
        line,
        failure,
        tail,
        ..
    } = &**step;
    let lines: Vec<&str> = dockerfile.text.lines().collect();
    let line = *line as usize;
    let mut out = format!("{location}\n--------------------\n");
    for n in line.saturating_sub(2).max(1)..=(line + 1).min(lines.len()) {
        let marker = if n == line { ">>>" } else { "   " };
        out.push_str(&format!("{n:>4} | {marker} {}\n", lines[n - 1]));
    }
    out.push_str("--------------------\n");
    out.push_str(&format!("ERROR: {failure}"));
    if !tail.is_empty() {
        out.push_str("\nlast output:");
        for l in tail {
            out.push_str(&format!("\n  {l}"));
        }
    }
    out
}

/// The default state directory: `/var/lib/kiln` for root, `$XDG_DATA_HOME/kiln` (or
/// `~/.local/share/kiln`) for other users.
pub fn default_state_dir() -> PathBuf {
    if rustix::process::geteuid().is_root() && std::env::var_os("KILN_ROOTLESS_HOME").is_none() {
        return PathBuf::from("/var/lib/kiln");
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("kiln");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    home.join(".local/share/kiln")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_parse() {
        assert_eq!(
            Output::parse("type=oci,dest=out").unwrap(),
            Output::Oci {
                dest: "out".into(),
                tar: false
            }
        );
        assert_eq!(
            Output::parse("type=oci,dest=out.tar").unwrap(),
            Output::Oci {
                dest: "out.tar".into(),
                tar: true
            }
        );
        assert_eq!(
            Output::parse("type=oci,dest=-").unwrap(),
            Output::Oci {
                dest: "-".into(),
                tar: true
            }
        );
        assert_eq!(
            Output::parse("type=docker,dest=i.tar").unwrap(),
            Output::Docker {
                dest: "i.tar".into()
            }
        );
        assert_eq!(
            Output::parse("type=local,dest=fs").unwrap(),
            Output::Local { dest: "fs".into() }
        );
        assert_eq!(
            Output::parse("type=image,name=r:5000/a:1,name=r:5000/a:2,push=true").unwrap(),
            Output::Image {
                names: vec!["r:5000/a:1".into(), "r:5000/a:2".into()],
                push: true
            }
        );
        assert_eq!(
            Output::parse("type=registry").unwrap(),
            Output::Image {
                names: vec![],
                push: true
            }
        );
        assert!(Output::parse("type=oci,dest=x,push=true").is_err());
        assert!(Output::parse("type=oci").is_err());
        assert!(Output::parse("oci").is_err());
    }
}
