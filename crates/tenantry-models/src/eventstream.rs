//! The AWS event-stream binary framing (`application/vnd.amazon.eventstream`), in which
//! Bedrock's ConverseStream sends its events.
//!
//! A frame is: total length (u32 BE), headers length (u32 BE), CRC32 of those 8 bytes, the
//! headers, the payload, and a CRC32 of everything before it. This module owns decoding (and,
//! for tests and mocks, encoding) of frames. It checks both checksums and refuses oversized
//! frames; it never interprets a payload.

use bytes::Bytes;

use crate::error::ProviderError;
use crate::http::Decoder;

/// Largest frame accepted (AWS documents 16 MiB as the maximum message size).
pub const MAX_FRAME: usize = 16 * 1024 * 1024;
const PRELUDE: usize = 12;
const MIN_FRAME: usize = PRELUDE + 4;

/// A header value, by its wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    Bool(bool),
    Byte(i8),
    Short(i16),
    Int(i32),
    Long(i64),
    Bytes(Vec<u8>),
    String(String),
    /// Milliseconds since the epoch.
    Timestamp(i64),
    Uuid([u8; 16]),
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub headers: Vec<(String, HeaderValue)>,
    pub payload: Bytes,
}

impl Frame {
    /// A string header's value, e.g. `:event-type`.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|(n, v)| match v {
            HeaderValue::String(s) if n == name => Some(s.as_str()),
            HeaderValue::String(_)
            | HeaderValue::Bool(_)
            | HeaderValue::Byte(_)
            | HeaderValue::Short(_)
            | HeaderValue::Int(_)
            | HeaderValue::Long(_)
            | HeaderValue::Bytes(_)
            | HeaderValue::Timestamp(_)
            | HeaderValue::Uuid(_) => None,
        })
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

/// Reads `n` bytes at `*at` from `b`, advancing `*at`.
fn take<'a>(b: &'a [u8], at: &mut usize, n: usize) -> Result<&'a [u8], ProviderError> {
    let end = at
        .checked_add(n)
        .filter(|e| *e <= b.len())
        .ok_or_else(|| bad("a header runs past the header section"))?;
    let s = &b[*at..end];
    *at = end;
    Ok(s)
}

