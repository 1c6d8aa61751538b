//! Cache mounts on PersistentVolumeClaims, across pods and builds, on a real cluster: a warm
//! cache in a fresh pod, `sharing=locked` between two ImageBuilds, private instances, a lock
//! released by deletion, and garbage collection.

use std::process::Command;
use std::time::{Duration, Instant};

use kiln_tests::cluster::{Namespace, apply, get_json, kubectl, list_json, wait_for};
use kiln_tests::facts;
use serde_json::Value;

use crate::operator::{base, inline_build, pull, ready_reason, registry, wait_phase};

const TIMEOUT: Duration = Duration::from_secs(420);

fn image(ns: &Namespace, name: &str) -> String {
    format!("{}/e2e/{name}-{}:1", registry(), ns.name)
}

/// Builds an image that holds a copy of the cache `id` (as the build saw it) under /seen.
fn read_cache(ns: &Namespace, build: &str, id: &str) -> facts::Facts {
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=cache,id={id},target=/c,sharing=shared mkdir -p /seen && cp -a /c/. /seen/ && ls -la /seen\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build(build, &image(ns, build), &[("Dockerfile", &dockerfile)], ""),
    );
    let ib = wait_phase(&ns.name, build, "Succeeded", TIMEOUT);
    let dir = tempfile::tempdir().unwrap();
    pull(ib["status"]["image"].as_str().unwrap(), dir.path());
    let raw = facts::read_image(dir.path(), None).unwrap();
    facts::facts(&raw, &facts::Options::default()).unwrap()
}

fn has(f: &facts::Facts, path: &str) -> bool {
    f.filesystem.iter().any(|e| e.entry.path == path)
}

fn claims(ns: &Namespace) -> Vec<Value> {
    list_json(&ns.name, "pvc", Some("kiln.dev/cache-key"))
}

#[test]
fn a_cache_written_by_one_build_is_warm_in_the_next_builds_pod() {
    let ns = Namespace::new("kiln-e2e-warm");
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=cache,id=warm,target=/c echo from-the-first-build > /c/marker && date > /built\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build(
            "writer",
            &image(&ns, "writer"),
            &[("Dockerfile", &dockerfile)],
            "",
        ),
    );
    let ib = wait_phase(&ns.name, "writer", "Succeeded", TIMEOUT);
    let caches = ib["status"]["caches"].as_array().unwrap();
    assert_eq!(caches.len(), 1, "{caches:?}");
    assert_eq!(caches[0]["id"], "warm");
    assert_eq!(caches[0]["warm"], false);
    let claim = caches[0]["claimName"].as_str().unwrap().to_string();
    let pvc = get_json(&ns.name, "pvc", &claim).expect("the claim exists");
    assert!(
        pvc["metadata"]["ownerReferences"].is_null(),
        "cache claims are not owned by a build"
    );
    assert!(pvc["metadata"]["annotations"]["kiln.dev/last-used"].is_string());
    // The kit's hostPath volumes come owned by root: the first pod's init container handed the
    // claim to the worker, and the operator recorded it.
    let writer_pod = ib["status"]["podName"].as_str().unwrap();
    let pod = get_json(&ns.name, "pod", writer_pod).expect("the writer's pod");
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "cache-owner");
    let pvc = wait_for(
        &ns.name,
        "pvc",
        &claim,
        Duration::from_secs(30),
        "the claim's owner annotation",
        |pvc| pvc["metadata"]["annotations"]["kiln.dev/cache-owner"].is_string(),
    );
    assert_eq!(
        pvc["metadata"]["annotations"]["kiln.dev/cache-owner"],
        "1000:1000"
    );

    // Another ImageBuild, another pod: the marker is there.
    let f = read_cache(&ns, "reader", "warm");
    assert!(
        has(&f, "/seen/marker"),
        "the second build did not see the first one's cache"
    );
    let reader = get_json(&ns.name, "imagebuild", "reader").unwrap();
    assert_eq!(reader["status"]["caches"][0]["claimName"], claim.as_str());
    assert_eq!(reader["status"]["caches"][0]["warm"], true);
    // ... and its pod started without an init container: the claim was the worker's already.
    let reader_pod = reader["status"]["podName"].as_str().unwrap();
    let pod = get_json(&ns.name, "pod", reader_pod).expect("the reader's pod");
    assert!(
        pod["spec"]["initContainers"].is_null(),
        "{}",
        pod["spec"]["initContainers"]
    );
    // The build deleted, the claim stays.
    let run = kubectl(
        &["delete", "ib", "-n", &ns.name, "writer", "--wait=true"],
        None,
    );
    assert!(run.ok, "{}", run.stderr);
    assert!(
        get_json(&ns.name, "pvc", &claim).is_some(),
        "the claim went with the build"
    );
}

