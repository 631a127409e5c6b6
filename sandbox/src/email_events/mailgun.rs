//! Mailgun's webhooks: one event per request, `{"signature": {"timestamp", "token",
//! "signature"}, "event-data": {...}}`, the signature the hex HMAC-SHA256 of timestamp and token
//! under the account's webhook signing key. The message's `X-Mailgun-Variables` come back as
//! `user-variables`, its `Message-ID` (without angle brackets) as `message.headers.message-id`.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};

use super::{Outcome, Post, Sent, now, random_hex};

/// A Mailgun account's webhooks.
#[derive(Debug, Clone)]
pub struct Mailgun {
    signing_key: String,
}

impl Mailgun {
    /// An account whose webhook signing key is `signing_key`.
    pub fn new(signing_key: &str) -> Self {
        Self {
            signing_key: signing_key.to_owned(),
        }
    }

    /// The `event-data` Mailgun posts when `outcome` happened to `sent`.
    pub fn event(&self, sent: &Sent, outcome: &Outcome) -> Value {
        let failed = |severity: &str, reason: &str, why: &str| {
            let (status, _) = super::split_diagnostic(why);
            let code: u16 = why
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(550);
            json!({"event": "failed", "severity": severity, "reason": reason,
                "delivery-status": {"code": code, "message": why, "description": format!("{status} {why}"), "attempt-no": 1}})
        };
        let fields = match outcome {
            Outcome::Processed => json!({"event": "accepted"}),
            Outcome::Delivered => json!({"event": "delivered",
                "delivery-status": {"code": 250, "message": "OK", "description": "", "tls": true}}),
            Outcome::Deferred(why) => failed("temporary", "generic", why),
            Outcome::Bounced(why) => failed("permanent", "bounce", why),
            Outcome::Blocked(why) => failed("permanent", "generic", why),
            Outcome::Suppressed(why) => failed("permanent", "suppress-bounce", why),
            Outcome::Opened => json!({"event": "opened", "ip": "192.0.2.1"}),
        };
        let variables = sent
            .header("X-Mailgun-Variables")
            .and_then(|h| serde_json::from_str::<Value>(h).ok())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let message_id = sent
            .message_id()
            .unwrap_or_default()
            .trim_matches(['<', '>']);
        let mut event = json!({
            "id": random_hex(11),
            "timestamp": now() as f64 + 0.125,
            "log-level": "info",
            "recipient": sent.recipient,
            "user-variables": variables,
            "message": {"headers": {"message-id": message_id, "to": sent.recipient}},
        });
        if let (Value::Object(event), Value::Object(fields)) = (&mut event, fields) {
            event.extend(fields);
        }
        event
    }

    /// The request posting `event`, signed at `timestamp` with `token`.
    pub fn sign(&self, event: &Value, timestamp: i64, token: &str) -> Post {
        let timestamp = timestamp.to_string();
        let body = json!({
            "signature": {"timestamp": timestamp, "token": token, "signature": self.signature(&timestamp, token)},
            "event-data": event,
        });
        Post {
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: serde_json::to_vec(&body).expect("JSON"),
        }
    }

    /// [`Mailgun::sign`] now, with a fresh token.
    pub fn sign_now(&self, event: &Value) -> Post {
        self.sign(event, now(), &random_hex(25))
    }

    /// The hex HMAC-SHA256 of `timestamp` followed by `token`.
    pub fn signature(&self, timestamp: &str, token: &str) -> String {
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.signing_key.as_bytes())
            .expect("any key length");
        mac.update(timestamp.as_bytes());
        mac.update(token.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}
