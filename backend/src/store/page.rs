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
    /// A cursor is the id of the last row of the previous page, as [`Cursor::encode`] wrote it
    /// (the base64 form older pages handed out is still read).
    ///
    /// # Errors
    /// When the text cannot be an id.
    pub fn decode(s: &str) -> Result<Self, &'static str> {
        let is_id =
            |id: &str| !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !is_id(s) {
            return Err("is not a cursor returned by this list");
        }
        // The older form: base64 of an id, which has a type prefix (`key_…`).
        let older = URL_SAFE_NO_PAD.decode(s).ok().and_then(|b| String::from_utf8(b).ok()).filter(|id| {
            is_id(id)
                && id.split_once('_').is_some_and(|(p, rest)| {
                    !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()) && rest.len() == 26
                })
        });
        Ok(Self { after_id: older.unwrap_or_else(|| s.to_owned()) })
    }

    #[must_use]
    pub fn encode(id: &str) -> String {
        id.to_owned()
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
