//! Storecove's API as the access point: `POST /document_submissions` with the UBL as raw
//! document data and the idempotency GUID, status events from the pull queue
//! (`GET/DELETE /webhook_instances`, the private `queue` module), evidence from
//! `/document_submissions/{guid}/evidence`.
//!
//! Storecove processes only the first submission under an `idempotencyGuid` and answers every
//! later one with a 422 and no replay of the first answer. A submission whose answer was lost
//! (a dropped connection, a timeout) is therefore retried with the same GUID, and that 422 is
//! read as "Storecove has it": the invoice is never sent twice.

mod queue;

use std::{net::IpAddr, sync::Arc, time::Duration};

use base64::Engine as _;
use postbud_channel::{
    ChannelError, ErrorKind, EvidenceOffer, EvidenceSource, EvidenceState,
    http::{self, reqwest},
};
use postbud_ubl::identifiers::{ParticipantId, Scheme};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::provider::{AccessPoint, Submission, Submitted};

/// The configuration key that holds the API key, named in errors about it.
pub const API_KEY_KEY: &str = "api_key";

/// What the Storecove provider is configured with.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct StorecoveSettings {
    /// `https://api.storecove.com/api/v2`.
    pub api_url: url::Url,
    /// The Bearer API key.
    pub api_key: SecretString,
    /// The merchant's legal entity at Storecove.
    pub legal_entity_id: u64,
    /// Each request.
    pub timeout: Duration,
    /// How often the pull queue is read when it was empty.
    pub poll_interval: Duration,
    /// Private hosts or addresses the API may be at (the sandbox on loopback needs none).
    pub allow: Vec<String>,
}

impl StorecoveSettings {
    /// Settings with the defaults for the rest: 30 s per request, the queue read every 30 s
    /// when empty, no private address allowed.
    pub fn new(api_url: url::Url, api_key: SecretString, legal_entity_id: u64) -> Self {
        Self {
            api_url,
            api_key,
            legal_entity_id,
            timeout: Duration::from_secs(30),
            poll_interval: Duration::from_secs(30),
            allow: Vec::new(),
        }
    }
}

/// Storecove's name for a routing scheme (its `eIdentifiers[].scheme`), not the ICD code.
pub fn routing_scheme(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::NoOrg => "NO:ORG",
        Scheme::SeOrgnr => "SE:ORGNR",
        Scheme::FiOvt => "FI:OVT",
        Scheme::DkCvr => "DK:DIGST",
        Scheme::Gln => "GLN",
        // `Scheme` is non-exhaustive: a new one needs its Storecove name here.
        _ => "",
    }
}

/// The API as both halves use it: the submitting provider and the queue reader.
pub(crate) struct Api {
    /// `api_url` without its trailing `/`.
    base: String,
    key: SecretString,
    legal_entity_id: u64,
    http: reqwest::Client,
    poll_interval: Duration,
}

impl std::fmt::Debug for Api {
    // By hand: the key stays out.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storecove")
            .field("api_url", &http::redact_url(&self.base))
            .field("legal_entity_id", &self.legal_entity_id)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(path))
            .bearer_auth(self.key.expose_secret())
    }

    fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(self.url(path))
            .bearer_auth(self.key.expose_secret())
    }

    /// Sends `request` for `what`; a request that got no answer is a temporary error naming
    /// `what`.
    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ChannelError> {
        request
            .send()
            .await
            .map_err(|e| http::transport_error(e).map_message(|m| format!("Storecove {what}: {m}")))
    }

    /// The error for a refusal of `what`: 401/403 name the API key.
    fn refusal(
        &self,
        what: &str,
        response_status: reqwest::StatusCode,
        retry_after: Option<Duration>,
        body: &[u8],
    ) -> ChannelError {
        let error = http::refusal(
            response_status,
            retry_after,
            format!(
                "Storecove {what}: HTTP {response_status}: {}",
                http::excerpt(body)
            ),
        );
        if error.kind() == ErrorKind::Unauthorized {
            error
                .map_message(|m| format!("{m}: the API key was refused"))
                .with_config_key(API_KEY_KEY)
        } else {
            error
        }
    }
}

