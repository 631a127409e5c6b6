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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EmailConfig {
    /// `smtp://user:pass@host:587?tls=required` (STARTTLS), `smtps://user:pass@host:465`
    /// (TLS from the start), `smtp://host:25` (no TLS; loopback only makes sense). A secret: it
    /// may carry the password.
    pub smtp_url: SecretString,
    /// Overrides the URL's user name.
    #[serde(default)]
    pub username: Option<String>,
    /// Overrides the URL's password (`POSTBUD_CHANNELS__<NAME>__PASSWORD`).
    #[serde(default)]
    pub password: Option<SecretString>,
    /// `Merchant AS <faktura@merchant.example>`.
    pub from: String,
    #[serde(default)]
    pub reply_to: Option<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    /// A fixed recipient (an ERP inbox) instead of the customer's billing email.
    #[serde(default)]
    pub to: Option<String>,
    /// A directory of template overrides.
    #[serde(default)]
    pub templates: Option<String>,
    /// `auto` (from the billing country), `nb`, `sv`, `fi` or `en`.
    #[serde(default = "auto")]
    pub locale: String,
    /// Larger PDFs are not attached; the signed link is sent instead.
    #[serde(default = "ten_mib")]
    pub max_attachment_bytes: u64,
    /// An extra trusted root certificate (PEM). Verification stays on.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Connect, command and data timeout.
    #[serde(default = "thirty_seconds", with = "humantime_serde")]
    pub timeout: Duration,
    /// Branding for the templates.
    #[serde(default)]
    pub brand: Brand,
    /// DKIM signing.
    #[serde(default)]
    pub dkim: Option<DkimSettings>,
}

/// What the templates may show of the merchant.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Brand {
    #[serde(default)]
    pub logo_url: Option<String>,
    #[serde(default = "teal")]
    pub color: String,
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DkimSettings {
    pub domain: String,
    pub selector: String,
    /// PKCS#1 PEM (rsa) or base64 seed (ed25519). `private_key_file = "PATH"` reads it from a
    /// file: the configuration's `<key>_file` rule, applied before this table is read.
    pub private_key: SecretString,
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

/// Builds the pooled transport, and says how it protects the session (for `check`). Errors
/// never quote the URL: it may hold the password.
pub(crate) fn transport(
    config: &EmailConfig,
) -> Result<(AsyncSmtpTransport<lettre::Tokio1Executor>, &'static str), (&'static str, String)> {
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
    let mut builder = AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(&host)
        .port(url.port().unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(config.timeout));
    match (username, password) {
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
            builder = builder.credentials(Credentials::new(user, password))
        }
        (None, None) => {}
        _ => {
            return Err((
                "smtp_url",
                "has a user name without a password, or the reverse".to_owned(),
            ));
        }
    }
    Ok((builder.build(), security))
}

/// `localhost`, 127.0.0.0/8 or `::1`: traffic that never leaves the machine. (`smtp:` is not a
/// scheme the URL standard knows, so its host arrives as text even when it is an address.)
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
