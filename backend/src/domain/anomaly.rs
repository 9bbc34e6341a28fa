//! Anomaly maths, explainable by design: every alert says what was seen, what the baseline was
//! and which threshold it crossed.
//!
//! A baseline is an exponentially weighted moving average (EWMA) over the minutes a key is used:
//! of its verifications per minute and of its failure share. Quiet minutes are left out, so a key
//! used in office hours is not "spiking" every morning; a spike is a minute far above the key's
//! usual busy minute. Rules compare one closed minute against the baseline *before* that minute
//! is folded in, so a spike cannot hide itself.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// A tenant's thresholds. Every field has a default; a tenant overrides any of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Active minutes after which a minute's weight in a baseline has halved (1–1440).
    pub half_life_minutes: u32,
    /// A baseline of fewer active minutes than this raises no rate or failure alert (0–10080).
    pub warmup_minutes: u32,
    /// Rate spike: a minute above this many times the baseline rate (1.5–1000)…
    pub rate_factor: f64,
    /// …and above this many verifications (1–10000000).
    pub rate_min: u32,
    /// Failure spike: a minute's failure share above the baseline share by this much (0.05–1)…
    pub failure_delta: f64,
    /// …with at least this many failures in the minute (1–10000000).
    pub failure_min: u32,
    /// A revoked or expired key presented this many times in a minute raises an alert (1–1000000).
    pub presented_min: u32,
    /// An old version silent this many minutes, then used from a new client IP, is a likely leak (1–43200).
    pub silence_minutes: u32,
    /// `NOT_FOUND` burst: at least this many in a minute for one API (1–10000000)…
    pub not_found_min: u32,
    /// …above this many times the API's `NOT_FOUND` baseline (1–1000)…
    pub not_found_factor: f64,
    /// …within this many minutes after a rotation started on the API (1–10080).
    pub after_rotation_minutes: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            half_life_minutes: 30,
            warmup_minutes: 30,
            rate_factor: 5.0,
            rate_min: 60,
            failure_delta: 0.25,
            failure_min: 20,
            presented_min: 1,
            silence_minutes: 60,
            not_found_min: 20,
            not_found_factor: 5.0,
            after_rotation_minutes: 60,
        }
    }
}

impl Thresholds {
    /// Every field out of its bounds, as `(field, message)`.
    #[must_use]
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut int = |name: &'static str, v: u32, lo: u32, hi: u32| {
            if !(lo..=hi).contains(&v) {
                out.push((name, format!("must be between {lo} and {hi}")));
            }
        };
        int("half_life_minutes", self.half_life_minutes, 1, 1_440);
        int("warmup_minutes", self.warmup_minutes, 0, 10_080);
        int("rate_min", self.rate_min, 1, 10_000_000);
        int("failure_min", self.failure_min, 1, 10_000_000);
        int("presented_min", self.presented_min, 1, 1_000_000);
        int("silence_minutes", self.silence_minutes, 1, 43_200);
        int("not_found_min", self.not_found_min, 1, 10_000_000);
        int("after_rotation_minutes", self.after_rotation_minutes, 1, 10_080);
        let mut real = |name: &'static str, v: f64, lo: f64, hi: f64| {
            if !v.is_finite() || v < lo || v > hi {
                out.push((name, format!("must be between {lo} and {hi}")));
            }
        };
        real("rate_factor", self.rate_factor, 1.5, 1_000.0);
        real("failure_delta", self.failure_delta, 0.05, 1.0);
        real("not_found_factor", self.not_found_factor, 1.0, 1_000.0);
        out
    }

    /// The weight of the newest minute.
    #[must_use]
    pub fn alpha(&self) -> f64 {
        1.0 - 0.5_f64.powf(1.0 / f64::from(self.half_life_minutes.max(1)))
    }

    /// A tenant's thresholds from its settings (defaults for what is missing or unreadable).
    #[must_use]
    pub fn from_settings(settings: &Value) -> Self {
        settings
            .get(SETTING)
            .and_then(|v| serde_json::from_value::<Self>(v.clone()).ok())
            .filter(|t| t.problems().is_empty())
            .unwrap_or_default()
    }
}

