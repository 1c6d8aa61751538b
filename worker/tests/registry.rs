//! Registries end to end: `kiln build` pulls its bases from, and pushes its results to, a real
//! `docker-registry` on loopback, plain or TLS, with or without basic auth, directly or through
//! a proxy that injects faults. The base image is busybox, built by Kiln itself and pushed.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{Env, ROOTLESS_USER, text};
use kiln_tests::proxy::{FaultProxy, Faults};
use kiln_tests::registry::{Config, Registry};
use kiln_worker::digest::Digest;

const BASE_REPO: &str = "kiln/busybox";

/// `kiln build` with a state directory of its own and `args`, on `ctx`.
fn build(env: &Env, state: &str, ctx: &Path, args: &[String]) -> Output {
    build_env(env, state, ctx, args, &[])
}

fn build_env(env: &Env, state: &str, ctx: &Path, args: &[String], envs: &[(&str, &str)]) -> Output {
    let mut all = vec![
        "build".to_string(),
        format!("--cache-dir={}", env.dir.join(state).display()),
    ];
    if !args.iter().any(|a| a.starts_with("--progress")) {
        all.push("--progress=plain".into());
    }
    all.extend(args.iter().cloned());
    all.push(ctx.display().to_string());
    env.kiln_env(&all, envs)
}

