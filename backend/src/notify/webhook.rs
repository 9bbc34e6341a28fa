//! Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64>`.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use standardwebhooks::Webhook;

/// A new signing secret: `whsec_` + base64 of 32 random bytes.
#[must_use]
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// An endpoint's signing secret as stored: sealed with the master key when there is one.
#[must_use]
pub fn seal_secret(key: Option<&crate::crypto::SealKey>, secret: &str) -> String {
    key.and_then(|k| k.seal(secret.as_bytes())).unwrap_or_else(|| secret.to_owned())
}

/// A stored signing secret, opened: `whsec_…` as it was stored before sealing, else unsealed.
#[must_use]
pub fn open_secret(key: Option<&crate::crypto::SealKey>, stored: &str) -> Option<String> {
    if stored.starts_with("whsec_") {
        return Some(stored.to_owned());
    }
    key?.open(stored).and_then(|b| String::from_utf8(b).ok())
}

/// Why a destination is refused.
pub const REFUSED: &str = "refused: the endpoint is on a loopback, private or link-local address \
                            (KEYROLL_WEBHOOKS__ALLOW_PRIVATE allows it)";

/// Is a URL's host an address (or `localhost`) that is not public? Names are judged when they
/// are resolved, at each delivery ([`PublicOnly`]).
#[must_use]
pub fn names_private_address(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => !crate::domain::net::is_public(ip.into()),
        Some(url::Host::Ipv6(ip)) => !crate::domain::net::is_public(ip.into()),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => true,
    }
}

/// The resolver of webhook deliveries: a name is resolved once for the connection, and refused
/// when any address it resolves to is not public — so the address checked is the address
/// called, and a name cannot point at the install's own network.
#[derive(Debug, Clone, Copy)]
pub struct PublicOnly {
    pub allow_private: bool,
}

/// The addresses a name resolved to, when all of them may be called.
///
/// # Errors
/// [`REFUSED`] when one is not public (and private ones are not allowed), or there are none.
pub fn permitted(addrs: Vec<std::net::SocketAddr>, allow_private: bool) -> Result<Vec<std::net::SocketAddr>, String> {
    if addrs.is_empty() {
        return Err("the name resolves to no address".into());
    }
    if !allow_private && addrs.iter().any(|a| !crate::domain::net::is_public(a.ip())) {
        return Err(REFUSED.into());
    }
    Ok(addrs)
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let allow = self.allow_private;
        Box::pin(async move {
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok = permitted(addrs, allow)?;
            Ok(Box::new(ok.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The outcome of one call.
#[derive(Debug)]
pub struct Sent {
    pub status: Option<u16>,
    pub error: Option<String>,
}

impl Sent {
    #[must_use]
    pub fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Signs `body` with every secret (the current one first; the previous one too while the
/// endpoint's secret is being rotated) and posts it to `url`.
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    secrets: &[&str],
    event_id: &str,
    body: &str,
    timeout: Duration,
    allow_private: bool,
) -> Sent {
    // Addresses written in the URL are not resolved, so they are judged here.
    match url::Url::parse(url) {
        Ok(u) if allow_private || !names_private_address(&u) => {}
        Ok(_) => return Sent { status: None, error: Some(REFUSED.into()) },
        Err(e) => return Sent { status: None, error: Some(format!("bad URL: {e}")) },
    }
    let ts = chrono::Utc::now().timestamp();
    let signed: Result<Vec<String>, _> =
        secrets.iter().map(|s| Webhook::new(s).and_then(|w| w.sign(event_id, ts, body.as_bytes()))).collect();
    let signature = match signed {
        Ok(s) => s.join(" "),
        Err(e) => return Sent { status: None, error: Some(format!("cannot sign: {e}")) },
    };
    let res = client
        .post(url)
        .timeout(timeout)
        .header("content-type", "application/json")
        .header("user-agent", "Keyroll-Webhooks/1")
        .header("webhook-id", event_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body.to_owned())
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            let error = (!r.status().is_success()).then(|| format!("HTTP {status}"));
            Sent { status: Some(status), error }
        }
        Err(e) => {
            // The resolver's refusal is the reason to show, not reqwest's wrapping of it.
            let refused =
                std::error::Error::source(&e).is_some_and(|s| format!("{s:?}").contains("refused: the endpoint"));
            Sent { status: None, error: Some(if refused { REFUSED.to_owned() } else { e.to_string() }) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_judged_by_address() {
        let url = |s: &str| url::Url::parse(s).expect("url");
        for private in [
            "http://127.0.0.1:9/h",
            "http://[::1]/h",
            "http://localhost:8080/",
            "http://10.0.0.5/",
            "http://169.254.169.254/latest",
        ] {
            assert!(names_private_address(&url(private)), "{private}");
        }
        assert!(!names_private_address(&url("https://hooks.example.com/x")));
        assert!(!names_private_address(&url("https://93.184.216.34/x")));
        // A name that resolves (here: a stubbed resolution) to loopback or metadata addresses.
        let loopback = vec!["127.0.0.1:0".parse().expect("addr")];
        assert_eq!(permitted(loopback.clone(), false), Err(REFUSED.to_owned()));
        assert_eq!(permitted(loopback.clone(), true), Ok(loopback));
        let mixed = vec!["93.184.216.34:0".parse().expect("addr"), "169.254.169.254:0".parse().expect("addr")];
        assert!(permitted(mixed, false).is_err(), "one private address is enough to refuse");
        let public = vec!["93.184.216.34:0".parse().expect("addr")];
        assert_eq!(permitted(public.clone(), false), Ok(public));
    }
}
