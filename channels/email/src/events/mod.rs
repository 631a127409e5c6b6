//! Email provider events: the signed event webhooks of the providers whose SMTP relays merchants
//! send through (SendGrid, Amazon SES through SNS, Mailgun, Postmark), posted to
//! `<server.public_url>/reports/<channel>`.
//!
//! Each request is verified exactly as the provider's own SDK verifies it and refused otherwise
//! (401 for a bad or stale signature, 400 or 401 for none): nothing is read from a request that
//! fails. What passes becomes [`Evidence`], one piece per event, correlated by the delivery id
//! the channel put where the provider echoes it back ([`Events::correlation_header`]), else by
//! the `Message-ID` (the channel's [`Receipt::reference`](postbud_channel::Receipt)).
//!
//! ```toml
//! [channels.customer-email.events]
//! provider = "sendgrid"          # sendgrid | ses | mailgun | postmark
//! public_key = "MFkwEwYH…"       # sendgrid: the signed event webhook's verification key
//! ```

mod mailgun;
mod postmark;
mod sendgrid;
mod ses;
mod sns;

use std::time::Duration;

use postbud_channel::{
    ChannelError, Correlation, Evidence, EvidenceOffer, EvidenceState, InboundReport,
};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::Value;

/// `[channels.<name>.events]`: the provider that posts signed delivery events to
/// `<server.public_url>/reports/<name>`, and how to verify them. Keys of other providers than
/// the one named are refused.
#[derive(Debug, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsConfig {
    /// Who posts the events.
    pub provider: Provider,
    /// sendgrid: the signed event webhook's verification key, base64 as SendGrid shows it (a
    /// P-256 public key, SubjectPublicKeyInfo).
    #[serde(default)]
    pub public_key: Option<String>,
    /// mailgun: the HTTP webhook signing key. A secret.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub signing_key: Option<SecretString>,
    /// postmark: the user name of the HTTP Basic credentials written into the webhook's URL
    /// (`https://user:password@…/reports/<name>`).
    #[serde(default)]
    pub username: Option<String>,
    /// postmark: the password of those credentials. A secret.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub password: Option<SecretString>,
    /// ses: the ARN of the SNS topic SES publishes to
    /// (`arn:aws:sns:<region>:<account>:<topic>`). Messages of any other topic are refused, and
    /// signing certificates are fetched only from `https://sns.<region>.amazonaws.com/`.
    #[serde(default)]
    pub topic_arn: Option<String>,
    /// ses: origins (`https://host:port`) trusted besides `https://sns.<region>.amazonaws.com`
    /// for signing certificates and subscription confirmations. For tests and private
    /// deployments of an SNS-compatible service only: never needed with AWS (default: none).
    #[serde(default)]
    pub certificate_origins: Vec<String>,
    /// sendgrid, ses, mailgun: how far a signed timestamp may be from now; older (or further
    /// ahead) is refused as stale, so a captured request cannot be replayed later (Mailgun's
    /// SDK's 15 minutes).
    #[serde(default = "fifteen_minutes", with = "humantime_serde")]
    #[schemars(with = "String")]
    pub max_age: Duration,
}

fn fifteen_minutes() -> Duration {
    Duration::from_secs(15 * 60)
}

/// An email provider whose event webhook the channel reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, postbud_channel::keys::JsonSchema)]
#[schemars(crate = "postbud_channel::keys::schemars")]
#[serde(rename_all = "lowercase")]
pub(crate) enum Provider {
    /// SendGrid's signed Event Webhook (ECDSA P-256): `public_key`.
    Sendgrid,
    /// Amazon SES notifications or event publishing through an SNS topic (signature versions 1
    /// and 2): `topic_arn`.
    Ses,
    /// Mailgun's webhooks (HMAC-SHA256 of timestamp and token): `signing_key`.
    Mailgun,
    /// Postmark's webhooks (no signature; HTTP Basic credentials in the URL): `username`,
    /// `password`.
    Postmark,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Self::Sendgrid => "sendgrid",
            Self::Ses => "ses",
            Self::Mailgun => "mailgun",
            Self::Postmark => "postmark",
        }
    }
}

