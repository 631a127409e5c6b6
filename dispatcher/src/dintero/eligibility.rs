//! Which transactions are ours to deliver: Kravia, AUTHORIZED, and an invoice channel that
//! resolves to `"merchant"` by Dintero's precedence, each level read where Dintero keeps it
//! (the session, the payment profile it was made from, the account's checkout configuration).

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
    /// Postbud created the invoice with `POST /v1/sessions/pay` and `invoice_channel:
    /// "merchant"` (payment level; Dintero does not echo it back).
    Payment,
    /// `configuration.kravia.<type>` of the session.
    Session,
    /// `configuration.kravia.<type>` of the payment profile the session was made from.
    Profile,
    /// `configuration.payment_options[].details` of that payment profile.
    ProfilePaymentOptions,
    /// `configuration.payment_options[].details` of the account's checkout configuration.
    CheckoutPaymentOptions,
    /// Nothing set: Dintero's default, `kravia`.
    Default,
}

impl fmt::Display for ChannelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Payment => "the sessions/pay request Postbud made",
            Self::Session => "session configuration",
            Self::Profile => "payment profile configuration",
            Self::ProfilePaymentOptions => "payment profile payment options",
            Self::CheckoutPaymentOptions => "account checkout payment options",
            Self::Default => "Dintero's default",
        })
    }
}

