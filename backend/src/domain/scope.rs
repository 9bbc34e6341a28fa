//! Scopes: `resource:action`, with `resource:*` and `*` as wildcards in granted scopes.

use std::fmt;

/// Why a scope string is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must match resource:action (lowercase letters, digits, '_', '-', '.'; action may be '*'), or be '*'")]
pub struct ScopeError;

const MAX_PART: usize = 64;

/// One scope. `*` grants everything; `orders:*` grants every action on `orders`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Scope(String);

impl Scope {
    /// # Errors
    /// When the text is not `*` or `resource:action`.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        if Self::is_valid(s) { Ok(Self(s.to_owned())) } else { Err(ScopeError) }
    }

    /// [`Scope::parse`] without allocating, for requested scopes on the verify path.
    #[must_use]
    pub fn is_valid(s: &str) -> bool {
        s == "*" || s.split_once(':').is_some_and(|(r, a)| valid_part(r) && (a == "*" || valid_part(a)))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Does this granted scope cover the requested one?
    #[must_use]
    pub fn covers(&self, requested: &str) -> bool {
        let granted = self.0.as_str();
        if granted == "*" || granted == requested {
            return true;
        }
        match (granted.strip_suffix(":*"), requested.split_once(':')) {
            (Some(resource), Some((req_resource, _))) => resource == req_resource,
            _ => false,
        }
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn valid_part(p: &str) -> bool {
    let b = p.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_PART
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'_' | b'-' | b'.'))
}

/// The scopes granted to a key: sorted, without duplicates.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct ScopeSet(Vec<Scope>);

impl ScopeSet {
    /// The most scopes one key may carry.
    pub const MAX: usize = 100;

    #[must_use]
    pub fn new(mut scopes: Vec<Scope>) -> Self {
        scopes.sort();
        scopes.dedup();
        Self(scopes)
    }

    /// Parses each entry; the error names the index of the first bad one.
    ///
    /// # Errors
    /// `(index, error)` of the first entry that is not a scope.
    pub fn parse_all<S: AsRef<str>>(items: &[S]) -> Result<Self, (usize, ScopeError)> {
        items
            .iter()
            .enumerate()
            .map(|(i, s)| Scope::parse(s.as_ref()).map_err(|e| (i, e)))
            .collect::<Result<Vec<_>, _>>()
            .map(Self::new)
    }

    /// Trusted conversion from our own storage; entries that fail to parse are dropped.
    #[must_use]
    pub fn from_stored(items: &[String]) -> Self {
        Self::new(items.iter().filter_map(|s| Scope::parse(s).ok()).collect())
    }

    /// Are all `requested` scopes granted?
    #[must_use]
    pub fn grants_all<S: AsRef<str>>(&self, requested: &[S]) -> bool {
        requested.iter().all(|r| self.grants(r.as_ref()))
    }

    #[must_use]
    pub fn grants(&self, requested: &str) -> bool {
        self.0.iter().any(|g| g.covers(requested))
    }

    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    #[must_use]
    pub fn to_strings(&self) -> Vec<String> {
        self.0.iter().map(|s| s.0.clone()).collect()
    }
}

/// Is `scope` allowed by an API's scope catalogue? An empty catalogue allows every scope; else
/// the catalogue must grant it, or name the resource of a `resource:*` scope.
#[must_use]
pub fn in_catalogue(scope: &Scope, catalogue: &ScopeSet) -> bool {
    catalogue.is_empty()
        || catalogue.grants(scope.as_str())
        || scope
            .as_str()
            .strip_suffix(":*")
            .is_some_and(|r| catalogue.iter().any(|x| x.as_str().split(':').next() == Some(r)))
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.0).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &[&str]) -> ScopeSet {
        ScopeSet::parse_all(s).expect("valid scopes")
    }

    #[test]
    fn wildcards() {
        assert!(set(&["orders:*"]).grants("orders:read"));
        assert!(set(&["orders:*"]).grants("orders:*"));
        assert!(!set(&["orders:*"]).grants("billing:read"));
        assert!(!set(&["orders:*"]).grants("ordersx:read"));
        assert!(set(&["*"]).grants("billing:read"));
        assert!(set(&["orders:read"]).grants("orders:read"));
        assert!(!set(&["orders:read"]).grants("orders:write"));
        assert!(!set(&["orders:read"]).grants("orders:*"));
        assert!(!set(&[]).grants("orders:read"));
        assert!(set(&[]).grants_all::<&str>(&[]));
    }

    #[test]
    fn parse_rules() {
        for ok in ["*", "orders:read", "orders:*", "a.b-c_d:x1"] {
            assert!(Scope::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "orders", ":read", "orders:", "Orders:read", "*:read", "a:b:c", "or ders:read"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(ScopeSet::parse_all(&["a:b", "bad"]).err().map(|e| e.0), Some(1));
    }

    #[test]
    fn catalogue_rule() {
        let cat = set(&["orders:read", "orders:write"]);
        let ok = |s: &str| in_catalogue(&Scope::parse(s).expect("scope"), &cat);
        assert!(ok("orders:read") && ok("orders:*"));
        assert!(!ok("billing:read") && !ok("orders:delete") && !ok("*"));
        assert!(in_catalogue(&Scope::parse("anything:at_all").expect("scope"), &set(&[])));
    }

    #[test]
    fn sets_are_sorted_and_deduplicated() {
        assert_eq!(set(&["b:x", "a:x", "b:x"]).to_strings(), vec!["a:x", "b:x"]);
    }
}