/// The configured provider's verifier.
#[derive(Debug)]
enum Verifier {
    Sendgrid(sendgrid::Verifier),
    Ses(sns::Verifier),
    Mailgun(mailgun::Verifier),
    Postmark(postmark::Verifier),
}

/// A channel's event webhook, built from [`EventsConfig`].
#[derive(Debug)]
pub(crate) struct Events {
    verifier: Verifier,
}

/// The key in which Postbud's delivery id travels with a message and comes back in its events:
/// SendGrid's unique argument, Mailgun's user variable, SES's message tag.
pub(crate) const DELIVERY_KEY: &str = "postbud_delivery";
/// Postmark's metadata key: it comes from the header's name, where `-` reads better.
pub(crate) const POSTMARK_DELIVERY_KEY: &str = "postbud-delivery";

impl Events {
    /// Builds the verifier; `ca_file` (the channel's extra trusted root, PEM) is trusted for
    /// the SNS certificate fetches too. Errors name the key at fault, never a secret's value.
    pub(crate) fn build(
        config: EventsConfig,
        ca_file: Option<&str>,
        timeout: Duration,
    ) -> Result<Self, (String, String)> {
        let provider = config.provider;
        // Keys of another provider are a mistake (or a copy and paste): say so.
        let given = [
            (
                "public_key",
                config.public_key.is_some(),
                Provider::Sendgrid,
            ),
            (
                "signing_key",
                config.signing_key.is_some(),
                Provider::Mailgun,
            ),
            ("username", config.username.is_some(), Provider::Postmark),
            ("password", config.password.is_some(), Provider::Postmark),
            ("topic_arn", config.topic_arn.is_some(), Provider::Ses),
            (
                "certificate_origins",
                !config.certificate_origins.is_empty(),
                Provider::Ses,
            ),
        ];
        if let Some((key, _, owner)) = given
            .iter()
            .find(|(_, set, owner)| *set && *owner != provider)
        {
            return Err((
                format!("events.{key}"),
                format!(
                    "is a key of provider \"{}\", not of \"{}\"",
                    owner.name(),
                    provider.name()
                ),
            ));
        }
        let missing = |key: &str| {
            (
                format!("events.{key}"),
                format!("provider \"{}\" needs it", provider.name()),
            )
        };
        let verifier = match provider {
            Provider::Sendgrid => {
                let key = config.public_key.ok_or_else(|| missing("public_key"))?;
                Verifier::Sendgrid(
                    sendgrid::Verifier::new(&key, config.max_age)
                        .map_err(|why| ("events.public_key".to_owned(), why))?,
                )
            }
            Provider::Mailgun => Verifier::Mailgun(mailgun::Verifier::new(
                config.signing_key.ok_or_else(|| missing("signing_key"))?,
                config.max_age,
            )),
            Provider::Postmark => Verifier::Postmark(postmark::Verifier::new(
                &config.username.ok_or_else(|| missing("username"))?,
                config.password.ok_or_else(|| missing("password"))?,
            )),
            Provider::Ses => Verifier::Ses(sns::Verifier::new(
                &config.topic_arn.ok_or_else(|| missing("topic_arn"))?,
                &config.certificate_origins,
                ca_file,
                timeout,
                config.max_age,
            )?),
        };
        Ok(Self { verifier })
    }

    /// The header that carries `delivery_id` with a message so that the provider echoes it back
    /// in the message's events: `(name, value)`.
    pub(crate) fn correlation_header(&self, delivery_id: &str) -> (String, String) {
        match self.verifier {
            Verifier::Sendgrid(_) => (
                "X-SMTPAPI".into(),
                serde_json::json!({"unique_args": {DELIVERY_KEY: delivery_id}}).to_string(),
            ),
            Verifier::Mailgun(_) => (
                "X-Mailgun-Variables".into(),
                serde_json::json!({DELIVERY_KEY: delivery_id}).to_string(),
            ),
            Verifier::Ses(_) => (
                "X-SES-MESSAGE-TAGS".into(),
                format!("{DELIVERY_KEY}={delivery_id}"),
            ),
            Verifier::Postmark(_) => (
                format!("X-PM-Metadata-{POSTMARK_DELIVERY_KEY}"),
                delivery_id.to_owned(),
            ),
        }
    }

