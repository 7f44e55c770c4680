//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`), in which
//! Bedrock's ConverseStream sends its events.
//!
//! A frame is: total length (u32 BE), headers length (u32 BE), CRC32 of those 8 bytes, the
//! headers, the payload, and a CRC32 of everything before it. The `aws-smithy-eventstream`
//! crate parses a whole frame (headers of every type, the message checksum) and, for tests and
//! mocks, encodes one. This module owns the buffering in front of it: it checks the prelude's
//! checksum and refuses an oversized frame as soon as the first 12 bytes arrive, because the
//! crate's own incremental decoder believes the length prefix and would buffer up to 4 GiB
//! before looking. It never interprets a payload.

use aws_smithy_eventstream::frame::read_message_from;
use aws_smithy_types::event_stream::Message;
use bytes::Bytes;

use crate::error::ProviderError;
use crate::http::Decoder;

/// Largest frame accepted (AWS documents 16 MiB as the maximum message size).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
const PRELUDE: usize = 12;
const MIN_FRAME: usize = PRELUDE + 4;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame(Message);

impl Frame {
    /// A string header's value, e.g. `:event-type`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.0.headers().iter().find_map(|h| {
            (h.name().as_str() == name)
                .then(|| h.value().as_string().ok())
                .flatten()
                .map(|s| s.as_str())
        })
    }

    pub fn payload(&self) -> &Bytes {
        self.0.payload()
    }

    /// The frame with every header, typed.
    pub fn message(&self) -> &Message {
        &self.0
    }
}

fn bad(msg: impl Into<String>) -> ProviderError {
    ProviderError::malformed(format!("event stream: {}", msg.into()))
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(w)
}

/// Incremental frame decoder: push bytes as they arrive, take frames as they complete.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
}

impl FrameDecoder {
    /// The next complete frame, checking both CRCs.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, ProviderError> {
        if self.buf.len() < PRELUDE {
            return Ok(None);
        }
        let total = usize::try_from(be32(&self.buf, 0)).unwrap_or(usize::MAX);
        let headers_len = usize::try_from(be32(&self.buf, 4)).unwrap_or(usize::MAX);
        if crc32fast::hash(&self.buf[..8]) != be32(&self.buf, 8) {
            return Err(bad("prelude checksum mismatch"));
        }
        if !(MIN_FRAME..=MAX_FRAME).contains(&total) {
            return Err(bad(format!("frame length {total} out of range")));
        }
        if headers_len > total - MIN_FRAME {
            return Err(bad("headers longer than the frame"));
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let message = read_message_from(&self.buf[..total]).map_err(|e| bad(e.to_string()))?;
        self.buf.drain(..total);
        Ok(Some(Frame(message)))
    }

    pub fn push_bytes(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }
}

impl Decoder for FrameDecoder {
    type Event = Frame;

    fn push(&mut self, bytes: &[u8]) -> Result<(), ProviderError> {
        self.push_bytes(bytes);
        Ok(())
    }

    fn next_event(&mut self) -> Result<Option<Frame>, ProviderError> {
        self.next_frame()
    }

    fn finish(&mut self) -> Result<Option<Frame>, ProviderError> {
        if self.buf.is_empty() {
            Ok(None)
        } else {
            Err(ProviderError::broken(
                "the event stream ended in the middle of a frame",
            ))
        }
    }
}

/// Encodes a frame with string headers (the only kind Bedrock's events use).
#[cfg(any(test, feature = "test-util"))]
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Result<Vec<u8>, ProviderError> {
    use aws_smithy_types::event_stream::{Header, HeaderValue};

    let message = headers.iter().fold(
        Message::new(Bytes::copy_from_slice(payload)),
        |m, (name, value)| {
            m.add_header(Header::new(
                name.to_string(),
                HeaderValue::String(value.to_string().into()),
            ))
        },
    );
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&message, &mut out)
        .map_err(|e| bad(e.to_string()))?;
    Ok(out)
}

/// A Bedrock event frame: `:message-type` `event`, the given `:event-type`, JSON payload.
#[cfg(any(test, feature = "test-util"))]
pub fn encode_event(
    event_type: &str,
    payload: &serde_json::Value,
) -> Result<Vec<u8>, ProviderError> {
    encode_frame(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.to_string().as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn event(event_type: &str, payload: serde_json::Value) -> Vec<u8> {
        encode_event(event_type, &payload).unwrap()
    }

    #[test]
    fn frames_round_trip_across_split_reads() {
        let a = event("messageStart", serde_json::json!({"role": "assistant"}));
        let b = event("messageStop", serde_json::json!({"stopReason": "end_turn"}));
        let all: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        let mut d = FrameDecoder::default();
        let mut frames = Vec::new();
        for piece in all.chunks(7) {
            d.push_bytes(piece);
            while let Some(f) = d.next_frame().unwrap() {
                frames.push(f);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].header_str(":event-type"), Some("messageStart"));
        assert_eq!(frames[1].header_str(":message-type"), Some("event"));
        assert_eq!(&frames[1].payload()[..], br#"{"stopReason":"end_turn"}"#);
        assert!(d.finish().unwrap().is_none());
    }

    #[test]
    fn a_corrupted_payload_fails_the_message_checksum() {
        let mut f = event(
            "contentBlockDelta",
            serde_json::json!({"delta": {"text": "hi"}}),
        );
        let n = f.len();
        f[n - 6] ^= 0x01;
        let mut d = FrameDecoder::default();
        d.push_bytes(&f);
        let e = d.next_frame().unwrap_err();
        assert!(e.to_string().contains("message checksum"), "{e}");
    }

    #[test]
    fn a_corrupted_length_fails_the_prelude_checksum() {
        let mut f = event("messageStop", serde_json::json!({}));
        f[3] ^= 0x10;
        let mut d = FrameDecoder::default();
        d.push_bytes(&f);
        let e = d.next_frame().unwrap_err();
        assert!(e.to_string().contains("prelude checksum"), "{e}");
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_prelude() {
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&u32::MAX.to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        let mut d = FrameDecoder::default();
        d.push_bytes(&prelude);
        let e = d.next_frame().unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn only_string_headers_answer_header_str() {
        use aws_smithy_types::event_stream::{Header, HeaderValue};
        let message = Message::new(Bytes::new())
            .add_header(Header::new("n", HeaderValue::Int32(256)))
            .add_header(Header::new("n", HeaderValue::String("x".into())));
        let mut bytes = Vec::new();
        aws_smithy_eventstream::frame::write_message_to(&message, &mut bytes).unwrap();
        let mut d = FrameDecoder::default();
        d.push_bytes(&bytes);
        let f = d.next_frame().unwrap().unwrap();
        assert_eq!(f.header_str("n"), Some("x"));
        assert_eq!(f.message().headers()[0].value(), &HeaderValue::Int32(256));
    }
}
