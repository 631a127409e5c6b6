//! Stand-ins for the SMS providers, under `/providers/<name>/...`. Each checks a request against
//! the provider's documented shape (path, auth, encoding, field names) and answers as the
//! provider does, errors included:
//!
//! - a destination ending in `0000` gets the provider's temporary error (throttling, 5xx);
//! - one ending in `9999` gets its permanent error (invalid number);
//! - each posts its delivery report as the provider does, signed the provider's way
//!   ([`Reports`] says how, and how late and how often): a failure for numbers ending in `8888`
//!   (Twilio `undelivered` 30003, Sinch `FAILED` 402, Vonage `failed` err-code 3, LINK Mobility
//!   2104, 46elks `failed`), `delivered` otherwise. Twilio posts to `StatusCallback` (signed with
//!   the auth token or a SharedKey), Sinch to `callback_url` (per recipient or the batch's
//!   summary, as asked, with `X-Sinch-Webhook-Signature`), Vonage to `callback` (a `sig`ned
//!   form or JSON), LINK Mobility to the URL registered for the gate ([`Reports::link_gate_url`]),
//!   46elks to `whendelivered`.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Shared;

/// Twilio account of the stand-in.
pub const TWILIO_SID: &str = "AC00000000000000000000000000000000";
/// Twilio auth token of the stand-in.
pub const TWILIO_TOKEN: &str = "twilio-auth-token";
/// Vonage key and secret.
pub const VONAGE_KEY: (&str, &str) = ("vonage-key", "vonage-secret");
/// Sinch service plan and token.
pub const SINCH_PLAN: (&str, &str) = ("sandbox-plan", "sinch-token");
/// LINK Mobility user and password.
pub const LINK_USER: (&str, &str) = ("link-user", "link-pass");
/// 46elks user and password.
pub const ELKS_USER: (&str, &str) = ("elks-user", "elks-pass");
/// Twilio SharedKey of the stand-in: its id and secret.
pub const TWILIO_SHARED_KEY: (&str, &str) = (
    "webhooks_sharedkey_sandbox0000000000000000",
    "twilio-shared-key-secret",
);
/// Sinch's callback secret (signs `X-Sinch-Webhook-Signature`).
pub const SINCH_WEBHOOK_SECRET: &str = "sinch-webhook-secret";
/// Vonage's signature secret (signs `sig`).
pub const VONAGE_SIGNATURE_SECRET: &str = "vonage-signature-secret";
/// LINK Mobility's delivery report gate of the stand-in.
pub const LINK_GATE: &str = "sandbox-gate";

/// How the stand-ins send delivery reports ([`crate::Sandbox::set_sms_reports`]).
#[derive(Debug, Clone)]
pub struct Reports {
    /// Twilio: signed with the auth token (`None`), or with the SharedKey [`TWILIO_SHARED_KEY`]
    /// and this algorithm (`HMAC_SHA1` or `HMAC_SHA256`).
    pub twilio_shared_key: Option<&'static str>,
    /// Vonage's signature method: `md5hash`, `md5`, `sha1`, `sha256` or `sha512`.
    pub vonage_method: &'static str,
    /// Vonage posts JSON (its "POST-JSON" method) rather than a form.
    pub vonage_json: bool,
    /// Where LINK Mobility posts the reports of gate [`LINK_GATE`] (registered with its support).
    pub link_gate_url: Option<String>,
    /// How long after the message a report is sent.
    pub delay: std::time::Duration,
    /// Each report is sent this many times (a provider's retry: signed anew, same content).
    pub copies: u32,
}

impl Default for Reports {
    fn default() -> Self {
        Self {
            twilio_shared_key: None,
            vonage_method: "md5hash",
            vonage_json: false,
            link_gate_url: None,
            delay: std::time::Duration::from_millis(30),
            copies: 1,
        }
    }
}

