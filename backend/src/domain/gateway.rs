//! How a gateway asks about a request it holds: which header carries the key, and which scopes
//! each route needs (method and path prefix → scopes). An API's rules, checked once when set.

use serde::{Deserialize, Serialize};

use super::scope::Scope;

/// Routes per API at most.
pub const MAX_ROUTES: usize = 200;
/// The longest path prefix.
pub const MAX_PREFIX: usize = 512;
/// Methods a route may name (`*`: any).
pub const METHODS: [&str; 8] = ["*", "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// One rule as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayRoute {
    /// `GET`, `POST`, … or `*` for any (the default).
    #[serde(default = "any")]
    pub method: String,
    /// `/orders` matches `/orders`, `/orders/7` and `/orders?x`, not `/ordersx`.
    pub path_prefix: String,
    /// Every one is required of the key.
    #[serde(default)]
    pub scopes: Vec<String>,
}

fn any() -> String {
    "*".into()
}

fn authorization() -> String {
    "authorization".into()
}

/// An API's gateway rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The request header that carries the key: `authorization` (the `Bearer` scheme, the
    /// default) or any other header name, whose whole value is the key (`x-api-key`).
    #[serde(default = "authorization")]
    pub header: String,
    /// Route → scopes. Without routes a valid key passes on any route; with routes, a request
    /// that matches none is refused (403). The longest matching prefix decides.
    #[serde(default)]
    pub routes: Vec<GatewayRoute>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self { header: authorization(), routes: Vec::new() }
    }
}

/// What a request needs, by the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs<'a> {
    /// These scopes (perhaps none).
    Scopes(&'a [String]),
    /// No route matches: refused.
    NoRoute,
}

impl GatewayConfig {
    /// Checks and normalises the rules (header lower-cased, methods upper-cased).
    ///
    /// # Errors
    /// `(field, message)` for the first rule broken, the field named as in the request.
    pub fn check(mut self) -> Result<Self, (String, String)> {
        let h = self.header.trim().to_ascii_lowercase();
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if h.is_empty() || h.len() > 64 || !h.bytes().all(token) {
            return Err(("gateway.header".into(), "must be a header name of 1 to 64 characters".into()));
        }
        if matches!(h.as_str(), "host" | "content-length" | "transfer-encoding" | "cookie" | "connection") {
            return Err(("gateway.header".into(), "cannot be a header the gateway itself uses".into()));
        }
        self.header = h;
        if self.routes.len() > MAX_ROUTES {
            return Err(("gateway.routes".into(), format!("must have at most {MAX_ROUTES} routes")));
        }
        for (i, r) in self.routes.iter_mut().enumerate() {
            let m = r.method.trim().to_ascii_uppercase();
            if !METHODS.contains(&m.as_str()) {
                return Err((format!("gateway.routes[{i}].method"), format!("must be one of {}", METHODS.join(", "))));
            }
            r.method = m;
            let p = &r.path_prefix;
            if !p.starts_with('/')
                || p.len() > MAX_PREFIX
                || p.contains(['?', '#', ' '])
                || p.chars().any(char::is_control)
            {
                return Err((
                    format!("gateway.routes[{i}].path_prefix"),
                    format!("must start with / and be at most {MAX_PREFIX} characters, without ? # or spaces"),
                ));
            }
            if r.scopes.len() > 100 {
                return Err((format!("gateway.routes[{i}].scopes"), "must have at most 100 scopes".into()));
            }
            if let Some(j) = r.scopes.iter().position(|s| !Scope::is_valid(s)) {
                return Err((format!("gateway.routes[{i}].scopes[{j}]"), super::scope::ScopeError.to_string()));
            }
        }
        Ok(self)
    }

    /// The scopes a request needs: the matching route with the longest prefix (a route for
    /// its method before one for any method).
    #[must_use]
    pub fn needs(&self, method: &str, path: &str) -> Needs<'_> {
        if self.routes.is_empty() {
            return Needs::Scopes(&[]);
        }
        let path = path.split(['?', '#']).next().unwrap_or("");
        self.routes
            .iter()
            .filter(|r| r.method == "*" || r.method.eq_ignore_ascii_case(method))
            .filter(|r| prefix_matches(&r.path_prefix, path))
            .max_by_key(|r| (r.path_prefix.len(), r.method != "*"))
            .map_or(Needs::NoRoute, |r| Needs::Scopes(&r.scopes))
    }

    /// The key in the header's value: after `Bearer ` for `authorization`, else all of it.
    #[must_use]
    pub fn key_in<'v>(&self, value: &'v str) -> Option<&'v str> {
        let value = value.trim();
        let key = if self.header == "authorization" {
            let (scheme, rest) = value.split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("bearer") {
                return None;
            }
            rest.trim()
        } else {
            value
        };
        (!key.is_empty()).then_some(key)
    }
}

