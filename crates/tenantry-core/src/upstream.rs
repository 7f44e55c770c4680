//! What the gateways keep of an upstream's error answer: its message, in the shapes HTTP APIs
//! and model providers write it, cut to a length fit for an error.
//!
//! It reads bytes already received and never keeps more than [`MAX_MESSAGE_CHARS`] of them in
//! a message; what the message may contain (never a credential) is the caller's to ensure.

use serde_json::Value;

/// Longest upstream message kept in an error, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;

/// `message` cut to [`MAX_MESSAGE_CHARS`] characters, with `…` when something was cut.
pub fn trim_message(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

/// The message of an error body: `error.message` (OpenAI, Anthropic), `error` as a string,
/// `message`, `Message` (AWS) or `detail` (RFC 9457), else the body's text.
pub fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        let candidates = [
            v.pointer("/error/message"),
            v.get("error").filter(|e| e.is_string()),
            v.get("message"),
            v.get("Message"),
            v.get("detail"),
        ];
        for c in candidates.into_iter().flatten() {
            if let Some(s) = c.as_str() {
                return s.to_owned();
            }
        }
    }
    String::from_utf8_lossy(body).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_in_every_shape() {
        assert_eq!(
            error_message(br#"{"error":{"message":"bad model","type":"x"}}"#),
            "bad model"
        );
        assert_eq!(
            error_message(
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            "Overloaded"
        );
        assert_eq!(error_message(br#"{"error":"nope"}"#), "nope");
        assert_eq!(error_message(br#"{"message":"throttled"}"#), "throttled");
        assert_eq!(error_message(br#"{"Message":"denied"}"#), "denied");
        assert_eq!(error_message(br#"{"detail":"gone"}"#), "gone");
        assert_eq!(error_message(b"  plain text \n"), "plain text");
    }

    #[test]
    fn long_messages_are_cut_on_a_character() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let cut = trim_message(long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(trim_message("short".into()), "short");
    }
}
