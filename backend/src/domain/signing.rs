//! The life of a tenant's token signing keys, as a function of their times.
//!
//! A new key is **published** (in the JWKS) a lead time before it signs anything, so every
//! resource server has fetched it before it meets a token signed by it. At its activation it
//! becomes **active** and the key before it **retiring**: still published, no longer signing,
//! until the last token it signed has expired; then it is **retired** and leaves the JWKS.
//! A **revoked** key leaves the JWKS at once, and the tokens it signed fail.
//!
//! Nothing is stored but each key's `created_at`, `activates_at` and `revoked_at`: a key's phase
//! follows from them and from the keys after it, so no job has to move a key from phase to
//! phase, and every node derives the same phases.

use chrono::{DateTime, TimeDelta, Utc};

use super::policy::Schedule;

/// The longest an access token lives.
pub const MAX_TOKEN_TTL: TimeDelta = TimeDelta::seconds(900);
/// Clock difference between Keyroll and a resource server that a retiring key still covers.
pub const CLOCK_LEEWAY: TimeDelta = TimeDelta::seconds(60);
/// How long a retiring key stays published after its successor started signing.
pub const RETIRING_FOR: TimeDelta = TimeDelta::seconds(MAX_TOKEN_TTL.num_seconds() + CLOCK_LEEWAY.num_seconds());

/// The phase of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// In the JWKS, not signing yet.
    Published,
    /// Signing new tokens.
    Active,
    /// In the JWKS until the tokens it signed have expired; signs nothing.
    Retiring,
    /// Gone from the JWKS.
    Retired,
    /// Withdrawn at once: gone from the JWKS, its tokens fail.
    Revoked,
}

impl Phase {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Active => "active",
            Self::Retiring => "retiring",
            Self::Retired => "retired",
            Self::Revoked => "revoked",
        }
    }

    /// Whether the key is in the JWKS.
    #[must_use]
    pub const fn published(self) -> bool {
        matches!(self, Self::Published | Self::Active | Self::Retiring)
    }
}

/// The times of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigningTimes {
    pub activates_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl SigningTimes {
    /// Whether it ever signed: it activated before it was revoked.
    fn took_over(&self, now: DateTime<Utc>) -> bool {
        self.activates_at <= now && self.revoked_at.is_none_or(|r| r > self.activates_at)
    }
}

/// The phase of each key at `now`, and when each stops signing (its successor's activation).
/// A key is superseded by the first later key that activated before it was revoked (a key
/// revoked before its activation never took over, so the one before keeps signing).
#[must_use]
pub fn phases(keys: &[SigningTimes], now: DateTime<Utc>) -> Vec<(Phase, Option<DateTime<Utc>>)> {
    keys.iter()
        .map(|k| {
            let successor = keys
                .iter()
                .filter(|o| o.activates_at > k.activates_at && o.revoked_at.is_none_or(|r| r > o.activates_at))
                .map(|o| o.activates_at)
                .min();
            let phase = if k.revoked_at.is_some_and(|r| r <= now) {
                Phase::Revoked
            } else if now < k.activates_at {
                Phase::Published
            } else {
                match successor.filter(|s| *s <= now) {
                    None => Phase::Active,
                    Some(s) if now < s + RETIRING_FOR => Phase::Retiring,
                    Some(_) => Phase::Retired,
                }
            };
            (phase, successor)
        })
        .collect()
}

/// Which key signs at `now`: the active one (index into `keys`).
#[must_use]
pub fn signer(keys: &[SigningTimes], now: DateTime<Utc>) -> Option<usize> {
    phases(keys, now).iter().position(|(p, _)| *p == Phase::Active)
}

/// When the next scheduled rotation starts: `lead` before the schedule falls due for the newest
/// key that took over. `None` while a key is waiting to take over, or when no key signs (the
/// first one is made on first use, not by the schedule).
#[must_use]
pub fn next_rotation(
    keys: &[SigningTimes],
    now: DateTime<Utc>,
    schedule: &Schedule,
    lead: TimeDelta,
) -> Option<DateTime<Utc>> {
    if keys.iter().any(|k| k.activates_at > now && k.revoked_at.is_none()) {
        return None;
    }
    let newest = keys.iter().filter(|k| k.took_over(now) && k.revoked_at.is_none()).map(|k| k.activates_at).max()?;
    Some(schedule.next_due(newest)? - lead)
}

