//! The reconcile shell: observe, call [`decide`](crate::decide::decide), apply the actions.
//!
//! Everything the decision needs comes from watch caches (ImageBuilds, the operator's pods, and
//! the metadata of Secrets, ConfigMaps and PVCs) plus two direct reads where a cache may lag
//! behind what the operator itself just did: a pod the status names, and a referenced object
//! the cache does not have yet. Status is written with server-side apply, only when it changes,
//! and the ImageBuild watch ignores status-only updates, so a build that has ended is not
//! reconciled again until something about it changes.

mod act;
mod admit;
use act::*;
use admit::*;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{ImageBuild, ImageBuildStatus, Phase};
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action as Requeue;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, reflector, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{Mutex, mpsc};
use tracing::{Instrument, info, warn};

use crate::admission::{self, Admission, Entry};
use crate::config::Config;
use crate::decide::{self, Action, MissingRef, Observed};
use crate::metrics::Metrics;
use crate::{names, plan, reasons, status};

/// Errors of one reconcile. Each maps to a short label for the error metric.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the ImageBuild has no namespace")]
    NoNamespace,
}

impl Error {
    pub fn label(&self) -> &'static str {
        match self {
            Error::Kube(kube::Error::Api(_)) => "api",
            Error::Kube(_) => "client",
            Error::Finalizer(_) => "finalizer",
            Error::NoNamespace => "no_namespace",
        }
    }
}

/// Build pods just created that the pod cache may not show yet, so that two reconciles in quick
/// succession do not both take the last slot or the same locked cache.
#[derive(Default)]
struct Inflight {
    started: HashMap<(String, String), (Instant, Pod)>,
    /// Cache claims just created, by namespace and name.
    claims: HashMap<(String, String), (Instant, PersistentVolumeClaim)>,
}

/// What carrying out a decision created.
#[derive(Default)]
struct Created {
    build_pod: Option<Pod>,
    claims: Vec<PersistentVolumeClaim>,
}

/// The watch caches a reconcile reads.
#[derive(Clone)]
pub struct Stores {
    pub builds: Store<ImageBuild>,
    pub pods: Store<Pod>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    pub config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pub pvcs: Store<PersistentVolumeClaim>,
}

/// What every reconcile shares.
pub struct Context {
    pub client: Client,
    pub config: Config,
    pub metrics: Arc<Metrics>,
    builds: Store<ImageBuild>,
    pods: Store<Pod>,
    secrets: Store<PartialObjectMeta<Secret>>,
    config_maps: Store<PartialObjectMeta<ConfigMap>>,
    pvcs: Store<PersistentVolumeClaim>,
    recorder: Recorder,
    admission: Mutex<Inflight>,
    wake: mpsc::UnboundedSender<ObjectRef<ImageBuild>>,
    /// When each build began to wait for a locked cache, for the wait metric.
    cache_waits: std::sync::Mutex<HashMap<String, Instant>>,
    /// True once every cache has its first full list.
    synced: tokio::sync::watch::Receiver<bool>,
    /// The cluster's Kubernetes minor version, read at start.
    pub cluster_minor: Option<u32>,
}

const FIELD_MANAGER: &str = "kiln-operator";

