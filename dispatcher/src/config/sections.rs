use std::{net::SocketAddr, time::Duration};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use url::Url;

/// `[store]`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `sqlite://postbud.db` (default): a file, in WAL mode; or `postgres://...` for several
    /// instances sharing one database.
    #[serde(default = "default_store_url")]
    pub url: String,
    /// How long the PDF and personal data of a finished dispatch are kept (default 400 days);
    /// then `postbud prune` and `serve`'s daily pass delete them and keep an anonymised record.
    #[serde(default = "default_retain", with = "humantime_serde")]
    pub retain: Duration,
}

fn default_retain() -> Duration {
    Duration::from_secs(400 * 24 * 3600)
}

impl std::fmt::Debug for StoreSettings {
    // By hand: a PostgreSQL URL may carry the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &postbud_channel::http::redact_url(&self.url))
            .field("retain", &self.retain)
            .finish()
    }
}

fn default_store_url() -> String {
    "sqlite://postbud.db".into()
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: default_store_url(),
            retain: default_retain(),
        }
    }
}

impl StoreSettings {
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.retain < Duration::from_secs(24 * 3600) {
            return Err((
                "store.retain",
                format!(
                    "{} is less than a day: finished invoices would lose their PDF before anyone could look; `postbud prune --older-than` prunes sooner by hand",
                    humantime::format_duration(self.retain)
                ),
            ));
        }
        if ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| self.url.starts_with(p))
        {
            Ok(())
        } else {
            Err((
                "store.url",
                "expected sqlite://FILE or postgres://USER@HOST/DATABASE".into(),
            ))
        }
    }
}

/// `[server]`: what `postbud serve` listens on and how it signs invoice links.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Public base URL of this server, for signed invoice links (SMS, large email attachments).
    #[serde(default)]
    pub public_url: Option<Url>,
    /// Key for signing links. Without it a random key is made once and kept in the store.
    #[serde(default)]
    pub link_secret: Option<SecretString>,
    /// How long a signed link stays valid.
    #[serde(default = "default_link_ttl", with = "humantime_serde")]
    pub link_ttl: Duration,
    /// Path of the Dintero callback endpoint.
    #[serde(default = "default_callback_path")]
    pub callback_path: String,
    /// Callbacks that are not signed (no `dintero.callback_secret`, or a transaction id only in
    /// the unsigned body) for transactions not seen before are checked at Dintero before they
    /// are stored; at most this many such checks a second (and as many at once). Over the
    /// limit the callback is answered 503, which Dintero retries.
    #[serde(default = "default_unverified_per_second")]
    pub unverified_per_second: u32,
    /// Path of Dintero's account webhook deliveries (needs `dintero.webhook_secret`).
    #[serde(default = "default_webhook_path")]
    pub webhook_path: String,
}

fn default_webhook_path() -> String {
    "/dintero/webhook".into()
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_link_ttl() -> Duration {
    Duration::from_secs(60 * 24 * 3600)
}
fn default_callback_path() -> String {
    "/dintero/callback".into()
}
fn default_unverified_per_second() -> u32 {
    20
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            link_secret: None,
            link_ttl: default_link_ttl(),
            callback_path: default_callback_path(),
            unverified_per_second: default_unverified_per_second(),
            webhook_path: default_webhook_path(),
        }
    }
}

/// `[engine]`: how work is run and retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Concurrent jobs per process.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Attempts before a job is dead-lettered.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay; doubles per attempt, with jitter.
    #[serde(default = "default_backoff_base", with = "humantime_serde")]
    pub backoff_base: Duration,
    /// Longest retry delay.
    #[serde(default = "default_backoff_max", with = "humantime_serde")]
    pub backoff_max: Duration,
    /// How long a claimed job is ours before another worker may rescue it.
    #[serde(default = "default_lease", with = "humantime_serde")]
    pub lease: Duration,
    /// How often an idle worker looks for due work.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
}

fn default_workers() -> usize {
    4
}
fn default_max_attempts() -> u32 {
    12
}
fn default_backoff_base() -> Duration {
    Duration::from_secs(5)
}
fn default_backoff_max() -> Duration {
    Duration::from_secs(3600)
}
fn default_lease() -> Duration {
    Duration::from_secs(60)
}
fn default_poll() -> Duration {
    Duration::from_millis(500)
}

impl ServerSettings {
    /// The path of `public_url`, without its trailing `/`, when it is not just `/`: `/postbud`
    /// for `https://m.example/postbud/`. The routes answer under it too, and the paths Dintero
    /// and providers sign start with it.
    pub fn public_path(&self) -> Option<&str> {
        let path = self.public_url.as_ref()?.path().trim_end_matches('/');
        (!path.is_empty()).then_some(path)
    }

    /// Refuses paths the router cannot serve, naming the key.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, path) in [
            ("server.callback_path", &self.callback_path),
            ("server.webhook_path", &self.webhook_path),
        ] {
            if !path.starts_with('/') || path.len() < 2 {
                return Err((
                    key,
                    format!("`{path}` must be a path such as /dintero/callback"),
                ));
            }
        }
        if self.callback_path == self.webhook_path {
            return Err((
                "server.webhook_path",
                "must differ from server.callback_path".into(),
            ));
        }
        Ok(())
    }
}

