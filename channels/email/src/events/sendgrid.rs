//! SendGrid's signed Event Webhook: a JSON array of events, signed with ECDSA P-256 over
//! SHA-256 of the `X-Twilio-Email-Event-Webhook-Timestamp` header's value followed by the raw
//! body, the DER signature base64 in `X-Twilio-Email-Event-Webhook-Signature`; verified against
//! the account's public key (base64 SubjectPublicKeyInfo), as the SDK's
//! `EventWebhook.verify_signature` does.

use std::time::Duration;

use base64::Engine as _;
use postbud_channel::{ChannelError, Evidence, EvidenceState, InboundReport};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use serde_json::Value;

use super::{DELIVERY_KEY, check_fresh, clean, correlation, json, payload, text, unix_time};

const SIGNATURE: &str = "x-twilio-email-event-webhook-signature";
const TIMESTAMP: &str = "x-twilio-email-event-webhook-timestamp";
const REPORTER: &str = "sendgrid";

/// Verifies with the account's verification key.
pub(crate) struct Verifier {
    /// The SubjectPublicKeyInfo, DER.
    spki: Vec<u8>,
    max_age: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("sendgrid::Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    /// The key as SendGrid shows it (base64 DER), PEM armour accepted too.
    pub(crate) fn new(key: &str, max_age: Duration) -> Result<Self, String> {
        let base64: String = key
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
            .collect();
        let spki = base64::engine::general_purpose::STANDARD
            .decode(base64.as_bytes())
            .map_err(|e| format!("is not base64 ({e}): expected the verification key as SendGrid shows it (`MFkwEwYH…`)"))?;
        let verifier = Self { spki, max_age };
        // An empty signature is invalid for a P-256 key, and unsupported for anything else.
        match verifier.verify_raw(b"", b"") {
            Err(webpki::Error::InvalidSignatureForPublicKey) => Ok(verifier),
            Err(e) => Err(format!(
                "is not an ECDSA P-256 public key (SubjectPublicKeyInfo): {e}"
            )),
            Ok(()) => Err("is not a usable public key".into()),
        }
    }

    fn verify_raw(&self, message: &[u8], signature: &[u8]) -> Result<(), webpki::Error> {
        let spki = SubjectPublicKeyInfoDer::from(self.spki.as_slice());
        webpki::RawPublicKeyEntity::try_from(&spki)?.verify_signature(
            webpki::ring::ECDSA_P256_SHA256,
            message,
            signature,
        )
    }

    /// Whether `signature` (base64 DER) signs `timestamp` followed by `body`: the SDK's check.
    pub(crate) fn verify(&self, body: &[u8], signature: &str, timestamp: &str) -> bool {
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature.trim())
        else {
            return false;
        };
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(body);
        self.verify_raw(&message, &signature).is_ok()
    }

    pub(crate) fn report(
        &self,
        report: &InboundReport,
        now: jiff::Timestamp,
    ) -> Result<Vec<Evidence>, ChannelError> {
        let (Some(signature), Some(timestamp)) =
            (report.header(SIGNATURE), report.header(TIMESTAMP))
        else {
            return Err(ChannelError::invalid_input(
                "sendgrid: no X-Twilio-Email-Event-Webhook-Signature and -Timestamp: turn on the Signed Event Webhook",
            ));
        };
        if !self.verify(&report.body, signature, timestamp) {
            return Err(ChannelError::unauthorized(
                "sendgrid: the signature does not verify with events.public_key",
            ));
        }
        let signed = timestamp.trim().parse::<i64>().map_err(|_| {
            ChannelError::unauthorized("sendgrid: the signed timestamp is not a Unix time")
        })?;
        check_fresh(signed, now, self.max_age, REPORTER)?;
        let Value::Array(events) = json(&report.body, REPORTER)? else {
            return Err(ChannelError::invalid_input(
                "sendgrid: expected a JSON array of events",
            ));
        };
        Ok(events.iter().filter_map(evidence).collect())
    }
}

