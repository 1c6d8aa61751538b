//! BuildKit's word expansion: the small shell-like lexer the Dockerfile frontend runs over the
//! arguments of ADD, COPY, ENV, EXPOSE, FROM, LABEL, STOPSIGNAL, USER, VOLUME, WORKDIR, ARG
//! defaults, `RUN --mount` values and COPY heredocs.
//!
//! The rules, as BuildKit's `shell` package implements them (our own code, same behaviour):
//! - `$name` and `${name}` are replaced by the variable's value, or by nothing when it is unset.
//!   A name is letters, digits and `_`; a name starting with a digit reads digits only; one of
//!   `@*#?-$!0` is a name on its own. A `$` not followed by a name stays a literal `$`.
//! - `${name:-word}` gives `word` when the variable is unset or empty, `${name-word}` only when
//!   unset; `${name:+word}` gives `word` when set and non-empty (else nothing), `${name+word}`
//!   when set; `${name:?msg}`/`${name?msg}` fail the build when empty/unset. `${name#pat}`,
//!   `${name##pat}`, `${name%pat}`, `${name%%pat}` trim a shortest/longest prefix/suffix match,
//!   `${name/pat/repl}` and `${name//pat/repl}` replace the first/every match (`*` and `?`
//!   wildcards). The `word` is itself expanded, recursively.
//! - The escape character (`\`, or `` ` `` with `# escape=`) makes the next character literal,
//!   and is dropped; at the very end it is dropped alone.
//! - Single quotes keep everything literal; double quotes keep everything literal except `$`
//!   expansions and the escape character before `"`, `$` or itself. Quotes are removed.
//! - [`Lexer::words`] also splits the result into words at unquoted whitespace, including
//!   whitespace that came out of a variable (EXPOSE uses this).

use std::collections::BTreeSet;

/// Where variables come from during expansion.
pub trait Env {
    fn get(&self, key: &str) -> Option<&str>;
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn get(&self, _: &str) -> Option<&str> {
        None
    }
}

/// An ordered set of variables where setting a key again moves it to the end, like BuildKit's
/// `EnvList`: the order is the order in which each key was last set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList {
    vars: Vec<(String, String)>,
}

impl EnvList {
    pub fn new() -> Self {
        Self::default()
    }

    /// From `KEY=value` strings; a later duplicate wins.
    pub fn from_kv(entries: &[String]) -> Self {
        let mut env = EnvList::new();
        for e in entries {
            let (k, v) = e.split_once('=').unwrap_or((e, ""));
            env.set(k, v);
        }
        env
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_string(), value.to_string()));
    }

    pub fn contains(&self, key: &str) -> bool {
        self.vars.iter().any(|(k, _)| k == key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.vars.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `KEY=value` strings, in order.
    pub fn to_kv(&self) -> Vec<String> {
        self.vars.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.vars.iter().map(|(k, _)| k.as_str())
    }
}

impl Env for EnvList {
    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An expansion failure, worded as BuildKit words it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ExpandError {
    pub message: String,
    /// The failure is a `${name?}` or `${name:?}` check, so it depends on the variables.
    pub env_dependent: bool,
}

fn err<T>(message: impl Into<String>) -> Result<T, ExpandError> {
    Err(ExpandError {
        message: message.into(),
        env_dependent: false,
    })
}

fn env_err<T>(message: impl Into<String>) -> Result<T, ExpandError> {
    Err(ExpandError {
        message: message.into(),
        env_dependent: true,
    })
}

/// The result of expanding a word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expanded {
    /// The whole word, quotes removed, inner whitespace kept.
    pub value: String,
    /// The word split at unquoted whitespace.
    pub words: Vec<String>,
    /// Variables that were looked up and found.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and not set.
    pub unmatched: BTreeSet<String>,
}

/// How deep `${a:-${b:-...}}` may nest before we give up instead of exhausting the stack.
const MAX_DEPTH: usize = 128;

/// A configured lexer. The defaults are the ones the frontend uses for instruction arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lexer {
    /// The escape character: `\` or the `# escape=` directive's.
    pub escape: char,
    /// Keep quote characters in the output (used for display and heredoc detection).
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters (COPY heredoc contents).
    pub skip_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset: bool,
}

