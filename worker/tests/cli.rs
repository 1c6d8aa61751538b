//! The `kiln` binary's entry points.

use assert_cmd::Command;

#[test]
fn help_lists_the_engine_commands() {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in ["build", "plan", "prune", "du"] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "--help lacks {cmd}:\n{help}"
        );
    }
}

#[test]
fn unknown_command_fails() {
    Command::cargo_bin("kiln")
        .unwrap()
        .arg("frobnicate")
        .assert()
        .failure();
}

#[test]
fn du_and_prune_work_on_an_empty_cache_and_reject_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let cache = format!("--cache-dir={}", dir.path().display());
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["du", &cache])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("total            0 records"));
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["prune", "--all", &cache])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Total reclaimed space: 0B"));
    for (args, message) in [
        (
            vec!["prune", "--filter=colour=red"],
            "unknown filter \"colour\"",
        ),
        (vec!["prune", "--keep-storage=lots"], "--keep-storage"),
        (vec!["prune", "--keep-duration=soon"], "--keep-duration"),
        (vec!["du", "--filter=type=image"], "unknown type"),
    ] {
        let out = Command::cargo_bin("kiln")
            .unwrap()
            .args(&args)
            .arg(&cache)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{args:?}: {err}");
    }
}

fn dockerfile_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), text).unwrap();
    dir
}

const PLANNED: &str = "\
ARG GO=1.22
FROM golang:${GO} AS build
RUN --mount=type=cache,target=/go/pkg/mod,sharing=locked \\
    --mount=type=secret,id=netrc,required go build -o /out/app .
FROM build AS test
RUN go test ./...
FROM alpine:3.19
COPY --from=build /out/app /app
";

