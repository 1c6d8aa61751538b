//! The front-end corpus: `tests/corpus/frontend/*.Dockerfile`, each with an insta snapshot.
//!
//! A case is `NAME.Dockerfile`, with options in an optional `NAME.json`
//! (`{"build_args": {...}, "target": "..."}`). The snapshot, in
//! `tests/corpus/frontend/snapshots/NAME.snap`, is:
//! - for a Dockerfile that plans: the operator summary (`kiln plan --json`) and every needed
//!   stage lowered with the config known before images are fetched (steps and image config);
//! - for one that does not: the rendered diagnostics, as `kiln plan` prints them.
//!
//! Review new or changed snapshots with `cargo insta review` (or `INSTA_UPDATE=always` and
//! `git diff`). Every case also runs through `parse-dockerfile`, the lexer pinned in the
//! workspace, as a second opinion on where instructions start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_worker::dockerfile;
use kiln_worker::plan::{self, HistoryStyle, PlanOptions, Platform, summary};
use serde::Serialize;
use serde_json::Value;

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/frontend")
}

fn options(path: &Path) -> PlanOptions {
    let mut opts = PlanOptions {
        build_args: BTreeMap::new(),
        target: None,
        build_platform: Platform::new("linux", "amd64", ""),
        target_platform: Platform::new("linux", "amd64", ""),
        history: HistoryStyle::Current,
    };
    let json = path.with_extension("json");
    if let Ok(text) = std::fs::read_to_string(&json) {
        let v: Value = serde_json::from_str(&text).expect("case options");
        if let Some(args) = v.get("build_args").and_then(Value::as_object) {
            for (k, v) in args {
                opts.build_args
                    .insert(k.clone(), v.as_str().unwrap_or_default().to_string());
            }
        }
        opts.target = v.get("target").and_then(Value::as_str).map(str::to_string);
        if let Some(p) = v.get("platform").and_then(Value::as_str) {
            opts.target_platform = Platform::parse(p).expect("platform");
        }
    }
    opts
}

#[derive(Serialize)]
struct StageView<'a> {
    index: usize,
    name: Option<&'a str>,
    lowered: &'a plan::step::LoweredStage,
}

#[derive(Serialize)]
struct View<'a> {
    summary: summary::Summary,
    stages: Vec<StageView<'a>>,
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus/frontend")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "Dockerfile"))
        .collect();
    cases.sort();
    cases
}

#[test]
fn corpus_snapshots() {
    let cases = cases();
    assert!(
        cases.len() >= 40,
        "the corpus has only {} cases",
        cases.len()
    );
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(corpus_dir().join("snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let _guard = settings.bind_to_scope();
    let mut wrong = Vec::new();
    for path in cases {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("a case name")
            .to_string();
        let text = std::fs::read_to_string(&path).expect("a Dockerfile");
        let result = plan::from_text("Dockerfile", &text, &options(&path));
        let expect_error = name.starts_with("error-");
        match result {
            Ok(plan) => {
                if expect_error {
                    wrong.push(format!("{name}: expected an error, the plan succeeded"));
                    continue;
                }
                let view = View {
                    summary: summary::summarize(&plan),
                    stages: plan::lowered(&plan)
                        .map(|(s, l)| StageView {
                            index: s.index,
                            name: s.name.as_deref(),
                            lowered: l,
                        })
                        .collect(),
                };
                insta::assert_yaml_snapshot!(name.as_str(), view);
            }
            Err(diags) => {
                if !expect_error {
                    wrong.push(format!("{name}: planning failed:\n{diags}"));
                    continue;
                }
                insta::assert_snapshot!(name.as_str(), diags.to_string());
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n\n"));
}

/// `parse-dockerfile` and Kiln's parser must agree on where instructions start, for the files
/// both accept and that use nothing `parse-dockerfile` is known to treat differently.
#[test]
fn parse_dockerfile_agrees_on_instruction_lines() {
    let mut compared = 0;
    for path in cases() {
        let text = std::fs::read_to_string(&path).expect("a Dockerfile");
        let Ok(ours) = dockerfile::parse("Dockerfile", &text) else {
            continue;
        };
        // Known differences: heredocs (see above), and a line ending in an escaped escape
        // character, which BuildKit does not treat as a continuation and parse-dockerfile does.
        if text.contains("<<") || text.contains("\\\\\n") || text.contains("\\\\\r\n") {
            continue;
        }
        let Ok(theirs) = parse_dockerfile::parse(&text) else {
            continue;
        };
        // parse-dockerfile's offsets do not count a byte order mark.
        let body = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut their_lines: Vec<u32> = theirs
            .instructions
            .iter()
            .map(|i| {
                let span = instruction_span(i);
                body[..span.start].matches('\n').count() as u32 + 1
            })
            .collect();
        let mut our_lines: Vec<u32> = ours
            .meta_args
            .iter()
            .map(|i| i.location.line)
            .chain(ours.stages.iter().flat_map(|s| {
                std::iter::once(s.from.location.line)
                    .chain(s.instructions.iter().map(|i| i.location.line))
            }))
            .collect();
        their_lines.sort_unstable();
        our_lines.sort_unstable();
        assert_eq!(our_lines, their_lines, "{}", path.display());
        compared += 1;
    }
    assert!(compared >= 10, "only {compared} files compared");
}

fn instruction_span(i: &parse_dockerfile::Instruction<'_>) -> std::ops::Range<usize> {
    use parse_dockerfile::Instruction as I;
    match i {
        I::Add(x) => x.add.span.clone(),
        I::Arg(x) => x.arg.span.clone(),
        I::Cmd(x) => x.cmd.span.clone(),
        I::Copy(x) => x.copy.span.clone(),
        I::Entrypoint(x) => x.entrypoint.span.clone(),
        I::Env(x) => x.env.span.clone(),
        I::Expose(x) => x.expose.span.clone(),
        I::From(x) => x.from.span.clone(),
        I::Healthcheck(x) => x.healthcheck.span.clone(),
        I::Label(x) => x.label.span.clone(),
        I::Maintainer(x) => x.maintainer.span.clone(),
        I::Onbuild(x) => x.onbuild.span.clone(),
        I::Run(x) => x.run.span.clone(),
        I::Shell(x) => x.shell.span.clone(),
        I::Stopsignal(x) => x.stopsignal.span.clone(),
        I::User(x) => x.user.span.clone(),
        I::Volume(x) => x.volume.span.clone(),
        I::Workdir(x) => x.workdir.span.clone(),
        _ => 0..0,
    }
}