/// Where a tenant's thresholds live in its settings.
pub const SETTING: &str = "alert_thresholds";

/// One minute of traffic of one key (or, for `NOT_FOUND`, of one API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Unix minute (seconds / 60).
    pub at: i64,
    pub total: u64,
    /// Every outcome but `VALID`.
    pub failures: u64,
    pub revoked: u64,
    pub expired: u64,
    /// Of an API's unknown keys, those that failed their checksum (likely mistyped).
    pub malformed: u64,
}

/// A baseline, as stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    /// Verifications per active minute.
    pub rate: f64,
    /// Failures over verifications, 0–1.
    pub failure_share: f64,
    /// Active minutes folded in so far.
    pub minutes: i64,
    /// Unix minute of the last one.
    pub last: i64,
}

impl Baseline {
    /// The baseline that starts with `m`.
    #[must_use]
    pub fn first(m: &Minute) -> Self {
        Self { rate: as_f64(m.total), failure_share: share(m), minutes: 1, last: m.at }
    }

    /// Folds minute `m` in (a minute already folded in changes nothing).
    #[must_use]
    pub fn fold(&self, m: &Minute, alpha: f64) -> Self {
        if m.at <= self.last || m.total == 0 {
            return *self;
        }
        Self {
            rate: alpha.mul_add(as_f64(m.total), (1.0 - alpha) * self.rate),
            failure_share: alpha.mul_add(share(m), (1.0 - alpha) * self.failure_share),
            minutes: self.minutes + 1,
            last: m.at,
        }
    }
}

#[expect(clippy::cast_precision_loss, reason = "counts per minute are far below 2^52")]
fn as_f64(n: u64) -> f64 {
    n as f64
}

fn share(m: &Minute) -> f64 {
    if m.total == 0 { 0.0 } else { as_f64(m.failures) / as_f64(m.total) }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    RateSpike,
    FailureSpike,
    RevokedKeyUsed,
    ExpiredKeyUsed,
    OldVersionNewIp,
    NotFoundBurst,
    CreditsLow,
    RatelimitExceeded,
    KeyExpiring,
}

impl AlertKind {
    pub const ALL: [Self; 9] = [
        Self::RateSpike,
        Self::FailureSpike,
        Self::RevokedKeyUsed,
        Self::ExpiredKeyUsed,
        Self::OldVersionNewIp,
        Self::NotFoundBurst,
        Self::CreditsLow,
        Self::RatelimitExceeded,
        Self::KeyExpiring,
    ];

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::RateSpike => "rate_spike",
            Self::FailureSpike => "failure_spike",
            Self::RevokedKeyUsed => "revoked_key_used",
            Self::ExpiredKeyUsed => "expired_key_used",
            Self::OldVersionNewIp => "old_version_new_ip",
            Self::NotFoundBurst => "not_found_burst",
            Self::CreditsLow => "credits_low",
            Self::RatelimitExceeded => "ratelimit_exceeded",
            Self::KeyExpiring => "key_expiring",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// How it reads in a list.
    #[must_use]
    pub const fn title(self) -> &'static str {
        match self {
            Self::RateSpike => "Rate spike",
            Self::FailureSpike => "Failure spike",
            Self::RevokedKeyUsed => "Revoked key still presented",
            Self::ExpiredKeyUsed => "Expired key still presented",
            Self::OldVersionNewIp => "Old version back from a new IP (likely leak)",
            Self::NotFoundBurst => "NOT_FOUND burst after a rotation",
            Self::CreditsLow => "Credits low",
            Self::RatelimitExceeded => "Rate limit exceeded",
            Self::KeyExpiring => "Key expiring",
        }
    }

    /// `critical`, `warning` or `info`.
    #[must_use]
    pub const fn severity(self) -> &'static str {
        match self {
            Self::OldVersionNewIp | Self::RevokedKeyUsed => "critical",
            Self::RateSpike | Self::FailureSpike | Self::NotFoundBurst | Self::ExpiredKeyUsed => "warning",
            Self::CreditsLow | Self::RatelimitExceeded | Self::KeyExpiring => "info",
        }
    }

    /// Raised by the detector (announced as `alert.raised`), rather than recorded beside an
    /// event of its own (`credits.low`, `ratelimit.exceeded`, `key.expiring`).
    #[must_use]
    pub const fn detected(self) -> bool {
        !matches!(self, Self::CreditsLow | Self::RatelimitExceeded | Self::KeyExpiring)
    }
}

