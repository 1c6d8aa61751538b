//! Secrets across every channel Kiln writes to on a cluster (issue 16, item 4).
//!
//! Dockerfiles try to leak a build secret that comes from a Kubernetes Secret: they print it
//! (plain, through an `env=` mount, in a failing step), mount it where a layer would catch it,
//! name it in `ENV` and `LABEL`, and copy it by hand into the image and into a cache mount.
//! Then everything Kiln wrote is scanned for the value: every blob the registry holds for the
//! image and for its registry cache export (manifests, configs, layers decompressed), the cache
//! claim's files, the worker pods' logs and termination messages, the ImageBuilds' status and
//! Events, and the operator's log.
//!
//! The boundary (SECURITY.md, "Secrets on Kubernetes"): a step that writes the secret into its
//! own filesystem or a cache mount by hand puts it there, and Kiln does not undo that. The
//! scans find the hand-made copies exactly where the Dockerfile put them, and nowhere else:
//! which also proves that each scan can find the value at all.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_tests::cluster::{Namespace, apply, get_json, kubectl, kubectl_ok, list_json};
use kiln_tests::facts;
use serde_json::Value;

use crate::operator::{
    BUILD_TIMEOUT, base, inline_build, operator_namespace, pods_of, ready_reason, registry,
    wait_phase,
};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `curl` against the e2e registry (plain HTTP); `None` on a 404.
fn registry_get(path: &str, accept: &str) -> Option<Vec<u8>> {
    let out = Command::new("curl")
        .args(["-s", "-L", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Accept: {accept}"))
        .arg(format!("http://{}/v2/{path}", registry()))
        .output()
        .expect("curl runs");
    let mut body = out.stdout;
    let nl = body
        .iter()
        .rposition(|b| *b == b'\n')
        .expect("curl wrote the code");
    let code = String::from_utf8_lossy(&body[nl + 1..]).trim().to_string();
    body.truncate(nl);
    match code.as_str() {
        "200" => Some(body),
        "404" => None,
        other => panic!("GET /v2/{path}: HTTP {other}"),
    }
}

const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Every document and blob the registry serves for `reference` (a tag or a digest) of
/// `repository`, reached from its manifest: child manifests, configs, layers. Layers come
/// decompressed. Each item is (what, bytes).
fn registry_objects(repository: &str, reference: &str) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut manifests = vec![reference.to_string()];
    while let Some(r) = manifests.pop() {
        let doc = registry_get(&format!("{repository}/manifests/{r}"), MANIFEST_TYPES)
            .unwrap_or_else(|| panic!("{repository}:{r} is not in the registry"));
        let json: Value = serde_json::from_slice(&doc).expect("a manifest is JSON");
        out.push((format!("manifest {r}"), doc.clone()));
        for m in json["manifests"].as_array().into_iter().flatten() {
            let d = m["digest"].as_str().unwrap().to_string();
            if seen.insert(d.clone()) {
                manifests.push(d);
            }
        }
        let blobs = json["layers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(json.get("config"));
        for b in blobs {
            let d = b["digest"].as_str().unwrap().to_string();
            if !seen.insert(d.clone()) {
                continue;
            }
            let bytes = registry_get(&format!("{repository}/blobs/{d}"), "*/*")
                .unwrap_or_else(|| panic!("blob {d} of {repository} is missing"));
            let bytes = facts::decompress(bytes.clone()).unwrap_or(bytes);
            out.push((format!("blob {d} ({})", b["mediaType"]), bytes));
        }
    }
    out
}

/// The paths, inside a layer, of the regular files whose content holds `needle`; `None` when
/// the bytes are not a tar.
fn tar_files_with(layer: &[u8], needle: &[u8]) -> Option<Vec<String>> {
    let mut archive = tar::Archive::new(layer);
    let mut found = Vec::new();
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).ok()?;
        if contains(&data, needle) {
            found.push(path);
        }
    }
    Some(found)
}

/// The paths of a layer's entries; `None` when the bytes are not a tar.
fn tar_paths(layer: &[u8]) -> Option<Vec<String>> {
    let mut archive = tar::Archive::new(layer);
    let mut paths = Vec::new();
    for entry in archive.entries().ok()? {
        paths.push(entry.ok()?.path().ok()?.to_string_lossy().into_owned());
    }
    Some(paths)
}

