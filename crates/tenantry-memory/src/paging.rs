//! Opaque page tokens. A token carries the offset of the next page within one listing and a
//! tag of the listing it belongs to, so a token of one listing is refused by another instead
//! of answering something unexpected. It carries no tenant, actor or namespace: those always
//! come from the caller and the request, never from a token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::MemoryError;
use crate::types::MAX_PAGE;

/// The page size when the caller names none.
pub const DEFAULT_PAGE: u32 = 20;

/// The page size asked for, checked: 1 to 100.
pub fn page_size(max_results: Option<u32>) -> Result<usize, MemoryError> {
    match max_results {
        None => Ok(DEFAULT_PAGE as usize),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n as usize),
        Some(n) => Err(MemoryError::Invalid(format!(
            "maxResults must be 1 to {MAX_PAGE}, not {n}"
        ))),
    }
}

/// The token of the page starting at `offset` of the listing `tag`.
pub fn token(tag: &str, offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{tag}:{offset}"))
}

/// The offset a token of listing `tag` points at (0 without a token).
pub fn offset(tag: &str, token: Option<&str>) -> Result<usize, MemoryError> {
    let Some(token) = token else {
        return Ok(0);
    };
    let bad = || MemoryError::invalid("nextToken is not a token of this listing");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (t, n) = text.rsplit_once(':').ok_or_else(bad)?;
    if t != tag {
        return Err(bad());
    }
    n.parse().map_err(|_| bad())
}

/// Cuts one page out of `all` (everything the listing matched, in order) at `start`.
pub fn cut<T>(tag: &str, all: Vec<T>, start: usize, size: usize) -> crate::types::Page<T> {
    let total = all.len();
    let items: Vec<T> = all.into_iter().skip(start).take(size).collect();
    let next = start + items.len();
    crate::types::Page {
        next_token: (next < total && !items.is_empty()).then(|| token(tag, next)),
        items,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_bound_to_their_listing() {
        let t = token("events", 40);
        assert_eq!(offset("events", Some(&t)).unwrap(), 40);
        assert!(offset("records", Some(&t)).is_err());
        assert!(offset("events", Some("garbage!")).is_err());
        let page = cut("x", (0..5).collect(), 2, 2);
        assert_eq!(page.items, vec![2, 3]);
        assert_eq!(offset("x", page.next_token.as_deref()).unwrap(), 4);
        assert!(
            cut("x", (0..5).collect::<Vec<_>>(), 4, 2)
                .next_token
                .is_none()
        );
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(101)).is_err());
    }
}
