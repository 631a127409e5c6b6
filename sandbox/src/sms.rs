//! Stand-ins for the SMS providers, under `/providers/<name>/...`. Each checks a request against
//! the provider's documented shape (path, auth, encoding, field names) and answers as the
//! provider does, errors included:
//!
//! - a destination ending in `0000` gets the provider's temporary error (throttling, 5xx);
//! - one ending in `9999` gets its permanent error (invalid number);
//! - Twilio posts a signed status callback to `StatusCallback`: `undelivered` for numbers ending
//!   in `8888`, `delivered` otherwise.

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

/// Twilio's `X-Twilio-Signature` over a callback.
pub fn twilio_signature(url: &str, params: &BTreeMap<String, String>) -> String {
    let mut mac =
        Hmac::<sha1::Sha1>::new_from_slice(TWILIO_TOKEN.as_bytes()).expect("any key length");
    mac.update(url.as_bytes());
    for (name, value) in params {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
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
        let status = if to.ends_with("8888") {
            "undelivered"
        } else {
            "delivered"
        };
        let params: BTreeMap<String, String> = [
            ("AccountSid", TWILIO_SID.to_owned()),
            ("MessageSid", message_sid.clone()),
            ("MessageStatus", status.to_owned()),
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
        let signature = twilio_signature(&callback, &params);
        let http = shared.http.clone();
        let shared2 = Arc::clone(&shared);
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            let status = http
                .post(&callback)
                .header("X-Twilio-Signature", signature)
                .form(&params)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0);
            shared2
                .state
                .lock()
                .stats
                .sms_reports
                .push((message_sid_of(&params), status));
        });
    }
    (StatusCode::CREATED, Json(json!({"sid": message_sid, "account_sid": TWILIO_SID, "to": to, "from": from, "body": text, "status": "queued", "num_segments": "1", "error_code": null}))).into_response()
}

fn message_sid_of(params: &BTreeMap<String, String>) -> String {
    params.get("MessageSid").cloned().unwrap_or_default()
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
    Json(json!({"message-count": "1", "messages": [{"to": to, "message-id": format!("{:032x}", fastrand::u128(..)), "status": "0", "remaining-balance": "10.0", "message-price": "0.05", "network": "24201", "client-ref": fields.get("client-ref")}]})).into_response()
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
    (StatusCode::CREATED, Json(json!({"id": format!("01{:024X}", fastrand::u128(..) >> 32), "to": to, "from": from, "body": text, "canceled": false, "type": "mt_text", "client_reference": body["client_reference"]}))).into_response()
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
    Json(json!({"messageId": format!("{:x}", fastrand::u64(..)), "resultCode": 1005, "description": "Queued"})).into_response()
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
    Json(json!({"id": format!("s{:032x}", fastrand::u128(..)), "status": "created", "from": from, "to": to, "message": text, "direction": "outgoing", "parts": 1})).into_response()
}