/// Whether a scheduled rotation is due: the schedule falls due (less the lead, so the next key
/// is active on time) for the newest key that took over, and no key is waiting to take over.
#[must_use]
pub fn rotation_due(keys: &[SigningTimes], now: DateTime<Utc>, schedule: &Schedule, lead: TimeDelta) -> bool {
    next_rotation(keys, now, schedule, lead).is_some_and(|at| at <= now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(min: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + min * 60, 0).expect("time")
    }

    fn key(activates: i64, revoked: Option<i64>) -> SigningTimes {
        SigningTimes { activates_at: at(activates), revoked_at: revoked.map(at) }
    }

    fn only(keys: &[SigningTimes], now: i64) -> Vec<Phase> {
        phases(keys, at(now)).into_iter().map(|(p, _)| p).collect()
    }

    #[test]
    fn a_rotation_publishes_first_then_retires_the_old_key_after_the_last_token() {
        use Phase::*;
        let keys = [key(0, None), key(100, None)];
        assert_eq!(only(&keys, 50), [Active, Published]);
        assert_eq!(only(&keys, 100), [Retiring, Active]);
        assert_eq!(only(&keys, 100 + 15), [Retiring, Active], "15 min of tokens + 1 min of leeway");
        assert_eq!(only(&keys, 100 + 16), [Retired, Active]);
        assert_eq!(signer(&keys, at(99)), Some(0));
        assert_eq!(signer(&keys, at(100)), Some(1));
    }

    #[test]
    fn a_key_revoked_before_it_took_over_leaves_the_old_one_signing() {
        use Phase::*;
        let keys = [key(0, None), key(100, Some(50))];
        assert_eq!(only(&keys, 60), [Active, Revoked]);
        assert_eq!(only(&keys, 200), [Active, Revoked]);
    }

    #[test]
    fn revoking_the_active_key_with_an_immediate_replacement_does_not_bring_back_the_old_one() {
        use Phase::*;
        // 0 signed until 100; 100 was revoked at 500 and replaced by a key active at once.
        let keys = [key(0, None), key(100, Some(500)), key(500, None)];
        assert_eq!(only(&keys, 500), [Retired, Revoked, Active]);
        assert_eq!(signer(&keys, at(501)), Some(2));
    }

    #[test]
    fn scheduled_rotation_is_due_a_lead_before_the_interval_and_only_once() {
        let every = Schedule::Every(TimeDelta::days(30));
        let lead = TimeDelta::hours(1);
        let keys = [key(0, None)];
        assert!(!rotation_due(&keys, at(30 * 1440 - 61), &every, lead));
        assert!(rotation_due(&keys, at(30 * 1440 - 60), &every, lead));
        assert_eq!(next_rotation(&keys, at(0), &every, lead), Some(at(30 * 1440 - 60)));
        let waiting = [key(0, None), key(30 * 1440, None)];
        assert!(!rotation_due(&waiting, at(30 * 1440 - 30), &every, lead));
        assert!(!rotation_due(&[], at(0), &every, lead), "no key: made on first use, not by the schedule");
    }

    #[test]
    fn a_cron_schedule_rotates_a_lead_before_its_next_occurrence() {
        // Midnight on the first of each month; the key took over at at(0) (2027-01-15 08:00 UTC).
        let monthly = Schedule::parse(None, Some("0 0 1 * *"), TimeDelta::hours(1)).expect("cron");
        let lead = TimeDelta::hours(2);
        let keys = [key(0, None)];
        let due = next_rotation(&keys, at(0), &monthly, lead).expect("a next rotation");
        assert_eq!(crate::time::rfc3339(due), "2027-01-31T22:00:00Z");
        assert!(!rotation_due(&keys, due - TimeDelta::seconds(1), &monthly, lead));
        assert!(rotation_due(&keys, due, &monthly, lead));
    }
}
