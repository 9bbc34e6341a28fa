//! The gateway rules of an API as its settings form shows them: the key's header, and one
//! route per line (`GET /orders orders:read`; the method may be left out for any).

use super::session::FormErrors;
use crate::domain::gateway::{GatewayConfig, GatewayRoute};

/// The rules as the form's text: `(header, routes)`.
#[must_use]
pub fn text_of(g: &GatewayConfig) -> (String, String) {
    let lines: Vec<String> = g
        .routes
        .iter()
        .map(|r| {
            let mut line =
                if r.method == "*" { r.path_prefix.clone() } else { format!("{} {}", r.method, r.path_prefix) };
            for s in &r.scopes {
                line.push(' ');
                line.push_str(s);
            }
            line
        })
        .collect();
    (g.header.clone(), lines.join("\n"))
}

/// Reads the form's text into rules: `Some(None)` for the defaults (stored as none), errors
/// beside `gateway_header` or `gateway_routes` (naming the line).
pub fn read(header: &str, routes: &str, errors: &mut FormErrors) -> Option<Option<GatewayConfig>> {
    let header = if header.trim().is_empty() { "authorization" } else { header.trim() };
    let mut parsed = Vec::new();
    for (i, line) in routes.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let mut words = line.split_whitespace().peekable();
        let method = match words.peek() {
            Some(w) if !w.starts_with('/') => words.next().unwrap_or("*").to_owned(),
            _ => "*".to_owned(),
        };
        let Some(path_prefix) = words.next() else {
            errors.insert("gateway_routes", format!("Line {}: give a path such as /orders after the method.", i + 1));
            return None;
        };
        parsed.push((
            i,
            GatewayRoute { method, path_prefix: path_prefix.to_owned(), scopes: words.map(str::to_owned).collect() },
        ));
    }
    let lines: Vec<usize> = parsed.iter().map(|(i, _)| *i).collect();
    let config = GatewayConfig { header: header.to_owned(), routes: parsed.into_iter().map(|(_, r)| r).collect() };
    match config.check() {
        Ok(c) if c == GatewayConfig::default() => Some(None),
        Ok(c) => Some(Some(c)),
        Err((field, message)) => {
            if field == "gateway.header" {
                errors.insert("gateway_header", format!("The header {message}."));
            } else {
                // `gateway.routes[i]…`: the i-th rule, on its line of the text.
                let n = field
                    .strip_prefix("gateway.routes[")
                    .and_then(|r| r.split(']').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .and_then(|n| lines.get(n))
                    .map_or(String::new(), |l| format!("Line {}: ", l + 1));
                let what = field.rsplit('.').next().unwrap_or("routes").replace('_', " ");
                errors.insert("gateway_routes", format!("{n}the {what} {message}."));
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_rules_and_back() {
        let mut errors = FormErrors::new();
        let text = "GET /orders orders:read\n\n  post /orders orders:write orders:read\n/health";
        let g = read("X-API-Key", text, &mut errors).expect("read").expect("rules");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(g.header, "x-api-key");
        assert_eq!(g.routes[1].method, "POST");
        assert_eq!(g.routes[2].method, "*");
        let (h, t) = text_of(&g);
        assert_eq!(h, "x-api-key");
        assert_eq!(t, "GET /orders orders:read\nPOST /orders orders:write orders:read\n/health");
        assert_eq!(read("", "", &mut errors), Some(None), "the defaults are stored as none");
    }

    #[test]
    fn errors_name_the_line() {
        let mut errors = FormErrors::new();
        assert_eq!(read("authorization", "GET /a a:b\nFETCH /b", &mut errors), None);
        assert!(errors["gateway_routes"].starts_with("Line 2: the method must be one of"), "{errors:?}");
        let mut errors = FormErrors::new();
        assert_eq!(read("authorization", "GET", &mut errors), None);
        assert!(errors["gateway_routes"].starts_with("Line 1: give a path"), "{errors:?}");
        let mut errors = FormErrors::new();
        assert_eq!(read("x api", "", &mut errors), None);
        assert!(errors.contains_key("gateway_header"));
    }
}
