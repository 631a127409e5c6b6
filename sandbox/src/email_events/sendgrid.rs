//! SendGrid's signed Event Webhook: a JSON array of events, each with `email`, `timestamp`,
//! `smtp-id` (the `Message-ID`), `event`, `sg_event_id`, `sg_message_id` and the message's
//! unique arguments (from `X-SMTPAPI`) as keys of their own; signed with ECDSA P-256 over
//! SHA-256 of the timestamp header's value followed by the body.

use base64::Engine as _;
use ring::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _},
};
use serde_json::{Value, json};

use super::{Outcome, Post, Sent, now, random_hex};

/// The header carrying the signature (base64 DER).
pub const SIGNATURE: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// The header carrying the signed timestamp.
pub const TIMESTAMP: &str = "X-Twilio-Email-Event-Webhook-Timestamp";

/// A SendGrid account's event webhook, with a signing key of its own.
pub struct SendGrid {
    key: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

impl std::fmt::Debug for SendGrid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendGrid")
            .field("public_key", &self.public_key())
            .finish_non_exhaustive()
    }
}

impl Default for SendGrid {
    fn default() -> Self {
        Self::new()
    }
}

/// The DER prefix of a P-256 SubjectPublicKeyInfo before its 65-byte uncompressed point:
/// SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

impl SendGrid {
    /// An account with a fresh P-256 key.
    pub fn new() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("a P-256 key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
            .expect("its own key");
        Self {
            key,
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    /// The verification key as SendGrid shows it: base64 of the SubjectPublicKeyInfo.
    pub fn public_key(&self) -> String {
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(self.key.public_key().as_ref());
        base64::engine::general_purpose::STANDARD.encode(spki)
    }

    /// The private key, PKCS#8 DER base64 (for an independent signer to sign with it).
    pub fn private_key_pkcs8(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(&self.pkcs8)
    }

    /// The event SendGrid posts when `outcome` happened to `sent`.
    pub fn event(&self, sent: &Sent, outcome: &Outcome) -> Value {
        let mut event = json!({
            "email": sent.recipient,
            "timestamp": now(),
            "sg_event_id": random_hex(16),
            "sg_message_id": format!("{}.filterdrecv-sandbox-0", random_hex(11)),
        });
        if let Some(id) = sent.message_id() {
            event["smtp-id"] = id.into();
        }
        let fields = match outcome {
            Outcome::Processed => json!({"event": "processed"}),
            Outcome::Delivered => {
                json!({"event": "delivered", "response": "250 2.0.0 OK", "tls": 1})
            }
            Outcome::Deferred(why) => json!({"event": "deferred", "response": why, "attempt": "1"}),
            Outcome::Bounced(why) => {
                let (status, reason) = super::split_diagnostic(why);
                json!({"event": "bounce", "type": "bounce", "status": status, "reason": reason, "bounce_classification": "Invalid Address"})
            }
            Outcome::Blocked(why) => {
                let (status, reason) = super::split_diagnostic(why);
                json!({"event": "bounce", "type": "blocked", "status": status, "reason": reason, "bounce_classification": "Reputation"})
            }
            Outcome::Suppressed(why) => json!({"event": "dropped", "reason": why}),
            Outcome::Opened => {
                json!({"event": "open", "sg_machine_open": false, "useragent": "Mozilla/5.0", "ip": "192.0.2.1"})
            }
        };
        merge(&mut event, &fields);
        // Unique arguments come back as keys of the event.
        if let Some(Value::Object(args)) = sent
            .header("X-SMTPAPI")
            .and_then(|h| serde_json::from_str::<Value>(h).ok())
            .and_then(|v| v.get("unique_args").cloned())
        {
            for (key, value) in args {
                if let Value::String(_) = value {
                    event[key] = value;
                }
            }
        }
        event
    }

    /// The request posting `events` as one batch, signed at `timestamp` (Unix seconds).
    pub fn sign(&self, events: &[Value], timestamp: i64) -> Post {
        // SendGrid's body ends with CRLF, and the signature covers it.
        let mut body = serde_json::to_vec(events).expect("JSON");
        body.extend_from_slice(b"\r\n");
        let timestamp = timestamp.to_string();
        let mut message = timestamp.as_bytes().to_vec();
        message.extend_from_slice(&body);
        let signature = self
            .key
            .sign(&SystemRandom::new(), &message)
            .expect("signing");
        Post {
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                (
                    SIGNATURE.into(),
                    base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
                ),
                (TIMESTAMP.into(), timestamp),
            ],
            body,
        }
    }

    /// [`SendGrid::sign`] now.
    pub fn sign_now(&self, events: &[Value]) -> Post {
        self.sign(events, now())
    }
}

fn merge(into: &mut Value, from: &Value) {
    if let (Value::Object(into), Value::Object(from)) = (into, from) {
        for (k, v) in from {
            into.insert(k.clone(), v.clone());
        }
    }
}
