//! # postbud-sms
//!
//! Kind `sms`: an invoice notice with the signed link to the PDF (an SMS cannot carry the PDF),
//! through Twilio, Vonage, Sinch, LINK Mobility, 46elks or any HTTP gateway. Numbers are
//! normalised to E.164; the text is checked for encoding and segments before anything is sent;
//! delivery reports reach `postbud serve` at `/reports/<channel>`.
//!
//! ```toml
//! [channels.customer-sms]
//! kind = "sms"
//! provider = "twilio"          # twilio | vonage | sinch | linkmobility | 46elks | http
//! from = "Merchant"
//! default_region = "NO"
//! max_segments = 3
//! account_sid = "AC..."
//! auth_token = "..."           # or POSTBUD_CHANNELS__CUSTOMER_SMS__AUTH_TOKEN
//! ```

#![warn(missing_docs)]

pub mod number;
pub mod providers;
pub mod reports;
pub mod segments;
pub mod text;

use std::{fmt, time::Duration};

use minijinja::context;
use postbud_channel::{
    BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Evidence, EvidenceOffer,
    InboundReport, Invoice, Receipt, format,
};
use secrecy::SecretString;
use serde::Deserialize;

use self::{
    providers::{HttpPreset, Outgoing, Provider},
    reports::ReportKeys,
    text::Texts,
};

postbud_channel::register_channel! {
    /// The factory of kind `sms`.
    pub static FACTORY = {
        kind: "sms",
        description: "invoice notice with a signed link by SMS (twilio, vonage, sinch, linkmobility, 46elks, http)",
        crate_name: env!("CARGO_PKG_NAME"),
        example: "[channels.customer-sms]\nkind = \"sms\"\nprovider = \"twilio\"\nfrom = \"Merchant\"\naccount_sid = \"AC...\"\nauth_token = \"...\"\n",
        config: SmsConfig,
        build: build,
    };
}

/// Links this crate's kind explicitly.
pub fn register(
    registry: &mut postbud_channel::Registry,
) -> Result<(), postbud_channel::DuplicateKind> {
    registry.add(&FACTORY)
}

/// The channel's own table. The credentials are the chosen provider's, under its own names.
#[derive(Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
struct SmsConfig {
    /// `twilio`, `vonage`, `sinch`, `linkmobility`, `46elks` or `http`.
    provider: String,
    /// The sender: alphanumeric where the provider allows it, else a number.
    from: String,
    /// The country of numbers written without `+country`.
    #[serde(default = "norway")]
    default_region: String,
    /// Longer texts are refused before sending.
    #[serde(default = "three")]
    max_segments: usize,
    /// The provider's API base (default: the provider's; LINK Mobility: required, your
    /// account's).
    #[serde(default)]
    base_url: Option<url::Url>,
    /// A directory whose `<locale>/sms.txt` and `<locale>/cancel.txt` override the built-ins.
    #[serde(default)]
    templates: Option<String>,
    /// `auto` (from the billing country), `nb`, `sv`, `fi` or `en`.
    #[serde(default = "auto")]
    locale: String,
    /// Per request to the provider.
    #[serde(default = "fifteen_seconds", with = "humantime_serde")]
    #[schemars(with = "String")]
    timeout: Duration,
    /// The merchant's name in the text (default: Dintero's `merchant_name`).
    #[serde(default)]
    merchant_name: Option<String>,
    /// Twilio: the account SID (`AC...`).
    #[serde(default)]
    account_sid: Option<String>,
    /// Twilio: the auth token.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    auth_token: Option<SecretString>,
    /// Vonage: the API key.
    #[serde(default)]
    api_key: Option<String>,
    /// Vonage: the API secret.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    api_secret: Option<SecretString>,
    /// Sinch: the service plan id.
    #[serde(default)]
    service_plan_id: Option<String>,
    /// Sinch: the API token.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    api_token: Option<SecretString>,
    /// Sinch: the API's region (default: `eu`).
    #[serde(default)]
    region: Option<String>,
    /// LINK Mobility and 46elks: the user name.
    #[serde(default)]
    username: Option<String>,
    /// LINK Mobility and 46elks: the password.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    password: Option<SecretString>,
    /// LINK Mobility: the platform id.
    #[serde(default)]
    platform_id: Option<String>,
    /// LINK Mobility: the platform partner id.
    #[serde(default)]
    platform_partner_id: Option<String>,
    /// LINK Mobility: the gate id (optional).
    #[serde(default)]
    gate_id: Option<String>,
    /// `provider = "http"`: the gateway's request, described instead of credentials.
    #[serde(default)]
    http: Option<HttpPreset>,
    /// Delivery reports: Sinch's callback secret (reports must then carry
    /// `X-Sinch-Webhook-Signature`); Twilio's SharedKey secret (for callbacks signed with a
    /// SharedKey); LINK Mobility's token in the gate's report URL (`?token=`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    webhook_secret: Option<SecretString>,
    /// Vonage: the signature secret of signed webhooks; delivery receipts must then carry a
    /// valid `sig`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    signature_secret: Option<SecretString>,
    /// Vonage: the dashboard's signature method, `md5hash` (Vonage's default), `md5`, `sha1`,
    /// `sha256` or `sha512` (HMAC).
    #[serde(default)]
    signature_method: reports::vonage::Method,
}

