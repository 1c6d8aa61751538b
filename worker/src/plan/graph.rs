//! The stage graph: what a stage's FROM, `COPY --from` and `--mount from=` name, and the
//! cycles BuildKit refuses.
//!
//! BuildKit's rules (dockerfile2llb): `FROM x` names an earlier stage whose (lowercased) name is
//! exactly `x`, else `scratch` or an image; `--from=x` names the last stage called `x` in any
//! case, else, for COPY, the stage with index `x` when `x` is a number, else an image. Stages
//! may only use earlier stages, and a stage that ends up depending on itself is an error.

use super::step::{Base, Input, Location};
use super::{Dependency, DependencyKind, Stage, reference};
use crate::dockerfile::instruction::Kind;
use crate::dockerfile::{Diagnostic, Dockerfile, Span, suggest};

/// A stage reference resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ref {
    Stage(usize),
    Image(String),
    /// `--from=<n>` out of range.
    BadIndex(i64),
}

/// Resolve `--from` (or a mount's `from=`): a stage name (the last stage with that name), an
/// index when `by_index`, or an image.
pub(crate) fn resolve_ref(df: &Dockerfile, name: &str, by_index: bool) -> Ref {
    if by_index && let Ok(n) = parse_go_int(name) {
        return usize::try_from(n)
            .ok()
            .filter(|&i| i < df.stages.len())
            .map_or(Ref::BadIndex(n), Ref::Stage);
    }
    let lower = name.to_lowercase();
    match df
        .stages
        .iter()
        .rposition(|s| s.from_args().name.as_deref() == Some(lower.as_str()))
    {
        Some(i) => Ref::Stage(i),
        None => Ref::Image(name.to_string()),
    }
}

/// Go's `strconv.Atoi`.
pub(super) fn parse_go_int(s: &str) -> Result<i64, ()> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    s.parse::<i64>().map_err(|_| ())
}

pub(super) fn location_error(
    src: &crate::dockerfile::SourceFile,
    loc: &Location,
    msg: String,
) -> Diagnostic {
    let start = src.line_start(loc.line);
    let line = src.line_text(loc.line);
    let col_off: usize = line
        .chars()
        .take(loc.column.saturating_sub(1) as usize)
        .map(char::len_utf8)
        .sum();
    let word_len = line[col_off..]
        .find(char::is_whitespace)
        .unwrap_or(line.len() - col_off);
    Diagnostic::error(
        src,
        Span::new(start + col_off, start + col_off + word_len),
        msg,
    )
}

