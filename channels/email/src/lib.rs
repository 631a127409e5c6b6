//! # postbud-email
//!
//! Kind `email`: the invoice as a branded email over SMTP. The message is `multipart/mixed`
//! holding `multipart/alternative` (plain text, then HTML) and the PDF named after the invoice
//! number; the `Message-ID` derives from the delivery id, so a retry is recognisable as the same
//! message. Built on lettre with rustls.
//!
//! ```toml
//! [channels.customer-email]
//! kind = "email"
//! smtp_url = "smtps://user:pass@smtp.example:465"   # or smtp://...:587?tls=required
//! from = "Merchant AS <faktura@merchant.example>"
//! reply_to = "regnskap@merchant.example"
//! bcc = ["archive@merchant.example"]
//! templates = "./templates/email"                   # optional overrides
//! locale = "auto"                                   # auto | nb | sv | fi | en
//! max_attachment_bytes = 10485760                   # larger: the signed link instead
//!
//! [channels.customer-email.bounces]                 # optional: read bounces (see `bounces`)
//! imap_url = "imaps://bounces:secret@imap.merchant.example/INBOX"
//! return_path = "bounces@merchant.example"          # sent as bounces+<delivery id>@…
//!
//! [channels.customer-email.events]                  # the provider's signed event webhook
//! provider = "sendgrid"                             # sendgrid | ses | mailgun | postmark
//! public_key = "MFkwEwYH…"
//! ```

#![warn(missing_docs)]

mod bounces;
mod config;
mod events;

mod message;
pub mod templates;

use std::{fmt, sync::Arc};

use lettre::{AsyncTransport, message::Mailbox, transport::smtp::AsyncSmtpTransport};
use postbud_channel::{
    BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Evidence, EvidenceOffer,
    EvidenceSource, EvidenceState, InboundReport, Invoice, Receipt,
};

use self::{
    bounces::Bounces,
    config::{EmailConfig, SmtpSettings},
    templates::Templates,
};

postbud_channel::register_channel! {
    /// The factory of kind `email`.
    pub static FACTORY = {
        kind: "email",
        description: "branded invoice email over SMTP, PDF attached (or a signed link when large)",
        crate_name: env!("CARGO_PKG_NAME"),
        example: "[channels.customer-email]\nkind = \"email\"\nsmtp_url = \"smtps://user:pass@smtp.example:465\"\nfrom = \"Merchant AS <faktura@merchant.example>\"\n",
        config: EmailConfig,
        build: build,
    };
}

/// Links this crate's kind explicitly (for binaries that never name the crate otherwise).
pub fn register(
    registry: &mut postbud_channel::Registry,
) -> Result<(), postbud_channel::DuplicateKind> {
    registry.add(&FACTORY)
}

/// Sends invoices as email.
pub struct EmailChannel {
    transport: AsyncSmtpTransport<lettre::Tokio1Executor>,
    /// How the session is protected, as `check` reports it.
    security: &'static str,
    templates: Arc<Templates>,
    message: message::Composer,
    /// Where each connection of its own goes, when bounces are read (see [`bounces::smtp`]).
    smtp: SmtpSettings,
    /// `[bounces]`, when configured.
    bounces: Option<Bounces>,
    /// The provider's event webhook, when `[events]` is configured.
    events: Option<Arc<events::Events>>,
}

impl fmt::Debug for EmailChannel {
    // By hand: the transport holds credentials and the DKIM key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailChannel")
            .field("from", &self.message.from.to_string())
            .finish_non_exhaustive()
    }
}

fn build(ctx: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
    let mut config: EmailConfig = ctx.config.extract()?;
    // Paths in a configuration file are relative to that file.
    config.ca_file = config.ca_file.map(|f| {
        ctx.config
            .path("ca_file", &f)
            .to_string_lossy()
            .into_owned()
    });
    let smtp = config::smtp_settings(&config).map_err(|(key, why)| ctx.config.error(key, why))?;
    let (transport, security) = (config::transport(&smtp), smtp.security);
    let bounces = match &config.bounces {
        None => None,
        Some(settings) => {
            let ca_file = match &settings.ca_file {
                Some(f) => Some(ctx.config.path("bounces.ca_file", f)),
                None => config.ca_file.as_ref().map(std::path::PathBuf::from),
            };
            Some(
                Bounces::new(settings, ca_file.as_deref(), config.timeout)
                    .map_err(|(key, why)| ctx.config.error(key, why))?,
            )
        }
    };
    let templates = config
        .templates
        .as_deref()
        .map(|t| ctx.config.path("templates", t));
    let templates =
        Templates::load(templates.as_deref()).map_err(|why| ctx.config.error("templates", why))?;
    let events = config
        .events
        .take()
        .map(|events| {
            events::Events::build(events, config.ca_file.as_deref(), config.timeout)
                .map(Arc::new)
                .map_err(|(key, why)| ctx.config.error(&key, why))
        })
        .transpose()?;
    let message = message::Composer::new(&config, events.clone())
        .map_err(|(key, why)| ctx.config.error(key, why))?;
    if config.locale != "auto" && !templates::LOCALES.contains(&config.locale.as_str()) {
        return Err(ctx.config.error(
            "locale",
            format!("`{}`: expected auto, nb, sv, fi or en", config.locale),
        ));
    }
    Ok(Box::new(EmailChannel {
        transport,
        security,
        templates: Arc::new(templates),
        message,
        smtp,
        bounces,
        events,
    }))
}

