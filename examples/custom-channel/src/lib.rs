//! # postbud-teams: a channel crate as a merchant would write one
//!
//! Kind `teams`: when an invoice goes out, post a notice to the finance team's Microsoft Teams
//! (or Slack) incoming webhook. It shows the whole contract: a typed configuration that rejects
//! unknown keys, a factory registered with [`postbud_channel::register_channel!`], an explicit
//! [`register`], errors classified as temporary or permanent, and a cancellation notice.
//!
//! ```toml
//! [channels.finance]
//! kind = "teams"
//! webhook_url = "https://example.webhook.office.com/webhookb2/..."
//! style = "teams"          # teams (MessageCard) | slack ({"text": ...})
//! ```

use std::time::Duration;

use postbud_channel::{
    BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Invoice, Receipt, format,
    http,
    serde::{Deserialize, Serialize},
    serde_json::{self, json},
};

postbud_channel::register_channel! {
    /// The factory of kind `teams`.
    pub static FACTORY = {
        kind: "teams",
        description: "posts an invoice notice to a Microsoft Teams or Slack incoming webhook",
        crate_name: env!("CARGO_PKG_NAME"),
        example: "[channels.finance]\nkind = \"teams\"\nwebhook_url = \"https://example.webhook.office.com/webhookb2/...\"\n",
        config: TeamsConfig,
        build: build,
    };
}

/// Links the kind explicitly: call it where the binary builds its registry.
pub fn register(
    registry: &mut postbud_channel::Registry,
) -> Result<(), postbud_channel::DuplicateKind> {
    registry.add(&FACTORY)
}

/// The channel's own table; a typo is an error naming the key and its file. Its doc comments
/// are the kind's key reference (`postbud channels --keys`).
#[derive(Debug, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(crate = "postbud_channel::serde", deny_unknown_fields)]
struct TeamsConfig {
    /// The incoming webhook's URL (a credential: whoever has it can post).
    webhook_url: String,
    /// `teams` (a MessageCard) or `slack` (`{"text": ...}`).
    #[serde(default)]
    style: Style,
    /// Per request.
    #[serde(default = "ten_seconds")]
    timeout_seconds: u64,
}

fn ten_seconds() -> u64 {
    10
}

#[derive(
    Debug, Default, Clone, Copy, Deserialize, Serialize, postbud_channel::keys::JsonSchema,
)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(crate = "postbud_channel::serde", rename_all = "lowercase")]
enum Style {
    #[default]
    Teams,
    Slack,
}

/// Posts notices to a chat webhook.
pub struct TeamsChannel {
    /// A credential: whoever has an incoming-webhook URL can post to the channel.
    url: String,
    style: Style,
    http: http::reqwest::Client,
}

impl std::fmt::Debug for TeamsChannel {
    // By hand, so the webhook URL never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsChannel")
            .field("style", &self.style)
            .finish_non_exhaustive()
    }
}

fn build(ctx: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
    let config: TeamsConfig = ctx.config.extract()?;
    if !config.webhook_url.starts_with("https://")
        && !config.webhook_url.starts_with("http://127.0.0.1")
    {
        return Err(ctx.config.error("webhook_url", "must be an https URL"));
    }
    let http = http::client(Duration::from_secs(config.timeout_seconds))
        .build()
        .map_err(|e| ctx.config.error("webhook_url", e))?;
    Ok(Box::new(TeamsChannel {
        url: config.webhook_url,
        style: config.style,
        http,
    }))
}

impl TeamsChannel {
    fn body(&self, invoice: &Invoice, text: String) -> serde_json::Value {
        match self.style {
            Style::Slack => json!({ "text": text }),
            Style::Teams => json!({
                "@type": "MessageCard", "@context": "https://schema.org/extensions",
                "summary": text, "text": text,
                "potentialAction": invoice.link.as_ref().map(|link| json!([{
                    "@type": "OpenUri", "name": "Open the invoice", "targets": [{"os": "default", "uri": link}]
                }])),
            }),
        }
    }

    async fn post(&self, body: serde_json::Value) -> Result<Receipt, ChannelError> {
        let response = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            // reqwest's message would quote the URL, which is a credential here.
            .map_err(|e| {
                http::transport_error(e).map_message(|m| format!("POST to the webhook: {m}"))
            })?;
        let status = response.status();
        let wait = http::retry_after(response.headers());
        let body = http::read_prefix(response, http::ANSWER_LIMIT).await;
        if status.is_success() {
            return Ok(Receipt::new(format!("posted ({status})")));
        }
        // Teams and Slack answer 429 when throttled and 5xx when down: both pass. A 4xx means
        // the webhook was removed or the payload is wrong: retrying will not help.
        Err(http::refusal(
            status,
            wait,
            format!("HTTP {status}: {}", http::excerpt(&body)),
        ))
    }
}

#[postbud_channel::async_trait]
impl Channel for TeamsChannel {
    async fn deliver(
        &self,
        invoice: &Invoice,
        _ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        let text = format!(
            "Invoice {} sent to {}: {}",
            invoice.invoice_number,
            invoice
                .customer
                .business_name
                .as_deref()
                .unwrap_or(&invoice.customer.name),
            format::amount(invoice.amount, &invoice.currency, "en")
        );
        self.post(self.body(invoice, text)).await
    }

    fn supports_cancel(&self) -> bool {
        true
    }

    async fn cancel(
        &self,
        invoice: &Invoice,
        _ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.post(self.body(
            invoice,
            format!("Invoice {} was cancelled", invoice.invoice_number),
        ))
        .await
    }
}