/// What Dintero keeps about who sends an invoice outside the transaction and its session; the
/// engine reads each level only when the ones above it say nothing.
#[derive(Debug, Clone, Default)]
pub struct ChannelConfiguration {
    /// Postbud created the invoice itself with `invoice_channel: "merchant"`.
    pub created_as_merchant: bool,
    /// `configuration` of the payment profile named by `metadata["session:profile_id"]`.
    pub profile: Option<Value>,
    /// `configuration` of the account's checkout (`GET /v1/admin/checkout`).
    pub checkout: Option<Value>,
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
        /// The configuration level that said `merchant`.
        decided_by: ChannelSource,
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

/// `configuration.kravia.<type>` of a configuration (session or profile).
fn kravia_level(configuration: Option<&Value>, tx: &Transaction) -> Option<String> {
    let type_key = tx
        .payment_product_type
        .strip_prefix("kravia.")
        .unwrap_or(&tx.payment_product_type);
    channel_value(configuration?.get("kravia")?.get(type_key))
}

/// `configuration.payment_options[]` entry for the transaction's type and currency. Each
/// option names the `currencies` it accepts (required by the 2026 schema); one that names none
/// is taken to accept any, so an older configuration still counts.
fn options_level(configuration: Option<&Value>, tx: &Transaction) -> Option<String> {
    let accepts = |option: &&Value| match option.get("currencies").and_then(Value::as_array) {
        Some(currencies) => currencies.iter().any(|c| {
            c.as_str()
                .is_some_and(|c| c.eq_ignore_ascii_case(&tx.currency))
        }),
        None => true,
    };
    let option = configuration?
        .get("payment_options")?
        .as_array()?
        .iter()
        .filter(|o| o.get("type").and_then(Value::as_str) == Some(tx.payment_product_type.as_str()))
        .find(accepts)?;
    channel_value(option.get("details"))
}

/// The session's own answer, if it has one: when it does, nothing else needs to be read.
pub fn session_level(tx: &Transaction) -> Option<String> {
    kravia_level(tx.session.as_ref().and_then(|s| s.get("configuration")), tx)
}

/// Resolves the invoice channel by Dintero's precedence: session/payment configuration
/// (including the payment profile the session was made from), then payment options (the
/// profile's, then the account's), then `kravia`.
pub fn resolve_channel(tx: &Transaction, configuration: &ChannelConfiguration) -> ResolvedChannel {
    let levels = [
        (
            ChannelSource::Payment,
            configuration
                .created_as_merchant
                .then(|| "merchant".to_owned()),
        ),
        (ChannelSource::Session, session_level(tx)),
        (
            ChannelSource::Profile,
            kravia_level(configuration.profile.as_ref(), tx),
        ),
        (
            ChannelSource::ProfilePaymentOptions,
            options_level(configuration.profile.as_ref(), tx),
        ),
        (
            ChannelSource::CheckoutPaymentOptions,
            options_level(configuration.checkout.as_ref(), tx),
        ),
    ];
    levels
        .into_iter()
        .find_map(|(source, channel)| {
            Some(ResolvedChannel {
                channel: channel?,
                source,
            })
        })
        .unwrap_or(ResolvedChannel {
            channel: "kravia".into(),
            source: ChannelSource::Default,
        })
}

/// Ends the reason of a skip that can change while Dintero lists the transaction as
/// authorized (a status that moves on, Dintero's default when a level could not be read or was
/// set later): the sweep looks at such a transaction again ([`may_change`]).
pub const MAY_CHANGE: &str = "looked at again while Dintero lists it AUTHORIZED";

/// Whether a skip's `reason` is one that can change ([`MAY_CHANGE`]).
pub fn may_change(reason: &str) -> bool {
    reason.ends_with(MAY_CHANGE)
}

/// How the reason of a skip for the transaction's status begins.
const STATUS_SKIP: &str = "status is ";

/// Whether a skip's `reason` is the transaction's status (not `AUTHORIZED` then).
pub fn skipped_for_status(reason: &str) -> bool {
    reason.starts_with(STATUS_SKIP) && may_change(reason)
}

/// Decides whether Postbud delivers this transaction.
pub fn check(tx: &Transaction, configuration: &ChannelConfiguration) -> Eligibility {
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
    // The session is asked for with every read; an answer without it says nothing of the
    // session level, which outranks every level below it.
    if !configuration.created_as_merchant && tx.session_id.is_some() && tx.session.is_none() {
        return Eligibility::NotYet(
            "Dintero's answer lacks the session asked for (includes=session): who sends this invoice cannot be told yet".into(),
        );
    }
    let resolved = resolve_channel(tx, configuration);
    if resolved.channel != "merchant" {
        let again = if resolved.source == ChannelSource::Default {
            format!("; {MAY_CHANGE}")
        } else {
            String::new()
        };
        return Eligibility::Skip(format!(
            "invoice channel resolves to `{}` (from {}): Kravia delivers this invoice{again}",
            resolved.channel, resolved.source
        ));
    }
    if tx.status != Status::Authorized {
        return Eligibility::Skip(format!(
            "{STATUS_SKIP}{}, not AUTHORIZED; {MAY_CHANGE}",
            tx.status
        ));
    }
    let number = tx.metadata_str("kravia:invoice_number");
    let url = tx.metadata_str("kravia:invoice_url");
    match (number, url) {
        (Some(n), Some(u)) => Eligibility::Eligible {
            invoice_number: n.to_owned(),
            invoice_url: u.to_owned(),
            decided_by: resolved.source,
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tx(session: Option<Value>, currency: &str) -> Transaction {
        let mut tx = json!({
            "id": "T12345678.a", "payment_product": "kravia", "payment_product_type": "kravia.invoice_b2c",
            "amount": 100, "currency": currency, "status": "AUTHORIZED", "session_id": "T12345678.s",
            "metadata": {"kravia:invoice_number": "1", "kravia:invoice_url": "https://x/1"},
        });
        if let Some(session) = session {
            tx["session"] = session;
        }
        serde_json::from_value(tx).expect("a transaction")
    }

    #[test]
    fn a_session_asked_for_and_absent_is_cannot_tell_never_not_ours() {
        let verdict = check(&tx(None, "NOK"), &ChannelConfiguration::default());
        assert!(
            matches!(&verdict, Eligibility::NotYet(why) if why.contains("lacks the session")),
            "{verdict:?}"
        );
        // Made by Postbud: the payment level decides, the session is not needed.
        let created = ChannelConfiguration {
            created_as_merchant: true,
            ..ChannelConfiguration::default()
        };
        assert!(matches!(
            check(&tx(None, "NOK"), &created),
            Eligibility::Eligible { .. }
        ));
        // A session that says nothing: the levels below decide, here Dintero's default.
        let verdict = check(
            &tx(Some(json!({"configuration": {}})), "NOK"),
            &ChannelConfiguration::default(),
        );
        assert!(
            matches!(&verdict, Eligibility::Skip(why) if may_change(why)),
            "{verdict:?}"
        );
    }

    #[test]
    fn payment_options_match_on_type_and_currency() {
        let checkout = json!({"payment_options": [
            {"type": "kravia.invoice_b2c", "currencies": ["SEK"], "details": {"invoice_channel": "kravia"}},
            {"type": "kravia.invoice_b2c", "currencies": ["NOK"], "details": {"invoice_delivery_method": "merchant"}},
        ]});
        let configuration = ChannelConfiguration {
            checkout: Some(checkout),
            ..ChannelConfiguration::default()
        };
        let session = Some(json!({"configuration": {}}));
        let nok = resolve_channel(&tx(session.clone(), "NOK"), &configuration);
        assert_eq!(
            (nok.channel.as_str(), nok.source),
            ("merchant", ChannelSource::CheckoutPaymentOptions)
        );
        let sek = resolve_channel(&tx(session.clone(), "SEK"), &configuration);
        assert_eq!(sek.channel, "kravia");
        // No option for the currency: Dintero's default.
        let eur = resolve_channel(&tx(session, "EUR"), &configuration);
        assert_eq!(eur.source, ChannelSource::Default);
    }
}
