//! Multi-platform builds with a real foreign base: Debian's arm64 `busybox-static`, built into
//! an image by Kiln (`FROM scratch` + `ADD` of its root filesystem, `--platform linux/arm64`)
//! and pushed to a registry on loopback; then a two-platform build whose arm64 RUN steps run
//! under QEMU user emulation (binfmt_misc), with a `FROM --platform=$BUILDPLATFORM` stage that
//! runs once, checked from outside with `skopeo inspect --raw`.
//!
//! The emulation needs `qemu-user-static` (make test installs it) and a binfmt_misc handler
//! with the fix-binary flag (`kiln binfmt --install`, which the test runs as root when it is
//! missing, as CI does). The test skips, saying why, only when the kernel or the sandbox the
//! tests run in cannot register one.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use common::{Env, ROOTLESS_USER, kiln_bin, repo, text};
use kiln_tests::registry::Registry;

/// Whether linux/arm64 programs run here (registering QEMU's handler as root when needed);
/// `false`, with the reason printed, when the kernel cannot.
fn arm64_runs() -> bool {
    assert!(
        Path::new("/usr/bin/qemu-aarch64-static").exists(),
        "qemu-user-static is missing: make test installs it (scripts/ensure-packages qemu-user-static)"
    );
    let check = || {
        Command::new(kiln_bin())
            .args(["binfmt", "--platform", "linux/arm64"])
            .output()
            .unwrap()
    };
    if check().status.success() {
        return true;
    }
    let install = Command::new(kiln_bin())
        .args(["binfmt", "--install", "--platform", "linux/arm64"])
        .output()
        .unwrap();
    let after = check();
    if after.status.success() {
        return true;
    }
    assert!(
        !install.status.success(),
        "kiln binfmt --install succeeded, yet linux/arm64 still cannot run:\n{}\n{}",
        text(&install),
        text(&after)
    );
    eprintln!(
        "SKIPPED: this kernel (or the sandbox the tests run in) cannot register a binfmt_misc handler for linux/arm64:\n{}{}",
        text(&install),
        text(&after)
    );
    false
}

/// Debian's arm64 busybox-static, unpacked: the path of its `bin/busybox`.
fn arm64_busybox(dir: &Path) -> PathBuf {
    let out = Command::new(repo().join("scripts/fetch-foreign-busybox"))
        .arg("arm64")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fetching busybox-static:arm64: {}",
        text(&out)
    );
    let deb = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let unpacked = dir.join("busybox-arm64");
    let x = Command::new("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&unpacked)
        .output()
        .unwrap();
    assert!(x.status.success(), "dpkg-deb -x {deb}: {}", text(&x));
    unpacked.join("bin/busybox")
}

/// The reference root filesystem as a tarball, with `busybox` (another architecture's) in it.
fn rootfs_tar(dir: &Path, name: &str, busybox: Option<&Path>) -> PathBuf {
    let tree = dir.join(format!("{name}-tree"));
    let tar = dir.join(format!("{name}.tar"));
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("tests/reference/base/mkrootfs.sh"))
        .arg(&tree)
        .arg(&tar);
    if let Some(b) = busybox {
        cmd.env("BUSYBOX", b);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "mkrootfs: {}", text(&out));
    tar
}

fn build(env: &Env, state: &str, ctx: &Path, args: &[String]) -> Output {
    let mut all = vec![
        "build".to_string(),
        "--progress=plain".into(),
        format!("--cache-dir={}", env.dir.join(state).display()),
    ];
    all.extend(args.iter().cloned());
    all.push(ctx.display().to_string());
    env.kiln(&all)
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes));
    })
}

/// `skopeo inspect --raw` of an image (or `--config` with `config`).
fn skopeo_raw(image: &str, config: bool) -> serde_json::Value {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw", "--tls-verify=false"]);
    if config {
        cmd.arg("--config");
    }
    let out = cmd.arg(format!("docker://{image}")).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        text(&out)
    );
    json(&out.stdout)
}

const APP: &str = "FROM --platform=$BUILDPLATFORM REG/kiln/busybox:multi AS build
RUN uname -m > /build-arch && echo shared-step-ran
ARG TARGETARCH
RUN echo \"$TARGETARCH\" > /target-arch
FROM REG/kiln/busybox:multi
COPY --from=build /build-arch /target-arch /
RUN uname -m > /run-arch && grep -E '^(Seccomp|NoNewPrivs|CapEff|CapBnd):' /proc/self/status > /sandbox && echo \"ran on $(uname -m)\"
";

