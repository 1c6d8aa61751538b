//! The Dockerfile front end: from text to checked instructions.
//!
//! [`parse`] reads a Dockerfile the way BuildKit's Dockerfile frontend (syntax 1.x) does and
//! returns its stages as typed [`Instruction`]s, with arguments still unexpanded: expansion
//! depends on build arguments and base images, and belongs to the [`crate::plan`].
//!
//! BuildKit stops at the first error. This front end keeps going after an error in one
//! instruction and reports every independent problem it finds, each with its file, line and
//! column.
//!
//! The lexing follows BuildKit's own parser rather than the `parse-dockerfile` crate pinned in
//! the workspace: that crate finds a RUN heredoc only at the very start of the command and only
//! one per instruction, stops at its first error, and resets (where BuildKit errors) on a
//! repeated parser directive. It remains a dev-dependency, as a second opinion in the corpus
//! tests.

pub mod args;
pub mod ast;
pub mod diagnostic;
pub mod directives;
pub mod duration;
pub mod expand;
mod flags;
pub(crate) mod healthcheck;
pub mod heredoc;
pub mod instruction;
pub(crate) mod lines;
pub mod mount;
pub mod source;
pub(crate) mod suggest;

use std::sync::Arc;

pub use diagnostic::{Diagnostic, Diagnostics, Severity};
pub use directives::CheckConfig;
pub use instruction::{Instruction, Kind};
pub use source::{SourceFile, Span};

use instruction::Ctx;

/// A parsed Dockerfile: global ARGs and stages.
#[derive(Debug, Clone)]
pub struct Dockerfile {
    pub source: Arc<SourceFile>,
    /// The escape character (`\`, or `` ` `` from `# escape=`).
    pub escape: char,
    /// The `# syntax=` value, if any (already checked to name BuildKit's own frontend).
    pub syntax: Option<String>,
    /// The `# check=` configuration.
    pub check: CheckConfig,
    /// ARG instructions before the first FROM: the global scope.
    pub meta_args: Vec<Instruction>,
    pub stages: Vec<StageDef>,
    /// Warnings found while parsing (BuildKit's build checks that apply at this point).
    pub warnings: Vec<Diagnostic>,
}

/// A stage: its FROM and the instructions that follow.
#[derive(Debug, Clone)]
pub struct StageDef {
    pub from: Instruction,
    pub instructions: Vec<Instruction>,
}

impl StageDef {
    /// The FROM arguments.
    pub fn from_args(&self) -> &instruction::From {
        match &self.from.kind {
            Kind::From(f) => f,
            // A StageDef is only ever built from a FROM instruction.
            _ => unreachable!("a stage starts with FROM"),
        }
    }
}

/// At most this many errors are reported; past that, they are mostly consequences.
const MAX_ERRORS: usize = 50;

/// Parse a Dockerfile. `name` is the file name as the user gave it; it appears in diagnostics.
pub fn parse(name: &str, text: &str) -> Result<Dockerfile, Diagnostics> {
    let (df, diags) = parse_partial(name, text);
    if diags.iter().any(Diagnostic::is_error) {
        return Err(Diagnostics { items: diags }.sorted());
    }
    Ok(df)
}

/// Parse as much of a Dockerfile as can be parsed: the instructions without errors, grouped in
/// stages (the instructions of a stage whose FROM has an error are left out), and every
/// diagnostic. The plan uses this to report the problems it finds along with parse errors.
pub fn parse_partial(name: &str, text: &str) -> (Dockerfile, Vec<Diagnostic>) {
    parse_partial_with(name, text, &Overrides::default())
}

/// Values given outside the file that take the place of its parser directives: BuildKit's
/// `BUILDKIT_SYNTAX` and `BUILDKIT_DOCKERFILE_CHECK` build arguments. With one set, the
/// directive is ignored, as in BuildKit.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// The frontend, for `# syntax=`; `dockerfile.v0` names the built-in front end.
    pub syntax: Option<String>,
    /// The checks, for `# check=`.
    pub check: Option<String>,
}

