//! The ImageBuild CRD on a real API server, as the Helm chart installed it: it accepts every
//! example, rejects the invalid manifests its schema can reject, and documents itself through
//! `kubectl explain`.

use kiln_tests::cluster::{Namespace, kubectl, kubectl_ok};
use kiln_tests::repo_root;

/// The CRD as the Helm chart installed it (`scripts/e2e` deploys Kiln with the chart first): on
/// this 1.20 cluster, rendered without its CEL rules (charts/kiln/README.md, "The CRD").
fn install_crd() {
    kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/imagebuilds.kiln.dev",
    ]);
    let labels = kubectl_ok(&[
        "get",
        "crd",
        "imagebuilds.kiln.dev",
        "-o",
        "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by} {.metadata.annotations.helm\\.sh/resource-policy}",
    ]);
    assert_eq!(
        labels, "Helm keep",
        "the CRD is the chart's, kept on uninstall"
    );
}

fn yaml_files(dir: &str) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_is_accepted_by_a_server_side_dry_run() {
    install_crd();
    let ns = Namespace::new("kiln-e2e-examples");
    let gitops = [repo_root().join("examples/gitops/app/imagebuild.yaml")];
    for file in yaml_files("examples").into_iter().chain(gitops) {
        let run = kubectl(
            &[
                "apply",
                "--dry-run=server",
                "-n",
                &ns.name,
                "-f",
                file.to_str().unwrap(),
            ],
            None,
        );
        assert!(run.ok, "{} was rejected:\n{}", file.display(), run.stderr);
        assert!(
            run.stdout.contains("(server dry run)"),
            "{}: {}",
            file.display(),
            run.stdout
        );
    }
}

#[test]
fn invalid_manifests_are_rejected_by_the_api_server() {
    install_crd();
    let ns = Namespace::new("kiln-e2e-invalid");
    let mut checked = 0;
    for file in yaml_files("tests/fixtures/invalid") {
        let text = std::fs::read_to_string(&file).unwrap();
        let header = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("# {key}: ")))
                .unwrap()
                .to_string()
        };
        // Kubernetes 1.20 ignores CEL rules: those are tested through validate_cel() and the
        // operator's validation; here only the structural schema is the server's to enforce.
        if !header("rejected-by")
            .split_whitespace()
            .any(|l| l == "schema")
        {
            continue;
        }
        let path = header("path");
        // --validate=false: the point is what the API server rejects, not kubectl's own check.
        let run = kubectl(
            &[
                "apply",
                "--dry-run=server",
                "--validate=false",
                "-n",
                &ns.name,
                "-f",
                file.to_str().unwrap(),
            ],
            None,
        );
        assert!(!run.ok, "{} was accepted:\n{}", file.display(), run.stdout);
        assert!(
            run.stderr.contains(&path),
            "{}: the error does not name {path}:\n{}",
            file.display(),
            run.stderr
        );
        checked += 1;
    }
    assert!(
        checked >= 15,
        "only {checked} schema-invalid manifests checked"
    );
}

#[test]
fn kubectl_explain_prints_our_docs() {
    install_crd();
    // The API server publishes a new CRD's schema to its OpenAPI document asynchronously.
    let mut last = String::new();
    for _ in 0..30 {
        let run = kubectl(&["explain", "imagebuild.spec.cache"], None);
        if run.ok
            && run
                .stdout
                .contains("Persistent volumes for `RUN --mount=type=cache`")
        {
            assert!(run.stdout.contains("defaultSize"));
            assert!(run.stdout.contains("registry"));
            return;
        }
        last = format!("{}{}", run.stdout, run.stderr);
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    panic!("kubectl explain imagebuild.spec.cache never showed our docs:\n{last}");
}

#[test]
fn kubectl_get_by_short_name_shows_the_printer_columns() {
    install_crd();
    let ns = Namespace::new("kiln-e2e-get");
    let example = repo_root().join("examples/url.yaml");
    kubectl_ok(&["apply", "-n", &ns.name, "-f", example.to_str().unwrap()]);
    let out = kubectl_ok(&["get", "ib", "-n", &ns.name]);
    let header = out.lines().next().unwrap_or_default();
    for column in ["NAME", "PHASE", "IMAGE", "DIGEST", "AGE", "DURATION"] {
        assert!(
            header.contains(column),
            "column {column} missing from:\n{out}"
        );
    }
    assert!(out.contains("registry.example.com/demo/app:1.4.0"), "{out}");
    // Defaults from the schema were applied by the server.
    let spec = kubectl_ok(&[
        "get",
        "ib",
        "from-tarball",
        "-n",
        &ns.name,
        "-o",
        "jsonpath={.spec.dockerfile} {.spec.securityProfile}",
    ]);
    assert_eq!(spec, "Dockerfile rootless");
}