#[test]
fn two_platforms_from_a_foreign_base_into_one_index() {
    let env = Env::new("multiplatform", false);
    if !arm64_runs() {
        return;
    }
    let reg = Registry::plain();
    let host = reg.host();
    let fixtures = env.dir.join("fixtures");
    std::fs::create_dir_all(&fixtures).unwrap();
    let busybox = arm64_busybox(&fixtures);

    // The bases, built by Kiln: arm64 alone, then one index over amd64 and arm64. No
    // --insecure-registry: the registry is on loopback.
    let basectx = env.context(
        "base",
        &[(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nADD rootfs-$TARGETARCH.tar /\n",
        )],
    );
    std::fs::rename(
        rootfs_tar(&fixtures, "amd64", None),
        basectx.join("rootfs-amd64.tar"),
    )
    .unwrap();
    std::fs::rename(
        rootfs_tar(&fixtures, "arm64", Some(&busybox)),
        basectx.join("rootfs-arm64.tar"),
    )
    .unwrap();
    let out = build(
        &env,
        "state-base",
        &basectx,
        &[
            "--platform=linux/arm64".into(),
            "-t".into(),
            format!("{host}/kiln/busybox-arm64:1"),
            "--push".into(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let m = skopeo_raw(&format!("{host}/kiln/busybox-arm64:1"), false);
    assert_eq!(
        m["mediaType"], "application/vnd.oci.image.manifest.v1+json",
        "{m}"
    );
    let c = skopeo_raw(&format!("{host}/kiln/busybox-arm64:1"), true);
    assert_eq!(
        (c["os"].as_str(), c["architecture"].as_str()),
        (Some("linux"), Some("arm64")),
        "{c}"
    );
    let out = build(
        &env,
        "state-base",
        &basectx,
        &[
            "--platform=linux/amd64,linux/arm64".into(),
            "-t".into(),
            format!("{host}/kiln/busybox:multi"),
            "--push".into(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));

    // The app: a build stage on the build platform, the final stage on each target.
    let ctx = env.context("app", &[("Dockerfile", &APP.replace("REG", &host))]);
    let meta = env.dir.join("app.json");
    let layout = env.dir.join("app-layout");
    let args = vec![
        "--platform=linux/amd64,linux/arm64".to_string(),
        "--source-date-epoch=1700000000".into(),
        "-t".into(),
        format!("{host}/kiln/app:1"),
        "--push".into(),
        format!("--output=type=oci,dest={}", layout.display()),
        format!("--metadata-file={}", meta.display()),
    ];
    let started = Instant::now();
    let out = build(&env, "state-app", &ctx, &args);
    let seconds = started.elapsed().as_secs_f64();
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    eprintln!("two-platform build (amd64 native, arm64 emulated), cold: {seconds:.1}s");
    let m = json(&std::fs::read(&meta).unwrap());
    // The build stage's first RUN is shared: 1 run; the RUN after ARG TARGETARCH runs once per
    // platform, natively; the final RUN once per platform, arm64's emulated.
    assert_eq!(m["kiln.runs"], 5, "{m}\n{log}");
    assert_eq!(
        m["kiln.platforms"],
        serde_json::json!(["linux/amd64", "linux/arm64"])
    );
    assert!(m.get("containerimage.config.digest").is_none(), "{m}");
    assert_eq!(
        log.matches("RUN uname -m > /build-arch").count(),
        1,
        "the shared step shows once:\n{log}"
    );
    assert!(
        log.contains("[linux/amd64->arm64 build 3/3] RUN echo"),
        "{log}"
    );
    assert!(log.contains("[linux/amd64 build 3/3] RUN echo"), "{log}");
    assert!(
        log.contains("[linux/arm64 stage-1 3/3] RUN uname -m"),
        "{log}"
    );
    assert!(
        log.contains("ran on aarch64") && log.contains("ran on x86_64"),
        "{log}"
    );
    assert!(
        log.contains("RUN steps for linux/arm64: emulated by qemu-aarch64"),
        "{log}"
    );

    // The registry holds an index with both platforms, each a manifest whose config says it.
    let digest = m["containerimage.digest"].as_str().unwrap().to_string();
    let index = skopeo_raw(&format!("{host}/kiln/app:1"), false);
    assert_eq!(
        index["mediaType"], "application/vnd.oci.image.index.v1+json",
        "{index}"
    );
    let entries = index["manifests"].as_array().unwrap();
    let platforms: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["platform"]["os"].as_str().unwrap(),
                e["platform"]["architecture"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{index}");
    let mut files = vec![];
    for (e, arch) in entries.iter().zip(["amd64", "arm64"]) {
        let by_digest = format!("{host}/kiln/app@{}", e["digest"].as_str().unwrap());
        let config = skopeo_raw(&by_digest, true);
        assert_eq!(config["architecture"], arch, "{config}");
        // What the image holds, unpacked by Kiln itself from the registry.
        let fs = env.dir.join(format!("fs-{arch}"));
        let probe = env.context(
            &format!("probe-{arch}"),
            &[("Dockerfile", &format!("FROM {by_digest}\n"))],
        );
        let out = build(
            &env,
            "state-probe",
            &probe,
            &[
                format!("--platform=linux/{arch}"),
                format!("--output=type=local,dest={}", fs.display()),
            ],
        );
        assert!(out.status.success(), "{}", text(&out));
        let read = |f: &str| {
            std::fs::read_to_string(fs.join(f))
                .unwrap()
                .trim()
                .to_string()
        };
        files.push((
            read("run-arch"),
            read("build-arch"),
            read("target-arch"),
            read("sandbox"),
        ));
    }
    assert_eq!(
        (
            files[0].0.as_str(),
            files[0].1.as_str(),
            files[0].2.as_str()
        ),
        ("x86_64", "x86_64", "amd64")
    );
    assert_eq!(
        (
            files[1].0.as_str(),
            files[1].1.as_str(),
            files[1].2.as_str()
        ),
        ("aarch64", "x86_64", "arm64")
    );
    // Under emulation, the step keeps the sandbox: the same seccomp mode, no_new_privs and
    // capabilities as a native step.
    assert_eq!(
        files[0].3, files[1].3,
        "the emulated step's sandbox differs"
    );
    assert!(
        files[1].3.contains("Seccomp:\t2") && files[1].3.contains("NoNewPrivs:\t1"),
        "{}",
        files[1].3
    );

    // The OCI layout holds the same index, named by the tag.
    let top = json(&std::fs::read(layout.join("index.json")).unwrap());
    assert_eq!(top["manifests"][0]["digest"], digest.as_str(), "{top}");
    assert_eq!(
        top["manifests"][0]["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let out = Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci:{}:1", layout.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(json(&out.stdout), index);

    // Again: every step cached, the same index (SOURCE_DATE_EPOCH).
    let out = build(&env, "state-app", &ctx, &args);
    assert!(out.status.success(), "{}", text(&out));
    let again = json(&std::fs::read(&meta).unwrap());
    assert_eq!(again["kiln.runs"], 0, "{again}");
    assert_eq!(again["containerimage.digest"], digest.as_str());

    // A docker-archive holds one platform: refused before anything runs, saying why.
    let out = build(
        &env,
        "state-app",
        &ctx,
        &[
            "--platform=linux/amd64,linux/arm64".into(),
            format!(
                "--output=type=docker,dest={}",
                env.dir.join("x.tar").display()
            ),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("a docker-archive holds the image of one platform"),
        "{}",
        text(&out)
    );

    // Both platforms' filesystems, split by platform as BuildKit's local exporter does.
    let split = env.dir.join("split");
    let out = build(
        &env,
        "state-app",
        &ctx,
        &[
            "--platform=linux/amd64,linux/arm64".into(),
            format!("--output=type=local,dest={}", split.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(split.join("linux_arm64/run-arch")).unwrap(),
        "aarch64\n"
    );
    assert_eq!(
        std::fs::read_to_string(split.join("linux_amd64/run-arch")).unwrap(),
        "x86_64\n"
    );

    // Rootless: the emulated step runs in the user namespace's sandbox too.
    common::ensure_rootless_user();
    let rootless = Env {
        dir: env.dir.join("rootless"),
        state: env.dir.join("rootless/state"),
        base: env.base.clone(),
        rootless: true,
        extra_args: vec![],
    };
    let rctx = rootless.context(
        "arm",
        &[(
            "Dockerfile",
            &format!("FROM {host}/kiln/busybox:multi\nRUN uname -m > /m\n"),
        )],
    );
    let rout = rootless.dir.join("out");
    std::fs::create_dir_all(&rootless.dir).unwrap();
    Command::new("chown")
        .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
        .arg(&rootless.dir)
        .status()
        .unwrap();
    let out = build(
        &rootless,
        "state",
        &rctx,
        &[
            "--platform=linux/arm64".into(),
            format!("--output=type=local,dest={}", rout.display()),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_to_string(rout.join("m")).unwrap(),
        "aarch64\n"
    );
    std::mem::forget(rootless);
}

/// A platform whose programs the kernel runs natively but the sandbox's filter refuses
/// (i386 on amd64) fails before any step runs, saying so.
#[cfg(target_arch = "x86_64")]
#[test]
fn a_platform_that_cannot_run_fails_before_the_build() {
    let env = Env::new("multiplatform-386", false);
    let ctx = env.context(
        "c",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN true\n")],
    );
    let out = env.build(&ctx, &["--platform=linux/amd64,linux/386"]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(
        t.contains("cannot run the RUN steps of every platform") && t.contains("linux/386: this kernel runs its programs natively, but the RUN step's seccomp filter"),
        "{t}"
    );
    assert!(!t.contains("] RUN true"), "a step started:\n{t}");
}
