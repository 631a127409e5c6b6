//! The Dintero endpoints.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use base64::Engine as _;
use serde_json::{Value, json};

use crate::{
    Shared,
    state::{FaultKind, Operation, Stored},
};

type Shared_ = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/accounts/{aid}/auth/token", post(token))
        .route("/v1/transactions/{id}", get(transaction))
        .route("/v1/transactions/{id}/capture", post(capture))
        .route("/v1/transactions/{id}/void", post(void))
        .route("/v1/files/{fid}", get(file_descriptor))
        .route("/v1/invoices/{file}", get(direct_pdf))
        .route("/cdn/files/{file}", get(cdn_pdf))
        .route("/v1/sessions/pay", post(crate::control::pay))
}

pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

pub(crate) fn now() -> String {
    jiff::Timestamp::now().to_string()
}

pub(crate) fn uuid() -> String {
    let r = || fastrand::u64(..);
    let hex = format!("{:016x}{:016x}", r(), r());
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Applies a status fault; returns the response to send instead, if any.
fn fault_response(kind: &Option<FaultKind>) -> Option<Response> {
    if let Some(FaultKind::Status {
        status,
        retry_after,
    }) = kind
    {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = error(status, "SANDBOX_FAULT", "injected fault");
        if let Some(seconds) = retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                seconds.to_string().parse().expect("digits"),
            );
        }
        return Some(response);
    }
    None
}

async fn slow(kind: &Option<FaultKind>) {
    if let Some(FaultKind::SlowResponse { ms }) = kind {
        tokio::time::sleep(Duration::from_millis(*ms)).await;
    }
}

pub(crate) fn authorized(shared: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let system: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| name.as_str().starts_with("dintero-system-"))
        .filter_map(|(name, value)| {
            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
        })
        .collect();
    if !system.is_empty() {
        shared.state.lock().stats.system_headers = system.into_iter().collect();
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "));
    let now = jiff::Timestamp::now().as_second() as u64;
    match bearer.and_then(|t| shared.state.lock().tokens.get(t).copied()) {
        Some(expires) if expires > now => Ok(()),
        _ => Err(error(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "Access forbidden, invalid JWT token was used",
        )),
    }
}

async fn token(
    State(shared): Shared_,
    Path(aid): Path<String>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let fault = shared.state.lock().take_fault(Operation::Token, None);
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let config = &shared.config;
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.client_id, config.client_secret))
    );
    if aid != config.account_id
        || headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            != Some(expected.as_str())
    {
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "invalid client credentials",
        );
    }
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "body must be JSON");
    };
    let audience = format!("https://api.dintero.com/v1/accounts/{}", config.account_id);
    if body.get("grant_type").and_then(Value::as_str) != Some("client_credentials")
        || body.get("audience").and_then(Value::as_str) != Some(audience.as_str())
    {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("expected grant_type client_credentials and audience {audience}"),
        );
    }
    let token = format!("sbx.{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    {
        let mut inner = shared.state.lock();
        inner.tokens.insert(
            token.clone(),
            jiff::Timestamp::now().as_second() as u64 + config.token_ttl,
        );
        inner.stats.tokens_issued += 1;
    }
    slow(&fault).await;
    Json(json!({"access_token": token, "token_type": "Bearer", "expires_in": config.token_ttl}))
        .into_response()
}

/// The transaction as a reader sees it now: late metadata hidden, pending 202 events released.
fn read(stored: &mut Stored, include_session: bool) -> Value {
    for (_, left) in stored.pending_events.iter_mut() {
        *left = left.saturating_sub(1);
    }
    let (ready, waiting): (Vec<_>, Vec<_>) = stored
        .pending_events
        .drain(..)
        .partition(|(_, left)| *left == 0);
    stored.pending_events = waiting;
    for (event, _) in ready {
        if let Some(events) = stored.transaction["events"].as_array_mut() {
            events.push(event);
        }
    }
    let mut tx = stored.transaction.clone();
    if stored.hide_metadata_gets > 0 {
        stored.hide_metadata_gets -= 1;
        if let Some(metadata) = tx["metadata"].as_object_mut() {
            metadata.retain(|k, _| !k.starts_with("kravia:"));
        }
    }
    if include_session {
        tx["session"] = stored.session.clone();
    }
    tx
}

async fn transaction(
    State(shared): Shared_,
    Path(id): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let fault = shared.state.lock().take_fault(Operation::Get, Some(&id));
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let include_session = q.iter().any(|(k, v)| k == "includes" && v == "session");
    let body = {
        let mut inner = shared.state.lock();
        let Some(stored) = inner.transactions.get_mut(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("transaction {id} not found"),
            );
        };
        read(stored, include_session)
    };
    slow(&fault).await;
    Json(body).into_response()
}