/// How long something the operator created counts before the caches show it.
const INFLIGHT: Duration = Duration::from_secs(120);

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    config: Config,
    namespace: Option<String>,
    metrics: Arc<Metrics>,
    ready: Arc<std::sync::atomic::AtomicBool>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    fn api<K>(client: &Client, ns: &Option<String>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match ns {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
    let builds_api: Api<ImageBuild> = api(&client, &namespace);
    let pods_api: Api<Pod> = api(&client, &namespace);
    let own_pods = watcher::Config::default().labels(&format!(
        "{}={}",
        names::LABEL_MANAGED_BY,
        names::MANAGER
    ));

    let (builds, builds_writer) = reflector::store();
    let build_stream = watcher(builds_api, watcher::Config::default())
        .default_backoff()
        .reflect(builds_writer)
        .applied_objects()
        // Status-only updates (most of them the operator's own) do not trigger a reconcile.
        .predicate_filter(spec_and_intent, Default::default());

    let (pods, pods_writer) = reflector::store();
    let pod_stream = watcher(pods_api, own_pods)
        .default_backoff()
        .reflect(pods_writer)
        .touched_objects();

    let (secrets, secrets_writer) = reflector::store();
    let secret_stream = watcher(
        api::<PartialObjectMeta<Secret>>(&client, &namespace),
        Default::default(),
    )
    .default_backoff()
    .reflect(secrets_writer)
    .touched_objects();
    let (config_maps, cm_writer) = reflector::store();
    let cm_stream = watcher(
        api::<PartialObjectMeta<ConfigMap>>(&client, &namespace),
        Default::default(),
    )
    .default_backoff()
    .reflect(cm_writer)
    .touched_objects();
    let (pvcs, pvc_writer) = reflector::store();
    // Whole claims: cache claims' sizes and access modes matter, and claims are small.
    let pvc_stream = watcher(
        api::<PersistentVolumeClaim>(&client, &namespace),
        Default::default(),
    )
    .default_backoff()
    .reflect(pvc_writer)
    .touched_objects();

    let (wake, woken) = mpsc::unbounded_channel();
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let (builds_ready, pods_ready, secrets_ready, pvcs_ready) =
        (builds.clone(), pods.clone(), secrets.clone(), pvcs.clone());
    let cluster_minor = match client.apiserver_version().await {
        Ok(v) => v.minor.trim_end_matches('+').parse().ok(),
        Err(e) => {
            warn!(error = %e, "could not read the cluster's version; userns builds are not checked against it");
            None
        }
    };
    let mut ctx = Context::new(
        client,
        config,
        metrics.clone(),
        Stores {
            builds: builds.clone(),
            pods: pods.clone(),
            secrets: secrets.clone(),
            config_maps,
            pvcs: pvcs.clone(),
        },
        wake,
        synced_rx,
    );
    ctx.cluster_minor = cluster_minor;
    let ctx = Arc::new(ctx);

    tokio::spawn(gauges(builds.clone(), pvcs.clone(), metrics.clone()));
    tokio::spawn(async move {
        synced(&builds_ready, &pods_ready, &secrets_ready, &pvcs_ready).await;
        let _ = synced_tx.send(true);
        ready.store(true, std::sync::atomic::Ordering::Relaxed);
        info!("caches synced; reconciling");
    });

    Controller::for_stream(build_stream, builds.clone())
        .owns_stream(pod_stream)
        .watches_stream(secret_stream, referencing(builds.clone(), "Secret"))
        .watches_stream(cm_stream, referencing(builds.clone(), "ConfigMap"))
        .watches_stream(
            pvc_stream,
            referencing(builds.clone(), "PersistentVolumeClaim"),
        )
        .reconcile_on(tokio_stream(woken))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile stream");
            }
        })
        .await;
}

/// Maps a referenced object to the builds in its namespace that reference it.
fn referencing<K: Resource>(
    store: Store<ImageBuild>,
    kind: &'static str,
) -> impl Fn(K) -> Vec<ObjectRef<ImageBuild>> + Send + Sync + 'static {
    move |obj: K| {
        let ns = obj.namespace().unwrap_or_default();
        let name = obj.name_any();
        store
            .state()
            .into_iter()
            .filter(|b| b.namespace().as_deref() == Some(ns.as_str()))
            .filter(|b| references(b, kind, &name))
            .map(|b| ObjectRef::from_obj(&*b))
            .collect()
    }
}

impl Context {
    /// A context over the given caches; `wake` receives builds to reconcile when a slot frees.
    pub fn new(
        client: Client,
        config: Config,
        metrics: Arc<Metrics>,
        stores: Stores,
        wake: mpsc::UnboundedSender<ObjectRef<ImageBuild>>,
        synced: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            config,
            metrics,
            builds: stores.builds,
            pods: stores.pods,
            secrets: stores.secrets,
            config_maps: stores.config_maps,
            pvcs: stores.pvcs,
            admission: Mutex::new(Inflight::default()),
            wake,
            cache_waits: std::sync::Mutex::new(HashMap::new()),
            synced,
            cluster_minor: None,
        }
    }
}

