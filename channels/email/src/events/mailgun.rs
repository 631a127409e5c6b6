//! Mailgun's webhooks: one JSON event per request, `{"signature": {"timestamp", "token",
//! "signature"}, "event-data": {...}}`, where `signature` is the hex HMAC-SHA256 of `timestamp`
//! followed by `token` under the account's webhook signing key. Verified as the SDK's
//! `verify_webhook` does (at most 15 minutes from now either way, by default). The signature
//! covers the timestamp and the token, not the body: a token seen before with another body is
//! refused as a replay, as Mailgun's documentation asks; the same request again (Mailgun's own
//! retry after a 503) passes, and the engine records its event once.

use std::{collections::HashMap, sync::Mutex, time::Duration};

use hmac::{Hmac, Mac};
use postbud_channel::{ChannelError, Evidence, EvidenceState, InboundReport};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use super::{DELIVERY_KEY, check_fresh, clean, correlation, json, payload, text, unix_time};

const REPORTER: &str = "mailgun";

/// Verifies with the signing key and remembers the tokens it accepted.
pub(crate) struct Verifier {
    signing_key: SecretString,
    max_age: Duration,
    /// Tokens accepted, with their signed time and a digest of the body they came with:
    /// forgotten once older than `max_age`, when the timestamp check refuses them anyway. Within
    /// one process: the engine's de-duplication by event id covers several instances behind one
    /// URL.
    seen: Mutex<HashMap<String, (i64, String)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("mailgun::Verifier").finish_non_exhaustive()
    }
}

