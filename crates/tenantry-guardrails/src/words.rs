//! Matching lists of words and phrases (denied topics, word filters, protected identifiers) in
//! folded text, whole words only: `ass` never matches inside `class`, `bomb` matches `BÖMB`
//! and `bоmb` with a Cyrillic `о`.
//!
//! A phrase is its sequence of folded words; the text is split into folded words the same
//! way, and a phrase matches a run of consecutive words. Lookup is by the phrase's first word,
//! so the cost is one hash lookup per word of text, however long the lists.

use std::collections::HashMap;

use crate::normalize::{Folded, fold, words};

/// A compiled list of phrases, each with a label (an index the caller gives meaning to).
#[derive(Debug, Clone, Default)]
pub struct PhraseSet {
    by_first: HashMap<String, Vec<(Vec<String>, usize)>>,
    /// The longest phrase, in folded bytes.
    longest: usize,
}

fn split(phrase: &str) -> Vec<String> {
    let f = fold(phrase);
    words(&f)
        .into_iter()
        .map(|(s, e)| f[s..e].to_owned())
        .collect()
}

impl PhraseSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, phrase: &str, label: usize) {
        let w = split(phrase);
        let Some(first) = w.first().cloned() else {
            return;
        };
        let len = w.iter().map(String::len).sum::<usize>() + w.len();
        self.longest = self.longest.max(len);
        self.by_first.entry(first).or_default().push((w, label));
    }

    pub fn is_empty(&self) -> bool {
        self.by_first.is_empty()
    }

    /// How much original text a match can span, generously: separators and invisible
    /// characters between the words count too.
    pub fn max_len(&self) -> usize {
        self.longest * 3 + 16
    }

    /// Every match in `text` as (original start, original end, label); overlapping matches of
    /// different phrases are all reported.
    pub fn find(
        &self,
        folded: &Folded,
        words: &[(usize, usize)],
        out: &mut Vec<(usize, usize, usize)>,
    ) {
        if self.by_first.is_empty() {
            return;
        }
        let text = &folded.text;
        for i in 0..words.len() {
            let (s, e) = words[i];
            let Some(candidates) = self.by_first.get(&text[s..e]) else {
                continue;
            };
            for (phrase, label) in candidates {
                if i + phrase.len() > words.len() {
                    continue;
                }
                let all = phrase
                    .iter()
                    .zip(&words[i..])
                    .all(|(p, &(ws, we))| text[ws..we] == **p);
                if all {
                    let end = words[i + phrase.len() - 1].1;
                    let (os, oe) = folded.original(s, end);
                    out.push((os, oe, *label));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hits(set: &PhraseSet, text: &str) -> Vec<String> {
        let f = Folded::new(text);
        let w = f.words();
        let mut out = Vec::new();
        set.find(&f, &w, &mut out);
        out.into_iter()
            .map(|(s, e, _)| text[s..e].to_owned())
            .collect()
    }

    #[test]
    fn whole_words_and_phrases() {
        let mut set = PhraseSet::new();
        set.add("ass", 0);
        set.add("build a bomb", 1);
        assert!(hits(&set, "the class assessment passed").is_empty());
        assert_eq!(hits(&set, "what an ASS."), vec!["ASS"]);
        assert_eq!(hits(&set, "how to Build  a  BÖMB?"), vec!["Build  a  BÖMB"]);
        assert!(hits(&set, "build a bombastic speech").is_empty());
    }
}
