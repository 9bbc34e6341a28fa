//! A key's state, derived from its timestamps at read time and never stored.

use chrono::{DateTime, Utc};

/// The timestamps and flags that decide a key's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KeyTimes {
    pub revoked_at: Option<DateTime<Utc>>,
    pub enabled: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub grace_ends_at: Option<DateTime<Utc>>,
}

/// The state of a key at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Valid and current.
    Valid,
    /// Valid, but superseded by a newer version until `grace_ends_at`.
    Superseded,
    Expired,
    Disabled,
    Revoked,
}

impl KeyState {
    /// The rule, in order: revoked, disabled, expired (own expiry or grace over), superseded,
    /// valid. Revocation wins over everything and is irreversible.
    #[must_use]
    pub fn derive(t: &KeyTimes, now: DateTime<Utc>) -> Self {
        if t.revoked_at.is_some() {
            Self::Revoked
        } else if !t.enabled {
            Self::Disabled
        } else if t.expires_at.is_some_and(|e| now >= e) || t.grace_ends_at.is_some_and(|g| now >= g) {
            Self::Expired
        } else if t.grace_ends_at.is_some() {
            Self::Superseded
        } else {
            Self::Valid
        }
    }

    /// Does a key in this state verify?
    #[must_use]
    pub fn verifies(self) -> bool {
        matches!(self, Self::Valid | Self::Superseded)
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Superseded => "superseded",
            Self::Expired => "expired",
            Self::Disabled => "disabled",
            Self::Revoked => "revoked",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Valid, Self::Superseded, Self::Expired, Self::Disabled, Self::Revoked]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proptest::prelude::*;

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap_or_default()
    }

    #[test]
    fn the_table() {
        let now = at(1_000_000);
        let base = KeyTimes { enabled: true, ..KeyTimes::default() };
        assert_eq!(KeyState::derive(&base, now), KeyState::Valid);
        let grace = KeyTimes { grace_ends_at: Some(now + TimeDelta::hours(1)), ..base };
        assert_eq!(KeyState::derive(&grace, now), KeyState::Superseded);
        let over = KeyTimes { grace_ends_at: Some(now), ..base };
        assert_eq!(KeyState::derive(&over, now), KeyState::Expired);
        let expired = KeyTimes { expires_at: Some(now - TimeDelta::seconds(1)), ..base };
        assert_eq!(KeyState::derive(&expired, now), KeyState::Expired);
        let disabled = KeyTimes { enabled: false, ..base };
        assert_eq!(KeyState::derive(&disabled, now), KeyState::Disabled);
        let revoked = KeyTimes { revoked_at: Some(now), enabled: false, ..base };
        assert_eq!(KeyState::derive(&revoked, now), KeyState::Revoked);
    }

    fn opt_time() -> impl Strategy<Value = Option<DateTime<Utc>>> {
        proptest::option::of((0i64..2_000_000).prop_map(at))
    }

    proptest! {
        /// A revoked key never verifies, whatever its other fields and whenever it is asked.
        #[test]
        fn revoked_never_verifies(
            revoked in (0i64..2_000_000).prop_map(at),
            enabled in any::<bool>(),
            expires_at in opt_time(),
            grace_ends_at in opt_time(),
            now in (0i64..2_000_000).prop_map(at),
        ) {
            let t = KeyTimes { revoked_at: Some(revoked), enabled, expires_at, grace_ends_at };
            let state = KeyState::derive(&t, now);
            prop_assert_eq!(state, KeyState::Revoked);
            prop_assert!(!state.verifies());
        }

        /// Time only moves a key towards Expired: once expired, later instants agree.
        #[test]
        fn expiry_is_monotonic(
            expires_at in opt_time(),
            grace_ends_at in opt_time(),
            t1 in 0i64..2_000_000,
            dt in 0i64..1_000_000,
        ) {
            let t = KeyTimes { revoked_at: None, enabled: true, expires_at, grace_ends_at };
            if KeyState::derive(&t, at(t1)) == KeyState::Expired {
                prop_assert_eq!(KeyState::derive(&t, at(t1 + dt)), KeyState::Expired);
            }
        }
    }
}
