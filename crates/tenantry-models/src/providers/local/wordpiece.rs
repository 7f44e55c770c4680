//! The BERT tokenizer, read from a `tokenizer.json` of the WordPiece kind: normalisation
//! (control characters dropped, whitespace unified, CJK ideographs spaced, lowercasing and
//! accent stripping when the normaliser asks for it), splitting at whitespace and punctuation,
//! then greedy longest-match WordPiece with the `##` continuation prefix, framed by `[CLS]` and
//! `[SEP]` and cut to the model's length.

use std::collections::HashMap;

use serde::Deserialize;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

#[derive(Debug, Deserialize)]
struct File {
    normalizer: Option<Normalizer>,
    model: Model,
}

#[derive(Debug, Deserialize)]
struct Normalizer {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    lowercase: Option<bool>,
    #[serde(default)]
    strip_accents: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct Model {
    #[serde(rename = "type")]
    kind: String,
    vocab: HashMap<String, u32>,
    unk_token: String,
    #[serde(default = "default_prefix")]
    continuing_subword_prefix: String,
    #[serde(default = "default_max_chars")]
    max_input_chars_per_word: usize,
}

fn default_prefix() -> String {
    "##".into()
}

fn default_max_chars() -> usize {
    100
}

#[derive(Debug)]
pub(crate) struct WordPiece {
    vocab: HashMap<String, u32>,
    unk: u32,
    cls: u32,
    sep: u32,
    prefix: String,
    max_chars: usize,
    lowercase: bool,
    strip_accents: bool,
}

impl WordPiece {
    pub(crate) fn from_json(text: &str) -> Result<Self, String> {
        let f: File = serde_json::from_str(text).map_err(|e| format!("tokenizer.json: {e}"))?;
        if f.model.kind != "WordPiece" {
            return Err(format!(
                "tokenizer.json: model type {:?} is not WordPiece",
                f.model.kind
            ));
        }
        let (lowercase, strip_accents) = match &f.normalizer {
            Some(n) if n.kind == "BertNormalizer" => {
                let lower = n.lowercase.unwrap_or(true);
                (lower, n.strip_accents.unwrap_or(lower))
            }
            Some(n) => {
                return Err(format!(
                    "tokenizer.json: normalizer {:?} is not supported",
                    n.kind
                ));
            }
            None => (false, false),
        };
        let id = |t: &str| {
            f.model
                .vocab
                .get(t)
                .copied()
                .ok_or_else(|| format!("tokenizer.json: the vocabulary has no {t}"))
        };
        Ok(Self {
            unk: id(&f.model.unk_token)?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            prefix: f.model.continuing_subword_prefix,
            max_chars: f.model.max_input_chars_per_word,
            vocab: f.model.vocab,
            lowercase,
            strip_accents,
        })
    }

    /// Token ids of `text` with `[CLS]` and `[SEP]`, at most `max_len` in all.
    pub(crate) fn encode(&self, text: &str, max_len: usize) -> Vec<u32> {
        let mut ids = vec![self.cls];
        let budget = max_len.max(2) - 1;
        'words: for word in self.pre_tokenize(&self.normalize(text)) {
            for id in self.word_pieces(&word) {
                if ids.len() == budget {
                    break 'words;
                }
                ids.push(id);
            }
        }
        ids.push(self.sep);
        ids
    }

    fn normalize(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\0' || c == '\u{fffd}' || (c.is_control() && !c.is_whitespace()) {
                continue;
            }
            if c.is_whitespace() {
                out.push(' ');
            } else if is_cjk(c) {
                out.push(' ');
                out.push(c);
                out.push(' ');
            } else {
                out.push(c);
            }
        }
        if self.strip_accents {
            out = out.nfd().filter(|c| !is_combining_mark(*c)).collect();
        }
        if self.lowercase {
            out = out.to_lowercase();
        }
        out
    }

    fn pre_tokenize(&self, text: &str) -> Vec<String> {
        let mut words = Vec::new();
        for chunk in text.split_whitespace() {
            let mut cur = String::new();
            for c in chunk.chars() {
                if is_punctuation(c) {
                    if !cur.is_empty() {
                        words.push(std::mem::take(&mut cur));
                    }
                    words.push(c.to_string());
                } else {
                    cur.push(c);
                }
            }
            if !cur.is_empty() {
                words.push(cur);
            }
        }
        words
    }

    fn word_pieces(&self, word: &str) -> Vec<u32> {
        let chars: Vec<char> = word.chars().collect();
        if chars.len() > self.max_chars {
            return vec![self.unk];
        }
        let mut out = Vec::new();
        let mut start = 0;
        while start < chars.len() {
            let mut end = chars.len();
            let mut found = None;
            while start < end {
                let mut piece: String = chars[start..end].iter().collect();
                if start > 0 {
                    piece.insert_str(0, &self.prefix);
                }
                if let Some(id) = self.vocab.get(&piece) {
                    found = Some(*id);
                    break;
                }
                end -= 1;
            }
            match found {
                Some(id) => out.push(id),
                // A word with a part no piece covers is unknown as a whole.
                None => return vec![self.unk],
            }
            start = end;
        }
        out
    }
}

fn is_cjk(c: char) -> bool {
    matches!(u32::from(c),
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// BERT's punctuation: every ASCII non-alphanumeric printable character, and the Unicode
/// punctuation blocks.
fn is_punctuation(c: char) -> bool {
    c.is_ascii_punctuation()
        || matches!(u32::from(c),
            0x00A1..=0x00BF | 0x2010..=0x2027 | 0x2030..=0x205E | 0x3001..=0x3003
            | 0x3008..=0x3011 | 0x3014..=0x301F | 0xFF01..=0xFF0F | 0xFF1A..=0xFF20)
            && !c.is_alphanumeric()
}