/// [`parse_partial`], with the directives [`Overrides`] replaces.
pub fn parse_partial_with(
    name: &str,
    text: &str,
    overrides: &Overrides,
) -> (Dockerfile, Vec<Diagnostic>) {
    let src = SourceFile::new(name, text);
    let mut scanner = lines::Scanner::new(src.text());
    let (instructions, mut diags, saw_any) = read_instructions(&src, &mut scanner);
    let escape = scanner.escape;
    let issues = std::mem::take(&mut scanner.issues);
    let directives = scanner.directives.clone();
    drop(scanner);
    for issue in issues {
        let d = match issue.warning_rule {
            Some(rule) => Diagnostic::warning(&src, issue.span, issue.message).with_rule(rule),
            None => Diagnostic::error(&src, issue.span, issue.message),
        };
        diags.push(d);
    }

    let mut syntax = None;
    if let Some(v) = &overrides.syntax {
        let v = v.trim();
        let checked = match v.split(' ').next() {
            Some("dockerfile.v0") => Ok(()),
            _ => directives::check_syntax(v),
        };
        match checked {
            Ok(()) => syntax = Some(v.to_string()),
            Err(e) => diags.push(
                Diagnostic::global(
                    name,
                    format!("build argument BUILDKIT_SYNTAX: {}", e.message),
                )
                .with_help(
                    "set BUILDKIT_SYNTAX to docker/dockerfile:1 or dockerfile.v0, or drop it: \
                         Kiln has the Dockerfile frontend built in",
                ),
            ),
        }
    } else if let Some(d) = &directives.syntax {
        match directives::check_syntax(&d.value) {
            Ok(()) => syntax = Some(d.value.clone()),
            Err(e) => diags.push(
                Diagnostic::error(&src, d.span, e.message)
                    .with_label("not a frontend Kiln has")
                    .with_help(e.help),
            ),
        }
    }
    let mut check = CheckConfig::default();
    if let Some(v) = &overrides.check {
        match CheckConfig::parse(v) {
            Ok(c) => check = c,
            Err(e) => diags.push(Diagnostic::global(
                name,
                format!("failed to parse BUILDKIT_DOCKERFILE_CHECK: {e}"),
            )),
        }
    } else if let Some(d) = &directives.check {
        match CheckConfig::parse(&d.value) {
            Ok(c) => check = c,
            Err(e) => diags.push(Diagnostic::error(
                &src,
                d.span,
                format!("failed to parse check options: {e}"),
            )),
        }
    }

    let mut meta_args = Vec::new();
    let mut stages: Vec<StageDef> = Vec::new();
    let mut orphaned = false;
    for item in instructions {
        let i = match item {
            Item::Parsed(i) => *i,
            Item::FailedFrom => {
                orphaned = true;
                continue;
            }
        };
        if orphaned && !matches!(i.kind, Kind::From(_)) {
            continue;
        }
        orphaned = false;
        match (&i.kind, stages.last_mut()) {
            (Kind::From(_), _) => stages.push(StageDef {
                from: i,
                instructions: Vec::new(),
            }),
            (Kind::Arg(_), None) => meta_args.push(i),
            (_, Some(stage)) => stage.instructions.push(i),
            (_, None) => diags.push(
                Diagnostic::error(
                    &src,
                    i.keyword_span,
                    format!(
                        "{} before the first FROM: no build stage in current context",
                        i.keyword.to_uppercase()
                    ),
                )
                .with_help("a Dockerfile starts with FROM; only ARG may come before it"),
            ),
        }
    }

    if !saw_any {
        diags.push(
            Diagnostic::global(name, "file with no instructions")
                .with_help("a Dockerfile needs at least a FROM instruction"),
        );
    } else if stages.is_empty() && !diags.iter().any(Diagnostic::is_error) {
        diags.push(
            Diagnostic::global(name, "dockerfile contains no stages to build")
                .with_help("add a FROM instruction"),
        );
    }

    lint(&src, &stages, &mut diags);
    diags.retain(|d| d.is_error() || d.rule.as_deref().is_none_or(|r| check.enabled(r)));
    let warnings = diags.iter().filter(|d| !d.is_error()).cloned().collect();
    (
        Dockerfile {
            source: src,
            escape,
            syntax,
            check,
            meta_args,
            stages,
            warnings,
        },
        diags,
    )
}

