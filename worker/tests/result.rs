//! The worker's result (`--result-file`, docs/worker-result.md) from real builds: what the
//! operator reads from a pod's termination message. Each failure reason is produced the way it
//! happens in a cluster (a failing step, a bad Dockerfile, a missing secret, a registry that
//! refuses the credentials or is not there, SIGTERM, a timeout), and every result must parse
//! as the contract's types and fit in 4 KiB.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::{Env, ROOTLESS_USER, kiln_bin, text};
use kiln_tests::registry::{Config, Registry, free_port};
use kiln_worker::result::{BuildResult, Failure, MAX_BYTES, PlanResult, Reason, Success};

fn root_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("result-root", false))
}

fn rootless_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("result-rootless", true))
}

/// A path for a test's result file, in a directory the building user may write.
fn result_path(env: &Env, name: &str) -> PathBuf {
    let dir = env.dir.join("results");
    std::fs::create_dir_all(&dir).unwrap();
    if env.rootless {
        Command::new("chown")
            .arg(format!("{ROOTLESS_USER}:{ROOTLESS_USER}"))
            .arg(&dir)
            .status()
            .unwrap();
    }
    let path = dir.join(format!("{name}.json"));
    let _ = std::fs::remove_file(&path);
    path
}

/// The result file, checked against the size limit and parsed as the contract's type.
fn read_result(path: &Path) -> BuildResult {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no result at {}: {e}", path.display()));
    assert!(text.len() <= MAX_BYTES, "{} bytes", text.len());
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn failure(path: &Path, out: &Output) -> Failure {
    match read_result(path) {
        BuildResult::Failure(f) => f,
        BuildResult::Success(s) => panic!("a success: {s:?}\n{}", text(out)),
    }
}

fn success(path: &Path, out: &Output) -> Success {
    match read_result(path) {
        BuildResult::Success(s) => s,
        BuildResult::Failure(f) => panic!("a failure: {f:?}\n{}", text(out)),
    }
}

fn build_with_result(
    env: &Env,
    name: &str,
    files: &[(&str, &str)],
    args: &[&str],
) -> (Output, PathBuf) {
    let ctx = env.context(name, files);
    let path = result_path(env, name);
    let flag = format!("--result-file={}", path.display());
    let mut all = vec![flag.as_str()];
    all.extend_from_slice(args);
    (env.build(&ctx, &all), path)
}

#[test]
fn a_success_has_the_digest_the_names_and_the_step_counts() {
    let env = root_env();
    let dockerfile = "FROM kiln-ref/busybox:1\nRUN echo one > /one\nCOPY hello.txt /\n";
    let files = [("Dockerfile", dockerfile), ("hello.txt", "hello\n")];
    let (out, path) = build_with_result(env, "success", &files, &["-t", "kiln-test/result:1"]);
    assert!(out.status.success(), "{}", text(&out));
    let s = success(&path, &out);
    let printed = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(s.digest, printed);
    assert!(s.digest.starts_with("sha256:") && s.digest.len() == 71);
    assert_eq!(
        s.image.as_deref(),
        Some(format!("kiln-test/result:1@{}", s.digest).as_str())
    );
    assert!(s.pushed.is_empty() && s.push.is_none());
    assert_eq!(s.revision, None);
    assert_eq!((s.steps.total, s.steps.cached), (2, 0));
    assert_eq!((s.cache.hits, s.cache.misses), (0, 2));
    assert!(s.duration_seconds > 0.0);

    // Again: everything from the cache.
    let (again, path) = build_with_result(env, "success", &files, &["-t", "kiln-test/result:1"]);
    assert!(again.status.success(), "{}", text(&again));
    let s2 = success(&path, &again);
    assert_eq!((s2.steps.cached, s2.cache.hits, s2.cache.misses), (2, 2, 0));
}

#[test]
fn a_failed_step_has_its_line_exit_code_and_redacted_output() {
    let env = root_env();
    let secret = env.dir.join("result-secret");
    std::fs::write(&secret, "s3cr3t-7d1e0f-value\n").unwrap();
    let dockerfile = "FROM kiln-ref/busybox:1\n\
        RUN echo fine\n\
        RUN --mount=type=secret,id=tok \\\n  \
        for i in $(seq 1 60); do echo \"noise $i\"; done; \
        echo \"token=$(cat /run/secrets/tok)\"; echo to stderr >&2; exit 42\n\
        RUN echo never\n";
    let src = format!("id=tok,src={}", secret.display());
    let (out, path) = build_with_result(
        env,
        "step-failed",
        &[("Dockerfile", dockerfile)],
        &["--secret", &src],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let f = failure(&path, &out);
    assert_eq!(f.reason, Reason::StepFailed);
    assert_eq!(f.file.as_deref(), Some("Dockerfile"));
    assert_eq!(f.line, Some(3));
    assert_eq!(f.exit_code, Some(42));
    assert!(
        f.step
            .as_deref()
            .unwrap_or("")
            .starts_with("RUN --mount=type=secret"),
        "{f:?}"
    );
    assert!(f.message.contains("exit code: 42"), "{f:?}");
    let tail = f.log_tail.clone().unwrap_or_default();
    assert!(tail.contains("token=****"), "{tail}");
    // stdout and stderr are read apart, so where the stderr line lands (or whether it is still
    // among the last 20) varies; the end of stdout is there.
    assert!(tail.contains("noise 60"), "{tail}");
    assert!(tail.lines().count() >= 20, "about 20 lines: {tail}");
    assert!(!tail.contains("noise 1\n"), "only the last lines: {tail}");
    // The value is in neither the result nor the log.
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(!raw.contains("s3cr3t-7d1e0f-value"), "{raw}");
    assert!(
        !text(&out).contains("s3cr3t-7d1e0f-value"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("token=****"), "{}", text(&out));
}

#[test]
fn a_dockerfile_error_names_the_file_line_and_column() {
    let env = root_env();
    let (out, path) = build_with_result(
        env,
        "invalid",
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1\nRUN true\n  FORM x\n",
        )],
        &[],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let f = failure(&path, &out);
    assert_eq!(f.reason, Reason::InvalidDockerfile);
    assert_eq!(
        (f.file.as_deref(), f.line, f.column),
        (Some("Dockerfile"), Some(3), Some(3))
    );
    assert!(f.message.contains("FORM"), "{f:?}");

    // A Dockerfile the context does not have.
    let ctx = env.context("no-dockerfile", &[("other", "x")]);
    let path = result_path(env, "no-dockerfile");
    let out = env.build(&ctx, &[&format!("--result-file={}", path.display())]);
    assert!(!out.status.success());
    assert_eq!(failure(&path, &out).reason, Reason::InvalidDockerfile);
}

#[test]
fn a_missing_required_secret_is_missing_secret_with_its_line() {
    let env = root_env();
    let dockerfile = "FROM kiln-ref/busybox:1\nRUN true\nRUN --mount=type=secret,id=npmrc,required=true cat /run/secrets/npmrc\n";
    let (out, path) = build_with_result(env, "missing-secret", &[("Dockerfile", dockerfile)], &[]);
    assert!(!out.status.success());
    let f = failure(&path, &out);
    assert_eq!(f.reason, Reason::MissingSecret);
    assert_eq!(f.line, Some(3));
    assert!(f.message.contains("\"npmrc\""), "{f:?}");

    // A secret whose file is gone by the time the step runs.
    let (out, path) = build_with_result(
        env,
        "secret-gone",
        &[("Dockerfile", dockerfile)],
        &["--secret", "id=npmrc,src=/nonexistent/kiln-secret"],
    );
    assert!(!out.status.success());
    let f = failure(&path, &out);
    assert_eq!(
        (f.reason, f.line),
        (Reason::MissingSecret, Some(3)),
        "{f:?}"
    );
}

#[test]
fn bad_options_are_invalid_argument() {
    let env = root_env();
    let (out, path) = build_with_result(
        env,
        "bad-filter",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN true\n")],
        &["--no-cache-filter", "nosuchstage"],
    );
    assert!(!out.status.success());
    assert_eq!(failure(&path, &out).reason, Reason::InvalidArgument);
    let ctx = env.context("bad-progress", &[("Dockerfile", "FROM scratch\n")]);
    let path = result_path(env, "bad-progress");
    let out = env.kiln(&[
        "build".into(),
        "--progress=fancy".into(),
        format!("--result-file={}", path.display()),
        ctx.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(failure(&path, &out).reason, Reason::InvalidArgument);
    // A flag the command line parser refuses, with the result file from the environment.
    std::fs::remove_file(&path).unwrap();
    let out = env.kiln_env(
        &[
            "build".into(),
            "--no-such-flag".into(),
            ctx.display().to_string(),
        ],
        &[("KILN_RESULT_FILE", path.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2));
    let f = failure(&path, &out);
    assert_eq!(f.reason, Reason::InvalidArgument);
    assert!(f.message.contains("--no-such-flag"), "{f:?}");
    // A context that does not exist.
    let path = result_path(env, "no-context");
    let out = env.kiln(&[
        "build".into(),
        format!("--result-file={}", path.display()),
        env.dir.join("no/such/dir").display().to_string(),
    ]);
    assert!(!out.status.success());
    assert_eq!(failure(&path, &out).reason, Reason::MissingContext);
}

#[test]
fn a_timeout_stops_the_step_and_says_timeout() {
    let env = root_env();
    let started = Instant::now();
    let (out, path) = build_with_result(
        env,
        "timeout",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN sleep 6161\n")],
        &["--timeout", "3s"],
    );
    assert_eq!(out.status.code(), Some(124), "{}", text(&out));
    assert!(started.elapsed() < Duration::from_secs(60));
    let f = failure(&path, &out);
    assert_eq!(f.reason, Reason::Timeout, "{f:?}");
    std::thread::sleep(Duration::from_millis(300));
    assert!(processes_matching("sleep 6161").is_empty());
}

#[test]
fn sigterm_cancels_the_build_and_still_writes_the_result() {
    // Root and rootless, and as in a pod: without a pid namespace per step.
    for (env, sandbox) in [
        (root_env(), true),
        (rootless_env(), true),
        (root_env(), false),
    ] {
        // Unique to this run, so that nothing an earlier run left behind is taken for the step.
        let (who, marker) = match (env.rootless, sandbox) {
            (true, _) => ("rootless", format!("sleep 72{}", std::process::id())),
            (false, true) => ("root", format!("sleep 71{}", std::process::id())),
            (false, false) => (
                "root-no-process-sandbox",
                format!("sleep 73{}", std::process::id()),
            ),
        };
        let marker = marker.as_str();
        let ctx = env.context(
            &format!("sigterm-{who}"),
            &[(
                "Dockerfile",
                &format!("FROM kiln-ref/busybox:1\nRUN {marker}\n"),
            )],
        );
        let path = result_path(env, &format!("sigterm-{who}"));
        let mut cmd = if env.rootless {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                ROOTLESS_USER,
                "--regid",
                ROOTLESS_USER,
                "--init-groups",
            ])
            .arg(kiln_bin());
            c
        } else {
            Command::new(kiln_bin())
        };
        cmd.args(["build", "--progress=plain"])
            .arg(format!("--cache-dir={}", env.state.display()))
            .arg(format!(
                "--build-context=kiln-ref/busybox:1=oci-layout://{}",
                env.base.display()
            ))
            .arg(format!("--result-file={}", path.display()))
            .args((!sandbox).then_some("--no-process-sandbox"))
            .arg(&ctx)
            .env("HOME", env.dir.join("home"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while processes_matching(marker).is_empty() {
            assert!(Instant::now() < deadline, "{who}: the step never started");
            std::thread::sleep(Duration::from_millis(100));
        }
        let started = Instant::now();
        // SAFETY: kill(2) on the child's pid; it cannot have been reaped, we have not waited.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        // Well within the 10 s after which Kiln stops waiting for the build to end.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{who}: slow to stop"
        );
        assert_eq!(out.status.code(), Some(143), "{who}: {}", text(&out));
        let f = failure(&path, &out);
        assert_eq!(f.reason, Reason::Cancelled, "{who}: {f:?}");
        std::thread::sleep(Duration::from_millis(300));
        if sandbox {
            assert!(
                processes_matching(marker).is_empty(),
                "{who}: the step survived"
            );
        } else {
            // Without a pid namespace the step's process is orphaned; in a pod it ends with the
            // container. Here it is ended by hand.
            for pid in pids_matching(marker) {
                // SAFETY: kill(2) on the pid of the orphaned step this test started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn a_rootless_failure_writes_the_same_result() {
    let env = rootless_env();
    let (out, path) = build_with_result(
        env,
        "rootless-step",
        &[(
            "Dockerfile",
            "FROM kiln-ref/busybox:1\nRUN echo rootless; exit 5\n",
        )],
        &[],
    );
    assert!(!out.status.success());
    let f = failure(&path, &out);
    assert_eq!(
        (f.reason, f.line, f.exit_code),
        (Reason::StepFailed, Some(2), Some(5))
    );
    assert_eq!(f.log_tail.as_deref(), Some("rootless"));
}

#[test]
fn plan_writes_a_compact_plan_or_the_dockerfile_error() {
    let env = root_env();
    let ctx = env.context(
        "plan",
        &[(
            "Dockerfile",
            "FROM golang:1.22 AS build\n\
             RUN --mount=type=cache,target=/go/pkg/mod,sharing=locked,uid=1000 \\\n\
                 --mount=type=secret,id=netrc,required=true --mount=type=ssh true\n\
             FROM alpine:3.19\nCOPY --from=build /x /x\n",
        )],
    );
    let path = result_path(env, "plan");
    let out = env.kiln(&[
        "plan".into(),
        "--json".into(),
        format!("--result-file={}", path.display()),
        ctx.display().to_string(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let raw = std::fs::read_to_string(&path).unwrap();
    assert!(raw.len() <= MAX_BYTES);
    let PlanResult::Plan(p) = serde_json::from_str(&raw).unwrap() else {
        panic!("{raw}")
    };
    assert_eq!(p.base_images, ["golang:1.22", "alpine:3.19"]);
    assert_eq!(p.stages.len(), 2);
    assert_eq!(p.target.index, 1);
    assert_eq!(p.caches.len(), 1);
    assert_eq!(
        (p.caches[0].id.as_str(), p.caches[0].uid),
        ("/go/pkg/mod", 1000)
    );
    assert_eq!(p.secrets.len(), 1);
    assert!(p.secrets[0].required);
    assert_eq!(p.ssh[0].id, "default");
    // The full plan still goes to standard output.
    let full: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(full["apiVersion"], "kiln.dev/plan/v1");

    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM alpine\nRUN --mount=type=bogus true\n",
    )
    .unwrap();
    let out = env.kiln(&[
        "plan".into(),
        format!("--result-file={}", path.display()),
        ctx.display().to_string(),
    ]);
    assert!(!out.status.success());
    let raw = std::fs::read_to_string(&path).unwrap();
    let PlanResult::Failure(f) = serde_json::from_str(&raw).unwrap() else {
        panic!("{raw}")
    };
    assert_eq!(f.reason, Reason::InvalidDockerfile);
    assert_eq!(f.line, Some(2));
    assert!(f.column.is_some_and(|c| c > 1), "{f:?}");
}

const USER: &str = "kiln-result";
const PASSWORD: &str = "pw-result-2b7c9d";

fn docker_config(env: &Env, name: &str, host: &str, password: &str) -> PathBuf {
    let path = env.dir.join(format!("{name}.json"));
    std::fs::write(&path, common::docker_config_json(host, USER, password)).unwrap();
    path
}

/// The reason of a build that must fail, and the raw result (to look for secrets in).
fn failure_reason(env: &Env, name: &str, dockerfile: &str, args: &[&str]) -> (Reason, String) {
    let (out, path) = build_with_result(env, name, &[("Dockerfile", dockerfile)], args);
    assert!(!out.status.success(), "{name}: {}", text(&out));
    let raw = std::fs::read_to_string(&path).unwrap();
    (failure(&path, &out).reason, raw)
}

#[test]
fn registries_give_pushed_names_or_auth_push_and_pull_reasons() {
    let env = root_env();
    let reg = Registry::start(Config {
        users: vec![(USER.into(), PASSWORD.into())],
        ..Config::default()
    });
    let host = reg.host();
    let good = format!(
        "--registry-auth-file={}",
        docker_config(env, "result-good", &host, PASSWORD).display()
    );
    let bad = format!(
        "--registry-auth-file={}",
        docker_config(env, "result-bad", &host, "not-the-password").display()
    );
    let dockerfile = "FROM kiln-ref/busybox:1\nRUN echo pushed > /p\n";
    let insecure = format!("--insecure-registry={host}");
    let name = format!("{host}/kiln/result:1");

    // Success: the pushed name and the digest the registry serves.
    let (out, path) = build_with_result(
        env,
        "push-ok",
        &[("Dockerfile", dockerfile)],
        &[&insecure, &good, "-t", &name, "--push"],
    );
    assert!(out.status.success(), "{}", text(&out));
    let s = success(&path, &out);
    assert_eq!(s.pushed, std::slice::from_ref(&name));
    assert_eq!(s.image, Some(format!("{name}@{}", s.digest)));
    assert!(s.push.is_some_and(|p| p.uploaded > 0));
    let inspect = Command::new("skopeo")
        .arg("inspect")
        .args(reg.skopeo_flags("", Some((USER, PASSWORD))))
        .arg(format!("docker://{name}"))
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", text(&inspect));
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Digest"], s.digest.as_str());

    // Wrong password on push: RegistryAuth, and the password not in the result.
    let denied = format!("{host}/kiln/denied:1");
    let (reason, raw) = failure_reason(
        env,
        "push-auth",
        dockerfile,
        &[&insecure, &bad, "-t", &denied, "--push"],
    );
    assert_eq!(reason, Reason::RegistryAuth, "{raw}");
    assert!(!raw.contains("not-the-password"), "{raw}");

    // Wrong password on pull: RegistryAuth too.
    let from_pushed = format!("FROM {name}\nRUN true\n");
    let (reason, raw) = failure_reason(env, "pull-auth", &from_pushed, &[&insecure, &bad]);
    assert_eq!(reason, Reason::RegistryAuth, "{raw}");

    // An image the registry does not have: PullFailed.
    let from_missing = format!("FROM {host}/kiln/nothing:1\nRUN true\n");
    let (reason, raw) = failure_reason(env, "pull-missing", &from_missing, &[&insecure, &good]);
    assert_eq!(reason, Reason::PullFailed, "{raw}");

    // A registry that is not there: PushFailed.
    let gone = format!("127.0.0.1:{}", free_port());
    let (reason, raw) = failure_reason(
        env,
        "push-gone",
        dockerfile,
        &[
            &format!("--insecure-registry={gone}"),
            "--registry-retries=1",
            "-t",
            &format!("{gone}/kiln/nowhere:1"),
            "--push",
        ],
    );
    assert_eq!(reason, Reason::PushFailed, "{raw}");
}

/// The pids of processes whose command line contains `needle` (and not `kiln`).
fn pids_matching(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (cmdline.contains(needle) && !cmdline.contains("kiln")).then_some(pid)
        })
        .collect()
}

fn processes_matching(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(needle) && !c.contains("kiln"))
        .collect()
}

#[test]
fn a_full_disk_is_disk_full() {
    let env = root_env();
    let ctx = env.context(
        "disk-full",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nCOPY big /big\n")],
    );
    std::fs::write(ctx.join("big"), vec![7u8; 24 << 20]).unwrap();
    let path = result_path(env, "disk-full");
    let state = env.dir.join("state-tiny");
    std::fs::create_dir_all(&state).unwrap();
    // The store on a 16 MiB tmpfs, in a mount namespace of the build's own.
    let script = format!(
        "mount -t tmpfs -o size=16m tmpfs {state} && exec {kiln} build --progress=plain --cache-dir={state} \
         --build-context=kiln-ref/busybox:1=oci-layout://{base} --result-file={result} {ctx}",
        state = state.display(),
        kiln = kiln_bin().display(),
        base = env.base.display(),
        result = path.display(),
        ctx = ctx.display(),
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    let f = failure(&path, &out);
    assert_eq!(f.reason, Reason::DiskFull, "{f:?}\n{}", text(&out));
    assert_eq!(
        (f.line, f.step.as_deref()),
        (Some(2), Some("COPY big /big"))
    );
}

#[test]
fn a_failed_id_mapping_is_in_the_result() {
    // As in a pod whose security context keeps newuidmap from its capabilities
    // (allowPrivilegeEscalation: false, or no SETUID/SETGID): the tool runs and fails.
    let env = rootless_env();
    let fake = env.dir.join("fake-bin");
    std::fs::create_dir_all(&fake).unwrap();
    for tool in ["newuidmap", "newgidmap"] {
        let path = fake.join(tool);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{tool}: write to uid_map failed: Operation not permitted\" >&2\nexit 1\n"),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ctx = env.context(
        "idmap",
        &[("Dockerfile", "FROM kiln-ref/busybox:1\nRUN true\n")],
    );
    let path = result_path(env, "idmap");
    let out = env.kiln_env(
        &[
            "build".into(),
            format!("--result-file={}", path.display()),
            ctx.display().to_string(),
        ],
        &[(
            "PATH",
            &format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", fake.display()),
        )],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let f = failure(&path, &out);
    assert_eq!(f.reason, Reason::Internal);
    assert!(
        f.message.contains("newuidmap: write to uid_map failed"),
        "{f:?}"
    );
}