impl Lexer {
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_quotes: false,
            skip_unset: false,
        }
    }

    /// Expand one word (BuildKit's `ProcessWord`).
    pub fn word(&self, word: &str, env: &dyn Env) -> Result<Expanded, ExpandError> {
        let mut sw = ShellWord {
            chars: word.chars().collect(),
            pos: 0,
            lex: *self,
            raw_escapes: self.raw_escapes,
            env,
            out: Expanded::default(),
            depth: 0,
        };
        let (value, words) = sw.process_stop_on(None, self.raw_escapes)?;
        let mut out = sw.out;
        out.value = value;
        out.words = words;
        Ok(out)
    }

    /// Expand and split into words (BuildKit's `ProcessWords`).
    pub fn words(&self, word: &str, env: &dyn Env) -> Result<Vec<String>, ExpandError> {
        self.word(word, env).map(|e| e.words)
    }
}

struct Words {
    buf: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn new() -> Self {
        Words {
            buf: String::new(),
            words: Vec::new(),
            in_word: false,
        }
    }

    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.buf.is_empty() {
                self.words.push(std::mem::take(&mut self.buf));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.buf.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.buf.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.buf.is_empty() {
            self.words.push(std::mem::take(&mut self.buf));
        }
        self.words
    }
}

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    lex: Lexer,
    raw_escapes: bool,
    env: &'a dyn Env,
    out: Expanded,
    depth: usize,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.chars.get(self.pos).copied();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err("substitutions are nested too deeply");
        }
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        r
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::new();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.pos += 1;
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let tmp = self.process_dollar()?;
                result.push_str(&tmp);
                words.add_string(&tmp);
            } else if !self.lex.skip_quotes && ch == '\'' {
                let tmp = self.process_single_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else if !self.lex.skip_quotes && ch == '"' {
                let tmp = self.process_double_quote()?;
                result.push_str(&tmp);
                words.add_raw_string(&tmp);
            } else {
                self.pos += 1;
                let mut ch = ch;
                if ch == self.lex.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    match self.next() {
                        None => break,
                        Some(c) => {
                            ch = c;
                            words.add_raw_char(ch);
                        }
                    }
                } else {
                    words.add_char(ch);
                }
                result.push(ch);
            }
        }
        if let Some(stop) = stop {
            return err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching single-quote",
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return err(
                        "unexpected end of statement while looking for matching double-quote",
                    );
                }
                Some('"') => {
                    self.pos += 1;
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(mut ch) => {
                    self.pos += 1;
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                self.pos += 1;
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn lookup(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(v) => {
                self.out.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.out.unmatched.insert(name.to_string());
                None
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        self.pos += 1;
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.lookup(&name) {
                Some(v) => v,
                None if self.lex.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.pos += 1;
        match self.peek() {
            None => return err("syntax error: missing '}'"),
            Some('{' | '}' | ':') => return err("syntax error: bad substitution"),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(mut ch) = self.next() else {
            return err("syntax error: missing '}'");
        };
        let mut chs = ch.to_string();
        let mut null_is_unset = false;
        match ch {
            '}' => {
                return Ok(match self.lookup(&name) {
                    Some(v) => v,
                    None if self.lex.skip_unset => format!("${{{name}}}"),
                    None => String::new(),
                });
            }
            ':' => {
                null_is_unset = true;
                match self.next() {
                    Some(c) => {
                        ch = c;
                        chs.push(c);
                    }
                    None => return err("syntax error: missing '}'"),
                }
            }
            '/' => return self.process_replace(&name),
            _ => {}
        }
        if !matches!(ch, '+' | '-' | '?' | '#' | '%') {
            return err(format!("unsupported modifier ({chs}) in substitution"));
        }
        let raw = ch == '#' || ch == '%';
        if null_is_unset && raw {
            return err(format!("unsupported modifier ({chs}) in substitution"));
        }
        let word = match self.process_stop_on(Some('}'), raw) {
            Ok((w, _)) => w,
            Err(e) if self.peek().is_none() && !e.message.contains("nested too deeply") => {
                return err("syntax error: missing '}'");
            }
            Err(e) => return Err(e),
        };
        let value = self.lookup(&name);
        if value.is_none() && self.lex.skip_unset {
            return Ok(format!("${{{name}{chs}{word}}}"));
        }
        let empty = value.as_deref().is_none_or(str::is_empty);
        let unset_or_null = value.is_none() || (null_is_unset && empty);
        match ch {
            '-' => Ok(if unset_or_null {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset_or_null { String::new() } else { word }),
            '?' => match value {
                None => env_err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be unset"
                    } else {
                        &word
                    }
                )),
                Some(v) if null_is_unset && v.is_empty() => env_err(format!(
                    "{name}: {}",
                    if word.is_empty() {
                        "is not allowed to be empty"
                    } else {
                        &word
                    }
                )),
                Some(v) => Ok(v),
            },
            _ => {
                let value = value.unwrap_or_default();
                let (pattern, greedy) = match word.strip_prefix(ch) {
                    Some(rest) => (rest.to_string(), true),
                    None => (word, false),
                };
                if ch == '%' {
                    trim_suffix(&pattern, &value, greedy)
                } else {
                    trim_prefix(&pattern, &value, greedy)
                }
            }
        }
    }

    fn process_replace(&mut self, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.pos += 1;
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return err("syntax error: missing '/' in ${}"),
            Err(e) => return Err(e),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((w, _)) => w,
            Err(_) if self.peek().is_none() => return err("syntax error: missing '}'"),
            Err(e) => return Err(e),
        };
        let value = self.lookup(name);
        let Some(value) = value else {
            if self.lex.skip_unset {
                return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
            }
            return Ok(String::new());
        };
        let re = shell_pattern(&pattern, true, false)?;
        Ok(if all {
            re.replace_all(&value, regex::NoExpand(&replacement))
                .into_owned()
        } else {
            re.replace(&value, regex::NoExpand(&replacement))
                .into_owned()
        })
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(c) = self.peek().filter(|&c| is_digit(c)) {
                    self.pos += 1;
                    name.push(c);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.pos += 1;
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !is_digit(ch) && ch != '_' {
                break;
            }
            self.pos += 1;
            name.push(ch);
        }
        name
    }
}

/// Go's `unicode.IsDigit`: any decimal digit, not only ASCII.
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && is_unicode_decimal(c))
}

