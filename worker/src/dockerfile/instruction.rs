//! Instructions: the typed form of each logical line, checked as BuildKit checks them.
//!
//! Values are kept as written (quotes and `$VAR` in place): expansion depends on the stage's
//! variables and happens when the plan lowers a stage. What BuildKit rejects while parsing is
//! rejected here: wrong argument counts, unknown or malformed flags, bad HEALTHCHECK durations,
//! `ONBUILD FROM`, JSON arrays of non-strings, and so on.

use super::args::{self, Json, Word};
pub use super::ast::*;
use super::diagnostic::Diagnostic;
use super::flags::{self, FlagWord, Kind as F};
use super::heredoc::Opener;
use super::lines::LogicalLine;
use super::mount;
use super::source::{SourceFile, Span};
use super::suggest;
use crate::plan::step::Location;

/// Every instruction keyword, for "did you mean" suggestions.
pub const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The parts of an instruction line: keyword, flags, arguments (offsets into the line text).
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub cmd: String,
    pub cmd_start: usize,
    pub cmd_end: usize,
    pub flags: Vec<FlagWord>,
    pub args: String,
    pub args_start: usize,
}

fn is_token_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r')
}

/// BuildKit's `splitCommand`: the keyword, the flags, and the trimmed rest. `base` is the
/// offset of `text` in the line.
pub(crate) fn split_command(text: &str, base: usize) -> Parts {
    let (ts, te) = args::trim_bounds(text);
    let trimmed = &text[ts..te];
    let cmd_len = trimmed.find(is_token_ws).unwrap_or(trimmed.len());
    let cmd = &trimmed[..cmd_len];
    let after = &trimmed[cmd_len..];
    let after_ws = after.len() - after.trim_start_matches(is_token_ws).len();
    let rest_start = cmd_len + after_ws;
    let rest = &trimmed[rest_start..];
    let (flags, args_at) = if rest.is_empty() && after_ws == 0 {
        (Vec::new(), 0)
    } else {
        flags::extract(rest)
    };
    let shift = base + ts + rest_start;
    let flags = flags
        .into_iter()
        .map(|f| FlagWord {
            text: f.text,
            start: f.start + shift,
            end: f.end + shift,
        })
        .collect();
    let tail = &rest[args_at.min(rest.len())..];
    let (as_, ae) = args::trim_bounds(tail);
    Parts {
        cmd: cmd.to_string(),
        cmd_start: base + ts,
        cmd_end: base + ts + cmd_len,
        flags,
        args: tail[as_..ae].to_string(),
        args_start: shift + args_at.min(rest.len()) + as_,
    }
}

/// Whether a line's instruction may carry heredocs (RUN, COPY, ADD in shell form, also after
/// ONBUILD).
pub(crate) fn can_contain_heredoc(parts: &Parts) -> bool {
    match parts.cmd.to_ascii_lowercase().as_str() {
        "run" | "copy" | "add" => !matches!(args::parse_json(&parts.args), Json::Array(_)),
        "onbuild" => {
            let child = split_command(&parts.args, parts.args_start);
            matches!(
                child.cmd.to_ascii_lowercase().as_str(),
                "run" | "copy" | "add"
            ) && !matches!(args::parse_json(&child.args), Json::Array(_))
        }
        _ => false,
    }
}

/// Parsing context: the source (for diagnostics) and the escape character.
pub(crate) struct Ctx<'a> {
    pub src: &'a SourceFile,
    pub escape: char,
    pub line: &'a LogicalLine,
}

impl Ctx<'_> {
    fn span(&self, start: usize, end: usize) -> Span {
        self.line.span(start, end)
    }

    pub(super) fn err(&self, start: usize, end: usize, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.src, self.span(start, end), msg)
    }
}