/// The directory on this node that backs a claim (the test kit's hostPath provisioner).
fn claim_dir(ns: &str, claim: &str) -> PathBuf {
    let pvc = get_json(ns, "pvc", claim).expect("the cache claim exists");
    let volume = pvc["spec"]["volumeName"]
        .as_str()
        .expect("the claim is bound");
    let pv: Value = serde_json::from_str(&kubectl_ok(&["get", "pv", volume, "-o", "json"]))
        .expect("kubectl prints JSON");
    let path = pv["spec"]["hostPath"]["path"].as_str().unwrap_or_else(|| {
        panic!("volume {volume} is not a hostPath volume: the claim scan reads the node's disk, as on the test kit")
    });
    PathBuf::from(path)
}

/// Every file under `dir` (relative paths) whose content or name holds `needle`, and how many
/// files were read.
fn files_with(dir: &Path, needle: &[u8]) -> (Vec<String>, usize) {
    let mut found = Vec::new();
    let mut read = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let rel = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if contains(rel.as_bytes(), needle) {
                found.push(rel.clone());
            }
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                read += 1;
                if contains(&std::fs::read(&path).unwrap(), needle) {
                    found.push(rel);
                }
            }
        }
    }
    (found, read)
}

/// Everything a pod shows: its spec and status (termination messages included) and the logs
/// of all its containers.
fn pod_text(ns: &str, pod: &Value) -> String {
    let name = pod["metadata"]["name"].as_str().unwrap();
    let logs = kubectl_ok(&["logs", "-n", ns, name, "--all-containers", "--tail=-1"]);
    format!("{pod}\n{logs}")
}

