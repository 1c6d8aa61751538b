//! The argument forms of instructions, before expansion: JSON arrays, whitespace-separated
//! words, quoted words, and `key=value` pairs.
//!
//! BuildKit decides the form per instruction (its parser's dispatch table):
//! - RUN, CMD, ENTRYPOINT, SHELL: JSON array if the arguments parse as one, else one shell
//!   string. A JSON array with a non-string element is an error, not a shell command.
//! - ADD, COPY, VOLUME: JSON array, else whitespace-separated words.
//! - FROM, EXPOSE: whitespace-separated words.
//! - ENV, LABEL: `key=value` words (quotes kept for expansion), or the legacy `key value`.
//! - ARG: words, each `name` or `name=value`.
//! - MAINTAINER, USER, WORKDIR, STOPSIGNAL: the whole rest of the line as one argument.
//!
//! JSON follows Go's `encoding/json` decoder: only the first value is read, so text after the
//! closing `]` is ignored.

/// A word with its byte range in the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

/// Split at runs of `[ \t\v\f\r]` (BuildKit's `reWhitespace`).
pub(crate) fn split_ws(s: &str, base: usize) -> Vec<Word> {
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r');
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        match (is_ws(c), start) {
            (true, Some(st)) => {
                out.push(Word {
                    text: s[st..i].to_string(),
                    start: base + st,
                    end: base + i,
                });
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(st) = start {
        out.push(Word {
            text: s[st..].to_string(),
            start: base + st,
            end: base + s.len(),
        });
    }
    out
}

/// Split into at most two parts at the first run of `[ \t\v\f\r]`.
pub(crate) fn split_ws2(s: &str) -> Option<(&str, &str)> {
    let is_ws = |c: char| matches!(c, ' ' | '\t' | '\x0b' | '\x0c' | '\r');
    let i = s.find(is_ws)?;
    let rest = s[i..].trim_start_matches(is_ws);
    Some((&s[..i], rest))
}

/// BuildKit's `parseWords`: split at unquoted whitespace, keeping quotes and escapes in the
/// words (they are resolved later, by expansion). An escape character at the very end is
/// dropped.
pub(crate) fn parse_words(s: &str, escape: char, base: usize) -> Vec<Word> {
    let chars: Vec<(usize, char)> = s.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut start = 0;
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let (pos, ch) = chars[i];
        let at_end = i + 1 == chars.len();
        if !in_word {
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            in_word = true;
            start = pos;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(Word {
                            text: std::mem::take(&mut word),
                            start: base + start,
                            end: base + pos,
                        });
                    }
                    word.clear();
                    blank_ok = false;
                    in_word = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    if at_end {
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    word.push(chars[i].1);
                    i += 1;
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    if at_end {
                        quote = None;
                        i += 1;
                        continue;
                    }
                    word.push(ch);
                    i += 1;
                    word.push(chars[i].1);
                    i += 1;
                    continue;
                }
                word.push(ch);
            }
        }
        i += 1;
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(Word {
            text: word,
            start: base + start,
            end: base + s.len(),
        });
    }
    words
}

/// What a would-be JSON array turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Json {
    Array(Vec<String>),
    /// A JSON array with something other than strings in it: an error in BuildKit.
    NotStrings,
    /// Not a JSON array: the shell (or word) form applies.
    Not,
}

/// BuildKit's `parseJSON`.
pub(crate) fn parse_json(s: &str) -> Json {
    let s = s.trim_start_matches(char::is_whitespace);
    if !s.starts_with('[') {
        return Json::Not;
    }
    let mut stream = serde_json::Deserializer::from_str(s).into_iter::<serde_json::Value>();
    match stream.next() {
        Some(Ok(serde_json::Value::Array(items))) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                match item {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Array(out)
        }
        _ => Json::Not,
    }
}

/// The message BuildKit gives for [`Json::NotStrings`].
pub(crate) const NOT_STRINGS: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";

/// One `key=value` of ENV or LABEL, unexpanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: String,
    /// Written in the legacy `KEY value` form.
    pub legacy: bool,
}

/// BuildKit's `parseNameVal`: the `key=value ...` form, or the legacy `key value with spaces`
/// when the first word has no `=`.
pub(crate) fn name_values(
    s: &str,
    instruction: &str,
    escape: char,
) -> Result<Vec<KeyValue>, String> {
    let words = parse_words(s, escape, 0);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.text.contains('=') {
        let Some((key, value)) = split_ws2(s) else {
            return Err(format!("{instruction} must have two arguments"));
        };
        return Ok(vec![KeyValue {
            key: key.to_string(),
            value: value.to_string(),
            legacy: true,
        }]);
    }
    let mut out = Vec::new();
    for w in words {
        let Some((k, v)) = w.text.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {:?}. Must be of the form: name=value",
                w.text
            ));
        };
        out.push(KeyValue {
            key: k.to_string(),
            value: v.to_string(),
            legacy: false,
        });
    }
    Ok(out)
}

/// Go's `strings.TrimSpace` bounds: the offsets of `s` without leading and trailing whitespace.
pub(crate) fn trim_bounds(s: &str) -> (usize, usize) {
    let start = s.len() - s.trim_start_matches(char::is_whitespace).len();
    let end = s.trim_end_matches(char::is_whitespace).len().max(start);
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        parse_words(s, '\\', 0)
            .into_iter()
            .map(|w| w.text)
            .collect()
    }

    #[test]
    fn parse_words_keeps_quotes_and_escapes() {
        assert_eq!(
            words("a=1 b=\"x y\" c='p q'"),
            ["a=1", "b=\"x y\"", "c='p q'"]
        );
        assert_eq!(words("a=x\\ y b"), ["a=x\\ y", "b"]);
        assert_eq!(words("a=\"\" "), ["a=\"\""]);
        assert_eq!(words("a\\"), ["a"]);
        assert_eq!(words("  "), Vec::<String>::new());
    }

    #[test]
    fn json_is_only_the_first_value() {
        assert_eq!(
            parse_json(r#"["a", "b"]"#),
            Json::Array(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            parse_json(r#"["a"] trailing"#),
            Json::Array(vec!["a".into()])
        );
        assert_eq!(parse_json("[]"), Json::Array(vec![]));
        assert_eq!(parse_json("[1]"), Json::NotStrings);
        assert_eq!(parse_json("[ -e x ]"), Json::Not);
        assert_eq!(parse_json("['a']"), Json::Not);
        assert_eq!(parse_json("echo [a]"), Json::Not);
        assert_eq!(
            parse_json(r#"["a\u0041\\b"]"#),
            Json::Array(vec!["aA\\b".into()])
        );
    }

    #[test]
    fn name_values_both_forms() {
        let kv = name_values("A=1 B=\"two words\"", "ENV", '\\').unwrap();
        assert_eq!(kv[1].value, "\"two words\"");
        let kv = name_values("A  several  words ", "ENV", '\\').unwrap();
        assert_eq!(
            (kv[0].key.as_str(), kv[0].value.as_str(), kv[0].legacy),
            ("A", "several  words ", true)
        );
        assert_eq!(
            name_values("A", "ENV", '\\').unwrap_err(),
            "ENV must have two arguments"
        );
        assert!(
            name_values("A=1 B", "LABEL", '\\')
                .unwrap_err()
                .contains("can't find = in \"B\"")
        );
    }

    #[test]
    fn whitespace_split() {
        let w = split_ws("a  b\tc", 10);
        assert_eq!(
            w.iter().map(|w| w.text.as_str()).collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
        assert_eq!((w[1].start, w[1].end), (13, 14));
    }
}