/// One message a stand-in accepted.
#[derive(Debug, Clone, Serialize)]
pub struct Sms {
    /// `twilio`, `vonage`, ...
    pub provider: String,
    /// Destination as sent.
    pub to: String,
    /// Sender as sent.
    pub from: String,
    /// The text.
    pub text: String,
    /// Client reference, where the provider has one.
    pub reference: Option<String>,
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/providers/twilio/2010-04-01/Accounts/{sid}/Messages.json",
            post(twilio),
        )
        .route("/providers/vonage/sms/json", post(vonage))
        .route("/providers/sinch/xms/v1/{plan}/batches", post(sinch))
        .route("/providers/linkmobility/sms/send", post(linkmobility))
        .route("/providers/46elks/a1/sms", post(elks))
}

fn basic(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        == Some(expected.as_str())
}

fn form(headers: &HeaderMap, body: &[u8]) -> Result<BTreeMap<String, String>, Response> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected a form body, got `{content_type}`"),
        )
            .into_response());
    }
    Ok(url::form_urlencoded::parse(body).into_owned().collect())
}

fn e164(to: &str) -> bool {
    to.strip_prefix('+')
        .is_some_and(|d| (8..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()))
}

fn record(shared: &Shared, sms: Sms) {
    shared.state.lock().stats.sms.push(sms);
}

/// Twilio's `X-Twilio-Signature` over a callback, with the auth token.
pub fn twilio_signature(url: &str, params: &BTreeMap<String, String>) -> String {
    twilio_signature_with(TWILIO_TOKEN, "HMAC_SHA1", url, params)
}

