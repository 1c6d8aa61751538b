//! The operator on a real cluster, as a user drives it: apply an ImageBuild, wait for its
//! status, pull the image it names, look inside. `scripts/e2e` deploys Kiln, starts a registry
//! that the pods reach (`KILN_E2E_REGISTRY`) and pushes a busybox base there (`KILN_E2E_BASE`).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiln_tests::cluster::{Namespace, apply, get_json, kubectl, kubectl_ok, list_json, wait_for};
use kiln_tests::facts;
use serde_json::Value;
use sha2::{Digest, Sha256};

pub const BUILD_TIMEOUT: Duration = Duration::from_secs(420);

pub fn registry() -> String {
    std::env::var("KILN_E2E_REGISTRY").expect("KILN_E2E_REGISTRY: run the suite with `make e2e`")
}

pub fn base() -> String {
    std::env::var("KILN_E2E_BASE").expect("KILN_E2E_BASE: run the suite with `make e2e`")
}

pub fn operator_namespace() -> String {
    std::env::var("KILN_NAMESPACE_DEPLOY").unwrap_or_else(|_| "kiln-system".into())
}

pub fn phase(ib: &Value) -> &str {
    ib["status"]["phase"].as_str().unwrap_or("")
}

pub fn ready_reason(ib: &Value) -> String {
    ib["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .and_then(|c| c["reason"].as_str())
        .unwrap_or("")
        .to_string()
}

pub fn wait_phase(ns: &str, name: &str, want: &str, timeout: Duration) -> Value {
    wait_for(ns, "imagebuild", name, timeout, want, |ib| {
        let p = phase(ib);
        assert!(
            p == want || !matches!(p, "Succeeded" | "Failed" | "Cancelled"),
            "{name} ended {p} ({}), not {want}: {}",
            ready_reason(ib),
            ib["status"]["message"]
        );
        p == want
    })
}

/// An ImageBuild with an inline context.
pub fn inline_build(name: &str, image: &str, files: &[(&str, &str)], extra: &str) -> String {
    let mut files_yaml = String::new();
    for (path, content) in files {
        files_yaml.push_str(&format!("        {path}: |\n"));
        for line in content.lines() {
            files_yaml.push_str(&format!("          {line}\n"));
        }
    }
    format!(
        "apiVersion: kiln.dev/v1alpha1\nkind: ImageBuild\nmetadata:\n  name: {name}\nspec:\n  source:\n    inline:\n      files:\n{files_yaml}  output:\n    image: {image}\n    insecure: true\n{extra}"
    )
}

pub fn pods_of(ns: &str, build: &str) -> Vec<Value> {
    list_json(ns, "pods", Some(&format!("kiln.dev/build={build}")))
}

/// Pulls an image by digest into an OCI layout with skopeo.
pub fn pull(image_by_digest: &str, dir: &Path) {
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--src-tls-verify=false"])
        .arg(format!("docker://{image_by_digest}"))
        .arg(format!("oci:{}:pulled", dir.display()))
        .output()
        .expect("skopeo runs");
    assert!(
        out.status.success(),
        "skopeo copy {image_by_digest}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Every blob of a layout, decompressed where it is a layer.
fn blobs(layout: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        out.push(facts::decompress(bytes.clone()).unwrap_or(bytes));
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn an_inline_multi_stage_build_with_a_secret_and_a_cache_mount_is_pushed() {
    let ns = Namespace::new("kiln-e2e-inline");
    let secret = format!("e2e-secret-{}-value", std::process::id());
    apply(
        &ns.name,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: build-token\nstringData:\n  token: {secret}\n"
        ),
    );
    let image = format!("{}/e2e/inline-{}:1", registry(), ns.name);
    let dockerfile = format!(
        "FROM {base} AS build\n\
         RUN --mount=type=cache,target=/cache --mount=type=secret,id=token,required=true \\\n    \
         test -s /run/secrets/token && wc -c < /run/secrets/token > /out.txt && date > /cache/stamp\n\
         FROM {base}\n\
         COPY --from=build /out.txt /out.txt\n\
         COPY hello.txt /hello.txt\n",
        base = base()
    );
    apply(
        &ns.name,
        &inline_build(
            "app",
            &image,
            &[
                ("Dockerfile", &dockerfile),
                ("hello.txt", "hello from kiln"),
            ],
            "  secrets:\n    - id: token\n      secretRef: {name: build-token, key: token}\n",
        ),
    );
    let ib = wait_phase(&ns.name, "app", "Succeeded", BUILD_TIMEOUT);
    let digest = ib["status"]["digest"].as_str().unwrap().to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(
        ib["status"]["shortDigest"].as_str().unwrap(),
        &digest[7..19]
    );
    let pinned = ib["status"]["image"].as_str().unwrap().to_string();
    assert!(pinned.ends_with(&format!("@{digest}")), "{pinned}");
    assert!(ib["status"]["duration"].as_str().is_some());
    assert_eq!(ib["status"]["observedGeneration"], 1);

    // kubectl get ib shows phase, image and digest.
    let table = kubectl_ok(&["get", "ib", "-n", &ns.name]);
    assert!(
        table.contains("Succeeded") && table.contains(&digest[7..19]),
        "{table}"
    );

    // The image is there, by the digest the status names, and its files are right.
    let dir = tempfile::tempdir().unwrap();
    pull(&pinned, dir.path());
    let raw = facts::read_image(dir.path(), None).unwrap();
    let f = facts::facts(&raw, &facts::Options::default()).unwrap();
    let file = |path: &str| {
        f.filesystem
            .iter()
            .find(|e| e.entry.path == path)
            .unwrap_or_else(|| panic!("{path} is not in the image"))
            .entry
            .clone()
    };
    assert_eq!(
        file("/hello.txt").sha256,
        Some(sha256_hex(b"hello from kiln\n"))
    );
    let expected_len = format!("{}\n", secret.len());
    assert_eq!(
        file("/out.txt").sha256,
        Some(sha256_hex(expected_len.as_bytes()))
    );
    assert!(file("/bin/busybox").size > 0);

    // The secret's value is in no blob, no status, no Event, no log.
    for blob in blobs(dir.path()) {
        assert!(!contains(&blob, &secret), "the secret is in a pushed blob");
    }
    assert!(
        !ib.to_string().contains(&secret),
        "the secret is in the status"
    );
    let events = kubectl_ok(&["get", "events", "-n", &ns.name, "-o", "json"]);
    assert!(events.contains("Succeeded"), "no Succeeded event: {events}");
    assert!(!events.contains(&secret), "the secret is in an Event");
    let operator_logs = kubectl_ok(&[
        "logs",
        "-n",
        &operator_namespace(),
        "deploy/kiln-operator",
        "--tail=-1",
    ]);
    assert!(
        !operator_logs.contains(&secret),
        "the secret is in the operator's log"
    );
    let pods = pods_of(&ns.name, "app");
    assert_eq!(pods.len(), 1, "one build pod");
    let pod = &pods[0];
    let pod_name = pod["metadata"]["name"].as_str().unwrap();
    let pod_logs = kubectl_ok(&["logs", "-n", &ns.name, pod_name]);
    assert!(
        !pod_logs.contains(&secret),
        "the secret is in the build log"
    );
    assert!(
        !pod.to_string().contains(&secret),
        "the secret is in the pod spec"
    );

    // The worker pod: no token, not privileged, not root.
    let spec = &pod["spec"];
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert!(
        !spec.to_string().contains("kube-api-access") && !spec.to_string().contains("-token-"),
        "a service account token is mounted: {spec}"
    );
    let c = &spec["containers"][0];
    assert_eq!(c["securityContext"]["privileged"], false);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["runAsUser"], 1000);
    assert_eq!(pod["status"]["phase"], "Succeeded");
}

#[test]
fn a_re_apply_builds_nothing_and_a_changed_build_arg_builds_again() {
    let ns = Namespace::new("kiln-e2e-reapply");
    let image = format!("{}/e2e/reapply-{}:1", registry(), ns.name);
    let dockerfile = format!(
        "FROM {}\nARG FLAVOUR=plain\nRUN echo \"$FLAVOUR\" > /flavour\n",
        base()
    );
    let manifest = |flavour: &str| {
        inline_build(
            "app",
            &image,
            &[("Dockerfile", &dockerfile)],
            &format!("  buildArgs:\n    - name: FLAVOUR\n      value: {flavour}\n"),
        )
    };
    apply(&ns.name, &manifest("vanilla"));
    let first = wait_phase(&ns.name, "app", "Succeeded", BUILD_TIMEOUT);
    let first_digest = first["status"]["digest"].clone();

    // The same spec again, as Argo CD or Flux re-syncs it: no new pod, the status unchanged.
    apply(&ns.name, &manifest("vanilla"));
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(pods_of(&ns.name, "app").len(), 1);
    let again = get_json(&ns.name, "imagebuild", "app").unwrap();
    assert_eq!(
        again["status"], first["status"],
        "a re-apply changed the status"
    );

    // A new build arg: a new generation, a new pod, a new image.
    apply(&ns.name, &manifest("chocolate"));
    let second = wait_for(
        &ns.name,
        "imagebuild",
        "app",
        BUILD_TIMEOUT,
        "rebuilt",
        |ib| ib["status"]["observedGeneration"] == 2 && phase(ib) == "Succeeded",
    );
    assert_ne!(second["status"]["digest"], first_digest);
    let names: Vec<String> = pods_of(&ns.name, "app")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"app-g2-1".to_string()), "{names:?}");
}