#[test]
fn a_build_secret_reaches_no_channel_kiln_writes_to() {
    let ns = Namespace::new("kiln-e2e-leak");
    // Built at run time so that nothing in the repository, the Dockerfiles or the manifests
    // holds the value itself.
    let secret = format!("kiln-leak-{}-{:x}", std::process::id(), rand_u64());
    apply(
        &ns.name,
        &format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: leak-token\nstringData:\n  token: {secret}\n"
        ),
    );
    let secrets = "  secrets:\n    - id: tok\n      secretRef: {name: leak-token, key: token}\n";
    let repository = format!("e2e/leak-{}", ns.name);
    let cache_ref = format!("{}/{repository}:buildcache", registry());
    let image = format!("{}/{repository}:1", registry());
    // Every way a Dockerfile could hope that Kiln carries the value somewhere for it.
    let dockerfile = format!(
        "FROM {base} AS sneaky\n\
         RUN --mount=type=secret,id=tok cat /run/secrets/tok && echo \"again: $(cat /run/secrets/tok)\" >&2\n\
         RUN --mount=type=secret,id=tok,env=TOK echo \"env: $TOK\" && env | grep TOK= || true\n\
         RUN --mount=type=secret,id=tok,target=/app/token test -s /app/token && mkdir -p /app && echo made > /app/other\n\
         ENV LEAK_ENV=\"${{TOK}}\" FROM_FILE=\"$(cat /run/secrets/tok)\"\n\
         LABEL leak.label=\"$(cat /run/secrets/tok)\" leak.env=\"${{TOK}}\"\n\
         RUN --mount=type=secret,id=tok --mount=type=cache,id=leaky,target=/c \
         cp /run/secrets/tok /c/copied-by-hand && ls -la /c\n\
         FROM sneaky\n\
         RUN --mount=type=secret,id=tok cp /run/secrets/tok /copied-by-hand\n",
        base = base()
    );
    apply(
        &ns.name,
        &inline_build(
            "leaky",
            &image,
            &[("Dockerfile", &dockerfile)],
            &format!("{secrets}  cache:\n    registry: {{ref: \"{cache_ref}\", mode: max}}\n"),
        ),
    );
    // A step that fails after printing the value: its log tail becomes the status message,
    // the termination message and an Event.
    let failing = format!(
        "FROM {}\nRUN --mount=type=secret,id=tok echo \"token=$(cat /run/secrets/tok)\" >&2 && cat /run/secrets/tok && exit 3\n",
        base()
    );
    apply(
        &ns.name,
        &inline_build(
            "failing",
            &format!("{}/{repository}:failing", registry()),
            &[("Dockerfile", &failing)],
            secrets,
        ),
    );

    let ok = wait_phase(&ns.name, "leaky", "Succeeded", BUILD_TIMEOUT);
    let failed = wait_phase(&ns.name, "failing", "Failed", BUILD_TIMEOUT);
    assert_eq!(ready_reason(&failed), "StepFailed");
    let message = failed["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("token=****"),
        "the failing step's output is not in the status, redacted: {message}"
    );
    let needle = secret.as_bytes();

    // The registry: the image (manifest, config, layers) and the cache export. The only copy
    // is the file the last RUN wrote by hand.
    let digest = ok["status"]["digest"].as_str().unwrap();
    let mut hand_made = Vec::new();
    let image_objects = registry_objects(&repository, digest);
    let cache_objects = registry_objects(&repository, "buildcache");
    assert!(
        cache_objects.len() > 2,
        "the registry cache export has no layers: {:?}",
        cache_objects.iter().map(|o| &o.0).collect::<Vec<_>>()
    );
    for (what, bytes) in image_objects.iter().chain(&cache_objects) {
        if !contains(bytes, needle) {
            continue;
        }
        let files = tar_files_with(bytes, needle)
            .unwrap_or_else(|| panic!("the secret is in {what}, which is not a layer"));
        assert_eq!(
            files,
            ["copied-by-hand"],
            "the secret is in {what} at paths other than the one the Dockerfile wrote by hand"
        );
        hand_made.push(what.clone());
    }
    assert!(
        hand_made
            .iter()
            .any(|w| image_objects.iter().any(|o| &o.0 == w)),
        "the scan did not find the copy the Dockerfile made by hand in the image: it proves nothing"
    );
    // The secret mount's target and the env= mount left nothing behind; ENV and LABEL did not
    // evaluate anything.
    let config = image_objects
        .iter()
        .find(|(_, b)| serde_json::from_slice::<Value>(b).is_ok_and(|v| v["rootfs"].is_object()))
        .map(|(_, b)| serde_json::from_slice::<Value>(b).unwrap())
        .expect("the image has a config");
    let env = config["config"]["Env"].to_string();
    assert!(env.contains("LEAK_ENV=") && !env.contains("TOK="), "{env}");
    assert_eq!(
        config["config"]["Labels"]["leak.label"],
        "$(cat /run/secrets/tok)"
    );
    let layers: Vec<&Vec<u8>> = image_objects
        .iter()
        .filter(|(w, _)| w.contains("layer"))
        .map(|(_, b)| b)
        .collect();
    for layer in &layers {
        let paths = tar_paths(layer).expect("a layer is a tar");
        assert!(
            !paths
                .iter()
                .any(|p| p.trim_end_matches('/').ends_with("app/token")),
            "the secret mount's target /app/token is in a layer: {paths:?}"
        );
    }

    // The cache claim: only the file the step copied there by hand.
    let claim = ok["status"]["caches"][0]["claimName"]
        .as_str()
        .expect("the build used a cache claim")
        .to_string();
    let (found, read) = files_with(&claim_dir(&ns.name, &claim), needle);
    assert!(
        read > 0,
        "the cache claim holds no file: the scan proves nothing"
    );
    assert!(
        found.len() == 1 && found[0].ends_with("copied-by-hand"),
        "the secret is in the cache claim's {found:?}, not only in the file the step wrote by hand"
    );

    // The pods (logs of every container, termination messages, specs), the ImageBuilds'
    // status and Events, the operator's log.
    for build in ["leaky", "failing"] {
        let pods = pods_of(&ns.name, build);
        assert!(!pods.is_empty(), "no pod for {build}");
        for pod in &pods {
            let text = pod_text(&ns.name, pod);
            assert!(
                !contains(text.as_bytes(), needle),
                "the secret is in pod {} (spec, status or logs)",
                pod["metadata"]["name"]
            );
            assert!(
                text.contains("****"),
                "pod {}: the printed secret was not shown redacted: the scan proves nothing",
                pod["metadata"]["name"]
            );
        }
        let ib = get_json(&ns.name, "imagebuild", build).unwrap();
        assert!(
            !ib.to_string().contains(&secret),
            "the secret is in ImageBuild {build}"
        );
    }
    let terminated = pods_of(&ns.name, "failing")[0]["status"]["containerStatuses"][0]["state"]
        ["terminated"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        terminated.contains("StepFailed"),
        "no termination message: {terminated}"
    );
    let events = list_json(&ns.name, "events", None);
    assert!(
        events.iter().any(|e| e["reason"] == "StepFailed"),
        "no StepFailed Event: the Event scan proves nothing"
    );
    assert!(
        !Value::Array(events).to_string().contains(&secret),
        "the secret is in an Event"
    );
    let run = kubectl(
        &[
            "logs",
            "-n",
            &operator_namespace(),
            "deploy/kiln-operator",
            "--tail=-1",
        ],
        None,
    );
    assert!(
        run.ok && !run.stdout.is_empty(),
        "no operator log: {}",
        run.stderr
    );
    assert!(
        !run.stdout.contains(&secret),
        "the secret is in the operator's log"
    );
}

/// A value no earlier run used: the clock's nanoseconds mixed with the process id.
fn rand_u64() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    nanos ^ (u64::from(std::process::id()) << 32)
}
