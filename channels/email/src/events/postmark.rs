//! Postmark's webhooks: one JSON record per request (`RecordType` `Bounce`, `Delivery`, `Open`,
//! …). Postmark signs nothing; its documented protection is HTTP Basic credentials written into
//! the webhook's URL, which Postmark sends as `Authorization: Basic …`. They are compared in
//! constant time (digests of equal length, so not even the length leaks).

use base64::Engine as _;
use postbud_channel::{ChannelError, Evidence, EvidenceState, InboundReport};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{POSTMARK_DELIVERY_KEY, clean, correlation, json, payload, text};

const REPORTER: &str = "postmark";

/// Checks the configured Basic credentials.
pub(crate) struct Verifier {
    /// SHA-256 of `user:password`: what a request's credentials are compared with.
    expected: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("postmark::Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub(crate) fn new(username: &str, password: SecretString) -> Self {
        let credentials = format!("{username}:{}", password.expose_secret());
        Self {
            expected: Sha256::digest(credentials.as_bytes()).into(),
        }
    }

    /// Whether the `Authorization` header carries the configured credentials.
    fn authorised(&self, header: &str) -> bool {
        let Some(encoded) = header
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .map(|(_, value)| value.trim())
        else {
            return false;
        };
        let Ok(given) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(&given).into();
        given.ct_eq(&self.expected).into()
    }

    pub(crate) fn report(&self, report: &InboundReport) -> Result<Vec<Evidence>, ChannelError> {
        let Some(header) = report.header("authorization") else {
            return Err(ChannelError::unauthorized(
                "postmark: no HTTP Basic credentials: write events.username and events.password into the webhook URL (https://user:password@…/reports/<channel>)",
            ));
        };
        if !self.authorised(header) {
            return Err(ChannelError::unauthorized(
                "postmark: the HTTP Basic credentials are not events.username and events.password",
            ));
        }
        let record = json(&report.body, REPORTER)?;
        if !record.is_object() {
            return Err(ChannelError::invalid_input(
                "postmark: expected one JSON record",
            ));
        }
        Ok(evidence(&record).into_iter().collect())
    }
}

