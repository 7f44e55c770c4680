//! Sections into chunks: paragraphs of one section are packed into chunks of at most
//! `max_words` words; a chunk never spans two sections, so each carries one heading path. A
//! paragraph longer than a chunk is split at sentence ends where it can, at words otherwise.

use super::parse::Section;

#[derive(Debug, Clone, Copy)]
pub struct ChunkOptions {
    /// Words per chunk at most (about 1.3 model tokens each for English; MiniLM reads 256).
    pub max_words: usize,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        Self { max_words: 150 }
    }
}

/// One chunk: its heading path and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub heading_path: Vec<String>,
    pub text: String,
}

/// What is indexed and embedded for a chunk: its heading path, then its text.
pub fn search_text(heading_path: &[String], text: &str) -> String {
    if heading_path.is_empty() {
        text.to_owned()
    } else {
        format!("{}\n{text}", heading_path.join(" > "))
    }
}

pub fn chunk_sections(sections: &[Section], opts: ChunkOptions) -> Vec<Chunk> {
    let max = opts.max_words.max(8);
    let mut out = Vec::new();
    for s in sections {
        let mut words: Vec<&str> = Vec::new();
        let flush = |words: &mut Vec<&str>, out: &mut Vec<Chunk>| {
            if !words.is_empty() {
                out.push(Chunk {
                    heading_path: s.heading_path.clone(),
                    text: words.join(" "),
                });
                words.clear();
            }
        };
        for p in &s.paragraphs {
            let pw: Vec<&str> = p.split_whitespace().collect();
            if words.len() + pw.len() > max {
                flush(&mut words, &mut out);
            }
            if pw.len() <= max {
                words.extend(pw);
                continue;
            }
            // A long paragraph: cut at the last sentence end within the limit, else at it.
            let mut rest = &pw[..];
            while rest.len() > max {
                let cut = rest[..max]
                    .iter()
                    .rposition(|w| w.ends_with('.') || w.ends_with('?') || w.ends_with('!'))
                    .filter(|i| *i >= max / 2)
                    .map_or(max, |i| i + 1);
                words.extend(&rest[..cut]);
                flush(&mut words, &mut out);
                rest = &rest[cut..];
            }
            words.extend(rest);
        }
        flush(&mut words, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stay_in_their_section_and_under_the_limit() {
        let long = (0..50)
            .map(|i| format!("word{i}{}", if i % 10 == 9 { "." } else { "" }))
            .collect::<Vec<_>>()
            .join(" ");
        let sections = vec![
            Section {
                heading_path: vec!["A".into()],
                paragraphs: vec!["one two".into(), "three".into()],
            },
            Section {
                heading_path: vec!["A".into(), "B".into()],
                paragraphs: vec![long],
            },
        ];
        let chunks = chunk_sections(&sections, ChunkOptions { max_words: 20 });
        assert_eq!(chunks[0].text, "one two three");
        assert!(chunks[1..].iter().all(|c| c.heading_path == ["A", "B"]));
        assert!(chunks.iter().all(|c| c.text.split(' ').count() <= 20));
        assert!(chunks[1].text.ends_with("word19."));
        assert_eq!(search_text(&chunks[1].heading_path, "x"), "A > B\nx");
    }
}
