//! The client's address: the peer's, or, behind a trusted proxy (`KEYROLL_TRUSTED_PROXIES`), the
//! right-most address of its forwarding headers that is not a trusted proxy. Audit entries,
//! sign-in limits, the gateway endpoint's IP allowlists and anomaly detection all read it here.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::HeaderMap;

use crate::domain::net::TrustedProxies;
use crate::state::AppState;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The client behind `peer`, given the request's headers.
#[must_use]
pub fn of(trusted: &TrustedProxies, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let peer = peer?;
    if trusted.is_empty() {
        return Some(peer);
    }
    Some(trusted.client(
        peer,
        header(headers, "forwarded"),
        header(headers, "x-forwarded-for"),
        header(headers, "x-real-ip"),
    ))
}

/// The client of a request.
#[must_use]
pub fn client_ip(req: &HttpRequest) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip());
    match req.app_data::<actix_web::web::Data<AppState>>() {
        Some(state) => of(&state.settings.trusted_proxies, peer, req.headers()),
        None => peer,
    }
}
