//! # postbud-webhook
//!
//! Kind `webhook`: the invoice as a signed JSON POST to a third-party platform, verifiable with
//! any Standard Webhooks library. `webhook-id` is the delivery id and stays the same across
//! retries, so the receiver can drop repeats.
//!
//! ```toml
//! [channels.platform]
//! kind = "webhook"
//! url = "https://platform.example/hooks/invoices"
//! secret = "whsec_..."            # or a list during rotation: every secret signs
//! scheme = "standard"             # standard (default) | stripe | github
//! pdf = "link"                    # link (signed URL, default) | inline (base64 in the body)
//! timeout = "15s"
//! headers = { "X-Tenant" = "shop-42" }
//! allow = []                      # private hosts or IPs that may be targets
//! ```

#![warn(missing_docs)]

mod payload;
pub mod signing;
/// Where a webhook may go: the SDK's SSRF guard, re-exported where it used to live.
pub use postbud_channel::http::target;

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use postbud_channel::{
    BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Invoice, Receipt, http,
};
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use self::{
    payload::PdfMode,
    signing::Scheme,
    target::{Allow, GuardedResolver},
};

postbud_channel::register_channel! {
    /// The factory of kind `webhook`.
    pub static FACTORY = {
        kind: "webhook",
        description: "signed JSON POST to a platform (Standard Webhooks; stripe/github styles)",
        crate_name: env!("CARGO_PKG_NAME"),
        example: "[channels.platform]\nkind = \"webhook\"\nurl = \"https://platform.example/hooks/invoices\"\nsecret = \"whsec_...\"\n",
        config: WebhookConfig,
        build: build,
    };
}

/// Links this crate's kind explicitly.
pub fn register(
    registry: &mut postbud_channel::Registry,
) -> Result<(), postbud_channel::DuplicateKind> {
    registry.add(&FACTORY)
}