/// Twilio's `X-Twilio-Signature` with `secret` (the auth token or a SharedKey's secret) and
/// `algorithm` (`HMAC_SHA1` or `HMAC_SHA256`): the URL, then each parameter's name and value,
/// sorted by name.
pub fn twilio_signature_with(
    secret: &str,
    algorithm: &str,
    url: &str,
    params: &BTreeMap<String, String>,
) -> String {
    let mut signed = url.to_owned();
    for (name, value) in params {
        signed.push_str(name);
        signed.push_str(value);
    }
    let digest = if algorithm == "HMAC_SHA256" {
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(signed.as_bytes());
        mac.finalize().into_bytes().to_vec()
    } else {
        let mut mac =
            Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
        mac.update(signed.as_bytes());
        mac.finalize().into_bytes().to_vec()
    };
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// Sinch's signature headers for `body`: `X-Sinch-Webhook-Signature` = base64 HMAC-SHA256 of
/// `body.nonce.timestamp` with `secret`, and the nonce and timestamp (Unix seconds) headers.
pub fn sinch_headers(
    secret: &str,
    body: &[u8],
    nonce: &str,
    timestamp: i64,
) -> Vec<(&'static str, String)> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    mac.update(format!(".{nonce}.{timestamp}").as_bytes());
    vec![
        (
            "x-sinch-webhook-signature",
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
        ),
        ("x-sinch-webhook-signature-nonce", nonce.to_owned()),
        ("x-sinch-webhook-signature-timestamp", timestamp.to_string()),
    ]
}

/// Vonage's `sig` over `params` (any `sig` left out) with `secret` and `method` (`md5hash`:
/// MD5 of the string and the secret; `md5`, `sha1`, `sha256`, `sha512`: HMAC): each parameter
/// sorted by name as `&name=value`, `&` and `=` in values replaced by `_`; hex.
pub fn vonage_signature(secret: &str, method: &str, params: &BTreeMap<String, String>) -> String {
    let signed: String = params
        .iter()
        .filter(|(name, _)| *name != "sig")
        .map(|(name, value)| format!("&{name}={}", value.replace(['&', '='], "_")))
        .collect();
    fn hmac<M: Mac + hmac::digest::KeyInit>(secret: &str, signed: &str) -> String {
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(secret.as_bytes())
            .expect("any key length");
        mac.update(signed.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
    match method {
        "md5" => hmac::<Hmac<md5::Md5>>(secret, &signed),
        "sha1" => hmac::<Hmac<sha1::Sha1>>(secret, &signed),
        "sha256" => hmac::<Hmac<sha2::Sha256>>(secret, &signed),
        "sha512" => hmac::<Hmac<sha2::Sha512>>(secret, &signed),
        _ => {
            use md5::Digest as _;
            hex::encode(md5::Md5::digest(format!("{signed}{secret}").as_bytes()))
        }
    }
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Sends a report `copies` times after `delay`, each copy built (and signed) when it is sent and
/// sent again on a 5xx or no answer, and records the last status each copy got under
/// `message_id`.
fn send_report(
    shared: &Arc<Shared>,
    message_id: String,
    build: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + 'static,
) {
    let reports = shared.state.lock().sms_reports.clone();
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        tokio::time::sleep(reports.delay).await;
        for _ in 0..reports.copies.max(1) {
            // A 5xx or no answer is retried, as the providers retry (Sinch: 5 s doubling).
            let mut status = 0;
            for attempt in 0..6 {
                status = build(&shared.http)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                if status != 0 && status < 500 {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt)).await;
            }
            shared
                .state
                .lock()
                .stats
                .sms_reports
                .push((message_id.clone(), status));
        }
    });
}

fn failed(to: &str) -> bool {
    to.ends_with("8888")
}

async fn twilio(
    State(shared): State<Arc<Shared>>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let error = |status: StatusCode, code: u32, message: &str| {
        (status, Json(json!({"code": code, "message": message, "status": status.as_u16(), "more_info": format!("https://www.twilio.com/docs/errors/{code}")}))).into_response()
    };
    if sid != TWILIO_SID || !basic(&headers, TWILIO_SID, TWILIO_TOKEN) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let fields = match form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (Some(to), Some(text)) = (fields.get("To"), fields.get("Body")) else {
        return error(
            StatusCode::BAD_REQUEST,
            21604,
            "A 'To' phone number and a 'Body' are required.",
        );
    };
    let Some(from) = fields.get("From") else {
        return error(
            StatusCode::BAD_REQUEST,
            21603,
            "A 'From' phone number is required.",
        );
    };
    if !e164(to) || to.ends_with("9999") {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    if to.ends_with("0000") {
        return error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
    }
    if text.chars().count() > 1600 {
        return error(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    let message_sid = format!("SM{:032x}", fastrand::u128(..));
    record(
        &shared,
        Sms {
            provider: "twilio".into(),
            to: to.clone(),
            from: from.clone(),
            text: text.clone(),
            reference: None,
        },
    );
    if let Some(callback) = fields.get("StatusCallback").cloned() {
        let status = if failed(to) {
            "undelivered"
        } else {
            "delivered"
        };
        let params: BTreeMap<String, String> = [
            ("AccountSid", TWILIO_SID.to_owned()),
            ("ApiVersion", "2010-04-01".to_owned()),
            ("MessageSid", message_sid.clone()),
            ("SmsSid", message_sid.clone()),
            ("MessageStatus", status.to_owned()),
            ("SmsStatus", status.to_owned()),
            ("To", to.clone()),
            ("From", from.clone()),
            (
                "ErrorCode",
                if status == "delivered" {
                    String::new()
                } else {
                    "30003".into()
                },
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let shared_key = shared.state.lock().sms_reports.twilio_shared_key;
        send_report(&shared, message_sid.clone(), move |http| {
            let request = http.post(&callback).form(&params);
            match shared_key {
                Some(algorithm) => request
                    .header(
                        "X-Twilio-Signature",
                        twilio_signature_with(TWILIO_SHARED_KEY.1, algorithm, &callback, &params),
                    )
                    .header(
                        "X-Twilio-Webhooks-Signature-Settings",
                        format!("key={},algorithm={algorithm}", TWILIO_SHARED_KEY.0),
                    ),
                None => request.header("X-Twilio-Signature", twilio_signature(&callback, &params)),
            }
        });
    }
    (StatusCode::CREATED, Json(json!({"sid": message_sid, "account_sid": TWILIO_SID, "to": to, "from": from, "body": text, "status": "queued", "num_segments": "1", "error_code": null}))).into_response()
}

async fn vonage(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let fields = match form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let answer = |status: &str, text: &str, to: &str| {
        Json(json!({"message-count": "1", "messages": [{"to": to, "status": status, "error-text": text}]})).into_response()
    };
    if fields.get("api_key").map(String::as_str) != Some(VONAGE_KEY.0)
        || fields.get("api_secret").map(String::as_str) != Some(VONAGE_KEY.1)
    {
        return answer("4", "Bad Credentials", "");
    }
    let (Some(to), Some(from), Some(text)) =
        (fields.get("to"), fields.get("from"), fields.get("text"))
    else {
        return answer("2", "Missing from, to or text", "");
    };
    if to.starts_with('+') || !to.bytes().all(|b| b.is_ascii_digit()) || to.ends_with("9999") {
        return answer("3", "Invalid to number", to);
    }
    if to.ends_with("0000") {
        return answer(
            "1",
            "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
            to,
        );
    }
    let unicode = fields.get("type").map(String::as_str) == Some("unicode");
    if !unicode
        && !text.is_ascii()
        && text
            .chars()
            .any(|c| !"æøåÆØÅäöÄÖéÉüÜ".contains(c) && !c.is_ascii())
    {
        return answer(
            "3",
            "Text has characters outside GSM-7; send with type=unicode",
            to,
        );
    }
    record(
        &shared,
        Sms {
            provider: "vonage".into(),
            to: to.clone(),
            from: from.clone(),
            text: text.clone(),
            reference: fields.get("client-ref").cloned(),
        },
    );
    let message_id = format!("{:032x}", fastrand::u128(..));
    if let Some(callback) = fields.get("callback").cloned() {
        let (status, code) = if failed(to) {
            ("failed", "3")
        } else {
            ("delivered", "0")
        };
        let mut receipt: BTreeMap<String, String> = [
            ("msisdn", to.as_str()),
            ("to", from.as_str()),
            ("network-code", "24201"),
            ("messageId", message_id.as_str()),
            ("price", "0.05000000"),
            ("status", status),
            ("scts", "2612061200"),
            ("err-code", code),
            ("api-key", VONAGE_KEY.0),
            ("message-timestamp", "2026-12-06 12:00:00"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(reference) = fields.get("client-ref") {
            receipt.insert("client-ref".into(), reference.clone());
        }
        let reports = shared.state.lock().sms_reports.clone();
        send_report(&shared, message_id.clone(), move |http| {
            // Each copy is signed anew, as Vonage signs each request.
            let mut signed = receipt.clone();
            signed.insert("timestamp".into(), now().to_string());
            signed.insert("nonce".into(), format!("{:016x}", fastrand::u64(..)));
            let sig = vonage_signature(VONAGE_SIGNATURE_SECRET, reports.vonage_method, &signed);
            signed.insert("sig".into(), sig);
            let request = http.post(&callback);
            if reports.vonage_json {
                request.json(&signed)
            } else {
                request.form(&signed)
            }
        });
    }
    Json(json!({"message-count": "1", "messages": [{"to": to, "message-id": message_id, "status": "0", "remaining-balance": "10.0", "message-price": "0.05", "network": "24201", "client-ref": fields.get("client-ref")}]})).into_response()
}

async fn sinch(
    State(shared): State<Arc<Shared>>,
    Path(plan): Path<String>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let error = |status: StatusCode, code: &str, text: &str| {
        (status, Json(json!({"code": code, "text": text}))).into_response()
    };
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        == Some(&format!("Bearer {}", SINCH_PLAN.1));
    if plan != SINCH_PLAN.0 || !bearer {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Invalid service plan or token",
        );
    }
    let Some(Json(body)) = body else {
        return error(
            StatusCode::BAD_REQUEST,
            "syntax_malformed_json",
            "The body is not JSON",
        );
    };
    let to: Vec<String> = body["to"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let (Some(from), Some(text)) = (body["from"].as_str(), body["body"].as_str()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "syntax_constraint_violation",
            "from and body are required",
        );
    };
    if to.is_empty() || to.len() > 1000 || text.chars().count() > 2000 {
        return error(
            StatusCode::BAD_REQUEST,
            "syntax_constraint_violation",
            "to must hold 1 to 1000 numbers; body at most 2000 characters",
        );
    }
    if to.iter().any(|t| !e164(t) || t.ends_with("9999")) {
        return error(
            StatusCode::BAD_REQUEST,
            "syntax_invalid_parameter_format",
            "Invalid recipient number",
        );
    }
    if to.iter().any(|t| t.ends_with("0000")) {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service_unavailable",
            "Try again later",
        );
    }
    let report = body["delivery_report"].as_str().unwrap_or("none");
    if ![
        "none",
        "summary",
        "full",
        "per_recipient",
        "per_recipient_final",
    ]
    .contains(&report)
    {
        return error(
            StatusCode::BAD_REQUEST,
            "syntax_invalid_parameter_format",
            "delivery_report must be none, summary, full, per_recipient or per_recipient_final",
        );
    }
    record(
        &shared,
        Sms {
            provider: "sinch".into(),
            to: to.join(","),
            from: from.into(),
            text: text.into(),
            reference: body["client_reference"].as_str().map(str::to_owned),
        },
    );
    let batch_id = format!("01{:024X}", fastrand::u128(..) >> 32);
    if let (Some(callback), true) = (body["callback_url"].as_str(), report != "none") {
        let reference = body["client_reference"].clone();
        let per_recipient = report.starts_with("per_recipient");
        let reports: Vec<Value> = if per_recipient {
            to.iter()
                .map(|recipient| {
                    let (status, code) = if failed(recipient) { ("FAILED", 402) } else { ("DELIVERED", 0) };
                    json!({"type": "recipient_delivery_report_sms", "batch_id": batch_id, "recipient": recipient,
                        "code": code, "status": status, "at": "2026-12-06T12:00:00.000Z",
                        "operator_status_at": "2026-12-06T11:59:58.000Z", "client_reference": reference})
                })
                .collect()
        } else {
            let mut statuses: BTreeMap<&str, (i64, Vec<&String>)> = BTreeMap::new();
            for recipient in &to {
                let (status, code) = if failed(recipient) {
                    ("FAILED", 402)
                } else {
                    ("DELIVERED", 0)
                };
                let entry = statuses.entry(status).or_insert((code, Vec::new()));
                entry.1.push(recipient);
            }
            let statuses: Vec<Value> = statuses
                .into_iter()
                .map(|(status, (code, recipients))| {
                    let mut entry =
                        json!({"code": code, "status": status, "count": recipients.len()});
                    if report == "full" {
                        entry["recipients"] = json!(recipients);
                    }
                    entry
                })
                .collect();
            vec![
                json!({"type": "delivery_report_sms", "batch_id": batch_id, "total_message_count": to.len(),
                "statuses": statuses, "client_reference": reference}),
            ]
        };
        for report in reports {
            let callback = callback.to_owned();
            let body = serde_json::to_vec(&report).expect("json");
            send_report(&shared, batch_id.clone(), move |http| {
                let nonce = format!("{:032x}", fastrand::u128(..));
                let mut request = http
                    .post(&callback)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body.clone());
                for (name, value) in sinch_headers(SINCH_WEBHOOK_SECRET, &body, &nonce, now()) {
                    request = request.header(name, value);
                }
                request
            });
        }
    }
    (StatusCode::CREATED, Json(json!({"id": batch_id, "to": to, "from": from, "body": text, "canceled": false, "type": "mt_text", "delivery_report": report, "client_reference": body["client_reference"]}))).into_response()
}

async fn linkmobility(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let error = |status: StatusCode, code: u32, text: &str| {
        (
            status,
            Json(json!({"resultCode": code, "description": text})),
        )
            .into_response()
    };
    if !basic(&headers, LINK_USER.0, LINK_USER.1) {
        return error(StatusCode::UNAUTHORIZED, 1102, "Authentication failed");
    }
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, 1101, "Malformed request");
    };
    for field in [
        "source",
        "destination",
        "userData",
        "platformId",
        "platformPartnerId",
    ] {
        if !body[field].is_string() {
            return error(
                StatusCode::BAD_REQUEST,
                1101,
                &format!("`{field}` is required"),
            );
        }
    }
    let to = body["destination"].as_str().unwrap_or_default();
    let text = body["userData"].as_str().unwrap_or_default();
    if text.chars().any(|c| c.len_utf8() == 4) {
        return error(
            StatusCode::BAD_REQUEST,
            1104,
            "userData holds 4-byte UTF-8 characters, which cannot be delivered",
        );
    }
    if !e164(to) || to.ends_with("9999") {
        return error(StatusCode::BAD_REQUEST, 1106, "Invalid destination");
    }
    if to.ends_with("0000") {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            1009,
            "Temporarily unavailable",
        );
    }
    record(
        &shared,
        Sms {
            provider: "linkmobility".into(),
            to: to.into(),
            from: body["source"].as_str().unwrap_or_default().into(),
            text: text.into(),
            reference: body["refId"].as_str().map(str::to_owned),
        },
    );
    let message_id = format!("{:x}", fastrand::u64(..));
    let gate_url = shared.state.lock().sms_reports.link_gate_url.clone();
    let to_gate = body["deliveryReportGates"]
        .as_array()
        .is_some_and(|gates| gates.iter().any(|g| g == LINK_GATE));
    if let (Some(url), true) = (gate_url, to_gate) {
        let code = if failed(to) { 2104 } else { 1001 };
        let report = json!({"refId": body["refId"], "id": message_id, "operator": "no.telenor",
            "sentTimestamp": "2026-12-06T11:59:58Z", "timestamp": "2026-12-06T12:00:00Z",
            "resultCode": code, "operatorResultCode": "2", "segments": 1,
            "gateCustomParameters": {}, "customParameters": {}});
        send_report(&shared, message_id.clone(), move |http| {
            http.post(&url).json(&report)
        });
    }
    Json(json!({"messageId": message_id, "resultCode": 1005, "description": "Queued"}))
        .into_response()
}

async fn elks(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if !basic(&headers, ELKS_USER.0, ELKS_USER.1) {
        return (StatusCode::UNAUTHORIZED, "Requires authentication").into_response();
    }
    let fields = match form(&headers, &body) {
        Ok(f) => f,
        Err(r) => return r,
    };
    let (Some(from), Some(to), Some(text)) =
        (fields.get("from"), fields.get("to"), fields.get("message"))
    else {
        return (StatusCode::BAD_REQUEST, "Missing key from, to or message").into_response();
    };
    let alphanumeric_ok = from.len() <= 11 && from.chars().all(|c| c.is_ascii_alphanumeric());
    if !alphanumeric_ok && !e164(from) {
        return (
            StatusCode::BAD_REQUEST,
            "Invalid from: an E.164 number or at most 11 letters and digits",
        )
            .into_response();
    }
    if !e164(to) || to.ends_with("9999") {
        return (StatusCode::FORBIDDEN, "Invalid to number").into_response();
    }
    if to.ends_with("0000") {
        return (StatusCode::TOO_MANY_REQUESTS, "Too many requests").into_response();
    }
    record(
        &shared,
        Sms {
            provider: "46elks".into(),
            to: to.clone(),
            from: from.clone(),
            text: text.clone(),
            reference: None,
        },
    );
    let id = format!("s{:032x}", fastrand::u128(..));
    if let Some(url) = fields.get("whendelivered").cloned() {
        let status = if failed(to) { "failed" } else { "delivered" };
        let form = [
            ("id", id.clone()),
            ("status", status.to_owned()),
            ("delivered", "2026-12-06T12:00:00.000000".to_owned()),
        ];
        send_report(&shared, id.clone(), move |http| http.post(&url).form(&form));
    }
    Json(json!({"id": id, "status": "created", "from": from, "to": to, "message": text, "direction": "outgoing", "parts": 1})).into_response()
}
