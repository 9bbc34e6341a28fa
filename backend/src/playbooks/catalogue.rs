//! The step catalogue and the built-in playbooks: what a playbook may contain and the rules a
//! definition must satisfy before it is saved or run. Pure: no database, no clock.

use serde::{Deserialize, Serialize};

/// What a playbook acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetKind {
    /// One key (the version reported or chosen).
    Key,
    /// Every key of one consumer.
    Consumer,
    /// Every key of one API, optionally only those issued before a moment.
    Api,
    /// One rotation.
    Rotation,
}

impl TargetKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::Consumer => "consumer",
            Self::Api => "api",
            Self::Rotation => "rotation",
        }
    }
}

/// One step of the catalogue, with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Issue a new version of every targeted key; the old one stays valid for the overlap.
    Rotate {
        #[serde(default = "default_overlap")]
        overlap_seconds: i64,
    },
    /// Refuse every targeted key at once.
    Revoke {},
    /// Bring the end of grace of targeted versions forward to at most `grace_seconds` from now.
    ShortenGrace { grace_seconds: i64 },
    /// Undo the targeted rotation (not for rotations caused by a compromise).
    Rollback {},
    /// Tell each affected consumer, by email and on its webhook endpoints.
    Notify {
        #[serde(default)]
        message: Option<String>,
    },
    /// Wait until the old versions have been silent for `quiet_seconds`, or their grace ended;
    /// fails after `timeout_seconds`.
    WaitForDrain {
        #[serde(default = "default_quiet")]
        quiet_seconds: i64,
        #[serde(default = "default_drain_timeout")]
        timeout_seconds: i64,
    },
    /// Stop until a second person approves the run.
    RequireApproval {},
    /// Check the outcome and record the evidence: old versions refused by every live node, new
    /// versions accepted, notifications delivered, audit entries written.
    Validate {},
}

const fn default_overlap() -> i64 {
    900
}
const fn default_quiet() -> i64 {
    3_600
}
const fn default_drain_timeout() -> i64 {
    7 * 86_400
}

impl Step {
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Rotate { .. } => "rotate",
            Self::Revoke {} => "revoke",
            Self::ShortenGrace { .. } => "shorten_grace",
            Self::Rollback {} => "rollback",
            Self::Notify { .. } => "notify",
            Self::WaitForDrain { .. } => "wait_for_drain",
            Self::RequireApproval {} => "require_approval",
            Self::Validate {} => "validate",
        }
    }

    /// What the step does, in one sentence, for plans and pages.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            Self::Rotate { overlap_seconds: 0 } => {
                "Issue a new version of each key; the old one stops working at once".into()
            }
            Self::Rotate { overlap_seconds } => {
                format!("Issue a new version of each key; the old one stays valid for {}", span(*overlap_seconds))
            }
            Self::Revoke {} => "Revoke each key at once".into(),
            Self::ShortenGrace { grace_seconds: 0 } => "End the grace of each old version now".into(),
            Self::ShortenGrace { grace_seconds } => {
                format!("End the grace of each old version within {}", span(*grace_seconds))
            }
            Self::Rollback {} => "Roll the rotation back: the old version becomes current again".into(),
            Self::Notify { .. } => "Notify each affected consumer by email and webhook".into(),
            Self::WaitForDrain { quiet_seconds, timeout_seconds } => format!(
                "Wait until the old versions have been silent for {} (at most {})",
                span(*quiet_seconds),
                span(*timeout_seconds)
            ),
            Self::RequireApproval {} => "Wait for a second person to approve".into(),
            Self::Validate {} => {
                "Check that every live node refuses the old versions and accepts the new ones, that the \
                 notifications went out and that the audit log has the changes"
                    .into()
            }
        }
    }
}

