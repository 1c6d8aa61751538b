//! The README's "Kiln on Kubernetes" commands, run as written. `scripts/e2e` has already done the
//! first one (`make deploy`); the others run here in bash, from the repository's root, in the
//! `default` namespace as a reader's would. The dev registry they start gets a directory and a
//! port of its own, and is stopped at the end.

use std::process::Command;

use kiln_tests::cluster::{get_json, kubectl};
use kiln_tests::repo_root;

/// The commands of the README's first ```sh block under "## Kiln on Kubernetes".
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = readme
        .split("## Kiln on Kubernetes")
        .nth(1)
        .expect("README.md has a section \"Kiln on Kubernetes\"");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section has a ```sh block");
    block
        .lines()
        .map(|l| match l.find("  #") {
            Some(i) => l[..i].trim_end().to_string(),
            None => l.trim_end().to_string(),
        })
        .filter(|l| !l.is_empty())
        .collect()
}

struct Cleanup {
    registry_dir: tempfile::TempDir,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(
            &[
                "delete",
                "-n",
                "default",
                "imagebuild/quickstart",
                "secret/quickstart-token",
                "--ignore-not-found",
            ],
            None,
        );
        let _ = Command::new(repo_root().join("scripts/dev-registry"))
            .arg("--stop")
            .env("KILN_DEV_REGISTRY_DIR", self.registry_dir.path())
            .status();
    }
}

#[test]
fn the_readme_first_build_works_as_written() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 5, "five commands: {commands:?}");
    assert_eq!(
        commands[0], "make deploy",
        "scripts/e2e deploys before the suite"
    );
    let cleanup = Cleanup {
        registry_dir: tempfile::tempdir().unwrap(),
    };
    // A build left over from an earlier run would make `kubectl wait` pass at once.
    let _ = kubectl(
        &[
            "delete",
            "-n",
            "default",
            "imagebuild/quickstart",
            "--ignore-not-found",
            "--wait",
        ],
        None,
    );
    let port = Command::new(repo_root().join("scripts/free-port"))
        .output()
        .unwrap();
    let port = String::from_utf8(port.stdout).unwrap().trim().to_string();
    let script = format!(
        "set -euo pipefail\n{}\nkubectl get ib\nskopeo inspect --tls-verify=false \"docker://$REGISTRY/demo/hello:1.0.0\" >/dev/null\n",
        commands[1..].join("\n")
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(repo_root())
        .env("KILN_DEV_REGISTRY_DIR", cleanup.registry_dir.path())
        .env("KILN_DEV_REGISTRY_PORT", &port)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the README's commands failed:\n{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("condition met"),
        "kubectl wait did not report Ready: {stdout}"
    );
    let ib = get_json("default", "imagebuild", "quickstart").expect("the quickstart build");
    assert_eq!(ib["status"]["phase"], "Succeeded", "{}", ib["status"]);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("quickstart "))
        .unwrap_or_else(|| panic!("kubectl get ib does not list quickstart: {stdout}"));
    assert!(line.contains("Succeeded"), "{line}");
    drop(cleanup);
}