/// The result of parsing one line: the instruction, or what is wrong with it; warnings either way.
pub(crate) struct Parsed {
    pub instruction: Option<Instruction>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Parse a logical line (and its heredoc bodies) into an instruction.
pub(crate) fn parse(
    ctx: &Ctx<'_>,
    parts: &Parts,
    heredocs: &[(Opener, String)],
    end_line: u32,
) -> Parsed {
    let mut diags = Vec::new();
    let kind = parse_kind(ctx, parts, heredocs, &mut diags, false);
    let has_error = diags.iter().any(Diagnostic::is_error);
    let instruction = match kind {
        Some(kind) if !has_error => {
            let (line, column) = ctx.src.line_col(ctx.line.src(parts.cmd_start));
            Some(Instruction {
                keyword: parts.cmd.clone(),
                location: Location {
                    file: ctx.src.name().to_string(),
                    line,
                    column,
                    end_line,
                },
                span: ctx.line.full_span(),
                keyword_span: ctx.span(parts.cmd_start, parts.cmd_end),
                args_span: ctx.span(parts.args_start, parts.args_start + parts.args.len()),
                original: {
                    let (s, e) = args::trim_bounds(&ctx.line.text);
                    ctx.line.text[s..e].to_string()
                },
                kind,
            })
        }
        _ => None,
    };
    Parsed {
        instruction,
        diagnostics: diags,
    }
}

/// Check flags, recording errors; the parsed flags come back either way.
pub(super) fn check_flags(
    ctx: &Ctx<'_>,
    parts: &Parts,
    accepted: &[(&'static str, F)],
    diags: &mut Vec<Diagnostic>,
) -> flags::Flags {
    let (f, errors) = flags::parse(&parts.flags, accepted);
    for e in errors {
        let mut d = ctx.err(e.start, e.end, e.message);
        if let Some(h) = e.help {
            d = d.with_help(h);
        }
        diags.push(d);
    }
    f
}

fn arg_words(parts: &Parts) -> Vec<Word> {
    args::split_ws(&parts.args, parts.args_start)
}

/// The arguments of RUN, CMD, ENTRYPOINT and SHELL: JSON or one shell string.
pub(super) fn maybe_json(
    ctx: &Ctx<'_>,
    parts: &Parts,
    diags: &mut Vec<Diagnostic>,
) -> Option<CommandLine> {
    if parts.args.is_empty() {
        return Some(CommandLine {
            args: Vec::new(),
            json: false,
        });
    }
    match args::parse_json(&parts.args) {
        Json::Array(a) => Some(CommandLine {
            args: a,
            json: true,
        }),
        Json::NotStrings => {
            diags.push(
                ctx.err(
                    parts.args_start,
                    parts.args_start + parts.args.len(),
                    args::NOT_STRINGS,
                )
                .with_help("quote every element, as in [\"sh\", \"-c\", \"echo 1\"]"),
            );
            None
        }
        Json::Not => Some(CommandLine {
            args: vec![parts.args.clone()],
            json: false,
        }),
    }
}

/// The arguments of ADD, COPY and VOLUME: JSON or whitespace-separated words.
fn maybe_json_list(
    ctx: &Ctx<'_>,
    parts: &Parts,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Vec<String>, bool)> {
    match args::parse_json(&parts.args) {
        Json::Array(a) => Some((a, true)),
        Json::NotStrings => {
            diags.push(ctx.err(
                parts.args_start,
                parts.args_start + parts.args.len(),
                args::NOT_STRINGS,
            ));
            None
        }
        Json::Not => Some((
            arg_words(parts).into_iter().map(|w| w.text).collect(),
            false,
        )),
    }
}

pub(super) fn keyword_error(ctx: &Ctx<'_>, parts: &Parts, msg: impl Into<String>) -> Diagnostic {
    ctx.err(parts.cmd_start, parts.cmd_end, msg)
}

fn parse_kind(
    ctx: &Ctx<'_>,
    parts: &Parts,
    heredocs: &[(Opener, String)],
    diags: &mut Vec<Diagnostic>,
    in_onbuild: bool,
) -> Option<Kind> {
    let upper = parts.cmd.to_ascii_uppercase();
    let args_end = parts.args_start + parts.args.len();
    match upper.as_str() {
        "FROM" => {
            let f = check_flags(ctx, parts, &[("platform", F::Str)], diags);
            let words = arg_words(parts);
            let (name, name_span, as_keyword) = match words.as_slice() {
                [_] => (None, None, None),
                [_, as_, name] if as_.text.eq_ignore_ascii_case("as") => {
                    let lower = name.text.to_lowercase();
                    if !valid_stage_name(&lower) {
                        diags.push(
                            ctx.err(
                                name.start,
                                name.end,
                                format!(
                                    "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                                    name.text
                                ),
                            )
                            .with_help("stage names start with a letter and contain only letters, digits, `-`, `_` and `.`"),
                        );
                    }
                    (
                        Some(lower),
                        Some(ctx.span(name.start, name.end)),
                        Some(as_.text.clone()),
                    )
                }
                _ => {
                    diags.push(
                        keyword_error(ctx, parts, "FROM requires either one or three arguments")
                            .with_help("write `FROM image` or `FROM image AS name`"),
                    );
                    return None;
                }
            };
            let image = &words[0];
            Some(Kind::From(From {
                image: image.text.clone(),
                image_span: ctx.span(image.start, image.end),
                name,
                name_span,
                as_keyword,
                platform: f
                    .str("platform")
                    .map(|v| (v.value.clone(), ctx.span(v.start, v.end))),
            }))
        }
        "ARG" => {
            check_flags(ctx, parts, &[], diags);
            let words = args::parse_words(&parts.args, ctx.escape, parts.args_start);
            if words.is_empty() {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    "ARG requires at least one argument",
                ));
                return None;
            }
            let mut defs = Vec::new();
            for w in words {
                match w.text.split_once('=') {
                    Some(("", _)) => {
                        diags.push(ctx.err(w.start, w.end, "ARG names can not be blank"));
                        return None;
                    }
                    Some((k, v)) => defs.push(ArgDef {
                        key: k.to_string(),
                        value: Some(v.to_string()),
                    }),
                    None => defs.push(ArgDef {
                        key: w.text,
                        value: None,
                    }),
                }
            }
            Some(Kind::Arg(defs))
        }
        "ENV" | "LABEL" => {
            check_flags(ctx, parts, &[], diags);
            let kvs = match args::name_values(&parts.args, &upper, ctx.escape) {
                Ok(kvs) => kvs,
                Err(msg) => {
                    diags.push(
                        ctx.err(parts.args_start, args_end, msg)
                            .with_help(format!("write `{upper} key=value [key=value ...]`")),
                    );
                    return None;
                }
            };
            if kvs.is_empty() {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    format!("{upper} requires at least one argument"),
                ));
                return None;
            }
            if kvs.iter().any(|kv| kv.key.is_empty()) {
                diags.push(ctx.err(
                    parts.args_start,
                    args_end,
                    format!("{upper} names can not be blank"),
                ));
                return None;
            }
            Some(if upper == "ENV" {
                Kind::Env(kvs)
            } else {
                Kind::Label(kvs)
            })
        }
        "MAINTAINER" => {
            if parts.args.is_empty() {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    "MAINTAINER requires exactly one argument",
                ));
                return None;
            }
            check_flags(ctx, parts, &[], diags);
            Some(Kind::Maintainer(parts.args.clone()))
        }
        "RUN" => {
            let f = check_flags(
                ctx,
                parts,
                &[
                    ("mount", F::Strs),
                    ("network", F::Str),
                    ("security", F::Str),
                ],
                diags,
            );
            let mut mounts = Vec::new();
            for m in f.all("mount") {
                if let Err(e) = mount::raw_from(&m.value) {
                    let mut d = ctx.err(m.start, m.end, e.message);
                    if let Some(h) = e.help {
                        d = d.with_help(h);
                    }
                    diags.push(d);
                }
                mounts.push((m.value.clone(), ctx.span(m.start, m.end)));
            }
            let network = f.str("network").map(|v| (v.value.clone(), v.start, v.end));
            if let Some((v, s, e)) = &network
                && !matches!(v.as_str(), "default" | "none" | "host")
            {
                diags.push(
                    ctx.err(*s, *e, format!("invalid network mode {v:?}"))
                        .with_help("the network modes are default, none and host"),
                );
            }
            let security = f.str("security").map(|v| (v.value.clone(), v.start, v.end));
            if let Some((v, s, e)) = &security
                && !matches!(v.as_str(), "sandbox" | "insecure")
            {
                diags.push(
                    ctx.err(*s, *e, format!("security mode {v:?} is not supported"))
                        .with_help("the security modes are sandbox and insecure"),
                );
            }
            let cmd = maybe_json(ctx, parts, diags)?;
            if cmd.json && cmd.args.is_empty() {
                diags.push(
                    ctx.err(parts.args_start, args_end, "RUN needs a command")
                        .with_help("an empty exec form `[]` has nothing to run"),
                );
            }
            Some(Kind::Run(Run {
                cmd,
                heredocs: heredocs.iter().map(|(o, c)| to_heredoc(o, c)).collect(),
                mounts,
                network: network.map(|n| n.0),
                security: security.map(|s| s.0),
            }))
        }
        "CMD" | "ENTRYPOINT" => {
            check_flags(ctx, parts, &[], diags);
            let cmd = maybe_json(ctx, parts, diags)?;
            Some(if upper == "CMD" {
                Kind::Cmd(cmd)
            } else {
                Kind::Entrypoint(cmd)
            })
        }
        "SHELL" => {
            check_flags(ctx, parts, &[], diags);
            let cmd = maybe_json(ctx, parts, diags)?;
            if cmd.args.is_empty() {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    "SHELL requires at least one argument",
                ));
                return None;
            }
            if !cmd.json {
                diags.push(
                    ctx.err(
                        parts.args_start,
                        args_end,
                        "SHELL requires the arguments to be in JSON form",
                    )
                    .with_help("write it as a JSON array, such as SHELL [\"/bin/bash\", \"-c\"]"),
                );
                return None;
            }
            Some(Kind::Shell(cmd.args))
        }
        "ADD" | "COPY" => parse_copy(ctx, parts, heredocs, diags, upper == "ADD"),
        "WORKDIR" | "USER" | "STOPSIGNAL" => {
            if parts.args.is_empty() {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    format!("{upper} requires exactly one argument"),
                ));
                return None;
            }
            // BuildKit does not look at STOPSIGNAL's flags at all.
            if upper != "STOPSIGNAL" {
                check_flags(ctx, parts, &[], diags);
            }
            let a = parts.args.clone();
            Some(match upper.as_str() {
                "WORKDIR" => Kind::Workdir(a),
                "USER" => Kind::User(a),
                _ => Kind::StopSignal(a),
            })
        }
        "VOLUME" => {
            let (list, _) = maybe_json_list(ctx, parts, diags)?;
            if list.is_empty() {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    "VOLUME requires at least one argument",
                ));
                return None;
            }
            check_flags(ctx, parts, &[], diags);
            let mut out = Vec::new();
            for v in list {
                let v = v.trim();
                if v.is_empty() {
                    diags.push(ctx.err(
                        parts.args_start,
                        args_end,
                        "VOLUME specified can not be an empty string",
                    ));
                    return None;
                }
                out.push(v.to_string());
            }
            Some(Kind::Volume(out))
        }
        "EXPOSE" => {
            let words = arg_words(parts);
            if words.is_empty() {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    "EXPOSE requires at least one argument",
                ));
                return None;
            }
            check_flags(ctx, parts, &[], diags);
            Some(Kind::Expose(words.into_iter().map(|w| w.text).collect()))
        }
        "HEALTHCHECK" => super::healthcheck::parse_healthcheck(ctx, parts, diags),
        "ONBUILD" => {
            if in_onbuild {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                ));
                return None;
            }
            if parts.args.is_empty() {
                diags.push(keyword_error(
                    ctx,
                    parts,
                    "ONBUILD requires at least one argument",
                ));
                return None;
            }
            check_flags(ctx, parts, &[], diags);
            let child = split_command(&parts.args, parts.args_start);
            let trigger = child.cmd.to_ascii_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    diags.push(ctx.err(
                        child.cmd_start,
                        child.cmd_end,
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
                    ));
                    return None;
                }
                "MAINTAINER" | "FROM" => {
                    diags.push(ctx.err(
                        child.cmd_start,
                        child.cmd_end,
                        format!("{trigger} isn't allowed as an ONBUILD trigger"),
                    ));
                    return None;
                }
                _ => {}
            }
            // BuildKit only checks a trigger when a later build runs it; say early what will fail.
            let mut child_diags = Vec::new();
            if KEYWORDS.contains(&trigger.as_str()) {
                parse_kind(ctx, &child, heredocs, &mut child_diags, true);
            } else {
                child_diags.push(unknown_instruction(ctx, &child));
            }
            for mut d in child_diags {
                if d.is_error() {
                    d.severity = super::diagnostic::Severity::Warning;
                    d.message = format!("ONBUILD trigger will fail: {}", d.message);
                }
                diags.push(d);
            }
            let mut expression = strip_onbuild(&ctx.line.text);
            for (o, content) in heredocs {
                expression.push('\n');
                expression.push_str(content);
                expression.push_str(&o.name);
            }
            Some(Kind::Onbuild(Onbuild { expression }))
        }
        _ => {
            diags.push(unknown_instruction(ctx, parts));
            None
        }
    }
}