fn norway() -> String {
    "NO".into()
}
fn three() -> usize {
    3
}
fn auto() -> String {
    "auto".into()
}
fn fifteen_seconds() -> Duration {
    Duration::from_secs(15)
}

/// Sends invoice notices by SMS.
pub struct SmsChannel {
    provider: Provider,
    from: String,
    region: phonenumber::country::Id,
    max_segments: usize,
    locale: String,
    merchant_name: Option<String>,
    texts: Texts,
    http: reqwest::Client,
    report_keys: ReportKeys,
}

impl fmt::Debug for SmsChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsChannel")
            .field("provider", &self.provider.name())
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

fn build(ctx: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
    let c: SmsConfig = ctx.config.extract()?;
    let cfg = &ctx.config;
    // Every provider is sent credentials: plain http only where the traffic stays on the machine.
    let cleartext = |key: &str, url: &url::Url| {
        let loopback = url.host_str().is_some_and(|h| {
            h.eq_ignore_ascii_case("localhost")
                || h.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        if url.scheme() == "https" || (url.scheme() == "http" && loopback) {
            Ok(())
        } else {
            Err(cfg.error(
                key,
                format!(
                    "`{}` must use https: the provider is sent credentials (plain http only on loopback)",
                    postbud_channel::http::redact_url(url.as_str())
                ),
            ))
        }
    };
    if let Some(url) = &c.base_url {
        cleartext("base_url", url)?;
    }
    if let Some(preset) = &c.http {
        let url = url::Url::parse(&preset.url)
            .map_err(|e| cfg.error("http.url", format!("not a URL: {e}")))?;
        cleartext("http.url", &url)?;
    }
    let need = |value: Option<String>, key: &str| {
        value.ok_or_else(|| cfg.error(key, format!("is required for provider \"{}\"", c.provider)))
    };
    let need_secret = |value: Option<SecretString>, key: &str| {
        value.ok_or_else(|| cfg.error(key, format!("is required for provider \"{}\"", c.provider)))
    };
    let base = |default: String| {
        c.base_url
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or(default)
    };
    let provider =
        match c.provider.as_str() {
            "twilio" => Provider::Twilio {
                base: base("https://api.twilio.com".into()),
                account_sid: need(c.account_sid.clone(), "account_sid")?,
                auth_token: need_secret(c.auth_token.clone(), "auth_token")?,
            },
            "vonage" => Provider::Vonage {
                base: base("https://rest.nexmo.com".into()),
                api_key: need(c.api_key.clone(), "api_key")?,
                api_secret: need_secret(c.api_secret.clone(), "api_secret")?,
            },
            "sinch" => Provider::Sinch {
                base: base(format!(
                    "https://{}.sms.api.sinch.com",
                    c.region.as_deref().unwrap_or("eu")
                )),
                service_plan_id: need(c.service_plan_id.clone(), "service_plan_id")?,
                api_token: need_secret(c.api_token.clone(), "api_token")?,
            },
            "linkmobility" => Provider::LinkMobility {
                base: c
                    .base_url
                    .as_ref()
                    .map(|u| u.as_str().trim_end_matches('/').to_owned())
                    .ok_or_else(|| {
                        cfg.error(
                            "base_url",
                            "is required for LINK Mobility (the base assigned to your account)",
                        )
                    })?,
                username: need(c.username.clone(), "username")?,
                password: need_secret(c.password.clone(), "password")?,
                platform_id: need(c.platform_id.clone(), "platform_id")?,
                platform_partner_id: need(c.platform_partner_id.clone(), "platform_partner_id")?,
                gate_id: c.gate_id.clone(),
            },
            "46elks" => Provider::Elks {
                base: base("https://api.46elks.com".into()),
                username: need(c.username.clone(), "username")?,
                password: need_secret(c.password.clone(), "password")?,
            },
            "http" => {
                let preset = c.http.ok_or_else(|| {
                    cfg.error(
                        "http",
                        "is required for provider \"http\": url, fields = { to, text }, ...",
                    )
                })?;
                for field in ["to", "text"] {
                    if !preset.fields.contains_key(field) {
                        return Err(cfg.error("http.fields", format!("must map `{field}`")));
                    }
                }
                Provider::Http(preset)
            }
            other => return Err(cfg.error(
                "provider",
                format!(
                    "`{other}`: expected one of twilio, vonage, sinch, linkmobility, 46elks, http"
                ),
            )),
        };
    let region = c.default_region.parse().map_err(|_| {
        cfg.error(
            "default_region",
            format!("`{}` is not an ISO 3166 country code", c.default_region),
        )
    })?;
    if ctx.public_url.is_none() {
        return Err(cfg.error("kind", "an SMS carries the signed link to the PDF: set server.public_url (served by `postbud serve`)"));
    }
    let templates = c.templates.as_deref().map(|t| cfg.path("templates", t));
    let texts = Texts::load(templates.as_deref()).map_err(|why| cfg.error("templates", why))?;
    if c.locale != "auto" && !text::LOCALES.contains(&c.locale.as_str()) {
        return Err(cfg.error(
            "locale",
            format!("`{}`: expected auto, nb, sv, fi or en", c.locale),
        ));
    }
    let http = postbud_channel::http::client(c.timeout)
        .build()
        .map_err(|e| cfg.error("provider", format!("HTTP client: {e}")))?;
    Ok(Box::new(SmsChannel {
        provider,
        from: c.from,
        region,
        max_segments: c.max_segments,
        locale: c.locale,
        merchant_name: c.merchant_name,
        texts,
        http,
        report_keys: ReportKeys {
            webhook_secret: c.webhook_secret,
            signature_secret: c.signature_secret,
            signature_method: c.signature_method,
        },
    }))
}

impl SmsChannel {
    /// The text for an invoice, checked against the gateway's limits.
    pub fn compose(
        &self,
        invoice: &Invoice,
        cancelled: bool,
    ) -> Result<(String, segments::Segments), ChannelError> {
        let locale = if self.locale == "auto" {
            invoice.locale.as_str()
        } else {
            self.locale.as_str()
        };
        let link = invoice.link.clone();
        if !cancelled && link.is_none() {
            return Err(ChannelError::permanent(
                "no signed link to the PDF: set server.public_url",
            ));
        }
        let ctx = context! {
            number => &invoice.invoice_number,
            merchant => self.merchant_name.clone().or_else(|| invoice.merchant_name.clone()).unwrap_or_default(),
            amount => format::amount(invoice.amount, &invoice.currency, locale),
            due_date => invoice.due_date.map(|d| format::date(d, locale)),
            link, customer => &invoice.customer.name,
        };
        let text = self
            .texts
            .render(locale, cancelled, ctx)
            .map_err(|e| ChannelError::permanent(format!("template: {e}")))?;
        // The amount's no-break spaces are not in GSM-7; one would make the whole text UCS-2.
        let text = text.replace('\u{a0}', " ");
        let text = if self.provider.bmp_only() {
            segments::without_astral(&text).0
        } else {
            text
        };
        let counted = segments::count(&text);
        if counted.count > self.max_segments {
            return Err(ChannelError::permanent(format!(
                "the text needs {} segments ({:?}, {} units), over max_segments = {}: shorten the template",
                counted.count, counted.encoding, counted.units, self.max_segments
            )));
        }
        Ok((text, counted))
    }

    async fn send(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
        cancelled: bool,
    ) -> Result<Receipt, ChannelError> {
        let raw = invoice.customer.phone.as_deref().ok_or_else(|| {
            ChannelError::permanent(
                "the invoice has no phone number (billing_address.phone_number)",
            )
        })?;
        let to = number::e164(raw, self.region).map_err(ChannelError::permanent)?;
        let (text, counted) = self.compose(invoice, cancelled)?;
        let outgoing = Outgoing {
            to: &to,
            from: &self.from,
            text: &text,
            encoding: counted.encoding,
            delivery_id: &ctx.delivery_id,
            report_url: ctx.report_url.as_deref(),
        };
        let response = self
            .provider
            .request(&self.http, &outgoing)?
            .send()
            .await
            .map_err(|e| {
                // The URL may hold the gateway's key (`?api_key=`): shown redacted only.
                let url = e
                    .url()
                    .map(|u| postbud_channel::http::redact_url(u.as_str()))
                    .unwrap_or_else(|| "no URL".into());
                let provider = self.provider.name();
                postbud_channel::http::transport_error(e)
                    .map_message(|m| format!("{provider}: {m} ({url})"))
            })?;
        let status = response.status();
        let retry_after = postbud_channel::http::retry_after(response.headers());
        let body =
            postbud_channel::http::read_prefix(response, postbud_channel::http::ANSWER_LIMIT).await;
        let id = self.provider.read(status, retry_after, &body)?;
        let receipt = Receipt::new(format!(
            "{} accepted for {to} ({} segment(s), {:?})",
            self.provider.name(),
            counted.count,
            counted.encoding
        ));
        // The provider's id correlates its reports; a gateway configured without one has none.
        Ok(match id {
            Some(id) => receipt.with_reference(id),
            None => receipt,
        })
    }
}

#[async_trait::async_trait]
impl Channel for SmsChannel {
    async fn deliver(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.send(invoice, ctx, false).await
    }

    fn supports_cancel(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.send(invoice, ctx, true).await
    }

    fn evidence(&self) -> EvidenceOffer {
        self.provider.evidence()
    }

    async fn report(&self, report: &InboundReport) -> Result<Vec<Evidence>, ChannelError> {
        self.provider.report(&self.report_keys, report)
    }
}
