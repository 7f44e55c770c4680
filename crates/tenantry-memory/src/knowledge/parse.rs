//! Documents into sections: each section is the paragraphs under one heading path (e.g.
//! `["Install", "On Linux"]`), in document order.
//!
//! Markdown: ATX (`## Title`) and setext (`Title` underlined with `===` or `---`) headings;
//! fenced code blocks are kept whole as one paragraph and never read as headings. HTML: `h1` to
//! `h6` are headings, block elements end paragraphs, `script`, `style`, `head`, `nav` and
//! comments are dropped, common entities are decoded. Plain text: paragraphs separated by blank
//! lines, no headings. Parsing never fails: text that is not what its type says is read as
//! well as it can be.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentType {
    Text,
    Markdown,
    Html,
}

impl ContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::Text => "text",
            ContentType::Markdown => "markdown",
            ContentType::Html => "html",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "text" => Some(Self::Text),
            "markdown" => Some(Self::Markdown),
            "html" => Some(Self::Html),
            _ => None,
        }
    }
}

/// The paragraphs under one heading path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Section {
    pub heading_path: Vec<String>,
    pub paragraphs: Vec<String>,
}

/// Sections of `content` read as `kind`; sections without paragraphs are left out.
pub fn parse(kind: ContentType, content: &str) -> Vec<Section> {
    let mut b = Builder::default();
    match kind {
        ContentType::Text => {
            for line in content.lines() {
                b.line(line);
            }
        }
        ContentType::Markdown => markdown(content, &mut b),
        ContentType::Html => html(content, &mut b),
    }
    b.finish()
}

/// Collects lines into paragraphs and paragraphs into sections.
#[derive(Debug, Default)]
struct Builder {
    path: Vec<(usize, String)>,
    current: Section,
    para: String,
    done: Vec<Section>,
}

impl Builder {
    fn line(&mut self, line: &str) {
        let t = line.trim();
        if t.is_empty() {
            self.end_paragraph();
        } else {
            if !self.para.is_empty() {
                self.para.push(' ');
            }
            self.para.push_str(t);
        }
    }

    fn paragraph(&mut self, text: String) {
        self.end_paragraph();
        if !text.trim().is_empty() {
            self.current.paragraphs.push(text);
        }
    }

    fn end_paragraph(&mut self) {
        let p = collapse(&std::mem::take(&mut self.para));
        if !p.is_empty() {
            self.current.paragraphs.push(p);
        }
    }

    fn heading(&mut self, level: usize, title: &str) {
        self.end_section();
        let title = collapse(title);
        if title.is_empty() {
            return;
        }
        while self.path.last().is_some_and(|(l, _)| *l >= level) {
            self.path.pop();
        }
        self.path.push((level, title));
        self.current.heading_path = self.path.iter().map(|(_, t)| t.clone()).collect();
    }

    fn end_section(&mut self) {
        self.end_paragraph();
        let path = self.current.heading_path.clone();
        let s = std::mem::replace(
            &mut self.current,
            Section {
                heading_path: path,
                paragraphs: Vec::new(),
            },
        );
        if !s.paragraphs.is_empty() {
            self.done.push(s);
        }
    }

    fn finish(mut self) -> Vec<Section> {
        self.end_section();
        self.done
    }
}

/// Whitespace runs into single spaces, trimmed.
fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn atx_heading(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start();
    if line.len() - t.len() > 3 {
        return None;
    }
    let level = t.bytes().take_while(|b| *b == b'#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !rest.is_empty() && !rest.starts_with(' ') && !rest.starts_with('\t') {
        return None;
    }
    Some((level, rest.trim().trim_end_matches('#').trim()))
}

fn setext_level(line: &str) -> Option<usize> {
    let t = line.trim();
    if t.len() >= 2 && t.bytes().all(|b| b == b'=') {
        Some(1)
    } else if t.len() >= 2 && t.bytes().all(|b| b == b'-') {
        Some(2)
    } else {
        None
    }
}

fn markdown(content: &str, b: &mut Builder) {
    let lines: Vec<&str> = content.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let t = line.trim_start();
        if t.starts_with("```") || t.starts_with("~~~") {
            let fence = &t[..3];
            let mut code = Vec::new();
            i += 1;
            while i < lines.len() && !lines[i].trim_start().starts_with(fence) {
                code.push(lines[i]);
                i += 1;
            }
            b.paragraph(code.join("\n").trim().to_owned());
            i += 1;
            continue;
        }
        if let Some((level, title)) = atx_heading(line) {
            b.heading(level, title);
        } else if !t.is_empty()
            && b.para.is_empty()
            && let Some(level) = lines.get(i + 1).and_then(|n| setext_level(n))
        {
            b.heading(level, t);
            i += 1;
        } else if t.starts_with("- ") || t.starts_with("* ") || t.starts_with("+ ") {
            // A list item starts a line of its own within the paragraph.
            if !b.para.is_empty() {
                b.para.push('\n');
            }
            b.para.push_str(t);
        } else {
            b.line(line);
        }
        i += 1;
    }
}

