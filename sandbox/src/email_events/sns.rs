//! Amazon SES events delivered by SNS over HTTPS: an SNS message `{Type, MessageId, TopicArn,
//! Message, Timestamp, SignatureVersion, Signature, SigningCertURL, ...}` whose `Message` is the
//! SES event (event publishing: `eventType`, `mail.tags` from `X-SES-MESSAGE-TAGS`,
//! `mail.commonHeaders.messageId`), signed with SHA1withRSA (version 1) or SHA256withRSA
//! (version 2) over the canonical string. The signing certificate and the subscription
//! confirmation are served over HTTPS on loopback with a test CA, as
//! `sns.<region>.amazonaws.com` serves them.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use axum::{Router, extract::Query, routing::get};
use base64::Engine as _;
use rsa::{Pkcs1v15Sign, RsaPrivateKey, pkcs1::DecodeRsaPrivateKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};
use sha2::Digest as _;

use super::{Outcome, Post, Sent, random_hex};

/// The test key SNS signs with (PKCS#1 PEM; a throw-away key made for these tests, public
/// here so that an independent signer can sign with it too).
pub const SIGNING_KEY: &str = include_str!("keys/sns-signing.key");
/// Its self-signed certificate, served at [`Sns::certificate_url`].
pub const SIGNING_CERTIFICATE: &str = include_str!("keys/sns-signing.pem");
/// The test CA that signed the HTTPS origin's certificate.
pub const TLS_CA: &str = include_str!("keys/tls-ca.pem");
const TLS_CERTIFICATE: &str = include_str!("keys/tls-server.pem");
const TLS_KEY: &str = include_str!("keys/tls-server.key");

/// SNS's `SignatureVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureVersion {
    /// `1`: SHA1withRSA.
    V1,
    /// `2`: SHA256withRSA.
    V2,
}

/// An SNS topic SES publishes to, with its HTTPS origin for the certificate and confirmations.
#[derive(Debug)]
pub struct Sns {
    topic_arn: String,
    origin: String,
    confirmations: Arc<Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
    dir: tempfile::TempDir,
}