/// A rule that broke: what, in a sentence, and the figures behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub kind: AlertKind,
    pub summary: String,
    pub evidence: Value,
}

fn minute_label(at: i64) -> String {
    chrono::DateTime::from_timestamp(at * 60, 0).map_or_else(String::new, |t| t.format("%H:%M UTC").to_string())
}

fn minute_rfc(at: i64) -> String {
    chrono::DateTime::from_timestamp(at * 60, 0).map(crate::time::rfc3339).unwrap_or_default()
}

/// The rules for one key's minute against its baseline (none yet for a key's first minute).
#[must_use]
pub fn key_findings(m: &Minute, before: Option<&Baseline>, t: &Thresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let at = minute_rfc(m.at);
    if m.revoked >= u64::from(t.presented_min) {
        out.push(Finding {
            kind: AlertKind::RevokedKeyUsed,
            summary: format!(
                "A revoked key was presented {} time(s) in the minute at {}. Whoever holds it has not switched, \
                 or it is being tried by someone who should not have it.",
                m.revoked,
                minute_label(m.at)
            ),
            evidence: json!({"minute": at, "presented": m.revoked, "threshold": t.presented_min}),
        });
    }
    if m.expired >= u64::from(t.presented_min) {
        out.push(Finding {
            kind: AlertKind::ExpiredKeyUsed,
            summary: format!(
                "An expired key was presented {} time(s) in the minute at {}: a client still uses a version that \
                 no longer works.",
                m.expired,
                minute_label(m.at)
            ),
            evidence: json!({"minute": at, "presented": m.expired, "threshold": t.presented_min}),
        });
    }
    let Some(b) = before else { return out };
    let age = b.minutes;
    if age < i64::from(t.warmup_minutes) {
        return out;
    }
    let expected = b.rate;
    let observed = as_f64(m.total);
    if m.total >= u64::from(t.rate_min) && observed > t.rate_factor * expected {
        let ratio = if expected > 0.0 { format!("{:.1}×", observed / expected) } else { "far above".to_owned() };
        out.push(Finding {
            kind: AlertKind::RateSpike,
            summary: format!(
                "{} verifications in the minute at {}, {ratio} the baseline of {expected:.1} per minute \
                 (alert above {}× and at least {}).",
                m.total,
                minute_label(m.at),
                t.rate_factor,
                t.rate_min
            ),
            evidence: json!({
                "minute": at, "observed": m.total, "baseline_per_minute": round2(expected),
                "factor": t.rate_factor, "minimum": t.rate_min, "baseline_minutes": age,
            }),
        });
    }
    let observed_share = share(m);
    if m.failures >= u64::from(t.failure_min) && observed_share >= b.failure_share + t.failure_delta {
        out.push(Finding {
            kind: AlertKind::FailureSpike,
            summary: format!(
                "{} of {} verifications failed in the minute at {} ({:.0} %), against a baseline of {:.1} % \
                 (alert {:.0} points above it, with at least {} failures).",
                m.failures,
                m.total,
                minute_label(m.at),
                observed_share * 100.0,
                b.failure_share * 100.0,
                t.failure_delta * 100.0,
                t.failure_min
            ),
            evidence: json!({
                "minute": at, "failures": m.failures, "total": m.total,
                "failure_share": round2(observed_share), "baseline_share": round2(b.failure_share),
                "delta": t.failure_delta, "minimum": t.failure_min, "baseline_minutes": age,
            }),
        });
    }
    out
}

