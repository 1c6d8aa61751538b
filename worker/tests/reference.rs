//! Kiln against BuildKit: every case of `tests/reference/` is built by `kiln build`, and the
//! image's facts (config, history, every layer's entries, the final filesystem) are compared
//! with what BuildKit produced for the same Dockerfile and context. Error cases must fail.
//!
//! The corpus runs twice: as root, and as an unprivileged user with subordinate id ranges, in
//! a user namespace, which is how Kiln runs in a pod.
//!
//! Where Kiln knowingly differs from the recorded BuildKit (v0.8, inside dockerd 20.10), the
//! difference is listed in [`DEVIATIONS`] with the reason; nothing else is skipped.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Env, ROOTLESS_USER, repo};
use kiln_tests::facts;
use serde_json::Value;

/// Members of the facts that differ between any two builds: times.
const IGNORE: &[&str] = &["mtime"];

/// Where Kiln follows current BuildKit rather than the recorded v0.8: (case name prefix, a text
/// the difference line must contain, why). Each one names the upstream change.
const DEVIATIONS: &[(&str, &str, &str)] = &[
    // moby/buildkit dockerfile2llb/convert_copy.go: the commit message has --parents, --chown
    // and --chmod since v0.9; v0.8 dropped every flag.
    (
        "add-chown",
        ".created_by",
        "COPY/ADD history includes --chown/--chmod (BuildKit >= 0.9)",
    ),
    (
        "copy-chmod",
        ".created_by",
        "COPY/ADD history includes --chown/--chmod (BuildKit >= 0.9)",
    ),
    (
        "copy-chown",
        ".created_by",
        "COPY/ADD history includes --chown/--chmod (BuildKit >= 0.9)",
    ),
    (
        "copy-from-stage",
        ".created_by",
        "COPY/ADD history includes --chown/--chmod (BuildKit >= 0.9)",
    ),
    (
        "variables-in-instructions",
        ".created_by",
        "COPY/ADD history includes --chown/--chmod (BuildKit >= 0.9)",
    ),
    // dispatchArg: the history records the value in effect (the --build-arg, or the global or
    // automatic value), not the default as written.
    (
        "arg-",
        "created_by: expected \"ARG ",
        "ARG history records the effective value (current BuildKit)",
    ),
    (
        "from-arg-global",
        "created_by: expected \"ARG ",
        "ARG history records the effective value (current BuildKit)",
    ),
    // moby/buildkit 47a52a17 (dockerfile 1.8): an ARG default sees the earlier ARGs of the same
    // instruction; v0.8 expanded the whole instruction first. derived-arg-multi-assign checks
    // the current result.
    (
        "arg-multi-assign",
        "created_by: expected \"RUN |8 ",
        "ARG defaults see earlier ARGs of the same instruction (dockerfile >= 1.8)",
    ),
    (
        "arg-multi-assign",
        "[/args.txt].s",
        "ARG defaults see earlier ARGs of the same instruction (dockerfile >= 1.8)",
    ),
    // dispatchState.init: a stage built FROM another inherits its build args, so its RUNs get
    // the |N prefix too.
    (
        "arg-scope-stages",
        "created_by: expected \"RUN ",
        "a child stage inherits its base stage's ARGs in the |N prefix (current BuildKit)",
    ),
    // dispatchHealthcheck writes `HEALTHCHECK %q` of the config in every version; current
    // BuildKit's config has a start interval, so its text has one more field than v0.8's.
    (
        "healthcheck-",
        "created_by: expected \"HEALTHCHECK ",
        "HEALTHCHECK history includes the start interval (current BuildKit)",
    ),
    // COPY --link (dockerfile 1.4) and RUN --network (1.3) exist in current BuildKit.
    (
        "copy-link",
        "BuildKit fails this build",
        "COPY --link is supported by current BuildKit (v0.8 rejects the flag)",
    ),
    (
        "run-network-flag",
        "BuildKit fails this build",
        "RUN --network is supported by current BuildKit (v0.8 needs a build tag)",
    ),
    // executor/stubs.go: mount points a step created are removed afterwards, with the
    // directories made for them (moby/buildkit#1739, #3307, #3314).
    (
        "run-mount-",
        "filesystem[",
        "mount points are removed after the step (BuildKit >= 0.11)",
    ),
    (
        "run-mount-",
        "layers[",
        "mount points are removed after the step (BuildKit >= 0.11)",
    ),
    (
        "fs-mount-stubs-scratch",
        "[/etc]",
        "the /etc made for /etc/hosts is removed with it (BuildKit >= 0.11)",
    ),
    // Issue 4 asks for zstd archives to be extracted; BuildKit 0.8 copied them as files.
    (
        "add-zstd",
        "",
        "zstd archives are extracted (BuildKit 0.8 copied them as files)",
    ),
];

