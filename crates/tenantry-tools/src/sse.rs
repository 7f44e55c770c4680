//! A decoder of `text/event-stream` framing, for MCP upstreams that answer a POST with a
//! stream. It owns lines, `event:` and `data:` fields and blank-line dispatch; it never
//! interprets data, and refuses a line longer than [`MAX_LINE`] instead of buffering without
//! bound.

/// Longest line accepted, in bytes.
pub(crate) const MAX_LINE: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    pub(crate) event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub(crate) data: String,
}

#[derive(Debug, Default)]
pub(crate) struct SseDecoder {
    buf: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

impl SseDecoder {
    /// Adds bytes; an error when a line grows past the limit.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() > MAX_LINE && !self.buf.contains(&b'\n') {
            return Err("an event stream line exceeds the size limit".into());
        }
        Ok(())
    }

    /// The next complete event, if one is buffered.
    pub(crate) fn next_event(&mut self) -> Result<Option<SseEvent>, String> {
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(ev) = self.line(&line)? {
                return Ok(Some(ev));
            }
        }
        Ok(None)
    }

    /// At the end of the stream: the event left without its blank line, if any.
    pub(crate) fn finish(&mut self) -> Result<Option<SseEvent>, String> {
        if !self.buf.is_empty() {
            let rest = std::mem::take(&mut self.buf);
            let rest = rest.strip_suffix(b"\r").unwrap_or(&rest).to_vec();
            self.line(&rest)?;
        }
        Ok(self.take())
    }

    fn take(&mut self) -> Option<SseEvent> {
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

    fn line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, String> {
        if line.is_empty() {
            return Ok(self.take());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let line = std::str::from_utf8(line).map_err(|_| "event stream line is not UTF-8")?;
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
            // `id` and `retry` serve resumption, which a one-answer POST stream does not need.
            _ => {}
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_split_across_reads() {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for piece in [
            &b"id: 1\r\nevent: message\r\ndata: {\"a\""[..],
            b":1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\n",
            b"data: last",
        ] {
            d.push(piece).unwrap();
            while let Some(ev) = d.next_event().unwrap() {
                out.push(ev);
            }
        }
        out.extend(d.finish().unwrap());
        assert_eq!(
            out,
            vec![
                SseEvent {
                    event: Some("message".into()),
                    data: "{\"a\":1}".into()
                },
                SseEvent {
                    event: None,
                    data: "x\ny".into()
                },
                SseEvent {
                    event: None,
                    data: "last".into()
                },
            ]
        );
    }
}
