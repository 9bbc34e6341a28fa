//! Plans and their limits: what a tenant may hold at once, and how many verifications a month
//! its plan includes. A limit left out is unlimited. Verification itself is never refused for a
//! plan: only creating beyond a limit is.

use serde::{Deserialize, Serialize};

/// One limit of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    /// Keys that are current and not revoked, root keys aside.
    ActiveKeys,
    /// Verifications in the billing period (over it: flagged and billed, never refused).
    VerificationsPerMonth,
    /// Members of the team.
    Members,
    /// The team's webhook endpoints.
    WebhookEndpoints,
    /// How long audit entries may be kept.
    AuditRetentionDays,
}

impl Limit {
    pub const ALL: [Self; 5] = [
        Self::ActiveKeys,
        Self::VerificationsPerMonth,
        Self::Members,
        Self::WebhookEndpoints,
        Self::AuditRetentionDays,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ActiveKeys => "active_keys",
            Self::VerificationsPerMonth => "verifications_per_month",
            Self::Members => "members",
            Self::WebhookEndpoints => "webhook_endpoints",
            Self::AuditRetentionDays => "audit_retention_days",
        }
    }

    /// How the limit reads in a sentence ("100 active keys").
    #[must_use]
    pub const fn words(self) -> &'static str {
        match self {
            Self::ActiveKeys => "active keys",
            Self::VerificationsPerMonth => "verifications a month",
            Self::Members => "members",
            Self::WebhookEndpoints => "webhook endpoints",
            Self::AuditRetentionDays => "days of audit retention",
        }
    }
}

/// A plan's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub active_keys: Option<u64>,
    pub verifications_per_month: Option<u64>,
    pub members: Option<u64>,
    pub webhook_endpoints: Option<u64>,
    pub audit_retention_days: Option<u64>,
}

impl Limits {
    /// Every limit unlimited (billing off).
    pub const UNLIMITED: Self = Self {
        active_keys: None,
        verifications_per_month: None,
        members: None,
        webhook_endpoints: None,
        audit_retention_days: None,
    };

    #[must_use]
    pub const fn get(&self, limit: Limit) -> Option<u64> {
        match limit {
            Limit::ActiveKeys => self.active_keys,
            Limit::VerificationsPerMonth => self.verifications_per_month,
            Limit::Members => self.members,
            Limit::WebhookEndpoints => self.webhook_endpoints,
            Limit::AuditRetentionDays => self.audit_retention_days,
        }
    }

    /// Whether `more` can be added to `used` of `limit` within the plan. `Err(allowed)` when not.
    ///
    /// # Errors
    /// The plan's allowance when the sum would exceed it.
    pub fn admits(&self, limit: Limit, used: u64, more: u64) -> Result<(), u64> {
        match self.get(limit) {
            Some(allowed) if used.saturating_add(more) > allowed => Err(allowed),
            _ => Ok(()),
        }
    }
}

/// How far into its monthly verification allowance a tenant is, for the notices: the highest
/// threshold reached (`0`, `80` or `100`).
#[must_use]
pub fn allowance_reached(used: u64, allowed: u64) -> u8 {
    if used >= allowed {
        100
    } else if u128::from(used) * 100 >= u128::from(allowed) * 80 {
        80
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_admits_up_to_its_allowance_and_unlimited_admits_all() {
        let l = Limits { active_keys: Some(2), ..Limits::default() };
        assert_eq!(l.admits(Limit::ActiveKeys, 1, 1), Ok(()));
        assert_eq!(l.admits(Limit::ActiveKeys, 2, 1), Err(2));
        assert_eq!(l.admits(Limit::ActiveKeys, 0, 3), Err(2), "a batch is counted whole");
        assert_eq!(l.admits(Limit::Members, u64::MAX, 1), Ok(()), "unlimited");
        assert_eq!(Limits::UNLIMITED.admits(Limit::ActiveKeys, u64::MAX, u64::MAX), Ok(()));
    }

    #[test]
    fn allowance_thresholds() {
        assert_eq!(allowance_reached(79, 100), 0);
        assert_eq!(allowance_reached(80, 100), 80);
        assert_eq!(allowance_reached(99, 100), 80);
        assert_eq!(allowance_reached(100, 100), 100);
        assert_eq!(allowance_reached(u64::MAX, u64::MAX - 1), 100);
        assert_eq!(allowance_reached(0, 0), 100);
    }
}
