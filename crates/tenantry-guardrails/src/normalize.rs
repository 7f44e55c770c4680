//! Folding text before word and phrase matching, so that case, accents, look-alike letters and
//! hidden characters do not hide a word: `Bömb`, `BOMB`, `bоmb` (Cyrillic о), `ｂｏｍｂ`
//! (full width), `𝐛𝐨𝐦𝐛` (mathematical bold) and `b\u{200b}omb` all fold to `bomb`.
//!
//! The folded text keeps, for each of its bytes, where its character came from in the
//! original, so a match found in the folded text masks the right span of the original.
//! It owns no policy: which words matter is decided by the callers.

/// Characters that render as nothing (or only reorder text) and are dropped by folding.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{3164}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{E0000}'..='\u{E007F}')
}

fn is_combining(c: char) -> bool {
    matches!(c, '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE20}'..='\u{FE2F}')
}

/// Accented Latin letters and their base letters, pairwise.
const LATIN: &[(&str, char)] = &[
    ("àáâãäåāăąǎǻ", 'a'),
    ("çćĉċč", 'c'),
    ("ďđ", 'd'),
    ("èéêëēĕėęě", 'e'),
    ("ĝğġģ", 'g'),
    ("ĥħ", 'h'),
    ("ìíîïĩīĭįıǐ", 'i'),
    ("ĵ", 'j'),
    ("ķ", 'k'),
    ("ĺļľŀł", 'l'),
    ("ñńņňŉ", 'n'),
    ("òóôõöøōŏőǒ", 'o'),
    ("ŕŗř", 'r'),
    ("śŝşšș", 's'),
    ("ţťŧț", 't'),
    ("ùúûüũūŭůűųǔ", 'u'),
    ("ŵ", 'w'),
    ("ýÿŷ", 'y'),
    ("źżž", 'z'),
];

/// Cyrillic and Greek letters that look like Latin ones (after lower-casing).
const CONFUSABLE: &[(char, char)] = &[
    ('а', 'a'),
    ('в', 'b'),
    ('е', 'e'),
    ('ё', 'e'),
    ('к', 'k'),
    ('м', 'm'),
    ('н', 'h'),
    ('о', 'o'),
    ('р', 'p'),
    ('с', 'c'),
    ('т', 't'),
    ('у', 'y'),
    ('х', 'x'),
    ('ѕ', 's'),
    ('і', 'i'),
    ('ї', 'i'),
    ('ј', 'j'),
    ('ԁ', 'd'),
    ('ԛ', 'q'),
    ('ԝ', 'w'),
    ('һ', 'h'),
    ('ɡ', 'g'),
    ('ɑ', 'a'),
    ('α', 'a'),
    ('β', 'b'),
    ('ε', 'e'),
    ('ζ', 'z'),
    ('η', 'n'),
    ('ι', 'i'),
    ('κ', 'k'),
    ('μ', 'm'),
    ('ν', 'v'),
    ('ο', 'o'),
    ('ρ', 'p'),
    ('τ', 't'),
    ('υ', 'u'),
    ('χ', 'x'),
    ('ω', 'w'),
];

/// What one character folds to: nothing, one character, or two (`ß` → `ss`).
fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        out.push(c.to_ascii_lowercase());
        return;
    }
    if is_invisible(c) || is_combining(c) {
        return;
    }
    let u = c as u32;
    // Full-width ASCII.
    if (0xFF01..=0xFF5E).contains(&u)
        && let Some(a) = char::from_u32(u - 0xFEE0)
    {
        out.push(a.to_ascii_lowercase());
        return;
    }
    // Mathematical alphanumeric letters: styles of A-Z a-z in blocks of 52.
    if (0x1D400..=0x1D6A3).contains(&u) {
        let i = (u - 0x1D400) % 52;
        out.push(char::from(b'a' + (i % 26) as u8));
        return;
    }
    if (0x1D7CE..=0x1D7FF).contains(&u) {
        out.push(char::from(b'0' + ((u - 0x1D7CE) % 10) as u8));
        return;
    }
    // Circled and parenthesised letters.
    if (0x24B6..=0x24E9).contains(&u) {
        out.push(char::from(b'a' + ((u - 0x24B6) % 26) as u8));
        return;
    }
    for lower in c.to_lowercase() {
        match lower {
            'ß' => out.push_str("ss"),
            'æ' => out.push_str("ae"),
            'œ' => out.push_str("oe"),
            'þ' => out.push_str("th"),
            '\u{2018}' | '\u{2019}' | '\u{02BC}' => out.push('\''),
            _ => {
                if let Some((_, base)) = LATIN.iter().find(|(set, _)| set.contains(lower)) {
                    out.push(*base);
                } else if let Some((_, base)) = CONFUSABLE.iter().find(|(k, _)| *k == lower) {
                    out.push(*base);
                } else {
                    out.push(lower);
                }
            }
        }
    }
}

/// Folds a text without keeping the map back (for phrases and identifiers).
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        fold_char(c, &mut out);
    }
    out
}

/// A folded text with, for every byte of it, the span of the original character it came from.
#[derive(Debug, Clone, Default)]
pub struct Folded {
    pub text: String,
    /// `spans[i]` is the original byte range of the character behind folded byte `i`.
    spans: Vec<(u32, u32)>,
}

impl Folded {
    pub fn new(original: &str) -> Self {
        let mut text = String::with_capacity(original.len());
        let mut spans = Vec::with_capacity(original.len());
        for (start, c) in original.char_indices() {
            let before = text.len();
            fold_char(c, &mut text);
            let end = start + c.len_utf8();
            for _ in before..text.len() {
                spans.push((start as u32, end as u32));
            }
        }
        Self { text, spans }
    }

    /// The original byte range behind the folded range `start..end` (non-empty).
    pub fn original(&self, start: usize, end: usize) -> (usize, usize) {
        let s = self.spans.get(start).map(|s| s.0).unwrap_or(0);
        let e = end
            .checked_sub(1)
            .and_then(|i| self.spans.get(i))
            .map(|s| s.1)
            .unwrap_or(s);
        (s as usize, e as usize)
    }

    /// The words of the folded text: runs of letters and digits, as byte ranges.
    pub fn words(&self) -> Vec<(usize, usize)> {
        words(&self.text)
    }
}

/// The words of a (folded) text: runs of alphanumeric characters, as byte ranges.
pub fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            (true, Some(_)) | (false, None) => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_disguises() {
        for disguised in [
            "Bomb",
            "BÖMB",
            "bоmb",
            "ｂｏｍｂ",
            "𝐛𝐨𝐦𝐛",
            "b\u{200b}omb",
            "bo\u{0301}mb",
            "ⓑⓞⓜⓑ",
        ] {
            assert_eq!(fold(disguised), "bomb", "{disguised:?}");
        }
        assert_eq!(fold("Straße"), "strasse");
    }

    #[test]
    fn maps_back_to_the_original() {
        let f = Folded::new("x Bö\u{200b}mb y");
        let at = f.text.find("bomb").expect("found");
        let (s, e) = f.original(at, at + 4);
        assert_eq!(&"x Bö\u{200b}mb y"[s..e], "Bö\u{200b}mb");
    }
}