/// One event's evidence; `None` for events that say nothing about delivery (clicks,
/// unsubscribes) or that name nothing Postbud sent.
fn evidence(event: &Value) -> Option<Evidence> {
    let reason = text(event, "reason")
        .or_else(|| text(event, "response"))
        .unwrap_or_default();
    let (state, reason) = match text(event, "event")? {
        "processed" => (EvidenceState::Accepted, String::new()),
        "deferred" => (EvidenceState::Delayed, reason.to_owned()),
        "delivered" => (EvidenceState::Delivered, reason.to_owned()),
        // `blocked`: the receiving server refused this message (its content, the sending IP),
        // not the address; SendGrid does not try again, so the invoice did not arrive.
        "bounce" if text(event, "type") == Some("blocked") => {
            (EvidenceState::Rejected, format!("blocked: {reason}"))
        }
        "bounce" => (EvidenceState::Bounced, reason.to_owned()),
        // Dropped before sending: a suppression list, an invalid address.
        "dropped" => (EvidenceState::Rejected, format!("dropped: {reason}")),
        "open" if event.get("sg_machine_open") == Some(&Value::Bool(true)) => (
            EvidenceState::Opened,
            "machine open (a mail privacy proxy fetched the images)".to_owned(),
        ),
        "open" => (EvidenceState::Opened, String::new()),
        _ => return None,
    };
    let about = correlation(text(event, DELIVERY_KEY), text(event, "smtp-id"))?;
    let event_id = text(event, "sg_event_id")
        .map(str::to_owned)
        .unwrap_or_else(|| Evidence::digest_id(&payload(event)));
    let mut evidence = Evidence::new(about, state, REPORTER, clean(&event_id))
        .with_reason(clean(&reason))
        .with_payload(payload(event));
    if let Some(at) = unix_time(event.get("timestamp")) {
        evidence = evidence.at(at);
    }
    Some(evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use postbud_channel::Correlation;

    // The SDK's own test vector (sendgrid-python, test/unit/test_eventwebhook.py): the body is
    // `json.dumps(..., sort_keys=True, separators=(',', ':')) + '\r\n'`.
    const PUBLIC_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SIGNATURE_VALUE: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const TIMESTAMP_VALUE: &str = "1600112502";
    const BODY: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

    fn verifier() -> Verifier {
        Verifier::new(PUBLIC_KEY, Duration::from_secs(900)).expect("the SDK's key")
    }

    fn request(signature: &str, timestamp: &str, body: &str) -> InboundReport {
        InboundReport::new(
            "https://merchant.example/reports/mail",
            vec![
                (
                    "X-Twilio-Email-Event-Webhook-Signature".into(),
                    signature.into(),
                ),
                (
                    "X-Twilio-Email-Event-Webhook-Timestamp".into(),
                    timestamp.into(),
                ),
            ],
            bytes::Bytes::from(body.to_owned()),
        )
    }

    #[test]
    fn the_sdks_test_vector_verifies() {
        assert!(verifier().verify(BODY.as_bytes(), SIGNATURE_VALUE, TIMESTAMP_VALUE));
    }

    #[test]
    fn the_sdks_negative_cases_do_not_verify() {
        let v = verifier();
        assert!(!v.verify(b"payload", SIGNATURE_VALUE, TIMESTAMP_VALUE));
        assert!(!v.verify(BODY.as_bytes(), SIGNATURE_VALUE, "timestamp"));
        assert!(!v.verify(
            BODY.as_bytes(),
            "MEUCIQCtIHJeH93Y+qpYeWrySphQgpNGNr/U+UyUlBkU6n7RAwIgJTz2C+8a8xonZGi6BpSzoQsbVRamr2nlxFDWYNH3j/0=",
            TIMESTAMP_VALUE
        ));
        let other = Verifier::new("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEqTxd43gyp8IOEto2LdIfjRQrIbsd4SXZkLW6jDutdhXSJCWHw8REntlo7aNDthvj+y7GjUuFDb/R1NGe1OPzpA==", Duration::from_secs(900)).expect("key");
        assert!(!other.verify(BODY.as_bytes(), SIGNATURE_VALUE, TIMESTAMP_VALUE));
        assert!(!v.verify(BODY.as_bytes(), "not base64!", TIMESTAMP_VALUE));
    }

    #[test]
    fn the_test_vector_is_read_within_its_age_and_refused_as_stale_after() {
        let signed = jiff::Timestamp::from_second(1600112502).expect("time");
        let evidence = verifier()
            .report(&request(SIGNATURE_VALUE, TIMESTAMP_VALUE, BODY), signed)
            .expect("verified");
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].state, EvidenceState::Rejected);
        assert_eq!(evidence[0].reason, "dropped: Bounced Address");
        assert_eq!(
            evidence[0].about,
            Correlation::Reference("<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>".into())
        );
        assert_eq!(
            evidence[0].event_id,
            "ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA"
        );
        assert_eq!(evidence[0].at.map(|t| t.as_second()), Some(1600112492));
        assert!(!evidence[0].payload.is_empty());

        let later = signed + jiff::SignedDuration::from_secs(901);
        let stale = verifier()
            .report(&request(SIGNATURE_VALUE, TIMESTAMP_VALUE, BODY), later)
            .expect_err("stale");
        assert_eq!(
            stale.kind(),
            postbud_channel::ErrorKind::Unauthorized,
            "{stale}"
        );
    }

    #[test]
    fn unsigned_requests_are_refused_as_invalid_and_forged_ones_as_unauthorized() {
        let now = jiff::Timestamp::from_second(1600112502).expect("time");
        let unsigned = InboundReport::new("https://m.example/reports/mail", vec![], BODY.into());
        let error = verifier().report(&unsigned, now).expect_err("unsigned");
        assert_eq!(error.kind(), postbud_channel::ErrorKind::InvalidInput);
        let tampered = BODY.replace("dropped", "delivered");
        let error = verifier()
            .report(&request(SIGNATURE_VALUE, TIMESTAMP_VALUE, &tampered), now)
            .expect_err("forged");
        assert_eq!(error.kind(), postbud_channel::ErrorKind::Unauthorized);
    }

    #[test]
    fn keys_that_are_not_p256_are_refused_when_the_channel_is_built() {
        assert!(Verifier::new("not base64!", Duration::ZERO).is_err());
        assert!(Verifier::new("AAAA", Duration::ZERO).is_err());
    }

    #[test]
    fn each_event_maps_to_its_state() {
        let state = |event: Value| evidence(&event).map(|e| (e.state, e.reason));
        let base =
            |name: &str| serde_json::json!({"event": name, "smtp-id": "<a@b>", "sg_event_id": "e"});
        assert_eq!(
            state(base("delivered")).map(|s| s.0),
            Some(EvidenceState::Delivered)
        );
        assert_eq!(
            state(base("deferred")).map(|s| s.0),
            Some(EvidenceState::Delayed)
        );
        assert_eq!(
            state(base("processed")).map(|s| s.0),
            Some(EvidenceState::Accepted)
        );
        assert_eq!(
            state(base("open")).map(|s| s.0),
            Some(EvidenceState::Opened)
        );
        assert_eq!(state(base("click")), None);
        let mut bounce = base("bounce");
        bounce["type"] = "bounce".into();
        bounce["reason"] = "550 5.1.1 no such user".into();
        assert_eq!(
            state(bounce.clone()),
            Some((EvidenceState::Bounced, "550 5.1.1 no such user".into()))
        );
        bounce["type"] = "blocked".into();
        assert_eq!(state(bounce).map(|s| s.0), Some(EvidenceState::Rejected));
        let ours =
            serde_json::json!({"event": "delivered", DELIVERY_KEY: "dlv-1", "smtp-id": "<a@b>"});
        assert_eq!(
            evidence(&ours).map(|e| e.about),
            Some(Correlation::Delivery("dlv-1".into()))
        );
        assert!(
            evidence(&serde_json::json!({"event": "delivered"})).is_none(),
            "nothing to match"
        );
    }
}