impl EngineSettings {
    /// Refuses settings that cannot work, naming the key: no workers, no attempts, a lease or
    /// poll interval too short to mean anything, a backoff that cannot grow.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let at_least = |key, value: Duration, min: Duration| {
            if value < min {
                Err((key, format!("{value:?} is too short (at least {min:?})")))
            } else {
                Ok(())
            }
        };
        if !(1..=1024).contains(&self.workers) {
            return Err((
                "engine.workers",
                format!("{} is not 1 to 1024", self.workers),
            ));
        }
        if !(1..=1000).contains(&self.max_attempts) {
            return Err((
                "engine.max_attempts",
                format!("{} is not 1 to 1000", self.max_attempts),
            ));
        }
        at_least("engine.lease", self.lease, Duration::from_secs(1))?;
        at_least(
            "engine.poll_interval",
            self.poll_interval,
            Duration::from_millis(10),
        )?;
        at_least(
            "engine.backoff_base",
            self.backoff_base,
            Duration::from_millis(10),
        )?;
        if self.backoff_max > Duration::from_secs(7 * 24 * 3600) {
            return Err((
                "engine.backoff_max",
                format!("{:?} is longer than a week", self.backoff_max),
            ));
        }
        if self.backoff_max < self.backoff_base {
            return Err((
                "engine.backoff_max",
                format!(
                    "{:?} is shorter than engine.backoff_base ({:?})",
                    self.backoff_max, self.backoff_base
                ),
            ));
        }
        Ok(())
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            max_attempts: default_max_attempts(),
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            lease: default_lease(),
            poll_interval: default_poll(),
        }
    }
}

/// `[console]`: the operator console `postbud serve` answers at `/console`; off unless
/// `enabled` (and then it needs users).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSettings {
    /// Serve the console (default false).
    #[serde(default)]
    pub enabled: bool,
    /// `[[console.users]]`: who may log in, and what they may do.
    #[serde(default)]
    pub users: Vec<ConsoleUser>,
    /// How long a login lasts (default 8h).
    #[serde(default = "default_session_ttl", with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Login attempts a minute for one user name, and as many for one client address; more
    /// are answered 429 without the password being checked (default 10).
    #[serde(default = "default_login_attempts")]
    pub login_attempts_per_minute: u32,
}

fn default_session_ttl() -> Duration {
    Duration::from_secs(8 * 3600)
}
fn default_login_attempts() -> u32 {
    10
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            users: Vec::new(),
            session_ttl: default_session_ttl(),
            login_attempts_per_minute: default_login_attempts(),
        }
    }
}

/// One `[[console.users]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleUser {
    /// The login name.
    pub name: String,
    /// The password's argon2id PHC string (`postbud console hash-password` makes one). Kept as
    /// a secret: a hash is what an offline guesser needs.
    pub password_hash: SecretString,
    /// `viewer` (reads) or `operator` (also acts).
    pub role: ConsoleRole,
}

impl std::fmt::Debug for ConsoleUser {
    // By hand, so the hash never reaches a log even if `SecretString`'s own Debug changed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleUser")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleRole {
    /// Reads every page; every action is refused (403).
    Viewer,
    /// Reads, and acts: retry, redeliver, void.
    Operator,
}

impl ConsoleRole {
    /// `viewer` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Operator => "operator",
        }
    }
}

impl ConsoleSettings {
    /// Refuses a console that cannot work or is unsafe, naming the key: enabled without users,
    /// a user without a name, a name twice, a hash that is not argon2id.
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        use secrecy::ExposeSecret;
        if self.enabled && self.users.is_empty() {
            return Err((
                "console.users".into(),
                "the console is enabled but has no users: add a [[console.users]] with name, password_hash and role".into(),
            ));
        }
        if !(1..=10_000).contains(&self.login_attempts_per_minute) {
            return Err((
                "console.login_attempts_per_minute".into(),
                format!("{} is not 1 to 10000", self.login_attempts_per_minute),
            ));
        }
        if self.session_ttl < Duration::from_secs(60) {
            return Err((
                "console.session_ttl".into(),
                format!("{:?} is shorter than a minute", self.session_ttl),
            ));
        }
        for (i, user) in self.users.iter().enumerate() {
            let name = user.name.trim();
            if name.is_empty()
                || name.len() > 64
                || name != user.name
                || user.name.chars().any(char::is_control)
            {
                return Err((
                    format!("console.users[{i}].name"),
                    "must be 1 to 64 characters without surrounding spaces or control characters"
                        .into(),
                ));
            }
            if self.users[..i].iter().any(|u| u.name == user.name) {
                return Err((
                    format!("console.users[{i}].name"),
                    format!("`{}` is listed twice", user.name),
                ));
            }
            crate::password::check(user.password_hash.expose_secret())
                .map_err(|e| (format!("console.users[{i}].password_hash"), e.to_string()))?;
        }
        Ok(())
    }
}
