//! The build cache: what reruns after a change, `kiln du`, `kiln prune` with every filter, the
//! automatic GC, and what a killed build leaves in the store.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use common::{Env, text};

fn root_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("cache-root", false))
}

fn rootless_env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| Env::new("cache-rootless", true))
}

/// The steps of a plain progress log and whether each was CACHED: `#3 [a 2/3] RUN x` followed
/// (later) by `#3 CACHED`.
fn steps(log: &str) -> BTreeMap<String, bool> {
    let mut names = BTreeMap::new();
    let mut cached = BTreeSet::new();
    for line in log.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((id, what)) = rest.split_once(' ') else {
            continue;
        };
        if what == "CACHED" {
            cached.insert(id.to_string());
        } else if what.starts_with('[') && !what.starts_with("[internal]") {
            names
                .entry(id.to_string())
                .or_insert_with(|| what.to_string());
        }
    }
    names
        .into_iter()
        .filter(|(_, name)| !name.contains("] FROM "))
        .map(|(id, name)| {
            let c = cached.contains(&id);
            (name, c)
        })
        .collect()
}

fn rerun(log: &str) -> BTreeSet<String> {
    steps(log)
        .into_iter()
        .filter(|(_, c)| !c)
        .map(|(n, _)| n)
        .collect()
}

/// A private state directory for one test, seeded with nothing: the base is imported from the
/// env's layout on first use.
fn state(env: &Env, name: &str) -> PathBuf {
    let dir = env.dir.join("states").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    if env.rootless {
        Command::new("chown")
            .args([
                "-R",
                &format!("{}:{}", common::ROOTLESS_USER, common::ROOTLESS_USER),
            ])
            .arg(&dir)
            .status()
            .unwrap();
    }
    dir
}

/// `kiln build` with the env's base image and `state` as the cache.
fn try_build(env: &Env, state: &Path, ctx: &Path, args: &[&str]) -> std::process::Output {
    env.build_in(state, ctx, args)
}

fn build(env: &Env, state: &Path, ctx: &Path, args: &[&str]) -> String {
    let out = try_build(env, state, ctx, args);
    assert!(out.status.success(), "{}", text(&out));
    text(&out)
}

fn kiln(env: &Env, state: &Path, args: &[&str]) -> std::process::Output {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.push(format!("--cache-dir={}", state.display()));
    env.kiln(&all)
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    kind: String,
    id: String,
    size: u64,
    last_used: u64,
    in_use: bool,
}

fn du(env: &Env, state: &Path, filters: &[&str]) -> Vec<Rec> {
    let mut args = vec!["du", "--json"];
    args.extend(filters);
    let out = kiln(env, state, &args);
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| Rec {
            kind: r["kind"].as_str().unwrap().to_string(),
            id: r["id"].as_str().unwrap().to_string(),
            size: r["size"].as_u64().unwrap(),
            last_used: r["last_used"].as_u64().unwrap(),
            in_use: r["in_use"].as_bool().unwrap(),
        })
        .collect()
}