/// Whether a difference is a documented deviation.
fn deviation(case: &str, line: &str) -> Option<&'static str> {
    DEVIATIONS
        .iter()
        .find(|(c, text, _)| case.starts_with(c) && line.contains(text))
        .map(|(_, _, why)| *why)
}

/// Build one case; the differences from BuildKit, or why it could not be compared.
fn check_case(env: &Env, case: &Path) -> Result<(), Vec<String>> {
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let expected_dir = repo().join("tests/reference/expected");
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(case.join("case.json")).unwrap_or_else(|_| "{}".into()),
    )
    .unwrap();
    let context = env.dir.join("ctx").join(&name);
    facts::stage_context(case, &context).map_err(|e| vec![format!("staging the context: {e}")])?;
    if env.rootless {
        Command::new("chown")
            .args(["-R", &format!("{ROOTLESS_USER}:{ROOTLESS_USER}")])
            .arg(env.dir.join("ctx"))
            .status()
            .unwrap();
    }
    let out_dir = env.dir.join("out").join(&name);
    let mut args = vec![
        "build".to_string(),
        "--progress=plain".into(),
        format!("--cache-dir={}", env.state.display()),
        format!(
            "--build-context=kiln-ref/busybox:1=oci-layout://{}",
            env.base.display()
        ),
        format!("--output=type=oci,dest={}", out_dir.display()),
    ];
    if let Some(t) = spec["target"].as_str() {
        args.push(format!("--target={t}"));
    }
    // A case that downloads gets its `serve/` directory on a loopback HTTP server.
    let server = spec["serve"].as_str().map(|dir| serve(case.join(dir)));
    for (k, v) in spec["build_args"].as_object().cloned().unwrap_or_default() {
        let mut v = v.as_str().unwrap_or_default().to_string();
        if let Some(port) = server {
            v = v.replace("PORT", &port.to_string());
        }
        args.push(format!("--build-arg={k}={v}"));
    }
    for (id, file) in spec["secrets"].as_object().cloned().unwrap_or_default() {
        args.push(format!(
            "--secret=id={id},src={}",
            context.join(file.as_str().unwrap_or_default()).display()
        ));
    }
    args.push(context.display().to_string());
    let out = env.kiln(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();

    let error_file = expected_dir.join(format!("{name}.error.json"));
    if error_file.exists() {
        if out.status.success() {
            let line = "BuildKit fails this build, Kiln built it";
            if deviation(&name, line).is_some() {
                return Ok(());
            }
            return Err(vec![format!("{line}:\n{stderr}")]);
        }
        // Kiln's message for the same failure: what it names, and the line it points at.
        let Some((line, needle)) = failure_expectation(&name) else {
            return Err(vec![format!(
                "{name}: BuildKit fails it; say in failure_expectation what Kiln must report"
            )]);
        };
        // `Dockerfile:2:5` for a parse error, `Dockerfile:2` above a failed step's excerpt.
        let at = line.map(|l| format!("Dockerfile:{l}"));
        let points_at = |at: &str| {
            stderr
                .match_indices(at)
                .any(|(i, _)| !stderr[i + at.len()..].starts_with(|c: char| c.is_ascii_digit()))
        };
        if !stderr.contains("error")
            || !at.as_deref().is_none_or(points_at)
            || !stderr.contains(needle)
        {
            return Err(vec![format!(
                "the failure must name {needle:?} at {at:?}; it says:\n{stderr}"
            )]);
        }
        return Ok(());
    }
    if !out.status.success() {
        return Err(vec![format!("kiln build failed:\n{stderr}")]);
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(expected_dir.join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    let skip = expected["skipped_history"].as_u64().unwrap_or(0) as usize;
    let got = facts::image_facts(
        &out_dir,
        &facts::Options {
            skip_base: skip,
            reference: None,
        },
    )
    .map_err(|e| vec![format!("reading the image: {e}")])?;
    let diffs: Vec<String> = facts::compare(&expected, &got.to_value(), IGNORE)
        .into_iter()
        .filter(|d| deviation(&name, d).is_none())
        .filter(|d| {
            let copy = env.extra_args.iter().any(|a| a == "--snapshotter=copy");
            !(copy
                && name == "fs-opaque"
                && COPY_SNAPSHOTTER_DEVIATIONS.iter().any(|p| d.starts_with(p)))
        })
        .collect();
    if diffs.is_empty() { Ok(()) } else { Err(diffs) }
}

/// Serve the files of `dir` over HTTP on loopback, with a fixed Last-Modified, until the test
/// process ends. Returns the port.
fn serve(dir: PathBuf) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let mut stream = stream;
            match std::fs::read(dir.join(&path)) {
                Ok(body) if !path.contains("..") => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream
                        .write_all(head.as_bytes())
                        .and_then(|_| stream.write_all(&body));
                }
                _ => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    port
}

fn run_corpus(env: &Env) {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/reference/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 40,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut failures: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for case in &cases {
        if let Err(diffs) = check_case(env, case) {
            failures.insert(
                case.file_name().unwrap().to_string_lossy().into_owned(),
                diffs,
            );
        }
    }
    let report: Vec<String> = failures
        .iter()
        .map(|(c, d)| format!("== {c}\n{}", d.join("\n")))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from BuildKit:\n{}",
        failures.len(),
        cases.len(),
        report.join("\n")
    );
}

