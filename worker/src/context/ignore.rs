//! `.dockerignore`, with the semantics of moby's `patternmatcher`, which BuildKit uses to decide
//! what of the context to send:
//!
//! - one pattern per line; `#` starts a comment line; blank lines are skipped;
//! - a pattern is cleaned like Go's `filepath.Clean`, and a leading `/` is dropped, so `/a` and
//!   `a` are the same;
//! - `*` matches any run of characters but `/`, `?` one character but `/`, `[...]` a class,
//!   `\` escapes, and `**` any number of directories (`**/x`, `a/**`, `a/**/b`);
//! - a pattern that matches a directory excludes everything below it;
//! - `!pattern` re-includes what an earlier pattern excluded; the last matching line wins.

use regex::Regex;

/// One parsed pattern.
#[derive(Debug, Clone)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
    /// The cleaned pattern text, for `could_match_inside`.
    text: String,
}

/// A compiled `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// A pattern that does not compile.
#[derive(Debug, thiserror::Error)]
#[error(".dockerignore line {line}: invalid pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub line: usize,
    pub pattern: String,
    pub reason: String,
}

impl Ignore {
    /// Parse the text of a `.dockerignore`.
    pub fn parse(text: &str) -> Result<Ignore, PatternError> {
        let mut patterns = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exclusion, body) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            let cleaned = clean(body);
            if cleaned.is_empty() {
                continue;
            }
            let regex = Regex::new(&to_regex(&cleaned)).map_err(|e| PatternError {
                line: i + 1,
                pattern: raw.to_string(),
                reason: e.to_string(),
            })?;
            patterns.push(Pattern {
                regex,
                exclusion,
                text: cleaned,
            });
        }
        Ok(Ignore { patterns })
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether a `!pattern` brings back something an earlier pattern excluded (so that an
    /// excluded directory may still hold paths that exist).
    pub fn has_reincludes(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether a path (relative to the context root, `/`-separated) is excluded.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for p in &self.patterns {
            if p.exclusion == excluded {
                // Only a pattern that would flip the answer needs checking.
                if matches_or_parent(&p.regex, path) {
                    excluded = !p.exclusion;
                }
            }
        }
        excluded
    }

    /// Whether an excluded directory may still hold re-included files, so that a walk must
    /// descend into it.
    pub fn could_reinclude_inside(&self, dir: &str) -> bool {
        self.patterns.iter().any(|p| {
            p.exclusion
                && (p.text.starts_with(&format!("{dir}/"))
                    || p.text.contains("**")
                    || first_component_has_meta(&p.text))
        })
    }
}

fn first_component_has_meta(text: &str) -> bool {
    text.split('/')
        .next()
        .is_some_and(|c| c.contains(['*', '?', '[', '\\']))
}

fn matches_or_parent(regex: &Regex, path: &str) -> bool {
    if regex.is_match(path) {
        return true;
    }
    let mut p = path;
    while let Some(i) = p.rfind('/') {
        p = &p[..i];
        if regex.is_match(p) {
            return true;
        }
    }
    false
}

/// Go's `filepath.Clean` on a `/`-separated path, without a leading `/`.
pub fn clean(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out.join("/")
}

fn to_regex(pattern: &str) -> String {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    // `**/` matches zero or more leading directories.
                    i += 1;
                    re.push_str("(.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => {
                i += 1;
                if let Some(&next) = chars.get(i) {
                    re.push_str(&regex::escape(&next.to_string()));
                }
            }
            '[' => {
                // A character class, copied with `!` negation translated.
                let mut j = i + 1;
                let mut class = String::from("[");
                if chars.get(j) == Some(&'!') || chars.get(j) == Some(&'^') {
                    class.push('^');
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    if chars[j] == '\\' && j + 1 < chars.len() {
                        class.push_str(&regex::escape(&chars[j + 1].to_string()));
                        j += 2;
                        continue;
                    }
                    if chars[j] == '[' {
                        class.push_str("\\[");
                    } else {
                        class.push(chars[j]);
                    }
                    j += 1;
                }
                if j >= chars.len() {
                    re.push_str("\\[");
                } else {
                    class.push(']');
                    re.push_str(&class);
                    i = j;
                }
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn plain_patterns_and_directories() {
        let i = ig("# comment\n\nnode_modules\n/build\n*.log\n");
        assert!(i.excludes("node_modules"));
        assert!(
            i.excludes("node_modules/x/y.js"),
            "a directory excludes its content"
        );
        assert!(i.excludes("build/out"));
        assert!(i.excludes("app.log"));
        assert!(!i.excludes("sub/app.log"), "* does not cross directories");
        assert!(!i.excludes("src/main.rs"));
    }

    #[test]
    fn double_star_spans_directories() {
        let i = ig("**/*.tmp\ndocs/**/draft*\nvendor/**\n");
        assert!(i.excludes("a.tmp"));
        assert!(i.excludes("x/y/z.tmp"));
        assert!(i.excludes("docs/draft1"));
        assert!(i.excludes("docs/a/b/draft2"));
        assert!(!i.excludes("docs/final"));
        assert!(i.excludes("vendor/a/b"));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let i = ig("*.md\n!README.md\nREADME*.md\n!README-keep.md\n");
        assert!(i.excludes("CHANGES.md"));
        assert!(
            i.excludes("README.md"),
            "re-excluded by the later README*.md"
        );
        assert!(!i.excludes("README-keep.md"));
        let i = ig("logs\n!logs/keep.txt\n");
        assert!(i.excludes("logs/a.txt"));
        assert!(!i.excludes("logs/keep.txt"));
        assert!(i.could_reinclude_inside("logs"));
        assert!(!ig("logs\n").could_reinclude_inside("logs"));
    }

    #[test]
    fn cleaning_escapes_and_classes() {
        let i = ig("./a/../b\nfile\\*name\n[abc].txt\n[!x]y\n");
        assert!(i.excludes("b"));
        assert!(i.excludes("file*name"));
        assert!(!i.excludes("fileXname"));
        assert!(i.excludes("a.txt") && !i.excludes("d.txt"));
        assert!(i.excludes("zy") && !i.excludes("xy"));
        assert_eq!(clean("/a/./b/../c/"), "a/c");
    }

    #[test]
    fn dockerfile_and_dockerignore_can_be_excluded_like_any_file() {
        let i = ig("Dockerfile\n.dockerignore\n");
        assert!(i.excludes("Dockerfile") && i.excludes(".dockerignore"));
    }
}
