//! The deterministic token counter, used when an upstream reports no usage, by the mock
//! provider, and for the prompt estimate a budget reservation is made from.
//!
//! It is not any model's tokenizer: it splits on whitespace and counts each word as one token
//! per started four characters, which is close to real tokenizers on English text. It must stay
//! deterministic and cheap: the same text always counts the same, in one pass.

use crate::wire::{ChatMessage, ChatRequest, Content};

/// Tokens added per message for its role and framing, as chat templates do.
pub const PER_MESSAGE_OVERHEAD: u64 = 4;
/// Tokens added once per conversation for the reply's priming.
pub const PER_REQUEST_OVERHEAD: u64 = 3;

/// Tokens of a text: each whitespace-separated word counts one per started 4 characters.
pub fn count_text(text: &str) -> u64 {
    text.split_whitespace()
        .map(|w| (w.chars().count() as u64).div_ceil(4))
        .sum()
}

/// Tokens of one message: its text, tool calls, name, plus the framing overhead.
pub fn count_message(m: &ChatMessage) -> u64 {
    let mut n = PER_MESSAGE_OVERHEAD;
    match &m.content {
        None => {}
        Some(Content::Text(t)) => n += count_text(t),
        Some(Content::Parts(parts)) => {
            for p in parts {
                match &p.text {
                    Some(t) => n += count_text(t),
                    // An image or other non-text part: a flat estimate.
                    None => n += 85,
                }
            }
        }
    }
    if let Some(name) = &m.name {
        n += count_text(name);
    }
    for call in m.tool_calls.iter().flatten() {
        n += count_text(&call.function.name) + count_text(&call.function.arguments);
    }
    n
}

/// Tokens of a request's prompt: its messages and tool definitions.
pub fn count_prompt(req: &ChatRequest) -> u64 {
    let mut n = PER_REQUEST_OVERHEAD;
    n += req.messages.iter().map(count_message).sum::<u64>();
    for tool in req.tools.iter().flatten() {
        n += count_text(&tool.function.name);
        if let Some(d) = &tool.function.description {
            n += count_text(d);
        }
        if let Some(p) = &tool.function.parameters {
            n += count_text(&p.to_string());
        }
    }
    n
}

/// What a budget reservation for this request should assume: the counted prompt plus the
/// caller's `max_completion_tokens`/`max_tokens`, or `default_max_output` when it gave none.
pub fn estimate_total(req: &ChatRequest, default_max_output: u64) -> u64 {
    count_prompt(req)
        + req
            .max_output_tokens()
            .map(u64::from)
            .unwrap_or(default_max_output)
}

/// Counts text that arrives in pieces exactly as [`count_text`] counts the whole, keeping only
/// the length of the word in progress.
#[derive(Debug, Clone, Copy, Default)]
pub struct StreamCounter {
    tokens: u64,
    word_chars: u64,
}

impl StreamCounter {
    pub fn push(&mut self, piece: &str) {
        for c in piece.chars() {
            if c.is_whitespace() {
                self.end_word();
            } else {
                self.word_chars += 1;
            }
        }
    }

    /// Ends the word in progress (as whitespace would).
    pub fn end_word(&mut self) {
        self.tokens += self.word_chars.div_ceil(4);
        self.word_chars = 0;
    }

    /// Tokens so far, counting the word in progress as ended.
    pub fn total(&self) -> u64 {
        self.tokens + self.word_chars.div_ceil(4)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::wire::Role;

    #[test]
    fn counts_words_by_four_characters() {
        assert_eq!(count_text(""), 0);
        assert_eq!(count_text("hi"), 1);
        assert_eq!(count_text("hello world"), 4);
        assert_eq!(count_text("  a   b\tc\n"), 3);
        assert_eq!(count_text("internationalization"), 5);
    }

    #[test]
    fn streamed_pieces_count_like_the_whole() {
        let text = "internationalization is hard, isn't it?  yes";
        for split in 0..text.len() {
            if !text.is_char_boundary(split) {
                continue;
            }
            let mut c = StreamCounter::default();
            c.push(&text[..split]);
            c.push(&text[split..]);
            assert_eq!(c.total(), count_text(text));
        }
    }

    #[test]
    fn prompt_counts_include_framing() {
        let req: ChatRequest = serde_json::from_value(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": "hello world"}], "max_tokens": 10
        }))
        .unwrap();
        assert_eq!(count_prompt(&req), 3 + 4 + 4);
        assert_eq!(estimate_total(&req, 1000), 21);
        let m = ChatMessage::new(Role::User, "x");
        assert_eq!(count_message(&m), 5);
    }
}
