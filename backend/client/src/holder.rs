//! The consumer side of rotation: a [`KeyHolder`] holds the key a service calls a provider's API
//! with, and keeps it working without anyone editing configuration.
//!
//! - It reads `GET /v1/self` with the key it holds.
//! - When a rotation superseded that key (a rotation policy, say), it fetches the new version
//!   with `POST /v1/self/pickup`.
//! - When the provider's rotation policy would rotate the key within
//!   [`HolderOptions::rotate_before`], it rotates itself first with `POST /v1/self/rotate` (the
//!   new version starts the policy's clock afresh), the old key staying valid for
//!   [`HolderOptions::overlap_seconds`]. A key's expiry is its lineage's: rotating does not
//!   move it.
//! - Every new key replaces the held one atomically (callers asking [`KeyHolder::current`] get
//!   the old or the new key, never a torn one) and is written to a [`Sink`]: a file, an
//!   environment file, or a callback.
//! - [`KeyHolder::observe`] takes the headers of the provider's answers: a `Deprecation` or
//!   `Sunset` there wakes the holder at once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use tokio::sync::Notify;

use crate::Error;

/// Where a new key is kept, so that a restart uses it.
pub trait Sink: Send + Sync {
    /// Keeps `key` (replacing the one kept before).
    ///
    /// # Errors
    /// When it cannot be kept.
    fn store(&self, key: &str) -> Result<(), Error>;

    /// The key kept, if any.
    ///
    /// # Errors
    /// When it cannot be read.
    fn load(&self) -> Result<Option<String>, Error>;
}

/// Writes `contents` to `path` through a file beside it, then renames it over: a reader sees the
/// old file or the new one, never half of one. The file is readable by its owner only.
fn write_atomically(path: &Path, contents: &str) -> Result<(), Error> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("key");
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&tmp)?;
    std::io::Write::write_all(&mut file, contents.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The key alone in a file (a mounted secret, `~/.config/app/key`).
#[derive(Debug, Clone)]
pub struct FileSink {
    path: PathBuf,
}

impl FileSink {
    #[must_use]
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }
}

impl Sink for FileSink {
    fn store(&self, key: &str) -> Result<(), Error> {
        write_atomically(&self.path, &format!("{key}\n"))
    }

    fn load(&self) -> Result<Option<String>, Error> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// One `NAME=value` line of an environment file (`.env`, a systemd `EnvironmentFile`); the
/// other lines are kept as they are.
#[derive(Debug, Clone)]
pub struct EnvFileSink {
    path: PathBuf,
    name: String,
}

impl EnvFileSink {
    #[must_use]
    pub fn new(path: impl Into<PathBuf>, name: impl Into<String>) -> Self {
        Self { path: path.into(), name: name.into() }
    }

    fn value_of<'a>(&self, line: &'a str) -> Option<&'a str> {
        let line = line.trim_start();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (name, value) = line.split_once('=')?;
        (name.trim() == self.name).then(|| value.trim().trim_matches('"').trim_matches('\''))
    }
}

