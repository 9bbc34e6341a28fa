//! The outcome codes of a verification.

use serde::Serialize;

/// Every answer `POST /v1/verify` can give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    Valid,
    Malformed,
    NotFound,
    Expired,
    Revoked,
    Disabled,
    InsufficientScope,
    IpNotAllowed,
    RateLimited,
    UsageExceeded,
}

impl Code {
    pub const ALL: [Self; 10] = [
        Self::Valid,
        Self::Malformed,
        Self::NotFound,
        Self::Expired,
        Self::Revoked,
        Self::Disabled,
        Self::InsufficientScope,
        Self::IpNotAllowed,
        Self::RateLimited,
        Self::UsageExceeded,
    ];

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "VALID",
            Self::Malformed => "MALFORMED",
            Self::NotFound => "NOT_FOUND",
            Self::Expired => "EXPIRED",
            Self::Revoked => "REVOKED",
            Self::Disabled => "DISABLED",
            Self::InsufficientScope => "INSUFFICIENT_SCOPE",
            Self::IpNotAllowed => "IP_NOT_ALLOWED",
            Self::RateLimited => "RATE_LIMITED",
            Self::UsageExceeded => "USAGE_EXCEEDED",
        }
    }

    #[must_use]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Which API an unknown key was meant for: the one the gateway named, or the key's head.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MissedApi {
    Id(super::ApiId),
    Head(Box<str>, super::Environment),
}
