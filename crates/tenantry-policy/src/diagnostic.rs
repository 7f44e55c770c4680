//! What is wrong with an uploaded policy set, and where: Cedar's diagnostics (parse errors,
//! validation errors and warnings) turned into messages with a 1-based line and column of the
//! uploaded text, so the operator can find the spot.
//!
//! Cedar reports source spans as byte offsets into the text; columns here count characters,
//! as editors do.

use serde::Serialize;

/// One problem (or warning) in a policy set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyDiagnostic {
    /// What is wrong, in Cedar's words.
    pub message: String,
    /// 1-based line of the text the problem is at, when Cedar gave a position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column (in characters) on that line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// How to fix it, when Cedar says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl std::fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(line), Some(column)) => write!(f, "{line}:{column}: {}", self.message)?,
            (Some(line), None) => write!(f, "{line}: {}", self.message)?,
            (None, Some(_) | None) => f.write_str(&self.message)?,
        }
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        Ok(())
    }
}

impl PolicyDiagnostic {
    /// A diagnostic at byte `offset` of `text` (or without a position).
    pub(crate) fn at(message: impl Into<String>, text: &str, offset: Option<usize>) -> Self {
        let (line, column) = match offset.map(|o| line_col(text, o)) {
            Some((l, c)) => (Some(l), Some(c)),
            None => (None, None),
        };
        Self {
            message: message.into(),
            line,
            column,
            help: None,
        }
    }

    /// From any Cedar diagnostic: its message, the first labelled span's position, its help.
    pub(crate) fn from_miette(d: &dyn miette::Diagnostic, text: &str) -> Self {
        let offset = d
            .labels()
            .and_then(|mut labels| labels.next())
            .map(|l| l.offset());
        let mut out = Self::at(d.to_string(), text, offset);
        out.help = d.help().map(|h| h.to_string());
        out
    }
}

/// 1-based line and character column of byte `offset` in `text` (clamped to the text, and to
/// a character boundary).
pub(crate) fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(column).unwrap_or(u32::MAX),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "ab\ncdé\nf";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 2), (1, 3));
        assert_eq!(line_col(text, 3), (2, 1));
        // After the two-byte 'é', the column counts characters.
        assert_eq!(line_col(text, 7), (2, 4));
        // Inside 'é' it falls back to its start; past the end it clamps.
        assert_eq!(line_col(text, 6), (2, 3));
        assert_eq!(line_col(text, 99), (3, 2));
    }

    #[test]
    fn display_puts_the_position_first() {
        let d = PolicyDiagnostic::at("unexpected token", "a\nbc", Some(3));
        assert_eq!(d.to_string(), "2:2: unexpected token");
        let d = PolicyDiagnostic::at("no position", "", None);
        assert_eq!(d.to_string(), "no position");
    }
}
