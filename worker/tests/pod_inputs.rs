//! A build's inputs as a worker pod gets them from Kubernetes: Secret volumes (a tmpfs, mounted
//! read-only, files owned by root and readable through the pod's `fsGroup` only, each key a
//! symlink into a `..data` directory) for build secrets, ssh keys and dockerconfigjson
//! registry credentials, with `kiln` running as an unprivileged user that belongs to that
//! group. Rootless Kiln reads them from inside its user namespace, where the group is not
//! mapped: the kernel still checks the real group, so they stay readable.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use common::{Env, ROOTLESS_USER, kiln_bin, text};
use kiln_tests::registry::{Config, Registry};
use kiln_worker::result::{BuildResult, Reason};

/// The pod's `fsGroup`: a group the rootless user is not otherwise in.
const FS_GROUP: u32 = 4321;
const USER: &str = "kiln-pod";
const PASSWORD: &str = "pw-pod-6a0f2e";
const SECRET: &str = "tok-3b9e77-from-a-secret-volume";

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("pod-inputs", true))
}

fn dockerconfigjson(host: &str, password: &str) -> String {
    common::docker_config_json(host, USER, password)
}

/// Files for one Secret volume: key → content.
struct Volume<'a> {
    name: &'a str,
    files: Vec<(&'a str, String)>,
}

/// A shell script that lays out Secret volumes under `root` as the kubelet does (a
/// timestamped directory, `..data` pointing at it, each key a symlink through `..data`), on a
/// tmpfs that ends up read-only, owned by root:FS_GROUP with modes 0440 and 0750.
fn volumes_script(root: &Path, volumes: &[Volume<'_>]) -> String {
    let root = root.display();
    let mut s =
        format!("set -e\nmkdir -p {root}\nmount -t tmpfs -o size=1m,mode=0750 tmpfs {root}\n");
    for v in volumes {
        let dir = format!("{root}/{}", v.name);
        s.push_str(&format!(
            "mkdir -p {dir}/..2026_01_01_00_00_00.1\nln -s ..2026_01_01_00_00_00.1 {dir}/..data\n"
        ));
        for (key, content) in &v.files {
            let file = format!("{dir}/..2026_01_01_00_00_00.1/{key}");
            s.push_str(&format!("cat > {file} <<'KILN_EOF'\n{content}\nKILN_EOF\n"));
            s.push_str(&format!("ln -s ..data/{key} {dir}/{key}\n"));
        }
    }
    s.push_str(&format!(
        "chown -R 0:{FS_GROUP} {root}\n\
         find {root} -type d -exec chmod 0750 {{}} +\n\
         find {root} -type f -exec chmod 0440 {{}} +\n\
         mount -o remount,ro {root}\n"
    ));
    s
}

/// Run `kiln` as the rootless user, with FS_GROUP as a supplementary group when `fs_group`,
/// after `setup` (as root) in a mount namespace of its own.
fn kiln_in_pod(env: &Env, setup: &str, fs_group: bool, args: &[String]) -> Output {
    let groups = if fs_group {
        format!("--groups {FS_GROUP}")
    } else {
        "--clear-groups".to_string()
    };
    let mut quoted = String::new();
    for a in args {
        quoted.push_str(&format!(" '{}'", a.replace('\'', "'\\''")));
    }
    let script = format!(
        "{setup}exec setpriv --reuid {ROOTLESS_USER} --regid {ROOTLESS_USER} {groups} {kiln}{quoted}",
        kiln = kiln_bin().display()
    );
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("HOME", env.dir.join("home"))
        .output()
        .unwrap()
}

fn result(path: &Path, out: &Output) -> BuildResult {
    let raw =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("no result: {e}\n{}", text(out)));
    serde_json::from_str(&raw).unwrap()
}