impl Sink for EnvFileSink {
    fn store(&self, key: &str) -> Result<(), Error> {
        let old = match std::fs::read_to_string(&self.path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e.into()),
        };
        let line = format!("{}={key}", self.name);
        let mut found = false;
        let mut lines: Vec<String> = old
            .lines()
            .map(|l| {
                if self.value_of(l).is_some() {
                    found = true;
                    line.clone()
                } else {
                    l.to_owned()
                }
            })
            .collect();
        if !found {
            lines.push(line);
        }
        write_atomically(&self.path, &(lines.join("\n") + "\n"))
    }

    fn load(&self) -> Result<Option<String>, Error> {
        match std::fs::read_to_string(&self.path) {
            Ok(s) => Ok(s.lines().find_map(|l| self.value_of(l)).map(str::to_owned).filter(|v| !v.is_empty())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A function of the application (a secret manager's client, a database row).
pub struct CallbackSink<F>(pub F);

impl<F> Sink for CallbackSink<F>
where
    F: Fn(&str) -> Result<(), String> + Send + Sync,
{
    fn store(&self, key: &str) -> Result<(), Error> {
        (self.0)(key).map_err(Error::Sink)
    }

    fn load(&self) -> Result<Option<String>, Error> {
        Ok(None)
    }
}

/// Settings of a [`KeyHolder`].
#[derive(Debug, Clone)]
pub struct HolderOptions {
    /// Rotate when the provider's policy would rotate the key within this.
    pub rotate_before: Duration,
    /// How long the old key stays valid beside the new one after a self-rotation.
    pub overlap_seconds: u32,
    /// How often `GET /v1/self` is read when nothing else wakes the holder.
    pub check_every: Duration,
    /// The longest one call to Keyroll may take.
    pub timeout: Duration,
}

impl Default for HolderOptions {
    fn default() -> Self {
        Self {
            rotate_before: Duration::from_secs(86_400),
            overlap_seconds: 3_600,
            check_every: Duration::from_secs(3_600),
            timeout: Duration::from_secs(10),
        }
    }
}

/// What one [`KeyHolder::check`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The key is fine as it is.
    Unchanged,
    /// A rotation superseded the key; its new version was fetched and is held now.
    PickedUp { key_id: String },
    /// The policy was about to rotate the key, so it rotated itself; the new version is held now.
    Rotated { key_id: String },
    /// A rotation superseded the key, but its new version is not waiting for pickup (someone
    /// else received it). The old key works until `until`.
    SupersededElsewhere { until: Option<DateTime<Utc>> },
}

#[derive(Debug, Deserialize)]
struct SelfKey {
    id: String,
    state: String,
    grace_ends_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct SelfRotation {
    from_key_id: String,
    state: String,
}

#[derive(Debug, Deserialize)]
struct SelfView {
    key: SelfKey,
    rotation: Option<SelfRotation>,
    #[serde(default)]
    rotation_due_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize)]
struct NewKey {
    key: NewKeyId,
    secret: String,
}

#[derive(Debug, Deserialize)]
struct NewKeyId {
    id: String,
}

/// Holds a consumer's key and keeps it rotated. Share it as `Arc<KeyHolder>`.
pub struct KeyHolder {
    base: String,
    http: reqwest::Client,
    current: RwLock<Arc<str>>,
    sink: Box<dyn Sink>,
    options: HolderOptions,
    wake: Notify,
    /// A new key the sink has not taken yet: tried again at the next check.
    unsaved: Mutex<Option<String>>,
}

impl std::fmt::Debug for KeyHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyHolder").field("base", &self.base).field("options", &self.options).finish_non_exhaustive()
    }
}

impl KeyHolder {
    /// Holds `key`, a key of the provider at `base_url`, writing new ones to `sink`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        base_url: &str,
        key: &str,
        sink: impl Sink + 'static,
        options: HolderOptions,
    ) -> Result<Arc<Self>, Error> {
        let http = reqwest::Client::builder().timeout(options.timeout).build()?;
        Ok(Arc::new(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
            current: RwLock::new(Arc::from(key)),
            sink: Box::new(sink),
            options,
            wake: Notify::new(),
            unsaved: Mutex::new(None),
        }))
    }

    /// Holds the key the sink kept (after a restart, the last one written).
    ///
    /// # Errors
    /// When the sink holds no key or cannot be read.
    pub fn from_sink(base_url: &str, sink: impl Sink + 'static, options: HolderOptions) -> Result<Arc<Self>, Error> {
        let key = sink.load()?.ok_or_else(|| Error::Sink("the sink holds no key".into()))?;
        Self::new(base_url, &key, sink, options)
    }

    /// The key to call the provider with now.
    #[must_use]
    pub fn current(&self) -> Arc<str> {
        self.current.read().map_or_else(|p| Arc::clone(&p.into_inner()), |k| Arc::clone(&k))
    }

    /// Looks at the headers of an answer the provider gave to a call made with the held key: a
    /// `Deprecation` or `Sunset` means the key was superseded, and wakes the holder.
    pub fn observe(&self, headers: &reqwest::header::HeaderMap) -> bool {
        let superseded = headers.contains_key("sunset") || headers.contains_key("deprecation");
        if superseded {
            self.wake.notify_one();
        }
        superseded
    }

    /// Wakes the holder's task now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    fn hold(&self, key: String) -> Result<(), Error> {
        if let Ok(mut k) = self.current.write() {
            *k = Arc::from(key.as_str());
        }
        self.save(key)
    }

    fn save(&self, key: String) -> Result<(), Error> {
        match self.sink.store(&key) {
            Ok(()) => {
                if let Ok(mut u) = self.unsaved.lock() {
                    *u = None;
                }
                Ok(())
            }
            Err(e) => {
                if let Ok(mut u) = self.unsaved.lock() {
                    *u = Some(key);
                }
                Err(e)
            }
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, Error> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&*self.current());
        if let Some(b) = body {
            req = req.json(&b);
        }
        Ok(req.send().await?)
    }

    async fn expect<T: serde::de::DeserializeOwned>(res: reqwest::Response) -> Result<T, Error> {
        let status = res.status();
        if status.is_success() {
            Ok(res.json().await?)
        } else {
            Err(Error::Status(status.as_u16(), res.text().await.unwrap_or_default()))
        }
    }

    /// One look at the key: picks up or rotates when it is time.
    ///
    /// # Errors
    /// When Keyroll cannot be reached or refuses the held key (401: it no longer works), or
    /// the sink cannot keep a new key (which is held nonetheless and kept at the next check).
    pub async fn check(&self) -> Result<Outcome, Error> {
        let pending = self.unsaved.lock().ok().and_then(|u| u.clone());
        if let Some(key) = pending {
            self.save(key)?;
        }
        let me: SelfView = Self::expect(self.call(reqwest::Method::GET, "/v1/self", None).await?).await?;
        let superseded = me.key.state == "superseded"
            || me.rotation.as_ref().is_some_and(|r| r.state == "in_progress" && r.from_key_id == me.key.id);
        if superseded {
            let res = self.call(reqwest::Method::POST, "/v1/self/pickup", None).await?;
            if res.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(Outcome::SupersededElsewhere { until: me.key.grace_ends_at });
            }
            let new: NewKey = Self::expect(res).await?;
            self.hold(new.secret)?;
            return Ok(Outcome::PickedUp { key_id: new.key.id });
        }
        let soon = chrono::Duration::from_std(self.options.rotate_before).unwrap_or(chrono::Duration::MAX);
        let due = me.rotation_due_at.is_some_and(|t| t - Utc::now() <= soon);
        if me.key.state == "valid" && due {
            let body = serde_json::json!({ "overlap_seconds": self.options.overlap_seconds });
            let res = self.call(reqwest::Method::POST, "/v1/self/rotate", Some(body)).await?;
            let new: NewKey = Self::expect(res).await?;
            self.hold(new.secret)?;
            return Ok(Outcome::Rotated { key_id: new.key.id });
        }
        Ok(Outcome::Unchanged)
    }

    /// Checks now, then every [`HolderOptions::check_every`] or when woken, for as long as the
    /// runtime runs; `on_outcome` hears every result (log it, count it).
    pub fn spawn<F>(self: &Arc<Self>, on_outcome: F) -> tokio::task::JoinHandle<()>
    where
        F: Fn(&Result<Outcome, Error>) + Send + 'static,
    {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let result = me.check().await;
                let retry = result.is_err();
                on_outcome(&result);
                let wait =
                    if retry { me.options.check_every.min(Duration::from_secs(60)) } else { me.options.check_every };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = me.wake.notified() => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("keyroll-client-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir.join("file")
    }

    #[test]
    fn a_file_holds_the_key_alone_and_privately() {
        let path = temp("file");
        let sink = FileSink::new(&path);
        assert_eq!(sink.load().expect("read"), None);
        sink.store("acme_live_one").expect("stored");
        sink.store("acme_live_two").expect("stored");
        assert_eq!(sink.load().expect("read").as_deref(), Some("acme_live_two"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o077, 0, "owner only: {mode:o}");
        }
    }

    #[test]
    fn an_env_file_changes_one_line() {
        let path = temp("env");
        std::fs::write(&path, "# settings\nAPP_MODE=prod\nexport ACME_KEY=\"old\"\nOTHER=1\n").expect("written");
        let sink = EnvFileSink::new(&path, "ACME_KEY");
        assert_eq!(sink.load().expect("read").as_deref(), Some("old"));
        sink.store("acme_live_new").expect("stored");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "# settings\nAPP_MODE=prod\nACME_KEY=acme_live_new\nOTHER=1\n");
        let fresh = EnvFileSink::new(temp("env-new"), "ACME_KEY");
        fresh.store("k").expect("stored");
        assert_eq!(fresh.load().expect("read").as_deref(), Some("k"));
    }
}