#[test]
fn a_bad_dockerfile_fails_with_its_line() {
    let ns = Namespace::new("kiln-e2e-bad");
    let image = format!("{}/e2e/bad-{}:1", registry(), ns.name);
    apply(
        &ns.name,
        &inline_build(
            "broken",
            &image,
            &[("Dockerfile", &format!("FROM {}\nCOPPY a b\n", base()))],
            "",
        ),
    );
    let ib = wait_phase(&ns.name, "broken", "Failed", Duration::from_secs(60));
    assert_eq!(ready_reason(&ib), "InvalidDockerfile");
    let message = ib["status"]["message"].as_str().unwrap();
    assert!(message.starts_with("Dockerfile:2:"), "{message}");
    assert!(pods_of(&ns.name, "broken").is_empty(), "a pod was created");
    let describe = kubectl_ok(&["describe", "ib", "-n", &ns.name, "broken"]);
    assert!(describe.contains("InvalidDockerfile"), "{describe}");
}

#[test]
fn a_missing_secret_waits_then_the_build_starts_by_itself() {
    let ns = Namespace::new("kiln-e2e-missing");
    let image = format!("{}/e2e/missing-{}:1", registry(), ns.name);
    apply(
        &ns.name,
        &inline_build(
            "waits",
            &image,
            &[(
                "Dockerfile",
                &format!(
                    "FROM {}\nRUN --mount=type=secret,id=late,required=true test -s /run/secrets/late\n",
                    base()
                ),
            )],
            "  secrets:\n    - id: late\n      secretRef: {name: late-secret, key: value}\n",
        ),
    );
    let ib = wait_for(
        &ns.name,
        "imagebuild",
        "waits",
        Duration::from_secs(60),
        "waiting",
        |ib| ready_reason(ib) == "MissingSecret",
    );
    assert_eq!(phase(&ib), "Pending");
    assert!(
        ib["status"]["message"]
            .as_str()
            .unwrap()
            .contains("late-secret")
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        pods_of(&ns.name, "waits").is_empty(),
        "a pod started without its secret"
    );
    apply(
        &ns.name,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: late-secret\nstringData:\n  value: here-now\n",
    );
    wait_phase(&ns.name, "waits", "Succeeded", BUILD_TIMEOUT);
}

#[test]
fn deleting_a_running_build_removes_its_pod() {
    let ns = Namespace::new("kiln-e2e-delete");
    let image = format!("{}/e2e/delete-{}:1", registry(), ns.name);
    apply(
        &ns.name,
        &inline_build(
            "slow",
            &image,
            &[("Dockerfile", &format!("FROM {}\nRUN sleep 600\n", base()))],
            "",
        ),
    );
    wait_for(
        &ns.name,
        "imagebuild",
        "slow",
        Duration::from_secs(120),
        "building",
        |ib| phase(ib) == "Building",
    );
    let pod = wait_for(
        &ns.name,
        "pod",
        "slow-g1-1",
        Duration::from_secs(120),
        "running",
        |p| p["status"]["phase"] == "Running",
    );
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "ImageBuild");
    let run = kubectl(
        &[
            "delete",
            "ib",
            "-n",
            &ns.name,
            "slow",
            "--wait=true",
            "--timeout=90s",
        ],
        None,
    );
    assert!(run.ok, "{}", run.stderr);
    let start = std::time::Instant::now();
    while get_json(&ns.name, "pod", "slow-g1-1")
        .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null())
    {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the pod was not stopped"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}
