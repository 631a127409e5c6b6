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
    wire::{authorized, error, now, uuid},
};

type Shared_ = State<Arc<Shared>>;

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/v1/accounts/{aid}/auth/token", post(token))
        .route("/v1/transactions", get(list))
        .route("/v1/transactions/{id}", get(transaction))
        .route("/v1/admin/checkout", get(checkout_configuration))
        .route(
            "/v1/admin/session/profiles/{profile_id}",
            get(payment_profile),
        )
        .route("/v1/transactions/{id}/capture", post(capture))
        .route("/v1/transactions/{id}/void", post(void))
        .route("/v1/files/{fid}", get(file_descriptor))
        .route("/v1/invoices/{file}", get(direct_pdf))
        .route("/cdn/files/{file}", get(cdn_pdf))
        .route("/v1/sessions/pay", post(crate::control::pay))
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
            (jiff::Timestamp::now().as_second() as u64).saturating_add(config.token_ttl),
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
        // A confirmed void changes the status; a capture keeps it (Kravia stays AUTHORIZED).
        if event["event"] == "VOID"
            && event["success"] == true
            && let Some(status) = event.get("transaction_status")
        {
            stored.transaction["status"] = status.clone();
        }
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

/// The first `null` in a JSON document, by its path.
fn first_null(value: &Value, path: &str) -> Option<String> {
    match value {
        Value::Null => Some(path.to_owned()),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, v)| first_null(v, &format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            let path = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            first_null(v, &path)
        }),
        _ => None,
    }
}

/// What the 2026 schema refuses in a capture body: `amount` an integer; `items[]` with a string
/// `line_id` and an integer `amount`; optional fields of their type; no `null` anywhere.
fn check_capture_body(body: &Value) -> Result<i64, String> {
    if !body.is_object() {
        return Err("the body must be a JSON object".into());
    }
    if let Some(path) = first_null(body, "") {
        return Err(format!(
            "`{path}` is null; no field of a capture is nullable"
        ));
    }
    let amount = body["amount"]
        .as_i64()
        .ok_or("`amount` is required and must be an integer (minor units)")?;
    if body
        .get("capture_reference")
        .is_some_and(|r| !r.is_string())
    {
        return Err("`capture_reference` must be a string".into());
    }
    if let Some(items) = body.get("items") {
        let items = items.as_array().ok_or("`items` must be an array")?;
        for (i, item) in items.iter().enumerate() {
            if item["line_id"].as_str().is_none_or(str::is_empty) {
                return Err(format!(
                    "`items[{i}].line_id` is required and must be a string"
                ));
            }
            if item["amount"].as_i64().is_none() {
                return Err(format!(
                    "`items[{i}].amount` is required and must be an integer"
                ));
            }
            for (key, ok) in [
                (
                    "quantity",
                    item.get("quantity").is_none_or(Value::is_number),
                ),
                ("vat", item.get("vat").is_none_or(Value::is_number)),
                (
                    "vat_amount",
                    item.get("vat_amount").is_none_or(|v| v.as_i64().is_some()),
                ),
                ("id", item.get("id").is_none_or(Value::is_string)),
                (
                    "description",
                    item.get("description").is_none_or(Value::is_string),
                ),
            ] {
                if !ok {
                    return Err(format!("`items[{i}].{key}` has the wrong type"));
                }
            }
        }
    }
    if let Some(metadata) = body.get("metadata") {
        let metadata = metadata.as_object().ok_or("`metadata` must be an object")?;
        if let Some(key) = metadata.keys().find(|k| !k.starts_with("ext_")) {
            return Err(format!(
                "`metadata.{key}`: metadata keys must start with ext_"
            ));
        }
    }
    Ok(amount)
}

/// A 202: the transaction as it was, `event-request-id`, and the completing event queued with
/// `correlation_request_id` set to the request id.
fn accepted(stored: &mut Stored, mut event: Value, after_gets: u32, request_id: &str) -> Response {
    event["request_id"] = json!(uuid());
    event["correlation_request_id"] = json!(request_id);
    let body = stored.transaction.clone();
    stored.pending_events.push((event, after_gets));
    let mut r = (StatusCode::ACCEPTED, Json(body)).into_response();
    r.headers_mut()
        .insert("event-request-id", request_id.parse().expect("ascii"));
    r
}

