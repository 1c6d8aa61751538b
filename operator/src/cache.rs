//! Cache mounts on PersistentVolumeClaims: which claim each cache of a build uses, who holds a
//! claim, and which claims garbage collection may delete. Pure functions of what the operator
//! observed; the shell creates, patches and deletes.
//!
//! One cache *key* is what BuildKit keys a cache mount by: the id, `uid`, `gid`, `mode` and the
//! seed (`from`, `source`), within a namespace. Each key has one claim, `instance 0`; a
//! `sharing=private` cache gets more instances (`…-1`, `…-2`) when builds run at once. The
//! claims are labelled with the key and are not owned by any ImageBuild: they outlive builds and
//! are shared by key between the ImageBuilds of a namespace.
//!
//! The holders of a claim are the live pods that mount it (a label per claim on the pod), never
//! a record kept in memory: an operator restart, a deleted ImageBuild or a vanished pod releases
//! a claim by itself.
//!
//! - `locked`: a build waits (`WaitingForCache`) while any other live pod holds the claim.
//! - `shared`: builds mount the claim together; with `ReadWriteOnce` the pod must run on the
//!   node where the claim is in use, so it gets a node affinity for it.
//! - `private`: a build takes the first instance nobody holds, or the next new one.
//!
//! Inside a volume the worker's own `flock` rules still hold between the processes of
//! different pods (`worker/src/mounts/cache.rs`).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Pod, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kiln_crds::{AccessMode, ImageBuildSpec};
use kiln_worker::plan::step::Sharing;
use kube::ResourceExt;

use crate::names;

/// The label of a claim: its cache key.
pub const LABEL_KEY: &str = "kiln.dev/cache-key";
/// The label of a claim: its instance number.
pub const LABEL_INSTANCE: &str = "kiln.dev/cache-instance";
/// The annotations of a claim.
pub const ANNOTATION_ID: &str = "kiln.dev/cache-id";
pub const ANNOTATION_LAST_USED: &str = "kiln.dev/last-used";
pub const ANNOTATION_SHARING: &str = "kiln.dev/cache-sharing";
/// `uid:gid` that a pod's `cache-owner` init container gave the claim's root directory to. Set
/// by the operator once that init container succeeded; a later pod for the same owner needs no
/// init container (it would find nothing to do, and it costs a container start).
pub const ANNOTATION_OWNER: &str = "kiln.dev/cache-owner";
/// The prefix of a pod's label per claim it mounts: `cache.kiln.dev/<claim>: <sharing>`.
pub const HOLDER_PREFIX: &str = "cache.kiln.dev/";

/// The size of a cache volume when nothing says otherwise.
pub const DEFAULT_SIZE: &str = "2Gi";

/// One cache a build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The cache key, as the worker computes it (`--cache-volume KEY=DIR`).
    pub key: String,
    pub id: String,
    pub sharing: Sharing,
}

/// The claim chosen for a need.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub need: Need,
    pub claim: String,
    /// The claim does not exist yet: create it from this.
    pub create: Option<PersistentVolumeClaim>,
    /// A node the pod must run on (a ReadWriteOnce claim that a shared holder uses there).
    pub node: Option<String>,
    /// Who owns the claim's root already ([`ANNOTATION_OWNER`]), if anyone is recorded.
    pub owner: Option<String>,
}

/// Why a build cannot have its caches now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub id: String,
    pub claim: String,
    /// The pod that holds the claim, and its ImageBuild.
    pub holder_pod: String,
    pub holder_build: Option<String>,
}

/// Where a build's cache settings come from: the spec's volume for the id, its defaults, the
/// operator's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSettings {
    pub size: String,
    pub storage_class: Option<String>,
    pub access_mode: AccessMode,
}

