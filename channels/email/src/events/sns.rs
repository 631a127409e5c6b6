//! Amazon SNS's HTTPS deliveries, as AWS's message validators check them: the message's
//! `SignatureVersion` `1` (SHA1withRSA) or `2` (SHA256withRSA) over the canonical string
//! (`Key\nValue\n` for `Message`, `MessageId`, [`Subject`], `Timestamp`, `TopicArn`, `Type` of a
//! notification; `Message`, `MessageId`, `SubscribeURL`, `Timestamp`, `Token`, `TopicArn`, `Type`
//! of a subscription message), verified with the certificate at `SigningCertURL`, which is
//! fetched only from `https://sns.<region>.amazonaws.com/…` of the configured topic's region
//! (TLS authenticates the host, as in AWS's own validators; the certificate is cached). The
//! topic must be the configured one.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::Engine as _;
use postbud_channel::{ChannelError, Evidence, InboundReport, http};
use rustls_pki_types::{
    AlgorithmIdentifier, CertificateDer, InvalidSignature, SignatureVerificationAlgorithm, alg_id,
    pem::PemObject,
};
use serde_json::Value;

use super::{check_fresh, ses};

/// The largest certificate read (AWS's are under 2 KiB).
const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;
/// Certificates kept; AWS rotates its signing certificate rarely.
const MAX_CACHED: usize = 16;

/// Verifies SNS messages of one topic.
pub(crate) struct Verifier {
    topic_arn: String,
    /// `sns.<region>.amazonaws.com` (`.com.cn` in the China partition).
    sns_host: String,
    /// Further trusted origins (`certificate_origins`), as `scheme://host:port`.
    origins: Vec<url::Origin>,
    client: http::reqwest::Client,
    max_age: Duration,
    certificates: Mutex<HashMap<String, Arc<Vec<u8>>>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("sns::Verifier")
            .field("topic_arn", &self.topic_arn)
            .finish_non_exhaustive()
    }
}

/// What kind of message SNS posted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Notification,
    SubscriptionConfirmation,
    UnsubscribeConfirmation,
}

/// A verified SNS message.
#[derive(Debug)]
pub(crate) struct Message {
    pub kind: Kind,
    pub message_id: String,
    pub message: String,
    pub subscribe_url: Option<String>,
}