    /// Verifies a request the provider posted and reads its events.
    pub(crate) async fn report(
        &self,
        report: &InboundReport,
    ) -> Result<Vec<Evidence>, ChannelError> {
        let now = jiff::Timestamp::now();
        match &self.verifier {
            Verifier::Sendgrid(v) => v.report(report, now),
            Verifier::Ses(v) => v.report(report, now).await,
            Verifier::Mailgun(v) => v.report(report, now),
            Verifier::Postmark(v) => v.report(report),
        }
    }

    /// The states this provider's events may report.
    pub(crate) fn later(&self) -> Vec<EvidenceState> {
        use EvidenceState::*;
        match self.verifier {
            // Postmark has no event for a message it took.
            Verifier::Postmark(_) => vec![Delayed, Delivered, Opened, Bounced, Rejected],
            _ => vec![Accepted, Delayed, Delivered, Opened, Bounced, Rejected],
        }
    }
}

/// What the email channel's `delivered` means, and what it may tell later.
pub(crate) fn offer(events: Option<&Events>) -> EvidenceOffer {
    let offer = EvidenceOffer::new("the SMTP server (or the provider's relay) answered 250");
    match events {
        Some(events) => offer.later(events.later()),
        None => offer,
    }
}

/// The correlation of an event: the delivery id the provider echoed back when it is one
/// Postbud could have written, else the message's `Message-ID`, else nothing (an event Postbud
/// cannot match is skipped).
pub(crate) fn correlation(delivery: Option<&str>, message_id: Option<&str>) -> Option<Correlation> {
    if let Some(id) = delivery.map(str::trim).filter(|id| is_delivery_id(id)) {
        return Some(Correlation::Delivery(id.to_owned()));
    }
    message_id
        .and_then(normalise_message_id)
        .map(Correlation::Reference)
}

/// Whether `id` has the shape of Postbud's ids (`dlv-…`): anything else echoed back is not ours.
fn is_delivery_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A `Message-ID` as the channel's receipt keeps it: `<local@domain>`, whether the provider
/// echoes it with its angle brackets or without.
pub(crate) fn normalise_message_id(raw: &str) -> Option<String> {
    let inner = raw
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    if inner.is_empty() || inner.len() > 998 || inner.chars().any(|c| c.is_control() || c == ' ') {
        return None;
    }
    Some(format!("<{inner}>"))
}

/// A provider's reason as the history shows it: control characters turned into spaces, at most
/// 500 characters.
pub(crate) fn clean(reason: &str) -> String {
    let mut cleaned: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    cleaned.truncate(cleaned.trim_end().len());
    cleaned
}

