//! Which transactions are ours to deliver: Kravia, AUTHORIZED, and an invoice channel that
//! resolves to `"merchant"` by Dintero's precedence.

use std::fmt;

use serde_json::Value;

use crate::dintero::model::{Status, Transaction};

/// Who sends the invoice, and which configuration level said so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedChannel {
    /// `merchant`, `kravia`, or an unrecognised value as given.
    pub channel: String,
    /// Where the value came from.
    pub source: ChannelSource,
}

/// The configuration level an invoice channel came from, highest precedence first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelSource {
    /// `configuration.kravia.<type>` of the session or the `sessions/pay` payment.
    Session,
    /// `configuration.payment_options[].details` (checkout or payment profile).
    PaymentOptions,
    /// Nothing set: Dintero's default, `kravia`.
    Default,
}

impl fmt::Display for ChannelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Session => "session/payment configuration",
            Self::PaymentOptions => "checkout payment options",
            Self::Default => "Dintero's default",
        })
    }
}

/// The verdict on a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Eligibility {
    /// Ours: capture and deliver.
    Eligible {
        /// `kravia:invoice_number`.
        invoice_number: String,
        /// `kravia:invoice_url`.
        invoice_url: String,
    },
    /// Not ours, for good; recorded with the reason.
    Skip(String),
    /// Ours, but the invoice metadata is not there yet: look again later.
    NotYet(String),
}

/// `invoice_channel` (docs) or `invoice_delivery_method` (newer schemas), normalised:
/// `provider` means `kravia`.
fn channel_value(object: Option<&Value>) -> Option<String> {
    let object = object?;
    let raw = object
        .get("invoice_channel")
        .or_else(|| object.get("invoice_delivery_method"))?
        .as_str()?;
    Some(match raw {
        "provider" => "kravia".to_owned(),
        other => other.to_ascii_lowercase(),
    })
}

/// Resolves the invoice channel: session/payment configuration, then checkout payment options,
/// then `kravia`.
pub fn resolve_channel(tx: &Transaction) -> ResolvedChannel {
    let configuration = tx.session.as_ref().and_then(|s| s.get("configuration"));
    let type_key = tx
        .payment_product_type
        .strip_prefix("kravia.")
        .unwrap_or(&tx.payment_product_type);
    let session_level = configuration
        .and_then(|c| c.get("kravia"))
        .and_then(|k| k.get(type_key));
    if let Some(channel) = channel_value(session_level) {
        return ResolvedChannel {
            channel,
            source: ChannelSource::Session,
        };
    }
    let option_level = configuration
        .and_then(|c| c.get("payment_options"))
        .and_then(Value::as_array)
        .and_then(|options| {
            options.iter().find(|o| {
                o.get("type").and_then(Value::as_str) == Some(tx.payment_product_type.as_str())
            })
        })
        .and_then(|o| o.get("details"));
    if let Some(channel) = channel_value(option_level) {
        return ResolvedChannel {
            channel,
            source: ChannelSource::PaymentOptions,
        };
    }
    ResolvedChannel {
        channel: "kravia".into(),
        source: ChannelSource::Default,
    }
}

/// Decides whether Postbud delivers this transaction.
pub fn check(tx: &Transaction) -> Eligibility {
    if tx.payment_product != "kravia" {
        return Eligibility::Skip(format!(
            "payment_product is `{}`, not `kravia`: only Kravia invoices are delivered",
            tx.payment_product
        ));
    }
    if tx.payment_product_type == "kravia.invoice_b2b_grouped" {
        return Eligibility::Skip(
            "kravia.invoice_b2b_grouped: merchant delivery of grouped invoices is not documented by Dintero and not supported".into(),
        );
    }
    let resolved = resolve_channel(tx);
    if resolved.channel != "merchant" {
        return Eligibility::Skip(format!(
            "invoice channel resolves to `{}` (from {}): Kravia delivers this invoice",
            resolved.channel, resolved.source
        ));
    }
    if tx.status != Status::Authorized {
        return Eligibility::Skip(format!("status is {}, not AUTHORIZED", tx.status));
    }
    let number = tx.metadata_str("kravia:invoice_number");
    let url = tx.metadata_str("kravia:invoice_url");
    match (number, url) {
        (Some(n), Some(u)) => Eligibility::Eligible {
            invoice_number: n.to_owned(),
            invoice_url: u.to_owned(),
        },
        _ => Eligibility::NotYet(format!(
            "metadata lacks {}: the invoice is not ready yet",
            [
                ("kravia:invoice_number", number),
                ("kravia:invoice_url", url)
            ]
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(" and ")
        )),
    }
}