/// `/orders` matches `/orders`, `/orders/…`; `/orders/` matches what starts with it; `/` all.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || prefix.ends_with('/') || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> GatewayConfig {
        GatewayConfig {
            header: " X-API-Key ".into(),
            routes: vec![
                GatewayRoute { method: "*".into(), path_prefix: "/orders".into(), scopes: vec!["orders:read".into()] },
                GatewayRoute {
                    method: "post".into(),
                    path_prefix: "/orders".into(),
                    scopes: vec!["orders:write".into()],
                },
                GatewayRoute {
                    method: "GET".into(),
                    path_prefix: "/orders/admin".into(),
                    scopes: vec!["admin:*".into()],
                },
                GatewayRoute { method: "GET".into(), path_prefix: "/health".into(), scopes: vec![] },
            ],
        }
        .check()
        .expect("valid rules")
    }

    #[test]
    fn the_longest_matching_route_decides() {
        let g = rules();
        assert_eq!(g.header, "x-api-key");
        let s = |m, p| match g.needs(m, p) {
            Needs::Scopes(s) => Some(s.join(" ")),
            Needs::NoRoute => None,
        };
        assert_eq!(s("GET", "/orders/7?full=1").as_deref(), Some("orders:read"));
        assert_eq!(s("POST", "/orders").as_deref(), Some("orders:write"), "its own method first");
        assert_eq!(s("GET", "/orders/admin/x").as_deref(), Some("admin:*"));
        assert_eq!(s("GET", "/health").as_deref(), Some(""));
        assert_eq!(s("GET", "/ordersx"), None, "segment boundaries");
        assert_eq!(s("DELETE", "/health"), None);
        assert_eq!(GatewayConfig::default().needs("GET", "/anything"), Needs::Scopes(&[]));
    }

    #[test]
    fn keys_are_read_from_the_configured_header() {
        let bearer = GatewayConfig::default();
        assert_eq!(bearer.key_in("Bearer acme_live_x"), Some("acme_live_x"));
        assert_eq!(bearer.key_in("bearer   acme_live_x "), Some("acme_live_x"));
        assert_eq!(bearer.key_in("Basic abc"), None);
        assert_eq!(bearer.key_in("Bearer "), None);
        assert_eq!(rules().key_in(" acme_live_x"), Some("acme_live_x"));
    }

    #[test]
    fn bad_rules_name_their_field() {
        let bad = |g: GatewayConfig| g.check().expect_err("refused").0;
        let with = |r: GatewayRoute| GatewayConfig { routes: vec![r], ..GatewayConfig::default() };
        let route = |m: &str, p: &str, s: &[&str]| GatewayRoute {
            method: m.into(),
            path_prefix: p.into(),
            scopes: s.iter().map(|x| (*x).to_owned()).collect(),
        };
        assert_eq!(bad(GatewayConfig { header: "x api key".into(), ..GatewayConfig::default() }), "gateway.header");
        assert_eq!(bad(GatewayConfig { header: "Host".into(), ..GatewayConfig::default() }), "gateway.header");
        assert_eq!(bad(with(route("FETCH", "/a", &[]))), "gateway.routes[0].method");
        assert_eq!(bad(with(route("GET", "a", &[]))), "gateway.routes[0].path_prefix");
        assert_eq!(bad(with(route("GET", "/a?b", &[]))), "gateway.routes[0].path_prefix");
        assert_eq!(bad(with(route("GET", "/a", &["no spaces"]))), "gateway.routes[0].scopes[0]");
        let many = GatewayConfig { routes: vec![route("GET", "/a", &[]); MAX_ROUTES + 1], ..GatewayConfig::default() };
        assert_eq!(bad(many), "gateway.routes");
    }
}
