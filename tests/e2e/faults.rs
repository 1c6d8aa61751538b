//! Faults during builds on a real cluster (issue 16, item 1), the ones that disturb only the
//! test's own builds: a worker killed or its pod deleted mid-build, a registry that keeps
//! failing during the push or answers slowly, a build that outgrows its disk, and a pod evicted
//! while it holds a `locked` cache. Each ends with a clear status, the pods each attempt should have and no
//! more, no half-pushed tag and no leaked lock. (disrupt.rs has the faults that stop the
//! operator or the API server, which `scripts/e2e` runs alone.)

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_tests::cluster::{Namespace, apply, get_json, kubectl, kubectl_ok, list_json, wait_for};
use kiln_tests::proxy::{FaultProxy, Faults};
use serde_json::Value;

use crate::operator::{
    BUILD_TIMEOUT, base, inline_build, phase, pods_of, ready_reason, registry, wait_phase,
};

/// The names of a build's pods, sorted.
fn pod_names(ns: &str, build: &str) -> Vec<String> {
    let mut names: Vec<String> = pods_of(ns, build)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    names
}

fn running(ns: &str, pod: &str) -> Value {
    wait_for(ns, "pod", pod, Duration::from_secs(180), "running", |p| {
        p["status"]["phase"] == "Running"
            && p["status"]["containerStatuses"][0]["state"]["running"].is_object()
    })
}

