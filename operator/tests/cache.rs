//! The choice of cache claims and instances, lock holders derived from pods, and garbage
//! collection, table by table.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kiln_crds::{AccessMode, CacheSpec, CacheVolume};
use kiln_operator::cache::{self, GcPolicy, Need, choose, claim_name, needs, select_garbage};
use kiln_worker::plan::step::Sharing;
use kube::ResourceExt;

fn need(id: &str, key: &str, sharing: Sharing) -> Need {
    Need {
        key: key.into(),
        id: id.into(),
        sharing,
    }
}

fn claim(id: &str, key: &str, instance: u32, last_used: i64, size: &str) -> PersistentVolumeClaim {
    let mut c = cache::new_claim(
        "team",
        &claim_name(id, key, instance),
        &need(id, key, Sharing::Shared),
        instance,
        &cache::VolumeSettings {
            size: size.into(),
            storage_class: None,
            access_mode: AccessMode::ReadWriteOnce,
        },
        t(last_used),
    );
    c.metadata.creation_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(0)));
    c
}

/// A pod of another build that holds claims.
fn holder(name: &str, claims: &[(&str, &str)], phase: &str, node: Option<&str>) -> Pod {
    let mut labels = BTreeMap::from([("kiln.dev/build".to_string(), format!("{name}-build"))]);
    for (c, sharing) in claims {
        labels.insert(format!("cache.kiln.dev/{c}"), sharing.to_string());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("team".into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: node.map(Into::into),
            ..Default::default()
        }),
        status: Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some(phase.into()),
            ..Default::default()
        }),
    }
}

fn inputs<'a>(
    spec: &'a kiln_crds::ImageBuildSpec,
    claims: &'a [PersistentVolumeClaim],
    pods: &'a [Pod],
) -> cache::Inputs<'a> {
    cache::Inputs {
        namespace: "team",
        spec,
        claims,
        pods,
        default_size: None,
        default_class: None,
        now: t(1000),
    }
}

#[test]
fn claim_names_are_readable_unique_and_short() {
    assert_eq!(
        claim_name("/root/.npm", "0123456789abcdef", 0),
        "kiln-cache-root-npm-0123456789"
    );
    assert_eq!(
        claim_name("/root/.npm", "0123456789abcdef", 2),
        "kiln-cache-root-npm-0123456789-2"
    );
    assert_eq!(claim_name("///", "abcdef0123", 0), "kiln-cache-abcdef0123");
    let long = claim_name(&"/very/long/path".repeat(20), "0123456789abcdef", 12);
    assert!(long.len() <= 63, "{long}");
    assert!(!long.contains("--"));
}

#[test]
fn one_need_per_key_with_the_strictest_sharing() {
    let got = needs([
        need("go", "k1", Sharing::Shared),
        need("go", "k1", Sharing::Locked),
        need("npm", "k2", Sharing::Private),
        need("go", "k1", Sharing::Private),
    ]);
    assert_eq!(
        got,
        vec![
            need("go", "k1", Sharing::Locked),
            need("npm", "k2", Sharing::Private)
        ]
    );
}

