//! The Helm chart's configuration file is one the operator accepts, and says what the values
//! say: each value set is rendered by the real Helm engine (`scripts/helm render`, through
//! helm-python-sdk) and the ConfigMap's `config.yaml` goes through `Config::from_yaml` and
//! `kiln-operator config --config FILE`, as the operator reads it at start.

mod common;

use std::process::Command;
use std::time::Duration;

use assert_cmd::Command as Bin;
use common::repo_root;
use kiln_crds::SecurityProfile;
use kiln_operator::config::{Config, Ownership};

/// The `config.yaml` of the chart rendered with these `scripts/helm` arguments.
fn rendered_config(args: &[&str]) -> String {
    let root = repo_root();
    let out = Command::new("python3")
        .arg(root.join("scripts/helm"))
        .args(["render", "--kube-version", "v1.20.2"])
        .args(args)
        .current_dir(&root)
        .output()
        .expect("python3 runs scripts/helm (helm-python-sdk is installed on first use)");
    assert!(
        out.status.success(),
        "scripts/helm render {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stream = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&stream).unwrap();
    let config_maps: Vec<&serde_json::Value> =
        docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
    assert_eq!(config_maps.len(), 1, "one ConfigMap in the chart");
    config_maps[0]["data"]["config.yaml"]
        .as_str()
        .expect("the ConfigMap holds config.yaml")
        .to_string()
}

fn parse(text: &str) -> Config {
    Config::from_yaml(text).unwrap_or_else(|e| panic!("the operator refuses:\n{text}\n{e}"))
}

#[test]
fn the_default_values_are_the_operators_defaults() {
    let config = parse(&rendered_config(&[]));
    assert_eq!(
        config,
        Config {
            worker_image_pull_policy: Some("IfNotPresent".into()),
            ..Config::default()
        },
        "the chart's defaults and the operator's have drifted apart"
    );
}

#[test]
fn every_value_of_the_full_set_reaches_the_operator() {
    let config = parse(&rendered_config(&["-f", "charts/kiln/ci/full-values.yaml"]));
    assert_eq!(
        config.worker_image,
        "registry.example.com/kiln/worker:1.2.3"
    );
    assert_eq!(config.worker_image_pull_policy.as_deref(), Some("Always"));
    assert_eq!(
        config.worker_env.get("HTTPS_PROXY").map(String::as_str),
        Some("http://proxy.example.com:3128")
    );
    assert_eq!(config.default_security_profile, SecurityProfile::Privileged);
    assert!(config.allow_privileged);
    assert_eq!(config.concurrency.cluster, 20);
    assert_eq!(config.concurrency.per_namespace, 3);
    let d = &config.defaults;
    assert_eq!(d.state_size_limit.as_deref(), Some("20Gi"));
    assert_eq!(d.push_secret_name.as_deref(), Some("registry-push"));
    assert_eq!(d.cache_size.as_deref(), Some("10Gi"));
    assert_eq!(d.cache_storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        d.node_selector.get("kubernetes.io/os").map(String::as_str),
        Some("linux")
    );
    assert_eq!(d.tolerations.len(), 1);
    let resources = d.resources.as_ref().expect("default resources");
    assert!(resources.requests.as_ref().unwrap().contains_key("cpu"));
    assert_eq!(config.cache_volumes.ownership, Ownership::FsGroup);
    assert_eq!(
        config.gc.keep_duration,
        Some(Duration::from_secs(48 * 3600))
    );
    assert_eq!(config.gc.keep_storage.as_deref(), Some("50Gi"));
    assert_eq!(config.gc.interval, Duration::from_secs(300));
    assert_eq!(config.insecure_registries, ["10.0.0.5:5000"]);
    assert_eq!(config.plan_timeout, Duration::from_secs(120));
    assert_eq!(config.backoff.base, Duration::from_secs(5));
    assert_eq!(config.backoff.max, Duration::from_secs(60));
}

#[test]
fn the_namespaced_set_and_switched_off_settings_parse() {
    let config = parse(&rendered_config(&[
        "-f",
        "charts/kiln/ci/namespaced-values.yaml",
    ]));
    assert_eq!(config.concurrency.cluster, 0);
    assert_eq!(config.concurrency.per_namespace, 2);

    // An empty keepDuration means "never by age", not the default week.
    let config = parse(&rendered_config(&[
        "--set-string",
        "config.gc.keepDuration=",
        "--set",
        "config.cacheVolumes.enabled=false",
    ]));
    assert_eq!(config.gc.keep_duration, None);
    assert!(!config.cache_volumes.enabled);
}

#[test]
fn kiln_operator_config_reads_the_rendered_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        rendered_config(&["-f", "charts/kiln/ci/full-values.yaml"]),
    )
    .unwrap();
    let out = Bin::cargo_bin("kiln-operator")
        .unwrap()
        .arg("config")
        .arg("--config")
        .arg(&path)
        .env_remove("KILN_WORKER_IMAGE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kiln-operator config refused the chart's file: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("perNamespace: 3"), "{printed}");
    assert!(printed.contains("ownership: fsGroup"), "{printed}");

    // And a file the operator cannot use is refused, naming the key.
    std::fs::write(&path, "defaults: {stateSizeLimit: lots}\n").unwrap();
    let out = Bin::cargo_bin("kiln-operator")
        .unwrap()
        .args(["config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stateSizeLimit"));
}