const DROPPED: &[&str] = &[
    "script", "style", "head", "nav", "noscript", "template", "svg",
];
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "td",
    "th",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "pre",
    "dd",
    "dt",
    "dl",
    "hr",
    "main",
    "aside",
    "body",
    "figure",
    "figcaption",
];

fn html(content: &str, b: &mut Builder) {
    let mut rest = content;
    let mut heading: Option<(usize, String)> = None;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            text(b, &mut heading, rest);
            break;
        };
        text(b, &mut heading, &rest[..lt]);
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = after.find("-->").map_or("", |e| &after[e + 3..]);
            continue;
        }
        let Some(gt) = rest.find('>') else { break };
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        if !closing && DROPPED.contains(&name.as_str()) {
            let end = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = lower
                .find(&end)
                .and_then(|e| rest[e..].find('>').map(|g| &rest[e + g + 1..]))
                .unwrap_or("");
            continue;
        }
        let level = match name.as_bytes() {
            [b'h', d @ b'1'..=b'6'] => Some(usize::from(d - b'0')),
            _ => None,
        };
        match (level, closing) {
            (Some(l), false) => heading = Some((l, String::new())),
            (Some(_), true) => {
                if let Some((l, title)) = heading.take() {
                    b.heading(l, &title);
                }
            }
            (None, _) if BLOCKS.contains(&name.as_str()) => {
                if let Some((_, title)) = heading.as_mut() {
                    title.push(' ');
                } else {
                    b.end_paragraph();
                }
            }
            (None, _) => {}
        }
    }
    if let Some((l, title)) = heading.take() {
        b.heading(l, &title);
    }
}

fn text(b: &mut Builder, heading: &mut Option<(usize, String)>, raw: &str) {
    let decoded = decode_entities(raw);
    match heading {
        Some((_, title)) => title.push_str(&decoded),
        None => {
            if !b.para.is_empty() && !decoded.starts_with(char::is_whitespace) {
                // Inline elements split text without a space (`<b>x</b>y`).
                b.para
                    .push_str(decoded.split_whitespace().next().unwrap_or(""));
                let rest: Vec<&str> = decoded.split_whitespace().skip(1).collect();
                if !rest.is_empty() {
                    b.para.push(' ');
                    b.para.push_str(&rest.join(" "));
                }
                if decoded.ends_with(char::is_whitespace) {
                    b.para.push(' ');
                }
            } else {
                let t = collapse(&decoded);
                if !t.is_empty() {
                    if !b.para.is_empty() && !b.para.ends_with(' ') {
                        b.para.push(' ');
                    }
                    b.para.push_str(&t);
                    if decoded.ends_with(char::is_whitespace) {
                        b.para.push(' ');
                    }
                }
            }
        }
    }
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest.find(';').filter(|e| *e <= 10);
        let decoded = end.and_then(|e| {
            let name = &rest[1..e];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some(' '),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, e))
        });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_keeps_the_heading_path() {
        let md = "# Guide\nIntro text.\n\n## Install\nRun it.\n\n```\n# not a heading\n```\n\n### Linux\nUse apt.\n\n## Use\nCall it.\n\nSetext\n------\nUnder setext.\n";
        let s = parse(ContentType::Markdown, md);
        let paths: Vec<Vec<String>> = s.iter().map(|s| s.heading_path.clone()).collect();
        assert_eq!(
            paths,
            vec![
                vec!["Guide".to_owned()],
                vec!["Guide".into(), "Install".into()],
                vec!["Guide".into(), "Install".into(), "Linux".into()],
                vec!["Guide".into(), "Use".into()],
                vec!["Guide".into(), "Setext".into()],
            ]
        );
        assert_eq!(s[1].paragraphs, ["Run it.", "# not a heading"]);
    }

    #[test]
    fn html_drops_scripts_and_reads_headings() {
        let html = "<html><head><title>x</title><script>var a = '<h1>';</script></head><body>\
            <h1>Billing &amp; plans</h1><p>Pay <b>monthly</b>, or yearly.</p><!-- <h2>no</h2> -->\
            <h2>Refunds</h2><ul><li>Within 30 days</li><li>Pro&#8209;rated</li></ul></body></html>";
        let s = parse(ContentType::Html, html);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].heading_path, ["Billing & plans"]);
        assert_eq!(s[0].paragraphs, ["Pay monthly, or yearly."]);
        assert_eq!(s[1].heading_path, ["Billing & plans", "Refunds"]);
        assert_eq!(s[1].paragraphs, ["Within 30 days", "Pro\u{2011}rated"]);
    }

    #[test]
    fn text_is_paragraphs_without_headings() {
        let s = parse(ContentType::Text, "one\ntwo\n\n\nthree\n");
        assert_eq!(s.len(), 1);
        assert!(s[0].heading_path.is_empty());
        assert_eq!(s[0].paragraphs, ["one two", "three"]);
    }
}
