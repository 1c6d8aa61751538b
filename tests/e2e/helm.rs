//! Kiln through Helm, as a platform team runs it: `helm upgrade` with a changed value takes
//! effect (the operator's ConfigMap, a rolled Deployment, and the operator's behaviour), and
//! `helm uninstall` then a reinstall leave the CRD, the ImageBuilds and their cache claims in
//! place, and the new operator takes them back without rebuilding.
//!
//! These tests change the operator every other test shares (an upgrade rolls it, an uninstall
//! removes it), so they are `#[ignore]`d in the parallel run, and `scripts/e2e` runs them after
//! it, one at a time:
//! `cargo test -p kiln-tests --features e2e --test e2e -- --ignored --test-threads=1 helm::`.
//! Each puts the release back as it found it (the values `make deploy` gave it), also when it
//! fails half-way.

use std::process::Command;
use std::time::{Duration, Instant};

use kiln_tests::cluster::{
    Namespace, Run, apply, get_json, kubectl, kubectl_ok, list_json, live_pods, wait_for,
};
use kiln_tests::repo_root;
use serde_json::Value;

use crate::operator::{
    BUILD_TIMEOUT, base, inline_build, operator_namespace, phase, pods_of, ready_reason, registry,
    wait_phase,
};

/// `scripts/helm` (Helm v4's engine, through helm-python-sdk).
fn helm(args: &[&str]) -> Run {
    Command::new("python3")
        .arg(repo_root().join("scripts/helm"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("python3 runs scripts/helm")
        .into()
}

fn helm_ok(args: &[&str]) -> String {
    let run = helm(args);
    assert!(
        run.ok,
        "scripts/helm {} failed:\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// The release `make deploy` installed, and the values it was given.
struct Release {
    name: String,
    namespace: String,
    values: tempfile::NamedTempFile,
    deployment: String,
}

impl Release {
    fn current() -> Release {
        let name = std::env::var("KILN_RELEASE").unwrap_or_else(|_| "kiln".into());
        let namespace = operator_namespace();
        let values = helm_ok(&["get-values", "--name", &name, "--namespace", &namespace]);
        let file = tempfile::Builder::new().suffix(".json").tempfile().unwrap();
        std::fs::write(file.path(), values).unwrap();
        let deployment = kubectl_ok(&[
            "get",
            "deploy",
            "-n",
            &namespace,
            "-l",
            &format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=operator"),
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ]);
        assert!(
            !deployment.is_empty(),
            "no operator Deployment of release {name}"
        );
        Release {
            name,
            namespace,
            values: file,
            deployment,
        }
    }

    /// `scripts/helm COMMAND` for this release, with its own values and `extra` on top.
    fn helm(&self, command: &str, extra: &[&str]) -> String {
        let values = self.values.path().to_str().unwrap();
        let mut args = vec![
            command,
            "--name",
            &self.name,
            "--namespace",
            &self.namespace,
        ];
        if command != "uninstall" {
            args.extend(["-f", values, "--force-conflicts"]);
        }
        args.extend(extra);
        helm_ok(&args)
    }

    fn rollout(&self) {
        kubectl_ok(&[
            "rollout",
            "status",
            "-n",
            &self.namespace,
            &format!("deploy/{}", self.deployment),
            "--timeout=180s",
        ]);
    }

    /// The operator's pods that are not on their way out.
    fn live_pods(&self) -> Vec<Value> {
        live_pods(
            &self.namespace,
            &format!(
                "app.kubernetes.io/instance={},app.kubernetes.io/component=operator",
                self.name
            ),
        )
    }

    fn config_yaml(&self) -> Option<String> {
        get_json(
            &self.namespace,
            "configmap",
            &format!("{}-config", self.deployment),
        )
        .map(|cm| cm["data"]["config.yaml"].as_str().unwrap_or("").to_string())
    }

    fn pod_template(&self) -> Value {
        get_json(&self.namespace, "deployment", &self.deployment).expect("the operator Deployment")
            ["spec"]["template"]
            .clone()
    }
}

/// Puts the release back with the values it had, when a test ends early.
struct Restore<'a> {
    release: &'a Release,
    armed: bool,
}

impl<'a> Restore<'a> {
    fn new(release: &'a Release) -> Self {
        Restore {
            release,
            armed: true,
        }
    }

    fn now(mut self) {
        self.armed = false;
        self.release.helm("upgrade", &["--install"]);
        self.release.rollout();
    }
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        if self.armed {
            let r = self.release;
            let values = r.values.path().to_str().unwrap();
            let run = helm(&[
                "upgrade",
                "--install",
                "--name",
                &r.name,
                "--namespace",
                &r.namespace,
                "-f",
                values,
                "--force-conflicts",
            ]);
            eprintln!(
                "restored release {} after a failure: {}{}",
                r.name, run.stdout, run.stderr
            );
            let _ = kubectl(
                &[
                    "rollout",
                    "status",
                    "-n",
                    &r.namespace,
                    &format!("deploy/{}", r.deployment),
                    "--timeout=180s",
                ],
                None,
            );
        }
    }
}

#[test]
#[ignore = "rolls the operator every test shares: scripts/e2e runs it after the others, alone"]
fn helm_upgrade_with_a_changed_value_takes_effect() {
    let release = Release::current();
    let before = release.pod_template();
    let old_pods: Vec<String> = release
        .live_pods()
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let original = release.config_yaml().expect("the operator's ConfigMap");
    assert!(
        !original.contains("perNamespace: 1\n"),
        "the test needs another starting value:\n{original}"
    );

    let restore = Restore::new(&release);
    release.helm(
        "upgrade",
        &[
            "--set",
            "config.concurrency.perNamespace=1",
            "--set-string",
            "logLevel=info,kiln_operator=debug",
        ],
    );
    release.rollout();

    // The new value is in the ConfigMap, and the pod template changed with it: new pods.
    let config = release.config_yaml().unwrap();
    assert!(config.contains("perNamespace: 1\n"), "{config}");
    let after = release.pod_template();
    let hash = |t: &Value| t["metadata"]["annotations"]["kiln.dev/config-hash"].clone();
    assert_ne!(
        hash(&after),
        hash(&before),
        "the config hash did not change"
    );
    let env = after["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "KILN_LOG" && e["value"] == "info,kiln_operator=debug"),
        "logLevel did not reach the operator: {env:?}"
    );
    let pods = release.live_pods();
    assert!(!pods.is_empty());
    for p in &pods {
        let name = p["metadata"]["name"].as_str().unwrap();
        assert!(
            !old_pods.contains(&name.to_string()),
            "{name} was not rolled"
        );
    }

    // The operator in the new pod reads it...
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    let effective = kubectl_ok(&[
        "exec",
        "-n",
        &release.namespace,
        pod,
        "--",
        "kiln-operator",
        "config",
        "--config",
        "/etc/kiln/config.yaml",
    ]);
    assert!(effective.contains("perNamespace: 1"), "{effective}");

    // ...and acts on it: two builds in one namespace run one after the other.
    let ns = Namespace::new("kiln-e2e-helm-upgrade");
    let dockerfile = format!("FROM {}\nRUN sleep 12 && date > /built\n", base());
    for name in ["first", "second"] {
        let image = format!("{}/e2e/helm-{name}-{}:1", registry(), ns.name);
        apply(
            &ns.name,
            &inline_build(name, &image, &[("Dockerfile", &dockerfile)], ""),
        );
    }
    let start = Instant::now();
    let mut saw_queued = false;
    loop {
        let builds: Vec<Value> = ["first", "second"]
            .iter()
            .filter_map(|n| get_json(&ns.name, "imagebuild", n))
            .collect();
        let building = builds.iter().filter(|b| phase(b) == "Building").count();
        assert!(building <= 1, "two builds ran at once with perNamespace: 1");
        saw_queued |= builds.iter().any(|b| ready_reason(b) == "Queued");
        if builds.len() == 2 && builds.iter().all(|b| phase(b) == "Succeeded") {
            break;
        }
        for b in &builds {
            assert!(
                !matches!(phase(b), "Failed" | "Cancelled"),
                "{} ended {}: {}",
                b["metadata"]["name"],
                phase(b),
                b["status"]["message"]
            );
        }
        assert!(
            start.elapsed() < BUILD_TIMEOUT * 2,
            "the builds did not finish: {builds:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(saw_queued, "the second build never waited (reason Queued)");

    // Back to the values make deploy gave.
    restore.now();
    assert_eq!(release.config_yaml().unwrap(), original);
}

#[test]
#[ignore = "uninstalls the operator every test shares: scripts/e2e runs it after the others, alone"]
fn helm_uninstall_keeps_the_crd_builds_and_caches_and_a_reinstall_adopts_them() {
    let release = Release::current();
    let ns = Namespace::new("kiln-e2e-helm-uninstall");
    let image = format!("{}/e2e/helm-kept-{}:1", registry(), ns.name);
    let dockerfile = format!(
        "FROM {}\nRUN --mount=type=cache,id=helm-kept,target=/cache date >> /cache/stamps && cp /cache/stamps /stamps\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build("kept", &image, &[("Dockerfile", &dockerfile)], ""),
    );
    let built = wait_phase(&ns.name, "kept", "Succeeded", BUILD_TIMEOUT);
    let claims = |ns: &str| -> Vec<String> {
        list_json(ns, "pvc", Some("kiln.dev/cache-key"))
            .iter()
            .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let kept_claims = claims(&ns.name);
    assert_eq!(kept_claims.len(), 1, "one cache claim: {kept_claims:?}");

    let restore = Restore::new(&release);
    release.helm("uninstall", &["--wait"]);

    // The release and its objects are gone...
    assert!(
        !helm(&[
            "status",
            "--name",
            &release.name,
            "--namespace",
            &release.namespace
        ])
        .ok,
        "the release is still there"
    );
    let start = Instant::now();
    while !release.live_pods().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "the operator's pods outlived the uninstall"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(get_json(&release.namespace, "deployment", &release.deployment).is_none());
    assert!(release.config_yaml().is_none(), "the ConfigMap stayed");
    assert!(get_json(&release.namespace, "serviceaccount", &release.deployment).is_none());
    let role = kubectl(&["get", "clusterrole", &release.deployment], None);
    assert!(!role.ok, "the ClusterRole stayed");

    // ...and what belongs to the users stays: the CRD, the ImageBuild as it was, its cache.
    kubectl_ok(&["get", "crd", "imagebuilds.kiln.dev"]);
    let after_uninstall = get_json(&ns.name, "imagebuild", "kept").expect("the ImageBuild stays");
    assert_eq!(after_uninstall["status"], built["status"]);
    assert_eq!(claims(&ns.name), kept_claims, "the cache claim stays");

    // A reinstall takes them back: the ended build is left alone...
    release.helm("install", &[]);
    release.rollout();
    std::thread::sleep(Duration::from_secs(15));
    let again = get_json(&ns.name, "imagebuild", "kept").unwrap();
    assert_eq!(
        again["status"], built["status"],
        "the reinstalled operator changed an ended build"
    );
    assert_eq!(pods_of(&ns.name, "kept").len(), 1, "a build ran again");

    // ...and rebuilds it on request, on the same cache claim, now warm.
    let old_run = built["status"]["run"].clone();
    kubectl_ok(&[
        "annotate",
        "-n",
        &ns.name,
        "imagebuild",
        "kept",
        "kiln.dev/rebuild=after-reinstall",
    ]);
    let rebuilt = wait_for(
        &ns.name,
        "imagebuild",
        "kept",
        BUILD_TIMEOUT,
        "rebuilt by the reinstalled operator",
        |ib| ib["status"]["run"] != old_run && phase(ib) == "Succeeded",
    );
    let caches = rebuilt["status"]["caches"]
        .as_array()
        .expect("status.caches");
    assert_eq!(caches.len(), 1);
    assert_eq!(caches[0]["claimName"], kept_claims[0].as_str());
    assert_eq!(caches[0]["warm"], true, "the kept cache was not reused");
    assert_eq!(claims(&ns.name), kept_claims);

    restore.now();
}

/// The engine's state dir full (issue 16, item 1): `config.defaults.stateSizeLimit` makes the
/// state `emptyDir` small, a step writes past it, the kubelet evicts the pod, and the build
/// fails `DiskFull` naming the volume and its limit, without the retries of a lost pod.
#[test]
#[ignore = "rolls the operator every test shares: scripts/e2e runs it after the others, alone"]
fn helm_a_full_state_dir_fails_the_build_disk_full() {
    let release = Release::current();
    let restore = Restore::new(&release);
    release.helm(
        "upgrade",
        &["--set-string", "config.defaults.stateSizeLimit=16Mi"],
    );
    release.rollout();
    let ns = Namespace::new("kiln-e2e-statefull");
    // 64 MiB into a 16 Mi state dir; the kubelet measures volumes about once a minute.
    let dockerfile = format!(
        "FROM {}\nRUN dd if=/dev/zero of=/big bs=1M count=64 && sleep 300\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build(
            "big",
            &format!("{}/e2e/statefull-{}:1", registry(), ns.name),
            &[("Dockerfile", &dockerfile)],
            "",
        ),
    );
    let pod = wait_for(
        &ns.name,
        "pod",
        "big-g1-1",
        Duration::from_secs(120),
        "created",
        |_| true,
    );
    let state = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "state")
        .cloned()
        .unwrap_or_default();
    assert_eq!(state["emptyDir"]["sizeLimit"], "16Mi", "{state}");
    let ib = wait_phase(&ns.name, "big", "Failed", Duration::from_secs(420));
    assert_eq!(ready_reason(&ib), "DiskFull", "{}", ib["status"]);
    let message = ib["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("EmptyDir volume \"state\"") && message.contains("16Mi"),
        "the status does not say which volume is full: {message}"
    );
    assert_eq!(pods_of(&ns.name, "big").len(), 1, "a full disk was retried");
    restore.now();
}