/// The settings of the cache `id`.
pub fn settings(
    spec: &ImageBuildSpec,
    id: &str,
    default_size: Option<&str>,
    default_class: Option<&str>,
) -> VolumeSettings {
    let cache = spec.cache.as_ref();
    let volume = cache.and_then(|c| c.volumes.iter().find(|v| v.id == id));
    VolumeSettings {
        size: volume
            .and_then(|v| v.size.as_ref())
            .or_else(|| cache.and_then(|c| c.default_size.as_ref()))
            .map(|q| q.0.clone())
            .or_else(|| default_size.map(str::to_string))
            .unwrap_or_else(|| DEFAULT_SIZE.to_string()),
        storage_class: volume
            .and_then(|v| v.storage_class_name.clone())
            .or_else(|| cache.and_then(|c| c.default_storage_class_name.clone()))
            .or_else(|| default_class.map(str::to_string))
            .filter(|s| !s.is_empty()),
        access_mode: volume.and_then(|v| v.access_mode).unwrap_or_default(),
    }
}

/// The claim name of instance `n` of a key: readable (`kiln-cache-root-npm-…`) and unique.
pub fn claim_name(id: &str, key: &str, instance: u32) -> String {
    let mut slug = String::new();
    for c in id.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
        if slug.len() >= 24 {
            break;
        }
    }
    let slug = slug.trim_end_matches('-');
    let short: String = key.chars().take(10).collect();
    let base = if slug.is_empty() {
        format!("kiln-cache-{short}")
    } else {
        format!("kiln-cache-{slug}-{short}")
    };
    if instance == 0 {
        base
    } else {
        format!("{base}-{instance}")
    }
}

/// The claims of a namespace, by key and instance.
fn claims_of<'a>(
    claims: &'a [PersistentVolumeClaim],
    key: &str,
) -> Vec<(u32, &'a PersistentVolumeClaim)> {
    let mut out: Vec<(u32, &PersistentVolumeClaim)> = claims
        .iter()
        .filter(|c| c.labels().get(LABEL_KEY).map(String::as_str) == Some(key))
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(|c| {
            let n = c
                .labels()
                .get(LABEL_INSTANCE)
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            (n, c)
        })
        .collect();
    out.sort_by_key(|(n, _)| *n);
    out
}

/// The live pods that hold `claim`, and how.
pub fn holders<'a>(pods: &'a [Pod], claim: &str) -> Vec<(&'a Pod, Sharing)> {
    let label = format!("{HOLDER_PREFIX}{claim}");
    pods.iter()
        .filter(|p| is_live(p))
        .filter_map(|p| {
            let sharing = match p.labels().get(&label)?.as_str() {
                "locked" => Sharing::Locked,
                "private" => Sharing::Private,
                _ => Sharing::Shared,
            };
            Some((p, sharing))
        })
        .collect()
}

/// A pod that may still use its volumes: not finished, whether or not it is being deleted (a
/// terminating pod still runs until it stops).
pub fn is_live(p: &Pod) -> bool {
    !matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    )
}

/// The caches of a build's plan, one per key, with the strictest sharing any of its mounts
/// asks for (locked over private over shared).
pub fn needs(caches: impl IntoIterator<Item = Need>) -> Vec<Need> {
    let mut out: Vec<Need> = Vec::new();
    for n in caches {
        match out.iter_mut().find(|o| o.key == n.key) {
            Some(o) => {
                if rank(n.sharing) > rank(o.sharing) {
                    o.sharing = n.sharing;
                }
            }
            None => out.push(n),
        }
    }
    out
}

fn rank(s: Sharing) -> u8 {
    match s {
        Sharing::Shared => 0,
        Sharing::Private => 1,
        Sharing::Locked => 2,
    }
}

/// Everything `choose` needs besides the build's needs.
pub struct Inputs<'a> {
    pub namespace: &'a str,
    pub spec: &'a ImageBuildSpec,
    /// The cache claims of the namespace.
    pub claims: &'a [PersistentVolumeClaim],
    /// The live pods of the namespace that mount cache claims, this build's excluded.
    pub pods: &'a [Pod],
    pub default_size: Option<&'a str>,
    pub default_class: Option<&'a str>,
    pub now: Timestamp,
}

