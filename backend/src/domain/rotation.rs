//! Zero-downtime rotation: the rules for superseding a version, the overlap window, the number
//! of versions a lineage may have active, and the state machine of a rotation record.

use chrono::{DateTime, TimeDelta, Utc};

use super::KeyState;
use super::key_state::KeyTimes;

/// When the old version of a rotation is retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetireMode {
    /// At the end of the overlap window.
    AtDeadline,
    /// Earlier, once traffic has moved to the new version (never before a minimum overlap).
    WhenDrained,
}

impl RetireMode {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtDeadline => "at_deadline",
            Self::WhenDrained => "when_drained",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "at_deadline" => Some(Self::AtDeadline),
            "when_drained" => Some(Self::WhenDrained),
            _ => None,
        }
    }
}

/// What started a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Manual,
    Policy,
    SelfService,
    Playbook,
    Api,
}

impl Trigger {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Policy => "policy",
            Self::SelfService => "self_service",
            Self::Playbook => "playbook",
            Self::Api => "api",
        }
    }
}

/// The state of a rotation record: `in_progress → completed | rolled_back | cancelled`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationState {
    InProgress,
    Completed,
    RolledBack,
    Cancelled,
}

impl RotationState {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::RolledBack => "rolled_back",
            Self::Cancelled => "cancelled",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        [Self::InProgress, Self::Completed, Self::RolledBack, Self::Cancelled].into_iter().find(|x| x.as_str() == s)
    }
}

/// What can be done to a rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationAction {
    /// Retire the old version now.
    Complete,
    /// Make the old version current again and end the new one.
    Rollback,
    /// Move the end of the overlap window.
    Extend,
    /// Stop tracking it (the lineage was revoked or its old version ended otherwise).
    Cancel,
}

/// Why a rotation step is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("the rotation is {0}, not in progress")]
    NotInProgress(&'static str),
    #[error("a rotation caused by a compromise cannot be rolled back")]
    RollbackOfCompromise,
    #[error("only a current, valid key can be rotated; this one is {0}")]
    NotRotatable(&'static str),
    #[error("the lineage already has {0} active versions, the most its policy allows")]
    TooManyActive(u32),
    #[error("the new end of grace must be in the future")]
    ExtendIntoPast,
    #[error("the new end of grace must not be earlier than the current one")]
    ExtendShortens,
    #[error("the grace period may last at most {0} seconds from the start of the rotation")]
    ExtendBeyondLimit(i64),
    #[error("the old key expires before that; grace never outlasts a key's own expiry")]
    ExtendBeyondExpiry,
    #[error("overlap_seconds must be between 0 and {0}")]
    OverlapOutOfBounds(i64),
}

impl RotationState {
    /// The state machine. Every transition starts from `in_progress`; `extend` keeps it there.
    ///
    /// # Errors
    /// From a final state, or a rollback of a compromise rotation.
    pub fn apply(self, action: RotationAction, compromise: bool) -> Result<Self, RotationError> {
        if self != Self::InProgress {
            return Err(RotationError::NotInProgress(self.as_str()));
        }
        match action {
            RotationAction::Complete => Ok(Self::Completed),
            RotationAction::Rollback if compromise => Err(RotationError::RollbackOfCompromise),
            RotationAction::Rollback => Ok(Self::RolledBack),
            RotationAction::Extend => Ok(Self::InProgress),
            RotationAction::Cancel => Ok(Self::Cancelled),
        }
    }
}

/// The bounds a rotation runs within (from the rotation policy, or the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationRules {
    /// The longest overlap, and the latest an extension may push grace (from the start).
    pub max_overlap: TimeDelta,
    /// Versions of one lineage that may verify at once.
    pub max_active: u32,
    /// When the limit is reached: end the oldest version's grace (`true`) or refuse (`false`).
    pub end_oldest_when_full: bool,
}

impl Default for RotationRules {
    fn default() -> Self {
        Self { max_overlap: TimeDelta::days(30), max_active: 2, end_oldest_when_full: true }
    }
}

/// One version of a lineage, as the rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version<I> {
    pub id: I,
    pub version: i32,
    pub times: KeyTimes,
}

