//! Parser directives: `# syntax=`, `# escape=` and `# check=`.
//!
//! BuildKit's rules (the `DirectiveParser`): directives are comment lines of the form
//! `# key=value` at the very top of the file. The first line that is not one (an instruction, an
//! empty line, any other comment, or an unknown key) ends the search, and later `# key=value`
//! lines are plain comments. Keys are case-insensitive; whitespace around `=` and at the end is
//! ignored. A known directive given twice is an error.
//!
//! `syntax` selects a frontend image in BuildKit. Kiln has the Dockerfile frontend built in, so it
//! accepts only the standard `docker/dockerfile` frontend at a 1.x version (or `labs`), and
//! rejects any other image instead of silently building with different semantics.

use super::source::Span;

/// The directives found at the top of a Dockerfile.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    pub syntax: Option<Directive>,
    pub escape: Option<Directive>,
    pub check: Option<Directive>,
}

/// One directive: its value and where the value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub value: String,
    pub span: Span,
}

/// A directive line, recognised.
pub(crate) struct DirectiveLine<'a> {
    pub key: String,
    pub value: &'a str,
}

/// Tracks whether directives may still appear, and which were seen.
#[derive(Default)]
pub(crate) struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

/// Go's `\s`: the whitespace of regular expressions.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

impl DirectiveParser {
    /// Look at one line (newline and leading whitespace already trimmed). Returns the directive
    /// it holds, an error for a repeated directive, or nothing.
    pub fn line<'a>(&mut self, line: &'a str) -> Option<Result<DirectiveLine<'a>, String>> {
        if self.done {
            return None;
        }
        let Some(parsed) = parse_directive(line) else {
            self.done = true;
            return None;
        };
        if !matches!(parsed.key.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return None;
        }
        if self.seen.contains(&parsed.key) {
            return Some(Err(format!(
                "only one {} parser directive can be used",
                parsed.key
            )));
        }
        self.seen.push(parsed.key.clone());
        Some(Ok(parsed))
    }
}

/// `#` `\s*` key `\s*` `=` `\s*` value `\s*`, with key `[a-zA-Z][a-zA-Z0-9]*` and a non-empty value.
fn parse_directive(line: &str) -> Option<DirectiveLine<'_>> {
    let rest = line
        .strip_prefix('#')?
        .trim_start_matches(char::is_whitespace);
    let key_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if key_len == 0 {
        return None;
    }
    let key = rest[..key_len].to_ascii_lowercase();
    let rest = rest[key_len..].trim_start_matches(is_re_space);
    let rest = rest.strip_prefix('=')?;
    if rest.is_empty() {
        return None;
    }
    let trimmed = rest.trim_matches(is_re_space);
    // The value is at least one character: a value of only whitespace keeps its last character,
    // as the lazy `(.+?)` of BuildKit's expression does.
    let value = if trimmed.is_empty() {
        let last = rest.char_indices().last().map_or(0, |(i, _)| i);
        &rest[last..]
    } else {
        trimmed
    };
    Some(DirectiveLine { key, value })
}

/// Why a `# syntax=` value is not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxRejected {
    pub message: String,
    pub help: String,
}

/// Accept the standard Dockerfile frontend at a 1.x version: `docker/dockerfile:1`,
/// `docker/dockerfile:1.7`, `docker/dockerfile:1.7.1`, the `-labs` variants, `labs`, `latest` or
/// no tag, optionally with a `docker.io/` prefix and a digest. BuildKit takes the first
/// space-separated word as the image.
pub fn check_syntax(value: &str) -> Result<(), SyntaxRejected> {
    let image = value.split(' ').next().unwrap_or_default();
    let (name_tag, _digest) = match image.split_once('@') {
        Some((a, d)) => (a, Some(d)),
        None => (image, None),
    };
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    let help = "use `# syntax=docker/dockerfile:1`, or remove the line: Kiln has the Dockerfile \
                frontend built in";
    if name != "docker/dockerfile" {
        return Err(SyntaxRejected {
            message: format!(
                "unsupported frontend `{image}`: Kiln does not run frontend images, it only \
                 understands the standard Dockerfile syntax"
            ),
            help: help.into(),
        });
    }
    let Some(tag) = tag else { return Ok(()) };
    if supported_tag(tag) {
        Ok(())
    } else {
        Err(SyntaxRejected {
            message: format!(
                "unsupported Dockerfile syntax version `{tag}`: Kiln implements \
                 docker/dockerfile 1.x"
            ),
            help: help.into(),
        })
    }
}

