//! The cache volumes of a build pod: its PVC claims mounted, the labels that make the pod a
//! holder of each claim (the cluster-wide `sharing` locks are derived from them), node affinity
//! for a shared ReadWriteOnce claim, and the ownership of each claim's root for a rootless worker.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, PersistentVolumeClaimVolumeSource, Pod, SecurityContext, Volume,
    VolumeMount,
};

use super::{CACHES_DIR, WORKER_UID};
use crate::config::Config;

/// Mounts the build's cache claims and tells the worker which directory holds which cache.
///
/// The labels `cache.kiln.dev/<claim>: <sharing>` make the pod a holder of each claim: the
/// operator derives every lock from them. A shared `ReadWriteOnce` claim already in use pins the
/// pod to that node. A rootless worker (uid 1000) gets each claim's root directory from an init
/// container that may only chown (`cacheVolumes.ownership: initContainer`), or from the pod's
/// `fsGroup` on storage that honours it (`fsGroup`). A claim that an earlier pod's init
/// container already handed over (its `kiln.dev/cache-owner` annotation) is left out of the init
/// container, and when none is left there is no init container at all.
pub fn with_caches(
    mut pod: Pod,
    caches: &[(crate::cache::Choice, crate::plan::CacheUse)],
    config: &Config,
) -> Pod {
    use k8s_openapi::api::core::v1::{
        Affinity, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    };
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (c, _) in caches {
        labels.insert(
            format!("{}{}", crate::cache::HOLDER_PREFIX, c.claim),
            match c.need.sharing {
                kiln_worker::plan::step::Sharing::Shared => "shared",
                kiln_worker::plan::step::Sharing::Private => "private",
                kiln_worker::plan::step::Sharing::Locked => "locked",
            }
            .to_string(),
        );
    }
    let Some(spec) = pod.spec.as_mut() else {
        return pod;
    };
    let rootless = spec
        .security_context
        .as_ref()
        .and_then(|s| s.run_as_user)
        .is_some_and(|u| u != 0);
    let mut mounts = Vec::new();
    for (i, (c, _)) in caches.iter().enumerate() {
        let volume = format!("cache-{i}");
        spec.volumes.get_or_insert_with(Vec::new).push(Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.claim.clone(),
                read_only: Some(false),
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: volume,
            mount_path: format!("{CACHES_DIR}/{}", c.claim),
            ..Default::default()
        });
    }
    if let Some(container) = spec.containers.first_mut() {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .extend(mounts.iter().cloned());
        let args = container.args.get_or_insert_with(Vec::new);
        // The context stays the last argument.
        let context = args.pop();
        for (c, mount) in caches {
            args.push(format!(
                "--cache-volume={}",
                mount.volume_arg(&format!("{CACHES_DIR}/{}", c.claim))
            ));
        }
        args.extend(context);
    }
    let owner = claim_owner();
    let unowned: Vec<VolumeMount> = caches
        .iter()
        .zip(&mounts)
        .filter(|((c, _), _)| c.owner.as_deref() != Some(owner.as_str()))
        .map(|(_, m)| m.clone())
        .collect();
    if rootless
        && config.cache_volumes.ownership == crate::config::Ownership::InitContainer
        && !unowned.is_empty()
    {
        let mut args = vec!["prepare-volumes".to_string(), format!("--owner={owner}")];
        args.extend(unowned.iter().map(|m| m.mount_path.clone()));
        spec.init_containers = Some(vec![Container {
            name: OWNER_CONTAINER.into(),
            image: Some(config.worker_image.clone()),
            image_pull_policy: config.worker_image_pull_policy.clone(),
            args: Some(args),
            security_context: Some(SecurityContext {
                run_as_user: Some(0),
                run_as_group: Some(0),
                run_as_non_root: Some(false),
                privileged: Some(false),
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: Some(vec!["CHOWN".into()]),
                }),
                ..Default::default()
            }),
            volume_mounts: Some(unowned),
            // Its error, if any, goes into the pod's status for the operator to report.
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..Default::default()
        }]);
    }
    if let Some(node) = caches.iter().find_map(|(c, _)| c.node.clone()) {
        spec.affinity = Some(Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".into(),
                            operator: "In".into(),
                            values: Some(vec![node]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    pod
}

/// The name of the init container that hands claims to the worker.
pub const OWNER_CONTAINER: &str = "cache-owner";

/// The `uid:gid` the init container gives each claim's root to: the worker's.
pub fn claim_owner() -> String {
    format!("{WORKER_UID}:{WORKER_UID}")
}

/// The claims whose root this pod's init container handed to the worker: those it mounts, once
/// it has exited 0. Empty while it runs, when it failed, and for a pod without one.
pub fn handed_over(pod: &Pod) -> Vec<String> {
    let succeeded = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|all| all.iter().find(|c| c.name == OWNER_CONTAINER))
        .and_then(|c| c.state.as_ref()?.terminated.as_ref())
        .is_some_and(|t| t.exit_code == 0);
    let Some(spec) = pod.spec.as_ref().filter(|_| succeeded) else {
        return Vec::new();
    };
    let Some(init) = spec
        .init_containers
        .iter()
        .flatten()
        .find(|c| c.name == OWNER_CONTAINER)
    else {
        return Vec::new();
    };
    init.volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            spec.volumes
                .iter()
                .flatten()
                .find(|v| v.name == m.name)?
                .persistent_volume_claim
                .as_ref()
                .map(|c| c.claim_name.clone())
        })
        .collect()
}
