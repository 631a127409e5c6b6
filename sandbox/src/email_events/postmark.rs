//! Postmark's webhooks: one record per request (`RecordType` `Bounce`, `Delivery`, `Open`),
//! unsigned; the webhook's URL carries HTTP Basic credentials, which Postmark sends as
//! `Authorization: Basic …`. The message's `X-PM-Metadata-<key>` headers come back as
//! `Metadata`; `MessageID` is Postmark's own id of the message.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{Outcome, Post, Sent, random_hex};

/// A Postmark server's webhook, with the credentials written into its URL.
#[derive(Debug, Clone)]
pub struct Postmark {
    username: String,
    password: String,
}

impl Postmark {
    /// A webhook whose URL carries `username:password`.
    pub fn new(username: &str, password: &str) -> Self {
        Self {
            username: username.to_owned(),
            password: password.to_owned(),
        }
    }

    /// The record Postmark posts when `outcome` happened to `sent`; `None` for what Postmark
    /// reports no webhook for (it has none for "processed").
    pub fn record(&self, sent: &Sent, outcome: &Outcome) -> Option<Value> {
        let metadata: serde_json::Map<String, Value> = sent
            .headers_starting("X-PM-Metadata-")
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        let at = jiff::Timestamp::now().to_string();
        let message_id = format!(
            "{}-{}-{}-{}-{}",
            random_hex(4),
            random_hex(2),
            random_hex(2),
            random_hex(2),
            random_hex(6)
        );
        let bounce = |kind: &str, code: u32, why: &str| {
            json!({"RecordType": "Bounce", "ID": u64::from_str_radix(&random_hex(6), 16).unwrap_or(1),
                "Type": kind, "TypeCode": code, "Name": kind, "MessageID": message_id, "Metadata": metadata,
                "ServerID": 23, "MessageStream": "outbound", "Description": "The server was unable to deliver your message",
                "Details": why, "Email": sent.recipient, "From": "faktura@merchant.example", "BouncedAt": at,
                "DumpAvailable": false, "Inactive": kind == "HardBounce", "CanActivate": true, "Subject": "Faktura"})
        };
        Some(match outcome {
            Outcome::Processed => return None,
            Outcome::Delivered => {
                json!({"RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound",
                "MessageID": message_id, "Recipient": sent.recipient, "Tag": "", "DeliveredAt": at,
                "Details": "smtp;250 2.0.0 OK", "Metadata": metadata})
            }
            Outcome::Deferred(why) => bounce("SoftBounce", 4096, why),
            Outcome::Bounced(why) => bounce("HardBounce", 1, why),
            Outcome::Blocked(why) => bounce("Blocked", 100006, why),
            Outcome::Suppressed(why) => bounce("ManuallyDeactivated", 100002, why),
            Outcome::Opened => {
                json!({"RecordType": "Open", "MessageStream": "outbound", "FirstOpen": true,
                "Recipient": sent.recipient, "MessageID": message_id, "ReceivedAt": at, "Platform": "WebMail",
                "ReadSeconds": 5, "Tag": "", "Metadata": metadata})
            }
        })
    }

    /// The request posting `record` with the webhook's credentials.
    pub fn post(&self, record: &Value) -> Post {
        self.post_as(record, Some((&self.username, &self.password)))
    }

    /// The request posting `record` with `credentials` (none: no `Authorization`).
    pub fn post_as(&self, record: &Value, credentials: Option<(&str, &str)>) -> Post {
        let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        if let Some((user, password)) = credentials {
            headers.push((
                "Authorization".into(),
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
                ),
            ));
        }
        Post {
            headers,
            body: serde_json::to_vec(record).expect("JSON"),
        }
    }
}
