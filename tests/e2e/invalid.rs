//! Bad input on a real cluster (issue 16, item 3): every invalid ImageBuild is either refused
//! by the API server at apply, naming the field (crd.rs checks the schema's cases), or gets a
//! `Ready` condition and an Event naming the field from the operator, and never a pod.
//!
//! Here: every fixture of tests/fixtures/invalid that this server's schema cannot reject (the
//! CEL rules, which Kubernetes 1.20 ignores, and the operator's own checks), and the checks
//! only the operator can make: a host path as a source, a cache id no step uses, `privileged`
//! without the operator's opt-in, and a Secret in another namespace.

use std::time::Duration;

use kiln_tests::cluster::{Namespace, apply, get_json, kubectl, list_json, wait_for};
use kiln_tests::repo_root;
use serde_json::Value;

use crate::operator::{base, inline_build, phase, pods_of, ready_reason, registry};

const TIMEOUT: Duration = Duration::from_secs(90);

/// The Events about one ImageBuild.
fn events_of(ns: &str, name: &str) -> Vec<Value> {
    list_json(ns, "events", None)
        .into_iter()
        .filter(|e| {
            e["involvedObject"]["name"] == name && e["involvedObject"]["kind"] == "ImageBuild"
        })
        .collect()
}

/// Applies `yaml`; returns `false` when the API server refused it (and then its error names
/// `field`).
fn apply_or_refused(ns: &str, yaml: &str, field: &str) -> bool {
    let run = kubectl(
        &["apply", "--validate=false", "-n", ns, "-f", "-"],
        Some(yaml),
    );
    if !run.ok {
        assert!(
            run.stderr.contains(field),
            "refused at apply without naming {field}:\n{}",
            run.stderr
        );
    }
    run.ok
}