#[test]
fn secret_volumes_on_a_read_only_group_readable_tmpfs_work_rootless() {
    let env = env();
    let reg = Registry::start(Config {
        users: vec![(USER.into(), PASSWORD.into())],
        ..Config::default()
    });
    let host = reg.host();
    let insecure = format!("--insecure-registry={host}");

    // The base in the registry, pushed as root with a plain config.json.
    let seed_auth = env.dir.join("seed-auth.json");
    std::fs::write(&seed_auth, dockerconfigjson(&host, PASSWORD)).unwrap();
    let base = format!("{host}/kiln/busybox:1");
    let out = env.kiln(&[
        "build".into(),
        "--progress=plain".into(),
        format!("--cache-dir={}", env.dir.join("state-seed").display()),
        insecure.clone(),
        format!("--registry-auth-file={}", seed_auth.display()),
        "-t".into(),
        base.clone(),
        "--push".into(),
        env.dir.join("base").display().to_string(),
    ]);
    assert!(out.status.success(), "seeding: {}", text(&out));

    let key = env.dir.join("id_ed25519");
    let _ = std::fs::remove_file(&key);
    let keygen = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(keygen.status.success(), "{}", text(&keygen));
    let key_text = std::fs::read_to_string(&key).unwrap();

    let mounts = env.dir.join("pod-volumes");
    let volumes = [
        Volume {
            name: "build-secrets",
            files: vec![("npmrc", SECRET.to_string()), ("other", "x".into())],
        },
        Volume {
            name: "ssh-github",
            files: vec![("ssh-privatekey", key_text.trim_end().to_string())],
        },
        // Two dockerconfigjson Secrets: the pull secret has no entry for the registry, the
        // push secret has one; the first file with an entry wins.
        Volume {
            name: "pull-secret",
            files: vec![(
                ".dockerconfigjson",
                dockerconfigjson("elsewhere.example:5000", "nope"),
            )],
        },
        Volume {
            name: "push-secret",
            files: vec![(".dockerconfigjson", dockerconfigjson(&host, PASSWORD))],
        },
        Volume {
            name: "wrong-secret",
            files: vec![(".dockerconfigjson", dockerconfigjson(&host, "wrong-pw"))],
        },
    ];
    let setup = volumes_script(&mounts, &volumes);
    // The Dockerfile names the secret by its digest: its value must appear nowhere.
    let sum = kiln_worker::digest::Digest::of(format!("{SECRET}\n").as_bytes());
    let sum = sum.hex();
    let ctx = env.context(
        "pod-inputs",
        &[(
            "Dockerfile",
            &format!(
                "FROM {base}\n\
                 RUN --mount=type=secret,id=npmrc,required=true \\\n    \
                 sha256sum /run/secrets/npmrc | grep -q {sum} && echo secret-ok > /secret-ok\n\
                 RUN --mount=type=ssh,id=github,required=true test -S \"$SSH_AUTH_SOCK\" && echo ssh-ok > /ssh-ok\n"
            ),
        )],
    );
    let results = env.dir.join("pod-results");
    std::fs::create_dir_all(&results).unwrap();
    Command::new("chown")
        .arg(format!("{ROOTLESS_USER}:{ROOTLESS_USER}"))
        .arg(&results)
        .status()
        .unwrap();
    let args = |name: &str, auth: &[&str]| -> (Vec<String>, PathBuf) {
        let path = results.join(format!("{name}.json"));
        let _ = std::fs::remove_file(&path);
        let mut a = vec![
            "build".to_string(),
            "--progress=plain".into(),
            format!(
                "--cache-dir={}",
                env.dir.join(format!("state-{name}")).display()
            ),
            insecure.clone(),
            format!("--secrets-dir={}", mounts.join("build-secrets").display()),
            format!(
                "--ssh=github={}",
                mounts.join("ssh-github/ssh-privatekey").display()
            ),
            format!("--result-file={}", path.display()),
            "-t".into(),
            format!("{host}/kiln/pod-inputs:{name}"),
            "--push".into(),
        ];
        for v in auth {
            a.push(format!("--registry-auth-file={}", mounts.join(v).display()));
        }
        a.push(ctx.display().to_string());
        (a, path)
    };

    // In the group: the secret, the key and both credential files are read; the push lands.
    let (a, path) = args("ok", &["pull-secret", "push-secret"]);
    let out = kiln_in_pod(env, &setup, true, &a);
    assert!(out.status.success(), "{}", text(&out));
    assert!(matches!(result(&path, &out), BuildResult::Success(_)));
    assert!(reg.has_tag("kiln/pod-inputs", "ok"));
    assert!(!text(&out).contains(SECRET), "{}", text(&out));

    // The first file with an entry for the registry wins, even when a later one is right.
    let (a, path) = args("first-wins", &["wrong-secret", "push-secret"]);
    let out = kiln_in_pod(env, &setup, true, &a);
    assert!(!out.status.success());
    match result(&path, &out) {
        BuildResult::Failure(f) => assert_eq!(f.reason, Reason::RegistryAuth, "{f:?}"),
        s => panic!("{s:?}"),
    }

    // Not in the group: nothing is readable, and the result says what is missing.
    let (a, path) = args("no-group", &["pull-secret", "push-secret"]);
    let out = kiln_in_pod(env, &setup, false, &a);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("Permission denied"), "{}", text(&out));
    match result(&path, &out) {
        BuildResult::Failure(f) => assert_eq!(f.reason, Reason::MissingSecret, "{f:?}"),
        s => panic!("{s:?}"),
    }
}
