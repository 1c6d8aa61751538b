//! Heredocs: `RUN <<EOF`, `COPY <<EOF /dst`, several per instruction.
//!
//! BuildKit's rules (`heredocsFromLine`, `ParseHeredoc`):
//! - Only RUN, COPY and ADD in shell (non-JSON) form carry heredocs, also behind ONBUILD.
//! - The instruction line is split into words with a `\`-escaped lexer that keeps quotes and
//!   escapes; every word of the form `[fd]<<[-]NAME` (NAME without `<`) opens a heredoc, and
//!   the bodies follow the line in that order.
//! - NAME is the word with quotes resolved; if any part of it was quoted, the body is not
//!   expanded. `<<-` removes leading tabs from the body lines and the delimiter line.

use super::expand::{Lexer, NoEnv};

/// A heredoc opener found on an instruction line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opener {
    /// The delimiter, quotes resolved.
    pub name: String,
    /// The word as written (for error positions).
    pub word: String,
    pub expand: bool,
    pub chomp: bool,
}

/// BuildKit's `ParseHeredoc`: whether a single word opens a heredoc.
pub fn parse_opener(word: &str) -> Option<Opener> {
    let digits = word.len() - word.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let rest = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut lex = Lexer::new('\\');
    lex.skip_unset = true;
    let words = lex.words(rest, &NoEnv).ok()?;
    if words.len() != 1 {
        return None;
    }
    lex.raw_quotes = true;
    let raw = lex.words(rest, &NoEnv).ok()?;
    if raw.len() != 1 {
        return None;
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Some(Opener {
        expand: quotes(&words[0]) == quotes(&raw[0]),
        name: words.into_iter().next()?,
        word: word.to_string(),
        chomp,
    })
}

/// BuildKit's `heredocsFromLine`: every heredoc opened on an instruction line, in order.
pub fn openers(line: &str) -> Vec<Opener> {
    if !line.contains("<<") {
        return Vec::new();
    }
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset = true;
    let words = lex.words(line, &NoEnv).unwrap_or_default();
    words.iter().filter_map(|w| parse_opener(w)).collect()
}

/// Remove leading tabs from every line (for `<<-`).
pub fn chomp(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// The one-line summary BuildKit shows in progress: the first line, and `...` if there are more.
pub fn summary(content: &str) -> String {
    let doc = content.trim();
    let doc = doc.replace("\r\n", "\n");
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<(String, bool, bool)> {
        openers(line)
            .into_iter()
            .map(|o| (o.name, o.expand, o.chomp))
            .collect()
    }

    #[test]
    fn openers_anywhere_on_the_line() {
        assert_eq!(names("RUN <<EOF"), [("EOF".into(), true, false)]);
        assert_eq!(
            names("RUN python3 <<-'PY' && cat <<\"B\"X"),
            [("PY".into(), false, true), ("BX".into(), false, false)]
        );
        assert_eq!(
            names("RUN <<EOF1 <<EOF2"),
            [("EOF1".into(), true, false), ("EOF2".into(), true, false)]
        );
        assert_eq!(
            names("COPY <<one <<two /dst/"),
            [("one".into(), true, false), ("two".into(), true, false)]
        );
        assert_eq!(names("RUN 3<<X cat"), [("X".into(), true, false)]);
    }

    #[test]
    fn not_openers() {
        assert!(names("RUN echo \"<<EOF\"").is_empty());
        assert!(names("RUN echo a<<EOF").is_empty());
        assert!(names("RUN cat << EOF").is_empty());
        assert!(names("RUN cat <<EOF<x").is_empty());
        assert!(names("RUN echo '<<EOF").is_empty());
    }

    #[test]
    fn chomp_and_summary() {
        assert_eq!(chomp("\t\ta\n\tb\nc"), "a\nb\nc");
        assert_eq!(summary("\n  echo a\necho b\n"), "echo a...");
        assert_eq!(summary("echo a\n"), "echo a");
    }
}
