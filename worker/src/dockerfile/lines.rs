//! Splitting a Dockerfile into logical lines, as BuildKit's parser reads it.
//!
//! The rules (BuildKit's `parser.Parse`):
//! - The file is read line by line. A UTF-8 byte order mark on the first line is dropped.
//! - Parser directives are recognised at the top (see [`super::directives`]); `# escape=`
//!   changes the escape character from the next line on. After a `#!` first line, only
//!   `# syntax=` and `# check=` are (see `Scanner::directives_after_shebang`).
//! - Leading whitespace of an instruction's first line is ignored; a line whose first
//!   non-whitespace character is `#` is a comment; empty lines are skipped.
//! - A line ending with the escape character (optionally followed by spaces or tabs), unless
//!   that character is itself escaped, continues on the next line: the escape character and the
//!   trailing blanks are removed and the next line is appended as is, its leading whitespace
//!   kept. Comment lines and empty lines inside a continuation are skipped (an empty one draws
//!   the `NoEmptyContinuation` warning).
//! - Heredoc bodies follow the line that opens them: every line up to one equal to the
//!   delimiter (after leading tabs are removed, for `<<-`) belongs to the heredoc, unprocessed.

use super::directives::{Directive, DirectiveParser, Directives};
use super::source::{Span, offset_in};

/// One instruction's text with its continuations joined, and a map back to the source.
#[derive(Debug, Clone)]
pub(crate) struct LogicalLine {
    pub text: String,
    /// `(offset in text, offset in source, length)` of each joined piece.
    segments: Vec<(usize, usize, usize)>,
    /// 1-based line of the last physical line.
    pub last_line: u32,
}

impl LogicalLine {
    /// The source offset of an offset into [`Self::text`].
    pub fn src(&self, at: usize) -> usize {
        let mut best = self.segments.first().map_or(0, |s| s.1);
        for &(joined, src, len) in &self.segments {
            if at >= joined {
                best = src + (at - joined).min(len);
            }
        }
        best
    }

    /// The source span of a range of [`Self::text`].
    pub fn span(&self, start: usize, end: usize) -> Span {
        let s = self.src(start);
        let e = if end > start { self.src(end) } else { s };
        Span::new(s, e.max(s))
    }

    /// The whole instruction line.
    pub fn full_span(&self) -> Span {
        self.span(0, self.text.len())
    }
}

/// A problem found while reading lines.
#[derive(Debug, Clone)]
pub(crate) struct LineIssue {
    pub span: Span,
    pub message: String,
    pub warning_rule: Option<&'static str>,
}

/// Reads logical lines.
pub(crate) struct Scanner<'a> {
    src: &'a str,
    /// Byte ranges of physical lines, newline included.
    lines: Vec<(usize, usize)>,
    next: usize,
    pub escape: char,
    parser: DirectiveParser,
    pub directives: Directives,
    pub issues: Vec<LineIssue>,
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(s: &str) -> bool {
    s.trim_start_matches(char::is_whitespace).starts_with('#')
}

impl<'a> Scanner<'a> {
    pub fn new(src: &'a str) -> Self {
        let mut lines = Vec::new();
        let mut start = 0;
        for (i, b) in src.bytes().enumerate() {
            if b == b'\n' {
                lines.push((start, i + 1));
                start = i + 1;
            }
        }
        if start < src.len() {
            lines.push((start, src.len()));
        }
        let mut scanner = Scanner {
            src,
            lines,
            next: 0,
            escape: '\\',
            parser: DirectiveParser::default(),
            directives: Directives::default(),
            issues: Vec::new(),
        };
        scanner.directives_after_shebang();
        scanner
    }