/// What the SMTP server's refusal says: refused credentials (535 authentication failed, 530
/// authentication required) name the password to fix; any other 5xx is a permanent refusal;
/// 4xx, timeouts and lost connections are temporary.
fn classify(error: lettre::transport::smtp::Error) -> ChannelError {
    let message = format!("SMTP: {error}");
    let code = error.status().map(|code| code.to_string());
    let classified = match code.as_deref() {
        Some("535" | "530" | "534" | "538") => {
            ChannelError::unauthorized(message).with_config_key("password")
        }
        _ if error.is_timeout() => ChannelError::timed_out(message),
        _ if error.is_permanent() => ChannelError::refused(message),
        _ if error.is_transient() => ChannelError::unavailable(message),
        _ => ChannelError::temporary(message),
    };
    classified.with_source(error)
}

impl EmailChannel {
    async fn send(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
        cancelled: bool,
    ) -> Result<Receipt, ChannelError> {
        let email = self
            .message
            .compose(&self.templates, invoice, ctx, cancelled)?;
        let recipients: Vec<String> = email
            .envelope()
            .to()
            .iter()
            .map(ToString::to_string)
            .collect();
        let message_id = message::message_id(&ctx.delivery_id, &self.message.from);
        let (response, note) = match &self.bounces {
            None => (self.transport.send(email).await.map_err(classify)?, ""),
            Some(bounces) => {
                let return_path = bounces
                    .return_path
                    .for_delivery(&ctx.delivery_id)
                    .map_err(ChannelError::permanent)?;
                let outgoing = bounces::smtp::Outgoing {
                    return_path,
                    recipients: email.envelope().to(),
                    delivery_id: &ctx.delivery_id,
                    message: &email.formatted(),
                };
                let (response, dsn) = bounces::smtp::send(&self.smtp, &outgoing)
                    .await
                    .map_err(classify)?;
                let note = if dsn {
                    "; return path with the delivery id, DSN asked for"
                } else {
                    "; return path with the delivery id (the server offers no DSN)"
                };
                (response, note)
            }
        };
        let reply = response.message().collect::<Vec<_>>().join(" ");
        Ok(Receipt::new(format!(
            "SMTP {} for {}: {reply}{note}",
            response.code(),
            recipients.join(", ")
        ))
        .with_reference(message_id))
    }
}

#[async_trait::async_trait]
impl Channel for EmailChannel {
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

    fn evidence_source(&self) -> Option<Arc<dyn EvidenceSource>> {
        Some(Arc::new(self.bounce_mailbox()?))
    }

    async fn cancel(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.send(invoice, ctx, true).await
    }

    fn evidence(&self) -> EvidenceOffer {
        let offer = events::offer(self.events.as_deref());
        if self.bounces.is_none() {
            return offer;
        }
        // The bounce mailbox adds what mail servers report: failures, delays and, rarely, an
        // arrival.
        let mut later = offer.later.clone();
        for state in [
            EvidenceState::Delivered,
            EvidenceState::Delayed,
            EvidenceState::Bounced,
        ] {
            if !later.contains(&state) {
                later.push(state);
            }
        }
        later.sort();
        offer.later(later)
    }

    async fn report(&self, report: &InboundReport) -> Result<Vec<Evidence>, ChannelError> {
        match &self.events {
            Some(events) => events.report(report).await,
            None => Err(ChannelError::invalid_input(
                "this email channel reads no provider events: configure [channels.<name>.events]",
            )),
        }
    }

    async fn check(&self) -> Result<String, ChannelError> {
        // Connecting runs EHLO, STARTTLS (or TLS) and AUTH; NOOP then proves the session works.
        let smtp = match self.transport.test_connection().await {
            Ok(true) => format!(
                "connected with {}; the session (and the login, when configured) was accepted",
                self.security
            ),
            Ok(false) => {
                return Err(ChannelError::temporary(
                    "connected, but the server did not answer NOOP",
                ));
            }
            Err(e) => return Err(classify(e)),
        };
        match self.bounce_mailbox() {
            None => Ok(smtp),
            Some(mailbox) => Ok(format!("{smtp}; {}", mailbox.check().await?)),
        }
    }
}

impl EmailChannel {
    fn bounce_mailbox(&self) -> Option<bounces::imap::BounceMailbox> {
        let bounces = self.bounces.as_ref()?;
        Some(bounces::imap::BounceMailbox::new(
            bounces.clone(),
            self.message.bcc_addresses(),
        ))
    }
}

/// The recipient's mailbox, or a permanent error saying why there is none.
pub(crate) fn mailbox(address: &str, what: &str) -> Result<Mailbox, ChannelError> {
    address.parse::<Mailbox>().map_err(|e| {
        ChannelError::permanent(format!("{what} `{address}` is not an email address: {e}"))
    })
}
