//! Rotation policies: when a key's current version is due for rotation, and when consumers
//! are told in advance.

use std::str::FromStr;

use chrono::{DateTime, TimeDelta, Utc};
use croner::Cron;

/// When rotations happen.
#[derive(Debug, Clone)]
pub enum Schedule {
    /// Every period after the current version was issued.
    Every(TimeDelta),
    /// At each cron occurrence after the current version was issued, if the occurrence is not
    /// more than `window` ago (a missed window waits for the next occurrence).
    Cron { cron: Box<Cron>, window: TimeDelta },
}

/// Why a schedule is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("is not a cron expression: {0}")]
    Cron(String),
    #[error("must be between 1 and 3650 days")]
    Interval,
    #[error("give either interval_days or cron, not both and not neither")]
    Either,
}

impl Schedule {
    /// # Errors
    /// When neither or both are given, the interval is out of range, or the cron does not parse.
    pub fn parse(interval_days: Option<i64>, cron: Option<&str>, window: TimeDelta) -> Result<Self, ScheduleError> {
        match (interval_days, cron) {
            (Some(d), None) if (1..=3_650).contains(&d) => Ok(Self::Every(TimeDelta::days(d))),
            (Some(_), None) => Err(ScheduleError::Interval),
            (None, Some(expr)) => {
                let c = Cron::from_str(expr).map_err(|e| ScheduleError::Cron(e.to_string()))?;
                Ok(Self::Cron { cron: Box::new(c), window })
            }
            _ => Err(ScheduleError::Either),
        }
    }

    /// The first moment the version issued at `issued` is due, after `issued`.
    #[must_use]
    pub fn next_due(&self, issued: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Every(d) => Some(issued + *d),
            Self::Cron { cron, .. } => cron.find_next_occurrence(&issued, false).ok(),
        }
    }

    /// Is the version issued at `issued` due for rotation `now`?
    #[must_use]
    pub fn due_now(&self, issued: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        match self {
            Self::Every(d) => now >= issued + *d,
            Self::Cron { cron, window } => {
                cron.find_previous_occurrence(&now, true).is_ok_and(|occ| occ > issued && now <= occ + *window)
            }
        }
    }

    /// The shortest time between two rotations (a bound for the overlap).
    #[must_use]
    pub fn period(&self, from: DateTime<Utc>) -> Option<TimeDelta> {
        match self {
            Self::Every(d) => Some(*d),
            Self::Cron { cron, .. } => {
                let a = cron.find_next_occurrence(&from, false).ok()?;
                let b = cron.find_next_occurrence(&a, false).ok()?;
                Some(b - a)
            }
        }
    }
}

/// Which advance notices are due now: the lead times whose moment (`due - lead`) has passed.
#[must_use]
pub fn notices_due(due: DateTime<Utc>, leads: &[TimeDelta], now: DateTime<Utc>) -> Vec<TimeDelta> {
    leads.iter().copied().filter(|l| now >= due - *l && now < due).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap_or_default()
    }

    #[test]
    fn intervals() {
        let s = Schedule::parse(Some(90), None, TimeDelta::zero()).expect("valid");
        let issued = at("2026-01-01T00:00:00Z");
        assert_eq!(s.next_due(issued), Some(at("2026-04-01T00:00:00Z")));
        assert!(!s.due_now(issued, at("2026-03-31T23:59:59Z")));
        assert!(s.due_now(issued, at("2026-04-01T00:00:00Z")));
        assert_eq!(Schedule::parse(Some(0), None, TimeDelta::zero()).err(), Some(ScheduleError::Interval));
        assert_eq!(Schedule::parse(None, None, TimeDelta::zero()).err(), Some(ScheduleError::Either));
        assert_eq!(Schedule::parse(Some(1), Some("* * * * *"), TimeDelta::zero()).err(), Some(ScheduleError::Either));
    }

    #[test]
    fn cron_with_a_window() {
        // Mondays at 03:00, within two hours.
        let s = Schedule::parse(None, Some("0 3 * * MON"), TimeDelta::hours(2)).expect("valid");
        let issued = at("2026-11-25T12:00:00Z"); // a Wednesday
        assert_eq!(s.next_due(issued), Some(at("2026-11-30T03:00:00Z")));
        assert!(!s.due_now(issued, at("2026-11-30T02:59:00Z")));
        assert!(s.due_now(issued, at("2026-11-30T04:00:00Z")));
        assert!(!s.due_now(issued, at("2026-11-30T05:01:00Z")), "window missed: wait for next Monday");
        assert!(s.due_now(issued, at("2026-12-07T03:30:00Z")));
        assert_eq!(s.period(issued), Some(TimeDelta::days(7)));
        assert!(Schedule::parse(None, Some("every tuesday"), TimeDelta::zero()).is_err());
    }

    #[test]
    fn notices() {
        let due = at("2026-12-15T00:00:00Z");
        let leads = [TimeDelta::days(14), TimeDelta::days(1)];
        assert!(notices_due(due, &leads, at("2026-11-30T00:00:00Z")).is_empty());
        assert_eq!(notices_due(due, &leads, at("2026-12-01T00:00:00Z")), vec![TimeDelta::days(14)]);
        assert_eq!(notices_due(due, &leads, at("2026-12-14T12:00:00Z")).len(), 2);
        assert!(notices_due(due, &leads, due).is_empty(), "at the due time the rotation itself happens");
    }
}