/// `(?i)^\s*ONBUILD\s*` removed.
fn strip_onbuild(line: &str) -> String {
    let t = line.trim_start_matches(is_re_space);
    let rest = if t.len() >= 7 && t.is_char_boundary(7) && t[..7].eq_ignore_ascii_case("onbuild") {
        t[7..].trim_start_matches(is_re_space)
    } else {
        t
    };
    rest.to_string()
}

fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

pub(crate) fn unknown_instruction(ctx: &Ctx<'_>, parts: &Parts) -> Diagnostic {
    let upper = parts.cmd.to_uppercase();
    let d = ctx
        .err(
            parts.cmd_start,
            parts.cmd_end,
            format!("unknown instruction: {upper}"),
        )
        .with_label("not a Dockerfile instruction");
    match suggest::closest(&upper, KEYWORDS) {
        Some(s) => d.with_help(format!("did you mean `{s}`?")),
        None => d.with_help(
            "a line that is not a comment must start with an instruction such as RUN or COPY; \
             did a previous line miss a `\\` at the end?",
        ),
    }
}

fn valid_stage_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn to_heredoc(o: &Opener, content: &str) -> Heredoc {
    Heredoc {
        name: o.name.clone(),
        content: content.to_string(),
        expand: o.expand,
        chomp: o.chomp,
    }
}

