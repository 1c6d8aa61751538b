//! The Dockerfile text and positions in it.
//!
//! Every diagnostic points at a byte range of the original file. This module turns byte offsets
//! into 1-based lines and columns (columns count characters, as editors and rustc do) and hands
//! out the text of a line for the caret display.

use std::sync::Arc;

/// A byte range in the original Dockerfile text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Self {
        Span {
            start,
            end: end.max(start),
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span::new(self.start.min(other.start), self.end.max(other.end))
    }
}

/// A Dockerfile as the user named it, with an index of line starts.
#[derive(Debug)]
pub struct SourceFile {
    name: String,
    text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Arc<Self> {
        let text = text.into();
        let mut line_starts = vec![0];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        Arc::new(SourceFile {
            name: name.into(),
            text,
            line_starts,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The 0-based index of the line containing `offset`.
    fn line_index(&self, offset: usize) -> usize {
        match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        }
    }

    /// 1-based line and column (in characters) of a byte offset. Offsets past the end, or in
    /// the middle of a character, are clamped.
    pub fn line_col(&self, offset: usize) -> (u32, u32) {
        let offset = self.floor_char_boundary(offset.min(self.text.len()));
        let li = self.line_index(offset);
        let start = self.line_starts[li];
        let col = self.text[start..offset].chars().count() + 1;
        (to_u32(li + 1), to_u32(col))
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> u32 {
        self.line_col(offset).0
    }

    /// The text of a 1-based line, without its line terminator.
    pub fn line_text(&self, line: u32) -> &str {
        let li = (line as usize).saturating_sub(1);
        let Some(&start) = self.line_starts.get(li) else {
            return "";
        };
        let end = self
            .line_starts
            .get(li + 1)
            .copied()
            .unwrap_or(self.text.len());
        self.text[start..end].trim_end_matches(['\n', '\r'])
    }

    /// The byte offset where a 1-based line starts.
    pub fn line_start(&self, line: u32) -> usize {
        let li = (line as usize).saturating_sub(1);
        self.line_starts.get(li).copied().unwrap_or(self.text.len())
    }

    /// The number of lines (a final line without a newline counts).
    pub fn line_count(&self) -> u32 {
        let n = self.line_starts.len();
        if self.text.ends_with('\n') || self.text.is_empty() {
            to_u32(n.saturating_sub(1).max(1))
        } else {
            to_u32(n)
        }
    }

    fn floor_char_boundary(&self, mut offset: usize) -> usize {
        while offset > 0 && !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        offset
    }

    /// The byte offset of `inner` in the text, when `inner` is a slice of it.
    pub fn offset_of(&self, inner: &str) -> Option<usize> {
        offset_in(&self.text, inner)
    }
}

/// The byte offset of `inner` inside `outer`, when `inner` is a sub-slice of `outer`.
pub fn offset_in(outer: &str, inner: &str) -> Option<usize> {
    let o = outer.as_ptr() as usize;
    let i = inner.as_ptr() as usize;
    (i >= o && i + inner.len() <= o + outer.len()).then(|| i - o)
}

pub(crate) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_columns_count_characters() {
        let f = SourceFile::new("Dockerfile", "FROM a\nRUN é x\r\nCMD y");
        assert_eq!(f.line_col(0), (1, 1));
        assert_eq!(f.line_col(7), (2, 1));
        // `x` comes after a two-byte character.
        assert_eq!(f.line_col(14), (2, 7));
        assert_eq!(f.line_text(2), "RUN é x");
        assert_eq!(f.line_text(3), "CMD y");
        assert_eq!(f.line_text(9), "");
        assert_eq!(f.line_count(), 3);
        assert_eq!(f.line_col(1000), (3, 6));
    }
}