/// Waits until every cache has had its first full list.
///
/// Each store is polled again every 100 ms rather than awaited once: a store's readiness wakes
/// only the last task that polled it (kube-runtime's `DelayedInit` keeps one waker), and the
/// controller polls the ImageBuild store too.
async fn synced(
    builds: &Store<ImageBuild>,
    pods: &Store<Pod>,
    secrets: &Store<PartialObjectMeta<Secret>>,
    pvcs: &Store<PersistentVolumeClaim>,
) {
    async fn one<K>(store: &Store<K>, what: &str)
    where
        K: Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone,
    {
        loop {
            match tokio::time::timeout(Duration::from_millis(100), store.wait_until_ready()).await {
                Ok(_) => break,
                Err(_) => continue,
            }
        }
        tracing::debug!(cache = what, "synced");
    }
    one(builds, "ImageBuilds").await;
    one(pods, "pods").await;
    one(secrets, "secrets").await;
    one(pvcs, "persistentvolumeclaims").await;
}

fn tokio_stream<T: Send + 'static>(
    mut rx: mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// What makes an ImageBuild worth reconciling: its spec (generation), the annotations users
/// steer it with, deletion, and finalizers. Not its status.
fn spec_and_intent(b: &ImageBuild) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    b.metadata.generation.hash(&mut h);
    b.metadata.deletion_timestamp.is_some().hash(&mut h);
    b.metadata.finalizers.hash(&mut h);
    for key in [names::ANNOTATION_REBUILD, names::ANNOTATION_CANCEL] {
        b.annotations().get(key).hash(&mut h);
    }
    b.metadata.uid.hash(&mut h);
    Some(h.finish())
}

/// Whether the build references a `kind` object named `name`.
fn references(b: &ImageBuild, kind: &str, name: &str) -> bool {
    referenced(b, None)
        .iter()
        .any(|(k, n, _)| *k == kind && n == name)
}

/// Every object the build references: (kind, name, field).
fn referenced(b: &ImageBuild, default_push: Option<&str>) -> Vec<(&'static str, String, String)> {
    let spec = &b.spec;
    let mut out = Vec::new();
    for (i, s) in spec.secrets.iter().enumerate() {
        out.push((
            "Secret",
            s.secret_ref.name.clone(),
            format!("spec.secrets[{i}].secretRef"),
        ));
    }
    for (i, s) in spec.ssh.iter().enumerate() {
        out.push((
            "Secret",
            s.secret_ref.name.clone(),
            format!("spec.ssh[{i}].secretRef"),
        ));
    }
    match &spec.output.push_secret_ref {
        Some(r) => out.push(("Secret", r.name.clone(), "spec.output.pushSecretRef".into())),
        None => {
            if let Some(name) = default_push {
                out.push((
                    "Secret",
                    name.to_string(),
                    "the operator's defaults.pushSecretName".into(),
                ));
            }
        }
    }
    for (i, r) in spec.pull_secret_refs.iter().enumerate() {
        out.push((
            "Secret",
            r.name.clone(),
            format!("spec.pullSecretRefs[{i}]"),
        ));
    }
    if let Some(git) = &spec.source.git
        && let Some(r) = &git.secret_ref
    {
        out.push(("Secret", r.name.clone(), "spec.source.git.secretRef".into()));
    }
    if let Some(cm) = &spec.source.config_map {
        out.push(("ConfigMap", cm.name.clone(), "spec.source.configMap".into()));
    }
    if let Some(pvc) = &spec.source.pvc {
        out.push((
            "PersistentVolumeClaim",
            pvc.claim_name.clone(),
            "spec.source.pvc".into(),
        ));
    }
    out
}