fn is_unicode_decimal(c: char) -> bool {
    // Decimal digit blocks (Nd) outside ASCII: each starts at a code point ending in 0.
    const ZEROS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
        0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
        0xAA50, 0xABF0, 0xFF10,
    ];
    let n = c as u32;
    ZEROS.iter().any(|&z| n >= z && n < z + 10)
}

/// Turn a shell pattern (`*`, `?`, `\` escapes; no bracket expressions) into a regex.
fn shell_pattern(pattern: &str, greedy: bool, anchored: bool) -> Result<regex::Regex, ExpandError> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut it = pattern.chars().peekable();
    while let Some(tok) = it.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                if matches!(it.peek(), Some('}' | '/')) {
                    continue;
                }
                out.push('\\');
                match it.next() {
                    Some(c @ ('*' | '?' | '\\')) => out.push(c),
                    Some(c) => {
                        return err(format!(
                            "invalid pattern ({pattern}) in substitution: invalid escape '\\{c}'"
                        ));
                    }
                    None => {
                        return err(format!(
                            "invalid pattern ({pattern}) in substitution: trailing backslash"
                        ));
                    }
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            c => {
                let mut buf = [0u8; 4];
                out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
            }
        }
    }
    regex::RegexBuilder::new(&out)
        .size_limit(1 << 20)
        .build()
        .or_else(|e| err(format!("invalid pattern ({pattern}) in substitution: {e}")))
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let re = shell_pattern(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Reverse a pattern without reversing its escapes: `a\*c` becomes `c\*a`.
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens: Vec<String> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            tokens.push([chars[i], chars[i + 1]].iter().collect());
            i += 2;
        } else {
            tokens.push(chars[i].to_string());
            i += 1;
        }
    }
    tokens.reverse();
    tokens.concat()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let rev: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &rev, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> EnvList {
        let mut e = EnvList::new();
        e.set("a", "x");
        e.set("empty", "");
        e.set("path", "/usr/local/bin/tool.tar.gz");
        e.set("spaced", "p q");
        e
    }

    fn w(s: &str) -> String {
        Lexer::new('\\').word(s, &env()).unwrap().value
    }

    fn e(s: &str) -> String {
        Lexer::new('\\').word(s, &env()).unwrap_err().message
    }

    #[test]
    fn simple_references() {
        assert_eq!(w("$a"), "x");
        assert_eq!(w("${a}"), "x");
        assert_eq!(w("pre${a}post"), "prexpost");
        assert_eq!(w("$a$a"), "xx");
        assert_eq!(w("$nope-"), "-");
        assert_eq!(w("$"), "$");
        assert_eq!(w("a$ b"), "a$ b");
        assert_eq!(w("$1x"), "x");
    }

    #[test]
    fn modifiers_follow_posix_sets_and_nulls() {
        assert_eq!(w("${a:-d}"), "x");
        assert_eq!(w("${empty:-d}"), "d");
        assert_eq!(w("${nope:-d}"), "d");
        assert_eq!(w("${empty-d}"), "");
        assert_eq!(w("${nope-d}"), "d");
        assert_eq!(w("${a:+y}"), "y");
        assert_eq!(w("${empty:+y}"), "");
        assert_eq!(w("${empty+y}"), "y");
        assert_eq!(w("${nope+y}"), "");
        assert_eq!(w("${nope:-${a}z}"), "xz");
        assert_eq!(e("${nope:?must be set}"), "nope: must be set");
        assert_eq!(e("${empty:?}"), "empty: is not allowed to be empty");
        assert_eq!(w("${empty?}"), "");
        assert_eq!(e("${nope?}"), "nope: is not allowed to be unset");
    }

    #[test]
    fn patterns_trim_and_replace() {
        assert_eq!(w("${path#*/}"), "usr/local/bin/tool.tar.gz");
        assert_eq!(w("${path##*/}"), "tool.tar.gz");
        assert_eq!(w("${path%.*}"), "/usr/local/bin/tool.tar");
        assert_eq!(w("${path%%.*}"), "/usr/local/bin/tool");
        assert_eq!(w("${path/local/opt}"), "/usr/opt/bin/tool.tar.gz");
        assert_eq!(w("${path//o/0}"), "/usr/l0cal/bin/t00l.tar.gz");
        assert_eq!(e("${a:#x}"), "unsupported modifier (:#) in substitution");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(e("${a"), "syntax error: missing '}'");
        assert_eq!(e("${}"), "syntax error: bad substitution");
        assert_eq!(e("${:a}"), "syntax error: bad substitution");
        assert_eq!(e("${a:-b"), "syntax error: missing '}'");
        assert_eq!(e("${a b}"), "unsupported modifier ( ) in substitution");
        assert_eq!(
            e("'abc"),
            "unexpected end of statement while looking for matching single-quote"
        );
        assert_eq!(
            e("\"abc"),
            "unexpected end of statement while looking for matching double-quote"
        );
    }

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(w("'$a'"), "$a");
        assert_eq!(w("\"$a\""), "x");
        assert_eq!(w("\\$a"), "$a");
        assert_eq!(w("a\\ b"), "a b");
        assert_eq!(w("\"a\\\"b\""), "a\"b");
        assert_eq!(w("\"a\\nb\""), "a\\nb");
        assert_eq!(w("end\\"), "end");
        let bt = Lexer::new('`');
        assert_eq!(bt.word("c:\\path`$a", &env()).unwrap().value, "c:\\path$a");
    }

    #[test]
    fn word_splitting_splits_variables_but_not_quotes() {
        let l = Lexer::new('\\');
        assert_eq!(
            l.words("a $spaced \"c d\"", &env()).unwrap(),
            ["a", "p", "q", "c d"]
        );
        assert_eq!(l.words("80 \"\" 81", &env()).unwrap(), ["80", "81"]);
    }

    #[test]
    fn skip_unset_keeps_references() {
        let mut l = Lexer::new('\\');
        l.skip_unset = true;
        l.raw_quotes = true;
        let out = l.word("echo \"$a\" $nope ${nope:-x} '$a'", &env()).unwrap();
        assert_eq!(out.value, "echo \"x\" $nope ${nope:-x} '$a'");
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let s = "${a:-".repeat(10_000);
        assert!(Lexer::new('\\').word(&s, &env()).is_err());
    }
}