#[test]
fn plan_prints_stages_images_and_mounts() {
    let dir = dockerfile_dir(PLANNED);
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .arg("plan")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "golang:1.22",
        "alpine:3.19",
        "/go/pkg/mod",
        "sharing=locked",
        "netrc",
        "required",
        "not needed by the target: 1 (test)",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn plan_json_has_the_documented_shape() {
    let dir = dockerfile_dir(PLANNED);
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args([
            "plan",
            "--json",
            "--build-arg",
            "GO=1.23",
            "--target",
            "test",
            "-f",
        ])
        .arg(dir.path().join("Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["apiVersion"], "kiln.dev/plan/v1");
    assert_eq!(v["target"]["name"], "test");
    assert_eq!(v["buildOrder"], serde_json::json!([0, 1]));
    assert_eq!(v["baseImages"], serde_json::json!(["golang:1.23"]));
    assert_eq!(v["caches"][0]["id"], "/go/pkg/mod");
    assert_eq!(v["caches"][0]["sharing"], "locked");
    assert_eq!(v["secrets"][0]["id"], "netrc");
    assert_eq!(v["secrets"][0]["required"], true);
    assert_eq!(v["stages"][2]["needed"], false);
}

#[test]
fn plan_of_a_broken_dockerfile_fails_with_every_problem_located() {
    let dir = dockerfile_dir("FROM alpine\nFORM x\nCOPY --from=nope\n");
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args(["plan", "--json"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--> "), "{err}");
    assert!(err.contains("Dockerfile:2:1"), "{err}");
    assert!(err.contains("^^^^"), "{err}");
    assert!(err.contains("Dockerfile:3:1"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["errors"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["errors"][0]["line"], 2);
}

#[test]
fn plan_of_a_missing_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .arg("plan")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Dockerfile"));
}

/// Run `kiln` with a standard output whose reader is already gone, as in `kiln plan | head`
/// once `head` has what it wants; the exit status and standard error.
fn with_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("kiln"))
        .args(args)
        .stdout(writer)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_command_ends_quietly_when_its_reader_is_gone() {
    let dir = dockerfile_dir("FROM scratch\nCOPY a.txt /\n");
    std::fs::write(dir.path().join("a.txt"), "a\n").unwrap();
    let ctx = dir.path().to_str().unwrap();
    let state = tempfile::tempdir().unwrap();
    let cache = format!("--cache-dir={}", state.path().display());
    let out = format!(
        "--output=type=oci,dest={}",
        state.path().join("out").display()
    );
    for args in [
        vec!["plan", ctx],
        vec!["plan", "--json", ctx],
        vec!["build", "--progress=plain", &cache, &out, ctx],
        vec!["du", &cache],
        vec!["du", "--json", &cache],
        vec!["prune", "--dry-run", &cache],
    ] {
        let (status, stderr) = with_closed_stdout(&args);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(status, Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn quiet_build_prints_only_the_digest_and_errors_still_show() {
    let dir = dockerfile_dir("FROM scratch\nCOPY a.txt /\n");
    std::fs::write(dir.path().join("a.txt"), "a\n").unwrap();
    let state = tempfile::tempdir().unwrap();
    let cache = format!("--cache-dir={}", state.path().display());
    let out = format!(
        "--output=type=oci,dest={}",
        state.path().join("out").display()
    );
    for quiet in ["-q", "--quiet"] {
        let run = Command::cargo_bin("kiln")
            .unwrap()
            .args(["build", quiet, &cache, &out])
            .arg(dir.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(run.status.success(), "{stderr}");
        let digest = stdout.strip_suffix('\n').unwrap_or_default();
        assert!(
            digest
                .strip_prefix("sha256:")
                .is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())),
            "{quiet}: stdout {stdout:?}"
        );
        assert_eq!(stderr, "", "{quiet}");
    }
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY missing.txt /\n",
    )
    .unwrap();
    let run = Command::cargo_bin("kiln")
        .unwrap()
        .args(["build", "-q", &cache, &out])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&run.stdout), "");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("missing.txt"),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

/// The help of each option of `kiln COMMAND --help`, by long name.
fn option_help(command: &str) -> std::collections::BTreeMap<String, String> {
    let out = Command::cargo_bin("kiln")
        .unwrap()
        .args([command, "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut options = std::collections::BTreeMap::new();
    let mut current: Option<String> = None;
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with('-') && line.len() - trimmed.len() <= 6 {
            let long = trimmed
                .split([',', ' ', '<'])
                .map(str::trim)
                .find(|w| w.starts_with("--"))
                .unwrap_or(trimmed)
                .to_string();
            options.insert(long.clone(), String::new());
            current = Some(long);
        } else if let Some(c) = &current {
            let text = options.get_mut(c).unwrap();
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    options
}

/// `--help` names every value the code accepts (issue 13: the cache flags once listed only
/// `type=local`).
#[test]
fn build_help_names_what_each_option_accepts() {
    let help = option_help("build");
    let expect: &[(&str, &[&str])] = &[
        (
            "--cache-to",
            &[
                "type=registry",
                "type=local",
                "type=inline",
                "mode=min",
                "mode=max",
                "ignore-error",
            ],
        ),
        ("--cache-from", &["type=registry", "type=local"]),
        (
            "--output",
            &[
                "type=oci",
                "type=docker",
                "type=local",
                "type=image",
                "type=registry",
                "tar=",
            ],
        ),
        ("--progress", &["auto", "tty", "plain", "json", "quiet"]),
        ("--compression", &["gzip", "zstd", "uncompressed"]),
        ("--snapshotter", &["auto", "overlay", "copy"]),
        ("--allow", &["security.insecure", "network.host"]),
        ("--build-context", &["oci-layout://"]),
        ("--secret", &["src=", "env="]),
        ("--ssh", &["default", "SOCKET", "KEYFILE"]),
        ("--quiet", &["sha256:"]),
        ("--cache-mount-ns", &["BUILDKIT_CACHE_MOUNT_NS"]),
        ("--source-date-epoch", &["SOURCE_DATE_EPOCH"]),
    ];
    for (option, words) in expect {
        let text = help
            .get(*option)
            .unwrap_or_else(|| panic!("no {option} in kiln build --help: {help:#?}"));
        for w in *words {
            assert!(text.contains(w), "{option} help lacks {w:?}: {text}");
        }
    }
}

#[test]
fn debug_logs_cache_decisions_and_json_logs_parse() {
    let dir = dockerfile_dir("FROM scratch\nCOPY a.txt /\n");
    std::fs::write(dir.path().join("a.txt"), "a\n").unwrap();
    let state = tempfile::tempdir().unwrap();
    let cache = format!("--cache-dir={}", state.path().display());
    let out = format!(
        "--output=type=oci,dest={}",
        state.path().join("out").display()
    );
    let build = |extra: &[&str]| {
        let run = Command::cargo_bin("kiln")
            .unwrap()
            .env_remove("KILN_LOG")
            .args(["build", "--progress=plain", &cache, &out])
            .args(extra)
            .arg(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr).to_string();
        assert!(run.status.success(), "{stderr}");
        stderr
    };
    let first = build(&["--debug"]);
    let miss = first
        .lines()
        .find(|l| l.contains("cache miss"))
        .unwrap_or_else(|| panic!("no cache miss logged:\n{first}"));
    assert!(miss.contains("COPY a.txt /"), "{miss}");
    assert!(
        miss.split_whitespace()
            .any(|w| w.strip_prefix("key=").is_some_and(|k| k.len() == 64)),
        "{miss}"
    );
    let second = build(&["--debug", "--log-format=json"]);
    let hits: Vec<serde_json::Value> = second
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v: &serde_json::Value| v["fields"]["message"] == "cache hit")
        .collect();
    assert_eq!(hits.len(), 1, "{second}");
    assert_eq!(hits[0]["level"], "DEBUG");
    assert_eq!(hits[0]["fields"]["step"], "COPY a.txt /");
    // Without --debug nothing but progress is printed.
    let quiet = build(&[]);
    assert!(
        !quiet.contains("cache hit") && !quiet.contains("DEBUG"),
        "{quiet}"
    );
}