fn parse_headers(b: &[u8]) -> Result<Vec<(String, HeaderValue)>, ProviderError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let name_len = usize::from(take(b, &mut at, 1)?[0]);
        let name = std::str::from_utf8(take(b, &mut at, name_len)?)
            .map_err(|_| bad("a header name is not UTF-8"))?
            .to_owned();
        let kind = take(b, &mut at, 1)?[0];
        let fixed = |at: &mut usize, n: usize| -> Result<Vec<u8>, ProviderError> {
            take(b, at, n).map(<[u8]>::to_vec)
        };
        let arr = |v: Vec<u8>| -> [u8; 8] {
            let mut a = [0u8; 8];
            a[8 - v.len()..].copy_from_slice(&v);
            a
        };
        let value = match kind {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes([fixed(&mut at, 1)?[0]])),
            3 => {
                let v = fixed(&mut at, 2)?;
                HeaderValue::Short(i16::from_be_bytes([v[0], v[1]]))
            }
            4 => {
                let v = fixed(&mut at, 4)?;
                HeaderValue::Int(i32::from_be_bytes([v[0], v[1], v[2], v[3]]))
            }
            5 => HeaderValue::Long(i64::from_be_bytes(arr(fixed(&mut at, 8)?))),
            6 | 7 => {
                let l = fixed(&mut at, 2)?;
                let len = usize::from(u16::from_be_bytes([l[0], l[1]]));
                let v = fixed(&mut at, len)?;
                if kind == 6 {
                    HeaderValue::Bytes(v)
                } else {
                    HeaderValue::String(
                        String::from_utf8(v).map_err(|_| bad("a string header is not UTF-8"))?,
                    )
                }
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(arr(fixed(&mut at, 8)?))),
            9 => {
                let v = fixed(&mut at, 16)?;
                let mut u = [0u8; 16];
                u.copy_from_slice(&v);
                HeaderValue::Uuid(u)
            }
            other => return Err(bad(format!("unknown header value type {other}"))),
        };
        out.push((name, value));
    }
    Ok(out)
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
        let prelude_crc = be32(&self.buf, 8);
        if crc32fast::hash(&self.buf[..8]) != prelude_crc {
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
        let message_crc = be32(&self.buf, total - 4);
        if crc32fast::hash(&self.buf[..total - 4]) != message_crc {
            return Err(bad("message checksum mismatch"));
        }
        let headers = parse_headers(&self.buf[PRELUDE..PRELUDE + headers_len])?;
        let payload = Bytes::copy_from_slice(&self.buf[PRELUDE + headers_len..total - 4]);
        self.buf.drain(..total);
        Ok(Some(Frame { headers, payload }))
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
pub fn encode_frame(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        let name = &name.as_bytes()[..name.len().min(255)];
        let value = &value.as_bytes()[..value.len().min(usize::from(u16::MAX))];
        h.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
        h.extend_from_slice(name);
        h.push(7);
        h.extend_from_slice(&u16::try_from(value.len()).unwrap_or(u16::MAX).to_be_bytes());
        h.extend_from_slice(value);
    }
    let total = PRELUDE + h.len() + payload.len() + 4;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&u32::try_from(total).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&u32::try_from(h.len()).unwrap_or(u32::MAX).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// A Bedrock event frame: `:message-type` `event`, the given `:event-type`, JSON payload.
pub fn encode_event(event_type: &str, payload: &serde_json::Value) -> Vec<u8> {
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

    #[test]
    fn frames_round_trip_across_split_reads() {
        let a = encode_event("messageStart", &serde_json::json!({"role": "assistant"}));
        let b = encode_event(
            "messageStop",
            &serde_json::json!({"stopReason": "end_turn"}),
        );
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
        assert_eq!(&frames[1].payload[..], br#"{"stopReason":"end_turn"}"#);
        assert!(d.finish().unwrap().is_none());
    }

    #[test]
    fn a_corrupted_payload_fails_the_message_checksum() {
        let mut f = encode_event(
            "contentBlockDelta",
            &serde_json::json!({"delta": {"text": "hi"}}),
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
        let mut f = encode_event("messageStop", &serde_json::json!({}));
        f[3] ^= 0x10;
        let mut d = FrameDecoder::default();
        d.push_bytes(&f);
        let e = d.next_frame().unwrap_err();
        assert!(e.to_string().contains("prelude checksum"), "{e}");
    }

    #[test]
    fn every_header_type_decodes() {
        let mut h = Vec::new();
        let mut put = |name: &str, kind: u8, value: &[u8]| {
            h.push(name.len() as u8);
            h.extend_from_slice(name.as_bytes());
            h.push(kind);
            h.extend_from_slice(value);
        };
        put("t", 0, &[]);
        put("f", 1, &[]);
        put("b", 2, &[0xff]);
        put("s", 3, &[0, 5]);
        put("i", 4, &[0, 0, 1, 0]);
        put("l", 5, &[0, 0, 0, 0, 0, 0, 0, 9]);
        put("y", 6, &[0, 2, 1, 2]);
        put("ts", 8, &[0, 0, 0, 0, 0, 0, 0, 1]);
        put("u", 9, &[7; 16]);
        let parsed = parse_headers(&h).unwrap();
        assert_eq!(parsed[2].1, HeaderValue::Byte(-1));
        assert_eq!(parsed[4].1, HeaderValue::Int(256));
        assert_eq!(parsed[5].1, HeaderValue::Long(9));
        assert_eq!(parsed[6].1, HeaderValue::Bytes(vec![1, 2]));
        assert_eq!(parsed[8].1, HeaderValue::Uuid([7; 16]));
        assert!(parse_headers(&[1, b'x', 42]).is_err());
        assert!(parse_headers(&[5, b'x']).is_err());
    }
}