#[test]
fn reference_corpus_as_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "run the engine tests as root (the rootless run switches user itself)"
    );
    run_corpus(&Env::new("root", false));
}

#[test]
fn reference_corpus_rootless() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the rootless run needs root to create and switch to its user"
    );
    run_corpus(&Env::new("rootless", true));
}

/// The copy snapshotter (no overlayfs) writes a deleted-and-recreated directory as per-entry
/// whiteouts instead of an opaque marker, like BuildKit's native snapshotter; the final
/// filesystem is the same.
const COPY_SNAPSHOTTER_DEVIATIONS: &[&str] =
    &["layers[1].entries[/data/.wh", "layers[2].entries[/home/.wh"];

#[test]
fn reference_corpus_with_the_copy_snapshotter() {
    assert!(
        rustix::process::geteuid().is_root(),
        "run the engine tests as root"
    );
    let mut env = Env::new("copy", false);
    env.extra_args = vec!["--snapshotter=copy".into()];
    run_corpus(&env);
}

/// For each case BuildKit fails: the Dockerfile line Kiln's error points at (none for a base
/// image that cannot be resolved: BuildKit names only the image there too), and a word the
/// message must contain (what failed, in the user's terms).
fn failure_expectation(case: &str) -> Option<(Option<u32>, &'static str)> {
    Some(match case {
        "error-cmd-before-from" => (Some(2), "no build stage"),
        "error-copy-from-unknown-stage" => (Some(2), "nosuchstage"),
        "error-copy-missing-file" => (Some(2), "\"/does-not-exist.txt\" not found"),
        "error-from-index" => (None, "docker.io/library/0"),
        "error-from-uppercase-stage" => (Some(4), "Builder"),
        "error-healthcheck-bad-duration" => (Some(2), "parsecs"),
        "error-run-fails" => (Some(3), "exit code: 3"),
        "error-unknown-instruction" => (Some(2), "FROBNICATE"),
        _ => return None,
    })
}