/// A `NOT_FOUND` burst on an API shortly after a rotation started there.
#[must_use]
pub fn not_found_burst(
    m: &Minute,
    before: Option<&Baseline>,
    rotation_started: Option<(i64, &str)>,
    t: &Thresholds,
) -> Option<Finding> {
    let (started, rotation_id) = rotation_started?;
    let since = m.at - started;
    if !(0..=i64::from(t.after_rotation_minutes)).contains(&since) || m.total < u64::from(t.not_found_min) {
        return None;
    }
    let expected = before.map_or(0.0, |b| b.rate);
    if as_f64(m.total) <= t.not_found_factor * expected {
        return None;
    }
    Some(Finding {
        kind: AlertKind::NotFoundBurst,
        summary: format!(
            "{} verifications of unknown keys of this API in the minute at {} ({} NOT_FOUND, {} MALFORMED), \
             {since} minute(s) after rotation {} started, against a baseline of {expected:.1} per minute: a client \
             may have rolled out a mistyped or wrong key.",
            m.total,
            minute_label(m.at),
            m.total - m.malformed,
            m.malformed,
            rotation_id
        ),
        evidence: json!({
            "minute": minute_rfc(m.at), "unknown_keys": m.total, "not_found": m.total - m.malformed,
            "malformed": m.malformed, "baseline_per_minute": round2(expected), "factor": t.not_found_factor,
            "minimum": t.not_found_min, "rotation_id": rotation_id, "minutes_after_rotation": since,
        }),
    })
}