impl Verifier {
    pub(crate) fn new(
        topic_arn: &str,
        certificate_origins: &[String],
        ca_file: Option<&str>,
        timeout: Duration,
        max_age: Duration,
    ) -> Result<Self, (String, String)> {
        let key = |k: &str| format!("events.{k}");
        // arn:<partition>:sns:<region>:<account>:<topic>
        let parts: Vec<&str> = topic_arn.split(':').collect();
        let region = match parts[..] {
            ["arn", partition, "sns", region, account, topic]
                if partition.starts_with("aws")
                    && !region.is_empty()
                    && region
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && account.len() == 12
                    && account.bytes().all(|b| b.is_ascii_digit())
                    && !topic.is_empty() =>
            {
                region
            }
            _ => {
                return Err((
                    key("topic_arn"),
                    format!(
                        "`{topic_arn}` is not an SNS topic ARN: expected arn:aws:sns:<region>:<account>:<topic>"
                    ),
                ));
            }
        };
        let suffix = if parts[1] == "aws-cn" {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let origins = certificate_origins
            .iter()
            .map(|origin| {
                let url = url::Url::parse(origin).ok().filter(|u| {
                    u.scheme() == "https"
                        && u.username().is_empty()
                        && u.password().is_none()
                        && matches!(u.path(), "" | "/")
                });
                url.map(|u| u.origin()).ok_or_else(|| {
                    (
                        key("certificate_origins"),
                        format!("`{origin}`: expected an https origin, https://host[:port]"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut builder = http::client(timeout);
        if let Some(path) = ca_file {
            // `ca_file` is the channel's key, not the events table's.
            let pem = std::fs::read(path)
                .map_err(|e| ("ca_file".to_owned(), format!("`{path}`: {e}")))?;
            let certificates = http::reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                (
                    "ca_file".to_owned(),
                    format!("`{path}` is not a PEM certificate: {e}"),
                )
            })?;
            builder = builder.tls_certs_merge(certificates);
        }
        let client = builder.build().map_err(|e| {
            (
                key("topic_arn"),
                format!("HTTP client for SNS certificates: {e}"),
            )
        })?;
        Ok(Self {
            topic_arn: topic_arn.to_owned(),
            sns_host: format!("sns.{region}.{suffix}"),
            origins,
            client,
            max_age,
            certificates: Mutex::new(HashMap::new()),
        })
    }

    /// Whether `url` is on the topic's SNS host (https, default port, no credentials) or one of
    /// the configured origins.
    fn trusted(&self, url: &str) -> Option<url::Url> {
        let url = url::Url::parse(url).ok()?;
        if url.scheme() != "https" || !url.username().is_empty() || url.password().is_some() {
            return None;
        }
        let on_sns = url.host_str() == Some(self.sns_host.as_str()) && url.port().is_none();
        (on_sns || self.origins.contains(&url.origin())).then_some(url)
    }

    pub(crate) async fn report(
        &self,
        report: &InboundReport,
        now: jiff::Timestamp,
    ) -> Result<Vec<Evidence>, ChannelError> {
        let message = self.verify(&report.body, now).await?;
        match message.kind {
            Kind::Notification => Ok(ses::evidence(&message)),
            Kind::SubscriptionConfirmation => {
                self.confirm(&message).await?;
                Ok(Vec::new())
            }
            Kind::UnsubscribeConfirmation => {
                tracing::warn!(
                    topic = %self.topic_arn,
                    "SNS says this endpoint was unsubscribed from the topic: SES events stop arriving until it is subscribed again"
                );
                Ok(Vec::new())
            }
        }
    }

    /// Confirms the subscription of this endpoint to the configured topic: the message is
    /// verified and of that topic, and the URL is SNS's own (or a configured origin), so
    /// visiting it subscribes Postbud to what the operator configured and nothing else.
    async fn confirm(&self, message: &Message) -> Result<(), ChannelError> {
        let raw = message.subscribe_url.as_deref().unwrap_or_default();
        // SNS's own form: `https://sns.<region>.amazonaws.com/?Action=ConfirmSubscription&
        // TopicArn=<the topic>&Token=…`; nothing else is visited.
        let Some(url) = self.trusted(raw).filter(|url| {
            let query = |name: &str| {
                url.query_pairs()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.into_owned())
            };
            query("Action").as_deref() == Some("ConfirmSubscription")
                && query("TopicArn").as_deref() == Some(self.topic_arn.as_str())
        }) else {
            return Err(ChannelError::unauthorized(format!(
                "ses: the SubscribeURL is not on {}: not confirmed",
                self.sns_host
            )));
        };
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(http::transport_error)?;
        if !response.status().is_success() {
            return Err(ChannelError::unavailable(format!(
                "ses: confirming the subscription to {} answered {}",
                self.topic_arn,
                response.status()
            )));
        }
        tracing::info!(topic = %self.topic_arn, "confirmed the SNS subscription: SES events arrive from now on");
        Ok(())
    }

    /// The message, verified: of the configured topic, signed by the certificate SNS serves,
    /// within `max_age`.
    pub(crate) async fn verify(
        &self,
        body: &[u8],
        now: jiff::Timestamp,
    ) -> Result<Message, ChannelError> {
        let value: Value = super::json(body, "ses")?;
        let field = |name: &str| value.get(name).and_then(Value::as_str);
        let kind = match field("Type") {
            Some("Notification") => Kind::Notification,
            Some("SubscriptionConfirmation") => Kind::SubscriptionConfirmation,
            Some("UnsubscribeConfirmation") => Kind::UnsubscribeConfirmation,
            other => {
                return Err(ChannelError::invalid_input(format!(
                    "ses: not an SNS message (Type {other:?})"
                )));
            }
        };
        let (Some(signature), Some(version), Some(cert_url)) = (
            field("Signature"),
            field("SignatureVersion"),
            field("SigningCertURL"),
        ) else {
            return Err(ChannelError::invalid_input(
                "ses: no Signature, SignatureVersion and SigningCertURL",
            ));
        };
        // The topic first: a message of another topic is refused before anything is fetched.
        if field("TopicArn") != Some(self.topic_arn.as_str()) {
            return Err(ChannelError::unauthorized(
                "ses: the message is not of events.topic_arn",
            ));
        }
        let algorithm: &dyn SignatureVerificationAlgorithm = match version {
            "1" => &RSA_PKCS1_SHA1,
            "2" => webpki::ring::RSA_PKCS1_2048_8192_SHA256,
            other => {
                return Err(ChannelError::unauthorized(format!(
                    "ses: SignatureVersion {other:?}: expected 1 or 2"
                )));
            }
        };
        let keys: &[&str] = match kind {
            Kind::Notification => &[
                "Message",
                "MessageId",
                "Subject",
                "Timestamp",
                "TopicArn",
                "Type",
            ],
            _ => &[
                "Message",
                "MessageId",
                "SubscribeURL",
                "Timestamp",
                "Token",
                "TopicArn",
                "Type",
            ],
        };
        let mut canonical = String::new();
        for key in keys {
            match value.get(*key) {
                Some(Value::String(v)) => {
                    canonical.push_str(key);
                    canonical.push('\n');
                    canonical.push_str(v);
                    canonical.push('\n');
                }
                // A notification without a subject leaves it out.
                None | Some(Value::Null) if *key == "Subject" => {}
                _ => {
                    return Err(ChannelError::invalid_input(format!(
                        "ses: the message has no {key}"
                    )));
                }
            }
        }
        let Ok(signature) = base64::engine::general_purpose::STANDARD.decode(signature) else {
            return Err(ChannelError::unauthorized(
                "ses: the Signature is not base64",
            ));
        };
        if self.trusted(cert_url).is_none() || !cert_url.ends_with(".pem") {
            return Err(ChannelError::unauthorized(format!(
                "ses: the SigningCertURL is not a certificate on https://{}/",
                self.sns_host
            )));
        }
        let certificate = self.certificate(cert_url).await?;
        let certificate = CertificateDer::from(certificate.as_slice());
        let verified = webpki::EndEntityCert::try_from(&certificate)
            .and_then(|cert| cert.verify_signature(algorithm, canonical.as_bytes(), &signature));
        if verified.is_err() {
            return Err(ChannelError::unauthorized(
                "ses: the signature does not verify with the topic's signing certificate",
            ));
        }
        let timestamp = field("Timestamp")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .ok_or_else(|| ChannelError::unauthorized("ses: the Timestamp is not a time"))?;
        check_fresh(timestamp.as_second(), now, self.max_age, "ses")?;
        Ok(Message {
            kind,
            message_id: field("MessageId").unwrap_or_default().to_owned(),
            message: field("Message").unwrap_or_default().to_owned(),
            subscribe_url: field("SubscribeURL").map(str::to_owned),
        })
    }

    /// The certificate at `url` (DER), from the cache or fetched.
    async fn certificate(&self, url: &str) -> Result<Arc<Vec<u8>>, ChannelError> {
        if let Some(der) = self
            .certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(url)
        {
            return Ok(Arc::clone(der));
        }
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(http::transport_error)?;
        if !response.status().is_success() {
            return Err(ChannelError::unavailable(format!(
                "ses: the signing certificate answered {}",
                response.status()
            )));
        }
        let pem = http::read_limited(response, MAX_CERTIFICATE_BYTES).await?;
        let der = CertificateDer::from_pem_slice(&pem).map_err(|_| {
            ChannelError::unauthorized("ses: the SigningCertURL does not serve a PEM certificate")
        })?;
        let der = Arc::new(der.as_ref().to_vec());
        let mut cache = self.certificates.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= MAX_CACHED {
            cache.clear();
        }
        cache.insert(url.to_owned(), Arc::clone(&der));
        Ok(der)
    }
}

/// SHA1withRSA (PKCS#1 v1.5), SNS's signature version 1: ring verifies it for legacy use,
/// webpki offers no such algorithm, so this adapter hands ring's to webpki.
#[derive(Debug)]
struct RsaPkcs1Sha1;

static RSA_PKCS1_SHA1: RsaPkcs1Sha1 = RsaPkcs1Sha1;

/// `sha1WithRSAEncryption` with NULL parameters, DER without the outer SEQUENCE.
const SHA1_WITH_RSA: AlgorithmIdentifier = AlgorithmIdentifier::from_slice(&[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05, 0x05, 0x00,
]);

impl SignatureVerificationAlgorithm for RsaPkcs1Sha1 {
    fn verify_signature(
        &self,
        public_key: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), InvalidSignature> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            public_key,
        )
        .verify(message, signature)
        .map_err(|_| InvalidSignature)
    }

    fn public_key_alg_id(&self) -> AlgorithmIdentifier {
        alg_id::RSA_ENCRYPTION
    }

    fn signature_alg_id(&self) -> AlgorithmIdentifier {
        SHA1_WITH_RSA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier(origins: &[&str]) -> Result<Verifier, (String, String)> {
        Verifier::new(
            "arn:aws:sns:eu-north-1:123456789012:bounces",
            &origins.iter().map(|o| o.to_string()).collect::<Vec<_>>(),
            None,
            Duration::from_secs(5),
            Duration::from_secs(900),
        )
    }

    #[test]
    fn certificates_come_only_from_the_topics_region_or_a_configured_origin() {
        let v = verifier(&["https://127.0.0.1:8443"]).expect("verifier");
        for good in [
            "https://sns.eu-north-1.amazonaws.com/SimpleNotificationService-abc.pem",
            "https://127.0.0.1:8443/cert.pem",
        ] {
            assert!(v.trusted(good).is_some(), "{good}");
        }
        for bad in [
            "http://sns.eu-north-1.amazonaws.com/x.pem",
            "https://sns.us-east-1.amazonaws.com/x.pem",
            "https://sns.eu-north-1.amazonaws.com.evil.example/x.pem",
            "https://evil.example/sns.eu-north-1.amazonaws.com/x.pem",
            "https://user:pw@sns.eu-north-1.amazonaws.com/x.pem",
            "https://sns.eu-north-1.amazonaws.com:444/x.pem",
            "https://127.0.0.1:8444/cert.pem",
            "not a url",
        ] {
            assert!(v.trusted(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn topic_arns_and_origins_are_checked_when_the_channel_is_built() {
        assert!(verifier(&[]).is_ok());
        assert!(verifier(&["http://127.0.0.1:8443"]).is_err());
        assert!(verifier(&["https://127.0.0.1:8443/path"]).is_err());
        assert!(Verifier::new("bounces", &[], None, Duration::ZERO, Duration::ZERO).is_err());
        let china = Verifier::new(
            "arn:aws-cn:sns:cn-north-1:123456789012:t",
            &[],
            None,
            Duration::ZERO,
            Duration::ZERO,
        )
        .expect("china");
        assert_eq!(china.sns_host, "sns.cn-north-1.amazonaws.com.cn");
    }

    #[tokio::test]
    async fn messages_of_another_topic_or_without_signature_fetch_nothing() {
        let v = verifier(&[]).expect("verifier");
        let now = jiff::Timestamp::now();
        let other = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-north-1:123456789012:other",
            "Message": "{}", "Timestamp": "2026-01-01T00:00:00.000Z", "SignatureVersion": "1", "Signature": "AAAA",
            "SigningCertURL": "https://sns.eu-north-1.amazonaws.com/x.pem"});
        let error = v
            .verify(other.to_string().as_bytes(), now)
            .await
            .expect_err("other topic");
        assert_eq!(
            error.kind(),
            postbud_channel::ErrorKind::Unauthorized,
            "{error}"
        );
        let unsigned = serde_json::json!({"Type": "Notification", "TopicArn": "arn:aws:sns:eu-north-1:123456789012:bounces"});
        let error = v
            .verify(unsigned.to_string().as_bytes(), now)
            .await
            .expect_err("unsigned");
        assert_eq!(
            error.kind(),
            postbud_channel::ErrorKind::InvalidInput,
            "{error}"
        );
        let elsewhere = serde_json::json!({"Type": "Notification", "MessageId": "m", "TopicArn": "arn:aws:sns:eu-north-1:123456789012:bounces",
            "Message": "{}", "Timestamp": "2026-01-01T00:00:00.000Z", "SignatureVersion": "2", "Signature": "AAAA",
            "SigningCertURL": "https://evil.example/x.pem"});
        let error = v
            .verify(elsewhere.to_string().as_bytes(), now)
            .await
            .expect_err("elsewhere");
        assert_eq!(
            error.kind(),
            postbud_channel::ErrorKind::Unauthorized,
            "{error}"
        );
    }
}
