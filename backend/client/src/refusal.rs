//! How a protected service refuses a request, whichever framework serves it.

use crate::Verification;

/// The answer to a request that may not pass: status, headers and a problem+json body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Refusal {
    fn new(status: u16, code: &str, detail: &str) -> Self {
        let title = match status {
            401 => "Unauthorized",
            403 => "Forbidden",
            429 => "Too Many Requests",
            _ => "Service Unavailable",
        };
        let body = serde_json::json!({
            "type": format!("https://keyroll.dev/problems/{}", code.to_ascii_lowercase().replace('_', "-")),
            "title": title, "status": status, "code": code, "detail": detail,
        })
        .to_string();
        let mut headers = vec![("content-type", "application/problem+json".to_owned())];
        if status == 401 {
            let error = if code == "MISSING" { String::new() } else { ", error=\"invalid_token\"".to_owned() };
            headers.push(("www-authenticate", format!("Bearer realm=\"keyroll\"{error}")));
        }
        Self { status, headers, body }
    }

    /// No key in the request.
    #[must_use]
    pub fn missing(header: &str) -> Self {
        Self::new(401, "MISSING", &format!("send a key in {header}"))
    }

    /// Keyroll could not be asked: the request is refused (fail closed).
    #[must_use]
    pub fn unavailable() -> Self {
        let mut r = Self::new(503, "UNAVAILABLE", "the key could not be checked; try again");
        r.headers.push(("retry-after", "1".to_owned()));
        r
    }

    /// The refusal of a key that is not valid; `None` for a valid one.
    #[must_use]
    pub fn of(v: &Verification) -> Option<Self> {
        if v.valid {
            return None;
        }
        let code = v.code.as_str();
        let mut r = match code {
            "INSUFFICIENT_SCOPE" => {
                let mut r = Self::new(403, code, "the key lacks a scope this route needs");
                r.headers.push(("www-authenticate", "Bearer realm=\"keyroll\", error=\"insufficient_scope\"".into()));
                r
            }
            "IP_NOT_ALLOWED" => Self::new(403, code, "the key may not be used from this address"),
            "RATE_LIMITED" | "USAGE_EXCEEDED" => Self::new(429, code, "the key has no calls left for now"),
            _ => Self::new(401, code, "the key is not valid"),
        };
        if r.status == 429 {
            let wait = v.ratelimit.as_ref().map_or(60, |rl| (rl.reset_at - chrono::Utc::now()).num_seconds().max(1));
            r.headers.push(("retry-after", wait.to_string()));
        }
        Some(r)
    }
}