/// `90 s`, `15 min`, `2 h`, `3 d`.
fn span(s: i64) -> String {
    match s {
        s if s % 86_400 == 0 && s > 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 && s > 0 => format!("{} h", s / 3_600),
        s if s % 60 == 0 && s > 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// A playbook: a name, what it targets and its ordered steps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Definition {
    pub name: String,
    pub description: String,
    pub target: TargetKind,
    pub steps: Vec<Step>,
}

/// A rule a definition breaks: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

const MAX_STEPS: usize = 20;
const DAY: i64 = 86_400;

impl Definition {
    /// Checks the whole definition; every problem is reported, not only the first.
    #[must_use]
    pub fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut push = |field: String, message: &str| out.push(Problem { field, message: message.to_owned() });
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            push("name".into(), "must be 1 to 100 characters");
        }
        if self.description.chars().count() > 1_000 {
            push("description".into(), "must be at most 1000 characters");
        }
        if self.steps.is_empty() || self.steps.len() > MAX_STEPS {
            push("steps".into(), "must have 1 to 20 steps");
        }
        let mut changes = false;
        for (i, step) in self.steps.iter().enumerate() {
            let field = |p: &str| format!("steps[{i}]{p}");
            let on_rotation = self.target == TargetKind::Rotation;
            match step {
                Step::Rotate { overlap_seconds } => {
                    if on_rotation {
                        push(field(".kind"), "rotate acts on keys; a rotation target takes rollback");
                    }
                    if !(0..=30 * DAY).contains(overlap_seconds) {
                        push(field(".overlap_seconds"), "must be between 0 and 2592000");
                    }
                    changes = true;
                }
                Step::Revoke {} => {
                    if on_rotation {
                        push(field(".kind"), "revoke acts on keys; a rotation target takes rollback");
                    }
                    changes = true;
                }
                Step::ShortenGrace { grace_seconds } => {
                    if !(0..=7 * DAY).contains(grace_seconds) {
                        push(field(".grace_seconds"), "must be between 0 and 604800");
                    }
                    changes = true;
                }
                Step::Rollback {} => {
                    if !on_rotation {
                        push(field(".kind"), "rollback needs a rotation target");
                    }
                    changes = true;
                }
                Step::Notify { message } => {
                    if message.as_ref().is_some_and(|m| m.chars().count() > 2_000) {
                        push(field(".message"), "must be at most 2000 characters");
                    }
                }
                Step::WaitForDrain { quiet_seconds, timeout_seconds } => {
                    if !(60..=7 * DAY).contains(quiet_seconds) {
                        push(field(".quiet_seconds"), "must be between 60 and 604800");
                    }
                    if !(60..=30 * DAY).contains(timeout_seconds) {
                        push(field(".timeout_seconds"), "must be between 60 and 2592000");
                    }
                    if !self.steps[..i].iter().any(|s| matches!(s, Step::Rotate { .. })) {
                        push(field(".kind"), "wait_for_drain needs a rotate step before it");
                    }
                }
                Step::RequireApproval {} => {
                    if i > 0 && matches!(self.steps[i - 1], Step::RequireApproval {}) {
                        push(field(".kind"), "one approval step in a row is enough");
                    }
                }
                Step::Validate {} => {
                    if !self.steps[..i].iter().any(|s| {
                        matches!(
                            s,
                            Step::Rotate { .. } | Step::Revoke {} | Step::ShortenGrace { .. } | Step::Rollback {}
                        )
                    }) {
                        push(
                            field(".kind"),
                            "validate checks earlier changes; put it after a rotate, revoke, shorten_grace or rollback step",
                        );
                    }
                }
            }
        }
        if !self.steps.is_empty() && !changes {
            push("steps".into(), "must change something: add rotate, revoke, shorten_grace or rollback");
        }
        out
    }
}

/// A built-in playbook: its fixed id and definition.
#[derive(Debug, Clone)]
pub struct Builtin {
    pub id: &'static str,
    pub definition: Definition,
}