/// A string field of a JSON object.
pub(crate) fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// A Unix time in seconds (integer or fractional, as a number or text) as a timestamp.
pub(crate) fn unix_time(value: Option<&Value>) -> Option<jiff::Timestamp> {
    let seconds = match value? {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    if !seconds.is_finite() {
        return None;
    }
    let millis = (seconds * 1000.0).round();
    if !(-1e15..=1e15).contains(&millis) {
        return None;
    }
    jiff::Timestamp::from_millisecond(millis as i64).ok()
}

/// Whether a signed time (Unix seconds) is within `max_age` of `now`, either way: the refusal
/// of a stale (or post-dated) signature.
pub(crate) fn check_fresh(
    signed: i64,
    now: jiff::Timestamp,
    max_age: Duration,
    provider: &str,
) -> Result<(), ChannelError> {
    let age = now.as_second().saturating_sub(signed).unsigned_abs();
    if age > max_age.as_secs() {
        return Err(ChannelError::unauthorized(format!(
            "{provider}: the signature's timestamp ({signed}) is {age} s from now, over events.max_age ({} s): a stale or replayed request",
            max_age.as_secs()
        )));
    }
    Ok(())
}

/// The body as JSON, or why not.
pub(crate) fn json(body: &[u8], provider: &str) -> Result<Value, ChannelError> {
    serde_json::from_slice(body)
        .map_err(|e| ChannelError::invalid_input(format!("{provider}: the body is not JSON: {e}")))
}

/// One event's JSON as the payload kept with its evidence.
pub(crate) fn payload(event: &Value) -> bytes::Bytes {
    serde_json::to_vec(event).unwrap_or_default().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(provider: Provider) -> EventsConfig {
        EventsConfig {
            provider,
            public_key: None,
            signing_key: None,
            username: None,
            password: None,
            topic_arn: None,
            certificate_origins: Vec::new(),
            max_age: fifteen_minutes(),
        }
    }

    #[test]
    fn the_offer_names_what_the_configured_provider_may_report() {
        assert!(
            offer(None).later.is_empty(),
            "no events: nothing comes later"
        );
        let postmark = Events::build(
            EventsConfig {
                username: Some("u".into()),
                password: Some(SecretString::from("p")),
                ..config(Provider::Postmark)
            },
            None,
            Duration::from_secs(5),
        )
        .expect("postmark");
        let later = offer(Some(&postmark)).later;
        assert!(later.contains(&EvidenceState::Bounced), "{later:?}");
        assert!(!later.contains(&EvidenceState::Accepted), "{later:?}");
    }

    #[test]
    fn keys_of_another_provider_and_missing_keys_name_the_key() {
        let error = Events::build(
            EventsConfig {
                signing_key: Some(SecretString::from("hush")),
                ..config(Provider::Postmark)
            },
            None,
            Duration::ZERO,
        )
        .expect_err("a mailgun key");
        assert_eq!(error.0, "events.signing_key");
        assert!(!error.1.contains("hush"));
        let error =
            Events::build(config(Provider::Ses), None, Duration::ZERO).expect_err("no topic");
        assert_eq!(error.0, "events.topic_arn");
    }

    #[test]
    fn message_ids_are_normalised_to_the_receipts_form() {
        assert_eq!(
            normalise_message_id("dlv-1@merchant.example").as_deref(),
            Some("<dlv-1@merchant.example>")
        );
        assert_eq!(
            normalise_message_id(" <dlv-1@merchant.example> ").as_deref(),
            Some("<dlv-1@merchant.example>")
        );
        assert_eq!(normalise_message_id("<>"), None);
        assert_eq!(normalise_message_id("a\r\nb"), None);
    }

    #[test]
    fn only_ids_of_postbuds_shape_are_taken_as_delivery_ids() {
        assert_eq!(
            correlation(Some("dlv-0123abcd"), Some("x@y")),
            Some(Correlation::Delivery("dlv-0123abcd".into()))
        );
        assert_eq!(
            correlation(Some("<script>"), Some("x@y")),
            Some(Correlation::Reference("<x@y>".into()))
        );
        assert_eq!(correlation(None, None), None);
    }

    #[test]
    fn reasons_lose_control_characters_and_stop_at_500_characters() {
        assert_eq!(
            clean("550 5.1.1\r\nno such user\u{7}"),
            "550 5.1.1  no such user"
        );
        assert_eq!(clean(&"é".repeat(600)).chars().count(), 500);
    }

    #[test]
    fn unix_times_may_be_fractional_or_text_and_never_panic() {
        assert_eq!(
            unix_time(Some(&serde_json::json!(1600112492))).map(|t| t.as_second()),
            Some(1600112492)
        );
        assert_eq!(
            unix_time(Some(&serde_json::json!("1521243339.873676"))).map(|t| t.as_second()),
            Some(1521243339)
        );
        assert_eq!(unix_time(Some(&serde_json::json!(1e300))), None);
        assert_eq!(unix_time(Some(&serde_json::json!("nan"))), None);
    }
}