/// SIGKILLs the worker container's processes through containerd, as the OOM killer or a
/// crash would end them: the pod stays, its container terminated with 137.
fn kill_worker(ns: &str, pod: &str) {
    let p = running(ns, pod);
    let id = p["status"]["containerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "worker")
        .and_then(|c| c["containerID"].as_str())
        .and_then(|id| id.strip_prefix("containerd://"))
        .expect("the worker container runs under containerd")
        .to_string();
    let sock = std::env::var("K8S_KIT_CONTAINERD_SOCK")
        .expect("K8S_KIT_CONTAINERD_SOCK: the kill goes through the test kit's containerd");
    let out = Command::new("ctr")
        .args([
            "--address",
            &sock,
            "-n",
            "k8s.io",
            "tasks",
            "kill",
            "-s",
            "SIGKILL",
            &id,
        ])
        .output()
        .expect("ctr runs");
    assert!(
        out.status.success(),
        "ctr tasks kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn events_with_reason(ns: &str, name: &str, reason: &str) -> usize {
    list_json(ns, "events", None)
        .iter()
        .filter(|e| e["involvedObject"]["name"] == name && e["reason"] == reason)
        .count()
}

#[test]
fn a_worker_killed_mid_build_is_retried_within_the_backoff_limit() {
    let ns = Namespace::new("kiln-e2e-killed");
    let dockerfile = format!("FROM {}\nRUN sleep 12 && echo done > /done\n", base());
    let image = |n: &str| format!("{}/e2e/{n}-{}:1", registry(), ns.name);
    // crash: killed, one retry allowed. limit: killed, none allowed. lost: its pod deleted,
    // which is retried whatever the limit says.
    for (name, limit) in [("crash", 1), ("limit", 0), ("lost", 0)] {
        apply(
            &ns.name,
            &inline_build(
                name,
                &image(name),
                &[("Dockerfile", &dockerfile)],
                &format!("  backoffLimit: {limit}\n"),
            ),
        );
    }
    kill_worker(&ns.name, "crash-g1-1");
    kill_worker(&ns.name, "limit-g1-1");
    running(&ns.name, "lost-g1-1");
    kubectl_ok(&[
        "delete",
        "pod",
        "-n",
        &ns.name,
        "lost-g1-1",
        "--grace-period=0",
        "--force",
    ]);

    let crash = wait_phase(&ns.name, "crash", "Succeeded", BUILD_TIMEOUT);
    assert_eq!(crash["status"]["attempt"], 2, "{}", crash["status"]);
    assert_eq!(pod_names(&ns.name, "crash"), ["crash-g1-1", "crash-g1-2"]);
    let first = get_json(&ns.name, "pod", "crash-g1-1").unwrap();
    assert_eq!(first["status"]["phase"], "Failed");
    assert_eq!(
        first["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        137
    );
    assert!(events_with_reason(&ns.name, "crash", "Retrying") >= 1);

    let limit = wait_phase(&ns.name, "limit", "Failed", BUILD_TIMEOUT);
    assert_eq!(ready_reason(&limit), "BuildFailed");
    let message = limit["status"]["message"].as_str().unwrap_or("");
    assert!(message.contains("137"), "{message}");
    assert_eq!(
        pod_names(&ns.name, "limit"),
        ["limit-g1-1"],
        "retried beyond backoffLimit 0"
    );

    let lost = wait_phase(&ns.name, "lost", "Succeeded", BUILD_TIMEOUT);
    assert_eq!(lost["status"]["attempt"], 2, "{}", lost["status"]);
    assert_eq!(pod_names(&ns.name, "lost"), ["lost-g1-2"]);
}

/// The registry's own view of a tag, bypassing any proxy.
fn tag_exists(repository: &str, tag: &str) -> bool {
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-I", "-H"])
        .arg("Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json")
        .arg(format!("http://{}/v2/{repository}/manifests/{tag}", registry()))
        .output()
        .expect("curl runs");
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(code == "200" || code == "404", "HEAD manifest: HTTP {code}");
    code == "200"
}

#[test]
fn a_registry_that_keeps_failing_the_push_fails_the_build_clearly_with_no_tag() {
    let ns = Namespace::new("kiln-e2e-pushfail");
    let upstream: SocketAddr = registry().parse().expect("KILN_E2E_REGISTRY is HOST:PORT");
    let node: IpAddr = upstream.ip();
    // Blobs go through; every manifest PUT is answered 503, as by a registry whose metadata
    // store is down.
    let proxy = FaultProxy::start_on(
        node,
        upstream,
        Faults {
            fail_matching: vec!["PUT /manifests/".into()],
            ..Faults::default()
        },
    );
    let repository = format!("e2e/pushfail-{}", ns.name);
    let image = format!("{}/{repository}:1", proxy.host());
    // The base through the proxy too (its GETs pass): one registry host, plain HTTP.
    let proxied_base = base().replacen(&registry(), &proxy.host(), 1);
    let dockerfile = format!("FROM {proxied_base}\nRUN echo payload > /payload\n");
    apply(
        &ns.name,
        &inline_build(
            "push",
            &image,
            &[("Dockerfile", &dockerfile)],
            // Continues the output block: a second tag, which must not appear either.
            "    additionalTags: [latest]\n  backoffLimit: 0\n",
        ),
    );
    let ib = wait_phase(&ns.name, "push", "Failed", BUILD_TIMEOUT);
    assert_eq!(ready_reason(&ib), "PushFailed", "{}", ib["status"]);
    let message = ib["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("503") || message.contains("Service Unavailable"),
        "the status does not say what the registry answered: {message}"
    );
    let requests = proxy.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("PUT ") && r.contains("/blobs/uploads/")),
        "no blob was uploaded through the proxy: {requests:?}"
    );
    let manifest_puts = requests
        .iter()
        .filter(|r| r.starts_with("PUT ") && r.contains("/manifests/"))
        .count();
    assert!(
        manifest_puts >= 1,
        "the manifest was never tried: {requests:?}"
    );
    assert!(!tag_exists(&repository, "1"), "a tag was pushed");
    assert!(!tag_exists(&repository, "latest"), "a tag was pushed");
    assert_eq!(pod_names(&ns.name, "push"), ["push-g1-1"]);
    // Once the registry is well again, a rebuild pushes.
    drop(proxy);
    let good = inline_build(
        "push",
        &format!("{}/{repository}:1", registry()),
        &[(
            "Dockerfile",
            &format!("FROM {}\nRUN echo payload > /payload\n", base()),
        )],
        "  backoffLimit: 0\n",
    );
    apply(&ns.name, &good);
    wait_for(
        &ns.name,
        "imagebuild",
        "push",
        BUILD_TIMEOUT,
        "rebuilt",
        |ib| ib["status"]["observedGeneration"] == 2 && phase(ib) == "Succeeded",
    );
    assert!(tag_exists(&repository, "1"));
}

#[test]
fn a_slow_registry_slows_the_build_and_the_push_completes() {
    let ns = Namespace::new("kiln-e2e-slowreg");
    let upstream: SocketAddr = registry().parse().expect("KILN_E2E_REGISTRY is HOST:PORT");
    let delay = Duration::from_millis(700);
    let proxy = FaultProxy::start_on(
        upstream.ip(),
        upstream,
        Faults {
            delay: Some(delay),
            ..Faults::default()
        },
    );
    let repository = format!("e2e/slowreg-{}", ns.name);
    let proxied_base = base().replacen(&registry(), &proxy.host(), 1);
    let dockerfile = format!("FROM {proxied_base}\nRUN echo slow > /slow\n");
    apply(
        &ns.name,
        &inline_build(
            "slow",
            &format!("{}/{repository}:1", proxy.host()),
            &[("Dockerfile", &dockerfile)],
            "  backoffLimit: 0\n",
        ),
    );
    let ib = wait_phase(&ns.name, "slow", "Succeeded", BUILD_TIMEOUT);
    let requests = proxy.requests();
    assert!(
        requests.len() >= 5,
        "the build did not go through the slow proxy: {requests:?}"
    );
    assert!(tag_exists(&repository, "1"), "the tag is missing");
    let digest = ib["status"]["digest"].as_str().unwrap();
    assert!(tag_exists(&repository, digest), "the digest is missing");
    assert_eq!(pod_names(&ns.name, "slow"), ["slow-g1-1"]);
}

#[test]
fn a_build_that_outgrows_its_disk_fails_disk_full() {
    let ns = Namespace::new("kiln-e2e-diskfull");
    // 64 MiB written against a 24 Mi ephemeral-storage limit (the engine's state emptyDir
    // counts against it); the step then waits for the kubelet, which measures volumes about
    // once a minute.
    let dockerfile = format!(
        "FROM {}\nRUN dd if=/dev/zero of=/big bs=1M count=64 && sleep 300\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build(
            "big",
            &format!("{}/e2e/big-{}:1", registry(), ns.name),
            &[("Dockerfile", &dockerfile)],
            "  resources:\n    limits: {ephemeral-storage: 24Mi}\n",
        ),
    );
    let ib = wait_phase(&ns.name, "big", "Failed", Duration::from_secs(420));
    assert_eq!(ready_reason(&ib), "DiskFull", "{}", ib["status"]);
    let message = ib["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("disk") && message.contains("24Mi"),
        "the status does not say which limit: {message}"
    );
    assert_eq!(
        pod_names(&ns.name, "big"),
        ["big-g1-1"],
        "a build that filled its disk was retried without a backoffLimit"
    );
    let pod = get_json(&ns.name, "pod", "big-g1-1").unwrap();
    assert_eq!(pod["status"]["reason"], "Evicted");
}