/// One reconcile of one ImageBuild.
pub async fn reconcile(build: Arc<ImageBuild>, ctx: Arc<Context>) -> Result<Requeue, Error> {
    let ns = build.namespace().ok_or(Error::NoNamespace)?;
    let name = build.name_any();
    let span = tracing::info_span!("reconcile", namespace = %ns, name = %name);
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let api: Api<ImageBuild> = Api::namespaced(ctx.client.clone(), &ns);
    let result = finalizer(&api, names::FINALIZER, build, |event| async {
        match event {
            Finalizer::Apply(b) => apply(b, &ctx).await,
            Finalizer::Cleanup(b) => cleanup(b, &ctx).await,
        }
    })
    .instrument(span)
    .await
    .map_err(|e| Error::Finalizer(Box::new(e)));
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    result
}

fn error_policy(build: Arc<ImageBuild>, error: &Error, ctx: Arc<Context>) -> Requeue {
    ctx.metrics
        .reconcile_errors
        .get_or_create(&crate::metrics::ErrorLabel {
            error: error.label().to_string(),
        })
        .inc();
    warn!(
        namespace = build.namespace().unwrap_or_default(),
        name = build.name_any(),
        error = %error,
        "reconcile failed; retrying"
    );
    Requeue::requeue(Duration::from_secs(10))
}

/// The pods of a build, from the cache.
fn pods_of(ctx: &Context, uid: &str) -> Vec<Pod> {
    ctx.pods
        .state()
        .into_iter()
        .filter(|p| {
            p.labels()
                .get(names::LABEL_BUILD_UID)
                .is_some_and(|u| u == uid)
        })
        .map(|p| (*p).clone())
        .collect()
}

async fn observe(build: &ImageBuild, ctx: &Context) -> Result<Observed, Error> {
    let ns = build.namespace().ok_or(Error::NoNamespace)?;
    let uid = build.uid().unwrap_or_default();
    let mut pods = pods_of(ctx, &uid);

    // The pod the status names may be missing from the cache only because the cache lags; a
    // direct read tells a lost pod from a new one.
    if let Some(named) = build.status.as_ref().and_then(|s| s.pod_name.clone())
        && !pods.iter().any(|p| p.name_any() == named)
    {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        if let Some(p) = api.get_opt(&named).await?
            && p.labels().get(names::LABEL_BUILD_UID) == Some(&uid)
        {
            pods.push(p);
        }
    }

    let mut missing = Vec::new();
    for (kind, name, field) in referenced(build, ctx.config.defaults.push_secret_name.as_deref()) {
        if !exists(ctx, &ns, kind, &name).await? {
            missing.push(MissingRef { kind, name, field });
        }
    }

    let mut config_map_keys = Vec::new();
    let local_plan = if let Some(inline) = &build.spec.source.inline {
        Some(plan::plan_files(&build.spec, &inline.files))
    } else if let Some(cm) = &build.spec.source.config_map {
        let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
        match api.get_opt(&cm.name).await? {
            Some(cm) => {
                let data = cm.data.clone().unwrap_or_default();
                let binary: BTreeMap<String, Vec<u8>> = cm
                    .binary_data
                    .clone()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                config_map_keys = data.keys().chain(binary.keys()).cloned().collect();
                Some(plan::plan_files(
                    &build.spec,
                    &plan::config_map_files(&data, &binary),
                ))
            }
            // Reported as missing above; the plan waits for it.
            None => None,
        }
    } else {
        None
    };

    let (cache_claims, cache_pods) = cache_state(ctx, &ns, &uid);

    Ok(Observed {
        now: Timestamp::now(),
        pods,
        missing,
        local_plan,
        config_map_keys,
        admission: Admission::Admitted,
        cache_claims,
        cache_pods,
        cluster_minor: ctx.cluster_minor,
    })
}

