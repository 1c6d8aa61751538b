//! Parser directives: `# syntax=`, `# escape=` and `# check=`.
//!
//! BuildKit's rules (the `DirectiveParser`): directives are comment lines of the form
//! `# key=value` at the very top of the file. The first line that is not one (an instruction, an
//! empty line, any other comment, or an unknown key) ends the search, and later `# key=value`
//! lines are plain comments. Keys are case-insensitive; whitespace around `=` and at the end is
//! ignored. A known directive given twice is an error.
//!
//! `syntax` selects a frontend image in BuildKit. Kiln has the Dockerfile frontend built in, so it
//! accepts only BuildKit's own Dockerfile frontend images (see [`check_syntax`]), and rejects
//! any other image instead of silently building with different semantics.

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

/// Docker Hub's names for itself in an image reference.
const DOCKER_HUB_PREFIXES: &[&str] = &["docker.io/", "index.docker.io/", "registry-1.docker.io/"];

/// BuildKit's own Dockerfile frontend images: the releases and the builds of BuildKit's main
/// branch. BuildKit's own Dockerfiles use `docker/dockerfile-upstream:master`.
const BUILDKIT_FRONTENDS: &[&str] = &["docker/dockerfile", "docker/dockerfile-upstream"];

/// Accept BuildKit's own Dockerfile frontend images, which Kiln's built-in front end stands in
/// for: `docker/dockerfile` and `docker/dockerfile-upstream`, with or without a Docker Hub
/// prefix (`docker.io/`, `index.docker.io/`, `registry-1.docker.io/`), with any digest and any
/// tag (`1`, `1.7-labs`, `master`, `labs`...) except a version other than 1.x (`2`, `0.9`: that
/// would be another syntax). A feature such an image has and Kiln lacks still fails where it is
/// used (an unknown flag, an unknown instruction), so nothing is built with silently different
/// semantics. Any other image is another language, and an error. BuildKit takes the first
/// space-separated word of the value as the image.
pub fn check_syntax(value: &str) -> Result<(), SyntaxRejected> {
    let image = value.split(' ').next().unwrap_or_default();
    let (name_tag, digest) = match image.split_once('@') {
        Some((a, d)) => (a, Some(d)),
        None => (image, None),
    };
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t)),
        _ => (name_tag, None),
    };
    let name = DOCKER_HUB_PREFIXES
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    let help = "use `# syntax=docker/dockerfile:1`, or remove the line: Kiln has the Dockerfile \
                frontend built in";
    if !BUILDKIT_FRONTENDS.contains(&name) {
        return Err(SyntaxRejected {
            message: format!(
                "unsupported frontend `{image}`: Kiln does not run frontend images, it only \
                 understands the standard Dockerfile syntax"
            ),
            help: help.into(),
        });
    }
    if let Some(major) = tag.and_then(major_version)
        && major != "1"
    {
        return Err(SyntaxRejected {
            message: format!(
                "unsupported Dockerfile syntax version `{}`: Kiln implements docker/dockerfile 1.x",
                tag.unwrap_or_default()
            ),
            help: help.into(),
        });
    }
    let bad_tag = tag.is_some_and(|t| !valid_tag(t));
    let bad_digest = digest.is_some_and(|d| {
        !d.split_once(':')
            .is_some_and(|(a, h)| !a.is_empty() && !h.is_empty())
    });
    if bad_tag || bad_digest {
        return Err(SyntaxRejected {
            message: format!("invalid frontend image reference `{image}`"),
            help: help.into(),
        });
    }
    Ok(())
}

/// The major version of a version tag (`1` of `1.7-labs`), `None` for a named tag (`master`).
fn major_version(tag: &str) -> Option<&str> {
    let end = tag.find(['.', '-']).unwrap_or(tag.len());
    let major = &tag[..end];
    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit())).then_some(major)
}

/// A tag of an image reference: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let mut bytes = tag.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && tag.len() <= 128
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
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
    fn syntax_accepts_buildkits_own_frontends_only() {
        for ok in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7",
            "docker/dockerfile:1.7.1",
            "docker/dockerfile:1-labs",
            "docker/dockerfile:1.4-labs",
            "docker/dockerfile:labs",
            "docker/dockerfile:1.0-experimental",
            "docker.io/docker/dockerfile:1",
            "index.docker.io/docker/dockerfile:1",
            "registry-1.docker.io/docker/dockerfile:1.17",
            "docker/dockerfile",
            "docker/dockerfile:1@sha256:abc",
            "docker/dockerfile@sha256:0123456789abcdef",
            "docker/dockerfile-upstream:master",
            "docker/dockerfile-upstream:master-labs",
            "docker/dockerfile-upstream:1.18.0-rc1",
            "docker.io/docker/dockerfile-upstream:master",
            "registry-1.docker.io/docker/dockerfile-upstream:master",
            "docker/dockerfile-upstream",
            "docker/dockerfile:1 with options after a space",
        ] {
            assert!(check_syntax(ok).is_ok(), "{ok}");
        }
        for bad in [
            "example.com/my/frontend:1",
            "tonistiigi/dockerfile:runmount",
            "example.com/docker/dockerfile:1",
            "docker/dockerfile-upstreamx:master",
            "docker/dockerfile:-bad",
            "docker/dockerfile:2",
            "docker/dockerfile-upstream:2.0-labs",
            "docker/dockerfile:0.9",
            "docker/dockerfile:",
            "docker/dockerfile@sha256",
            "docker.io/library/dockerfile:1",
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