/// Picks a claim for every need, or says which one the build waits for.
pub fn choose(needs: &[Need], inputs: &Inputs<'_>) -> Result<Vec<Choice>, Wait> {
    let mut out = Vec::new();
    for need in needs {
        let settings = settings(
            inputs.spec,
            &need.id,
            inputs.default_size,
            inputs.default_class,
        );
        let existing = claims_of(inputs.claims, &need.key);
        let (instance, existing_claim) = match need.sharing {
            Sharing::Shared | Sharing::Locked => {
                (0, existing.iter().find(|(n, _)| *n == 0).map(|(_, c)| *c))
            }
            Sharing::Private => {
                match existing
                    .iter()
                    .find(|(_, c)| holders(inputs.pods, &c.name_any()).is_empty())
                {
                    Some((n, c)) => (*n, Some(*c)),
                    None => {
                        let next = existing.iter().map(|(n, _)| n + 1).max().unwrap_or(0);
                        (next, None)
                    }
                }
            }
        };
        let claim = existing_claim
            .map(|c| c.name_any())
            .unwrap_or_else(|| claim_name(&need.id, &need.key, instance));
        let held = holders(inputs.pods, &claim);
        let mut node = None;
        match need.sharing {
            Sharing::Locked => {
                if let Some((p, _)) = held.first() {
                    return Err(wait(need, &claim, p));
                }
            }
            Sharing::Shared => {
                if let Some((p, _)) = held.iter().find(|(_, s)| *s != Sharing::Shared) {
                    return Err(wait(need, &claim, p));
                }
                let access = existing_claim
                    .and_then(access_mode_of)
                    .unwrap_or(settings.access_mode);
                if access != AccessMode::ReadWriteMany {
                    node = held
                        .iter()
                        .find_map(|(p, _)| p.spec.as_ref()?.node_name.clone());
                }
            }
            Sharing::Private => {}
        }
        let create = existing_claim.is_none().then(|| {
            new_claim(
                inputs.namespace,
                &claim,
                need,
                instance,
                &settings,
                inputs.now,
            )
        });
        let owner = existing_claim.and_then(|c| c.annotations().get(ANNOTATION_OWNER).cloned());
        out.push(Choice {
            need: need.clone(),
            claim,
            create,
            node,
            owner,
        });
    }
    Ok(out)
}

fn wait(need: &Need, claim: &str, holder: &Pod) -> Wait {
    Wait {
        id: need.id.clone(),
        claim: claim.to_string(),
        holder_pod: holder.name_any(),
        holder_build: holder.labels().get(names::LABEL_BUILD).cloned(),
    }
}

fn access_mode_of(c: &PersistentVolumeClaim) -> Option<AccessMode> {
    let modes = c.spec.as_ref()?.access_modes.as_ref()?;
    if modes.iter().any(|m| m == "ReadWriteMany") {
        Some(AccessMode::ReadWriteMany)
    } else if modes.iter().any(|m| m == "ReadWriteOncePod") {
        Some(AccessMode::ReadWriteOncePod)
    } else {
        Some(AccessMode::ReadWriteOnce)
    }
}

/// A new claim for instance `instance` of a cache.
pub fn new_claim(
    namespace: &str,
    name: &str,
    need: &Need,
    instance: u32,
    settings: &VolumeSettings,
    now: Timestamp,
) -> PersistentVolumeClaim {
    let access = match settings.access_mode {
        AccessMode::ReadWriteOnce => "ReadWriteOnce",
        AccessMode::ReadWriteMany => "ReadWriteMany",
        AccessMode::ReadWriteOncePod => "ReadWriteOncePod",
    };
    let sharing = match need.sharing {
        Sharing::Shared => "shared",
        Sharing::Private => "private",
        Sharing::Locked => "locked",
    };
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(BTreeMap::from([
                (LABEL_KEY.to_string(), need.key.clone()),
                (LABEL_INSTANCE.to_string(), instance.to_string()),
                (
                    names::LABEL_MANAGED_BY.to_string(),
                    names::MANAGER.to_string(),
                ),
                (
                    names::LABEL_COMPONENT.to_string(),
                    "cache-volume".to_string(),
                ),
            ])),
            annotations: Some(BTreeMap::from([
                (ANNOTATION_ID.to_string(), need.id.clone()),
                (ANNOTATION_SHARING.to_string(), sharing.to_string()),
                (ANNOTATION_LAST_USED.to_string(), now.to_string()),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec![access.to_string()]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(settings.size.clone()),
                )])),
                ..Default::default()
            }),
            storage_class_name: settings.storage_class.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

