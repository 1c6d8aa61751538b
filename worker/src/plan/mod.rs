//! The build plan: stages as a graph, and each stage lowered into executable steps.
//!
//! [`build`] turns a parsed [`Dockerfile`], build arguments and a target into a [`Plan`]:
//! - every stage with its base (an image, `scratch`, or an earlier stage) and its platform;
//! - the references between stages, from `FROM <stage>`, `COPY --from`, `RUN --mount from=` and
//!   the ONBUILD triggers of a base stage, by name or by index;
//! - the target stage and the stages it needs; the others are pruned;
//! - each needed stage lowered once with what is known before any image is fetched, which
//!   gives the static image config and every cache, secret and ssh mount.
//!
//! The executor calls [`lower`] again at build time with the real base image config.
//!
//! BuildKit's rules for stages (dockerfile2llb):
//! - Stage names are lowercased; `FROM x` names a stage only if an earlier stage is named `x`
//!   exactly; otherwise it is an image reference. `scratch` is the empty image.
//! - `COPY --from=x` and `RUN --mount from=x` name a stage (case-insensitively), else an image;
//!   `COPY --from=<n>` is the stage with index n. A stage may only use earlier stages; a cycle is
//!   an error. Neither expands variables.
//! - The image of `FROM` and `--platform` are expanded with the global scope only: the ARGs
//!   before the first FROM, the build arguments that override them, and the automatic platform
//!   arguments.

pub mod buildkit_args;
mod gofmt;
mod graph;
mod lower;
pub mod path;
pub mod platform;
pub mod reference;
pub mod step;
pub mod summary;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::dockerfile::expand::{EnvList, Lexer};
use crate::dockerfile::instruction::Kind;
use crate::dockerfile::{Diagnostic, Diagnostics, Dockerfile, Severity, suggest};
use crate::image::config::ImageConfig;
pub(crate) use graph::input_for;
use graph::{check_cycles, collect_refs, location_error, resolve_base};
pub use lower::lower;
pub use platform::Platform;
use step::{Base, Location, LoweredStage};

/// Which BuildKit's history texts to write. They differ between BuildKit versions in a few
/// places; the image config and the build itself do not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HistoryStyle {
    /// The Dockerfile frontend 1.x of current BuildKit: COPY and ADD history keep `--parents`,
    /// `--chown` and `--chmod`; ARG history shows the value in effect (build argument, default
    /// or global value); HEALTHCHECK history includes the start interval; a `FROM <stage>`
    /// child lists its parent's ARGs in the `|N` prefix of RUN.
    #[default]
    Current,
    /// BuildKit v0.8, the builder of dockerd 20.10 that recorded `tests/reference`: no COPY flags,
    /// ARG history shows the (expanded) default only, no start interval, and a child stage's
    /// `|N` prefix has only its own ARGs.
    Dockerd20,
}

/// What the plan is built for.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// `--build-arg NAME=VALUE`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; the last stage if unset.
    pub target: Option<String>,
    /// The platform of the build machine (`BUILDPLATFORM`).
    pub build_platform: Platform,
    /// The platform the image is for (`TARGETPLATFORM`).
    pub target_platform: Platform,
    /// Which BuildKit's `created_by` texts to write.
    pub history: HistoryStyle,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            build_args: BTreeMap::new(),
            target: None,
            build_platform: Platform::host(),
            target_platform: Platform::host(),
            history: HistoryStyle::Current,
        }
    }
}

/// Why one stage needs another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DependencyKind {
    /// `FROM <stage>`.
    Base,
    /// `COPY --from=<stage>`.
    CopyFrom,
    /// `RUN --mount=...,from=<stage>`.
    MountFrom,
    /// A `COPY --from` or `--mount from=` in an ONBUILD trigger of the base stage.
    Onbuild,
}

/// An edge of the stage graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    pub stage: usize,
    pub kind: DependencyKind,
    pub location: Location,
}

/// One stage of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Stage {
    pub index: usize,
    /// The `AS` name, lowercased.
    pub name: Option<String>,
    pub base: Base,
    /// `FROM --platform`, expanded and normalised.
    pub platform: Option<Platform>,
    pub location: Location,
    /// Stages this one uses, in instruction order.
    pub dependencies: Vec<Dependency>,
    /// Images used by `COPY --from` or `--mount from=` (not stages).
    pub images: Vec<String>,
    /// Whether the target needs this stage.
    pub needed: bool,
    /// The stage lowered with the config known before any image is fetched (an empty base image
    /// config, or its base stage's static config). `None` for unneeded stages.
    pub lowered: Option<LoweredStage>,
}

impl Stage {
    /// How progress and errors name the stage: its name, or `stage-N`.
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("stage-{}", self.index))
    }
}