fn failed_event(mut event: Value, operation: &str) -> Value {
    event["success"] = json!(false);
    event["error"] = json!({"code": "SANDBOX_DECLINED", "message": format!("the {operation} was declined by the payment provider")});
    event
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
    let amount = match check_capture_body(&body) {
        Ok(amount) => amount,
        Err(message) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
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
        let fail = matches!(fault, Some(FaultKind::Accepted { fail: true, .. }));
        let mut metadata = serde_json::Map::new();
        for key in [
            "kravia:invoice_number",
            "kravia:invoice_date",
            "kravia:invoice_due_date",
        ] {
            if let Some(v) = tx["metadata"]
                .get(key)
                .or_else(|| authorize_metadata(tx).get(key))
            {
                metadata.insert(key.into(), v.clone());
            }
        }
        if stored.pdf_changes_at_capture && !fail {
            // Payment details are added at capture: a final due date and new PDF bytes.
            let today = jiff::Zoned::now().date();
            let due = today
                .checked_add(jiff::Span::new().days(14))
                .unwrap_or(today);
            metadata.insert("kravia:invoice_due_date".into(), json!(due.to_string()));
        }
        let mut event = json!({
            "id": uuid(), "event": "INITIATE_CAPTURE", "success": true, "transaction_status": "AUTHORIZED",
            "amount": amount, "request_id": request_id, "event_reference": body.get("capture_reference"),
            "created_at": now(), "created_by": shared.config.client_id, "items": body.get("items"), "metadata": metadata,
        });
        if body.get("items").is_none()
            && let Some(event) = event.as_object_mut()
        {
            event.remove("items");
        }
        if fail {
            event = failed_event(event, "capture");
        }
        tx["updated_at"] = json!(now());
        if stored.pdf_changes_at_capture && !fail {
            let mut after = stored.transaction.clone();
            if let Some(events) = after["events"].as_array_mut() {
                events.push(event.clone());
            }
            let lines = crate::control::invoice_lines(
                &after,
                Some("Payment details: account 1234.56.78903, KID 0012345678"),
            );
            stored.pdf = crate::pdf::invoice_pdf(&lines);
        }
        let response = match fault {
            Some(FaultKind::Accepted { after_gets, .. }) => {
                accepted(stored, event, after_gets, &request_id)
            }
            _ => {
                if let Some(events) = stored.transaction["events"].as_array_mut() {
                    events.push(event);
                }
                Json(stored.transaction.clone()).into_response()
            }
        };
        if !fail {
            *inner.stats.captures.entry(id.clone()).or_default() += 1;
        }
        response
    };
    slow(&fault).await;
    response
}

/// Metadata of the AUTHORIZE event, where Kravia puts the invoice facts.
fn authorize_metadata(tx: &Value) -> &Value {
    tx["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["event"] == "AUTHORIZE"))
        .map_or(&Value::Null, |e| &e["metadata"])
}

async fn void(State(shared): Shared_, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let fault = shared.state.lock().take_fault(Operation::Void, Some(&id));
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let response = {
        let mut inner = shared.state.lock();
        let Some(stored) = inner.transactions.get_mut(&id) else {
            return error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("transaction {id} not found"),
            );
        };
        if stored.transaction["status"] != "AUTHORIZED" {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_STATE",
                &format!(
                    "cannot void a transaction with status {}",
                    stored.transaction["status"]
                ),
            );
        }
        let request_id = uuid();
        let event = json!({"id": uuid(), "event": "VOID", "success": true, "transaction_status": "AUTHORIZATION_VOIDED", "request_id": request_id, "created_at": now()});
        let (response, voided) = match fault {
            Some(FaultKind::Accepted { after_gets, fail }) => {
                let event = if fail {
                    failed_event(event, "void")
                } else {
                    event
                };
                // The accepted request's own event: `event-request-id` is "the request_id of the
                // event that was accepted for processing"; the VOID completing it comes later,
                // correlated to it.
                if let Some(events) = stored.transaction["events"].as_array_mut() {
                    events.push(json!({"id": uuid(), "event": "INITIATE_VOID", "success": true, "transaction_status": "AUTHORIZED", "request_id": request_id, "created_at": now()}));
                }
                (accepted(stored, event, after_gets, &request_id), !fail)
            }
            _ => {
                let tx = &mut stored.transaction;
                tx["status"] = json!("AUTHORIZATION_VOIDED");
                tx["updated_at"] = json!(now());
                if let Some(events) = tx["events"].as_array_mut() {
                    events.push(event);
                }
                (Json(stored.transaction.clone()).into_response(), true)
            }
        };
        if voided {
            *inner.stats.voids.entry(id.clone()).or_default() += 1;
        }
        response
    };
    slow(&fault).await;
    response
}