/// The garbage collection policy, like `docker builder prune`'s filters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcPolicy {
    /// Delete claims not used for this long.
    pub keep_duration: Option<Duration>,
    /// Per namespace: delete the least recently used claims beyond this many bytes (requested
    /// sizes).
    pub keep_storage: Option<u64>,
    /// Delete these ids only (`prune --id`); empty means any.
    pub ids: Vec<String>,
    /// Delete every claim nobody holds (`prune --all`).
    pub all: bool,
}

/// A claim garbage collection deletes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Doomed {
    pub namespace: String,
    pub claim: String,
    pub id: String,
    pub bytes: u64,
    pub why: String,
}

/// When a claim was last used: its annotation, else its creation.
pub fn last_used(c: &PersistentVolumeClaim) -> Option<Timestamp> {
    c.annotations()
        .get(ANNOTATION_LAST_USED)
        .and_then(|t| t.parse().ok())
        .or_else(|| c.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The requested size of a claim in bytes.
pub fn size_of(c: &PersistentVolumeClaim) -> u64 {
    c.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| kiln_crds::quantity::parse_bytes(&q.0).ok())
        .unwrap_or(0)
}

/// The claims that `policy` deletes. A claim a live pod holds is never deleted.
pub fn select_garbage(
    claims: &[PersistentVolumeClaim],
    pods: &[Pod],
    policy: &GcPolicy,
    now: Timestamp,
) -> Vec<Doomed> {
    let mut by_ns: BTreeMap<String, Vec<&PersistentVolumeClaim>> = BTreeMap::new();
    for c in claims.iter().filter(|c| c.labels().contains_key(LABEL_KEY)) {
        if c.metadata.deletion_timestamp.is_some() {
            continue;
        }
        by_ns
            .entry(c.namespace().unwrap_or_default())
            .or_default()
            .push(c);
    }
    let mut out = Vec::new();
    for (ns, mut list) in by_ns {
        // Oldest use first.
        list.sort_by_key(|c| (last_used(c), c.name_any()));
        let held = |c: &PersistentVolumeClaim| {
            pods.iter()
                .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
                .any(|p| {
                    is_live(p)
                        && p.labels()
                            .contains_key(&format!("{HOLDER_PREFIX}{}", c.name_any()))
                })
        };
        let id_of = |c: &PersistentVolumeClaim| {
            c.annotations()
                .get(ANNOTATION_ID)
                .cloned()
                .unwrap_or_default()
        };
        let mut total: u64 = list.iter().map(|c| size_of(c)).sum();
        for c in list {
            if held(c) {
                continue;
            }
            let id = id_of(c);
            if !policy.ids.is_empty() && !policy.ids.contains(&id) {
                continue;
            }
            let bytes = size_of(c);
            let age = last_used(c).map(|t| now.duration_since(t));
            let why = if policy.all
                || !policy.ids.is_empty()
                    && policy.keep_duration.is_none()
                    && policy.keep_storage.is_none()
            {
                Some("pruned".to_string())
            } else if let (Some(keep), Some(age)) = (policy.keep_duration, age)
                && age.as_secs() > 0
                && age.unsigned_abs() > keep
            {
                Some(format!(
                    "unused for {}",
                    kiln_crds::duration::human(age.unsigned_abs())
                ))
            } else if let Some(cap) = policy.keep_storage
                && total > cap
            {
                Some(format!("namespace over its keep-storage of {cap} bytes"))
            } else {
                None
            };
            if let Some(why) = why {
                total = total.saturating_sub(bytes);
                out.push(Doomed {
                    namespace: ns.clone(),
                    claim: c.name_any(),
                    id,
                    bytes,
                    why,
                });
            }
        }
    }
    out
}