/// The playbooks every tenant has.
#[must_use]
pub fn builtins() -> Vec<Builtin> {
    let d = |name: &str, description: &str, target, steps| Definition {
        name: name.into(),
        description: description.into(),
        target,
        steps,
    };
    vec![
        Builtin {
            id: "leaked_key",
            definition: d(
                "Leaked key",
                "A key was exposed: issue a new version, tell the consumer, and as soon as traffic has \
                 left the old version (15 quiet minutes, at most an hour) end it, then prove every node \
                 refuses it.",
                TargetKind::Key,
                vec![
                    Step::Rotate { overlap_seconds: 3_600 },
                    Step::Notify { message: None },
                    Step::WaitForDrain { quiet_seconds: 900, timeout_seconds: 3_600 },
                    Step::ShortenGrace { grace_seconds: 0 },
                    Step::Validate {},
                ],
            ),
        },
        Builtin {
            id: "compromised_consumer",
            definition: d(
                "Compromised consumer",
                "A consumer's systems were breached: every one of its keys gets a new version, the consumer is \
                 told, and the old versions end within an hour.",
                TargetKind::Consumer,
                vec![Step::Rotate { overlap_seconds: 3_600 }, Step::Notify { message: None }, Step::Validate {}],
            ),
        },
        Builtin {
            id: "mass_rotation",
            definition: d(
                "Breach: mass rotation",
                "Keys of an API may have been exposed together: after a second person approves, every key \
                 (or those issued before a moment) gets a new version and each consumer is told.",
                TargetKind::Api,
                vec![
                    Step::RequireApproval {},
                    Step::Rotate { overlap_seconds: 86_400 },
                    Step::Notify { message: None },
                    Step::Validate {},
                ],
            ),
        },
        Builtin {
            id: "rollback_rotation",
            definition: d(
                "Roll back a rotation",
                "A rotation broke a consumer: the old version becomes current again and the new one is ended.",
                TargetKind::Rotation,
                vec![Step::Rollback {}, Step::Notify { message: None }, Step::Validate {}],
            ),
        },
    ]
}

/// The built-in playbook with this id.
#[must_use]
pub fn builtin(id: &str) -> Option<Builtin> {
    builtins().into_iter().find(|b| b.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(target: TargetKind, steps: Vec<Step>) -> Definition {
        Definition { name: "X".into(), description: String::new(), target, steps }
    }

    #[test]
    fn builtins_are_valid() {
        for b in builtins() {
            assert!(b.definition.problems().is_empty(), "{}: {:?}", b.id, b.definition.problems());
        }
    }

    #[test]
    fn steps_must_fit_the_target_and_their_order() {
        let p = def(TargetKind::Rotation, vec![Step::Rotate { overlap_seconds: 60 }]);
        assert_eq!(p.problems()[0].field, "steps[0].kind");
        let p = def(TargetKind::Key, vec![Step::Rollback {}]);
        assert_eq!(p.problems()[0].field, "steps[0].kind");
        let p = def(TargetKind::Key, vec![Step::Validate {}, Step::Revoke {}]);
        assert_eq!(p.problems().len(), 1);
        assert_eq!(p.problems()[0].field, "steps[0].kind");
        let p = def(TargetKind::Key, vec![Step::Notify { message: None }]);
        assert_eq!(p.problems()[0].field, "steps");
        let p = def(
            TargetKind::Key,
            vec![Step::WaitForDrain { quiet_seconds: 600, timeout_seconds: 3600 }, Step::Revoke {}],
        );
        assert_eq!(p.problems()[0].field, "steps[0].kind");
        let p = def(TargetKind::Api, vec![Step::RequireApproval {}, Step::RequireApproval {}, Step::Revoke {}]);
        assert_eq!(p.problems()[0].field, "steps[1].kind");
    }

    #[test]
    fn bounds_and_names_are_checked() {
        let mut p = def(
            TargetKind::Key,
            vec![Step::Rotate { overlap_seconds: -1 }, Step::ShortenGrace { grace_seconds: 10 * DAY }],
        );
        p.name = " ".into();
        let fields: Vec<String> = p.problems().into_iter().map(|x| x.field).collect();
        assert_eq!(fields, ["name", "steps[0].overlap_seconds", "steps[1].grace_seconds"]);
        let p = def(TargetKind::Key, vec![Step::Revoke {}; 21]);
        assert_eq!(p.problems()[0].field, "steps");
    }

    #[test]
    fn steps_read_and_write_as_tagged_json() {
        let s: Vec<Step> = serde_json::from_str(
            r#"[{"kind":"rotate"},{"kind":"shorten_grace","grace_seconds":60},{"kind":"require_approval"}]"#,
        )
        .expect("steps");
        assert_eq!(s[0], Step::Rotate { overlap_seconds: 900 });
        assert_eq!(
            serde_json::to_value(&s[1]).expect("json"),
            serde_json::json!({"kind":"shorten_grace","grace_seconds":60})
        );
        assert!(serde_json::from_str::<Step>(r#"{"kind":"explode"}"#).is_err());
        assert!(serde_json::from_str::<Step>(r#"{"kind":"revoke","extra":1}"#).is_err());
    }
}