fn parse_copy(
    ctx: &Ctx<'_>,
    parts: &Parts,
    heredocs: &[(Opener, String)],
    diags: &mut Vec<Diagnostic>,
    is_add: bool,
) -> Option<Kind> {
    let name = if is_add { "ADD" } else { "COPY" };
    let (list, _json) = maybe_json_list(ctx, parts, diags)?;
    if list.len() < 2 {
        diags.push(
            keyword_error(
                ctx,
                parts,
                format!(
                    "{name} requires at least two arguments, but only one was provided. Destination could not be determined"
                ),
            )
            .with_help(format!("write `{name} <source>... <destination>`")),
        );
        return None;
    }
    let accepted: &[(&'static str, F)] = if is_add {
        &[
            ("exclude", F::Strs),
            ("chown", F::Str),
            ("chmod", F::Str),
            ("link", F::Bool),
            ("keep-git-dir", F::Bool),
            ("checksum", F::Str),
            ("unpack", F::Bool),
        ]
    } else {
        &[
            ("exclude", F::Strs),
            ("parents", F::Bool),
            ("chown", F::Str),
            ("from", F::Str),
            ("chmod", F::Str),
            ("link", F::Bool),
        ]
    };
    let f = check_flags(ctx, parts, accepted, diags);
    let (srcs, dest) = list.split_at(list.len() - 1);
    let dest = dest[0].clone();
    if super::heredoc::parse_opener(&dest).is_some() {
        diags.push(ctx.err(
            parts.args_start,
            parts.args_start + parts.args.len(),
            format!("{name} cannot accept a heredoc as a destination"),
        ));
        return None;
    }
    let sources = srcs
        .iter()
        .map(|s| match super::heredoc::parse_opener(s) {
            Some(o) => {
                let content = heredocs
                    .iter()
                    .rev()
                    .find(|(h, _)| h.name == o.name)
                    .map(|(_, c)| c.as_str())
                    .unwrap_or_default();
                let mut h = to_heredoc(&o, content);
                if h.chomp {
                    h.content = super::heredoc::chomp(&h.content);
                }
                Source::Heredoc(h)
            }
            None => Source::Path(s.clone()),
        })
        .collect();
    let span_of = |v: &flags::Value| (v.value.clone(), ctx.span(v.start, v.end));
    if let Some(from) = f.str("from")
        && from.value.contains('$')
    {
        diags.push(
            ctx.err(
                from.start,
                from.end,
                "`COPY --from` doesn't support variable expansion",
            )
            .with_help(
                "BuildKit does not expand variables in --from; define `FROM <image> AS <name>` \
                 with the variable there and copy `--from=<name>`",
            ),
        );
    }
    Some(Kind::Copy(Copy {
        is_add,
        sources,
        dest,
        from: f.str("from").map(span_of),
        chown: f.str("chown").map(|v| v.value.clone()),
        chmod: f.str("chmod").map(span_of),
        link: f.bool("link"),
        parents: f.bool("parents"),
        exclude: f.all("exclude").iter().map(|v| v.value.clone()).collect(),
        checksum: f.str("checksum").map(span_of),
        keep_git_dir: f.bool("keep-git-dir"),
        unpack: f.str("unpack").map(|v| v.value == "true"),
    }))
}
