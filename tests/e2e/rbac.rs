//! RBAC on a real API server (issue 16, item 5): the operator's ServiceAccount can do what the
//! operator needs and nothing else, and a worker pod holds no Kubernetes credentials at all.
//!
//! Each test takes a token for the ServiceAccount through the TokenRequest API and calls the
//! API server with it alone (no client certificate), as the operator's pod would. Every denial
//! has an allowed request of the same shape beside it, so a broken token cannot pass for a
//! denial.

use std::process::Command;

use kiln_tests::cluster::{Namespace, Run, apply, kubectl, kubectl_ok, wait_for};
use kiln_tests::repo_root;
use serde_json::Value;

use crate::operator::{base, inline_build, operator_namespace, pods_of, registry};

/// A token for `namespace/account`, valid for ten minutes.
fn token_for(namespace: &str, account: &str) -> String {
    let request = r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":600}}"#;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), request).unwrap();
    let out = kubectl_ok(&[
        "create",
        "--raw",
        &format!("/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token"),
        "-f",
        file.path().to_str().unwrap(),
    ]);
    let v: Value = serde_json::from_str(&out).expect("a TokenRequest");
    v["status"]["token"]
        .as_str()
        .expect("the TokenRequest has a token")
        .to_string()
}

/// kubectl authenticated by `token` only: an empty kubeconfig, the admin's server address.
fn as_token(token: &str, args: &[&str]) -> Run {
    let server = kubectl_ok(&[
        "config",
        "view",
        "--raw",
        "--minify",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ]);
    let empty = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("kubectl")
        .arg(format!("--kubeconfig={}", empty.path().display()))
        .arg(format!("--server={server}"))
        .arg("--insecure-skip-tls-verify=true")
        .arg(format!("--token={token}"))
        .args(args)
        .output()
        .expect("kubectl runs");
    out.into()
}

#[track_caller]
fn allowed(token: &str, args: &[&str]) {
    let run = as_token(token, args);
    assert!(
        run.ok,
        "kubectl {} was refused:\n{}",
        args.join(" "),
        run.stderr
    );
}

#[track_caller]
fn forbidden(token: &str, args: &[&str]) {
    let run = as_token(token, args);
    assert!(
        !run.ok,
        "kubectl {} was allowed:\n{}",
        args.join(" "),
        run.stdout
    );
    assert!(
        run.stderr.contains("Forbidden") || run.stderr.contains("forbidden"),
        "kubectl {} failed, but not with 403 Forbidden:\n{}",
        args.join(" "),
        run.stderr
    );
}

/// The ServiceAccount the deployed operator runs as.
fn operator_account() -> String {
    kubectl_ok(&[
        "get",
        "deploy",
        "-n",
        &operator_namespace(),
        "kiln-operator",
        "-o",
        "jsonpath={.spec.template.spec.serviceAccountName}",
    ])
}