/// The plan for rotating `current`: when its grace ends, and which older versions must end now
/// to stay within `max_active`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPlan<I> {
    pub grace_ends_at: DateTime<Utc>,
    pub end_now: Vec<I>,
}

/// Plans a rotation of `current` among the lineage's `others`.
///
/// # Errors
/// When `current` is not valid and current (superseded, expired, disabled, revoked), the overlap
/// is out of bounds, or the lineage is full and the rules say refuse.
pub fn plan<I: Clone>(
    now: DateTime<Utc>,
    current: &Version<I>,
    others: &[Version<I>],
    overlap: TimeDelta,
    rules: &RotationRules,
) -> Result<RotationPlan<I>, RotationError> {
    let state = KeyState::derive(&current.times, now);
    if state != KeyState::Valid {
        return Err(RotationError::NotRotatable(state.as_str()));
    }
    if overlap < TimeDelta::zero() || overlap > rules.max_overlap {
        return Err(RotationError::OverlapOutOfBounds(rules.max_overlap.num_seconds()));
    }
    // Grace never outlasts the key's own expiry.
    let mut grace_ends_at = now + overlap;
    if let Some(exp) = current.times.expires_at {
        grace_ends_at = grace_ends_at.min(exp);
    }
    let mut active: Vec<&Version<I>> = others.iter().filter(|v| KeyState::derive(&v.times, now).verifies()).collect();
    active.sort_by_key(|v| v.version);
    // After the rotation: the others still active, `current` (in grace unless overlap is 0), and the new one.
    let current_counts = i64::from(grace_ends_at > now);
    let total = i64::try_from(active.len()).unwrap_or(i64::MAX) + current_counts + 1;
    let excess = usize::try_from(total - i64::from(rules.max_active)).unwrap_or(0);
    if excess > 0 && !rules.end_oldest_when_full {
        return Err(RotationError::TooManyActive(rules.max_active));
    }
    let end_now = active.iter().take(excess).map(|v| v.id.clone()).collect::<Vec<_>>();
    // With max_active = 1 the old version cannot stay either.
    if excess > active.len() {
        grace_ends_at = now;
    }
    Ok(RotationPlan { grace_ends_at, end_now })
}

/// Checks a new end of grace for an in-progress rotation.
///
/// # Errors
/// In the past, earlier than now set, beyond the rules' limit from the start, or beyond expiry.
pub fn check_extension(
    now: DateTime<Utc>,
    started_at: DateTime<Utc>,
    current_end: DateTime<Utc>,
    new_end: DateTime<Utc>,
    old_expires_at: Option<DateTime<Utc>>,
    rules: &RotationRules,
) -> Result<(), RotationError> {
    if new_end <= now {
        return Err(RotationError::ExtendIntoPast);
    }
    if new_end < current_end {
        return Err(RotationError::ExtendShortens);
    }
    if new_end > started_at + rules.max_overlap {
        return Err(RotationError::ExtendBeyondLimit(rules.max_overlap.num_seconds()));
    }
    if old_expires_at.is_some_and(|e| new_end > e) {
        return Err(RotationError::ExtendBeyondExpiry);
    }
    Ok(())
}

/// How a rotation the consumer did not ask for reaches the consumer with its new secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// `POST /v1/self/pickup` with the current key, once.
    Pickup,
    /// In the `rotation.started` webhook to the consumer's own endpoints (the first one that
    /// accepts it); picked up as above until then.
    Webhook,
}