/// The record's evidence; `None` for records that say nothing about this message's delivery
/// (clicks, subscription changes, auto-replies) or name nothing Postbud sent.
fn evidence(record: &Value) -> Option<Evidence> {
    let details = [text(record, "Description"), text(record, "Details")]
        .into_iter()
        .flatten()
        .filter(|s| !s.trim().is_empty())
        .collect::<Vec<_>>()
        .join(": ");
    let (state, reason) = match text(record, "RecordType")? {
        "Bounce" => {
            let kind = text(record, "Type").unwrap_or_default();
            let state = match kind {
                "HardBounce" | "BadEmailAddress" => EvidenceState::Bounced,
                "SoftBounce" | "Transient" | "DnsError" => EvidenceState::Delayed,
                // Refused before or at sending: a block, Postmark's suppression of an inactive
                // address, a DMARC policy.
                "Blocked" | "ManuallyDeactivated" | "DMARCPolicy" | "SMTPApiError" => {
                    EvidenceState::Rejected
                }
                // Auto-replies, address changes, challenge mails: the message arrived.
                _ => return None,
            };
            (state, format!("{kind}: {details}"))
        }
        "Delivery" => (EvidenceState::Delivered, details),
        "Open" => (EvidenceState::Opened, String::new()),
        _ => return None,
    };
    let delivery = record
        .get("Metadata")
        .and_then(|m| text(m, POSTMARK_DELIVERY_KEY));
    // `MessageID` is Postmark's own id of the message, not its `Message-ID` header: a reference
    // only a receipt that kept Postmark's id would match.
    let about = match correlation(delivery, None) {
        Some(about) => about,
        None => postbud_channel::Correlation::Reference(clean(text(record, "MessageID")?)),
    };
    // Bounces carry an id; deliveries and opens do not, and one message has one of each per
    // recipient.
    let kind = text(record, "RecordType")
        .unwrap_or_default()
        .to_ascii_lowercase();
    let event_id = match (record.get("ID"), text(record, "MessageID")) {
        (Some(Value::Number(id)), _) => format!("{kind}:{id}"),
        (Some(Value::String(id)), _) => format!("{kind}:{}", clean(id)),
        (_, Some(message)) if state == EvidenceState::Delivered => format!(
            "delivery:{}:{}",
            clean(message),
            clean(text(record, "Recipient").unwrap_or_default())
        ),
        _ => Evidence::digest_id(&payload(record)),
    };
    let mut evidence = Evidence::new(about, state, REPORTER, event_id)
        .with_reason(clean(&reason))
        .with_payload(payload(record));
    let at = ["BouncedAt", "DeliveredAt", "ReceivedAt"]
        .into_iter()
        .find_map(|key| text(record, key)?.parse::<jiff::Timestamp>().ok());
    if let Some(at) = at {
        evidence = evidence.at(at);
    }
    Some(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postbud_channel::{Correlation, ErrorKind};

    fn verifier() -> Verifier {
        Verifier::new("postmark", SecretString::from("s3cret"))
    }

    fn request(authorization: Option<&str>, record: &Value) -> InboundReport {
        let headers = authorization
            .map(|a| vec![("Authorization".to_owned(), a.to_owned())])
            .unwrap_or_default();
        InboundReport::new(
            "https://m.example/reports/mail",
            headers,
            record.to_string().into(),
        )
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    // Postmark's documented bounce example, with the delivery id in its metadata.
    fn bounce() -> Value {
        serde_json::json!({
            "RecordType": "Bounce", "ID": 4323372036854775807_u64, "Type": "HardBounce", "TypeCode": 1,
            "Name": "Hard bounce", "Tag": "Test", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
            "Metadata": {POSTMARK_DELIVERY_KEY: "dlv-1"}, "ServerID": 23, "MessageStream": "outbound",
            "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
            "Details": "Test bounce details", "Email": "john@example.com", "From": "sender@example.com",
            "BouncedAt": "2019-11-05T16:33:54.9070259Z", "DumpAvailable": true, "Inactive": true,
            "CanActivate": true, "Subject": "Test subject"
        })
    }

    #[test]
    fn the_right_credentials_read_a_hard_bounce() {
        let evidence = verifier()
            .report(&request(Some(&basic("postmark", "s3cret")), &bounce()))
            .expect("authorised");
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].state, EvidenceState::Bounced);
        assert_eq!(evidence[0].about, Correlation::Delivery("dlv-1".into()));
        assert_eq!(evidence[0].event_id, "bounce:4323372036854775807");
        assert!(
            evidence[0]
                .reason
                .starts_with("HardBounce: The server was unable")
        );
    }

    #[test]
    fn wrong_or_missing_credentials_are_refused() {
        for authorization in [
            None,
            Some(basic("postmark", "wrong")),
            Some(basic("other", "s3cret")),
            Some("Bearer s3cret".to_owned()),
            Some("Basic !!!".to_owned()),
        ] {
            let error = verifier()
                .report(&request(authorization.as_deref(), &bounce()))
                .expect_err("refused");
            assert_eq!(error.kind(), ErrorKind::Unauthorized, "{authorization:?}");
            assert!(!error.to_string().contains("s3cret"));
        }
    }

    #[test]
    fn each_record_maps_to_its_state() {
        let state = |patch: Value| {
            let mut record = bounce();
            for (k, v) in patch.as_object().expect("object") {
                record[k] = v.clone();
            }
            evidence(&record).map(|e| e.state)
        };
        assert_eq!(
            state(serde_json::json!({"Type": "SoftBounce"})),
            Some(EvidenceState::Delayed)
        );
        assert_eq!(state(serde_json::json!({"Type": "AutoResponder"})), None);
        assert_eq!(
            state(serde_json::json!({"RecordType": "Delivery"})),
            Some(EvidenceState::Delivered)
        );
        assert_eq!(
            state(serde_json::json!({"RecordType": "Open"})),
            Some(EvidenceState::Opened)
        );
        let mut foreign = bounce();
        foreign["Metadata"] = serde_json::json!({});
        assert_eq!(
            evidence(&foreign).map(|e| e.about),
            Some(Correlation::Reference(
                "883953f4-6105-42a2-a16a-77a8eac79483".into()
            ))
        );
    }
}
