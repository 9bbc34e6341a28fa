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
) -> Sent {
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
        Err(e) => Sent { status: None, error: Some(e.to_string()) },
    }
}