async fn capture(
    State(shared): Shared_,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let fault = shared
        .state
        .lock()
        .take_fault(Operation::Capture, Some(&id));
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "body must be JSON");
    };
    let Some(amount) = body.get("amount").and_then(Value::as_i64) else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "amount is required");
    };
    let request_id = uuid();
    let response = {
        let mut inner = shared.state.lock();
        let Some(stored) = inner.transactions.get_mut(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("transaction {id} not found"),
            );
        };
        let tx = &mut stored.transaction;
        if tx["status"] != "AUTHORIZED" {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_STATE",
                &format!("cannot capture a transaction with status {}", tx["status"]),
            );
        }
        if amount <= 0 || Some(amount) > tx["amount"].as_i64() {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_AMOUNT",
                "amount exceeds the authorized amount",
            );
        }
        let mut metadata = serde_json::Map::new();
        for key in [
            "kravia:invoice_number",
            "kravia:invoice_date",
            "kravia:invoice_due_date",
        ] {
            if let Some(v) = tx["metadata"].get(key) {
                metadata.insert(key.into(), v.clone());
            }
        }
        let event = json!({
            "id": uuid(), "event": "INITIATE_CAPTURE", "success": true, "transaction_status": "AUTHORIZED",
            "amount": amount, "request_id": request_id, "event_reference": body.get("capture_reference"),
            "created_at": now(), "created_by": shared.config.client_id, "items": body.get("items"), "metadata": metadata,
        });
        tx["updated_at"] = json!(now());
        let accepted = matches!(fault, Some(FaultKind::Accepted { .. }));
        if let Some(FaultKind::Accepted { after_gets }) = fault {
            stored.pending_events.push((event, after_gets));
        } else if let Some(events) = tx["events"].as_array_mut() {
            events.push(event);
        }
        let body = stored.transaction.clone();
        *inner.stats.captures.entry(id.clone()).or_default() += 1;
        if accepted {
            let mut r = (StatusCode::ACCEPTED, Json(body)).into_response();
            r.headers_mut()
                .insert("event-request-id", request_id.parse().expect("ascii"));
            r
        } else {
            Json(body).into_response()
        }
    };
    slow(&fault).await;
    response
}

async fn void(State(shared): Shared_, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let fault = shared.state.lock().take_fault(Operation::Void, Some(&id));
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let body = {
        let mut inner = shared.state.lock();
        let Some(stored) = inner.transactions.get_mut(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("transaction {id} not found"),
            );
        };
        let tx = &mut stored.transaction;
        if tx["status"] != "AUTHORIZED" {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_STATE",
                &format!("cannot void a transaction with status {}", tx["status"]),
            );
        }
        tx["status"] = json!("AUTHORIZATION_VOIDED");
        tx["updated_at"] = json!(now());
        if let Some(events) = tx["events"].as_array_mut() {
            events.push(json!({"id": uuid(), "event": "VOID", "success": true, "transaction_status": "AUTHORIZATION_VOIDED", "request_id": uuid(), "created_at": now()}));
        }
        let body = stored.transaction.clone();
        *inner.stats.voids.entry(id.clone()).or_default() += 1;
        body
    };
    slow(&fault).await;
    Json(body).into_response()
}

/// The bytes a transaction's PDF endpoint serves, per its `pdf_content`.
fn pdf_body(stored: &Stored) -> Response {
    let content = stored.pdf_content.as_str();
    if content == "html" {
        return (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>Not a PDF</body></html>",
        )
            .into_response();
    }
    if content == "truncated" {
        let cut = stored.pdf.len().saturating_sub(40);
        return (
            [(header::CONTENT_TYPE, "application/pdf")],
            stored.pdf[..cut].to_vec(),
        )
            .into_response();
    }
    if let Some(size) = content
        .strip_prefix("oversize:")
        .and_then(|s| s.parse::<usize>().ok())
    {
        let mut bytes = b"%PDF-1.4\n".to_vec();
        bytes.resize(size.saturating_sub(6), b' ');
        bytes.extend_from_slice(b"%%EOF\n");
        return ([(header::CONTENT_TYPE, "application/pdf")], bytes).into_response();
    }
    (
        [(header::CONTENT_TYPE, "application/pdf")],
        stored.pdf.clone(),
    )
        .into_response()
}

async fn file_descriptor(State(shared): Shared_, Path(fid): Path<String>) -> Response {
    let id = fid.strip_prefix("f-").unwrap_or(&fid).to_owned();
    let fault = shared.state.lock().take_fault(Operation::File, Some(&id));
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let inner = shared.state.lock();
    let Some(stored) = inner
        .transactions
        .get(&id)
        .filter(|s| s.pdf_shape == "descriptor")
    else {
        return error(StatusCode::NOT_FOUND, "NOT_FOUND", "file not found");
    };
    let number = stored.transaction["metadata"]["kravia:invoice_number"]
        .as_str()
        .unwrap_or("invoice");
    let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(600);
    Json(json!({
        "id": fid, "name": format!("{number}.pdf"), "mime_type": "application/pdf",
        "expires_at": expires.to_string(), "url": format!("{}/cdn/files/{fid}.pdf", shared.base),
    }))
    .into_response()
}

async fn direct_pdf(State(shared): Shared_, Path(file): Path<String>) -> Response {
    let id = file.strip_suffix(".pdf").unwrap_or(&file).to_owned();
    let fault = shared.state.lock().take_fault(Operation::File, Some(&id));
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let inner = shared.state.lock();
    match inner
        .transactions
        .get(&id)
        .filter(|s| s.pdf_shape == "direct")
    {
        Some(stored) => pdf_body(stored),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "file not found"),
    }
}

async fn cdn_pdf(State(shared): Shared_, Path(file): Path<String>) -> Response {
    let fid = file.strip_suffix(".pdf").unwrap_or(&file);
    let id = fid.strip_prefix("f-").unwrap_or(fid).to_owned();
    let fault = shared.state.lock().take_fault(Operation::Pdf, Some(&id));
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let response = {
        let inner = shared.state.lock();
        match inner.transactions.get(&id) {
            Some(stored) => pdf_body(stored),
            None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "file not found"),
        }
    };
    slow(&fault).await;
    response
}