    /// BuildKit finds `# syntax=` and `# check=` with a scan of its own (`DetectSyntax`,
    /// `ParseDirective`, dockerfile 1.5+) that skips a `#!` first line, so a Dockerfile run as a
    /// script keeps them. `# escape=` comes from the instruction parser, for which the `#!` line
    /// is an ordinary comment that ends the directives: after a shebang, escape is not honoured
    /// (recorded in `tests/reference`, case `directive-after-shebang`). That scan ignores a
    /// repeated directive, and does not skip leading whitespace.
    fn directives_after_shebang(&mut self) {
        if self.lines.is_empty() || !self.raw(0).starts_with("#!") {
            return;
        }
        let mut parser = DirectiveParser::default();
        for i in 1..self.lines.len() {
            let t = trim_newline(self.raw(i));
            match parser.line(t) {
                None => break,
                Some(Err(_)) => continue,
                Some(Ok(d)) => {
                    let s = self.offset(d.value);
                    let directive = Directive {
                        value: d.value.to_string(),
                        span: Span::new(s, s + d.value.len()),
                    };
                    match d.key.as_str() {
                        "syntax" => self.directives.syntax = Some(directive),
                        "check" => self.directives.check = Some(directive),
                        _ => {}
                    }
                }
            }
        }
    }

