//! Server-sent events as a [`Decoder`] of provider streams: the framing is
//! `tenantry_core::sse`'s; this module sets the line limit of model answers and classifies a
//! framing failure as a malformed answer. It never interprets an event's data.

use tenantry_core::sse::{SseDecoder, SseEvent};

use crate::error::ProviderError;
use crate::http::Decoder;

/// Longest line accepted, in bytes.
pub(crate) const MAX_LINE: usize = 4 * 1024 * 1024;

pub(crate) fn decoder() -> SseDecoder {
    SseDecoder::new(MAX_LINE)
}

fn malformed(e: tenantry_core::sse::SseError) -> ProviderError {
    ProviderError::malformed(e.to_string())
}

impl Decoder for SseDecoder {
    type Event = SseEvent;

    fn push(&mut self, bytes: &[u8]) -> Result<(), ProviderError> {
        SseDecoder::push(self, bytes).map_err(malformed)
    }

    fn next_event(&mut self) -> Result<Option<SseEvent>, ProviderError> {
        SseDecoder::next_event(self).map_err(malformed)
    }

    fn finish(&mut self) -> Result<Option<SseEvent>, ProviderError> {
        SseDecoder::finish(self).map_err(malformed)
    }
}