/// The build graph of a Dockerfile.
#[derive(Debug, Clone)]
pub struct Plan {
    pub dockerfile: Dockerfile,
    pub stages: Vec<Stage>,
    /// The stage to build.
    pub target: usize,
    /// The needed stages in an order that builds dependencies first.
    pub order: Vec<usize>,
    pub build_platform: Platform,
    pub target_platform: Platform,
    /// The global scope: automatic platform arguments and the ARGs before the first FROM.
    pub global_args: EnvList,
    pub build_args: BTreeMap<String, String>,
    pub history: HistoryStyle,
    pub warnings: Vec<Diagnostic>,
    /// Per stage: the build arguments in scope at its end, and which variables an ARG set last
    /// (a `FROM <stage>` child inherits both, as in BuildKit).
    scopes: Vec<Option<lower::Scope>>,
}

/// Build arguments BuildKit passes to RUN as proxy settings without an ARG declaring them.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "FTP_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
];

/// The automatic platform arguments, from the build and target platforms (BuildKit's
/// `defaultArgs`); build arguments of the same names override them.
fn platform_args(opts: &PlanOptions) -> EnvList {
    let b = &opts.build_platform;
    let t = &opts.target_platform;
    let mut env = EnvList::new();
    for (k, v) in [
        ("BUILDPLATFORM", b.to_string()),
        ("BUILDOS", b.os.clone()),
        ("BUILDOSVERSION", String::new()),
        ("BUILDARCH", b.architecture.clone()),
        ("BUILDVARIANT", b.variant.clone()),
        ("TARGETPLATFORM", t.to_string()),
        ("TARGETOS", t.os.clone()),
        ("TARGETOSVERSION", String::new()),
        ("TARGETARCH", t.architecture.clone()),
        ("TARGETVARIANT", t.variant.clone()),
    ] {
        let v = opts.build_args.get(k).cloned().unwrap_or(v);
        env.set(k, &v);
    }
    env
}

/// Parse a Dockerfile and build its plan, reporting every problem found by either: the
/// parser's errors, and what the plan finds in the rest of the file (unknown stages, bad mount
/// options, ...). This is what `kiln plan` and the operator call.
pub fn from_text(name: &str, text: &str, opts: &PlanOptions) -> Result<Plan, Diagnostics> {
    let overrides = crate::dockerfile::Overrides {
        syntax: opts.build_args.get("BUILDKIT_SYNTAX").cloned(),
        check: opts.build_args.get("BUILDKIT_DOCKERFILE_CHECK").cloned(),
    };
    let (df, parse_diags) = crate::dockerfile::parse_partial_with(name, text, &overrides);
    let parse_errors: Vec<Diagnostic> = parse_diags
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    if df.stages.is_empty() {
        let mut items = parse_errors;
        items.extend(df.warnings);
        return Err(Diagnostics { items }.sorted());
    }
    match build(df, opts) {
        Ok(plan) if parse_errors.is_empty() => Ok(plan),
        Ok(plan) => {
            let mut items = parse_errors;
            items.extend(plan.warnings);
            Err(Diagnostics { items }.sorted())
        }
        Err(d) => {
            let mut items = parse_errors;
            items.extend(d.items);
            Err(Diagnostics { items }.sorted())
        }
    }
}