    fn raw(&self, i: usize) -> &'a str {
        let (s, e) = self.lines[i];
        let mut text = &self.src[s..e];
        if i == 0 {
            text = text.strip_prefix('\u{feff}').unwrap_or(text);
        }
        text
    }

    fn offset(&self, inner: &str) -> usize {
        offset_in(self.src, inner).unwrap_or(0)
    }

    /// BuildKit's `processLine`: trim the newline (and leading whitespace on a first line), and
    /// look for a parser directive.
    fn process_line(&mut self, i: usize, strip_left: bool) -> &'a str {
        let mut t = trim_newline(self.raw(i));
        if strip_left {
            t = t.trim_start_matches(char::is_whitespace);
        }
        if let Some(found) = self.parser.line(t) {
            let span_of = |v: &str, this: &Self| {
                let s = this.offset(v);
                Span::new(s, s + v.len())
            };
            match found {
                Ok(d) => {
                    let span = span_of(d.value, self);
                    let directive = Directive {
                        value: d.value.to_string(),
                        span,
                    };
                    match d.key.as_str() {
                        "escape" => {
                            if d.value == "\\" || d.value == "`" {
                                self.escape = d.value.chars().next().unwrap_or('\\');
                            } else {
                                self.issues.push(LineIssue {
                                    span,
                                    message: format!(
                                        "invalid escape token '{}' does not match ` or \\",
                                        d.value
                                    ),
                                    warning_rule: None,
                                });
                            }
                            self.directives.escape = Some(directive);
                        }
                        "syntax" => self.directives.syntax = Some(directive),
                        _ => self.directives.check = Some(directive),
                    }
                }
                Err(message) => {
                    let s = self.offset(t);
                    self.issues.push(LineIssue {
                        span: Span::new(s, s + t.len()),
                        message,
                        warning_rule: None,
                    });
                }
            }
        }
        if is_comment(t) { &t[..0] } else { t }
    }

    /// BuildKit's `trimContinuationCharacter`: the line without its continuation marker, and
    /// whether the instruction ends here.
    fn trim_continuation(&self, line: &'a str) -> (&'a str, bool) {
        let body = line.trim_end_matches([' ', '\t']);
        let Some(before) = body.strip_suffix(self.escape) else {
            return (line, true);
        };
        match before.chars().last() {
            None => (before, false),
            Some(c) if c != self.escape => (before, false),
            Some(_) => (line, true),
        }
    }

    fn line_no(i: usize) -> u32 {
        super::source::to_u32(i + 1)
    }

    /// The next instruction line, or `None` at the end of the file.
    pub fn next_line(&mut self) -> Option<LogicalLine> {
        while self.next < self.lines.len() {
            let i = self.next;
            self.next += 1;
            let first = self.process_line(i, true);
            let (piece, mut eol) = self.trim_continuation(first);
            if eol && piece.is_empty() {
                continue;
            }
            let mut text = String::new();
            let mut segments = Vec::new();
            segments.push((0, self.offset(piece), piece.len()));
            text.push_str(piece);
            let mut last = i;
            while !eol && self.next < self.lines.len() {
                let j = self.next;
                self.next += 1;
                let raw = self.raw(j);
                let processed = self.process_line(j, false);
                last = j;
                if is_comment(raw) {
                    continue;
                }
                if processed.trim_start_matches(char::is_whitespace).is_empty() {
                    let s = self.offset(raw);
                    self.issues.push(LineIssue {
                        span: Span::new(s, s),
                        message: "empty continuation line".into(),
                        warning_rule: Some("NoEmptyContinuation"),
                    });
                    continue;
                }
                let (piece, end) = self.trim_continuation(processed);
                eol = end;
                segments.push((text.len(), self.offset(piece), piece.len()));
                text.push_str(piece);
            }
            return Some(LogicalLine {
                text,
                segments,
                last_line: Self::line_no(last),
            });
        }
        None
    }

    /// Read a heredoc body after the current instruction: the lines up to the delimiter, and
    /// the 1-based line of the delimiter. `None` if the file ends first.
    pub fn heredoc_body(&mut self, name: &str, chomp: bool) -> Option<(String, u32)> {
        let mut content = String::new();
        while self.next < self.lines.len() {
            let i = self.next;
            self.next += 1;
            let raw = self.raw(i);
            let mut candidate = trim_newline(raw);
            if chomp {
                candidate = candidate.trim_start_matches('\t');
            }
            if candidate == name {
                return Some((content, Self::line_no(i)));
            }
            content.push_str(raw);
        }
        None
    }

    /// The 1-based number of the last line read.
    pub fn current_line(&self) -> u32 {
        super::source::to_u32(self.next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(src: &str) -> Vec<String> {
        let mut s = Scanner::new(src);
        let mut out = Vec::new();
        while let Some(l) = s.next_line() {
            out.push(l.text);
        }
        out
    }

    #[test]
    fn continuations_comments_and_blank_lines() {
        assert_eq!(
            lines("FROM a\n\n  # c\nRUN echo a \\\n    b \\\n# inside\n\n  c\nCMD x"),
            ["FROM a", "RUN echo a     b   c", "CMD x"]
        );
    }

    #[test]
    fn an_escaped_escape_does_not_continue() {
        assert_eq!(lines("RUN a \\\\\nRUN b"), ["RUN a \\\\", "RUN b"]);
        assert_eq!(lines("RUN a \\  \t\nb"), ["RUN a b"]);
    }

    #[test]
    fn the_escape_directive_changes_continuations() {
        let mut s = Scanner::new("# escape=`\nFROM a\nRUN dir c:\\ `\n  /w\n");
        assert_eq!(s.next_line().unwrap().text, "FROM a");
        assert_eq!(s.next_line().unwrap().text, "RUN dir c:\\   /w");
        assert_eq!(s.escape, '`');
        assert_eq!(s.directives.escape.as_ref().unwrap().value, "`");
    }

    #[test]
    fn directives_after_an_instruction_are_comments() {
        let mut s = Scanner::new("FROM a\n# escape=`\nRUN a \\\n b");
        assert_eq!(s.next_line().unwrap().text, "FROM a");
        assert_eq!(s.next_line().unwrap().text, "RUN a  b");
        assert_eq!(s.escape, '\\');
    }

    #[test]
    fn offsets_map_back_to_the_source() {
        let src = "RUN a \\\n  bc";
        let mut s = Scanner::new(src);
        let l = s.next_line().unwrap();
        assert_eq!(l.text, "RUN a   bc");
        let at = l.text.find("bc").unwrap();
        assert_eq!(&src[l.src(at)..l.src(at) + 2], "bc");
    }

    #[test]
    fn heredoc_bodies() {
        let mut s = Scanner::new("RUN <<EOF\n\techo hi\n\tEOF\nEOF\nCMD x\n");
        s.next_line().unwrap();
        assert_eq!(
            s.heredoc_body("EOF", false).unwrap(),
            ("\techo hi\n\tEOF\n".into(), 4)
        );
        assert_eq!(s.next_line().unwrap().text, "CMD x");
        let mut s = Scanner::new("RUN <<-EOF\n\techo hi\n\tEOF\n");
        s.next_line().unwrap();
        assert_eq!(s.heredoc_body("EOF", true).unwrap().0, "\techo hi\n");
        assert!(s.heredoc_body("X", false).is_none());
    }
}
