//! Errors and warnings that point into a Dockerfile.
//!
//! A [`Diagnostic`] is self-contained: it carries the file name, the position, and the text of the
//! offending line, so it renders the same way in the CLI, in a plan pod's termination message and
//! in an `ImageBuild` status, rustc-style:
//!
//! ```text
//! error: unknown instruction `FORM`
//!  --> Dockerfile:3:1
//!   |
//! 3 | FORM alpine
//!   | ^^^^ not a Dockerfile instruction
//!   |
//!   = help: did you mean `FROM`?
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use super::source::{SourceFile, Span, to_u32};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// The file as the user named it.
    pub file: String,
    /// 1-based; 0 when the problem has no position (a bad `--target`, say).
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    /// How many characters the caret underlines (at least 1).
    pub width: u32,
    /// The text of `line`, for the caret display.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_line: String,
    /// Said next to the caret: what was found, or what was expected there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A hint on how to fix it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The BuildKit check (lint rule) a warning comes from, such as `JSONArgsRecommended`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl Diagnostic {
    /// An error at a span of a source file.
    pub fn error(src: &SourceFile, span: Span, message: impl Into<String>) -> Self {
        Self::at(Severity::Error, src, span, message)
    }

    /// A warning at a span of a source file.
    pub fn warning(src: &SourceFile, span: Span, message: impl Into<String>) -> Self {
        Self::at(Severity::Warning, src, span, message)
    }

    fn at(severity: Severity, src: &SourceFile, span: Span, message: impl Into<String>) -> Self {
        let (line, column) = src.line_col(span.start);
        let source_line = src.line_text(line).to_string();
        let start = src.line_start(line);
        let line_end = start + source_line.len();
        let end = span.end.min(line_end).max(span.start);
        let width = if end > span.start && span.start >= start {
            src.text()
                .get(span.start..end)
                .map_or(1, |s| s.chars().count())
        } else {
            1
        };
        Diagnostic {
            severity,
            message: message.into(),
            file: src.name().to_string(),
            line,
            column,
            width: to_u32(width.max(1)),
            source_line,
            label: None,
            help: None,
            rule: None,
        }
    }

    /// An error about the build as a whole (options, not a line of the file).
    pub fn global(file: &str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            message: message.into(),
            file: file.to_string(),
            line: 0,
            column: 0,
            width: 0,
            source_line: String::new(),
            label: None,
            help: None,
            rule: None,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_rule(mut self, rule: &str) -> Self {
        self.rule = Some(rule.to_string());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        match &self.rule {
            Some(rule) => writeln!(f, "{kind}[{rule}]: {}", self.message)?,
            None => writeln!(f, "{kind}: {}", self.message)?,
        }
        if self.line == 0 {
            write!(f, " --> {}", self.file)?;
            if let Some(help) = &self.help {
                write!(f, "\n  = help: {help}")?;
            }
            return Ok(());
        }
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        writeln!(f, "{pad}--> {}:{}:{}", self.file, self.line, self.column)?;
        writeln!(f, "{pad} |")?;
        // Tabs are shown as one space so that the caret lines up.
        let shown: String = self
            .source_line
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        writeln!(f, "{num} | {shown}")?;
        let lead = " ".repeat(self.column.saturating_sub(1) as usize);
        let carets = "^".repeat(self.width.max(1) as usize);
        match &self.label {
            Some(label) => write!(f, "{pad} | {lead}{carets} {label}")?,
            None => write!(f, "{pad} | {lead}{carets}")?,
        }
        if let Some(help) = &self.help {
            write!(f, "\n{pad} |\n{pad} = help: {help}")?;
        }
        Ok(())
    }
}

/// Every problem found in a Dockerfile, errors and warnings, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| d.is_error())
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter().filter(|d| !d.is_error())
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Errors first in file order, then warnings; duplicates removed.
    pub fn sorted(mut self) -> Self {
        self.items.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then(a.line.cmp(&b.line))
                .then(a.column.cmp(&b.column))
        });
        self.items.dedup();
        self
    }
}

impl From<Diagnostic> for Diagnostics {
    fn from(d: Diagnostic) -> Self {
        Diagnostics { items: vec![d] }
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.items.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        let errors = self.errors().count();
        if errors > 1 {
            write!(f, "\n\nerror: {errors} problems found in the Dockerfile")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_line_with_a_caret() {
        let src = SourceFile::new("Dockerfile", "FROM alpine\nFORM x\n");
        let d = Diagnostic::error(&src, Span::new(12, 16), "unknown instruction `FORM`")
            .with_label("not a Dockerfile instruction")
            .with_help("did you mean `FROM`?");
        assert_eq!(
            d.to_string(),
            "error: unknown instruction `FORM`\n --> Dockerfile:2:1\n  |\n2 | FORM x\n  | ^^^^ not a Dockerfile instruction\n  |\n  = help: did you mean `FROM`?"
        );
    }

    #[test]
    fn a_span_over_several_lines_underlines_the_first() {
        let src = SourceFile::new("D", "RUN a \\\n  b\n");
        let d = Diagnostic::error(&src, Span::new(4, 11), "x");
        assert_eq!(d.width, 3);
        assert_eq!(d.line, 1);
    }
}
