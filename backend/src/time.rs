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
