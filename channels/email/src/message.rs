//! Composing the MIME message.

use lettre::{
    Message,
    message::{
        Attachment, Mailbox, MultiPart, SinglePart,
        dkim::{
            DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
            DkimSigningKey,
        },
        header::{ContentType, HeaderName, HeaderValue},
    },
};
use minijinja::context;
use postbud_channel::{ChannelError, DeliveryContext, Invoice, format};
use secrecy::ExposeSecret;

use crate::{
    config::{Brand, EmailConfig},
    mailbox,
    templates::Templates,
};

/// Everything about a message that does not depend on the invoice.
pub(crate) struct Composer {
    pub from: Mailbox,
    reply_to: Option<Mailbox>,
    bcc: Vec<Mailbox>,
    to: Option<Mailbox>,
    locale: String,
    max_attachment_bytes: u64,
    brand: Brand,
    dkim: Option<DkimConfig>,
    /// Puts the delivery id where the event provider echoes it back.
    events: Option<std::sync::Arc<crate::events::Events>>,
}

/// `<delivery-id@sender-domain>`: the same on every attempt of one delivery.
pub(crate) fn message_id(delivery_id: &str, from: &Mailbox) -> String {
    format!("<{delivery_id}@{}>", from.email.domain())
}

impl Composer {
    /// The blind-copy addresses: a bounce about one of them is not about the customer's copy.
    pub(crate) fn bcc_addresses(&self) -> Vec<String> {
        self.bcc.iter().map(|b| b.email.to_string()).collect()
    }