/// Two ImageBuilds whose steps hold a `sharing=locked` cache for a few seconds each, writing
/// start and end times into it. Their intervals must not overlap.
#[test]
fn locked_steps_of_two_builds_never_overlap() {
    let ns = Namespace::new("kiln-e2e-locked");
    let dockerfile = |who: &str| {
        format!(
            "FROM {}\nRUN --mount=type=cache,id=lock,target=/c,sharing=locked \
             echo \"{who} start $(date +%s)\" >> /c/log && sleep 6 && echo \"{who} end $(date +%s)\" >> /c/log\n",
            base()
        )
    };
    for who in ["one", "two"] {
        apply(
            &ns.name,
            &inline_build(
                who,
                &image(&ns, who),
                &[("Dockerfile", &dockerfile(who))],
                "",
            ),
        );
    }
    // One of them waits for the other, and says so.
    let start = Instant::now();
    let mut saw_wait = false;
    while start.elapsed() < Duration::from_secs(120) {
        let a = get_json(&ns.name, "imagebuild", "one").unwrap();
        let b = get_json(&ns.name, "imagebuild", "two").unwrap();
        if [&a, &b]
            .iter()
            .any(|ib| ready_reason(ib) == "WaitingForCache")
        {
            let waiting = if ready_reason(&a) == "WaitingForCache" {
                &a
            } else {
                &b
            };
            let message = waiting["status"]["message"].as_str().unwrap_or("");
            assert!(
                message.contains("\"lock\"") && message.contains("holds it locked"),
                "{message}"
            );
            saw_wait = true;
            break;
        }
        if [&a, &b]
            .iter()
            .all(|ib| ib["status"]["phase"] == "Succeeded")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(saw_wait, "neither build waited for the locked cache");
    wait_phase(&ns.name, "one", "Succeeded", TIMEOUT);
    wait_phase(&ns.name, "two", "Succeeded", TIMEOUT);
    assert_eq!(claims(&ns).len(), 1, "one claim for one locked cache");

    // Read the log back through a third build.
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=cache,id=lock,target=/c,sharing=locked cp /c/log /log\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build(
            "check",
            &image(&ns, "check"),
            &[("Dockerfile", &dockerfile)],
            "",
        ),
    );
    let ib = wait_phase(&ns.name, "check", "Succeeded", TIMEOUT);
    let dir = tempfile::tempdir().unwrap();
    pull(ib["status"]["image"].as_str().unwrap(), dir.path());
    let log = extract_file(dir.path(), "log");
    let mut spans: Vec<(String, u128, u128)> = Vec::new();
    for who in ["one", "two"] {
        let time = |what: &str| -> u128 {
            log.lines()
                .find_map(|l| l.strip_prefix(&format!("{who} {what} ")))
                .unwrap_or_else(|| panic!("no {who} {what} in:\n{log}"))
                .trim()
                .parse()
                .unwrap()
        };
        spans.push((who.to_string(), time("start"), time("end")));
    }
    spans.sort_by_key(|s| s.1);
    assert!(
        spans[0].2 <= spans[1].1,
        "the locked steps overlapped: {spans:?}\n{log}"
    );
}

/// The content of a file at the image's root, read from its layers.
fn extract_file(layout: &std::path::Path, name: &str) -> String {
    let raw = facts::read_image(layout, None).unwrap();
    for layer in raw.layers.iter().rev() {
        let mut archive = tar::Archive::new(&layer[..]);
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path.trim_start_matches("./") == name {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
                return s;
            }
        }
    }
    panic!("{name} is in no layer")
}