/// One secret, or several during a rotation.
#[derive(Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(untagged)]
enum Secrets {
    One(#[schemars(with = "String")] SecretString),
    Many(#[schemars(with = "Vec<String>")] Vec<SecretString>),
}

/// The channel's own table.
#[derive(Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
struct WebhookConfig {
    /// The receiver: `https` (plain `http` only on loopback).
    url: Url,
    /// One secret, or several during a rotation (each signs). `standard`: `whsec_` and the
    /// base64 of 24 to 64 random bytes (`whsec_$(openssl rand -base64 32)`).
    secret: Secrets,
    /// Which signature headers to send: `standard` (`webhook-signature`), `stripe`
    /// (`X-Signature: t=..,v1=..`) or `github` (`X-Hub-Signature-256`).
    #[serde(default)]
    scheme: Scheme,
    /// `link`: a signed URL to the PDF (needs `server.public_url`); `inline`: the PDF in the
    /// body as base64 as well.
    #[serde(default)]
    pdf: PdfMode,
    /// Per attempt.
    #[serde(default = "fifteen_seconds", with = "humantime_serde")]
    #[schemars(with = "String")]
    timeout: Duration,
    /// Extra headers on every request (default: none).
    #[serde(default)]
    headers: BTreeMap<String, String>,
    /// Private hosts or IP addresses that may be targets (default: none).
    #[serde(default)]
    allow: Vec<String>,
}

fn fifteen_seconds() -> Duration {
    Duration::from_secs(15)
}

/// Posts invoices to a URL.
pub struct WebhookChannel {
    url: Url,
    secrets: Vec<SecretString>,
    scheme: Scheme,
    pdf: PdfMode,
    headers: HeaderMap,
    allow: Allow,
    http: reqwest::Client,
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookChannel")
            // Host only: some platforms put a token in the path or query.
            .field("host", &self.url.host_str())
            .field("scheme", &self.scheme)
            .field("secrets", &self.secrets.len())
            .finish_non_exhaustive()
    }
}

fn build(ctx: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
    let config: WebhookConfig = ctx.config.extract()?;
    let secrets = match config.secret {
        Secrets::One(s) => vec![s],
        Secrets::Many(list) => list,
    };
    if secrets.is_empty() {
        return Err(ctx.config.error("secret", "needs at least one secret"));
    }
    if config.scheme == Scheme::Standard {
        for (index, secret) in secrets.iter().enumerate() {
            signing::standard_key(secret.expose_secret()).map_err(|why| {
                ctx.config
                    .error("secret", format!("secret #{} {why}", index + 1))
            })?;
        }
    }
    let allow = Allow::new(config.allow);
    target::check_url(&config.url, &allow).map_err(|why| ctx.config.error("url", why))?;
    if config.pdf == PdfMode::Link && ctx.public_url.is_none() {
        return Err(ctx.config.error("pdf", "\"link\" needs server.public_url, the base of the signed links; or use pdf = \"inline\""));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
            .map_err(|e| ctx.config.error("headers", format!("`{name}`: {e}")))?;
        let value = reqwest::header::HeaderValue::from_str(value).map_err(|e| {
            ctx.config
                .error("headers", format!("value of `{name}`: {e}"))
        })?;
        headers.insert(name, value);
    }
    let http = postbud_channel::http::client(config.timeout)
        .dns_resolver(Arc::new(GuardedResolver(allow.clone())))
        .user_agent(concat!("postbud-webhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ctx.config.error("url", format!("HTTP client: {e}")))?;
    Ok(Box::new(WebhookChannel {
        url: config.url,
        secrets,
        scheme: config.scheme,
        pdf: config.pdf,
        headers,
        allow,
        http,
    }))
}

impl WebhookChannel {
    async fn post(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
        event: &str,
    ) -> Result<Receipt, ChannelError> {
        target::check_resolved(&self.url, &self.allow)
            .await
            .map_err(ChannelError::permanent)?;
        let now = jiff::Timestamp::now();
        let body = payload::body(invoice, event, now, self.pdf).map_err(ChannelError::permanent)?;
        let mut request = self
            .http
            .post(self.url.clone())
            .headers(self.headers.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", &ctx.delivery_id)
            .header("webhook-timestamp", now.as_second().to_string());
        for (name, value) in signing::headers(
            self.scheme,
            &self.secrets,
            &ctx.delivery_id,
            now.as_second(),
            &body,
        ) {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.map_err(|e| {
            let host = self.url.host_str().unwrap_or_default();
            http::transport_error(e).map_message(|m| format!("POST to {host}: {m}"))
        })?;
        let status = response.status();
        let wait = http::retry_after(response.headers());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = http::read_prefix(response, http::ANSWER_LIMIT).await;
        let said = format!("HTTP {status}: {}", http::excerpt(&body));
        if status.is_success() {
            return Ok(Receipt::new(said));
        }
        if status.is_redirection() {
            return Err(ChannelError::permanent(format!(
                "{said} (redirect to {} not followed: point `url` at the final address)",
                location.as_deref().unwrap_or("?")
            )));
        }
        let error = http::refusal(status, wait, said);
        // Only a 401 says the receiver did not accept who Postbud is; a 403 is the receiver's
        // own rule (an allow-list, a firewall): a refusal, and the route's fallback runs.
        if status != reqwest::StatusCode::UNAUTHORIZED {
            return Err(error);
        }
        // The receiver refused what identifies Postbud: its `Authorization` header when one is
        // configured, else the signature's secret, else the URL (a token in its path).
        let key = if self.headers.contains_key(reqwest::header::AUTHORIZATION) {
            "headers"
        } else if !self.secrets.is_empty() {
            "secret"
        } else {
            "url"
        };
        Err(error.with_config_key(key))
    }
}

#[async_trait::async_trait]
impl Channel for WebhookChannel {
    fn evidence(&self) -> postbud_channel::EvidenceOffer {
        postbud_channel::EvidenceOffer::new(
            "the receiver answered 2xx to the signed request (its status and the start of its body are the receipt)",
        )
    }

    async fn deliver(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.post(invoice, ctx, "invoice.ready").await
    }

    fn supports_cancel(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.post(invoice, ctx, "invoice.voided").await
    }

    async fn check(&self) -> Result<String, ChannelError> {
        target::check_resolved(&self.url, &self.allow)
            .await
            .map_err(ChannelError::permanent)?;
        Ok(format!(
            "{} is an allowed target (nothing was sent)",
            self.url.host_str().unwrap_or_default()
        ))
    }
}