/// Build the plan. Every independent problem is reported; warnings go in [`Plan::warnings`].
pub fn build(df: Dockerfile, opts: &PlanOptions) -> Result<Plan, Diagnostics> {
    let src = df.source.clone();
    let mut diags: Vec<Diagnostic> = df.warnings.clone();
    let lexer = Lexer::new(df.escape);

    // The global scope: platform arguments, then the ARGs before the first FROM.
    let mut global = platform_args(opts);
    for i in &df.meta_args {
        let Kind::Arg(defs) = &i.kind else { continue };
        for def in defs {
            let value = match opts.build_args.get(&def.key) {
                Some(v) => Some(v.clone()),
                None => match &def.value {
                    Some(v) => match lexer.word(v, &global) {
                        Ok(e) => Some(e.value),
                        Err(e) => {
                            diags.push(Diagnostic::error(&src, i.args_span, e.message));
                            None
                        }
                    },
                    None => None,
                },
            };
            if let Some(v) = value {
                global.set(&def.key, &v);
            }
        }
    }

    let mut stages: Vec<Stage> = Vec::new();
    for (index, def) in df.stages.iter().enumerate() {
        let from = def.from_args();
        let base = match lexer.word(&from.image, &global) {
            Err(e) => {
                diags.push(Diagnostic::error(&src, from.image_span, e.message));
                Base::Scratch
            }
            Ok(e) if e.value.is_empty() => {
                let mut d = Diagnostic::error(
                    &src,
                    from.image_span,
                    format!("base name ({}) should not be blank", from.image),
                );
                if let Some(v) = e.unmatched.iter().next() {
                    d = d.with_help(format!(
                        "`{v}` is not set: declare `ARG {v}=<default>` before the first FROM, or pass --build-arg {v}=..."
                    ));
                }
                diags.push(d);
                Base::Scratch
            }
            Ok(e) => resolve_base(&df, index, &e.value, from.image_span, &mut diags),
        };
        let platform = match &from.platform {
            None => None,
            Some((p, span)) => match lexer.word(p, &global) {
                Err(e) => {
                    diags.push(Diagnostic::error(
                        &src,
                        *span,
                        format!(
                            "failed to process arguments for platform {p}: {}",
                            e.message
                        ),
                    ));
                    None
                }
                Ok(e) if e.value.is_empty() => {
                    diags.push(Diagnostic::error(
                        &src,
                        *span,
                        format!("empty platform value from expression {p}"),
                    ));
                    None
                }
                Ok(e) => match Platform::parse(&e.value) {
                    Ok(p) => Some(p),
                    Err(msg) => {
                        diags.push(
                            Diagnostic::error(
                                &src,
                                *span,
                                format!("failed to parse platform {p}: {msg}"),
                            )
                            .with_help("platforms look like linux/amd64 or linux/arm64/v8"),
                        );
                        None
                    }
                },
            },
        };
        stages.push(Stage {
            index,
            name: from.name.clone(),
            base,
            platform,
            location: def.from.location.clone(),
            dependencies: Vec::new(),
            images: Vec::new(),
            needed: false,
            lowered: None,
        });
    }

    // Edges: base, COPY --from, --mount from=, and the ONBUILD triggers of a base stage.
    for (index, stage) in stages.iter_mut().enumerate() {
        let mut deps = Vec::new();
        let mut images = Vec::new();
        if let Base::Stage(b) = stage.base {
            deps.push(Dependency {
                stage: b,
                kind: DependencyKind::Base,
                location: stage.location.clone(),
            });
        }
        let def = &df.stages[index];
        for i in &def.instructions {
            collect_refs(&df, i, false, &mut deps, &mut images, &mut diags);
        }
        if let Base::Stage(b) = stage.base {
            for i in &df.stages[b].instructions {
                let Kind::Onbuild(o) = &i.kind else { continue };
                if let Ok(mut t) = crate::dockerfile::parse_trigger(&o.expression) {
                    t.location = stage.location.clone();
                    t.span = def.from.span;
                    collect_refs(&df, &t, true, &mut deps, &mut images, &mut Vec::new());
                }
            }
        }
        stage.dependencies = deps;
        stage.images = images;
    }

    let in_cycle = check_cycles(&src, &stages, &mut diags);

    // The target.
    let target = match &opts.target {
        None => stages.len().saturating_sub(1),
        Some(t) => {
            let lower = t.to_lowercase();
            match stages
                .iter()
                .rposition(|s| s.name.as_deref() == Some(lower.as_str()))
            {
                Some(i) => i,
                None => {
                    let names: Vec<&str> =
                        stages.iter().filter_map(|s| s.name.as_deref()).collect();
                    let mut d = Diagnostic::global(
                        src.name(),
                        format!("target stage {t:?} could not be found"),
                    );
                    d = d.with_help(match suggest::closest(t, &names) {
                        Some(s) => format!("did you mean {s:?}?"),
                        None if names.is_empty() => {
                            "the Dockerfile names no stages (`FROM image AS name`)".into()
                        }
                        None => format!("the stages are: {}", names.join(", ")),
                    });
                    diags.push(d);
                    stages.len().saturating_sub(1)
                }
            }
        }
    };

    // What the target needs.
    if !stages.is_empty() {
        let mut stack = vec![target];
        while let Some(i) = stack.pop() {
            if stages[i].needed {
                continue;
            }
            stages[i].needed = true;
            stack.extend(stages[i].dependencies.iter().map(|d| d.stage));
        }
    }
    let order: Vec<usize> = (0..stages.len()).filter(|&i| stages[i].needed).collect();

    // A needed stage may only use earlier stages.
    for &i in &order {
        for d in &stages[i].dependencies {
            if d.stage > i && d.kind != DependencyKind::Base && !in_cycle.contains(&i) {
                let user = stages[i].display_name();
                let used = stages[d.stage].display_name();
                let msg = match d.kind {
                    DependencyKind::MountFrom => format!(
                        "cannot mount from stage {used:?}, stage needs to be defined before current command"
                    ),
                    _ => format!(
                        "cannot copy from stage {used:?}, it needs to be defined before current stage {user:?}"
                    ),
                };
                diags.push(
                    location_error(&src, &d.location, msg)
                        .with_help(format!("move stage {used:?} above stage {user:?}")),
                );
            }
        }
    }

    // Build arguments nobody declares.
    let declared: Vec<&str> = df
        .meta_args
        .iter()
        .chain(df.stages.iter().flat_map(|s| s.instructions.iter()))
        .filter_map(|i| match &i.kind {
            Kind::Arg(defs) => Some(defs.iter().map(|d| d.key.as_str()).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    for k in opts.build_args.keys() {
        let automatic = platform_args(&PlanOptions::default()).contains(k);
        let proxy = PROXY_ARGS.iter().any(|p| p.eq_ignore_ascii_case(k));
        if declared.contains(&k.as_str()) {
            continue;
        }
        if let Some(why) = buildkit_args::without_effect(k) {
            diags.push(
                Diagnostic::global(
                    src.name(),
                    format!("build argument {k:?} has no effect in Kiln: {why}"),
                )
                .with_help(format!("drop --build-arg {k}")),
            );
            if let Some(d) = diags.last_mut() {
                d.severity = Severity::Warning;
            }
        } else if !automatic && !proxy && !buildkit_args::is_builtin(k) {
            diags.push(
                Diagnostic::global(
                    src.name(),
                    format!("build argument {k:?} is not used by the Dockerfile"),
                )
                .with_help("declare it with ARG where it is needed, or drop --build-arg"),
            );
            if let Some(d) = diags.last_mut() {
                d.severity = Severity::Warning;
            }
        }
    }

    let mut plan = Plan {
        dockerfile: df,
        stages,
        target,
        order,
        build_platform: opts.build_platform.clone(),
        target_platform: opts.target_platform.clone(),
        global_args: global,
        build_args: opts.build_args.clone(),
        history: opts.history,
        warnings: Vec::new(),
        scopes: Vec::new(),
    };
    plan.scopes = vec![None; plan.stages.len()];

    // Static lowering, in dependency order. It runs even when problems were found above, so
    // that the problems it finds (bad mount options, modes, ports...) are reported with them.
    {
        for pos in 0..plan.order.len() {
            let i = plan.order[pos];
            let base_config = match plan.stages[i].base {
                Base::Stage(b) => plan.stages[b]
                    .lowered
                    .as_ref()
                    .map(|l| l.config.clone())
                    .unwrap_or_default(),
                Base::Scratch => scratch_config(),
                Base::Image(_) => ImageConfig::default(),
            };
            let unknown_env = base_is_image(&plan, i);
            match lower::lower_stage(&plan, i, &base_config, unknown_env) {
                Ok((lowered, scope, warnings)) => {
                    diags.extend(warnings);
                    plan.stages[i].lowered = Some(lowered);
                    plan.scopes[i] = Some(scope);
                }
                Err(d) => diags.extend(d.items),
            }
        }
    }

    // `# check=error=true` turns the warnings of enabled checks into errors.
    let check = &plan.dockerfile.check;
    diags.retain(|d| d.is_error() || d.rule.as_deref().is_none_or(|r| check.enabled(r)));
    if check.error {
        for d in &mut diags {
            if d.rule.is_some() {
                d.severity = Severity::Error;
            }
        }
    }

    if diags.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics { items: diags }.sorted());
    }
    plan.warnings = Diagnostics { items: diags }.sorted().items;
    Ok(plan)
}

/// The config BuildKit gives `FROM scratch`: the default `PATH`, and `/` as working directory.
pub fn scratch_config() -> ImageConfig {
    ImageConfig {
        env: vec![format!("PATH={}", crate::image::config::DEFAULT_PATH)],
        working_dir: "/".into(),
        ..ImageConfig::default()
    }
}

/// Whether a stage's environment depends on an image config not known before the build.
fn base_is_image(plan: &Plan, mut i: usize) -> bool {
    loop {
        match plan.stages[i].base {
            Base::Image(_) => return true,
            Base::Scratch => return false,
            Base::Stage(b) if b < i => i = b,
            Base::Stage(_) => return false,
        }
    }
}

impl Plan {
    /// The steps of a stage (by index in its static lowering) whose `--mount` options used a
    /// variable a base image may define.
    pub fn inexact_mounts(&self, stage: usize) -> &[usize] {
        self.scopes
            .get(stage)
            .and_then(|s| s.as_ref())
            .map_or(&[], |s| s.inexact_mounts.as_slice())
    }
}

/// Lower every needed stage for inspection, with the static configs: what `kiln plan` shows.
pub fn lowered(plan: &Plan) -> impl Iterator<Item = (&Stage, &LoweredStage)> {
    plan.order.iter().filter_map(|&i| {
        plan.stages[i]
            .lowered
            .as_ref()
            .map(|l| (&plan.stages[i], l))
    })
}
