//! A decoder of `text/event-stream` (server-sent events), as OpenAI-compatible servers and
//! Anthropic stream their answers.
//!
//! It owns only the framing: lines, `event:` and `data:` fields, blank-line dispatch. It never
//! interprets an event's data, and it refuses a line longer than [`MAX_LINE`] instead of
//! buffering without bound.

use crate::error::ProviderError;
use crate::http::Decoder;

/// Longest line accepted, in bytes.
pub(crate) const MAX_LINE: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, when the server names its events (Anthropic does, OpenAI does not).
    pub(crate) event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    pos: usize,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    fn take_event(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        let data = self.data.take();
        if event.is_none() && data.is_none() {
            return None;
        }
        Some(SseEvent {
            event,
            data: data.unwrap_or_default(),
        })
    }

    /// Applies one line; returns an event when the line is the blank line that ends one.
    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, ProviderError> {
        if line.is_empty() {
            return Ok(self.take_event());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let line = std::str::from_utf8(line)
            .map_err(|_| ProviderError::malformed("event stream line is not UTF-8"))?;
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            // `id`, `retry` and unknown fields mean nothing to a one-shot answer stream.
            _ => {}
        }
        Ok(None)
    }
}

impl Decoder for SseDecoder {
    type Event = SseEvent;

    fn push(&mut self, bytes: &[u8]) -> Result<(), ProviderError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() - self.pos > MAX_LINE && !self.buf[self.pos..].contains(&b'\n') {
            return Err(ProviderError::malformed(
                "an event stream line exceeds the size limit",
            ));
        }
        Ok(())
    }

    fn next_event(&mut self) -> Result<Option<SseEvent>, ProviderError> {
        while let Some(nl) = self.buf[self.pos..].iter().position(|b| *b == b'\n') {
            let start = self.pos;
            let mut end = start + nl;
            self.pos = end + 1;
            if end > start && self.buf[end - 1] == b'\r' {
                end -= 1;
            }
            let line = self.buf[start..end].to_vec();
            if let Some(ev) = self.line(&line)? {
                return Ok(Some(ev));
            }
        }
        // Compact so the buffer does not grow with the whole stream.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        Ok(None)
    }

    fn finish(&mut self) -> Result<Option<SseEvent>, ProviderError> {
        if self.pos < self.buf.len() {
            let rest = self.buf[self.pos..].to_vec();
            self.pos = self.buf.len();
            let rest = rest.strip_suffix(b"\r").unwrap_or(&rest).to_vec();
            if let Some(ev) = self.line(&rest)? {
                return Ok(Some(ev));
            }
        }
        Ok(self.take_event())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all(input: &[&[u8]]) -> Vec<SseEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for piece in input {
            d.push(piece).unwrap();
            while let Some(ev) = d.next_event().unwrap() {
                out.push(ev);
            }
        }
        if let Some(ev) = d.finish().unwrap() {
            out.push(ev);
        }
        out
    }

    #[test]
    fn events_split_across_reads() {
        let evs = all(&[
            b"event: ping\r\ndata: {\"a\"",
            b":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\n",
            b"data: [DONE]",
        ]);
        assert_eq!(
            evs,
            vec![
                SseEvent {
                    event: Some("ping".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into()
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into()
                },
            ]
        );
    }
}
