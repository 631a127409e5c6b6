//! `[dintero]` configuration.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

/// `[dintero]`: the account, its API client, and how far to trust what comes back.
///
/// ```toml
/// [dintero]
/// account_id = "T12345678"
/// client_id = "..."
/// client_secret = "..."                       # or POSTBUD_DINTERO__CLIENT_SECRET
/// api_url = "https://checkout.dintero.com/v1" # default
/// auth_url = "https://api.dintero.com/v1"     # default
/// callback_secret = "..."                     # optional: verify Dintero-Signature
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DinteroSettings {
    /// `T` + 8 digits (test) or `P` + 8 digits (production).
    pub account_id: String,
    /// Checkout API client id.
    pub client_id: String,
    /// Checkout API client secret.
    pub client_secret: SecretString,
    /// Base of the Checkout API.
    #[serde(default = "default_api_url")]
    pub api_url: Url,
    /// Base of the token endpoint.
    #[serde(default = "default_auth_url")]
    pub auth_url: Url,
    /// Secret for `Dintero-Signature` on callbacks; unsigned callbacks are refused when set.
    #[serde(default)]
    pub callback_secret: Option<SecretString>,
    /// Secret of the account webhook subscription (`checkout_authorization`,
    /// `checkout_transaction`); deliveries to `server.webhook_path` are verified with it.
    #[serde(default)]
    pub webhook_secret: Option<SecretString>,
    /// How often `serve` lists the account's authorized Kravia transactions and submits those it
    /// does not know (`"0s"` turns the sweep off).
    #[serde(default = "default_reconcile_every", with = "humantime_serde")]
    pub reconcile_every: Duration,
    /// How far back a sweep looks for authorized transactions.
    #[serde(default = "default_reconcile_lookback", with = "humantime_serde")]
    pub reconcile_lookback: Duration,
    /// How far back a sweep looks for voided transactions: a void may come long after the
    /// invoice (Dintero lists by creation time), and must still stop what is pending for it.
    #[serde(default = "default_void_lookback", with = "humantime_serde")]
    pub void_lookback: Duration,
    /// Hosts the invoice PDF may come from, besides those of `api_url`, `auth_url` and
    /// `cdn.dintero.com`.
    #[serde(default)]
    pub document_hosts: Vec<String>,
    /// Largest accepted invoice PDF, in bytes.
    #[serde(default = "default_max_document_bytes")]
    pub max_document_bytes: u64,
    /// Per-request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How long the account's checkout configuration and payment profiles (read to decide who
    /// sends an invoice) are reused before they are read again.
    #[serde(default = "default_configuration_cache", with = "humantime_serde")]
    pub configuration_cache: Duration,
    /// `Dintero-System-Name`: the application that links Postbud.
    #[serde(default = "default_system_name")]
    pub system_name: String,
    /// `Dintero-System-Version`.
    #[serde(default = "default_system_version")]
    pub system_version: String,
}

fn default_api_url() -> Url {
    Url::parse("https://checkout.dintero.com/v1").expect("valid default")
}
fn default_auth_url() -> Url {
    Url::parse("https://api.dintero.com/v1").expect("valid default")
}
fn default_max_document_bytes() -> u64 {
    20 * 1024 * 1024
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_reconcile_every() -> Duration {
    Duration::from_secs(5 * 60)
}
fn default_reconcile_lookback() -> Duration {
    Duration::from_secs(14 * 24 * 3600)
}
fn default_void_lookback() -> Duration {
    Duration::from_secs(180 * 24 * 3600)
}
fn default_configuration_cache() -> Duration {
    Duration::from_secs(60)
}
fn default_system_name() -> String {
    "postbud".into()
}
fn default_system_version() -> String {
    env!("CARGO_PKG_VERSION").into()
}

impl DinteroSettings {
    /// Checks what serde cannot: the account id's shape and the URLs' schemes.
    pub fn validate(&self) -> Result<(), String> {
        let id = self.account_id.as_bytes();
        if id.len() != 9 || !matches!(id[0], b'P' | b'T') || !id[1..].iter().all(u8::is_ascii_digit)
        {
            return Err(format!(
                "dintero.account_id: `{}` is not an account id (T or P followed by 8 digits, e.g. T12345678)",
                self.account_id
            ));
        }
        if !self.reconcile_every.is_zero()
            && !(Duration::from_secs(1)..=Duration::from_secs(7 * 24 * 3600))
                .contains(&self.reconcile_every)
        {
            return Err(format!(
                "dintero.reconcile_every: {:?} is not \"0s\" (off) or 1 s to 7 days",
                self.reconcile_every
            ));
        }
        for (key, url) in [
            ("dintero.api_url", &self.api_url),
            ("dintero.auth_url", &self.auth_url),
        ] {
            if url.scheme() != "https" && !postbud_channel::http::is_loopback(url) {
                return Err(format!(
                    "{key}: `{url}` must use https (plain http only on loopback)"
                ));
            }
        }
        Ok(())
    }
}