fn supported_tag(tag: &str) -> bool {
    if matches!(tag, "labs" | "latest" | "experimental") {
        return true;
    }
    let version = tag
        .strip_suffix("-labs")
        .or_else(|| tag.strip_suffix("-experimental"))
        .unwrap_or(tag);
    let mut parts = version.split('.');
    if parts.next() != Some("1") {
        return false;
    }
    let rest: Vec<&str> = parts.collect();
    rest.len() <= 2
        && rest
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The `# check=` directive: which of BuildKit's build checks to skip, and whether warnings
/// fail the build.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckConfig {
    pub skip_all: bool,
    pub skip: Vec<String>,
    pub error: bool,
    pub experimental: Vec<String>,
    pub experimental_all: bool,
}

impl CheckConfig {
    /// Parse `skip=Rule1,Rule2;error=true;experimental=all` as BuildKit's `ParseLintOptions`
    /// does: up to three `;`-separated `key=value` options.
    pub fn parse(s: &str) -> Result<CheckConfig, String> {
        let s = s.trim();
        let mut cfg = CheckConfig::default();
        if s.is_empty() {
            return Ok(cfg);
        }
        for part in s.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {part:?}"));
            };
            match k.trim() {
                "skip" => {
                    let v = v.trim();
                    if v == "all" {
                        cfg.skip_all = true;
                    } else {
                        cfg.skip = v.split(',').map(|r| r.trim().to_string()).collect();
                    }
                }
                "experimental" => {
                    let v = v.trim();
                    if v == "all" {
                        cfg.experimental_all = true;
                    } else {
                        cfg.experimental = v.split(',').map(|r| r.trim().to_string()).collect();
                    }
                }
                "error" => {
                    cfg.error = parse_go_bool(v.trim())
                        .ok_or_else(|| format!("failed to parse check option {part:?}"))?;
                }
                other => return Err(format!("invalid check option {other:?}")),
            }
        }
        Ok(cfg)
    }

    /// Whether a rule's warnings are reported.
    pub fn enabled(&self, rule: &str) -> bool {
        !self.skip_all && !self.skip.iter().any(|r| r == rule)
    }
}

/// Go's `strconv.ParseBool`.
pub(crate) fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_lines() {
        let d = parse_directive("# escape=`").unwrap();
        assert_eq!((d.key.as_str(), d.value), ("escape", "`"));
        let d = parse_directive("#SYNTAX = docker/dockerfile:1  ").unwrap();
        assert_eq!((d.key.as_str(), d.value), ("syntax", "docker/dockerfile:1"));
        assert!(parse_directive("# not a directive").is_none());
        assert!(parse_directive("#!/bin/sh").is_none());
        assert!(parse_directive("# escape=").is_none());
        assert_eq!(parse_directive("# escape=  ").unwrap().value, " ");
    }

    #[test]
    fn the_first_non_directive_ends_the_search() {
        let mut p = DirectiveParser::default();
        assert!(p.line("# syntax=docker/dockerfile:1").is_some());
        assert!(matches!(p.line("# syntax=x"), Some(Err(_))));
        let mut p = DirectiveParser::default();
        assert!(p.line("").is_none());
        assert!(p.line("# escape=`").is_none());
    }

    #[test]
    fn syntax_accepts_the_standard_frontend_only() {
        for ok in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7",
            "docker/dockerfile:1.7.1",
            "docker/dockerfile:1-labs",
            "docker/dockerfile:1.4-labs",
            "docker/dockerfile:labs",
            "docker.io/docker/dockerfile:1",
            "docker/dockerfile",
            "docker/dockerfile:1@sha256:abc",
        ] {
            assert!(check_syntax(ok).is_ok(), "{ok}");
        }
        for bad in [
            "docker/dockerfile:2",
            "docker/dockerfile:0.9",
            "docker/dockerfile-upstream:master",
            "example.com/my/frontend:1",
            "tonistiigi/dockerfile:runmount",
            "docker/dockerfile:1.x",
        ] {
            assert!(check_syntax(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_options() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended, StageNameCasing;error=true").unwrap();
        assert_eq!(c.skip, ["JSONArgsRecommended", "StageNameCasing"]);
        assert!(c.error);
        assert!(!c.enabled("StageNameCasing"));
        assert!(CheckConfig::parse("skip").is_err());
        assert!(CheckConfig::parse("error=maybe").is_err());
        assert!(CheckConfig::parse("frob=1").is_err());
        assert!(CheckConfig::parse("skip=all").unwrap().skip_all);
    }
}
