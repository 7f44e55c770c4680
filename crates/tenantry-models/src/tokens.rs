//! Token counting: the deterministic word counter, and the upper bound of a prompt that a
//! budget reservation is made from (`PromptBound`).
//!
//! The word counter is used when an upstream reports no usage and by the mock provider. It is
//! not any model's tokenizer: it splits on whitespace and counts each word as one token per
//! started four characters, which is close to real tokenizers on English text. It must stay
//! deterministic and cheap: the same text always counts the same, in one pass.
//!
//! A reservation must be an upper bound of what the provider will report, or concurrent calls
//! could overspend a budget (law 7). `PromptBound` gives one per model: OpenAI's models are
//! counted with their real BPE encoding (the ranks ship in the `tiktoken-rs` crate, nothing is
//! fetched at run time) plus the chat framing; a model whose tokenizer we do not have is
//! bounded by the UTF-8 byte length of its text (a byte-level BPE or a byte-fallback
//! SentencePiece model never makes more tokens than bytes) plus a generous framing; the mock
//! provider by its own counter, which is exactly what it reports.

use tiktoken_rs::CoreBPE;

use crate::wire::{ChatMessage, ChatRequest, Content, EmbeddingInput, EmbeddingsRequest};

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

/// How a model's prompt tokens are bounded from above before a call.
#[derive(Clone, Copy)]
pub enum PromptBound {
    /// The model's own BPE encoding (OpenAI models).
    Bpe(&'static CoreBPE),
    /// UTF-8 bytes: any model whose tokenizer we do not ship.
    Bytes,
    /// The word counter of this module (the mock provider counts with it).
    Words,
}

impl std::fmt::Debug for PromptBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PromptBound::Bpe(_) => "Bpe",
            PromptBound::Bytes => "Bytes",
            PromptBound::Words => "Words",
        })
    }
}

impl PartialEq for PromptBound {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (PromptBound::Bpe(a), PromptBound::Bpe(b)) => std::ptr::eq(*a, *b),
            (PromptBound::Bytes, PromptBound::Bytes) | (PromptBound::Words, PromptBound::Words) => {
                true
            }
            (PromptBound::Bpe(_) | PromptBound::Bytes | PromptBound::Words, _) => false,
        }
    }
}

impl Eq for PromptBound {}

/// Tokens a non-text part (an image) may take: the most a high-detail image costs on OpenAI's
/// GPT-4o family (85 + 170 per 512-pixel tile, at most 8 tiles after scaling). Models that
/// bill images at more tokens exceed it; their settle then records the actual count.
pub const NON_TEXT_PART_BOUND: u64 = 1_445;
/// Framing bounds for models whose chat template we do not know: per message, per request and
/// per tool definition.
const UNKNOWN_PER_MESSAGE: u64 = 16;
const UNKNOWN_PER_REQUEST: u64 = 32;
/// Per tool definition, beyond its text (OpenAI renders definitions in a framing of its own).
const PER_TOOL_OVERHEAD: u64 = 16;

impl PromptBound {
    /// The bound for `upstream_model` on a provider that speaks OpenAI's API (`openai`: the
    /// encoding of an OpenAI model name, else bytes), or on another provider (bytes), or the
    /// mock provider (its counter).
    pub fn for_model(openai_compatible: bool, mock: bool, upstream_model: &str) -> Self {
        if mock {
            return PromptBound::Words;
        }
        if openai_compatible
            && let Some(t) = tiktoken_rs::tokenizer::get_tokenizer(upstream_model)
            && let Ok(bpe) = tiktoken_rs::bpe_for_tokenizer(t)
        {
            return PromptBound::Bpe(bpe);
        }
        PromptBound::Bytes
    }

    fn text(&self, text: &str) -> u64 {
        match self {
            PromptBound::Bpe(bpe) => bpe.count_ordinary(text) as u64,
            PromptBound::Bytes => text.len() as u64,
            PromptBound::Words => count_text(text),
        }
    }