/// Storecove.
#[derive(Debug)]
pub struct Storecove {
    api: Arc<Api>,
}

impl Storecove {
    /// The provider with its settings. `api_url` must be `https://`, or `http://` on loopback;
    /// an address literal in a private range must be named in `allow`. Errors name the key
    /// and hold no secret.
    pub fn new(settings: StorecoveSettings) -> Result<Self, String> {
        let url = &settings.api_url;
        match url.scheme() {
            "https" => {}
            "http" if http::is_loopback(url) => {}
            "http" => {
                return Err(format!(
                    "api_url: `{}` is plain http, accepted only on loopback: use https://",
                    http::redact_url(url.as_str())
                ));
            }
            other => return Err(format!("api_url: scheme `{other}`: expected https")),
        }
        if !url.username().is_empty() || url.password().is_some() || url.query().is_some() {
            return Err(format!(
                "api_url: `{}` carries credentials or a query; give the key as api_key",
                http::redact_url(url.as_str())
            ));
        }
        if let Some(ip) = literal_ip(url)
            && !ip.is_loopback()
            && is_private(ip)
            && !settings
                .allow
                .iter()
                .any(|a| a.trim().parse::<IpAddr>().ok() == Some(ip))
        {
            return Err(format!(
                "api_url: {ip} is a private address; name it in `allow` if the API is really there"
            ));
        }
        let key = settings.api_key.expose_secret();
        if key.trim().is_empty() {
            return Err(format!("{API_KEY_KEY}: is empty"));
        }
        if key.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!(
                "{API_KEY_KEY}: has a space or a control character (cannot be a Bearer token)"
            ));
        }
        if settings.poll_interval < Duration::from_millis(10) {
            return Err("poll_interval: must be at least 10ms".into());
        }
        let http = http::client(settings.timeout)
            .build()
            .map_err(|e| format!("the HTTP client: {e}"))?;
        Ok(Self {
            api: Arc::new(Api {
                base: url.as_str().trim_end_matches('/').to_owned(),
                key: settings.api_key,
                legal_entity_id: settings.legal_entity_id,
                http,
                poll_interval: settings.poll_interval,
            }),
        })
    }
}

fn literal_ip(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The body of `POST /document_submissions`.
fn submission_body(
    legal_entity_id: u64,
    submission: &Submission<'_>,
) -> Result<Value, ChannelError> {
    let receiver: &ParticipantId = submission.receiver;
    let scheme = routing_scheme(receiver.scheme());
    if scheme.is_empty() {
        return Err(ChannelError::invalid_input(format!(
            "invoice {}: Storecove has no routing scheme for ICD {}",
            submission.invoice_number,
            receiver.scheme().icd()
        )));
    }
    Ok(json!({
        "legalEntityId": legal_entity_id,
        "idempotencyGuid": submission.idempotency_guid,
        "routing": {"eIdentifiers": [{"scheme": scheme, "id": receiver.value()}]},
        "document": {
            "documentType": "invoice",
            "rawDocumentData": {
                "document": base64::engine::general_purpose::STANDARD.encode(submission.ubl),
                "parse": true,
                "parseStrategy": "ubl",
            },
        },
    }))
}

/// Whether a 422 body says the idempotency GUID was used before. Storecove answers errors as a
/// list of `{source, details}`; the field is named either in `source` or in the words.
fn is_repeat(body: &[u8]) -> bool {
    // Both: the idempotency GUID is named, and the words say it was used before (a malformed
    // GUID is also "about" it, and must stay a refusal).
    let says = |text: &str| {
        let text = text.to_ascii_lowercase();
        ["already", "used", "duplicate", "processed", "exists"]
            .iter()
            .any(|w| text.contains(w))
    };
    let names = |v: &Value| -> bool {
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_ascii_lowercase();
        let words = format!("{} {}", text("details"), text("message"));
        (text("source").contains("idempotency") || words.contains("idempotency")) && says(&words)
    };
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(errors)) => errors.iter().any(names),
        Ok(Value::Object(o)) => {
            let value = Value::Object(o);
            names(&value)
                || value["errors"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(names))
        }
        _ => {
            let text = String::from_utf8_lossy(body).to_ascii_lowercase();
            text.contains("idempotency") && says(&text)
        }
    }
}