impl Drop for Sns {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Sns {
    /// The topic `topic_arn`, its HTTPS origin started on a free loopback port.
    pub async fn start(topic_arn: &str) -> std::io::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let certificate = CertificateDer::from_pem_slice(TLS_CERTIFICATE.as_bytes())
            .map_err(std::io::Error::other)?;
        let key =
            PrivateKeyDer::from_pem_slice(TLS_KEY.as_bytes()).map_err(std::io::Error::other)?;
        let tls = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(vec![certificate], key)
            .map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let origin = format!("https://{}", listener.local_addr()?);
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("ca.pem"), TLS_CA)?;
        let confirmations = Arc::new(Mutex::new(Vec::new()));
        let topic = topic_arn.to_owned();
        let confirmed = Arc::clone(&confirmations);
        let app = Router::new()
            .route(
                "/SimpleNotificationService-sandbox.pem",
                get(|| async { SIGNING_CERTIFICATE }),
            )
            .route(
                "/",
                get(
                    move |Query(query): Query<std::collections::HashMap<String, String>>| {
                        let topic = topic.clone();
                        let confirmed = Arc::clone(&confirmed);
                        async move { confirm(&topic, &confirmed, &query) }
                    },
                ),
            );
        let server = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(
                            hyper_util::rt::TokioIo::new(stream),
                            hyper_util::service::TowerToHyperService::new(app),
                        )
                        .await;
                });
            }
        });
        Ok(Self {
            topic_arn: topic_arn.to_owned(),
            origin,
            confirmations,
            server,
            dir,
        })
    }

    /// `https://127.0.0.1:<port>`: for the channel's `certificate_origins`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The CA that signed the origin's TLS certificate (for the channel's `ca_file`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Where the signing certificate is served.
    pub fn certificate_url(&self) -> String {
        format!("{}/SimpleNotificationService-sandbox.pem", self.origin)
    }

    /// The topic.
    pub fn topic_arn(&self) -> &str {
        &self.topic_arn
    }

    /// The subscription tokens confirmed so far.
    pub fn confirmations(&self) -> Vec<String> {
        self.confirmations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The SES event (event publishing) for `outcome` of `sent`.
    pub fn ses_event(&self, sent: &Sent, outcome: &Outcome) -> Value {
        let now = jiff::Timestamp::now().to_string();
        let mut tags = serde_json::Map::new();
        tags.insert("ses:configuration-set".into(), json!(["postbud"]));
        for pair in sent
            .header("X-SES-MESSAGE-TAGS")
            .unwrap_or_default()
            .split(',')
        {
            if let Some((k, v)) = pair.split_once('=') {
                tags.insert(k.trim().to_owned(), json!([v.trim()]));
            }
        }
        let headers: Vec<Value> = sent
            .headers
            .iter()
            // SES takes its own header off the message it sends.
            .filter(|(n, _)| !n.eq_ignore_ascii_case("X-SES-MESSAGE-TAGS"))
            .map(|(n, v)| json!({"name": n, "value": v}))
            .collect();
        let mail = json!({
            "timestamp": now, "source": "faktura@merchant.example", "sendingAccountId": "123456789012",
            "messageId": format!("0100{}-000000", random_hex(16)), "destination": [sent.recipient],
            "headersTruncated": false, "headers": headers,
            "commonHeaders": {"from": ["faktura@merchant.example"], "to": [sent.recipient], "messageId": sent.message_id()},
            "tags": tags,
        });
        let recipient = |status: &str, why: &str| json!([{"emailAddress": sent.recipient, "action": "failed", "status": status, "diagnosticCode": format!("smtp; {why}")}]);
        let bounce = |kind: &str, subtype: &str, why: &str| {
            let (status, _) = super::split_diagnostic(why);
            json!({"eventType": "Bounce", "bounce": {"bounceType": kind, "bounceSubType": subtype,
                "bouncedRecipients": recipient(&status, why), "timestamp": now,
                "feedbackId": format!("0100{}-000000", random_hex(16)), "reportingMTA": "dsn; a8-70.smtp-out.amazonses.com"}})
        };
        let mut event = match outcome {
            Outcome::Processed => json!({"eventType": "Send", "send": {}}),
            Outcome::Delivered => json!({"eventType": "Delivery", "delivery": {"timestamp": now,
                "processingTimeMillis": 546, "recipients": [sent.recipient], "smtpResponse": "250 2.6.0 Message received",
                "reportingMTA": "a8-70.smtp-out.amazonses.com"}}),
            Outcome::Deferred(why) => {
                let (status, _) = super::split_diagnostic(why);
                json!({"eventType": "DeliveryDelay", "deliveryDelay": {"timestamp": now, "delayType": "TransientCommunicationFailure",
                    "expirationTime": now, "delayedRecipients": [{"emailAddress": sent.recipient, "status": status, "diagnosticCode": why}]}})
            }
            Outcome::Bounced(why) => bounce("Permanent", "General", why),
            Outcome::Blocked(why) => bounce("Permanent", "ContentRejected", why),
            Outcome::Suppressed(why) => bounce("Permanent", "OnAccountSuppressionList", why),
            Outcome::Opened => {
                json!({"eventType": "Open", "open": {"timestamp": now, "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}})
            }
        };
        event["mail"] = mail;
        event
    }

    /// The notification carrying `message` (an SES event), signed with `version` and stamped
    /// `timestamp`.
    pub fn notify(
        &self,
        message: &Value,
        version: SignatureVersion,
        timestamp: jiff::Timestamp,
    ) -> Post {
        let fields = vec![
            ("Message", message.to_string()),
            ("MessageId", uuid()),
            ("Timestamp", sns_time(timestamp)),
            ("TopicArn", self.topic_arn.clone()),
            ("Type", "Notification".to_owned()),
        ];
        self.sign(fields, version)
    }

    /// [`Sns::notify`] now.
    pub fn notify_now(&self, message: &Value, version: SignatureVersion) -> Post {
        self.notify(message, version, jiff::Timestamp::now())
    }

    /// The `SubscriptionConfirmation` SNS posts when the endpoint is subscribed to the topic.
    pub fn subscription_confirmation(&self, version: SignatureVersion) -> Post {
        let token = random_hex(32);
        let subscribe_url = format!(
            "{}/?Action=ConfirmSubscription&TopicArn={}&Token={token}",
            self.origin, self.topic_arn
        );
        let fields = vec![
            (
                "Message",
                format!(
                    "You have chosen to subscribe to the topic {}.\nTo confirm the subscription, visit the SubscribeURL included in this message.",
                    self.topic_arn
                ),
            ),
            ("MessageId", uuid()),
            ("SubscribeURL", subscribe_url),
            ("Timestamp", sns_time(jiff::Timestamp::now())),
            ("Token", token),
            ("TopicArn", self.topic_arn.clone()),
            ("Type", "SubscriptionConfirmation".to_owned()),
        ];
        self.sign(fields, version)
    }

    /// The message of `fields` (in canonical order), signed, as SNS posts it.
    fn sign(&self, fields: Vec<(&str, String)>, version: SignatureVersion) -> Post {
        let canonical: String = fields.iter().map(|(k, v)| format!("{k}\n{v}\n")).collect();
        let key = RsaPrivateKey::from_pkcs1_pem(SIGNING_KEY).expect("the test key");
        let signature = match version {
            SignatureVersion::V1 => key.sign(
                Pkcs1v15Sign::new::<sha1::Sha1>(),
                &sha1::Sha1::digest(canonical.as_bytes()),
            ),
            SignatureVersion::V2 => key.sign(
                Pkcs1v15Sign::new::<sha2::Sha256>(),
                &sha2::Sha256::digest(canonical.as_bytes()),
            ),
        }
        .expect("signing");
        let mut message = serde_json::Map::new();
        for (k, v) in &fields {
            message.insert((*k).to_owned(), Value::String(v.clone()));
        }
        let kind = message["Type"].as_str().unwrap_or_default().to_owned();
        let id = message["MessageId"].as_str().unwrap_or_default().to_owned();
        message.insert(
            "SignatureVersion".into(),
            match version {
                SignatureVersion::V1 => "1",
                SignatureVersion::V2 => "2",
            }
            .into(),
        );
        message.insert(
            "Signature".into(),
            base64::engine::general_purpose::STANDARD
                .encode(signature)
                .into(),
        );
        message.insert("SigningCertURL".into(), self.certificate_url().into());
        if kind == "Notification" {
            message.insert(
                "UnsubscribeURL".into(),
                format!(
                    "{}/?Action=Unsubscribe&SubscriptionArn={}:{}",
                    self.origin,
                    self.topic_arn,
                    uuid()
                )
                .into(),
            );
        }
        Post {
            headers: vec![
                ("Content-Type".into(), "text/plain; charset=UTF-8".into()),
                ("x-amz-sns-message-type".into(), kind),
                ("x-amz-sns-message-id".into(), id),
                ("x-amz-sns-topic-arn".into(), self.topic_arn.clone()),
            ],
            body: serde_json::to_vec_pretty(&Value::Object(message)).expect("JSON"),
        }
    }
}

/// `GET /?Action=ConfirmSubscription&TopicArn=…&Token=…`, as SNS answers it.
fn confirm(
    topic: &str,
    confirmed: &Mutex<Vec<String>>,
    query: &std::collections::HashMap<String, String>,
) -> (axum::http::StatusCode, String) {
    let field = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
    if field("Action") != "ConfirmSubscription"
        || field("TopicArn") != topic
        || field("Token").is_empty()
    {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            "<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code></Error></ErrorResponse>".into(),
        );
    }
    confirmed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(field("Token").to_owned());
    (
        axum::http::StatusCode::OK,
        format!(
            "<ConfirmSubscriptionResponse><ConfirmSubscriptionResult><SubscriptionArn>{topic}:{}</SubscriptionArn></ConfirmSubscriptionResult></ConfirmSubscriptionResponse>",
            uuid()
        ),
    )
}

fn uuid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// SNS's timestamps: ISO 8601 with milliseconds, UTC.
fn sns_time(at: jiff::Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
