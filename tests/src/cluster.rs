//! `kubectl` against the test cluster.
//!
//! The suite drives the cluster the way a user does, with `kubectl` and YAML, so that what it
//! proves is what a user sees. `make e2e` starts `../shared/k8s/up` and exports its environment
//! (`KUBECONFIG`, and `PATH` with the matching kubectl first).

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// The result of one kubectl call.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            ok: o.status.success(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Run kubectl with these arguments and optional stdin.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Run {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: run the end-to-end suite with `make e2e`, which starts the test cluster"
    );
    let mut cmd = Command::new("kubectl");
    cmd.args(args);
    let out = match stdin {
        None => cmd.output(),
        Some(input) => {
            use std::io::Write;
            cmd.stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            let mut child = cmd.spawn().expect("kubectl runs");
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
            child.wait_with_output()
        }
    };
    out.expect("kubectl runs").into()
}

/// Run kubectl and panic with its output if it fails.
pub fn kubectl_ok(args: &[&str]) -> String {
    let run = kubectl(args, None);
    assert!(
        run.ok,
        "kubectl {} failed:\n{}{}",
        args.join(" "),
        run.stdout,
        run.stderr
    );
    run.stdout
}

/// A namespace that exists for one test and is deleted when the test ends, pass or fail.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn new(prefix: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        kubectl_ok(&["create", "namespace", &name]);
        Namespace { name }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"], None);
    }
}

/// `kubectl apply` a YAML document in a namespace.
pub fn apply(namespace: &str, yaml: &str) {
    let run = kubectl(&["apply", "-n", namespace, "-f", "-"], Some(yaml));
    assert!(
        run.ok,
        "kubectl apply failed:\n{}{}\n{yaml}",
        run.stdout, run.stderr
    );
}

/// An object as JSON, or `None` when it does not exist.
pub fn get_json(namespace: &str, kind: &str, name: &str) -> Option<serde_json::Value> {
    let run = kubectl(&["get", "-n", namespace, kind, name, "-o", "json"], None);
    if !run.ok {
        assert!(
            run.stderr.contains("NotFound") || run.stderr.contains("not found"),
            "kubectl get {kind} {name}: {}",
            run.stderr
        );
        return None;
    }
    Some(serde_json::from_str(&run.stdout).expect("kubectl prints JSON"))
}

/// Lists objects of a kind as JSON items, with an optional label selector.
pub fn list_json(namespace: &str, kind: &str, selector: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["get", "-n", namespace, kind, "-o", "json"];
    if let Some(s) = selector {
        args.extend(["-l", s]);
    }
    let out = kubectl_ok(&args);
    let v: serde_json::Value = serde_json::from_str(&out).expect("kubectl prints JSON");
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The pods matching `selector` that are alive: not being deleted, and not ended (a pod the
/// kubelet evicted stays listed as Failed until someone deletes it).
pub fn live_pods(namespace: &str, selector: &str) -> Vec<serde_json::Value> {
    list_json(namespace, "pods", Some(selector))
        .into_iter()
        .filter(|p| {
            p["metadata"]["deletionTimestamp"].is_null()
                && !matches!(p["status"]["phase"].as_str(), Some("Failed" | "Succeeded"))
        })
        .collect()
}

/// Polls an object until `done` says so, and returns it; panics with the last state (and
/// `describe`) after `timeout`.
pub fn wait_for(
    namespace: &str,
    kind: &str,
    name: &str,
    timeout: std::time::Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = std::time::Instant::now();
    let mut last = None;
    while start.elapsed() < timeout {
        if let Some(v) = get_json(namespace, kind, name) {
            if done(&v) {
                return v;
            }
            last = Some(v);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let describe = kubectl(&["describe", "-n", namespace, kind, name], None);
    panic!(
        "{kind} {namespace}/{name}: not {what} after {timeout:?}.\nlast state: {}\n{}",
        last.map(|v| serde_json::to_string_pretty(&v["status"]).unwrap())
            .unwrap_or_default(),
        describe.stdout
    );
}