/// An old version used again from a client address it never had, after a silence.
#[must_use]
pub fn old_version_new_ip(
    at: i64,
    ip: &str,
    previous_use: Option<i64>,
    known_ips: u64,
    t: &Thresholds,
) -> Option<Finding> {
    let prev = previous_use?;
    let silent = at - prev;
    if known_ips == 0 || silent < i64::from(t.silence_minutes) {
        return None;
    }
    Some(Finding {
        kind: AlertKind::OldVersionNewIp,
        summary: format!(
            "This superseded version was silent for {silent} minute(s) and was used again at {} from {ip}, an \
             address it was never used from: the old key has probably leaked.",
            minute_label(at)
        ),
        evidence: json!({
            "minute": minute_rfc(at), "ip": ip, "silent_minutes": silent, "previous_use": minute_rfc(prev),
            "known_ips": known_ips, "silence_threshold_minutes": t.silence_minutes,
        }),
    })
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minute(at: i64, total: u64, failures: u64) -> Minute {
        Minute { at, total, failures, revoked: 0, expired: 0, malformed: 0 }
    }

    /// An hour of steady traffic, as the detector would fold it.
    fn warmed(rate: u64, failures: u64) -> Baseline {
        let t = Thresholds::default();
        let mut b = Baseline::first(&minute(0, rate, failures));
        for at in 1..60 {
            b = b.fold(&minute(at, rate, failures), t.alpha());
        }
        b
    }

    #[test]
    fn steady_traffic_raises_nothing() {
        let t = Thresholds::default();
        let b = warmed(100, 1);
        for n in [80, 100, 140, 300] {
            assert!(key_findings(&minute(60, n, 2), Some(&b), &t).is_empty(), "{n}");
        }
    }

    #[test]
    fn a_rate_spike_is_explained() {
        let t = Thresholds::default();
        let b = warmed(100, 1);
        let f = key_findings(&minute(60, 900, 9), Some(&b), &t);
        assert_eq!(f.len(), 1, "{f:?}");
        assert_eq!(f[0].kind, AlertKind::RateSpike);
        assert!(f[0].summary.contains("900 verifications") && f[0].summary.contains("9.0×"), "{}", f[0].summary);
        assert_eq!(f[0].evidence["baseline_per_minute"], 100.0);
    }

    #[test]
    fn low_volume_and_young_baselines_do_not_alert() {
        let t = Thresholds::default();
        let b = warmed(2, 0);
        assert!(key_findings(&minute(60, 50, 0), Some(&b), &t).is_empty(), "below the minimum");
        let young = Baseline::first(&minute(0, 10, 0));
        assert!(key_findings(&minute(500, 1_000, 900), Some(&young), &t).is_empty(), "warming up");
    }

    #[test]
    fn a_failure_spike_needs_share_and_count() {
        let t = Thresholds::default();
        let b = warmed(100, 2);
        let f = key_findings(&minute(60, 100, 60), Some(&b), &t);
        assert_eq!(f.iter().map(|f| f.kind).collect::<Vec<_>>(), vec![AlertKind::FailureSpike]);
        assert!(key_findings(&minute(60, 10, 9), Some(&b), &t).is_empty(), "too few failures");
    }

    #[test]
    fn quiet_minutes_are_left_out() {
        let t = Thresholds::default();
        let b = warmed(100, 0);
        // Traffic resuming at its usual rate after a night's silence is not a spike.
        assert!(key_findings(&minute(60 + 600, 110, 0), Some(&b), &t).is_empty());
        assert_eq!(b.fold(&minute(700, 0, 0), t.alpha()), b, "a quiet minute changes nothing");
        let moved = b.fold(&minute(700, 200, 0), t.alpha());
        assert!((moved.rate - 100.0 - 100.0 * t.alpha()).abs() < 1e-9, "{moved:?}");
        assert_eq!(moved.minutes, 61);
    }

    #[test]
    fn revoked_and_expired_presentations() {
        let t = Thresholds::default();
        let m = Minute { at: 5, total: 3, failures: 3, revoked: 2, expired: 1, malformed: 0 };
        let kinds: Vec<_> = key_findings(&m, None, &t).into_iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![AlertKind::RevokedKeyUsed, AlertKind::ExpiredKeyUsed]);
        let strict = Thresholds { presented_min: 5, ..t };
        assert!(key_findings(&m, None, &strict).is_empty());
    }

    #[test]
    fn not_found_bursts_only_after_a_rotation() {
        let t = Thresholds::default();
        let m = minute(100, 40, 40);
        assert!(not_found_burst(&m, None, None, &t).is_none(), "no rotation");
        assert!(not_found_burst(&m, None, Some((10, "rot_x")), &t).is_none(), "too long after");
        let f = not_found_burst(&m, None, Some((95, "rot_x")), &t).expect("burst");
        assert_eq!(f.evidence["minutes_after_rotation"], 5);
        let noisy = Baseline { rate: 30.0, failure_share: 1.0, minutes: 99, last: 99 };
        assert!(not_found_burst(&m, Some(&noisy), Some((95, "rot_x")), &t).is_none(), "usual noise");
    }

    #[test]
    fn old_version_back_from_a_new_address() {
        let t = Thresholds::default();
        assert!(old_version_new_ip(200, "203.0.113.9", Some(100), 1, &t).is_some());
        assert!(old_version_new_ip(200, "203.0.113.9", Some(190), 1, &t).is_none(), "not silent long");
        assert!(old_version_new_ip(200, "203.0.113.9", None, 1, &t).is_none(), "never used before");
        assert!(old_version_new_ip(200, "203.0.113.9", Some(100), 0, &t).is_none(), "no known address");
    }

    #[test]
    fn thresholds_are_bounded_and_read_from_settings() {
        let bad = Thresholds { rate_factor: 1.0, half_life_minutes: 0, ..Thresholds::default() };
        let fields: Vec<_> = bad.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["half_life_minutes", "rate_factor"]);
        let s = json!({SETTING: {"rate_min": 5}});
        assert_eq!(Thresholds::from_settings(&s).rate_min, 5);
        assert_eq!(Thresholds::from_settings(&json!({SETTING: {"rate_min": 0}})), Thresholds::default());
    }
}
