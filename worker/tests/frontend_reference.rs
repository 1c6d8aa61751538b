//! The front end against what a real BuildKit built: `tests/reference` (see its README).
//!
//! For every recorded image, the Dockerfile is planned and lowered here with the reference base
//! image's config, and the history texts (`created_by`, `empty_layer`), the image config and the
//! author must equal BuildKit's. The reference was recorded by BuildKit v0.8 (dockerd 20.10), so
//! the plan uses [`HistoryStyle::Dockerd20`]; the few places where current BuildKit writes other
//! texts are unit-tested in the plan module.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_worker::dockerfile;
use kiln_worker::image::config::ImageConfig;
use kiln_worker::plan::step::{Base, Op};
use kiln_worker::plan::{self, HistoryStyle, Plan, PlanOptions, Platform};
use serde_json::Value;

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference")
}

fn read_json(p: &Path) -> Value {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn options(case: &Value) -> PlanOptions {
    let mut build_args = BTreeMap::new();
    if let Some(args) = case.get("build_args").and_then(Value::as_object) {
        for (k, v) in args {
            build_args.insert(k.clone(), v.as_str().unwrap_or_default().to_string());
        }
    }
    PlanOptions {
        build_args,
        target: case
            .get("target")
            .and_then(Value::as_str)
            .map(str::to_string),
        build_platform: Platform::new("linux", "amd64", ""),
        target_platform: Platform::new("linux", "amd64", ""),
        history: HistoryStyle::Dockerd20,
    }
}

/// A stage's history (created_by, empty_layer), its parents' first; its config; its author.
type Lowered = (Vec<(String, bool)>, ImageConfig, String);

/// The history and final config of a stage, with its parent stages'.
fn lower_chain(plan: &Plan, stage: usize, base: &ImageConfig) -> Result<Lowered, String> {
    let (mut history, base_config, mut author) = match plan.stages[stage].base {
        Base::Image(_) => (Vec::new(), base.clone(), String::new()),
        Base::Scratch => (Vec::new(), plan::scratch_config(), String::new()),
        Base::Stage(b) => lower_chain(plan, b, base)?,
    };
    let lowered = plan::lower(plan, stage, &base_config).map_err(|d| d.to_string())?;
    for step in &lowered.steps {
        history.push((step.created_by.clone(), matches!(step.op, Op::Config)));
    }
    if !lowered.author.is_empty() {
        author = lowered.author.clone();
    }
    Ok((history, lowered.config, author))
}

fn strip_nulls(v: &mut Value) {
    if let Value::Object(m) = v {
        m.retain(|_, v| !v.is_null());
        for v in m.values_mut() {
            strip_nulls(v);
        }
    }
}

/// The errors BuildKit reports while parsing, before anything runs; the other recorded errors
/// happen at build time (a missing file, a failing RUN, an image that cannot be pulled), or are
/// flags this old BuildKit lacks.
const PARSE_ERRORS: &[&str] = &[
    "error-cmd-before-from",
    "error-from-uppercase-stage",
    "error-healthcheck-bad-duration",
    "error-unknown-instruction",
];

/// Where Kiln follows current BuildKit rather than the recorded v0.8 in a way the history texts
/// show: (case, v0.8's `created_by`, current BuildKit's, why). The recorded text is replaced by
/// the current one before comparing, so every other entry of the case is still checked.
const HISTORY_DEVIATIONS: &[(&str, &str, &str, &str)] = &[
    // moby/buildkit 47a52a17 (dockerfile 1.8): ARG defaults are expanded one by one, each after
    // the earlier ARGs of the same instruction are set; v0.8 expanded the whole instruction
    // first. `ARG a=1 b=$a` gives b=1 now, b= in v0.8.
    (
        "arg-multi-assign",
        "ARG a=1 b=",
        "ARG a=1 b=1",
        "ARG defaults see earlier ARGs of the same instruction (dockerfile >= 1.8)",
    ),
    (
        "arg-multi-assign",
        "ARG c=1 d=",
        "ARG c=1 d=1",
        "ARG defaults see earlier ARGs of the same instruction (dockerfile >= 1.8)",
    ),
    (
        "arg-multi-assign",
        "ARG x=default y=",
        "ARG x=default y=from-cli",
        "ARG defaults see earlier ARGs of the same instruction (dockerfile >= 1.8)",
    ),
    (
        "arg-multi-assign",
        "RUN |8 TAG=1 BASE=kiln-ref/busybox:1 a=1 b= c=1 d= x=from-cli y= /bin/sh",
        "RUN |8 TAG=1 BASE=kiln-ref/busybox:1 a=1 b=1 c=1 d=1 x=from-cli y=from-cli /bin/sh",
        "ARG defaults see earlier ARGs of the same instruction (dockerfile >= 1.8)",
    ),
];

/// BuildKit's history of a case, with the [`HISTORY_DEVIATIONS`] applied.
fn expected_history(case: &str, recorded: &[Value]) -> Vec<(String, bool)> {
    recorded
        .iter()
        .map(|h| {
            let mut text = h["created_by"].as_str().unwrap_or_default().to_string();
            for (c, old, new, _) in HISTORY_DEVIATIONS {
                if *c == case && (text == *old || text.starts_with(&format!("{old} "))) {
                    text = format!("{new}{}", &text[old.len()..]);
                }
            }
            (text, h["empty_layer"].as_bool().unwrap_or(false))
        })
        .collect()
}

#[test]
fn lowering_matches_buildkit_history_and_config() {
    let dir = reference_dir();
    let base_facts = read_json(&dir.join("expected/_base.json"));
    let base: ImageConfig =
        serde_json::from_value(base_facts["config"].clone()).expect("the base config");
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut cases: Vec<_> = std::fs::read_dir(dir.join("cases"))
        .expect("tests/reference/cases")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    for case_dir in cases {
        let name = case_dir.file_name().unwrap().to_string_lossy().to_string();
        let case = read_json(&case_dir.join("case.json"));
        let text = std::fs::read_to_string(case_dir.join("Dockerfile")).unwrap();
        let planned =
            dockerfile::parse("Dockerfile", &text).and_then(|df| plan::build(df, &options(&case)));
        let error_file = dir.join(format!("expected/{name}.error.json"));
        if error_file.exists() {
            match (&planned, PARSE_ERRORS.contains(&name.as_str())) {
                (Ok(_), true) => {
                    failures.push(format!("{name}: BuildKit rejects it, Kiln accepts it"))
                }
                (Err(e), false) => {
                    failures.push(format!("{name}: Kiln rejects it while planning:\n{e}"))
                }
                _ => {}
            }
            checked += 1;
            continue;
        }
        let expected = read_json(&dir.join(format!("expected/{name}.json")));
        let plan = match planned {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{name}: plan failed:\n{e}"));
                continue;
            }
        };
        let (history, config, author) = match lower_chain(&plan, plan.target, &base) {
            Ok(x) => x,
            Err(e) => {
                failures.push(format!("{name}: lowering failed:\n{e}"));
                continue;
            }
        };
        checked += 1;
        if let Some(want) = expected.get("history").and_then(Value::as_array) {
            let want = expected_history(&name, want);
            if want != history {
                failures.push(format!(
                    "{name}: history differs\n  BuildKit: {want:#?}\n  Kiln:     {history:#?}"
                ));
            }
        }
        if let Some(want) = expected.get("config") {
            let mut want = want.clone();
            strip_nulls(&mut want);
            let got = serde_json::to_value(&config).unwrap();
            if want != got {
                failures.push(format!(
                    "{name}: config differs\n  BuildKit: {want}\n  Kiln:     {got}"
                ));
            }
        }
        let want_author = expected
            .get("author")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if want_author != author {
            failures.push(format!(
                "{name}: author {author:?}, BuildKit {want_author:?}"
            ));
        }
    }
    assert!(checked > 60, "only {checked} reference cases found");
    assert!(
        failures.is_empty(),
        "{} of {checked} cases differ:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