/// A line of the file: an instruction, or a FROM that could not be parsed.
enum Item {
    Parsed(Box<Instruction>),
    FailedFrom,
}

/// Read every instruction of a file, collecting diagnostics.
fn read_instructions(
    src: &Arc<SourceFile>,
    scanner: &mut lines::Scanner<'_>,
) -> (Vec<Item>, Vec<Diagnostic>, bool) {
    let mut diags: Vec<Diagnostic> = Vec::new();
    let mut instructions = Vec::new();
    let mut saw_any = false;
    while let Some(line) = scanner.next_line() {
        saw_any = true;
        let parts = instruction::split_command(&line.text, 0);
        let mut bodies = Vec::new();
        if instruction::can_contain_heredoc(&parts) {
            let mut cursor = 0;
            for opener in heredoc::openers(&line.text) {
                let at = line.text[cursor..]
                    .find(&opener.word)
                    .map_or(cursor, |i| cursor + i);
                cursor = (at + opener.word.len()).min(line.text.len());
                match scanner.heredoc_body(&opener.name, opener.chomp) {
                    Some((content, _)) => bodies.push((opener, content)),
                    None => {
                        diags.push(
                            Diagnostic::error(
                                src,
                                line.span(at, at + opener.word.len()),
                                "unterminated heredoc",
                            )
                            .with_label(format!("no line `{}` ends this heredoc", opener.name))
                            .with_help(format!(
                                "end the heredoc with a line that contains only `{}`{}",
                                opener.name,
                                if opener.chomp {
                                    " (leading tabs allowed)"
                                } else {
                                    ""
                                }
                            )),
                        );
                        break;
                    }
                }
            }
        }
        let end_line = scanner.current_line().max(line.last_line);
        let ctx = Ctx {
            src,
            escape: scanner.escape,
            line: &line,
        };
        let parsed = instruction::parse(&ctx, &parts, &bodies, end_line);
        diags.extend(parsed.diagnostics);
        match parsed.instruction {
            Some(i) => instructions.push(Item::Parsed(Box::new(i))),
            None if parts.cmd.eq_ignore_ascii_case("from") => instructions.push(Item::FailedFrom),
            None => {}
        }
        if diags.iter().filter(|d| d.is_error()).count() >= MAX_ERRORS {
            break;
        }
    }
    (instructions, diags, saw_any)
}

/// Parse an ONBUILD trigger, as an image's `OnBuild` stores it, into its one instruction.
/// Triggers are parsed as a file of their own, so with the default escape character.
pub fn parse_trigger(text: &str) -> Result<Instruction, String> {
    let src = SourceFile::new("<ONBUILD trigger>", text);
    let mut scanner = lines::Scanner::new(src.text());
    let (items, diags, _) = read_instructions(&src, &mut scanner);
    if let Some(e) = diags.iter().find(|d| d.is_error()) {
        return Err(e.message.clone());
    }
    let mut instructions: Vec<Instruction> = items
        .into_iter()
        .filter_map(|i| match i {
            Item::Parsed(i) => Some(*i),
            Item::FailedFrom => None,
        })
        .collect();
    if instructions.len() != 1 {
        return Err("onbuild trigger should be a single expression".into());
    }
    let i = instructions.remove(0);
    if matches!(
        i.kind,
        Kind::From(_) | Kind::Maintainer(_) | Kind::Onbuild(_)
    ) {
        return Err(format!(
            "{} isn't allowed as an ONBUILD trigger",
            i.keyword.to_uppercase()
        ));
    }
    Ok(i)
}