    fn framing(&self) -> (u64, u64) {
        match self {
            PromptBound::Bpe(_) | PromptBound::Words => {
                (PER_MESSAGE_OVERHEAD, PER_REQUEST_OVERHEAD)
            }
            PromptBound::Bytes => (UNKNOWN_PER_MESSAGE, UNKNOWN_PER_REQUEST),
        }
    }

    /// The most prompt tokens `req` can count as on this model.
    pub fn prompt(&self, req: &ChatRequest) -> u64 {
        if let PromptBound::Words = self {
            // The mock's own count, exactly.
            return count_prompt(req);
        }
        let (per_message, per_request) = self.framing();
        let mut n = per_request;
        for m in &req.messages {
            n += per_message;
            match &m.content {
                None => {}
                Some(Content::Text(t)) => n += self.text(t),
                Some(Content::Parts(parts)) => {
                    for p in parts {
                        n += match &p.text {
                            Some(t) => self.text(t),
                            None => NON_TEXT_PART_BOUND,
                        };
                    }
                }
            }
            if let Some(name) = &m.name {
                n += 1 + self.text(name);
            }
            for call in m.tool_calls.iter().flatten() {
                n += PER_TOOL_OVERHEAD
                    + self.text(&call.function.name)
                    + self.text(&call.function.arguments);
            }
        }
        for tool in req.tools.iter().flatten() {
            n += PER_TOOL_OVERHEAD + self.text(&tool.function.name);
            if let Some(d) = &tool.function.description {
                n += self.text(d);
            }
            if let Some(p) = &tool.function.parameters {
                n += self.text(&p.to_string());
            }
        }
        n
    }

    /// The most input tokens an embeddings request can count as on this model (token-id
    /// inputs count exactly).
    pub fn embeddings(&self, req: &EmbeddingsRequest) -> u64 {
        match &req.input {
            EmbeddingInput::Tokens(t) => t.len() as u64,
            EmbeddingInput::ManyTokens(v) => v.iter().map(|t| t.len() as u64).sum(),
            EmbeddingInput::One(_) | EmbeddingInput::Many(_) => {
                req.input.texts().iter().map(|t| self.text(t)).sum()
            }
        }
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

#[cfg(test)]
mod bound_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn request(text: &str) -> ChatRequest {
        serde_json::from_value(serde_json::json!({
            "model": "m", "messages": [{"role": "user", "content": text}]
        }))
        .unwrap()
    }

    #[test]
    fn openai_models_are_counted_with_their_encoding() {
        let bound = PromptBound::for_model(true, false, "gpt-4o-mini");
        assert!(matches!(bound, PromptBound::Bpe(_)));
        // "hello world" is two o200k tokens; plus framing.
        assert_eq!(
            bound.prompt(&request("hello world")),
            2 + PER_MESSAGE_OVERHEAD + PER_REQUEST_OVERHEAD
        );
        // An unknown model name on an OpenAI-compatible provider is bounded by bytes.
        assert_eq!(
            PromptBound::for_model(true, false, "llama-3-8b"),
            PromptBound::Bytes
        );
        assert_eq!(
            PromptBound::for_model(false, true, "gpt-4o"),
            PromptBound::Words
        );
    }

    #[test]
    fn the_bounds_are_never_below_the_real_count() {
        let bpe = PromptBound::for_model(true, false, "gpt-4o");
        let texts = [
            "internationalization is hard, isn't it?",
            "日本語のテキストとemoji 🎉🎉🎉",
            "    lots     of    spaces\n\n\tand tabs",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        ];
        for t in texts {
            let real = bpe.text(t);
            assert!(PromptBound::Bytes.text(t) >= real, "{t}");
            assert!(bpe.prompt(&request(t)) > real, "{t}");
            assert!(
                PromptBound::Bytes.prompt(&request(t)) >= bpe.prompt(&request(t)),
                "{t}"
            );
        }
    }
}
