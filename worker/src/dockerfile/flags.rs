//! Instruction flags such as `--from=build` and `--mount=type=cache,target=/x`.
//!
//! BuildKit's rules (`extractBuilderFlags` and `BFlags`):
//! - Flags are the words at the start of the arguments that begin with `--`; the first word that
//!   does not ends them, and so does a lone `--`.
//! - Inside a flag word, `'` and `"` quote (and are removed) and `\` escapes the next character,
//!   whatever the `# escape=` directive says.
//! - A flag is `--name` or `--name=value`. Names are case-sensitive. A boolean flag takes no
//!   value or `true`/`false` (any case); `--name=` is an error. Other flags need `=value`.
//!   Only `--mount` and `--exclude` may be repeated.

use std::collections::BTreeMap;

/// A flag word as written, quotes and escapes resolved, with its position in the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagWord {
    pub text: String,
    pub start: usize,
    pub end: usize,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spaces,
    Word,
    Quote(char),
}

/// Split the flags off the front of `line`. Returns the flags and the offset where the rest of
/// the line (the instruction's arguments) starts. Offsets are relative to `line`.
pub(crate) fn extract(line: &str) -> (Vec<FlagWord>, usize) {
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut start = 0;
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let Some(&(pos, ch)) = chars.get(i) else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                words.push(FlagWord {
                    text: word,
                    start,
                    end: line.len(),
                });
            }
            return (words, line.len());
        };
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                let next = chars.get(i + 1).map(|c| c.1);
                if ch != '-' || next != Some('-') {
                    return (words, pos);
                }
                phase = Phase::Word;
                start = pos;
                continue;
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (words, pos);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(FlagWord {
                            text: std::mem::take(&mut word),
                            start,
                            end: pos,
                        });
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else if ch == '\\' {
                    if let Some(&(_, next)) = chars.get(i + 1) {
                        word.push(next);
                        i += 1;
                    }
                } else {
                    word.push(ch);
                }
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                } else if ch == '\\' {
                    match chars.get(i + 1) {
                        Some(&(_, next)) => {
                            word.push(next);
                            i += 1;
                        }
                        None => phase = Phase::Word,
                    }
                } else {
                    word.push(ch);
                }
            }
        }
        i += 1;
    }
}

/// What kind of value a flag takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Bool,
    Str,
    Strs,
}

/// A flag's value, with the position of the whole `--flag=value` word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Value {
    pub value: String,
    pub start: usize,
    pub end: usize,
}

/// The flags of one instruction, checked against what it accepts.
#[derive(Debug, Default)]
pub(crate) struct Flags {
    values: BTreeMap<&'static str, Vec<Value>>,
}

impl Flags {
    /// A string flag's value.
    pub fn str(&self, name: &str) -> Option<&Value> {
        self.values.get(name).and_then(|v| v.last())
    }

    /// A boolean flag: absent is false.
    pub fn bool(&self, name: &str) -> bool {
        self.str(name).is_some_and(|v| v.value == "true")
    }

    /// Every value of a repeatable flag.
    pub fn all(&self, name: &str) -> &[Value] {
        self.values.get(name).map_or(&[], Vec::as_slice)
    }
}

/// A bad flag: the message, and which word it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FlagError {
    pub message: String,
    pub help: Option<String>,
    pub start: usize,
    pub end: usize,
}

