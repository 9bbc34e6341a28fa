//! Every event Keyroll emits. Webhook endpoints subscribe to these types; the list of
//! subscribable types is this enum's, so a type cannot be offered without existing.

/// The type of an event, as written in webhook payloads (`type`) and subscriptions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    KeyCreated,
    KeyUpdated,
    KeyRevoked,
    KeyExpiring,
    KeyExpired,
    RotationStarted,
    RotationCompleted,
    RotationRolledBack,
    RotationExtended,
    PolicyRotationDue,
    AlertRaised,
    AlertResolved,
    CreditsLow,
    RatelimitExceeded,
    PlaybookRunStarted,
    PlaybookRunCompleted,
    PlaybookRunFailed,
    LeakReported,
}

impl EventType {
    /// Every type, in the documented order.
    pub const ALL: [Self; 18] = [
        Self::KeyCreated,
        Self::KeyUpdated,
        Self::KeyRevoked,
        Self::KeyExpiring,
        Self::KeyExpired,
        Self::RotationStarted,
        Self::RotationCompleted,
        Self::RotationRolledBack,
        Self::RotationExtended,
        Self::PolicyRotationDue,
        Self::AlertRaised,
        Self::AlertResolved,
        Self::CreditsLow,
        Self::RatelimitExceeded,
        Self::PlaybookRunStarted,
        Self::PlaybookRunCompleted,
        Self::PlaybookRunFailed,
        Self::LeakReported,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KeyCreated => "key.created",
            Self::KeyUpdated => "key.updated",
            Self::KeyRevoked => "key.revoked",
            Self::KeyExpiring => "key.expiring",
            Self::KeyExpired => "key.expired",
            Self::RotationStarted => "rotation.started",
            Self::RotationCompleted => "rotation.completed",
            Self::RotationRolledBack => "rotation.rolled_back",
            Self::RotationExtended => "rotation.extended",
            Self::PolicyRotationDue => "policy.rotation_due",
            Self::AlertRaised => "alert.raised",
            Self::AlertResolved => "alert.resolved",
            Self::CreditsLow => "credits.low",
            Self::RatelimitExceeded => "ratelimit.exceeded",
            Self::PlaybookRunStarted => "playbook.run.started",
            Self::PlaybookRunCompleted => "playbook.run.completed",
            Self::PlaybookRunFailed => "playbook.run.failed",
            Self::LeakReported => "leak.reported",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Does the consumer also hear of it by email? (`playbook.run.started` reaches a consumer
    /// only as the notice of a playbook's `notify` step, which names the consumer.)
    #[must_use]
    pub const fn emailed(self) -> bool {
        matches!(
            self,
            Self::RotationStarted
                | Self::KeyExpiring
                | Self::RotationCompleted
                | Self::RotationRolledBack
                | Self::KeyRevoked
                | Self::PlaybookRunStarted
                | Self::CreditsLow
                | Self::RatelimitExceeded
        )
    }
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    #[test]
    fn names_round_trip_and_are_unique() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.as_str()), Some(t));
        }
        let mut names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
    }
}