    pub(crate) fn new(
        config: &EmailConfig,
        events: Option<std::sync::Arc<crate::events::Events>>,
    ) -> Result<Self, (&'static str, String)> {
        let parse = |key: &'static str, value: &str| {
            value
                .parse::<Mailbox>()
                .map_err(|e| (key, format!("`{value}` is not an email address: {e}")))
        };
        let dkim = match &config.dkim {
            None => None,
            Some(d) => {
                let (algorithm, expected) = match d.algorithm.as_str() {
                    "rsa" => (DkimSigningAlgorithm::Rsa, "a PKCS#1 PEM RSA private key"),
                    "ed25519" => (DkimSigningAlgorithm::Ed25519, "a base64 Ed25519 seed"),
                    other => {
                        return Err((
                            "dkim.algorithm",
                            format!("`{other}`: expected rsa or ed25519"),
                        ));
                    }
                };
                // The parser's message is left out: it is about the key's content.
                let key = DkimSigningKey::new(d.private_key.expose_secret().trim(), algorithm)
                    .map_err(|_| {
                        (
                            "dkim.private_key",
                            format!(
                                "is not a valid {} key: expected {expected} (the value is not shown: it is a secret)",
                                d.algorithm
                            ),
                        )
                    })?;
                {
                    // relaxed/relaxed survives the re-folding relays do. Content-Type is left out: lettre
                    // 0.11 canonicalises the folded multipart Content-Type differently from verifiers
                    // (dkimpy rejects the signature); DKIM requires only From.
                    let relaxed = DkimCanonicalization {
                        header: DkimCanonicalizationType::Relaxed,
                        body: DkimCanonicalizationType::Relaxed,
                    };
                    let headers = [
                        "From",
                        "To",
                        "Subject",
                        "Date",
                        "Message-ID",
                        "Reply-To",
                        "MIME-Version",
                    ]
                    .into_iter()
                    .map(HeaderName::new_from_ascii_str)
                    .collect();
                    Some(DkimConfig::new(
                        d.selector.clone(),
                        d.domain.clone(),
                        key,
                        headers,
                        relaxed,
                    ))
                }
            }
        };
        Ok(Self {
            from: parse("from", &config.from)?,
            reply_to: config
                .reply_to
                .as_deref()
                .map(|r| parse("reply_to", r))
                .transpose()?,
            bcc: config
                .bcc
                .iter()
                .map(|b| parse("bcc", b))
                .collect::<Result<_, _>>()?,
            to: config.to.as_deref().map(|t| parse("to", t)).transpose()?,
            locale: config.locale.clone(),
            max_attachment_bytes: config.max_attachment_bytes,
            brand: config.brand.clone(),
            dkim,
            events,
        })
    }

    pub(crate) fn compose(
        &self,
        templates: &Templates,
        invoice: &Invoice,
        ctx: &DeliveryContext,
        cancelled: bool,
    ) -> Result<Message, ChannelError> {
        let to = match (&self.to, &invoice.customer.email) {
            (Some(fixed), _) => fixed.clone(),
            (None, Some(email)) => mailbox(email, "the customer's billing email")?,
            (None, None) => {
                return Err(ChannelError::permanent(
                    "the invoice has no customer email (billing_address.email is empty)",
                ));
            }
        };
        let locale = if self.locale == "auto" {
            invoice.locale.as_str()
        } else {
            self.locale.as_str()
        };
        let size = invoice.pdf.bytes.len() as u64;
        let attached = !cancelled && size <= self.max_attachment_bytes;
        if !cancelled && !attached && invoice.link.is_none() {
            return Err(ChannelError::permanent(format!(
                "the PDF is {size} bytes, over max_attachment_bytes ({}), and there is no signed link to send instead (set server.public_url)",
                self.max_attachment_bytes
            )));
        }
        let merchant = self
            .brand
            .merchant_name
            .clone()
            .or_else(|| invoice.merchant_name.clone())
            .or_else(|| self.from.name.clone())
            .unwrap_or_default();
        let customer = invoice
            .customer
            .business_name
            .clone()
            .or_else(|| Some(invoice.customer.name.clone()).filter(|n| !n.is_empty()));
        let rendered = templates
            .render(
                locale,
                context! {
                    cancelled, attached, merchant,
                    brand => minijinja::Value::from(minijinja::value::Serde(&self.brand)),
                    invoice => context! {
                        number => &invoice.invoice_number, amount => format::amount(invoice.amount, &invoice.currency, locale),
                        due_date => invoice.due_date.map(|d| format::date(d, locale)),
                        invoice_date => invoice.invoice_date.map(|d| format::date(d, locale)),
                        reference => &invoice.merchant_reference, customer, link => &invoice.link,
                        transaction_id => &invoice.transaction_id, currency => &invoice.currency,
                    },
                },
            )
            .map_err(|e| ChannelError::permanent(format!("template: {e}")))?;
        let mut builder = Message::builder()
            .message_id(Some(message_id(&ctx.delivery_id, &self.from)))
            .from(self.from.clone())
            .to(to)
            .subject(rendered.subject);
        if let Some(reply_to) = &self.reply_to {
            builder = builder.reply_to(reply_to.clone());
        }
        for bcc in &self.bcc {
            builder = builder.bcc(bcc.clone());
        }
        if cancelled {
            // Thread the notice under the invoice email it cancels.
            let original = message_id(
                &postbud_channel::ids::delivery_id(&invoice.transaction_id, &ctx.channel),
                &self.from,
            );
            builder = builder.in_reply_to(original.clone()).references(original);
        }
        if let Some(events) = &self.events {
            let (name, value) = events.correlation_header(&ctx.delivery_id);
            let name = HeaderName::new_from_ascii(name)
                .map_err(|e| ChannelError::permanent(format!("header name: {e}")))?;
            builder = builder.raw_header(HeaderValue::new(name, value));
        }
        let body = MultiPart::alternative_plain_html(rendered.text, rendered.html);
        let mut content = MultiPart::mixed().multipart(body);
        if attached {
            let pdf: SinglePart =
                Attachment::new(postbud_channel::file_name::pdf(&invoice.pdf.file_name)).body(
                    invoice.pdf.bytes.to_vec(),
                    ContentType::parse("application/pdf").expect("valid MIME type"),
                );
            content = content.singlepart(pdf);
        }
        let mut message = builder
            .multipart(content)
            .map_err(|e| ChannelError::permanent(format!("cannot build the message: {e}")))?;
        if let Some(dkim) = &self.dkim {
            message.sign(dkim);
        }
        Ok(message)
    }
}