#[test]
fn the_operators_account_is_refused_what_the_operator_does_not_use() {
    let ns = Namespace::new("kiln-e2e-rbac");
    let token = token_for(&operator_namespace(), &operator_account());
    apply(
        &ns.name,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: some-secret\nstringData:\n  k: v\n",
    );
    // What the operator does (the token works).
    allowed(&token, &["get", "imagebuilds", "-n", &ns.name]);
    allowed(&token, &["get", "pods", "-n", &ns.name]);
    allowed(&token, &["get", "secret", "-n", &ns.name, "some-secret"]);
    // Cluster-scoped RBAC: it would grant itself anything.
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: kiln-e2e-escalate\nrules:\n  - apiGroups: [\"*\"]\n    resources: [\"*\"]\n    verbs: [\"*\"]\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), role).unwrap();
    let path = file.path().to_str().unwrap();
    forbidden(&token, &["create", "-f", path]);
    forbidden(
        &token,
        &[
            "create",
            "clusterrolebinding",
            "kiln-e2e-escalate",
            "--clusterrole=cluster-admin",
            "--serviceaccount=kiln-system:kiln-operator",
        ],
    );
    forbidden(
        &token,
        &[
            "create",
            "rolebinding",
            "-n",
            &ns.name,
            "x",
            "--clusterrole=admin",
            "--user=x",
        ],
    );
    // Secrets are read, never written.
    forbidden(
        &token,
        &[
            "create",
            "secret",
            "generic",
            "-n",
            &ns.name,
            "made",
            "--from-literal=k=v",
        ],
    );
    forbidden(&token, &["delete", "secret", "-n", &ns.name, "some-secret"]);
    // Nodes, service account tokens, other kinds.
    forbidden(&token, &["get", "nodes"]);
    forbidden(&token, &["get", "deployments", "-n", &operator_namespace()]);
    forbidden(
        &token,
        &[
            "create",
            "--raw",
            &format!(
                "/api/v1/namespaces/{}/serviceaccounts/default/token",
                ns.name
            ),
            "-f",
            path,
        ],
    );

    // exec into a pod, and its logs: the operator reads termination messages, not streams.
    let image = format!("{}/e2e/rbac-{}:1", registry(), ns.name);
    apply(
        &ns.name,
        &inline_build(
            "sleeper",
            &image,
            &[("Dockerfile", &format!("FROM {}\nRUN sleep 300\n", base()))],
            "",
        ),
    );
    let pod = wait_for(
        &ns.name,
        "pod",
        "sleeper-g1-1",
        std::time::Duration::from_secs(120),
        "running",
        |p| p["status"]["phase"] == "Running",
    );
    let pod_name = pod["metadata"]["name"].as_str().unwrap();
    allowed(&token, &["get", "pod", "-n", &ns.name, pod_name]);
    // ImageBuilds are the users': the operator patches them (finalizer, status) only.
    forbidden(&token, &["delete", "imagebuild", "-n", &ns.name, "sleeper"]);
    forbidden(&token, &["exec", "-n", &ns.name, pod_name, "--", "true"]);
    forbidden(&token, &["logs", "-n", &ns.name, pod_name]);
    kubectl_ok(&["delete", "ib", "-n", &ns.name, "sleeper", "--wait=false"]);
}

#[test]
fn a_namespaced_operators_account_cannot_read_secrets_of_another_namespace() {
    // The chart's namespaced rendering, its ServiceAccount and rules applied in a namespace of
    // their own (the operator itself is not run: the rules are what is tested).
    let served = Namespace::new("kiln-e2e-rbac-served");
    let other = Namespace::new("kiln-e2e-rbac-other");
    let out = Command::new("python3")
        .arg(repo_root().join("scripts/helm"))
        .args(["render", "--name", "scoped", "--namespace", &served.name])
        .args(["--set", "namespaced=true"])
        .current_dir(repo_root())
        .output()
        .expect("python3 runs scripts/helm");
    assert!(
        out.status.success(),
        "scripts/helm render: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendering = String::from_utf8_lossy(&out.stdout).into_owned();
    let rbac: Vec<&str> = rendering
        .split("\n---")
        .filter(|doc| {
            doc.lines().any(|l| {
                matches!(
                    l.trim(),
                    "kind: ServiceAccount" | "kind: Role" | "kind: RoleBinding"
                )
            })
        })
        .collect();
    assert!(
        !rendering.contains("kind: ClusterRole"),
        "the namespaced rendering has cluster-wide rules"
    );
    assert!(
        rbac.len() >= 3,
        "ServiceAccount, Role, RoleBinding: {rbac:?}"
    );
    let stream = rbac.join("\n---\n");
    let run = kubectl(&["apply", "-n", &served.name, "-f", "-"], Some(&stream));
    assert!(run.ok, "{}{}", run.stdout, run.stderr);
    let account = stream
        .split("\n---")
        .find(|d| d.contains("kind: ServiceAccount"))
        .and_then(|d| {
            d.lines()
                .find_map(|l| l.trim().strip_prefix("name: ").map(str::to_string))
        })
        .expect("the ServiceAccount's name");
    let token = token_for(&served.name, account.trim_matches('"'));
    for ns in [&served, &other] {
        apply(
            &ns.name,
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: some-secret\nstringData:\n  k: v\n",
        );
    }
    allowed(
        &token,
        &["get", "secret", "-n", &served.name, "some-secret"],
    );
    allowed(&token, &["get", "pods", "-n", &served.name]);
    forbidden(&token, &["get", "secret", "-n", &other.name, "some-secret"]);
    forbidden(&token, &["get", "secrets", "-n", &other.name]);
    forbidden(&token, &["get", "secrets", "--all-namespaces"]);
    forbidden(&token, &["get", "imagebuilds", "-n", &other.name]);
    forbidden(&token, &["create", "configmap", "-n", &other.name, "x"]);
    forbidden(&token, &["get", "pods", "--all-namespaces"]);
}

#[test]
fn a_worker_pod_has_no_service_account_token() {
    let ns = Namespace::new("kiln-e2e-notoken");
    let image = format!("{}/e2e/notoken-{}:1", registry(), ns.name);
    apply(
        &ns.name,
        &inline_build(
            "probe",
            &image,
            &[("Dockerfile", &format!("FROM {}\nRUN sleep 300\n", base()))],
            "",
        ),
    );
    let pod = wait_for(
        &ns.name,
        "pod",
        "probe-g1-1",
        std::time::Duration::from_secs(120),
        "running",
        |p| p["status"]["phase"] == "Running",
    );
    let spec = &pod["spec"];
    assert_eq!(spec["automountServiceAccountToken"], false, "{spec}");
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        assert!(
            volume["projected"].is_null(),
            "a projected volume (a token?) is mounted: {volume}"
        );
        let secret = volume["secret"]["secretName"].as_str().unwrap_or("");
        assert!(
            !secret.contains("-token-"),
            "a service account token Secret is mounted: {volume}"
        );
    }
    let containers = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["containers"].as_array().into_iter().flatten());
    for c in containers {
        for m in c["volumeMounts"].as_array().into_iter().flatten() {
            assert!(
                !m["mountPath"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("/var/run/secrets/kubernetes.io"),
                "container {} mounts {m}",
                c["name"]
            );
        }
    }
    // Inside the running worker: no token file, no service account mount.
    let look = kubectl(
        &[
            "exec",
            "-n",
            &ns.name,
            "probe-g1-1",
            "--",
            "sh",
            "-c",
            // The worker image has a shell and no coreutils: builtins only.
            "while read -r l; do echo \"$l\"; done < /proc/self/mountinfo; \
             for f in /var/run/secrets/kubernetes.io/serviceaccount/* /run/secrets/kubernetes.io/serviceaccount/*; do \
             [ -e \"$f\" ] && echo \"present: $f\"; done; true",
        ],
        None,
    );
    assert!(look.ok, "exec into the worker: {}", look.stderr);
    assert!(
        look.stdout.contains(" / ")
            && !look.stdout.contains("serviceaccount")
            && !look.stdout.contains("present:"),
        "the worker sees a service account mount:\n{}",
        look.stdout
    );
    assert_eq!(pods_of(&ns.name, "probe").len(), 1);
    kubectl_ok(&["delete", "ib", "-n", &ns.name, "probe", "--wait=false"]);
}
