//! `[channels.<name>]` of kind `email`, and the SMTP transport built from it.

use std::time::Duration;

use lettre::transport::smtp::{
    AsyncSmtpTransport,
    authentication::Credentials,
    client::{Certificate, Tls, TlsParameters},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

/// The channel's own table.
#[derive(Debug, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailConfig {
    /// `smtps://user:pass@host:465` (TLS from the start) or `smtp://user:pass@host:587?tls=required`
    /// (STARTTLS); `smtp://host:25` (no TLS) takes no password except on loopback. A secret: it
    /// may carry the password.
    #[schemars(with = "String")]
    pub smtp_url: SecretString,
    /// Overrides the URL's user name (default: the URL's).
    #[serde(default)]
    pub username: Option<String>,
    /// Overrides the URL's password; or `POSTBUD_CHANNELS__<NAME>__PASSWORD`: the channel name in
    /// capitals, each `-` written `_`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub password: Option<SecretString>,
    /// `Merchant AS <faktura@merchant.example>`; also the domain of the `Message-ID`.
    pub from: String,
    /// A `Reply-To` address (default: none).
    #[serde(default)]
    pub reply_to: Option<String>,
    /// Blind copies of every message, e.g. an archive mailbox (default: none).
    #[serde(default)]
    pub bcc: Vec<String>,
    /// A fixed recipient (an ERP inbox) instead of the customer's billing email.
    #[serde(default)]
    pub to: Option<String>,
    /// A directory of template overrides: `<locale>/subject.txt`, `text.txt`, `html.html`,
    /// `layout.html` (default: the built-ins).
    #[serde(default)]
    pub templates: Option<String>,
    /// `auto` (from the billing country), `nb`, `sv`, `fi` or `en`.
    #[serde(default = "auto")]
    pub locale: String,
    /// Larger PDFs are not attached; the signed link is sent instead.
    #[serde(default = "ten_mib")]
    pub max_attachment_bytes: u64,
    /// Extra trusted root certificates (PEM, one or several in the file), for the SMTP server
    /// and the event provider's HTTPS; TLS stays verified (default: the web's roots only).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Connect, command and data timeout.
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub timeout: Duration,
    /// What the templates show of the merchant.
    #[serde(default)]
    pub brand: Brand,
    /// DKIM-sign every message (default: unsigned).
    #[serde(default)]
    pub dkim: Option<DkimSettings>,
    /// Read bounces from a mailbox over IMAP, and send each message with its own return path so
    /// that a bounce names its delivery (default: no bounces are read; `delivered` means the
    /// SMTP server answered 250).
    #[serde(default)]
    pub bounces: Option<crate::bounces::BounceSettings>,
    /// The email provider's signed event webhook (bounces, deliveries, opens), posted to
    /// `<server.public_url>/reports/<name>` (default: none).
    #[serde(default)]
    pub events: Option<crate::events::EventsConfig>,
}

/// What the templates may show of the merchant.
#[derive(Debug, Clone, Deserialize, serde::Serialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct Brand {
    /// A logo shown at the top of the HTML part (default: no logo).
    #[serde(default)]
    pub logo_url: Option<String>,
    /// The accent colour.
    #[serde(default = "teal")]
    pub color: String,
    /// A line at the foot of every message, such as the organisation number (default: none).
    #[serde(default)]
    pub footer: Option<String>,
    /// The merchant's name in messages (default: Dintero's `merchant_name`, else the From name).
    #[serde(default)]
    pub merchant_name: Option<String>,
}

impl Default for Brand {
    fn default() -> Self {
        Self {
            logo_url: None,
            color: teal(),
            footer: None,
            merchant_name: None,
        }
    }
}

/// `dkim = { domain = "...", selector = "...", private_key_file = "...", algorithm = "rsa" }`,
/// or the key itself as `private_key` (e.g. `POSTBUD_CHANNELS__<NAME>__DKIM__PRIVATE_KEY`).
#[derive(Debug, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct DkimSettings {
    /// The signing domain (`d=`).
    pub domain: String,
    /// The selector (`s=`): the key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PKCS#1 PEM (rsa) or base64 seed (ed25519). `private_key_file = "PATH"` reads it from a
    /// file: the configuration's `<key>_file` rule, applied before this table is read.
    #[schemars(with = "String")]
    pub private_key: SecretString,
    /// `rsa` or `ed25519`.
    #[serde(default = "rsa")]
    pub algorithm: String,
}

