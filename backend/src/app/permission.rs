//! What an actor may do. Root-key scopes and member roles both map to [`Permission`]s, and
//! operations check a permission, never a scope string or a role name.

use crate::domain::ScopeSet;

/// One thing an actor may be allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    ApisRead,
    ApisWrite,
    ConsumersRead,
    ConsumersWrite,
    KeysRead,
    KeysWrite,
    KeysRotate,
    PoliciesWrite,
    PlaybooksRun,
    AuditRead,
    WebhooksWrite,
    /// Portal links for consumers, and the portal's branding and sign-in options.
    PortalWrite,
    /// Token signing keys: list, rotate, revoke.
    TokensWrite,
    /// The plan, usage against its limits, invoices (owners, and root keys with the scope).
    BillingRead,
    /// Root keys: create, list, rotate, revoke. Only a root key with `*` has it.
    RootKeys,
    /// Members and invitations.
    Members,
    /// The team's own settings (audit retention).
    Tenant,
}

impl Permission {
    /// Every permission, in the order of the scope list.
    pub const ALL: [Self; 17] = [
        Self::ApisRead,
        Self::ApisWrite,
        Self::ConsumersRead,
        Self::ConsumersWrite,
        Self::KeysRead,
        Self::KeysWrite,
        Self::KeysRotate,
        Self::PoliciesWrite,
        Self::PlaybooksRun,
        Self::AuditRead,
        Self::WebhooksWrite,
        Self::PortalWrite,
        Self::TokensWrite,
        Self::BillingRead,
        Self::RootKeys,
        Self::Members,
        Self::Tenant,
    ];

    /// The root-key scope that grants it (`*` for those only a full root key has).
    #[must_use]
    pub const fn scope(self) -> &'static str {
        match self {
            Self::ApisRead => "apis:read",
            Self::ApisWrite => "apis:write",
            Self::ConsumersRead => "consumers:read",
            Self::ConsumersWrite => "consumers:write",
            Self::KeysRead => "keys:read",
            Self::KeysWrite => "keys:write",
            Self::KeysRotate => "keys:rotate",
            Self::PoliciesWrite => "policies:write",
            Self::PlaybooksRun => "playbooks:run",
            Self::AuditRead => "audit:read",
            Self::WebhooksWrite => "webhooks:write",
            Self::PortalWrite => "portal:write",
            Self::TokensWrite => "tokens:write",
            Self::BillingRead => "billing:read",
            Self::RootKeys | Self::Members | Self::Tenant => "*",
        }
    }

    /// The least role that has it.
    #[must_use]
    pub const fn least_role(self) -> Role {
        match self {
            Self::ApisRead | Self::ConsumersRead | Self::KeysRead | Self::AuditRead => Role::Viewer,
            Self::ConsumersWrite | Self::KeysWrite | Self::KeysRotate | Self::PlaybooksRun => Role::Developer,
            Self::ApisWrite
            | Self::PoliciesWrite
            | Self::WebhooksWrite
            | Self::PortalWrite
            | Self::TokensWrite
            | Self::RootKeys
            | Self::Members => Role::Admin,
            Self::Tenant | Self::BillingRead => Role::Owner,
        }
    }

    const fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// The scopes a root key can hold, besides `*`: one per permission that a scope grants.
pub const ROOT_SCOPES: &[&str] = &[
    "apis:read",
    "apis:write",
    "consumers:read",
    "consumers:write",
    "keys:read",
    "keys:write",
    "keys:rotate",
    "policies:write",
    "playbooks:run",
    "audit:read",
    "webhooks:write",
    "portal:write",
    "tokens:write",
    "billing:read",
];

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Grants(u32);

impl Grants {
    /// Everything (the system, the command line, a policy or playbook acting for the team).
    #[must_use]
    pub fn all() -> Self {
        Self(Permission::ALL.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// Nothing (a consumer: its operations check ownership instead).
    #[must_use]
    pub const fn none() -> Self {
        Self(0)
    }

    /// Exactly these.
    #[must_use]
    pub fn only(ps: &[Permission]) -> Self {
        Self(ps.iter().fold(0, |acc, p| acc | p.bit()))
    }

    /// What a root key's scopes grant.
    #[must_use]
    pub fn of_scopes(scopes: &ScopeSet) -> Self {
        Self(Permission::ALL.iter().filter(|p| scopes.grants(p.scope())).fold(0, |acc, p| acc | p.bit()))
    }

    /// What a member's role grants.
    #[must_use]
    pub fn of_role(role: Role) -> Self {
        Self(Permission::ALL.iter().filter(|p| role <= p.least_role()).fold(0, |acc, p| acc | p.bit()))
    }

    #[must_use]
    pub const fn has(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }
}

/// Roles in a tenant, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Owner,
    Admin,
    Developer,
    Viewer,
}

impl Role {
    /// Every role, most powerful first.
    pub const ALL: [Self; 4] = [Self::Owner, Self::Admin, Self::Developer, Self::Viewer];

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Owner => "owner",
            Self::Admin => "admin",
            Self::Developer => "developer",
            Self::Viewer => "viewer",
        }
    }

    /// Consumers and keys: create, rotate, revoke.
    #[must_use]
    pub fn can_manage_keys(self) -> bool {
        Grants::of_role(self).has(Permission::KeysWrite)
    }

    /// APIs, policies, webhooks, root keys and members.
    #[must_use]
    pub fn can_administer(self) -> bool {
        Grants::of_role(self).has(Permission::ApisWrite)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_nest_and_scopes_map_one_to_one() {
        for w in Role::ALL.windows(2) {
            let (more, less) = (Grants::of_role(w[0]), Grants::of_role(w[1]));
            assert!(Permission::ALL.iter().all(|p| !less.has(*p) || more.has(*p)), "{:?} ⊇ {:?}", w[0], w[1]);
        }
        assert_eq!(Grants::of_role(Role::Owner), Grants::all());
        assert!(!Grants::of_role(Role::Viewer).has(Permission::KeysWrite));
        let all = ScopeSet::parse_all(&["*"]).expect("scope");
        assert_eq!(Grants::of_scopes(&all), Grants::all());
        let one = ScopeSet::parse_all(&["keys:write"]).expect("scope");
        let g = Grants::of_scopes(&one);
        assert!(g.has(Permission::KeysWrite) && !g.has(Permission::KeysRead) && !g.has(Permission::RootKeys));
        for s in ROOT_SCOPES {
            assert!(Permission::ALL.iter().any(|p| p.scope() == *s), "{s} maps to a permission");
        }
    }
}