fn metadata(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Make a file readable by the rootless user.
fn share(env: &Env, path: &Path) {
    if env.rootless {
        Command::new("chown")
            .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
            .arg(path)
            .status()
            .unwrap();
    }
}

/// Build the busybox base with Kiln and push it as `HOST/kiln/busybox:1`; return its digest.
fn seed(env: &Env, host: &str, extra: &[String]) -> String {
    let meta = env
        .dir
        .join(format!("seed-{}.json", host.replace(':', "_")));
    let mut args = vec![
        "-t".to_string(),
        format!("{host}/{BASE_REPO}:1"),
        "--push".into(),
        format!("--metadata-file={}", meta.display()),
    ];
    args.extend(extra.iter().cloned());
    let out = build(env, "state-seed", &env.dir.join("base"), &args);
    assert!(out.status.success(), "seeding the base:\n{}", text(&out));
    metadata(&meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn insecure(host: &str) -> String {
    format!("--insecure-registry={host}")
}

const APP: &str = "FROM BASE AS build\n\
RUN echo built > /built.txt\n\
FROM BASE\n\
COPY --from=build /built.txt /built.txt\n\
COPY hello.txt /hello.txt\n\
CMD [\"cat\", \"/hello.txt\"]\n";

fn app(env: &Env, name: &str, base: &str) -> PathBuf {
    env.context(
        name,
        &[
            ("Dockerfile", &APP.replace("BASE", base)),
            ("hello.txt", "hello from the registry\n"),
        ],
    )
}

/// The manifest digest skopeo finds after copying `image` into an OCI layout.
fn skopeo_copy_digest(reg: &Registry, image: &str, dest: &Path) -> String {
    let out = Command::new("skopeo")
        .arg("copy")
        .args(reg.skopeo_flags("src-", None))
        .arg(format!("docker://{image}"))
        .arg(format!("oci:{}:copied", dest.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", text(&out));
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn seed_build_push_pull_back(env: &Env) {
    let reg = Registry::plain();
    let host = reg.host();
    let base_digest = seed(env, &host, &[insecure(&host)]);
    assert!(reg.has_tag(BASE_REPO, "1"));

    let ctx = app(env, "app", &format!("{host}/{BASE_REPO}:1"));
    let meta = env.dir.join("app.json");
    let out = build(
        env,
        "state-app",
        &ctx,
        &[
            insecure(&host),
            "-t".into(),
            format!("{host}/kiln/app:1"),
            "-t".into(),
            format!("{host}/kiln/app:stable"),
            "--push".into(),
            format!("--metadata-file={}", meta.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let m = metadata(&meta);
    let digest = m["containerimage.digest"].as_str().unwrap().to_string();
    assert!(
        text(&out).contains(&format!("pushed {host}/kiln/app:stable@{digest}")),
        "{}",
        text(&out)
    );
    assert_eq!(
        m["image.name"],
        format!("{host}/kiln/app:1,{host}/kiln/app:stable")
    );
    // The base layer came from another repository of this registry: it is mounted, not sent.
    assert_eq!(m["kiln.push"]["mounted"], 1, "{m}");
    assert!(reg.has_tag("kiln/app", "1") && reg.has_tag("kiln/app", "stable"));

    let copied = env.dir.join("copied");
    assert_eq!(
        skopeo_copy_digest(&reg, &format!("{host}/kiln/app:stable"), &copied),
        digest
    );
    let bundle = env.dir.join("bundle");
    let unpack = Command::new("umoci")
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:copied", copied.display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(unpack.status.success(), "{}", text(&unpack));
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/built.txt")).unwrap(),
        "built\n"
    );
    assert!(bundle.join("rootfs/bin/busybox").exists());

    // A pin by digest pulls the same base; the layers are shared through the store.
    let pinned = app(env, "pinned", &format!("{host}/{BASE_REPO}@{base_digest}"));
    let out = build(
        env,
        "state-app",
        &pinned,
        &[
            insecure(&host),
            format!(
                "--output=type=local,dest={}",
                env.dir.join("pinned-fs").display()
            ),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(env.dir.join("pinned-fs/hello.txt").exists());
}

#[test]
fn seed_build_push_and_pull_back_as_root() {
    seed_build_push_pull_back(&Env::new("registry-root", false));
}

#[test]
fn seed_build_push_and_pull_back_rootless() {
    seed_build_push_pull_back(&Env::new("registry-rootless", true));
}

/// Write an OCI layout whose `index.json` names an index (tag `multi`) over the manifests
/// of `images`, each `(manifest digest, platform)`; manifests for a platform other than the
/// image's own get a rewritten config.
fn write_index(layout: &Path, images: &[(String, &str)]) {
    let blob = |d: &str| {
        layout
            .join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let put = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        std::fs::write(blob(d.as_str()), bytes).unwrap();
        d
    };
    let mut entries = vec![];
    for (manifest_digest, platform) in images {
        let (os, arch) = platform.split_once('/').unwrap();
        let mut manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blob(manifest_digest)).unwrap()).unwrap();
        let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(blob(&config_digest)).unwrap()).unwrap();
        config["architecture"] = arch.into();
        config["os"] = os.into();
        let config_bytes = serde_json::to_vec(&config).unwrap();
        let cd = put(&config_bytes);
        manifest["config"]["digest"] = cd.as_str().into();
        manifest["config"]["size"] = config_bytes.len().into();
        let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
        let md = put(&manifest_bytes);
        entries.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": md.as_str(),
            "size": manifest_bytes.len(),
            "platform": {"architecture": arch, "os": os},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": entries,
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let id = put(&index_bytes);
    let top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": id.as_str(),
            "size": index_bytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi"},
        }],
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
}

fn layout_digest(layout: &Path, tag: &str) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

fn skopeo_push_all(reg: &Registry, layout: &Path, dest: &str, format: Option<&str>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--all"]);
    if let Some(f) = format {
        cmd.args(["--format", f]);
    }
    let out = cmd
        .args(reg.skopeo_flags("dest-", None))
        .arg(format!("oci:{}:multi", layout.display()))
        .arg(format!("docker://{dest}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy --all: {}", text(&out));
}

#[test]
fn multi_platform_indexes_pick_this_platform_or_fail_clearly() {
    let env = Env::new("registry-index", false);
    let reg = Registry::plain();
    let host = reg.host();
    seed(&env, &host, &[insecure(&host)]);
    let here = kiln_worker::image::oci::Platform::host();
    let here = format!("{}/{}", here.os, here.architecture);

    // Two multi-layer images, one of them relabelled for other platforms.
    let layout = env.dir.join("multi-layout");
    for (tag, word) in [("here", "native"), ("there", "foreign")] {
        let ctx = env.context(
            &format!("plat-{tag}"),
            &[(
                "Dockerfile",
                &format!(
                    "FROM {host}/{BASE_REPO}:1\nRUN echo {word} > /platform\nRUN echo second > /second\n"
                ),
            )],
        );
        let out = build(
            &env,
            "state-index",
            &ctx,
            &[
                insecure(&host),
                "-t".into(),
                format!("multi:{tag}"),
                format!("--output=type=oci,dest={}", layout.display()),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
    }
    let (native, foreign) = (
        layout_digest(&layout, "here"),
        layout_digest(&layout, "there"),
    );
    write_index(
        &layout,
        &[
            (foreign.clone(), "linux/s390x"),
            (native.clone(), &here),
            (foreign.clone(), "linux/ppc64le"),
        ],
    );
    skopeo_push_all(&reg, &layout, &format!("{host}/kiln/multi:1"), None);
    skopeo_push_all(
        &reg,
        &layout,
        &format!("{host}/kiln/multi-docker:1"),
        Some("v2s2"),
    );
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", "--tls-verify=false"])
        .arg(format!("docker://{host}/kiln/multi-docker:1"))
        .output()
        .unwrap();
    assert!(
        text(&raw).contains("application/vnd.docker.distribution.manifest.list.v2+json"),
        "{}",
        text(&raw)
    );

    for repo in ["kiln/multi", "kiln/multi-docker"] {
        let ctx = env.context(
            "use-multi",
            &[(
                "Dockerfile",
                &format!("FROM {host}/{repo}:1\nRUN cat /platform /second > /seen\n"),
            )],
        );
        let fs = env.dir.join(format!("fs-{}", repo.replace('/', "-")));
        let out = build(
            &env,
            &format!("state-{}", repo.replace('/', "-")),
            &ctx,
            &[
                insecure(&host),
                format!("--output=type=local,dest={}", fs.display()),
            ],
        );
        assert!(out.status.success(), "{repo}: {}", text(&out));
        assert_eq!(
            std::fs::read_to_string(fs.join("seen")).unwrap(),
            "native\nsecond\n",
            "{repo}"
        );
    }

    // An index without this platform.
    write_index(
        &layout,
        &[(foreign.clone(), "linux/s390x"), (foreign, "linux/ppc64le")],
    );
    skopeo_push_all(&reg, &layout, &format!("{host}/kiln/elsewhere:1"), None);
    let ctx = env.context(
        "elsewhere",
        &[(
            "Dockerfile",
            &format!("FROM {host}/kiln/elsewhere:1\nRUN true\n"),
        )],
    );
    let out = build(&env, "state-elsewhere", &ctx, &[insecure(&host)]);
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains(&format!(
            "{host}/kiln/elsewhere:1: no manifest for platform {here}; the image has: linux/s390x, linux/ppc64le"
        )),
        "{msg}"
    );
}

#[test]
fn zstd_and_uncompressed_layers_are_pulled() {
    let env = Env::new("registry-formats", false);
    let reg = Registry::plain();
    let host = reg.host();
    for compression in ["zstd", "uncompressed"] {
        let repo = format!("kiln/busybox-{compression}");
        let out = build(
            &env,
            "state-formats-seed",
            &env.dir.join("base"),
            &[
                insecure(&host),
                format!("--compression={compression}"),
                "-t".into(),
                format!("{host}/{repo}:1"),
                "--push".into(),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let raw = Command::new("skopeo")
            .args(["inspect", "--raw", "--tls-verify=false"])
            .arg(format!("docker://{host}/{repo}:1"))
            .output()
            .unwrap();
        let want = match compression {
            "zstd" => "application/vnd.oci.image.layer.v1.tar+zstd",
            _ => "application/vnd.oci.image.layer.v1.tar\"",
        };
        assert!(text(&raw).contains(want), "{}", text(&raw));
        let ctx = app(
            &env,
            &format!("app-{compression}"),
            &format!("{host}/{repo}:1"),
        );
        let fs = env.dir.join(format!("fs-{compression}"));
        let out = build(
            &env,
            &format!("state-formats-{compression}"),
            &ctx,
            &[
                insecure(&host),
                format!("--output=type=local,dest={}", fs.display()),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        assert!(fs.join("bin/busybox").exists() && fs.join("built.txt").exists());
    }
}

const USER: &str = "kiln-user";
const PASSWORD: &str = "pw-9f3c1b7e-never-print-me";

/// A docker config.json with `user:password` for `host`, readable by whoever builds.
fn auth_file(env: &Env, name: &str, host: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let dir = env.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    share(env, &dir);
    path
}

fn assert_no_secret(out: &Output, password: &str) {
    use base64::Engine as _;
    let all = text(out);
    assert!(!all.contains(password), "the password leaked:\n{all}");
    for user in [USER, "someone"] {
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        assert!(!all.contains(&b64), "the auth string leaked:\n{all}");
    }
}

fn tls_and_auth(env: &Env) {
    let reg = Registry::start(Config {
        tls: true,
        users: vec![(USER.into(), PASSWORD.into())],
        token: false,
    });
    let host = reg.host();
    let ca = env.dir.join("ca.crt");
    std::fs::copy(reg.ca.as_ref().unwrap(), &ca).unwrap();
    share(env, &ca);
    let good = auth_file(env, "auth-good", &host, USER, PASSWORD);

    // Push with --registry-ca and --registry-auth-file.
    seed(
        env,
        &host,
        &[
            format!("--registry-ca={}", ca.display()),
            format!("--registry-auth-file={}", good.display()),
        ],
    );
    assert!(reg.has_tag(BASE_REPO, "1"));

    // Pull and push with a certs.d directory and DOCKER_CONFIG instead.
    let certs = env.dir.join("certs.d");
    std::fs::create_dir_all(certs.join(&host)).unwrap();
    std::fs::copy(&ca, certs.join(&host).join("ca.crt")).unwrap();
    share(env, &certs);
    let ctx = app(env, "tls-app", &format!("{host}/{BASE_REPO}:1"));
    let docker_config = good.parent().unwrap().display().to_string();
    let out = build_env(
        env,
        "state-tls",
        &ctx,
        &[
            format!("--registry-certs-dir={}", certs.display()),
            "-t".into(),
            format!("{host}/kiln/tls-app:1"),
            "--push".into(),
        ],
        &[("DOCKER_CONFIG", &docker_config)],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_no_secret(&out, PASSWORD);
    assert!(reg.has_tag("kiln/tls-app", "1"));
    let copied = env.dir.join("tls-copied");
    let out = Command::new("skopeo")
        .arg("copy")
        .args(reg.skopeo_flags("src-", Some((USER, PASSWORD))))
        .arg(format!("docker://{host}/kiln/tls-app:1"))
        .arg(format!("oci:{}:x", copied.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));

    // Without the CA, a registry on loopback is still reached over TLS, its certificate
    // unchecked, as dockerd does (the certificate check of other registries is in
    // `loopback_registries_need_no_flag`).
    let out = build(
        env,
        "state-tls-noca",
        &ctx,
        &[format!("--registry-auth-file={}", good.display())],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Wrong credentials: a clear 401 that names the image and the file, and no secret.
    let wrong_password = "wrong-5e1d0c2a-secret";
    let bad = auth_file(env, "auth-bad", &host, USER, wrong_password);
    let out = build(
        env,
        "state-tls-bad",
        &ctx,
        &[
            format!("--registry-ca={}", ca.display()),
            format!("--registry-auth-file={}", bad.display()),
        ],
    );
    assert!(!out.status.success());
    let msg = text(&out);
    assert!(
        msg.contains(&format!("{host}/{BASE_REPO}:1: 401 Unauthorized"))
            && msg.contains("refused the credentials from")
            && msg.contains(&bad.display().to_string()),
        "{msg}"
    );
    assert_no_secret(&out, wrong_password);
    // The same when pushing.
    let out = build(
        env,
        "state-tls-bad-push",
        &env.dir.join("base"),
        &[
            format!("--registry-ca={}", ca.display()),
            format!("--registry-auth-file={}", bad.display()),
            "-t".into(),
            format!("{host}/kiln/denied:1"),
            "--push".into(),
            "--progress=json".into(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("{host}/kiln/denied:1: 401 Unauthorized")),
        "{}",
        text(&out)
    );
    assert_no_secret(&out, wrong_password);
    assert!(!reg.has_tag("kiln/denied", "1"));

    // No credentials at all.
    let out = build(
        env,
        "state-tls-anon",
        &ctx,
        &[format!("--registry-ca={}", ca.display())],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("no credentials for {host} were found")),
        "{}",
        text(&out)
    );
}

/// dockerd's rule: a registry on loopback (`localhost`, `127.0.0.0/8`, `::1`) is reached
/// without `--insecure-registry`: over TLS when it answers TLS (its certificate unchecked),
/// else over plain HTTP. Any other registry stays TLS with a checked certificate unless named.
#[test]
fn loopback_registries_need_no_flag() {
    let env = Env::new("registry-loopback", false);
    // Plain HTTP on 127.0.0.1, as `localhost`, and on ::1: no flag needed.
    let reg = Registry::plain();
    let host = reg.host();
    seed(&env, &host, &[]);
    let port = reg.addr.port();
    let ctx = app(&env, "lo-app", &format!("localhost:{port}/{BASE_REPO}:1"));
    let out = build(
        &env,
        "state-lo",
        &ctx,
        &[
            "-t".into(),
            format!("localhost:{port}/kiln/lo:1"),
            "--push".into(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(reg.has_tag("kiln/lo", "1"));
    let v6 = Registry::start_on(Config::default(), "::1".parse().unwrap());
    let out = build(
        &env,
        "state-lo",
        &ctx,
        &[
            "-t".into(),
            format!("{}/kiln/lo:6", v6.host()),
            "--push".into(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(v6.has_tag("kiln/lo", "6"));

    // TLS on 127.0.0.1: reached over TLS (not downgraded), with or without its CA.
    let tls = Registry::start(Config {
        tls: true,
        ..Config::default()
    });
    let ca = env.dir.join("lo-ca.crt");
    std::fs::copy(tls.ca.as_ref().unwrap(), &ca).unwrap();
    let out = build(
        &env,
        "state-lo-tls",
        &env.dir.join("base"),
        &[
            format!("--registry-ca={}", ca.display()),
            "-t".into(),
            format!("{}/kiln/t:1", tls.host()),
            "--push".into(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let out = build(
        &env,
        "state-lo-tls",
        &env.dir.join("base"),
        &[
            "-t".into(),
            format!("{}/kiln/t:2", tls.host()),
            "--push".into(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    // (A TLS-only server: a success is a push over TLS.)
    assert!(tls.has_tag("kiln/t", "1") && tls.has_tag("kiln/t", "2"));

    // Off loopback: TLS with a checked certificate, and plain HTTP only when named.
    let Some(ip) = kiln_tests::registry::non_loopback_address() else {
        eprintln!("SKIPPED the off-loopback half: this machine has no non-loopback IPv4 address");
        return;
    };
    let far = Registry::start_on(
        Config {
            tls: true,
            ..Config::default()
        },
        ip,
    );
    let far_ca = env.dir.join("far-ca.crt");
    std::fs::copy(far.ca.as_ref().unwrap(), &far_ca).unwrap();
    let name = format!("{}/kiln/far:1", far.host());
    let out = build(
        &env,
        "state-far",
        &env.dir.join("base"),
        &["-t".into(), name.clone(), "--push".into()],
    );
    assert!(
        !out.status.success(),
        "an unchecked certificate was accepted off loopback"
    );
    assert!(
        text(&out).to_lowercase().contains("certificate"),
        "{}",
        text(&out)
    );
    let out = build(
        &env,
        "state-far",
        &env.dir.join("base"),
        &[
            format!("--registry-ca={}", far_ca.display()),
            "-t".into(),
            name,
            "--push".into(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let plain = Registry::start_on(Config::default(), ip);
    let name = format!("{}/kiln/far:2", plain.host());
    let out = build(
        &env,
        "state-far",
        &env.dir.join("base"),
        &["-t".into(), name.clone(), "--push".into()],
    );
    assert!(
        !out.status.success(),
        "plain HTTP was used off loopback without --insecure-registry"
    );
    assert!(!plain.has_tag("kiln/far", "2"));
    let out = build(
        &env,
        "state-far",
        &env.dir.join("base"),
        &[insecure(&plain.host()), "-t".into(), name, "--push".into()],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(plain.has_tag("kiln/far", "2"));
}

#[test]
fn tls_and_basic_auth_as_root() {
    tls_and_auth(&Env::new("registry-tls-root", false));
}

#[test]
fn tls_and_basic_auth_rootless() {
    tls_and_auth(&Env::new("registry-tls-rootless", true));
}

#[test]
fn credential_helpers_are_used() {
    let env = Env::new("registry-helper", false);
    let reg = Registry::start(Config {
        tls: false,
        users: vec![(USER.into(), PASSWORD.into())],
        token: false,
    });
    let host = reg.host();
    let bin = env.dir.join("helper-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-kilntest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\n[ \"$server\" = \"{host}\" ] || exit 1\nprintf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n"
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg_dir = env.dir.join("helper-config");
    std::fs::create_dir_all(&cfg_dir).unwrap();
    std::fs::write(
        cfg_dir.join("config.json"),
        format!(r#"{{"credHelpers":{{"{host}":"kilntest"}}}}"#),
    )
    .unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let out = build_env(
        &env,
        "state-helper",
        &env.dir.join("base"),
        &[
            insecure(&host),
            "-t".into(),
            format!("{host}/{BASE_REPO}:1"),
            "--push".into(),
        ],
        &[
            ("PATH", &path),
            ("DOCKER_CONFIG", &cfg_dir.display().to_string()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_no_secret(&out, PASSWORD);
    assert!(reg.has_tag(BASE_REPO, "1"));
}

/// An image with several layers of incompressible data, so that pushing it takes a while.
fn big_context(env: &Env, host: &str, name: &str) -> PathBuf {
    env.context(
        name,
        &[(
            "Dockerfile",
            &format!(
                "FROM {host}/{BASE_REPO}:1\n\
                 RUN head -c 3000000 /dev/urandom > /a\n\
                 RUN head -c 3000000 /dev/urandom > /b\n\
                 RUN head -c 3000000 /dev/urandom > /c\n"
            ),
        )],
    )
}

#[test]
fn a_registry_killed_mid_push_leaves_no_manifest_and_a_rerun_completes() {
    let env = Env::new("registry-kill", false);
    let mut reg = Registry::plain();
    let host = reg.host();
    seed(&env, &host, &[insecure(&host)]);
    let proxy = FaultProxy::start(
        reg.addr,
        Faults {
            kill_after: Some(("PUT /v2/kiln/big/blobs/uploads/".into(), reg.pid().unwrap())),
            ..Faults::default()
        },
    );
    let ph = proxy.host();
    // Pull the base directly; push through the proxy, which kills the registry as soon as it
    // has stored the first blob upload.
    let ctx = big_context(&env, &host, "big");
    let args = |meta: &Path| {
        vec![
            insecure(&host),
            insecure(&ph),
            "--registry-retries=2".to_string(),
            // The same config in both runs, so that any blob of the first counts.
            "--source-date-epoch=1700000000".into(),
            "-t".into(),
            format!("{ph}/kiln/big:1"),
            "--push".into(),
            format!("--metadata-file={}", meta.display()),
        ]
    };
    let out = build(&env, "state-kill", &ctx, &args(&env.dir.join("m1.json")));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("{ph}/kiln/big:1")),
        "{}",
        text(&out)
    );
    assert!(!reg.has_tag("kiln/big", "1"));
    assert_eq!(reg.manifest_count("kiln/big"), 0);

    reg.restart();
    let meta = env.dir.join("m2.json");
    let out = build(&env, "state-kill", &ctx, &args(&meta));
    assert!(out.status.success(), "{}", text(&out));
    assert!(reg.has_tag("kiln/big", "1"));
    let m = metadata(&meta);
    // The blob uploaded before the crash is not sent again.
    assert!(m["kiln.push"]["existing"].as_u64().unwrap() >= 1, "{m}");
    assert_eq!(
        m["kiln.push"]["uploaded"].as_u64().unwrap()
            + m["kiln.push"]["existing"].as_u64().unwrap()
            + m["kiln.push"]["mounted"].as_u64().unwrap(),
        5,
        "config + 4 layers: {m}"
    );
}

#[test]
fn blob_heads_that_keep_failing_fall_back_to_uploading() {
    let env = Env::new("registry-heads", false);
    let reg = Registry::plain();
    let host = reg.host();
    seed(&env, &host, &[insecure(&host)]);
    let proxy = FaultProxy::start(
        reg.addr,
        Faults {
            fail_blob_heads: true,
            ..Faults::default()
        },
    );
    let ph = proxy.host();
    let ctx = big_context(&env, &host, "heads");
    let meta = env.dir.join("m.json");
    let out = build(
        &env,
        "state-heads",
        &ctx,
        &[
            insecure(&host),
            insecure(&ph),
            "--registry-retries=2".to_string(),
            "-t".into(),
            format!("{ph}/kiln/heads:1"),
            "--push".into(),
            format!("--metadata-file={}", meta.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(reg.has_tag("kiln/heads", "1"));
    let m = metadata(&meta);
    assert_eq!(m["kiln.push"]["existing"].as_u64().unwrap(), 0, "{m}");
    assert!(proxy.injected().error_500 >= 5, "every blob HEAD failed");
}

#[test]
fn faults_are_survived_within_the_retry_budget() {
    let env = Env::new("registry-faults", false);
    let reg = Registry::plain();
    let host = reg.host();
    seed(&env, &host, &[insecure(&host)]);
    let proxy = FaultProxy::start(
        reg.addr,
        Faults {
            error_500: 0.15,
            throttle_429: 0.1,
            cut: 0.1,
            seed: 20240601,
            ..Faults::default()
        },
    );
    let ph = proxy.host();
    // Pull and push through the proxy, with the default retry policy.
    let ctx = big_context(&env, &ph, "faulty");
    let meta = env.dir.join("faulty.json");
    let out = build(
        &env,
        "state-faults",
        &ctx,
        &[
            insecure(&ph),
            "-t".into(),
            format!("{ph}/kiln/faulty:1"),
            "--push".into(),
            format!("--metadata-file={}", meta.display()),
        ],
    );
    let injected = proxy.injected();
    assert!(out.status.success(), "{injected:?}\n{}", text(&out));
    assert!(
        injected.error_500 > 0 && injected.throttle_429 > 0 && injected.cut > 0,
        "{injected:?} over {} requests",
        proxy.requests().len()
    );
    let digest = metadata(&meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();
    let copied = env.dir.join("faulty-copied");
    assert_eq!(
        skopeo_copy_digest(&reg, &format!("{host}/kiln/faulty:1"), &copied),
        digest
    );
}

/// The path of a blob in the registry's storage.
fn registry_blob(reg: &Registry, digest: &str) -> PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    reg.dir()
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data")
}

fn store_has(env: &Env, state: &str, digest: &str) -> bool {
    env.dir
        .join(state)
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
        .exists()
}

fn store_tmp_is_empty(env: &Env, state: &str) -> bool {
    std::fs::read_dir(env.dir.join(state).join("tmp"))
        .map(|d| d.count() == 0)
        .unwrap_or(true)
}

#[test]
fn corrupt_and_truncated_blobs_never_enter_the_store_and_pins_are_verified() {
    let env = Env::new("registry-corrupt", false);
    let reg = Registry::plain();
    let host = reg.host();
    let digest = seed(&env, &host, &[insecure(&host)]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry_blob(&reg, &digest)).unwrap()).unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = registry_blob(&reg, &layer);
    let good = std::fs::read(&path).unwrap();
    let ctx = app(&env, "corrupt", &format!("{host}/{BASE_REPO}:1"));

    // One byte changed, same length.
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    let out = build(&env, "state-corrupt", &ctx, &[insecure(&host)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "{host}/{BASE_REPO}:1: blob {layer} failed verification"
        )),
        "{}",
        text(&out)
    );
    assert!(!store_has(&env, "state-corrupt", &layer));
    assert!(!store_has(&env, "state-corrupt", Digest::of(&bad).as_str()));
    assert!(store_tmp_is_empty(&env, "state-corrupt"));

    // Truncated.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let out = build(&env, "state-corrupt", &ctx, &[insecure(&host)]);
    assert!(!out.status.success());
    assert!(text(&out).contains("failed verification"), "{}", text(&out));
    assert!(!store_has(&env, "state-corrupt", &layer));
    assert!(store_tmp_is_empty(&env, "state-corrupt"));

    // Restored, it pulls.
    std::fs::write(&path, &good).unwrap();
    let out = build(&env, "state-corrupt", &ctx, &[insecure(&host)]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(store_has(&env, "state-corrupt", &layer));

    // A pin whose manifest the registry serves altered is refused.
    let manifest_path = registry_blob(&reg, &digest);
    let original = std::fs::read(&manifest_path).unwrap();
    let mut altered = original.clone();
    altered.push(b'\n');
    std::fs::write(&manifest_path, &altered).unwrap();
    let pinned = app(&env, "pin", &format!("{host}/{BASE_REPO}@{digest}"));
    let out = build(&env, "state-pin", &pinned, &[insecure(&host)]);
    assert!(!out.status.success());
    assert!(text(&out).contains(&digest), "{}", text(&out));
    std::fs::write(&manifest_path, &original).unwrap();
    // A pin the registry does not have is a clear 404.
    let missing = format!("sha256:{}", "0".repeat(64));
    let ctx = app(
        &env,
        "pin-missing",
        &format!("{host}/{BASE_REPO}@{missing}"),
    );
    let out = build(&env, "state-pin", &ctx, &[insecure(&host)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!(
            "{host}/{BASE_REPO}@{missing}: not found in {host} (404)"
        )),
        "{}",
        text(&out)
    );
}

#[test]
fn a_push_skips_the_blobs_the_registry_has() {
    let env = Env::new("registry-skip", false);
    let reg = Registry::plain();
    let host = reg.host();
    seed(&env, &host, &[insecure(&host)]);
    let proxy = FaultProxy::recording(reg.addr);
    let ph = proxy.host();
    // The base is pulled through the proxy too, so the push can mount it from there.
    let ctx = big_context(&env, &ph, "skip");
    let push = |tag: &str, meta: &Path| {
        build(
            &env,
            "state-skip",
            &ctx,
            &[
                insecure(&host),
                insecure(&ph),
                "-t".into(),
                format!("{ph}/kiln/skip:{tag}"),
                "--push".into(),
                // The same config both times: only the tag differs.
                "--source-date-epoch=1700000000".into(),
                format!("--metadata-file={}", meta.display()),
            ],
        )
    };
    let out = push("1", &env.dir.join("s1.json"));
    assert!(out.status.success(), "{}", text(&out));
    let uploads = |reqs: &[String]| {
        reqs.iter()
            .filter(|r| r.starts_with("POST ") && r.contains("/blobs/uploads/"))
            .count()
    };
    // 3 new layers and the config are uploaded; the base layer is mounted.
    let reqs = proxy.requests();
    let mounts = reqs.iter().filter(|r| r.contains("?mount=sha256")).count();
    assert_eq!(mounts, 1, "{reqs:#?}");
    assert_eq!(uploads(&reqs) - mounts, 4, "{reqs:#?}");
    proxy.clear();
    let meta = env.dir.join("s2.json");
    let out = push("2", &meta);
    assert!(out.status.success(), "{}", text(&out));
    let reqs = proxy.requests();
    assert_eq!(uploads(&reqs), 0, "{reqs:#?}");
    assert_eq!(
        reqs.iter()
            .filter(|r| r.starts_with("HEAD ") && r.contains("/blobs/"))
            .count(),
        5,
        "{reqs:#?}"
    );
    let m = metadata(&meta);
    assert_eq!(m["kiln.push"]["existing"], 5, "{m}");
    assert_eq!(m["kiln.push"]["uploaded"], 0, "{m}");
    assert!(reg.has_tag("kiln/skip", "2"));
}

#[test]
fn bearer_token_auth_with_a_token_server() {
    let env = Env::new("registry-token", false);
    let reg = Registry::start(Config {
        tls: false,
        users: vec![(USER.into(), PASSWORD.into())],
        token: true,
    });
    let host = reg.host();
    let good = auth_file(&env, "token-good", &host, USER, PASSWORD);
    let auth = format!("--registry-auth-file={}", good.display());
    seed(&env, &host, &[insecure(&host), auth.clone()]);
    assert!(reg.has_tag(BASE_REPO, "1"));
    let tokens = reg.token.as_ref().unwrap();
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.contains("scope=repository%3Akiln%2Fbusybox%3Apull%2Cpush")),
        "{:#?}",
        tokens.requests()
    );

    // Pull with a pull token, push with a push token; the base layer cannot be mounted with a
    // token scoped to the target repository only, so it is uploaded.
    let ctx = app(&env, "token-app", &format!("{host}/{BASE_REPO}:1"));
    let meta = env.dir.join("token-app.json");
    let out = build(
        &env,
        "state-token",
        &ctx,
        &[
            insecure(&host),
            auth.clone(),
            "-t".into(),
            format!("{host}/kiln/token-app:1"),
            "--push".into(),
            format!("--metadata-file={}", meta.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_no_secret(&out, PASSWORD);
    assert!(reg.has_tag("kiln/token-app", "1"));
    let m = metadata(&meta);
    assert_eq!(
        (
            m["kiln.push"]["uploaded"].as_u64(),
            m["kiln.push"]["mounted"].as_u64()
        ),
        (Some(4), Some(0)),
        "config and 3 layers: {m}"
    );

    // The token server refuses a wrong password: a 401 that names the image, without secrets.
    let wrong = "wrong-token-pw-3b9d";
    let bad = auth_file(&env, "token-bad", &host, USER, wrong);
    let out = build(
        &env,
        "state-token-bad",
        &ctx,
        &[
            insecure(&host),
            format!("--registry-auth-file={}", bad.display()),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("{host}/{BASE_REPO}:1: 401 Unauthorized")),
        "{}",
        text(&out)
    );
    assert_no_secret(&out, wrong);
    // Anonymous: the token grants nothing.
    let out = build(&env, "state-token-anon", &ctx, &[insecure(&host)]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("no credentials for {host} were found")),
        "{}",
        text(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// The step cache in a registry

/// A two-stage build whose steps each leave a marker in the image when they run.
fn cached_app(env: &Env, name: &str, base: &str, source: &str) -> PathBuf {
    env.context(
        name,
        &[
            (
                "Dockerfile",
                &format!(
                    "FROM {base} AS build\n\
                     RUN head -c 2000000 /dev/urandom > /big && echo ran > /ran-build\n\
                     FROM {base}\n\
                     COPY --from=build /big /big\n\
                     RUN head -c 1000000 /dev/urandom > /two\n\
                     COPY src.txt /src.txt\n\
                     RUN cat /src.txt > /derived\n"
                ),
            ),
            ("src.txt", source),
        ],
    )
}

/// The layer digests of a manifest in the registry.
fn pushed_layers(reg: &Registry, manifest_digest: &str) -> Vec<String> {
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry_blob(reg, manifest_digest)).unwrap())
            .unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

fn blob_gets(reqs: &[String]) -> Vec<&String> {
    reqs.iter()
        .filter(|r| r.starts_with("GET ") && r.contains("/blobs/sha256:"))
        .collect()
}

#[test]
fn a_registry_cache_gives_a_fresh_cache_dir_its_hits_without_downloading_layers() {
    let env = Env::new("registry-cache", false);
    let reg = Registry::plain();
    let host = reg.host();
    seed(&env, &host, &[insecure(&host)]);
    let proxy = FaultProxy::recording(reg.addr);
    let ph = proxy.host();
    let base = format!("{ph}/{BASE_REPO}:1");
    let ctx = cached_app(&env, "rc", &base, "one\n");
    let run = |state: &str, ctx: &Path, extra: &[String]| {
        let meta = env.dir.join(format!("{state}.json"));
        let mut args = vec![
            insecure(&ph),
            "--source-date-epoch=1700000000".into(),
            format!("--metadata-file={}", meta.display()),
        ];
        args.extend(extra.iter().cloned());
        let out = build(&env, state, ctx, &args);
        assert!(out.status.success(), "{}", text(&out));
        (metadata(&meta), text(&out))
    };
    let cache = format!("{ph}/kiln/cache:app");

    // The first build runs every step, pushes the image and exports every step's result.
    let (first, _) = run(
        "rc-1",
        &ctx,
        &[
            format!("--cache-to=type=registry,ref={cache},mode=max"),
            "-t".into(),
            format!("{ph}/kiln/app:1"),
            "--push".into(),
        ],
    );
    assert_eq!(first["kiln.runs"], 3, "{first}");
    assert!(reg.has_tag("kiln/cache", "app"));
    let digest = first["containerimage.digest"].as_str().unwrap().to_string();
    let layers = pushed_layers(&reg, &digest);
    let cache_manifest = std::fs::read_to_string(reg.dir().join(
        "storage/docker/registry/v2/repositories/kiln/cache/_manifests/tags/app/current/link",
    ))
    .unwrap();
    let cache_manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry_blob(&reg, cache_manifest.trim())).unwrap())
            .unwrap();
    assert_eq!(
        cache_manifest["config"]["mediaType"],
        "application/vnd.kiln.cache.config.v1+json"
    );
    assert_eq!(
        cache_manifest["layers"].as_array().unwrap().len(),
        5,
        "mode=max: the build stage's RUN, and the four steps of the final stage: {cache_manifest}"
    );

    // A fresh cache dir, importing from the registry: every step hits, nothing runs, and the
    // push of the same image downloads no layer.
    proxy.clear();
    let (second, log) = run(
        "rc-2",
        &ctx,
        &[
            format!("--cache-from=type=registry,ref={cache}"),
            "-t".into(),
            format!("{ph}/kiln/app:2"),
            "--push".into(),
        ],
    );
    assert_eq!(second["kiln.runs"], 0, "{second}\n{log}");
    assert_eq!(second["kiln.cached"], second["kiln.steps"], "{second}");
    assert_eq!(second["containerimage.digest"], digest.as_str());
    assert!(log.contains("CACHED"), "{log}");
    let reqs = proxy.requests();
    for layer in &layers {
        assert!(
            !blob_gets(&reqs).iter().any(|r| r.contains(layer.as_str())),
            "layer {layer} was downloaded: {reqs:#?}"
        );
        assert!(!store_has(&env, "rc-2", layer), "{layer} is in the store");
    }
    assert_eq!(
        second["kiln.push"]["uploaded"], 0,
        "the registry has every blob: {second}"
    );
    assert!(reg.has_tag("kiln/app", "2"));

    // One source file changed: only the step that reads it runs, on the imported layers it
    // needs, which are downloaded now.
    let changed = cached_app(&env, "rc-changed", &base, "two\n");
    let out_dir = env.dir.join("rc-changed-fs");
    let (third, _) = run(
        "rc-3",
        &changed,
        &[
            format!("--cache-from=type=registry,ref={cache}"),
            format!("--output=type=local,dest={}", out_dir.display()),
        ],
    );
    assert_eq!(third["kiln.runs"], 1, "{third}");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("derived")).unwrap(),
        "two\n"
    );
    assert_eq!(
        std::fs::metadata(out_dir.join("big")).unwrap().len(),
        2_000_000
    );

    // No cache at that reference yet (a first build): a note, not a failure. An unreachable
    // cache registry is a warning: it costs hits, not the build.
    let (_, log) = run(
        "rc-4",
        &ctx,
        &[format!(
            "--cache-from=type=registry,ref={ph}/kiln/cache:nothing"
        )],
    );
    assert!(log.contains("no cache to import"), "{log}");
    let dead = format!("127.0.0.1:{}", kiln_tests::registry::free_port());
    let (fourth, log) = run(
        "rc-4",
        &ctx,
        &[
            insecure(&dead),
            format!("--cache-from=type=registry,ref={dead}/kiln/cache:app"),
        ],
    );
    assert!(
        log.contains(&format!("warning: --cache-from {dead}/kiln/cache:app")),
        "{log}"
    );
    assert_eq!(
        fourth["kiln.cached"], fourth["kiln.steps"],
        "the local cache still serves"
    );

    // A cache export that fails fails the build, naming the destination, unless the user
    // said ignore-error=true.
    let to_dead = format!("--cache-to=type=registry,ref={dead}/kiln/cache:app");
    let failed = build(
        &env,
        "rc-4",
        &ctx,
        &[
            insecure(&ph),
            insecure(&dead),
            "--registry-retries=1".into(),
            to_dead.clone(),
        ],
    );
    assert!(!failed.status.success());
    assert!(
        text(&failed).contains(&format!("--cache-to {dead}/kiln/cache:app")),
        "{}",
        text(&failed)
    );
    let (_, log) = run(
        "rc-4",
        &ctx,
        &[
            insecure(&dead),
            "--registry-retries=1".into(),
            format!("{to_dead},ignore-error=true"),
        ],
    );
    assert!(log.contains("warning: cache export failed"), "{log}");
}

#[test]
fn an_inline_cache_rides_in_the_image_config() {
    let env = Env::new("registry-inline", false);
    let reg = Registry::plain();
    let host = reg.host();
    seed(&env, &host, &[insecure(&host)]);
    let ctx = env.context(
        "inline",
        &[(
            "Dockerfile",
            &format!(
                "FROM {host}/{BASE_REPO}:1\n\
                 RUN echo one > /one\n\
                 RUN echo two > /two\n\
                 ENV A=b\n"
            ),
        )],
    );
    let image = format!("{host}/kiln/inline:1");
    let run = |state: &str, extra: &[String]| {
        let meta = env.dir.join(format!("{state}.json"));
        let mut args = vec![
            insecure(&host),
            format!("--metadata-file={}", meta.display()),
        ];
        args.extend(extra.iter().cloned());
        let out = build(&env, state, &ctx, &args);
        assert!(out.status.success(), "{}", text(&out));
        metadata(&meta)
    };
    let first = run(
        "inline-1",
        &[
            "--cache-to=type=inline".into(),
            "-t".into(),
            image.clone(),
            "--push".into(),
        ],
    );
    assert_eq!(first["kiln.runs"], 2);
    let config = first["containerimage.config.digest"].as_str().unwrap();
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(registry_blob(&reg, config)).unwrap()).unwrap();
    let records = config["kiln.cache.v1"]["records"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{config}");
    assert!(
        config["config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "A=b"),
        "the config is otherwise the image's: {config}"
    );

    // Without the option the config carries no cache.
    let plain =
        run(
            "inline-2",
            &["--output=type=oci,dest=".to_string()
                + &env.dir.join("plain-oci").display().to_string()],
        );
    let config = plain["containerimage.config.digest"].as_str().unwrap();
    let config = std::fs::read_to_string(
        env.dir
            .join("plain-oci/blobs/sha256")
            .join(config.trim_start_matches("sha256:")),
    )
    .unwrap();
    assert!(!config.contains("kiln.cache"), "{config}");

    // A fresh cache dir importing from the image itself (a bare reference) hits both RUNs.
    let second = run("inline-3", &[format!("--cache-from={image}")]);
    assert_eq!(second["kiln.runs"], 0, "{second}");
    assert_eq!(second["kiln.imported"], 2, "{second}");

    // Pushed to another registry, which has none of the blobs: the lazy base layer and the
    // imported layers are downloaded (verified) and uploaded, and the image reads back whole.
    let other = Registry::plain();
    let oh = other.host();
    let third = run(
        "inline-4",
        &[
            insecure(&oh),
            format!("--cache-from={image}"),
            "-t".into(),
            format!("{oh}/kiln/elsewhere:1"),
            "--push".into(),
        ],
    );
    assert_eq!(third["kiln.runs"], 0, "{third}");
    let digest = third["containerimage.digest"].as_str().unwrap();
    let layers = pushed_layers(&other, digest);
    assert_eq!(layers.len(), 3, "the base layer and two RUN layers");
    assert_eq!(third["kiln.push"]["uploaded"], 4, "{third}");
    let copied = env.dir.join("inline-elsewhere");
    assert_eq!(
        skopeo_copy_digest(&other, &format!("{oh}/kiln/elsewhere:1"), &copied),
        digest
    );
}