/// The base of a stage: an earlier stage with that exact name, `scratch`, or an image.
pub(super) fn resolve_base(
    df: &Dockerfile,
    index: usize,
    name: &str,
    span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Base {
    let src = &df.source;
    if let Some(b) = df.stages[..index]
        .iter()
        .rposition(|s| s.from_args().name.as_deref() == Some(name))
    {
        return Base::Stage(b);
    }
    if name == "scratch" {
        return Base::Scratch;
    }
    let lower = name.to_lowercase();
    if let Some(later) = df
        .stages
        .iter()
        .position(|s| s.from_args().name.as_deref() == Some(lower.as_str()))
    {
        if later >= index {
            diags.push(
                Diagnostic::error(
                    src,
                    span,
                    format!("stage {lower:?} is defined after this FROM, so FROM {name} would pull an image of that name"),
                )
                .with_help("a stage can only build on a stage defined above it"),
            );
            return Base::Image(name.to_string());
        }
        diags.push(
            Diagnostic::error(src, span, format!("no stage named {name:?}"))
                .with_help(format!("stage names are lowercase: write `FROM {lower}`")),
        );
        return Base::Image(name.to_string());
    }
    if let Err(e) = reference::validate(name) {
        diags.push(
            Diagnostic::error(src, span, format!("failed to parse stage name {name:?}: {e}"))
                .with_help("FROM takes an image reference such as alpine:3.19, or the name of an earlier stage"),
        );
    }
    Base::Image(name.to_string())
}

/// The stage references of an instruction: `COPY --from` and `RUN --mount from=`.
pub(super) fn collect_refs(
    df: &Dockerfile,
    i: &crate::dockerfile::Instruction,
    in_trigger: bool,
    deps: &mut Vec<Dependency>,
    images: &mut Vec<String>,
    diags: &mut Vec<Diagnostic>,
) {
    let src = &df.source;
    let kind = if in_trigger {
        DependencyKind::Onbuild
    } else {
        DependencyKind::CopyFrom
    };
    let mut add = |r: Ref,
                   raw: &str,
                   span: Span,
                   kind: DependencyKind,
                   diags: &mut Vec<Diagnostic>| match r {
        Ref::Stage(s) => deps.push(Dependency {
            stage: s,
            kind,
            location: i.location.clone(),
        }),
        Ref::BadIndex(n) => diags.push(
            Diagnostic::error(src, span, format!("invalid stage index {n}")).with_help(format!(
                "the Dockerfile has {} stages, numbered from 0",
                df.stages.len()
            )),
        ),
        Ref::Image(name) => {
            let names: Vec<&str> = df
                .stages
                .iter()
                .filter_map(|s| s.from_args().name.as_deref())
                .collect();
            let bare = !name.contains(['/', ':', '@', '.']);
            if bare && let Some(close) = suggest::closest(&name, &names) {
                diags.push(
                    Diagnostic::error(src, span, format!("{raw} names an unknown stage {name:?}"))
                        .with_label(format!("no stage is named {name:?}"))
                        .with_help(format!(
                            "did you mean {close:?}? (to use an image of that name, write it in full, such as {name}:latest)"
                        )),
                );
            } else if let Err(e) = reference::validate(&name) {
                diags.push(
                    Diagnostic::error(
                        src,
                        span,
                        format!("{raw} is neither a stage nor an image: {e}"),
                    )
                    .with_help(if names.is_empty() {
                        "name an image, or a stage defined with `FROM image AS name`".to_string()
                    } else {
                        format!("the stages are: {}", names.join(", "))
                    }),
                );
            } else if !images.contains(&name) {
                images.push(name);
            }
        }
    };
    match &i.kind {
        Kind::Copy(c) => {
            if let Some((from, span)) = &c.from
                && !from.contains('$')
            {
                add(
                    resolve_ref(df, from, true),
                    &format!("--from={from}"),
                    *span,
                    kind,
                    diags,
                );
            }
        }
        Kind::Run(r) => {
            let kind = if in_trigger {
                DependencyKind::Onbuild
            } else {
                DependencyKind::MountFrom
            };
            for (m, span) in &r.mounts {
                if let Ok(Some(from)) = crate::dockerfile::mount::raw_from(m) {
                    add(
                        resolve_ref(df, &from, true),
                        &format!("from={from}"),
                        *span,
                        kind,
                        diags,
                    );
                }
            }
        }
        _ => {}
    }
}

/// BuildKit refuses a stage that (through COPY --from or mounts) depends on itself. Returns the
/// stages of the cycle found, if any.
pub(super) fn check_cycles(
    src: &crate::dockerfile::SourceFile,
    stages: &[Stage],
    diags: &mut Vec<Diagnostic>,
) -> Vec<usize> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        stages: &[Stage],
        marks: &mut [Mark],
        path: &mut Vec<(usize, Location)>,
    ) -> Option<Vec<(usize, Location)>> {
        marks[i] = Mark::Active;
        for d in &stages[i].dependencies {
            if d.kind == DependencyKind::Base {
                continue;
            }
            path.push((d.stage, d.location.clone()));
            match marks[d.stage] {
                Mark::Active => {
                    let start = path.iter().position(|(s, _)| *s == d.stage).unwrap_or(0);
                    // The stages of the cycle, then the edge that closes it (for the position).
                    let mut cycle = path[start..path.len() - 1].to_vec();
                    cycle.push((d.stage, d.location.clone()));
                    path.pop();
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(d.stage, stages, marks, path) {
                        path.pop();
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
            path.pop();
        }
        marks[i] = Mark::Done;
        None
    }
    let mut marks = vec![Mark::New; stages.len()];
    for i in 0..stages.len() {
        if marks[i] != Mark::New {
            continue;
        }
        let mut path = vec![(i, stages[i].location.clone())];
        if let Some(cycle) = visit(i, stages, &mut marks, &mut path) {
            let names: Vec<String> = cycle[..cycle.len() - 1]
                .iter()
                .map(|(s, _)| stages[*s].display_name())
                .collect();
            let first = cycle
                .last()
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| stages[i].location.clone());
            let stage = names.last().cloned().unwrap_or_default();
            diags.push(
                location_error(
                    src,
                    &first,
                    format!("circular dependency detected on stage: {stage}"),
                )
                .with_help(format!(
                    "the stages use each other: {} -> {}",
                    names.join(" -> "),
                    names[0]
                )),
            );
            return cycle.iter().map(|(s, _)| *s).collect();
        }
    }
    Vec::new()
}

/// The input a COPY --from or mount from= names, for the executor.
pub(crate) fn input_for(df: &Dockerfile, name: &str) -> Input {
    match resolve_ref(df, name, true) {
        Ref::Stage(s) => Input::Stage(s),
        Ref::Image(n) => Input::Image(n),
        Ref::BadIndex(n) => Input::Image(n.to_string()),
    }
}