fn auto() -> String {
    "auto".into()
}
fn ten_mib() -> u64 {
    10 * 1024 * 1024
}
fn thirty_seconds() -> Duration {
    Duration::from_secs(30)
}
fn teal() -> String {
    "#0f766e".into()
}
fn rsa() -> String {
    "rsa".into()
}

/// Where and how the channel talks SMTP: what the pooled transport is built from, and what a
/// single connection that asks for DSNs needs (see [`crate::bounces::smtp`]).
#[derive(Clone)]
pub(crate) struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: Tls,
    pub credentials: Option<Credentials>,
    pub timeout: Duration,
    /// How the session is protected, as `check` reports it.
    pub security: &'static str,
}

/// Builds the pooled transport, and says how it protects the session (for `check`).
pub(crate) fn transport(settings: &SmtpSettings) -> AsyncSmtpTransport<lettre::Tokio1Executor> {
    let mut builder =
        AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&settings.host)
            .port(settings.port)
            .tls(settings.tls.clone())
            .timeout(Some(settings.timeout));
    if let Some(credentials) = &settings.credentials {
        builder = builder.credentials(credentials.clone());
    }
    builder.build()
}

/// Reads `smtp_url` and the keys beside it. Errors never quote the URL: it may hold the
/// password.
pub(crate) fn smtp_settings(config: &EmailConfig) -> Result<SmtpSettings, (&'static str, String)> {
    let url = Url::parse(config.smtp_url.expose_secret()).map_err(|e| {
        (
            "smtp_url",
            format!(
                "not a URL ({e}); expected smtp://user:pass@host:587?tls=required or smtps://..."
            ),
        )
    })?;
    let host = url
        .host_str()
        .ok_or(("smtp_url", "has no host".to_owned()))?
        .to_owned();
    let tls_mode = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let mut tls = TlsParameters::builder(host.clone());
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| ("ca_file", format!("`{path}`: {e}")))?;
        let certificate = Certificate::from_pem(&pem)
            .map_err(|e| ("ca_file", format!("`{path}` is not a PEM certificate: {e}")))?;
        tls = tls.add_root_certificate(certificate);
    }
    let tls = || {
        tls.clone()
            .build_rustls()
            .map_err(|e| ("smtp_url", format!("TLS setup: {e}")))
    };
    let (tls, default_port, security) = match (url.scheme(), tls_mode.as_deref()) {
        ("smtps", _) => (Tls::Wrapper(tls()?), 465, "TLS from the start (smtps)"),
        ("smtp", Some("required")) => (Tls::Required(tls()?), 587, "STARTTLS required"),
        ("smtp", Some("opportunistic")) => (
            Tls::Opportunistic(tls()?),
            587,
            "STARTTLS when offered, else NO TLS",
        ),
        ("smtp", None | Some("none")) => (Tls::None, 25, "NO TLS"),
        ("smtp", Some(other)) => {
            return Err((
                "smtp_url",
                format!("tls={other}: expected required, opportunistic or none"),
            ));
        }
        (other, _) => {
            return Err((
                "smtp_url",
                format!("scheme `{other}`: expected smtp or smtps"),
            ));
        }
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let username = config
        .username
        .clone()
        .or_else(|| (!url.username().is_empty()).then(|| decode(url.username())));
    let password = config
        .password
        .as_ref()
        .map(|p| p.expose_secret().to_owned())
        .or_else(|| url.password().map(decode));
    let cleartext_possible = matches!(tls, Tls::None | Tls::Opportunistic(_));
    let credentials = match (username, password) {
        (Some(user), Some(password)) => {
            // Opportunistic STARTTLS falls back to clear text when the server (or a man in the
            // middle) does not offer it: a password needs TLS it cannot lose, except on loopback.
            if cleartext_possible && !is_loopback(&url) {
                return Err((
                    "smtp_url",
                    format!(
                        "a password would be sent to {host} without TLS ({security}): use smtps://…:465 or smtp://…:587?tls=required (plain SMTP with a password is accepted only on loopback)"
                    ),
                ));
            }
            Some(Credentials::new(user, password))
        }
        (None, None) => None,
        _ => {
            return Err((
                "smtp_url",
                "has a user name without a password, or the reverse".to_owned(),
            ));
        }
    };
    Ok(SmtpSettings {
        port: url.port().unwrap_or(default_port),
        host,
        tls,
        credentials,
        timeout: config.timeout,
        security,
    })
}

/// `localhost`, 127.0.0.0/8 or `::1`: traffic that never leaves the machine. (`smtp:` is not a
/// scheme the URL standard knows, so its host arrives as text even when it is an address.)
pub(crate) fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
