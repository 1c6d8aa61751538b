//! A Git source on the real cluster: a `git daemon` on the address the pods reach the host by
//! (the registry's), a plan pod that resolves the ref, and a build pod that fetches exactly that
//! commit; the commit lands in `status.revision`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kiln_tests::cluster::{Namespace, apply, list_json};
use kiln_tests::facts;

use crate::operator::{BUILD_TIMEOUT, base, pull, registry, wait_phase};

/// `git daemon` serving a directory of bare repositories, stopped on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Kiln E2E",
            "-c",
            "user.email=e2e@kiln.invalid",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn serve(base: &Path, host: &str) -> GitDaemon {
    let port = std::net::TcpListener::bind((host, 0))
        .expect("a free port on the registry's address")
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("git")
        .args([
            "daemon",
            "--reuseaddr",
            "--export-all",
            &format!("--listen={host}"),
            &format!("--port={port}"),
            &format!("--base-path={}", base.display()),
        ])
        .arg(base)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("git daemon starts");
    let started = Instant::now();
    while std::net::TcpStream::connect((host, port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "git daemon never listened on {host}:{port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    GitDaemon { child, port }
}

#[test]
fn a_git_source_builds_the_commit_its_ref_names() {
    let ns = Namespace::new("kiln-e2e-git");
    let reg = registry();
    let host = reg
        .rsplit_once(':')
        .map(|(h, _)| h)
        .unwrap_or(&reg)
        .to_string();

    // A repository whose `v1` tag and `main` branch differ, with the context in a subdirectory.
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("app")).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(
        work.join("app/Dockerfile"),
        format!("FROM {}\nCOPY hello.txt /hello.txt\n", base()),
    )
    .unwrap();
    std::fs::write(work.join("app/hello.txt"), "hello from v1\n").unwrap();
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "v1"]);
    git(&work, &["tag", "v1"]);
    let v1 = git(&work, &["rev-parse", "HEAD"]);
    std::fs::write(work.join("app/hello.txt"), "hello from main\n").unwrap();
    git(&work, &["commit", "-q", "-am", "later"]);
    let served = dir.path().join("served");
    std::fs::create_dir_all(&served).unwrap();
    let out = Command::new("git")
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(served.join("app.git"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon = serve(&served, &host);

    let image = format!("{reg}/e2e/git-{}:1", ns.name);
    apply(
        &ns.name,
        &format!(
            "apiVersion: kiln.dev/v1alpha1\nkind: ImageBuild\nmetadata:\n  name: from-git\nspec:\n  source:\n    git:\n      url: git://{host}:{}/app.git\n      revision: v1\n      subPath: app\n  output:\n    image: {image}\n    insecure: true\n",
            daemon.port
        ),
    );
    let ib = wait_phase(&ns.name, "from-git", "Succeeded", BUILD_TIMEOUT);
    assert_eq!(ib["status"]["revision"], v1.as_str(), "{}", ib["status"]);

    // A plan pod resolved the ref before the build pod ran.
    let roles: Vec<String> = list_json(&ns.name, "pods", None)
        .iter()
        .filter_map(|p| p["metadata"]["labels"]["kiln.dev/role"].as_str())
        .map(str::to_string)
        .collect();
    assert!(roles.iter().any(|r| r == "plan"), "{roles:?}");

    // The image holds the file as it was at v1, not at main.
    let pinned = ib["status"]["image"].as_str().unwrap();
    let pulled = tempfile::tempdir().unwrap();
    pull(pinned, pulled.path());
    let raw = facts::read_image(pulled.path(), None).unwrap();
    let f = facts::facts(&raw, &facts::Options::default()).unwrap();
    let hello = f
        .filesystem
        .iter()
        .find(|e| e.entry.path == "/hello.txt")
        .expect("/hello.txt is in the image");
    assert_eq!(
        hello.entry.sha256.as_deref(),
        Some(hex_sha256(b"hello from v1\n").as_str())
    );
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}