/// Waits until `name` reports `reason` naming `field` in its status and in an Event, with no
/// pod, and returns the ImageBuild.
fn expect_rejected(ns: &str, name: &str, reason: &str, field: &str, want_phase: &str) -> Value {
    let ib = wait_for(ns, "imagebuild", name, TIMEOUT, reason, |ib| {
        ready_reason(ib) == reason && phase(ib) == want_phase
    });
    let message = ib["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains(field),
        "{name}: the status message does not name {field}: {message}"
    );
    let condition = ib["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(condition["status"], "False", "{name}: {condition}");
    assert!(
        condition["message"].as_str().unwrap_or("").contains(field),
        "{name}: the Ready condition does not name {field}: {condition}"
    );
    // The Event is written right after the status: give it a moment to show.
    let start = std::time::Instant::now();
    loop {
        let events = events_of(ns, name);
        if events.iter().any(|e| {
            e["reason"] == reason
                && e["type"] == "Warning"
                && e["message"].as_str().unwrap_or("").contains(field)
        }) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{name}: no Warning Event {reason} naming {field}: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(pods_of(ns, name).is_empty(), "{name}: a pod was created");
    ib
}

#[test]
fn every_invalid_build_the_schema_lets_through_fails_naming_its_field_without_a_pod() {
    let ns = Namespace::new("kiln-e2e-badinput");
    let dir = repo_root().join("tests/fixtures/invalid");
    let mut cases = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .unwrap_or_else(|| panic!("{}: no {key} header", file.display()))
                .to_string()
        };
        let by = header("rejected-by");
        let field = header("path");
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("  name: "))
            .unwrap()
            .trim()
            .to_string();
        if by.split_whitespace().any(|b| b == "schema") {
            // crd.rs: refused at apply, naming the field.
            continue;
        }
        assert!(
            apply_or_refused(&ns.name, &text, &field),
            "{}: refused by a 1.20 API server, though only CEL or the operator rejects it",
            file.display()
        );
        cases.push((name, field));
    }
    assert!(
        cases.len() >= 8,
        "only {} fixtures reach the operator",
        cases.len()
    );

    // What only the operator can check.
    let img = |n: &str| format!("{}/e2e/{n}-{}:1", registry(), ns.name);
    let df = format!(
        "FROM {}\nRUN --mount=type=cache,id=used,target=/c true\n",
        base()
    );
    let operator_cases: Vec<(String, String, &str, &str)> = vec![
        (
            format!(
                "apiVersion: kiln.dev/v1alpha1\nkind: ImageBuild\nmetadata:\n  name: host-path-pvc\nspec:\n  source:\n    pvc: {{claimName: ctx, subPath: /var/lib/kubelet}}\n  output:\n    image: {}\n    insecure: true\n",
                img("a")
            ),
            "spec.source.pvc.subPath".into(),
            "InvalidSpec",
            "Failed",
        ),
        (
            inline_build(
                "host-path-inline",
                &img("b"),
                &[
                    ("Dockerfile", &df),
                    ("../../../etc/cron.d/x", "* * * * * root id"),
                ],
                "",
            ),
            "spec.source.inline.files".into(),
            "InvalidSpec",
            "Failed",
        ),
        (
            inline_build(
                "unknown-cache-id",
                &img("c"),
                &[("Dockerfile", &df)],
                "  cache:\n    volumes:\n      - {id: used, size: 1Gi}\n      - {id: typo, size: 1Gi}\n",
            ),
            "spec.cache.volumes[1].id".into(),
            "InvalidSpec",
            "Failed",
        ),
        (
            inline_build(
                "privileged",
                &img("d"),
                &[("Dockerfile", &df)],
                "  securityProfile: privileged\n",
            ),
            "spec.securityProfile".into(),
            "PrivilegedNotAllowed",
            "Failed",
        ),
    ];
    let mut applied = Vec::new();
    for (yaml, field, reason, want) in &operator_cases {
        let name = yaml
            .lines()
            .find_map(|l| l.strip_prefix("  name: "))
            .unwrap()
            .to_string();
        if apply_or_refused(&ns.name, yaml, field) {
            applied.push((name, field.clone(), *reason, *want));
        }
    }
    for (name, field) in &cases {
        expect_rejected(&ns.name, name, "InvalidSpec", field, "Failed");
    }
    for (name, field, reason, want) in &applied {
        expect_rejected(&ns.name, name, reason, field, want);
    }
    // The privileged build is refused by the operator, not by the schema.
    assert!(applied.iter().any(|a| a.0 == "privileged"));
    assert!(applied.iter().any(|a| a.0 == "unknown-cache-id"));
}

#[test]
fn a_secret_in_another_namespace_is_never_read() {
    let ns = Namespace::new("kiln-e2e-xns");
    let other = Namespace::new("kiln-e2e-xns-other");
    apply(
        &other.name,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: theirs\nstringData:\n  token: not-yours\n",
    );
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=secret,id=tok,required=true test -s /run/secrets/tok\n",
        base()
    );
    // There is no namespace field: the API server prunes it, and the name is looked up in the
    // build's own namespace only.
    let yaml = inline_build(
        "cross",
        &format!("{}/e2e/xns-{}:1", registry(), ns.name),
        &[("Dockerfile", &dockerfile)],
        &format!(
            "  secrets:\n    - id: tok\n      secretRef: {{name: theirs, key: token, namespace: {}}}\n",
            other.name
        ),
    );
    let run = kubectl(
        &["apply", "--validate=false", "-n", &ns.name, "-f", "-"],
        Some(&yaml),
    );
    assert!(run.ok, "{}", run.stderr);
    let stored = get_json(&ns.name, "imagebuild", "cross").unwrap();
    assert!(
        stored["spec"]["secrets"][0]["secretRef"]["namespace"].is_null(),
        "the API server kept a namespace in secretRef: {}",
        stored["spec"]
    );
    let ib = expect_rejected(
        &ns.name,
        "cross",
        "MissingSecret",
        "spec.secrets[0].secretRef",
        "Pending",
    );
    let message = ib["status"]["message"].as_str().unwrap();
    assert!(message.contains("\"theirs\""), "{message}");
}