#[test]
fn a_new_key_gets_a_claim_sized_by_the_spec() {
    let mut spec = spec();
    spec.cache = Some(CacheSpec {
        volumes: vec![CacheVolume {
            id: "go".into(),
            size: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
                "5Gi".into(),
            )),
            storage_class_name: Some("fast".into()),
            access_mode: Some(AccessMode::ReadWriteMany),
        }],
        default_size: Some(k8s_openapi::apimachinery::pkg::api::resource::Quantity(
            "1Gi".into(),
        )),
        ..Default::default()
    });
    let got = choose(
        &[
            need("go", "k1", Sharing::Shared),
            need("npm", "k2", Sharing::Shared),
        ],
        &inputs(&spec, &[], &[]),
    )
    .unwrap();
    let go = got[0].create.as_ref().unwrap().spec.clone().unwrap();
    assert_eq!(go.resources.unwrap().requests.unwrap()["storage"].0, "5Gi");
    assert_eq!(go.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(go.access_modes.unwrap(), ["ReadWriteMany"]);
    let npm = got[1].create.as_ref().unwrap();
    assert_eq!(
        npm.spec
            .as_ref()
            .unwrap()
            .resources
            .as_ref()
            .unwrap()
            .requests
            .as_ref()
            .unwrap()["storage"]
            .0,
        "1Gi"
    );
    assert_eq!(npm.labels()["kiln.dev/cache-key"], "k2");
    assert_eq!(npm.annotations()["kiln.dev/cache-id"], "npm");
    assert!(
        npm.metadata.owner_references.is_none(),
        "cache claims outlive builds"
    );
}

#[test]
fn an_existing_claim_is_reused() {
    let claims = [claim("go", "k1", 0, 10, "2Gi")];
    let got = choose(
        &[need("go", "k1", Sharing::Shared)],
        &inputs(&spec(), &claims, &[]),
    )
    .unwrap();
    assert_eq!(got[0].claim, claims[0].name_any());
    assert!(got[0].create.is_none());
}

#[test]
fn a_locked_cache_waits_for_its_live_holder_only() {
    let claims = [claim("go", "k1", 0, 10, "2Gi")];
    let name = claims[0].name_any();
    let pods = [holder(
        "other-g1-1",
        &[(&name, "locked")],
        "Running",
        Some("node-a"),
    )];
    let err = choose(
        &[need("go", "k1", Sharing::Locked)],
        &inputs(&spec(), &claims, &pods),
    )
    .unwrap_err();
    assert_eq!(err.holder_pod, "other-g1-1");
    assert_eq!(err.holder_build.as_deref(), Some("other-g1-1-build"));
    assert_eq!(err.claim, name);
    // A holder that shares it blocks a locked build too.
    let pods = [holder("other-g1-1", &[(&name, "shared")], "Pending", None)];
    assert!(
        choose(
            &[need("go", "k1", Sharing::Locked)],
            &inputs(&spec(), &claims, &pods)
        )
        .is_err()
    );
    // A finished pod holds nothing.
    let pods = [holder(
        "other-g1-1",
        &[(&name, "locked")],
        "Succeeded",
        None,
    )];
    assert!(
        choose(
            &[need("go", "k1", Sharing::Locked)],
            &inputs(&spec(), &claims, &pods)
        )
        .is_ok()
    );
}

#[test]
fn private_builds_get_their_own_instances() {
    let claims = [
        claim("npm", "k2", 0, 10, "2Gi"),
        claim("npm", "k2", 1, 10, "2Gi"),
    ];
    let (c0, c1) = (claims[0].name_any(), claims[1].name_any());
    // Nobody holds anything: instance 0.
    let got = choose(
        &[need("npm", "k2", Sharing::Private)],
        &inputs(&spec(), &claims, &[]),
    )
    .unwrap();
    assert_eq!(got[0].claim, c0);
    // 0 is held: 1, which exists.
    let pods = [holder("a", &[(&c0, "private")], "Running", None)];
    let got = choose(
        &[need("npm", "k2", Sharing::Private)],
        &inputs(&spec(), &claims, &pods),
    )
    .unwrap();
    assert_eq!(got[0].claim, c1);
    assert!(got[0].create.is_none());
    // Both held: a new instance 2.
    let pods = [
        holder("a", &[(&c0, "private")], "Running", None),
        holder("b", &[(&c1, "private")], "Running", None),
    ];
    let got = choose(
        &[need("npm", "k2", Sharing::Private)],
        &inputs(&spec(), &claims, &pods),
    )
    .unwrap();
    assert_eq!(got[0].claim, claim_name("npm", "k2", 2));
    assert_eq!(
        got[0].create.as_ref().unwrap().labels()["kiln.dev/cache-instance"],
        "2"
    );
}