/// The cache claims of a namespace, and the live pods of other builds there (their holders).
fn cache_state(ctx: &Context, ns: &str, uid: &str) -> (Vec<PersistentVolumeClaim>, Vec<Pod>) {
    let claims = ctx
        .pvcs
        .state()
        .into_iter()
        .filter(|c| c.namespace().as_deref() == Some(ns))
        .filter(|c| c.labels().contains_key(crate::cache::LABEL_KEY))
        .map(|c| (*c).clone())
        .collect();
    let pods = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns))
        .filter(|p| p.labels().get(names::LABEL_BUILD_UID).map(String::as_str) != Some(uid))
        .filter(|p| crate::cache::is_live(p))
        .map(|p| (*p).clone())
        .collect();
    (claims, pods)
}

async fn exists(ctx: &Context, ns: &str, kind: &str, name: &str) -> Result<bool, Error> {
    let cached = match kind {
        "Secret" => ctx.secrets.get(&ObjectRef::new(name).within(ns)).is_some(),
        "ConfigMap" => ctx
            .config_maps
            .get(&ObjectRef::new(name).within(ns))
            .is_some(),
        _ => ctx.pvcs.get(&ObjectRef::new(name).within(ns)).is_some(),
    };
    if cached {
        return Ok(true);
    }
    // Created a moment ago, perhaps, and not yet in the cache.
    let found = match kind {
        "Secret" => Api::<Secret>::namespaced(ctx.client.clone(), ns)
            .get_metadata_opt(name)
            .await?
            .is_some(),
        "ConfigMap" => Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
            .get_metadata_opt(name)
            .await?
            .is_some(),
        _ => Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), ns)
            .get_metadata_opt(name)
            .await?
            .is_some(),
    };
    Ok(found)
}

async fn apply(build: Arc<ImageBuild>, ctx: &Context) -> Result<Requeue, Error> {
    let mut synced = ctx.synced.clone();
    // Only fails if the sender is gone, which means the controller is stopping.
    let _ = synced.wait_for(|s| *s).await;
    let mut seen = observe(&build, ctx).await?;
    let needs_slot = !holds_slot(&build, &seen.pods);
    let decision = if needs_slot {
        // Admission and the pod it admits happen under one lock, so two reconciles cannot both
        // take the last slot before the cache shows either pod.
        let mut inflight = ctx.admission.lock().await;
        seen.admission = admission_for(ctx, &build, &mut inflight);
        // The caches' holders and claims, read again under the lock: another reconcile may have
        // created a pod or a claim since `observe`, which the caches may or may not show yet.
        let ns = build.namespace().unwrap_or_default();
        let uid = build.uid().unwrap_or_default();
        (seen.cache_claims, seen.cache_pods) = cache_state(ctx, &ns, &uid);
        seen.cache_pods.extend(
            inflight
                .started
                .iter()
                .filter(|((n, name), _)| *n == ns && *name != build.name_any())
                .map(|(_, (_, pod))| pod.clone()),
        );
        seen.cache_claims.extend(
            inflight
                .claims
                .iter()
                .filter(|((n, _), _)| *n == ns)
                .map(|(_, (_, claim))| claim.clone()),
        );
        let decision = decide::decide(&build, &seen, &ctx.config);
        let created = carry_out(&build, ctx, &decision.actions).await?;
        let now = Instant::now();
        if let Some(pod) = created.build_pod {
            inflight
                .started
                .insert((ns.clone(), build.name_any()), (now, pod));
        }
        for claim in created.claims {
            inflight
                .claims
                .insert((ns.clone(), claim.name_any()), (now, claim));
        }
        decision
    } else {
        let decision = decide::decide(&build, &seen, &ctx.config);
        carry_out(&build, ctx, &decision.actions).await?;
        decision
    };
    record_cache_wait(ctx, &build, &decision);
    let old_phase = build.status.as_ref().and_then(|s| s.phase);
    let new_status = decision.actions.iter().find_map(|a| match a {
        Action::ApplyStatus(s) => Some(s.as_ref()),
        _ => None,
    });
    // A build that stopped holding a slot lets the queue move.
    if let Some(s) = new_status
        && !needs_slot
        && s.phase != Some(Phase::Building)
    {
        wake_queued(ctx);
    }
    if let Some(s) = new_status
        && let Some(phase) = s.phase
        && phase.is_terminal()
        && old_phase != Some(phase)
        && let (Some(start), Some(end)) = (&s.start_time, &s.completion_time)
    {
        let secs = (end.0.as_millisecond() - start.0.as_millisecond()).max(0) as u64;
        ctx.metrics
            .finished(&format!("{phase:?}"), Duration::from_millis(secs));
    }
    Ok(match decision.requeue {
        Some(d) => Requeue::requeue(d),
        None => Requeue::await_change(),
    })
}

