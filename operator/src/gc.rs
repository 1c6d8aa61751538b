//! Garbage collection of cache claims: the operator's periodic collector, and the
//! `kiln-operator prune` and `du` commands, like `docker builder prune` and `docker system df`.
//!
//! The choice is [`crate::cache::select_garbage`]; here it meets the API: list the cache claims
//! and the operator's pods, delete what was chosen. A claim that a live pod holds is never
//! deleted, and Kubernetes' own `kubernetes.io/pvc-protection` finalizer keeps a claim that a
//! pod still mounts even if a pod appeared in between.

use std::time::Duration;

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, Client, ResourceExt};

use crate::cache::{self, Doomed, GcPolicy};
use crate::names;

/// Lists the cache claims and the operator's pods, in one namespace or all.
pub async fn observe(
    client: &Client,
    namespace: Option<&str>,
) -> Result<(Vec<PersistentVolumeClaim>, Vec<Pod>), kube::Error> {
    let claims: Api<PersistentVolumeClaim> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let pods: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let claims = claims
        .list(&ListParams::default().labels(cache::LABEL_KEY))
        .await?
        .items;
    let pods = pods
        .list(&ListParams::default().labels(&format!(
            "{}={}",
            names::LABEL_MANAGED_BY,
            names::MANAGER
        )))
        .await?
        .items;
    Ok((claims, pods))
}

/// Deletes what `policy` selects; returns it.
pub async fn prune(
    client: &Client,
    namespace: Option<&str>,
    policy: &GcPolicy,
    dry_run: bool,
) -> Result<Vec<Doomed>, kube::Error> {
    let (claims, pods) = observe(client, namespace).await?;
    let doomed = cache::select_garbage(&claims, &pods, policy, Timestamp::now());
    if !dry_run {
        for d in &doomed {
            let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &d.namespace);
            match api.delete(&d.claim, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(doomed)
}

/// One line of `kiln-operator du`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Usage {
    pub namespace: String,
    pub claim: String,
    pub id: String,
    pub sharing: String,
    pub bytes: u64,
    pub last_used: Option<Timestamp>,
    /// The live pods that mount it.
    pub holders: Vec<String>,
}

/// The cache claims with their size, last use and holders, most recently used first.
pub fn usage(claims: &[PersistentVolumeClaim], pods: &[Pod]) -> Vec<Usage> {
    let mut out: Vec<Usage> = claims
        .iter()
        .map(|c| {
            let ns = c.namespace().unwrap_or_default();
            let in_ns: Vec<Pod> = pods
                .iter()
                .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                .cloned()
                .collect();
            Usage {
                namespace: ns,
                claim: c.name_any(),
                id: c
                    .annotations()
                    .get(cache::ANNOTATION_ID)
                    .cloned()
                    .unwrap_or_default(),
                sharing: c
                    .annotations()
                    .get(cache::ANNOTATION_SHARING)
                    .cloned()
                    .unwrap_or_default(),
                bytes: cache::size_of(c),
                last_used: cache::last_used(c),
                holders: cache::holders(&in_ns, &c.name_any())
                    .into_iter()
                    .map(|(p, _)| p.name_any())
                    .collect(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.last_used.cmp(&a.last_used).then(a.claim.cmp(&b.claim)));
    out
}

/// The collector: runs `policy` every `interval` while this replica leads.
pub async fn run(client: Client, namespace: Option<String>, policy: GcPolicy, interval: Duration) {
    if policy.keep_duration.is_none() && policy.keep_storage.is_none() {
        tracing::info!("cache garbage collection is off (no keepDuration, no keepStorage)");
        return;
    }
    loop {
        tokio::time::sleep(interval).await;
        match prune(&client, namespace.as_deref(), &policy, false).await {
            Ok(doomed) => {
                for d in doomed {
                    tracing::info!(
                        namespace = d.namespace,
                        claim = d.claim,
                        id = d.id,
                        bytes = d.bytes,
                        why = d.why,
                        "deleted cache claim"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cache garbage collection failed; retrying later"),
        }
    }
}

/// Bytes as `docker builder du` prints them.
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}