/// Evicts a pod through the Eviction API, as `kubectl drain` does.
fn evict(ns: &str, pod: &str) {
    let body = format!(
        "{{\"apiVersion\":\"policy/v1beta1\",\"kind\":\"Eviction\",\"metadata\":{{\"name\":\"{pod}\",\"namespace\":\"{ns}\"}}}}"
    );
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), body).unwrap();
    kubectl_ok(&[
        "create",
        "--raw",
        &format!("/api/v1/namespaces/{ns}/pods/{pod}/eviction"),
        "-f",
        file.path().to_str().unwrap(),
    ]);
}

#[test]
fn a_pod_evicted_while_holding_a_locked_cache_releases_it() {
    let ns = Namespace::new("kiln-e2e-evict");
    let step = |who: &str, secs: u32| {
        format!(
            "FROM {}\nRUN --mount=type=cache,id=held,target=/c,sharing=locked \
             echo \"{who} $(date +%s)\" >> /c/log && sleep {secs}\n",
            base()
        )
    };
    let image = |n: &str| format!("{}/e2e/{n}-{}:1", registry(), ns.name);
    apply(
        &ns.name,
        &inline_build(
            "holder",
            &image("holder"),
            &[("Dockerfile", &step("holder", 20))],
            "",
        ),
    );
    running(&ns.name, "holder-g1-1");
    apply(
        &ns.name,
        &inline_build(
            "waiter",
            &image("waiter"),
            &[("Dockerfile", &step("waiter", 1))],
            "",
        ),
    );
    wait_for(
        &ns.name,
        "imagebuild",
        "waiter",
        Duration::from_secs(60),
        "waiting",
        |ib| ready_reason(ib) == "WaitingForCache",
    );
    evict(&ns.name, "holder-g1-1");
    let start = Instant::now();
    // The evicted holder's retry and the waiter both finish: neither waits on a lock that
    // nobody holds any more.
    let waiter = wait_phase(&ns.name, "waiter", "Succeeded", BUILD_TIMEOUT);
    let holder = wait_phase(&ns.name, "holder", "Succeeded", BUILD_TIMEOUT);
    assert!(start.elapsed() < BUILD_TIMEOUT);
    assert_eq!(holder["status"]["attempt"], 2, "{}", holder["status"]);
    assert_eq!(pod_names(&ns.name, "holder"), ["holder-g1-2"]);
    assert_eq!(pod_names(&ns.name, "waiter"), ["waiter-g1-1"]);
    assert_eq!(
        waiter["status"]["caches"][0]["claimName"],
        holder["status"]["caches"][0]["claimName"]
    );
    let claims = list_json(&ns.name, "pvc", Some("kiln.dev/cache-key"));
    assert_eq!(claims.len(), 1, "one claim for one locked cache");
    // No pod holds the claim now.
    let live: Vec<Value> = list_json(&ns.name, "pods", None)
        .into_iter()
        .filter(|p| !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed")))
        .collect();
    assert!(live.is_empty(), "pods still live: {live:?}");
    let run = kubectl(&["get", "events", "-n", &ns.name], None);
    assert!(run.stdout.contains("WaitingForCache"), "{}", run.stdout);
}
