//! The plan as the operator reads it: `kiln plan --json`.
//!
//! The shape is documented in `docs/plan-json.md`; change it only compatibly (add fields).

use std::fmt::Write as _;

use serde::Serialize;

use super::step::{Base, Input, Mount, Op, Sharing};
use super::{Dependency, Plan};
use crate::dockerfile::Diagnostic;

/// The version of this JSON shape.
pub const API_VERSION: &str = "kiln.dev/plan/v1";

/// Everything the operator needs before a build starts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub api_version: &'static str,
    pub dockerfile: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syntax: Option<String>,
    pub platforms: Platforms,
    pub target: StageRef,
    /// Indices of the stages to build, dependencies first.
    pub build_order: Vec<usize>,
    pub stages: Vec<StageSummary>,
    /// Images the needed stages pull: bases, and `COPY --from`/`--mount from=` images.
    pub base_images: Vec<String>,
    pub caches: Vec<CacheMount>,
    pub secrets: Vec<SecretMount>,
    pub ssh: Vec<SshMount>,
    pub warnings: Vec<Diagnostic>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Platforms {
    pub build: String,
    pub target: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageRef {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StageSummary {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `"scratch"`, `{"stage": N}` or `{"image": "ref"}`.
    pub base: Base,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    pub line: u32,
    /// Whether the target needs this stage; unneeded stages are not built.
    pub needed: bool,
    pub depends_on: Vec<DependencySummary>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DependencySummary {
    pub stage: usize,
    pub kind: super::DependencyKind,
    pub line: u32,
}

impl From<&Dependency> for DependencySummary {
    fn from(d: &Dependency) -> Self {
        DependencySummary {
            stage: d.stage,
            kind: d.kind,
            line: d.location.line,
        }
    }
}

/// Where a mount is used.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Usage {
    pub stage: usize,
    pub line: u32,
    /// False when the mount's options use variables a base image may define: the values here
    /// were computed without them.
    pub exact: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CacheMount {
    pub id: String,
    pub target: String,
    pub sharing: Sharing,
    pub readonly: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<Input>,
    pub source: String,
    /// The mode of a new cache directory, as a number (0o755 is 493).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(flatten)]
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretMount {
    pub id: String,
    pub required: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(flatten)]
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SshMount {
    pub id: String,
    pub required: bool,
    pub target: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    #[serde(flatten)]
    pub usage: Usage,
}

/// Summarise a plan.
pub fn summarize(plan: &Plan) -> Summary {
    let mut base_images: Vec<String> = Vec::new();
    let mut caches = Vec::new();
    let mut secrets = Vec::new();
    let mut ssh = Vec::new();
    for &i in &plan.order {
        let stage = &plan.stages[i];
        if let Base::Image(img) = &stage.base
            && !base_images.contains(img)
        {
            base_images.push(img.clone());
        }
        for img in &stage.images {
            if !base_images.contains(img) {
                base_images.push(img.clone());
            }
        }
        let Some(lowered) = &stage.lowered else {
            continue;
        };
        let inexact = plan.inexact_mounts(i);
        for (n, step) in lowered.steps.iter().enumerate() {
            let Op::Run(run) = &step.op else { continue };
            let usage = Usage {
                stage: i,
                line: step.location.line,
                exact: !inexact.contains(&n),
            };
            for m in &run.mounts {
                match m {
                    Mount::Cache {
                        id,
                        target,
                        readonly,
                        sharing,
                        from,
                        source,
                        mode,
                        uid,
                        gid,
                    } => caches.push(CacheMount {
                        id: id.clone(),
                        target: target.clone(),
                        sharing: *sharing,
                        readonly: *readonly,
                        from: from.clone(),
                        source: source.clone(),
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        usage: usage.clone(),
                    }),
                    Mount::Secret {
                        id,
                        target,
                        env,
                        required,
                        mode,
                        uid,
                        gid,
                    } => secrets.push(SecretMount {
                        id: id.clone(),
                        required: *required,
                        target: target.clone(),
                        env: env.clone(),
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        usage: usage.clone(),
                    }),
                    Mount::Ssh {
                        id,
                        target,
                        required,
                        mode,
                        uid,
                        gid,
                    } => ssh.push(SshMount {
                        id: id.clone(),
                        required: *required,
                        target: target.clone(),
                        mode: *mode,
                        uid: *uid,
                        gid: *gid,
                        usage: usage.clone(),
                    }),
                    Mount::Bind { .. } | Mount::Tmpfs { .. } => {}
                }
            }
        }
    }
    Summary {
        api_version: API_VERSION,
        dockerfile: plan.dockerfile.source.name().to_string(),
        syntax: plan.dockerfile.syntax.clone(),
        platforms: Platforms {
            build: plan.build_platform.to_string(),
            target: plan.target_platform.to_string(),
        },
        target: StageRef {
            index: plan.target,
            name: plan.stages.get(plan.target).and_then(|s| s.name.clone()),
        },
        build_order: plan.order.clone(),
        stages: plan
            .stages
            .iter()
            .map(|s| StageSummary {
                index: s.index,
                name: s.name.clone(),
                base: s.base.clone(),
                platform: s.platform.as_ref().map(ToString::to_string),
                line: s.location.line,
                needed: s.needed,
                depends_on: s.dependencies.iter().map(DependencySummary::from).collect(),
                images: s.images.clone(),
            })
            .collect(),
        base_images,
        caches,
        secrets,
        ssh,
        warnings: plan.warnings.clone(),
    }
}

fn stage_label(plan: &Plan, i: usize) -> String {
    match plan.stages.get(i).and_then(|s| s.name.as_deref()) {
        Some(n) => format!("{i} ({n})"),
        None => i.to_string(),
    }
}

/// The plan for people: what `kiln plan` prints without `--json`.
pub fn render(plan: &Plan) -> String {
    let s = summarize(plan);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{}: {} stage{}, target {}, platform {}",
        s.dockerfile,
        s.stages.len(),
        if s.stages.len() == 1 { "" } else { "s" },
        stage_label(plan, s.target.index),
        s.platforms.target
    );
    let _ = writeln!(out, "\nstages, in build order:");
    for &i in &s.build_order {
        let st = &s.stages[i];
        let base = match &st.base {
            Base::Scratch => "scratch".to_string(),
            Base::Stage(b) => format!("stage {}", stage_label(plan, *b)),
            Base::Image(img) => img.clone(),
        };
        let mut line = format!("  {:<16} FROM {base}", stage_label(plan, i));
        if let Some(p) = &st.platform {
            let _ = write!(line, " --platform={p}");
        }
        let uses: Vec<String> = st
            .depends_on
            .iter()
            .filter(|d| !matches!(d.kind, super::DependencyKind::Base))
            .map(|d| stage_label(plan, d.stage))
            .collect();
        if !uses.is_empty() {
            let _ = write!(line, "   uses {}", uses.join(", "));
        }
        let _ = writeln!(out, "{line}");
    }
    let unused: Vec<String> = s
        .stages
        .iter()
        .filter(|st| !st.needed)
        .map(|st| stage_label(plan, st.index))
        .collect();
    if !unused.is_empty() {
        let _ = writeln!(out, "  (not needed by the target: {})", unused.join(", "));
    }
    if !s.base_images.is_empty() {
        let _ = writeln!(out, "\nimages:");
        for img in &s.base_images {
            let _ = writeln!(out, "  {img}");
        }
    }
    if !s.caches.is_empty() {
        let _ = writeln!(out, "\ncache mounts:");
        for c in &s.caches {
            let sharing = serde_json::to_value(c.sharing)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<24} sharing={sharing:<7} target={}{}  (stage {}, line {})",
                c.id,
                c.target,
                if c.readonly { " ro" } else { "" },
                stage_label(plan, c.usage.stage),
                c.usage.line
            );
        }
    }
    if !s.secrets.is_empty() {
        let _ = writeln!(out, "\nsecrets:");
        for m in &s.secrets {
            let dest = match (&m.target, &m.env) {
                (Some(t), Some(e)) => format!("{t} and ${e}"),
                (Some(t), None) => t.clone(),
                (None, Some(e)) => format!("${e}"),
                (None, None) => String::new(),
            };
            let _ = writeln!(
                out,
                "  {:<24} {:<8} {dest}  (stage {}, line {})",
                m.id,
                if m.required { "required" } else { "optional" },
                stage_label(plan, m.usage.stage),
                m.usage.line
            );
        }
    }
    if !s.ssh.is_empty() {
        let _ = writeln!(out, "\nssh:");
        for m in &s.ssh {
            let _ = writeln!(
                out,
                "  {:<24} {:<8} {}  (stage {}, line {})",
                m.id,
                if m.required { "required" } else { "optional" },
                m.target,
                stage_label(plan, m.usage.stage),
                m.usage.line
            );
        }
    }
    out
}