impl Verifier {
    pub(crate) fn new(signing_key: SecretString, max_age: Duration) -> Self {
        Self {
            signing_key,
            max_age,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `signature` (hex) is the HMAC of `timestamp` and `token`: compared in constant
    /// time.
    pub(crate) fn verify(&self, timestamp: &str, token: &str, signature: &str) -> bool {
        let Ok(signature) = hex::decode(signature.trim()) else {
            return false;
        };
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(self.signing_key.expose_secret().as_bytes())
                .expect("HMAC takes any key length");
        mac.update(timestamp.as_bytes());
        mac.update(token.as_bytes());
        mac.verify_slice(&signature).is_ok()
    }

    pub(crate) fn report(
        &self,
        report: &InboundReport,
        now: jiff::Timestamp,
    ) -> Result<Vec<Evidence>, ChannelError> {
        let body = json(&report.body, REPORTER)?;
        let signature = body.get("signature");
        let field = |name: &str| -> Option<String> {
            match signature?.get(name)? {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            }
        };
        let (Some(timestamp), Some(token), Some(hmac)) =
            (field("timestamp"), field("token"), field("signature"))
        else {
            return Err(ChannelError::invalid_input(
                "mailgun: no signature {timestamp, token, signature} in the body",
            ));
        };
        if !self.verify(&timestamp, &token, &hmac) {
            return Err(ChannelError::unauthorized(
                "mailgun: the signature does not verify with events.signing_key",
            ));
        }
        let signed = timestamp.trim().parse::<i64>().map_err(|_| {
            ChannelError::unauthorized("mailgun: the signed timestamp is not a Unix time")
        })?;
        check_fresh(signed, now, self.max_age, REPORTER)?;
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let oldest = now
                .as_second()
                .saturating_sub(self.max_age.as_secs() as i64);
            seen.retain(|_, (at, _)| *at >= oldest);
            let body = postbud_channel::sha256_hex(&report.body);
            match seen.get(&token) {
                Some((_, first)) if *first != body => {
                    return Err(ChannelError::unauthorized(
                        "mailgun: this token was seen before with another body: a replayed signature",
                    ));
                }
                Some(_) => {}
                None => {
                    seen.insert(token, (signed, body));
                }
            }
        }
        let Some(event) = body.get("event-data") else {
            return Err(ChannelError::invalid_input(
                "mailgun: no event-data in the body",
            ));
        };
        Ok(evidence(event).into_iter().collect())
    }
}

/// The event's evidence; `None` for events that say nothing about delivery (clicks,
/// complaints, unsubscribes) or name nothing Postbud sent.
fn evidence(event: &Value) -> Option<Evidence> {
    let status = event.get("delivery-status");
    let status_text = |key: &str| status.and_then(|s| text(s, key)).unwrap_or_default();
    let code = status
        .and_then(|s| s.get("code"))
        .map(|c| match c {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .filter(|c| c != "null");
    let detail = [status_text("description"), status_text("message")]
        .into_iter()
        .find(|s| !s.trim().is_empty())
        .unwrap_or_default();
    let diagnostic = match (&code, text(event, "reason")) {
        (Some(code), Some(reason)) => format!("{code} {detail} ({reason})"),
        (Some(code), None) => format!("{code} {detail}"),
        (None, Some(reason)) => format!("{detail} ({reason})"),
        (None, None) => detail.to_owned(),
    };
    let (state, reason) = match text(event, "event")? {
        "accepted" => (EvidenceState::Accepted, String::new()),
        "delivered" => (EvidenceState::Delivered, diagnostic),
        "failed" if text(event, "severity") == Some("temporary") => {
            (EvidenceState::Delayed, diagnostic)
        }
        // Mailgun never sent it: the address is on a suppression list.
        "failed" if text(event, "reason").is_some_and(|r| r.starts_with("suppress-")) => {
            (EvidenceState::Rejected, diagnostic)
        }
        "failed" => (EvidenceState::Bounced, diagnostic),
        "rejected" => (EvidenceState::Rejected, diagnostic),
        "opened" => (EvidenceState::Opened, String::new()),
        _ => return None,
    };
    let delivery = event
        .get("user-variables")
        .and_then(|v| text(v, DELIVERY_KEY));
    let message_id = event
        .get("message")
        .and_then(|m| m.get("headers"))
        .and_then(|h| text(h, "message-id"));
    let about = correlation(delivery, message_id)?;
    let event_id = text(event, "id")
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
    use postbud_channel::{Correlation, ErrorKind};

    const KEY: &str = "key-mailgun-signing";

    fn verifier() -> Verifier {
        Verifier::new(SecretString::from(KEY), Duration::from_secs(900))
    }

    fn sign(timestamp: &str, token: &str) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(KEY.as_bytes()).expect("key");
        mac.update(format!("{timestamp}{token}").as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn request(timestamp: &str, token: &str, signature: &str, event: Value) -> InboundReport {
        let body = serde_json::json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": signature},
            "event-data": event,
        });
        InboundReport::new(
            "https://m.example/reports/mail",
            vec![],
            body.to_string().into(),
        )
    }

    fn failed() -> Value {
        serde_json::json!({
            "id": "G9Bn5sl1TC6nu79C8C0bwg", "event": "failed", "severity": "permanent",
            "reason": "bounce", "timestamp": 1521233195.375624,
            "delivery-status": {"code": 550, "message": "", "description": "5.1.1 The email account that you tried to reach does not exist"},
            "user-variables": {DELIVERY_KEY: "dlv-1"},
            "message": {"headers": {"message-id": "dlv-1@merchant.example"}},
        })
    }

    #[test]
    fn a_signed_permanent_failure_is_a_bounce_and_its_token_signs_one_body() {
        let now = jiff::Timestamp::from_second(1_700_000_000).expect("time");
        let ts = "1700000000";
        let v = verifier();
        let evidence = v
            .report(&request(ts, "tok-1", &sign(ts, "tok-1"), failed()), now)
            .expect("verified");
        assert_eq!(evidence.len(), 1);
        assert_eq!(evidence[0].state, EvidenceState::Bounced);
        assert_eq!(evidence[0].about, Correlation::Delivery("dlv-1".into()));
        assert!(
            evidence[0].reason.contains("5.1.1"),
            "{}",
            evidence[0].reason
        );
        assert_eq!(evidence[0].event_id, "G9Bn5sl1TC6nu79C8C0bwg");
        let again = v
            .report(&request(ts, "tok-1", &sign(ts, "tok-1"), failed()), now)
            .expect("the same request again: Mailgun's retry");
        assert_eq!(
            again, evidence,
            "the same event, recorded once by the engine"
        );
        let mut other = failed();
        other["user-variables"][DELIVERY_KEY] = "dlv-2".into();
        let replay = v
            .report(&request(ts, "tok-1", &sign(ts, "tok-1"), other), now)
            .expect_err("replayed");
        assert_eq!(replay.kind(), ErrorKind::Unauthorized);
    }

    #[test]
    fn forged_stale_and_unsigned_requests_are_refused() {
        let now = jiff::Timestamp::from_second(1_700_000_000).expect("time");
        let v = verifier();
        let forged = v
            .report(&request("1700000000", "t", &"0".repeat(64), failed()), now)
            .expect_err("forged");
        assert_eq!(forged.kind(), ErrorKind::Unauthorized);
        let stale_ts = "1699999000";
        let stale = v
            .report(
                &request(stale_ts, "t2", &sign(stale_ts, "t2"), failed()),
                now,
            )
            .expect_err("stale");
        assert_eq!(stale.kind(), ErrorKind::Unauthorized);
        let unsigned = InboundReport::new(
            "https://m.example/reports/mail",
            vec![],
            serde_json::json!({"event-data": failed()})
                .to_string()
                .into(),
        );
        assert_eq!(
            v.report(&unsigned, now).expect_err("unsigned").kind(),
            ErrorKind::InvalidInput
        );
        let garbage = InboundReport::new("https://m.example/r", vec![], "\u{0}[[[".into());
        assert_eq!(
            v.report(&garbage, now).expect_err("garbage").kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn each_event_maps_to_its_state() {
        let state = |patch: Value| {
            let mut event = failed();
            for (k, v) in patch.as_object().expect("object") {
                event[k] = v.clone();
            }
            evidence(&event).map(|e| e.state)
        };
        assert_eq!(state(serde_json::json!({})), Some(EvidenceState::Bounced));
        assert_eq!(
            state(serde_json::json!({"severity": "temporary"})),
            Some(EvidenceState::Delayed)
        );
        assert_eq!(
            state(serde_json::json!({"reason": "suppress-bounce"})),
            Some(EvidenceState::Rejected)
        );
        assert_eq!(
            state(serde_json::json!({"event": "delivered"})),
            Some(EvidenceState::Delivered)
        );
        assert_eq!(
            state(serde_json::json!({"event": "opened"})),
            Some(EvidenceState::Opened)
        );
        assert_eq!(state(serde_json::json!({"event": "clicked"})), None);
        let mut other = failed();
        other["user-variables"] = serde_json::json!({});
        assert_eq!(
            evidence(&other).map(|e| e.about),
            Some(Correlation::Reference("<dlv-1@merchant.example>".into()))
        );
    }
}
