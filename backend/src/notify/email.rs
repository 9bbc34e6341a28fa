//! Email to consumers over SMTP (`KEYROLL_SMTP_URL=smtp://host:port`).

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde_json::Value;

/// An SMTP sender.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// # Errors
    /// When the URL or the sender address is not usable.
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url)?;
        let host = parsed.host_str().ok_or_else(|| anyhow::anyhow!("KEYROLL_SMTP_URL has no host"))?;
        let port = parsed.port().unwrap_or(25);
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).build();
        Ok(Self { transport, from: from.parse()? })
    }

    /// Sends the notice for one event.
    ///
    /// # Errors
    /// When the message cannot be built or the server refuses it.
    pub async fn send(&self, to: &str, event_type: &str, data: &Value) -> anyhow::Result<()> {
        let (subject, body) = compose(event_type, data);
        self.send_text(to, &subject, body).await
    }

    /// Sends a plain-text message.
    ///
    /// # Errors
    /// When the message cannot be built or the server refuses it.
    pub async fn send_text(&self, to: &str, subject: &str, body: String) -> anyhow::Result<()> {
        let msg = Message::builder().from(self.from.clone()).to(to.parse()?).subject(subject).body(body)?;
        self.transport.send(msg).await?;
        Ok(())
    }
}

fn field<'a>(data: &'a Value, name: &str) -> &'a str {
    data.get(name).and_then(Value::as_str).unwrap_or("?")
}

/// Subject and plain-text body of a notice. Never a secret: only ids and the key's start.
#[must_use]
pub fn compose(event_type: &str, data: &Value) -> (String, String) {
    let key = field(data, "key_start");
    match event_type {
        "rotation.started" => (
            format!("Your API key {key}... is being rotated"),
            format!(
                "A new version of your API key {key}... was issued.\n\nThe current key keeps working until {} (UTC). \
                 Switch your applications to the new key before then.\n\nRotation: {}\n",
                field(data, "grace_ends_at"),
                field(data, "rotation_id")
            ),
        ),
        "rotation.completed" => (
            format!("Your old API key {key}... has been retired"),
            format!("The rotation {} is complete: the old key {key}... no longer works.\n", field(data, "rotation_id")),
        ),
        "rotation.rolled_back" => (
            format!("Rotation of your API key {key}... was rolled back"),
            format!("The rotation {} was undone: keep using your previous key {key}....\n", field(data, "rotation_id")),
        ),
        "playbook.run.started" => (
            "Security notice about your API keys".to_owned(),
            format!(
                "Your provider started an incident response that concerns your API keys ({}).\n\n{}\n\nReference: {}\n",
                field(data, "playbook"),
                data.get("message").and_then(Value::as_str).unwrap_or(
                    "Watch for notices about new versions of your keys, and switch to them before the old ones end."
                ),
                field(data, "run_id")
            ),
        ),
        "key.revoked" => (
            format!("Your API key {key}... was revoked"),
            format!("The API key {key}... was revoked and no longer works.\nReason: {}\n", field(data, "reason")),
        ),
        "credits.low" => (
            format!("Your API key {key}... is running low on credits"),
            format!(
                "Your API key {key}... has {} credits left. Verifications are refused once they run out.\n",
                data.get("remaining").unwrap_or(&Value::Null)
            ),
        ),
        "ratelimit.exceeded" => (
            format!("Your API key {key}... went over its rate limit"),
            format!(
                "Your API key {key}... made more than {} calls in {} seconds; calls are refused until {}.\n",
                data.get("limit").unwrap_or(&Value::Null),
                data.get("window_seconds").unwrap_or(&Value::Null),
                field(data, "reset_at")
            ),
        ),
        "alert.raised" => (
            format!("[Keyroll] {}: {}", field(data, "severity"), field(data, "title")),
            format!(
                "{}\n\nAbout: {}\nAlert: {}\n\nAcknowledge or resolve it on the dashboard's Alerts page.\n",
                field(data, "summary"),
                field(data, "subject_id"),
                field(data, "id")
            ),
        ),
        "alert.resolved" => (
            format!("[Keyroll] Resolved: {}", field(data, "title")),
            format!(
                "The alert {} about {} was resolved by {}.\n",
                field(data, "id"),
                field(data, "subject_id"),
                field(data, "resolved_by")
            ),
        ),
        other => (format!("Notice about your API key {key}..."), format!("Event {other} for your API key {key}....\n")),
    }
}