#[test]
fn shared_read_write_once_claims_pin_the_node() {
    let claims = [claim("go", "k1", 0, 10, "2Gi")];
    let name = claims[0].name_any();
    let pods = [holder("a", &[(&name, "shared")], "Running", Some("node-a"))];
    let got = choose(
        &[need("go", "k1", Sharing::Shared)],
        &inputs(&spec(), &claims, &pods),
    )
    .unwrap();
    assert_eq!(got[0].node.as_deref(), Some("node-a"));
    // Not in use: anywhere.
    let got = choose(
        &[need("go", "k1", Sharing::Shared)],
        &inputs(&spec(), &claims, &[]),
    )
    .unwrap();
    assert_eq!(got[0].node, None);
    // ReadWriteMany: anywhere, even in use.
    let mut rwx = claims[0].clone();
    rwx.spec.as_mut().unwrap().access_modes = Some(vec!["ReadWriteMany".into()]);
    let got = choose(
        &[need("go", "k1", Sharing::Shared)],
        &inputs(&spec(), &[rwx], &pods),
    )
    .unwrap();
    assert_eq!(got[0].node, None);
    // A locked holder makes a shared build wait.
    let pods = [holder("a", &[(&name, "locked")], "Running", Some("node-a"))];
    assert!(
        choose(
            &[need("go", "k1", Sharing::Shared)],
            &inputs(&spec(), &claims, &pods)
        )
        .is_err()
    );
}

#[test]
fn garbage_collection_keeps_what_is_held_and_recent() {
    let old = claim("old", "k1", 0, -10 * 86400, "1Gi");
    let recent = claim("recent", "k2", 0, 900, "1Gi");
    let held_old = claim("held", "k3", 0, -10 * 86400, "1Gi");
    let pods = [holder(
        "a",
        &[(&held_old.name_any(), "shared")],
        "Running",
        None,
    )];
    let claims = [old.clone(), recent.clone(), held_old.clone()];
    let policy = GcPolicy {
        keep_duration: Some(Duration::from_secs(7 * 86400)),
        ..Default::default()
    };
    let doomed = select_garbage(&claims, &pods, &policy, t(1000));
    assert_eq!(doomed.len(), 1, "{doomed:?}");
    assert_eq!(doomed[0].claim, old.name_any());
    assert!(doomed[0].why.starts_with("unused for"), "{}", doomed[0].why);
}

#[test]
fn keep_storage_deletes_the_least_recently_used_first() {
    let a = claim("a", "k1", 0, 100, "1Gi");
    let b = claim("b", "k2", 0, 200, "1Gi");
    let c = claim("c", "k3", 0, 300, "1Gi");
    let policy = GcPolicy {
        keep_storage: Some(1 << 30),
        ..Default::default()
    };
    let doomed = select_garbage(&[c.clone(), a.clone(), b.clone()], &[], &policy, t(1000));
    let names: Vec<_> = doomed.iter().map(|d| d.claim.clone()).collect();
    assert_eq!(names, [a.name_any(), b.name_any()]);
}

#[test]
fn prune_by_id_and_all() {
    let a = claim("a", "k1", 0, 900, "1Gi");
    let b = claim("b", "k2", 0, 900, "1Gi");
    let by_id = GcPolicy {
        ids: vec!["b".into()],
        ..Default::default()
    };
    let doomed = select_garbage(&[a.clone(), b.clone()], &[], &by_id, t(1000));
    assert_eq!(
        doomed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    let all = GcPolicy {
        all: true,
        ..Default::default()
    };
    let pods = [holder("x", &[(&a.name_any(), "locked")], "Running", None)];
    let doomed = select_garbage(&[a.clone(), b.clone()], &pods, &all, t(1000));
    assert_eq!(
        doomed.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
        ["b"],
        "a held claim is never pruned"
    );
}