#[async_trait::async_trait]
impl AccessPoint for Storecove {
    async fn submit(&self, submission: &Submission<'_>) -> Result<Submitted, ChannelError> {
        let api = &self.api;
        let body = submission_body(api.legal_entity_id, submission)?;
        let request = api
            .http
            .post(api.url("/document_submissions"))
            .bearer_auth(api.key.expose_secret())
            .json(&body);
        let what = format!("submission of invoice {}", submission.invoice_number);
        let guid = &submission.idempotency_guid;
        // A failure after which Storecove may have the submission (this attempt's, or an
        // earlier one's) keeps the GUID as the delivery's reference: Storecove's status event
        // about it then settles the delivery, and giving up on it is for a person, never for
        // the fallback.
        let maybe_there =
            |error: ChannelError, reached: bool| match reached || submission.sent_before {
                true => error.with_reference(guid.clone()),
                false => error,
            };
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => {
                // Refused before a byte went out, Storecove cannot have it; a timeout or a
                // connection dropped after the request was sent, it may.
                let reached = !e.is_connect();
                let error =
                    http::transport_error(e).map_message(|m| format!("Storecove {what}: {m}"));
                return Err(maybe_there(error, reached));
            }
        };
        let status = response.status();
        let retry_after = http::retry_after(response.headers());
        let answer = http::read_prefix(response, http::ANSWER_LIMIT).await;
        if status.is_success() {
            let provider_id = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|v| v["guid"].as_str().map(str::to_owned));
            let detail = match &provider_id {
                Some(id) => format!("Storecove accepted submission {id} (idempotencyGuid {guid})"),
                None => format!(
                    "Storecove accepted the submission (idempotencyGuid {guid}) without naming it: {}",
                    http::excerpt(&answer)
                ),
            };
            return Ok(Submitted::new(detail, provider_id));
        }
        if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY && is_repeat(&answer) {
            return Ok(Submitted::new(
                format!(
                    "Storecove already has the submission under idempotencyGuid {guid} (an earlier attempt's answer was lost); not sent again"
                ),
                None,
            ));
        }
        if status == reqwest::StatusCode::UNPROCESSABLE_ENTITY {
            let refusal = ChannelError::invalid_input(format!(
                "Storecove refused invoice {}: HTTP 422: {}",
                submission.invoice_number,
                http::excerpt(&answer)
            ));
            // On a delivery's first attempt it is a refusal of the document or the request: the
            // same invoice meets the same refusal. After one (a retry, an operator's), it may be
            // Storecove's answer to the repeated idempotencyGuid of an attempt whose answer was
            // lost, worded otherwise than `is_repeat` knows (Storecove documents the status,
            // not the words): then neither a retry nor the fallback may send the invoice again.
            return Err(if submission.sent_before {
                refusal
                    .map_message(|m| {
                        format!(
                            "{m}; an earlier attempt under idempotencyGuid {guid} may have reached Storecove, which answers a repeated idempotencyGuid with a 422"
                        )
                    })
                    .with_outcome_unknown()
                    // Storecove's events name the idempotencyGuid: one about this submission
                    // settles the delivery.
                    .with_reference(guid.clone())
            } else {
                refusal
            });
        }
        // A 5xx may come after Storecove processed the request.
        let error = api.refusal(&what, status, retry_after, &answer);
        Err(maybe_there(error, status.is_server_error()))
    }

    async fn check(&self) -> Result<String, ChannelError> {
        let api = &self.api;
        let path = format!("/legal_entities/{}", api.legal_entity_id);
        let what = format!("legal entity {}", api.legal_entity_id);
        let response = api.send(&what, api.get(&path)).await?;
        let status = response.status();
        let retry_after = http::retry_after(response.headers());
        let answer = http::read_prefix(response, http::ANSWER_LIMIT).await;
        if status.is_success() {
            let name = serde_json::from_slice::<Value>(&answer)
                .ok()
                .and_then(|v| v["party_name"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "(no party_name)".into());
            return Ok(format!(
                "Storecove at {} knows legal entity {} ({name}); the API key is accepted",
                http::redact_url(&api.base),
                api.legal_entity_id
            ));
        }
        let error = api.refusal(&what, status, retry_after, &answer);
        Err(if status == reqwest::StatusCode::NOT_FOUND {
            error
                .map_message(|m| format!("{m}: no such legal entity in this account"))
                .with_config_key("legal_entity_id")
        } else {
            error
        })
    }

    fn evidence(&self) -> EvidenceOffer {
        EvidenceOffer::new(
            "Storecove accepted the submission (it validates and sends it over Peppol; the receiving access point's receipt comes later)",
        )
        .later([
            EvidenceState::Accepted,
            EvidenceState::Delayed,
            EvidenceState::Delivered,
            EvidenceState::Rejected,
        ])
    }

    fn evidence_source(&self) -> Option<Arc<dyn EvidenceSource>> {
        Some(Arc::new(queue::PullQueue::new(Arc::clone(&self.api))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str, key: &str) -> StorecoveSettings {
        StorecoveSettings::new(url.parse().expect("url"), key.to_owned().into(), 1)
    }

    #[test]
    fn the_url_and_key_are_checked_and_never_quoted() {
        assert!(Storecove::new(settings("https://api.storecove.com/api/v2", "k")).is_ok());
        assert!(Storecove::new(settings("http://127.0.0.1:9/api/v2", "k")).is_ok());
        for (url, key, expected) in [
            (
                "http://api.storecove.com/api/v2",
                "hunter2",
                "only on loopback",
            ),
            ("ftp://api.storecove.com/", "hunter2", "expected https"),
            ("https://u:hunter2@api.storecove.com/", "k", "credentials"),
            ("https://10.0.0.5/api/v2", "hunter2", "private address"),
            ("https://api.storecove.com/api/v2", "", "api_key: is empty"),
            (
                "https://api.storecove.com/api/v2",
                "a\nb",
                "control character",
            ),
        ] {
            let why = Storecove::new(settings(url, key)).expect_err(url);
            assert!(why.contains(expected), "{url}: {why}");
            assert!(!why.contains("hunter2"), "{why}");
        }
        let mut allowed = settings("https://10.0.0.5/api/v2", "k");
        allowed.allow = vec!["10.0.0.5".into()];
        assert!(Storecove::new(allowed).is_ok());
        let provider =
            Storecove::new(settings("https://api.storecove.com/api/v2", "hunter2")).expect("valid");
        assert!(!format!("{provider:?}").contains("hunter2"));
    }

    #[test]
    fn a_repeat_is_told_from_a_refused_document() {
        assert!(is_repeat(
            br#"[{"source":"idempotencyGuid","details":"already used"}]"#
        ));
        assert!(is_repeat(
            br#"{"errors":[{"source":"x","details":"Idempotency key used"}]}"#
        ));
        assert!(!is_repeat(
            br#"[{"source":"document","details":"BR-CO-15 failed"}]"#
        ));
        assert!(!is_repeat(b""));
        assert!(!is_repeat(
            br#"[{"source":"idempotencyGuid","details":"must be a string of 36 characters"}]"#
        ));
    }

    #[test]
    fn each_scheme_has_its_storecove_name() {
        assert_eq!(routing_scheme(Scheme::NoOrg), "NO:ORG");
        assert_eq!(routing_scheme(Scheme::SeOrgnr), "SE:ORGNR");
        assert_eq!(routing_scheme(Scheme::FiOvt), "FI:OVT");
        assert_eq!(routing_scheme(Scheme::DkCvr), "DK:DIGST");
        assert_eq!(routing_scheme(Scheme::Gln), "GLN");
    }
}