/// The build checks of BuildKit that need only the parsed file.
fn lint(src: &SourceFile, stages: &[StageDef], diags: &mut Vec<Diagnostic>) {
    let mut names: Vec<&str> = Vec::new();
    for stage in stages {
        let from = stage.from_args();
        if let (Some(name), Some(span)) = (&from.name, from.name_span) {
            let written = src.text().get(span.start..span.end).unwrap_or_default();
            if written != name {
                diags.push(
                    Diagnostic::warning(src, span, "Stage name should be lowercase")
                        .with_rule("StageNameCasing")
                        .with_help(format!(
                            "write `{name}`; stage names are matched in lowercase"
                        )),
                );
            }
            // BuildKit's FromAsCasing: an all-lowercase FROM wants a lowercase AS, an
            // all-uppercase FROM an uppercase one; a mixed-case FROM is not checked here.
            let keyword = &stage.from.keyword;
            let as_word = from.as_keyword.as_deref().unwrap_or("AS");
            let from_lower = keyword.to_lowercase() == *keyword;
            let from_upper = keyword.to_uppercase() == *keyword;
            let matches = if from_lower {
                as_word.to_lowercase() == as_word
            } else if from_upper {
                as_word.to_uppercase() == as_word
            } else {
                true
            };
            if !matches {
                diags.push(
                    Diagnostic::warning(
                        src,
                        stage.from.keyword_span,
                        format!("'{as_word}' and '{keyword}' keywords' casing do not match"),
                    )
                    .with_rule("FromAsCasing"),
                );
            }
            if matches!(name.as_str(), "context" | "scratch") {
                diags.push(
                    Diagnostic::warning(
                        src,
                        span,
                        format!("'{name}' is reserved and should not be used as a stage name"),
                    )
                    .with_rule("ReservedStageName"),
                );
            }
            if names.contains(&name.as_str()) {
                diags.push(
                    Diagnostic::warning(
                        src,
                        span,
                        format!("Duplicate stage name {name:?}, stage names should be unique"),
                    )
                    .with_rule("DuplicateStageName")
                    .with_help("references to this name resolve to the last stage that has it"),
                );
            }
            names.push(name);
        }
        let mut seen: Vec<(&str, &Instruction)> = Vec::new();
        for i in &stage.instructions {
            match &i.kind {
                Kind::Maintainer(_) => diags.push(
                    Diagnostic::warning(
                        src,
                        i.keyword_span,
                        "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
                    )
                    .with_rule("MaintainerDeprecated")
                    .with_help("write `LABEL org.opencontainers.image.authors=\"...\"`"),
                ),
                Kind::Env(kvs) | Kind::Label(kvs) if kvs.iter().any(|kv| kv.legacy) => diags.push(
                    Diagnostic::warning(
                        src,
                        i.keyword_span,
                        format!(
                            "\"{} key=value\" should be used instead of legacy \"{} key value\" format",
                            i.keyword.to_uppercase(),
                            i.keyword.to_uppercase()
                        ),
                    )
                    .with_rule("LegacyKeyValueFormat"),
                ),
                _ => {}
            }
            let once = match &i.kind {
                Kind::Cmd(_) => Some("CMD"),
                Kind::Entrypoint(_) => Some("ENTRYPOINT"),
                Kind::Healthcheck(_) => Some("HEALTHCHECK"),
                _ => None,
            };
            if let Some(kw) = once {
                if let Some((_, prev)) = seen.iter().find(|(k, _)| *k == kw) {
                    diags.push(
                        Diagnostic::warning(
                            src,
                            prev.keyword_span,
                            format!("Multiple {kw} instructions should not be used in the same stage because only the last one will be used"),
                        )
                        .with_rule("MultipleInstructionsDisallowed"),
                    );
                }
                seen.retain(|(k, _)| *k != kw);
                seen.push((kw, i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match parse("Dockerfile", text) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .errors()
                .map(|d| format!("{}:{} {}", d.line, d.column, d.message))
                .collect(),
        }
    }

    #[test]
    fn a_simple_file() {
        let df = parse(
            "Dockerfile",
            "ARG V=1\nFROM alpine:$V AS build\nRUN echo hi\n",
        )
        .unwrap();
        assert_eq!(df.meta_args.len(), 1);
        assert_eq!(df.stages.len(), 1);
        assert_eq!(df.stages[0].from_args().name.as_deref(), Some("build"));
        assert_eq!(df.stages[0].instructions[0].original, "RUN echo hi");
    }

    #[test]
    fn several_errors_at_once() {
        assert_eq!(
            errs("FROM a\nFORM b\nRUN --mnt=x y\nCOPY onlyone\n"),
            [
                "2:1 unknown instruction: FORM",
                "3:5 unknown flag: mnt",
                "4:1 COPY requires at least two arguments, but only one was provided. Destination could not be determined",
            ]
        );
    }

    #[test]
    fn heredocs_are_read_and_skipped() {
        let df = parse(
            "Dockerfile",
            "FROM a\nRUN <<EOF1 <<EOF2 && echo done\nthis is not an instruction\nEOF1\nneither\nEOF2\nCMD x\n",
        )
        .unwrap();
        let run = &df.stages[0].instructions[0];
        assert_eq!(run.location.end_line, 6);
        let Kind::Run(r) = &run.kind else { panic!() };
        assert_eq!(r.heredocs.len(), 2);
        assert_eq!(r.heredocs[1].content, "neither\n");
        assert_eq!(df.stages[0].instructions.len(), 2);
    }

    #[test]
    fn unterminated_heredoc() {
        assert_eq!(
            errs("FROM a\nRUN cat <<EOF\nhello\n"),
            ["2:9 unterminated heredoc"]
        );
    }

    #[test]
    fn instructions_before_from() {
        assert_eq!(
            errs("RUN x\nFROM a\n"),
            ["1:1 RUN before the first FROM: no build stage in current context"]
        );
        assert_eq!(errs(""), ["0:0 file with no instructions"]);
        assert_eq!(
            errs("ARG A\n"),
            ["0:0 dockerfile contains no stages to build"]
        );
    }

    #[test]
    fn directives() {
        let df = parse(
            "D",
            "# syntax=docker/dockerfile:1\n# escape=`\nFROM a\nRUN a `\n b\n",
        )
        .unwrap();
        assert_eq!(df.escape, '`');
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(errs("# syntax=foo/bar:1\nFROM a\n").len(), 1);
        assert_eq!(
            errs("# escape=\\\n# escape=`\nFROM a\n"),
            ["2:1 only one escape parser directive can be used"]
        );
        assert_eq!(
            errs("# escape=x\nFROM a\n"),
            ["1:10 invalid escape token 'x' does not match ` or \\"]
        );
    }

    #[test]
    fn syntax_and_check_after_a_shebang() {
        let text = "#!/usr/bin/env dockerfile-run\n# syntax=docker/dockerfile:1.7\n# check=skip=all;error=true\n# escape=`\nFROM a\nENV LEGACY value\n";
        let df = parse("D", text).unwrap();
        assert_eq!(df.syntax.as_deref(), Some("docker/dockerfile:1.7"));
        assert!(df.check.skip_all && df.check.error);
        assert!(df.warnings.is_empty(), "{:?}", df.warnings);
        // The instruction parser saw the `#!` comment first: escape stays the backslash.
        assert_eq!(df.escape, '\\');
        assert_eq!(
            errs("#!/bin/sh\n# syntax=example.com/frontend:1\nFROM a\n"),
            [
                "2:10 unsupported frontend `example.com/frontend:1`: Kiln does not run frontend images, it only understands the standard Dockerfile syntax"
            ]
        );
        // Only a first line starting with `#!` is a shebang, and a blank line ends the search.
        assert!(parse("D", "#!/bin/sh\n\n# syntax=foo/bar\nFROM a\n").is_ok());
        assert!(parse("D", " #!/bin/sh\n# syntax=foo/bar\nFROM a\n").is_ok());
    }
}
