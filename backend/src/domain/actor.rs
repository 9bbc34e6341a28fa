//! Who acts. Stored in the audit log, `created_by` and rotation records as text
//! (`user:usr_…`, `root_key:key_…`, `consumer:con_…`, `policy:pol_…`, `playbook:run_…`,
//! `scanner:github`, `system`, `cli`); everywhere else it is this type.

use std::fmt;

/// The one who asked for a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// A member of the team, in the dashboard.
    User(String),
    /// A root key, through the management API.
    RootKey(String),
    /// A consumer acting on its own keys (self-service, the portal).
    Consumer(String),
    /// A rotation policy's schedule.
    Policy(String),
    /// A playbook run.
    PlaybookRun(String),
    /// A secret scanner that reported a leak (`github`, or the reporter's name).
    Scanner(String),
    /// Keyroll itself: jobs, retention, expiry.
    System,
    /// The command line on the server.
    Cli,
}

impl Actor {
    /// Reads back the stored form. Unknown forms are kept as the system's, since only
    /// Keyroll writes these columns.
    #[must_use]
    pub fn parse(s: &str) -> Self {
        match s.split_once(':') {
            Some(("user", id)) => Self::User(id.to_owned()),
            Some(("root_key", id)) => Self::RootKey(id.to_owned()),
            Some(("consumer", id)) => Self::Consumer(id.to_owned()),
            Some(("policy", id)) => Self::Policy(id.to_owned()),
            Some(("playbook", id)) => Self::PlaybookRun(id.to_owned()),
            Some(("scanner", who)) => Self::Scanner(who.to_owned()),
            _ if s == "cli" => Self::Cli,
            _ => Self::System,
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::User(id) => write!(f, "user:{id}"),
            Self::RootKey(id) => write!(f, "root_key:{id}"),
            Self::Consumer(id) => write!(f, "consumer:{id}"),
            Self::Policy(id) => write!(f, "policy:{id}"),
            Self::PlaybookRun(id) => write!(f, "playbook:{id}"),
            Self::Scanner(who) => write!(f, "scanner:{who}"),
            Self::System => f.write_str("system"),
            Self::Cli => f.write_str("cli"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Actor;

    #[test]
    fn stored_form_round_trips() {
        for a in [
            Actor::User("usr_1".into()),
            Actor::RootKey("key_1".into()),
            Actor::Consumer("con_1".into()),
            Actor::Policy("pol_1".into()),
            Actor::PlaybookRun("run_1".into()),
            Actor::Scanner("github".into()),
            Actor::System,
            Actor::Cli,
        ] {
            assert_eq!(Actor::parse(&a.to_string()), a);
        }
    }
}

/// Where a change was asked for: the request's id and the client's address, for the audit log.
/// Background work has neither.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    pub request_id: Option<String>,
    /// The client's address: the peer's, or behind a trusted proxy the one it forwards.
    pub ip: Option<String>,
}
