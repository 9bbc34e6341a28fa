//! Cursor pagination over time-ordered TypeIDs: newest first, the cursor is the last id seen.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A page of results and the cursor for the next one.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A validated position in a list.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub after_id: String,
}

impl Cursor {
    /// # Errors
    /// When the text was not made by [`Cursor::encode`].
    pub fn decode(s: &str) -> Result<Self, &'static str> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| "is not a cursor returned by this list")?;
        let id = String::from_utf8(bytes).map_err(|_| "is not a cursor returned by this list")?;
        let valid = id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if valid && !id.is_empty() { Ok(Self { after_id: id }) } else { Err("is not a cursor returned by this list") }
    }

    #[must_use]
    pub fn encode(id: &str) -> String {
        URL_SAFE_NO_PAD.encode(id.as_bytes())
    }
}

/// Turns `limit + 1` rows into a page.
pub fn paginate<T>(mut rows: Vec<T>, limit: u64, id: impl Fn(&T) -> &str) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|r| Cursor::encode(id(r)))
    } else {
        None
    };
    Page { items: rows, next_cursor }
}