impl Handoff {
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pickup" => Some(Self::Pickup),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Pickup => "pickup",
            Self::Webhook => "webhook",
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_000_000 + s, 0).unwrap_or_default()
    }

    fn valid() -> KeyTimes {
        KeyTimes { enabled: true, ..KeyTimes::default() }
    }

    #[test]
    fn state_machine() {
        use RotationAction::*;
        use RotationState::*;
        assert_eq!(InProgress.apply(Complete, false), Ok(Completed));
        assert_eq!(InProgress.apply(Rollback, false), Ok(RolledBack));
        assert_eq!(InProgress.apply(Rollback, true), Err(RotationError::RollbackOfCompromise));
        assert_eq!(InProgress.apply(Extend, true), Ok(InProgress));
        for s in [Completed, RolledBack, Cancelled] {
            for a in [Complete, Rollback, Extend, Cancel] {
                assert!(s.apply(a, false).is_err(), "{s:?} {a:?}");
            }
        }
    }

    #[test]
    fn grace_is_capped_at_expiry_and_overlap_zero_is_immediate() {
        let rules = RotationRules::default();
        let cur = Version { id: 1, version: 1, times: KeyTimes { expires_at: Some(at(100)), ..valid() } };
        let p = plan(at(0), &cur, &[], TimeDelta::seconds(3600), &rules).expect("plan");
        assert_eq!(p.grace_ends_at, at(100));
        let p = plan(at(0), &cur, &[], TimeDelta::zero(), &rules).expect("plan");
        assert_eq!(p.grace_ends_at, at(0));
        assert!(plan(at(0), &cur, &[], TimeDelta::days(31), &rules).is_err());
    }

    #[test]
    fn a_key_in_grace_cannot_be_rotated_again() {
        let cur = Version { id: 1, version: 1, times: KeyTimes { grace_ends_at: Some(at(50)), ..valid() } };
        assert_eq!(
            plan(at(0), &cur, &[], TimeDelta::seconds(10), &RotationRules::default()),
            Err(RotationError::NotRotatable("superseded"))
        );
    }

    #[test]
    fn max_active_ends_the_oldest_or_refuses() {
        let old = Version { id: 1, version: 1, times: KeyTimes { grace_ends_at: Some(at(500)), ..valid() } };
        let cur = Version { id: 2, version: 2, times: valid() };
        let rules = RotationRules::default();
        let p = plan(at(0), &cur, std::slice::from_ref(&old), TimeDelta::seconds(60), &rules).expect("plan");
        assert_eq!(p.end_now, vec![1]);
        let refuse = RotationRules { end_oldest_when_full: false, ..rules };
        assert_eq!(plan(at(0), &cur, &[old], TimeDelta::seconds(60), &refuse), Err(RotationError::TooManyActive(2)));
        let single = RotationRules { max_active: 1, ..rules };
        assert_eq!(plan(at(0), &cur, &[], TimeDelta::seconds(60), &single).map(|p| p.grace_ends_at), Ok(at(0)));
    }

    #[test]
    fn extensions() {
        let r = RotationRules::default();
        assert!(check_extension(at(10), at(0), at(100), at(200), None, &r).is_ok());
        assert_eq!(check_extension(at(10), at(0), at(100), at(5), None, &r), Err(RotationError::ExtendIntoPast));
        assert_eq!(check_extension(at(10), at(0), at(100), at(50), None, &r), Err(RotationError::ExtendShortens));
        assert!(check_extension(at(10), at(0), at(100), at(0) + TimeDelta::days(31), None, &r).is_err());
        assert_eq!(
            check_extension(at(10), at(0), at(100), at(200), Some(at(150)), &r),
            Err(RotationError::ExtendBeyondExpiry)
        );
    }

    /// A lineage driven only through these rules, as the rotation service drives the database.
    #[derive(Debug, Clone)]
    struct Lineage {
        now: DateTime<Utc>,
        versions: Vec<Version<usize>>,
        rotations: Vec<(usize, usize, RotationState, DateTime<Utc>, bool)>,
        revoked_on_purpose: bool,
    }

    #[derive(Debug, Clone)]
    enum Op {
        Rotate(i64, bool),
        Complete,
        Rollback,
        Extend(i64),
        Advance(i64),
        Revoke,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0i64..200_000, any::<bool>()).prop_map(|(s, c)| Op::Rotate(s, c)),
            Just(Op::Complete),
            Just(Op::Rollback),
            (1i64..200_000).prop_map(Op::Extend),
            (1i64..300_000).prop_map(Op::Advance),
            Just(Op::Revoke),
        ]
    }

    impl Lineage {
        fn new() -> Self {
            Self {
                now: at(0),
                versions: vec![Version { id: 0, version: 1, times: valid() }],
                rotations: vec![],
                revoked_on_purpose: false,
            }
        }

        fn current(&self) -> usize {
            self.versions.len() - 1
        }

        fn open(&self) -> Option<usize> {
            self.rotations.iter().rposition(|r| r.2 == RotationState::InProgress)
        }

        fn apply(&mut self, op: &Op, rules: &RotationRules) {
            let now = self.now;
            match *op {
                Op::Rotate(secs, compromise) => {
                    let cur = self.current();
                    let others: Vec<_> = self.versions[..cur].to_vec();
                    if let Ok(p) = plan(now, &self.versions[cur], &others, TimeDelta::seconds(secs), rules) {
                        for id in p.end_now {
                            self.versions[id].times.grace_ends_at = Some(now);
                        }
                        self.versions[cur].times.grace_ends_at = Some(p.grace_ends_at);
                        let id = self.versions.len();
                        self.versions.push(Version { id, version: i32::try_from(id + 1).unwrap_or(0), times: valid() });
                        self.rotations.push((cur, id, RotationState::InProgress, now, compromise));
                    }
                }
                Op::Complete => {
                    if let Some(r) = self.open()
                        && let Ok(s) = self.rotations[r].2.apply(RotationAction::Complete, self.rotations[r].4)
                    {
                        self.rotations[r].2 = s;
                        let from = self.rotations[r].0;
                        self.versions[from].times.grace_ends_at = Some(now);
                    }
                }
                Op::Rollback => {
                    if let Some(r) = self.open()
                        && let Ok(s) = self.rotations[r].2.apply(RotationAction::Rollback, self.rotations[r].4)
                    {
                        let (from, to) = (self.rotations[r].0, self.rotations[r].1);
                        // Only while the old version still verifies can it become current again.
                        if KeyState::derive(&self.versions[from].times, now) == KeyState::Superseded {
                            self.rotations[r].2 = s;
                            self.versions[from].times.grace_ends_at = None;
                            self.versions[to].times.revoked_at = Some(now);
                            let moved = self.versions.remove(to);
                            self.versions.insert(from + 1, moved);
                            // Keep `current()` pointing at the restored version.
                            let restored = self.versions.remove(from);
                            self.versions.push(restored);
                            for (i, v) in self.versions.iter_mut().enumerate() {
                                v.id = i;
                            }
                            self.rotations.clear();
                        }
                    }
                }
                Op::Extend(secs) => {
                    if let Some(r) = self.open() {
                        let from = self.rotations[r].0;
                        if let Some(end) = self.versions[from].times.grace_ends_at {
                            let new_end = end + TimeDelta::seconds(secs);
                            let ok = KeyState::derive(&self.versions[from].times, now) == KeyState::Superseded
                                && check_extension(now, self.rotations[r].3, end, new_end, None, rules).is_ok();
                            if ok {
                                self.versions[from].times.grace_ends_at = Some(new_end);
                            }
                        }
                    }
                }
                Op::Advance(secs) => self.now += TimeDelta::seconds(secs),
                Op::Revoke => {
                    let cur = self.current();
                    self.versions[cur].times.revoked_at = Some(now);
                    self.revoked_on_purpose = true;
                }
            }
        }

        fn active(&self) -> usize {
            self.versions.iter().filter(|v| KeyState::derive(&v.times, self.now).verifies()).count()
        }
    }

    proptest! {
        /// No sequence of operations leaves a lineage without a valid key unless it was revoked
        /// on purpose, and it never has more than `max_active` versions verifying.
        #[test]
        fn a_lineage_always_keeps_a_valid_key(ops in proptest::collection::vec(op(), 1..40), max_active in 1u32..4) {
            let rules = RotationRules { max_active, ..RotationRules::default() };
            let mut l = Lineage::new();
            for o in &ops {
                l.apply(o, &rules);
                let n = l.active();
                if !l.revoked_on_purpose {
                    prop_assert!(n >= 1, "no valid version after {:?}", o);
                    let cur = l.current();
                    prop_assert_eq!(KeyState::derive(&l.versions[cur].times, l.now), KeyState::Valid);
                }
                prop_assert!(n <= max_active as usize, "{} active > {} after {:?}", n, max_active, o);
            }
        }
    }
}