#[test]
fn concurrent_private_builds_get_their_own_claims() {
    let ns = Namespace::new("kiln-e2e-private");
    // Long enough that the two builds overlap even on a busy cluster; each records when it held
    // its instance, so the test knows that they did.
    let dockerfile = |who: &str| {
        format!(
            "FROM {}\nRUN --mount=type=cache,id=priv,target=/c,sharing=private \
             date +%s > /start && echo {who} > /c/who && sleep 25 && cat /c/who > /who && date +%s > /end\n",
            base()
        )
    };
    for who in ["p1", "p2"] {
        apply(
            &ns.name,
            &inline_build(
                who,
                &image(&ns, who),
                &[("Dockerfile", &dockerfile(who))],
                "",
            ),
        );
    }
    let a = wait_phase(&ns.name, "p1", "Succeeded", TIMEOUT);
    let b = wait_phase(&ns.name, "p2", "Succeeded", TIMEOUT);
    let span = |ib: &Value| -> (u64, u64, String) {
        let dir = tempfile::tempdir().unwrap();
        pull(ib["status"]["image"].as_str().unwrap(), dir.path());
        let n = |f: &str| extract_file(dir.path(), f).trim().parse::<u64>().unwrap();
        (n("start"), n("end"), extract_file(dir.path(), "who"))
    };
    let (sa, sb) = (span(&a), span(&b));
    assert!(
        sa.0 < sb.1 && sb.0 < sa.1,
        "the two builds did not overlap ({sa:?}, {sb:?}): the test proves nothing"
    );
    // Each saw only its own writes.
    assert_eq!((sa.2.trim(), sb.2.trim()), ("p1", "p2"));
    let claim = |ib: &Value| {
        ib["status"]["caches"][0]["claimName"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ca, cb) = (claim(&a), claim(&b));
    assert_ne!(ca, cb, "two concurrent private builds shared a claim");
    let mut instances: Vec<String> = claims(&ns)
        .iter()
        .map(|c| {
            c["metadata"]["labels"]["kiln.dev/cache-instance"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    instances.sort();
    assert_eq!(instances, ["0", "1"]);
    // Later, an instance is reused rather than a third one made.
    apply(
        &ns.name,
        &inline_build(
            "p3",
            &image(&ns, "p3"),
            &[("Dockerfile", &dockerfile("p3"))],
            "",
        ),
    );
    let c = wait_phase(&ns.name, "p3", "Succeeded", TIMEOUT);
    assert!([ca, cb].contains(&claim(&c)));
    assert_eq!(claims(&ns).len(), 2);
}

#[test]
fn deleting_a_build_releases_its_lock_and_the_waiting_build_starts() {
    let ns = Namespace::new("kiln-e2e-release");
    let holder = format!(
        "FROM {}\nRUN --mount=type=cache,id=held,target=/c,sharing=locked sleep 600\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build(
            "holder",
            &image(&ns, "holder"),
            &[("Dockerfile", &holder)],
            "",
        ),
    );
    wait_for(
        &ns.name,
        "pod",
        "holder-g1-1",
        Duration::from_secs(120),
        "running",
        |p| p["status"]["phase"] == "Running",
    );
    let waiter = format!(
        "FROM {}\nRUN --mount=type=cache,id=held,target=/c,sharing=locked echo got-it > /c/waiter\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build(
            "waiter",
            &image(&ns, "waiter"),
            &[("Dockerfile", &waiter)],
            "",
        ),
    );
    let w = wait_for(
        &ns.name,
        "imagebuild",
        "waiter",
        Duration::from_secs(60),
        "waiting",
        |ib| ready_reason(ib) == "WaitingForCache",
    );
    assert!(
        w["status"]["message"]
            .as_str()
            .unwrap()
            .contains("build holder"),
        "{}",
        w["status"]["message"]
    );
    assert!(
        get_json(&ns.name, "pod", "waiter-g1-1").is_none(),
        "the waiter started while the lock was held"
    );
    let run = kubectl(
        &["delete", "ib", "-n", &ns.name, "holder", "--wait=false"],
        None,
    );
    assert!(run.ok, "{}", run.stderr);
    wait_phase(&ns.name, "waiter", "Succeeded", TIMEOUT);
}

#[test]
fn prune_removes_an_unused_claim_and_keeps_one_in_use() {
    let ns = Namespace::new("kiln-e2e-gc");
    let used = format!(
        "FROM {}\nRUN --mount=type=cache,id=old,target=/c echo x > /c/x\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build("old", &image(&ns, "old"), &[("Dockerfile", &used)], ""),
    );
    wait_phase(&ns.name, "old", "Succeeded", TIMEOUT);
    let busy = format!(
        "FROM {}\nRUN --mount=type=cache,id=busy,target=/c sleep 600\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build("busy", &image(&ns, "busy"), &[("Dockerfile", &busy)], ""),
    );
    wait_for(
        &ns.name,
        "pod",
        "busy-g1-1",
        Duration::from_secs(120),
        "running",
        |p| p["status"]["phase"] == "Running",
    );
    assert_eq!(claims(&ns).len(), 2);
    std::thread::sleep(Duration::from_secs(2));
    // The binary the operator image holds (scripts/e2e says which), else the release one.
    let operator = std::env::var_os("KILN_E2E_OPERATOR_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| kiln_tests::repo_root().join("target/release/kiln-operator"));
    let dry = Command::new(&operator)
        .args([
            "prune",
            "--namespace",
            &ns.name,
            "--keep-duration",
            "1s",
            "--dry-run",
        ])
        .output()
        .expect("kiln-operator runs");
    let out = String::from_utf8_lossy(&dry.stdout);
    assert!(
        dry.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(
        out.contains("would delete") && out.contains("id=old"),
        "{out}"
    );
    assert!(!out.contains("id=busy"), "a claim in use was chosen: {out}");
    assert_eq!(claims(&ns).len(), 2, "a dry run deleted something");
    let run = Command::new(&operator)
        .args(["prune", "--namespace", &ns.name, "--keep-duration", "1s"])
        .output()
        .unwrap();
    assert!(run.status.success());
    let start = Instant::now();
    loop {
        let ids: Vec<String> = claims(&ns)
            .iter()
            .filter(|c| c["metadata"]["deletionTimestamp"].is_null())
            .map(|c| {
                c["metadata"]["annotations"]["kiln.dev/cache-id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        if ids == ["busy"] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "claims left: {ids:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let du = Command::new(&operator)
        .args(["du", "--namespace", &ns.name])
        .output()
        .unwrap();
    let du = String::from_utf8_lossy(&du.stdout);
    assert!(du.contains("busy") && du.contains("busy-g1-1"), "{du}");
}