fn prune(env: &Env, state: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["prune", "--json"];
    all.extend(args);
    let out = kiln(env, state, &all);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn removed_ids(report: &serde_json::Value) -> BTreeSet<String> {
    report["removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

fn ids(records: &[Rec]) -> BTreeSet<String> {
    records.iter().map(|r| r.id.clone()).collect()
}

/// Make a record look last used `age` ago.
fn age(state: &Path, rec: &Rec, age: Duration) {
    let when = SystemTime::now() - age;
    let path = match rec.kind.as_str() {
        "step" | "layer" => state.join("snapshots").join(&rec.id).join("used"),
        "cache-mount" => {
            let (_, n) = rec.id.rsplit_once('#').unwrap();
            let dir = std::fs::read_dir(state.join("cache-mounts"))
                .unwrap()
                .flatten()
                .find(|d| d.path().join(n).exists())
                .unwrap()
                .path();
            dir.join(format!("{n}.used"))
        }
        "source" => state.join("context-hashes").join(&rec.id),
        _ => state
            .join("blobs/sha256")
            .join(rec.id.trim_start_matches("sha256:")),
    };
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    f.set_modified(when).unwrap();
}

const SPLIT: &str = "FROM kiln-ref/busybox:1 AS a\n\
COPY a.txt /a.txt\n\
RUN --mount=type=cache,target=/log,id=log cat /a.txt >> /log/runs && echo a-ran >> /log/runs\n\
FROM kiln-ref/busybox:1 AS b\n\
COPY b.txt /b.txt\n\
RUN --mount=type=cache,target=/log,id=log echo b-ran >> /log/runs\n\
FROM kiln-ref/busybox:1\n\
COPY c.txt /c.txt\n\
COPY --from=a /a.txt /from-a\n\
COPY --from=b /b.txt /from-b\n\
RUN --mount=type=cache,target=/log,id=log echo final-ran >> /log/runs\n";

#[test]
fn a_changed_file_reruns_only_the_steps_that_read_it() {
    let env = root_env();
    let state = state(env, "incremental");
    let files = |b: &'static str| {
        vec![
            ("Dockerfile", SPLIT),
            ("a.txt", "a\n"),
            ("b.txt", b),
            ("c.txt", "c\n"),
            ("unused.txt", b),
        ]
    };
    let ctx = env.context("incremental", &files("b1\n"));
    let first = build(env, &state, &ctx, &[]);
    assert!(steps(&first).values().all(|c| !c), "{first}");

    // Touching a file (a new mtime, the same content) changes nothing.
    let when = SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .append(true)
        .open(ctx.join("a.txt"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    let again = build(env, &state, &ctx, &[]);
    assert!(
        rerun(&again).is_empty(),
        "an mtime change reran steps: {again}"
    );

    std::fs::write(ctx.join("b.txt"), "b2\n").unwrap();
    std::fs::write(ctx.join("unused.txt"), "changed\n").unwrap();
    let second = build(env, &state, &ctx, &[]);
    let want: BTreeSet<String> = [
        "[b 2/3] COPY b.txt /b.txt",
        "[b 3/3] RUN --mount=type=cache,target=/log,id=log echo b-ran >> /log/runs",
        "[stage-2 4/5] COPY --from=b /b.txt /from-b",
        "[stage-2 5/5] RUN --mount=type=cache,target=/log,id=log echo final-ran >> /log/runs",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(rerun(&second), want, "{second}");
    // The steps wrote their marker only when they ran.
    let log = std::fs::read_dir(state.join("cache-mounts"))
        .unwrap()
        .flatten()
        .map(|d| d.path().join("0/runs"))
        .find(|p| p.exists())
        .unwrap();
    let runs = std::fs::read_to_string(log).unwrap();
    assert_eq!(runs.matches("a-ran").count(), 1, "{runs}");
    assert_eq!(runs.matches("b-ran").count(), 2, "{runs}");
    assert_eq!(runs.matches("final-ran").count(), 2, "{runs}");

    // --no-cache-filter reruns that stage and nothing else: it makes the same /a.txt, so the
    // final stage's COPY from it is a hit by content, as in BuildKit, and so is what follows.
    let filtered = build(env, &state, &ctx, &["--no-cache-filter=a"]);
    let rerun_filtered = rerun(&filtered);
    assert!(
        rerun_filtered.contains("[a 2/3] COPY a.txt /a.txt"),
        "{filtered}"
    );
    assert!(
        rerun_filtered.iter().any(|s| s.starts_with("[a 3/3] RUN")),
        "{filtered}"
    );
    assert!(
        rerun_filtered.iter().all(|s| !s.starts_with("[b ")),
        "{filtered}"
    );
    assert!(
        rerun_filtered.iter().all(|s| !s.starts_with("[stage-2 ")),
        "{filtered}"
    );
    // It then leaves the cache as it was: the next plain build hits everything.
    let after = build(env, &state, &ctx, &[]);
    assert!(rerun(&after).is_empty(), "{after}");

    let bad = try_build(env, &state, &ctx, &["--no-cache-filter=nope"]);
    assert!(!bad.status.success());
    assert!(
        text(&bad).contains("--no-cache-filter nope"),
        "{}",
        text(&bad)
    );
}

const RECORDS: &str = "FROM kiln-ref/busybox:1\n\
COPY one.txt /one\n\
RUN --mount=type=cache,target=/c,id=pkgs echo x > /c/x && echo one > /r1\n\
RUN --mount=type=cache,target=/c,id=other,sharing=private echo y > /c/y && dd if=/dev/zero of=/big bs=1k count=256 2>/dev/null\n\
RUN echo three > /r3\n";

/// A state with step results, base layers, cache mounts, sources and blobs.
fn populated(env: &Env, name: &str) -> (PathBuf, Vec<Rec>) {
    let state = state(env, name);
    let ctx = env.context(name, &[("Dockerfile", RECORDS), ("one.txt", "1\n")]);
    build(
        env,
        &state,
        &ctx,
        &[&format!(
            "--output=type=oci,dest={}",
            env.dir.join(format!("{name}-out")).display()
        )],
    );
    let records = du(env, &state, &[]);
    let kinds: BTreeSet<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["blob", "cache-mount", "layer", "source", "step"]
            .into_iter()
            .collect(),
        "{records:?}"
    );
    (state, records)
}

#[test]
fn du_shows_kind_size_and_last_use() {
    let env = root_env();
    let (state, records) = populated(env, "du");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for r in &records {
        assert!(r.size > 0, "{r:?}");
        assert!(now.abs_diff(r.last_used) < 600, "{r:?}");
        assert!(!r.in_use, "{r:?}");
    }
    assert_eq!(
        records.iter().filter(|r| r.kind == "step").count(),
        4,
        "{records:?}"
    );
    assert_eq!(
        records.iter().filter(|r| r.kind == "cache-mount").count(),
        2,
        "{records:?}"
    );
    // The 256 KiB file shows in its step's size.
    let biggest = records
        .iter()
        .filter(|r| r.kind == "step")
        .map(|r| r.size)
        .max()
        .unwrap();
    assert!(biggest >= 256 * 1024, "{records:?}");
    // The table form has a header, a row per record and a total.
    let out = kiln(env, &state, &["du"]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("cache mount pkgs, instance 0"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("total")), "{table}");
    // Filters apply to du too.
    let mounts = du(env, &state, &["--filter=type=cache-mount"]);
    assert_eq!(mounts.len(), 2);
}

#[test]
fn prune_filters_free_exactly_what_they_select() {
    let env = root_env();
    let (state, records) = populated(env, "prune");
    let total: u64 = records.iter().map(|r| r.size).sum();

    // A dry run reports everything and removes nothing.
    let dry = prune(env, &state, &["--all", "--dry-run"]);
    assert_eq!(removed_ids(&dry), ids(&records));
    assert_eq!(dry["freed"].as_u64().unwrap(), total);
    assert_eq!(du(env, &state, &[]), records);

    // type=cache-mount: the two instances, nothing else.
    let report = prune(env, &state, &["--filter=type=cache-mount"]);
    let mounts: BTreeSet<String> = records
        .iter()
        .filter(|r| r.kind == "cache-mount")
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(removed_ids(&report), mounts);
    let freed: u64 = records
        .iter()
        .filter(|r| r.kind == "cache-mount")
        .map(|r| r.size)
        .sum();
    assert_eq!(report["freed"].as_u64().unwrap(), freed);
    let left = du(env, &state, &[]);
    assert_eq!(
        ids(&left),
        ids(&records).difference(&mounts).cloned().collect()
    );

    // id=: one step, by prefix.
    let step = left.iter().find(|r| r.kind == "step").unwrap().clone();
    let report = prune(env, &state, &[&format!("--filter=id={}", &step.id[..16])]);
    assert_eq!(
        removed_ids(&report),
        [step.id.clone()].into_iter().collect()
    );
    assert!(!state.join("snapshots").join(&step.id).exists());
    let left = du(env, &state, &[]);

    // until=: nothing is old yet; age one record and it alone goes.
    let report = prune(env, &state, &["--all", "--filter=until=24h"]);
    assert!(removed_ids(&report).is_empty(), "{report}");
    let old = left.iter().find(|r| r.kind == "step").unwrap().clone();
    age(&state, &old, Duration::from_secs(2 * 86400));
    let report = prune(env, &state, &["--all", "--filter=until=24h"]);
    assert_eq!(removed_ids(&report), [old.id.clone()].into_iter().collect());
    let left = du(env, &state, &[]);

    // --keep-duration keeps the recent ones, likewise.
    let old = left.iter().find(|r| r.kind == "source").unwrap().clone();
    age(&state, &old, Duration::from_secs(3 * 3600));
    let report = prune(env, &state, &["--all", "--keep-duration=1h"]);
    assert_eq!(removed_ids(&report), [old.id.clone()].into_iter().collect());
    let left = du(env, &state, &[]);

    // --keep-storage removes least recently used first, and stops under the cap.
    let mut by_age = left.clone();
    for (n, r) in by_age.iter().enumerate() {
        age(&state, r, Duration::from_secs(1000 + 100 * n as u64));
    }
    by_age.reverse(); // oldest first
    let size: u64 = left.iter().map(|r| r.size).sum();
    let cap = size - by_age[0].size - by_age[1].size;
    let report = prune(env, &state, &["--all", &format!("--keep-storage={cap}")]);
    assert_eq!(
        removed_ids(&report),
        [by_age[0].id.clone(), by_age[1].id.clone()]
            .into_iter()
            .collect(),
        "{report}"
    );
    let left = du(env, &state, &[]);
    assert!(left.iter().map(|r| r.size).sum::<u64>() <= cap);

    // Without --all, base image layers stay.
    let report = prune(env, &state, &[]);
    assert!(
        report["removed"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["kind"] != "layer")
    );
    let left = du(env, &state, &[]);
    assert!(left.iter().all(|r| r.kind == "layer"), "{left:?}");
    assert!(!left.is_empty());

    // --all empties the cache, and the next build starts again from nothing.
    prune(env, &state, &["--all"]);
    assert!(du(env, &state, &[]).is_empty());
    let ctx = env.dir.join("contexts/prune");
    let again = build(env, &state, &ctx, &[]);
    assert!(steps(&again).values().all(|c| !c), "{again}");
}

#[test]
fn prune_never_touches_what_a_build_holds() {
    let env = root_env();
    let (state, records) = populated(env, "in-use");
    // Hold one cache-mount instance as a step would, and the store as a build does.
    let mount_lock = std::fs::read_dir(state.join("cache-mounts"))
        .unwrap()
        .flatten()
        .map(|d| d.path().join("0.lock"))
        .next()
        .unwrap();
    let mut holder = Command::new("flock")
        .arg(&mount_lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let mut build_lock = Command::new("flock")
        .arg("-s")
        .arg(state.join("lock"))
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let shown = du(env, &state, &["--filter=type=cache-mount"]);
    assert_eq!(shown.iter().filter(|r| r.in_use).count(), 1, "{shown:?}");
    let report = prune(env, &state, &["--all"]);
    // Only the cache-mount instance nobody holds could go.
    let free_mount: BTreeSet<String> = shown
        .iter()
        .filter(|r| !r.in_use)
        .map(|r| r.id.clone())
        .collect();
    assert_eq!(removed_ids(&report), free_mount, "{report}");
    assert_eq!(report["builds_running"], true);
    let _ = holder.kill();
    let _ = build_lock.kill();
    let _ = holder.wait();
    let _ = build_lock.wait();
    let left = du(env, &state, &[]);
    assert_eq!(left.len(), records.len() - 1);
}

#[test]
fn automatic_gc_after_a_build_applies_the_policy() {
    let env = root_env();
    let (state, records) = populated(env, "gc");
    let old = records
        .iter()
        .find(|r| r.kind == "cache-mount")
        .unwrap()
        .clone();
    age(&state, &old, Duration::from_secs(3 * 86400));
    let ctx = env.dir.join("contexts/gc");
    let log = build(env, &state, &ctx, &["--gc-keep-duration=48h"]);
    assert!(log.contains("cache GC: removed 1 records"), "{log}");
    let left = du(env, &state, &[]);
    assert!(!ids(&left).contains(&old.id), "{left:?}");
    // A storage cap: the cache ends no bigger than it.
    let log = build(env, &state, &ctx, &["--gc-keep-storage=100k"]);
    assert!(log.contains("cache GC: removed"), "{log}");
    let size: u64 = du(env, &state, &[]).iter().map(|r| r.size).sum();
    assert!(size <= 100 << 10, "{size}");
}

fn pids_of(needle: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmd)
                .replace('\0', " ")
                .contains(needle)
                .then_some(pid)
        })
        .collect()
}

fn killed_build_leaves_a_consistent_store(env: &Env, name: &str) {
    let state = state(env, name);
    // Distinct for the root and the rootless runs, which run at once.
    let wait = if env.rootless { 7374 } else { 7373 };
    let dockerfile = "FROM kiln-ref/busybox:1\n\
RUN echo one > /one\n\
ARG WAIT=0\n\
RUN echo two > /two && dd if=/dev/zero of=/blob bs=1k count=512 2>/dev/null && sleep $WAIT\n\
RUN echo three > /three\n";
    let ctx = env.context(name, &[("Dockerfile", dockerfile)]);
    let mut cmd = if env.rootless {
        let mut c = Command::new("runuser");
        c.args(["-u", common::ROOTLESS_USER, "--"])
            .arg(common::kiln_bin());
        c
    } else {
        Command::new(common::kiln_bin())
    };
    let mut child = cmd
        .args([
            "build",
            "--progress=plain",
            &format!("--build-arg=WAIT={wait}"),
        ])
        .arg(format!("--cache-dir={}", state.display()))
        .arg(format!(
            "--build-context=kiln-ref/busybox:1=oci-layout://{}",
            env.base.display()
        ))
        .arg(&ctx)
        .env("HOME", env.dir.join("home"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while pids_of(&format!("sleep {wait}")).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the step never started"
        );
        assert!(child.try_wait().unwrap().is_none(), "the build ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Kill the build: kiln itself (and runuser's child) with SIGKILL, no chance to clean up.
    let killed = pids_of(&format!("--cache-dir={}", state.display()));
    for &pid in &killed {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    let _ = child.wait();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        pids_of(&format!("sleep {wait}")).is_empty(),
        "the killed build's step still runs"
    );

    // The store holds whole records only: du reads it, and the first step is a hit.
    let records = du(env, &state, &[]);
    assert_eq!(
        records.iter().filter(|r| r.kind == "step").count(),
        1,
        "{records:?}"
    );

    let log = build(env, &state, &ctx, &[]);
    let ran = rerun(&log);
    assert!(!ran.iter().any(|s| s.contains("echo one")), "{log}");
    assert!(ran.iter().any(|s| s.contains("echo two")), "{log}");
    // The next build cleared what the killed one left in tmp/.
    let tmp: Vec<_> = std::fs::read_dir(state.join("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        tmp.is_empty(),
        "left in tmp: {tmp:?} (the killed processes were {killed:?})"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(state.to_str().unwrap()),
        "a mount is left:\n{mounts}"
    );
}

#[test]
fn a_killed_build_leaves_a_consistent_store() {
    killed_build_leaves_a_consistent_store(root_env(), "killed-root");
}

#[test]
fn a_killed_rootless_build_leaves_a_consistent_store() {
    killed_build_leaves_a_consistent_store(rootless_env(), "killed-rootless");
}

#[test]
fn damaged_records_are_detected_and_rebuilt() {
    let env = root_env();
    let (state, records) = populated(env, "damaged");
    let ctx = env.dir.join("contexts/damaged");
    let steps_before: Vec<&Rec> = records.iter().filter(|r| r.kind == "step").collect();
    // A snapshot without its meta.json (a crash between writing and committing) is no record.
    let victim = &steps_before[0];
    std::fs::remove_file(state.join("snapshots").join(&victim.id).join("meta.json")).unwrap();
    // A layer record pointing at a blob that is gone, and one that is garbage.
    let mut layer_records = Vec::new();
    for r in &steps_before[1..] {
        for e in std::fs::read_dir(state.join("snapshots").join(&r.id))
            .unwrap()
            .flatten()
        {
            if e.file_name().to_string_lossy().starts_with("layer-") {
                layer_records.push(e.path());
            }
        }
    }
    assert!(layer_records.len() >= 2, "{layer_records:?}");
    let blob: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&layer_records[0]).unwrap()).unwrap();
    let digest = blob["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::remove_file(state.join("blobs/sha256").join(&digest)).unwrap();
    std::fs::write(&layer_records[1], b"{not json").unwrap();
    let out = env.dir.join("damaged-layout");
    let log = build(
        env,
        &state,
        &ctx,
        &[&format!("--output=type=oci,dest={}", out.display())],
    );
    let ran = rerun(&log);
    assert_eq!(
        ran.len(),
        1,
        "only the step whose record was incomplete reruns: {log}"
    );
    let check = Command::new("skopeo")
        .args(["inspect", &format!("oci:{}", out.display())])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        state.join("blobs/sha256").join(&digest).exists(),
        "the lost blob was made again"
    );
}

#[test]
fn rootless_prune_removes_what_rootless_builds_made() {
    let env = rootless_env();
    let (state, _) = populated(env, "rootless-prune");
    let report = prune(env, &state, &["--all"]);
    assert!(!removed_ids(&report).is_empty());
    assert!(du(env, &state, &[]).is_empty());
    let left: Vec<_> = std::fs::read_dir(state.join("snapshots"))
        .unwrap()
        .flatten()
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn metadata(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Snapshot ids of steps (not base layers) in a state.
fn step_snapshots(state: &Path) -> usize {
    std::fs::read_dir(state.join("snapshots"))
        .map(|d| {
            d.flatten()
                .filter(|e| {
                    std::fs::read(e.path().join("meta.json"))
                        .map(|m| !String::from_utf8_lossy(&m).contains("\"blob\""))
                        .unwrap_or(false)
                })
                .count()
        })
        .unwrap_or(0)
}

const EXPORTED: &str = "FROM kiln-ref/busybox:1 AS deps\n\
COPY deps.txt /deps.txt\n\
RUN sort /deps.txt > /deps.sorted && dd if=/dev/urandom of=/deps.bin bs=1k count=64 2>/dev/null\n\
FROM kiln-ref/busybox:1 AS app\n\
WORKDIR /app\n\
COPY --from=deps /deps.sorted /deps.bin ./\n\
COPY main.txt .\n\
RUN cat deps.sorted main.txt > out.txt\n\
RUN true\n\
CMD [\"cat\", \"/app/out.txt\"]\n";

#[test]
fn a_cache_exported_to_a_directory_gives_hits_in_a_fresh_store() {
    let env = root_env();
    let ctx = env.context(
        "export",
        &[
            ("Dockerfile", EXPORTED),
            ("deps.txt", "b\na\n"),
            ("main.txt", "main\n"),
        ],
    );
    let cache_max = env.dir.join("cache-max");
    let cache_min = env.dir.join("cache-min");
    let sde = "--source-date-epoch=1700000000";
    let first = state(env, "export-first");
    let meta = env.dir.join("export-first.json");
    build(
        env,
        &first,
        &ctx,
        &[
            sde,
            &format!("--metadata-file={}", meta.display()),
            &format!(
                "--cache-to=type=local,dest={},mode=max",
                cache_max.display()
            ),
            &format!("--cache-to=type=local,dest={}", cache_min.display()),
        ],
    );
    let digest = metadata(&meta)["containerimage.digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(metadata(&meta)["kiln.runs"], 3);
    // The export is a plain OCI manifest with our config type; skopeo reads it as any image.
    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci:{}:latest", cache_max.display()),
        ])
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", text(&raw));
    let manifest: serde_json::Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.kiln.cache.config.v1+json"
    );
    assert_eq!(
        manifest["artifactType"],
        "application/vnd.kiln.cache.config.v1+json"
    );

    // A fresh store, the max cache, no output: every step is a hit and nothing is fetched.
    let lazy = state(env, "export-lazy");
    let lazy_meta = env.dir.join("export-lazy.json");
    let log = build(
        env,
        &lazy,
        &ctx,
        &[
            sde,
            &format!("--metadata-file={}", lazy_meta.display()),
            &format!("--cache-from=type=local,src={}", cache_max.display()),
        ],
    );
    let m = metadata(&lazy_meta);
    assert_eq!(m["kiln.runs"], 0, "{log}");
    assert_eq!(m["containerimage.digest"], digest.as_str());
    assert!(m["kiln.imported"].as_u64().unwrap() >= 5, "{m}");
    assert!(rerun(&log).is_empty(), "{log}");
    assert_eq!(
        step_snapshots(&lazy),
        1,
        "only the empty step is made locally; nothing is unpacked"
    );

    // With an output, the blobs are fetched, still without unpacking or running anything.
    let out = env.dir.join("export-out");
    let fetched = state(env, "export-fetched");
    let fetched_meta = env.dir.join("export-fetched.json");
    build(
        env,
        &fetched,
        &ctx,
        &[
            sde,
            &format!("--metadata-file={}", fetched_meta.display()),
            &format!("--cache-from=type=local,src={}", cache_max.display()),
            &format!("--output=type=oci,dest={}", out.display()),
        ],
    );
    assert_eq!(metadata(&fetched_meta)["kiln.runs"], 0);
    assert_eq!(
        metadata(&fetched_meta)["containerimage.digest"],
        digest.as_str()
    );
    assert_eq!(step_snapshots(&fetched), 1);
    let check = Command::new("skopeo")
        .args(["inspect", &format!("oci:{}", out.display())])
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", text(&check));

    // A changed file: the steps that read it run, on the imported layers below them, which
    // are unpacked for that.
    std::fs::write(ctx.join("main.txt"), "main 2\n").unwrap();
    let changed = state(env, "export-changed");
    let fs = env.dir.join("export-changed-fs");
    let log = build(
        env,
        &changed,
        &ctx,
        &[
            &format!("--cache-from=type=local,src={}", cache_max.display()),
            &format!("--output=type=local,dest={}", fs.display()),
        ],
    );
    let ran: Vec<String> = rerun(&log).into_iter().collect();
    assert_eq!(
        ran.len(),
        3,
        "COPY main.txt and the two RUNs after it: {log}"
    );
    assert!(ran.iter().all(|s| s.starts_with("[app ")), "{log}");
    assert_eq!(
        std::fs::read_to_string(fs.join("app/out.txt")).unwrap(),
        "a\nb\nmain 2\n"
    );
    std::fs::write(ctx.join("main.txt"), "main\n").unwrap();

    // mode=min carries the image's layers only: the deps stage runs again.
    let min = state(env, "export-min");
    let min_meta = env.dir.join("export-min.json");
    build(
        env,
        &min,
        &ctx,
        &[
            sde,
            &format!("--metadata-file={}", min_meta.display()),
            &format!("--cache-from=type=local,src={}", cache_min.display()),
        ],
    );
    assert_eq!(
        metadata(&min_meta)["kiln.runs"],
        1,
        "the deps RUN reruns; the app steps hit"
    );

    // A missing cache is a note, not an error.
    let none = state(env, "export-none");
    let log = build(
        env,
        &none,
        &ctx,
        &[&format!(
            "--cache-from=type=local,src={}",
            env.dir.join("no-such-cache").display()
        )],
    );
    assert!(log.contains("no cache to import"), "{log}");

    // A damaged blob in the cache is caught when it is fetched, and named.
    let manifest_layers = manifest["layers"].as_array().unwrap();
    for l in manifest_layers {
        let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
        std::fs::write(cache_max.join("blobs/sha256").join(hex), b"garbage").unwrap();
    }
    let damaged = state(env, "export-damaged");
    let out = try_build(
        env,
        &damaged,
        &ctx,
        &[
            &format!("--cache-from=type=local,src={}", cache_max.display()),
            &format!(
                "--output=type=oci,dest={}",
                env.dir.join("damaged-out").display()
            ),
        ],
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("from the cache") && message.contains("digest"),
        "{message}"
    );
    assert!(
        !env.dir.join("damaged-out/index.json").exists(),
        "no partial output"
    );
}

/// The layer digests of the image in an OCI layout.
fn layout_layers(dir: &Path) -> Vec<String> {
    let blob = |digest: &str| -> serde_json::Value {
        let path = dir
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest = blob(index["manifests"][0]["digest"].as_str().unwrap());
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_copy_link_layer_is_rebased_not_rebuilt_when_its_parent_changes() {
    let env = root_env();
    let state = state(env, "link");
    let ctx = env.context(
        "link",
        &[
            (
                "Dockerfile",
                "FROM kiln-ref/busybox:1\n\
                 ARG V=1\n\
                 RUN echo $V > /v\n\
                 COPY --link big.txt /big.txt\n\
                 RUN cat /v /big.txt > /both\n",
            ),
            ("big.txt", &"kiln\n".repeat(20_000)),
        ],
    );
    let out = |v: &str| env.dir.join(format!("link-out-{v}"));
    let run = |v: &str| {
        build(
            env,
            &state,
            &ctx,
            &[
                &format!("--build-arg=V={v}"),
                &format!("--output=type=oci,dest={}", out(v).display()),
            ],
        )
    };
    run("1");
    let second = run("2");
    let ran = rerun(&second);
    // The parent changed: the step below it and the step above it run again; the linked copy
    // does not, and its layer is the same blob on the new parent.
    assert!(
        ran.iter().any(|s| s.contains("RUN echo 2 > /v")),
        "{second}"
    );
    assert!(ran.iter().any(|s| s.contains("RUN cat /v")), "{second}");
    assert!(!ran.iter().any(|s| s.contains("COPY --link")), "{second}");
    let (l1, l2) = (layout_layers(&out("1")), layout_layers(&out("2")));
    assert_eq!(l1.len(), l2.len());
    let n = l1.len();
    assert_eq!(l1[n - 2], l2[n - 2], "the linked layer is reused as it was");
    assert_ne!(l1[n - 3], l2[n - 3], "the RUN below it differs");
    assert_ne!(l1[n - 1], l2[n - 1], "the RUN above it differs");
}

#[test]
fn steps_reading_a_rebuilt_stage_that_made_the_same_files_stay_cached() {
    let env = root_env();
    let state = state(env, "copy-content");
    let dockerfile = "FROM kiln-ref/busybox:1 AS build\n\
COPY src.txt /src.txt\n\
RUN mkdir /out && (grep -q tool /src.txt && echo yes || echo no) > /out/tool\n\
FROM kiln-ref/busybox:1\n\
COPY --from=build /out/ /usr/local/bin/\n\
RUN cat /usr/local/bin/tool > /copied\n\
RUN --mount=type=bind,from=build,source=/out,target=/o cat /o/tool > /bound\n\
COPY src.txt /final-src.txt\n";
    let ctx = env.context(
        "copy-content",
        &[("Dockerfile", dockerfile), ("src.txt", "one\n")],
    );
    let first = build(env, &state, &ctx, &[]);
    assert_eq!(rerun(&first).len(), 6, "{first}");

    // The build stage reruns and makes the same /out: the COPY from it, the RUN after it and
    // the RUN that bind-mounts it stay cached; only what reads src.txt runs.
    std::fs::write(ctx.join("src.txt"), "two\n").unwrap();
    let second = build(env, &state, &ctx, &[]);
    let want: BTreeSet<String> = [
        "[build 2/3] COPY src.txt /src.txt",
        "[build 3/3] RUN mkdir /out && (grep -q tool /src.txt && echo yes || echo no) > /out/tool",
        "[stage-1 5/5] COPY src.txt /final-src.txt",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(rerun(&second), want, "{second}");

    // A no-op rebuild finds the COPY by its definition again, without hashing.
    let third = build(env, &state, &ctx, &[]);
    assert!(rerun(&third).is_empty(), "{third}");

    // The stage now makes a different file: the COPY and what follows run.
    std::fs::write(ctx.join("src.txt"), "tool\n").unwrap();
    let out = env.dir.join("copy-content-fs");
    let fourth = build(
        env,
        &state,
        &ctx,
        &[&format!("--output=type=local,dest={}", out.display())],
    );
    assert_eq!(rerun(&fourth).len(), 6, "{fourth}");
    assert_eq!(
        std::fs::read_to_string(out.join("copied")).unwrap(),
        "yes\n"
    );
    assert_eq!(std::fs::read_to_string(out.join("bound")).unwrap(), "yes\n");

    // The aliases go with the results they name.
    let aliases = || std::fs::read_dir(state.join("aliases")).unwrap().count();
    assert!(aliases() > 0);
    prune(env, &state, &["--all"]);
    assert_eq!(aliases(), 0);
}
