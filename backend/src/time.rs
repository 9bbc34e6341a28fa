//! Time formats of the contract: RFC 3339 UTC with `Z`, and HTTP-dates for `Sunset`.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-12-07T10:00:00Z` (fractions only when present).
#[must_use]
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// `Thu, 01 Jan 2026 00:00:00 GMT` (IMF-fixdate, RFC 9110).
#[must_use]
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// Serde helpers for optional RFC 3339 fields.
pub mod opt_rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    /// # Errors
    /// Never, beyond the serializer's own.
    #[expect(clippy::ref_option, reason = "serde's serialize_with passes &Option<T>")]
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }
}

/// Serde helper for RFC 3339 fields.
pub mod as_rfc3339 {
    use chrono::{DateTime, Utc};
    use serde::Serializer;

    /// # Errors
    /// Never, beyond the serializer's own.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let t = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default();
        assert_eq!(rfc3339(t), "2026-01-01T00:00:00Z");
        assert_eq!(http_date(t), "Thu, 01 Jan 2026 00:00:00 GMT");
    }
}