/// Check flag words against the flags an instruction accepts. Every bad flag is reported.
pub(crate) fn parse(
    words: &[FlagWord],
    accepted: &[(&'static str, Kind)],
) -> (Flags, Vec<FlagError>) {
    let mut flags = Flags::default();
    let mut errors = Vec::new();
    for w in words {
        if w.text == "--" {
            break;
        }
        let error = |message: String, help: Option<String>| FlagError {
            message,
            help,
            start: w.start,
            end: w.end,
        };
        let Some(body) = w.text.strip_prefix("--") else {
            errors.push(error(
                format!("arg should start with -- : {}", w.text),
                None,
            ));
            continue;
        };
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (body, None),
        };
        let Some(&(key, kind)) = accepted.iter().find(|(n, _)| *n == name) else {
            let known: Vec<&str> = accepted.iter().map(|(n, _)| *n).collect();
            let help = match super::suggest::closest(name, &known) {
                Some(s) => Some(format!("did you mean `--{s}`?")),
                None if known.is_empty() => Some("this instruction takes no flags".into()),
                None => Some(format!(
                    "accepted flags: {}",
                    known
                        .iter()
                        .map(|k| format!("--{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            };
            errors.push(error(format!("unknown flag: {name}"), help));
            continue;
        };
        if kind != Kind::Strs && flags.values.contains_key(key) {
            errors.push(error(format!("duplicate flag specified: {name}"), None));
            continue;
        }
        let value = match kind {
            Kind::Bool => match value {
                Some("") => {
                    errors.push(error(format!("missing a value on flag: {name}"), None));
                    continue;
                }
                None => "true".to_string(),
                Some(v) if v.eq_ignore_ascii_case("true") => "true".to_string(),
                Some(v) if v.eq_ignore_ascii_case("false") => "false".to_string(),
                Some(v) => {
                    errors.push(error(
                        format!("expecting boolean value for flag {name}, not: {v}"),
                        None,
                    ));
                    continue;
                }
            },
            Kind::Str | Kind::Strs => match value {
                Some(v) => v.to_string(),
                None => {
                    errors.push(error(
                        format!("missing a value on flag: {name}"),
                        Some(format!("write `--{name}=VALUE`")),
                    ));
                    continue;
                }
            },
        };
        flags.values.entry(key).or_default().push(Value {
            value,
            start: w.start,
            end: w.end,
        });
    }
    (flags, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> (Vec<String>, String) {
        let (w, rest) = extract(line);
        (
            w.into_iter().map(|w| w.text).collect(),
            line[rest..].to_string(),
        )
    }

    #[test]
    fn flags_stop_at_the_first_other_word() {
        assert_eq!(
            texts("--from=a --chown=1:1 src dst"),
            (
                vec!["--from=a".into(), "--chown=1:1".into()],
                "src dst".into()
            )
        );
        assert_eq!(texts("src --from=a"), (vec![], "src --from=a".into()));
        assert_eq!(texts("-x y"), (vec![], "-x y".into()));
        assert_eq!(texts("--link"), (vec!["--link".into()], "".into()));
    }

    #[test]
    fn quotes_and_backslashes_inside_flags() {
        assert_eq!(
            texts("--mount=\"type=secret,target=/a b\" cmd").0,
            ["--mount=type=secret,target=/a b"]
        );
        assert_eq!(texts("--a=x\\ y z").0, ["--a=x y"]);
        assert_eq!(texts("--a='' z").0, ["--a="]);
    }

    #[test]
    fn a_double_dash_ends_flags() {
        assert_eq!(
            texts("--a=1 -- --b=2 c"),
            (vec!["--a=1".into()], " --b=2 c".into())
        );
    }

    #[test]
    fn checking_values() {
        let spec = [
            ("link", Kind::Bool),
            ("from", Kind::Str),
            ("exclude", Kind::Strs),
        ];
        let (w, _) = extract("--link=FALSE --from=x --exclude=a --exclude=b s d");
        let (f, e) = parse(&w, &spec);
        assert!(e.is_empty());
        assert!(!f.bool("link"));
        assert_eq!(f.str("from").unwrap().value, "x");
        assert_eq!(f.all("exclude").len(), 2);
        let (w, _) = extract("--link= --from --frm=a --from=a --from=b --link=maybe s d");
        let (_, e) = parse(&w, &spec);
        let msgs: Vec<&str> = e.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "missing a value on flag: link",
                "missing a value on flag: from",
                "unknown flag: frm",
                "duplicate flag specified: from",
                "expecting boolean value for flag link, not: maybe",
            ]
        );
        assert_eq!(e[2].help.as_deref(), Some("did you mean `--from`?"));
    }
}