/// Counts builds that wait for a locked cache, and how long they wait.
fn record_cache_wait(ctx: &Context, build: &ImageBuild, decision: &decide::Decision) {
    let Some(s) = decision.actions.iter().find_map(|a| match a {
        Action::ApplyStatus(s) => Some(s),
        _ => None,
    }) else {
        return;
    };
    let waiting = status::condition(&s.conditions, status::READY)
        .is_some_and(|c| c.reason == reasons::WAITING_FOR_CACHE);
    let uid = build.uid().unwrap_or_default();
    let mut waits = ctx.cache_waits.lock().unwrap_or_else(|e| e.into_inner());
    match (waiting, waits.get(&uid).copied()) {
        (true, None) => {
            ctx.metrics.cache_waits.inc();
            waits.insert(uid, Instant::now());
        }
        (false, Some(since)) => {
            ctx.metrics
                .cache_wait_seconds
                .observe(since.elapsed().as_secs_f64());
            waits.remove(&uid);
        }
        _ => {}
    }
}

async fn cleanup(build: Arc<ImageBuild>, ctx: &Context) -> Result<Requeue, Error> {
    let seen = observe(&build, ctx).await?;
    let actions = decide::cleanup(&seen);
    let had_pods = !actions.is_empty();
    carry_out(&build, ctx, &actions).await?;
    if had_pods {
        info!("deleted; its pods are stopped");
        wake_queued(ctx);
    }
    Ok(Requeue::await_change())
}

/// Reconciles every build that waits for a slot or a cache, so the oldest ones take what was
/// freed.
fn wake_queued(ctx: &Context) {
    for b in ctx.builds.state() {
        let queued = b
            .status
            .as_ref()
            .and_then(|s| status::condition(&s.conditions, status::READY))
            .is_some_and(|c| c.reason == reasons::QUEUED || c.reason == reasons::WAITING_FOR_CACHE);
        if queued {
            let _ = ctx.wake.send(ObjectRef::from_obj(&*b));
        }
    }
}

/// Keeps the by-phase gauges, the queue depth and the cache gauges current.
async fn gauges(
    builds: Store<ImageBuild>,
    pvcs: Store<PersistentVolumeClaim>,
    metrics: Arc<Metrics>,
) {
    loop {
        let claims: Vec<_> = pvcs
            .state()
            .into_iter()
            .filter(|c| c.labels().contains_key(crate::cache::LABEL_KEY))
            .collect();
        metrics.cache_claims.set(claims.len() as i64);
        metrics
            .cache_bytes
            .set(claims.iter().map(|c| crate::cache::size_of(c)).sum::<u64>() as i64);
        let mut by_phase: BTreeMap<String, i64> = [
            "Pending",
            "Planning",
            "Building",
            "Succeeded",
            "Failed",
            "Cancelled",
        ]
        .into_iter()
        .map(|p| (p.to_string(), 0))
        .collect();
        let mut queued = 0;
        for b in builds.state() {
            let phase = b.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
            *by_phase.entry(format!("{phase:?}")).or_default() += 1;
            if b.status
                .as_ref()
                .and_then(|s| status::condition(&s.conditions, status::READY))
                .is_some_and(|c| c.reason == reasons::QUEUED)
            {
                queued += 1;
            }
        }
        for (phase, n) in by_phase {
            metrics
                .builds
                .get_or_create(&crate::metrics::PhaseLabel { phase })
                .set(n);
        }
        metrics.queue_depth.set(queued);
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}