/// `GET /v1/transactions`: newest first, filtered as Dintero documents, `limit` 1-100 (default
/// 10), `starting_after` the last id of the previous page.
async fn list(
    State(shared): Shared_,
    Query(q): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let fault = shared.state.lock().take_fault(Operation::List, None);
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let one = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let limit = match one("limit").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                "limit must be 1-100",
            );
        }
    };
    let created_gte = match one("created_at.gte").map(str::parse::<jiff::Timestamp>) {
        None => None,
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                &format!("created_at.gte: {e}"),
            );
        }
    };
    let statuses: Vec<&str> = q
        .iter()
        .filter(|(k, _)| k == "status")
        .map(|(_, v)| v.as_str())
        .collect();
    let page = {
        let inner = shared.state.lock();
        let after = match one("starting_after") {
            None => u64::MAX,
            Some(id) => match inner.transactions.get(id) {
                Some(stored) => stored.seq,
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "BAD_REQUEST",
                        &format!("starting_after: no transaction {id}"),
                    );
                }
            },
        };
        let mut found: Vec<&Stored> = inner
            .transactions
            .values()
            .filter(|s| s.seq < after)
            .filter(|s| {
                let tx = &s.transaction;
                let field = |name: &str| tx[name].as_str().unwrap_or_default();
                (statuses.is_empty() || statuses.contains(&field("status")))
                    && one("payment_product").is_none_or(|p| p == field("payment_product"))
                    && one("payment_product_type")
                        .is_none_or(|p| p == field("payment_product_type"))
                    && one("merchant_reference").is_none_or(|r| r == field("merchant_reference"))
                    && created_gte.is_none_or(|gte| {
                        field("created_at")
                            .parse::<jiff::Timestamp>()
                            .is_ok_and(|t| t >= gte)
                    })
            })
            .collect();
        found.sort_by_key(|s| std::cmp::Reverse(s.seq));
        let page: Vec<Value> = found
            .into_iter()
            .take(limit)
            .map(|s| s.transaction.clone())
            .collect();
        page
    };
    slow(&fault).await;
    Json(page).into_response()
}

/// `GET /v1/admin/checkout`: the account's checkout configuration, where `payment_options` live.
async fn checkout_configuration(State(shared): Shared_, headers: HeaderMap) -> Response {
    let fault = shared.state.lock().take_fault(Operation::Admin, None);
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let configuration = match &shared.state.lock().checkout {
        Value::Null => json!({"payment_options": []}),
        configured => configured.clone(),
    };
    slow(&fault).await;
    Json(json!({"configuration": configuration, "updated_at": now()})).into_response()
}

/// `GET /v1/admin/session/profiles/{profile_id}`.
async fn payment_profile(
    State(shared): Shared_,
    Path(profile_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let fault = shared
        .state
        .lock()
        .take_fault(Operation::Admin, Some(&profile_id));
    if let Err(r) = authorized(&shared, &headers) {
        return r;
    }
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let profile = shared.state.lock().profiles.get(&profile_id).cloned();
    slow(&fault).await;
    match profile {
        Some(profile) => Json(profile).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("payment profile {profile_id} not found"),
        ),
    }
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
    let response = {
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
    };
    slow(&fault).await;
    response
}

async fn direct_pdf(State(shared): Shared_, Path(file): Path<String>) -> Response {
    let id = file.strip_suffix(".pdf").unwrap_or(&file).to_owned();
    let fault = shared.state.lock().take_fault(Operation::File, Some(&id));
    if let Some(r) = fault_response(&fault) {
        return r;
    }
    let response = {
        let inner = shared.state.lock();
        match inner
            .transactions
            .get(&id)
            .filter(|s| s.pdf_shape == "direct")
        {
            Some(stored) => pdf_body(stored),
            None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "file not found"),
        }
    };
    slow(&fault).await;
    response
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
