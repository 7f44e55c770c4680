//! A decoder of `text/event-stream` (server-sent events), in which OpenAI-compatible servers
//! and Anthropic stream their answers and MCP upstreams answer a POST.
//!
//! It owns only the framing: lines, `event:` and `data:` fields, blank-line dispatch. It never
//! interprets an event's data, never reads from anything (the caller pushes bytes as they
//! arrive), and refuses a line longer than its limit instead of buffering without bound.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the server names its events (Anthropic does, OpenAI does not).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Why a stream cannot be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    #[error("an event stream line exceeds the size limit")]
    LineTooLong,
    #[error("event stream line is not UTF-8")]
    NotUtf8,
}

#[derive(Debug)]
pub struct SseDecoder {
    buf: Vec<u8>,
    /// Where the unread part of `buf` starts.
    pos: usize,
    event: Option<String>,
    data: Option<String>,
    max_line: usize,
}

impl SseDecoder {
    /// A decoder that refuses lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            event: None,
            data: None,
            max_line,
        }
    }

    /// Adds bytes as they arrive.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), SseError> {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
        if self.buf.len() - self.pos > self.max_line && !self.buf[self.pos..].contains(&b'\n') {
            return Err(SseError::LineTooLong);
        }
        Ok(())
    }

    /// The next complete event, if one is buffered.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
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

    /// At the end of the stream: the event left without its blank line, if any.
    pub fn finish(&mut self) -> Result<Option<SseEvent>, SseError> {
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
    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, SseError> {
        if line.is_empty() {
            return Ok(self.take_event());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let line = std::str::from_utf8(line).map_err(|_| SseError::NotUtf8)?;
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
            // `id` and `retry` serve resumption, which a one-answer stream does not need.
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn all(max_line: usize, input: &[&[u8]]) -> Result<Vec<SseEvent>, SseError> {
        let mut d = SseDecoder::new(max_line);
        let mut out = Vec::new();
        for piece in input {
            d.push(piece)?;
            while let Some(ev) = d.next_event()? {
                out.push(ev);
            }
        }
        out.extend(d.finish()?);
        Ok(out)
    }

    #[test]
    fn events_split_across_reads() {
        let evs = all(
            1024,
            &[
                b"id: 1\r\nevent: ping\r\ndata: {\"a\"",
                b":1}\r\n\r\n: comment\n\ndata: x\ndata: y\n\n",
                b"data: [DONE]",
            ],
        )
        .unwrap();
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

    #[test]
    fn an_event_ended_by_a_last_blank_line_without_newline_is_kept() {
        let evs = all(1024, &[b"data: last\n\r"]).unwrap();
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].data, "last");
    }

    #[test]
    fn long_lines_and_invalid_utf8_are_refused() {
        assert_eq!(all(8, &[b"data: 123456"]), Err(SseError::LineTooLong));
        assert_eq!(all(8, &[b"data: 1\n", b"data: 2\n"]).unwrap().len(), 1);
        assert_eq!(all(64, &[b"data: \xff\n\n"]), Err(SseError::NotUtf8));
        assert_eq!(
            SseError::LineTooLong.to_string(),
            "an event stream line exceeds the size limit"
        );
    }
}
