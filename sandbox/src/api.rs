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
    push::{self, Change},
    state::{FaultKind, Operation, Stored},
    wire::{authorized, error, int32, now, uuid},
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
        .route("/v1/sessions/pay", post(crate::control::pay))
        .route(
            "/v1/accounts/{aid}/hooks/subscriptions",
            post(push::create_subscription).get(push::list_subscriptions),
        )
        .route(
            "/v1/accounts/{aid}/hooks/subscriptions/{id}",
            axum::routing::delete(push::delete_subscription),
        )
}

/// Applies a status fault; returns the response to send instead, if any.
pub(crate) fn fault_response(kind: &Option<FaultKind>) -> Option<Response> {
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

/// The answer to a request that was carried out, as the fault it took lets it through: held
/// back (`slow_response`), replaced by an error status (`status_after_applying`), or never sent
/// (`drop_after_applying`). In each the operation has happened; only its answer is lost.
pub(crate) async fn finish(kind: &Option<FaultKind>, response: Response) -> Response {
    match kind {
        Some(FaultKind::SlowResponse { ms }) => {
            tokio::time::sleep(Duration::from_millis(*ms)).await;
            response
        }
        Some(FaultKind::StatusAfterApplying { status }) => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            error(
                status,
                "SANDBOX_FAULT",
                "injected fault (after the operation was carried out)",
            )
        }
        Some(FaultKind::DropAfterApplying) => dropped(),
        _ => response,
    }
}

/// A response whose body fails before its first byte. hyper writes the head only together with
/// the body, so it closes the connection having sent nothing: the client sees the connection
/// closed before any answer, as when a connection drops.
pub(crate) fn dropped() -> Response {
    let body = futures_util::stream::iter([Err::<bytes::Bytes, _>(std::io::Error::other(
        "sandbox fault: connection dropped after the operation",
    ))]);
    Response::new(axum::body::Body::from_stream(body))
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
        // To the millisecond: a token is refused once `expires_in` has passed since it was
        // issued, not at the next whole second.
        inner.tokens.insert(
            token.clone(),
            crate::wire::now_ms().saturating_add(config.token_ttl.saturating_mul(1000)),
        );
        inner.stats.tokens_issued += 1;
    }
    finish(
        &fault,
        Json(
            json!({"access_token": token, "token_type": "Bearer", "expires_in": config.token_ttl}),
        )
        .into_response(),
    )
    .await
}

/// The transaction as a reader sees it now: late metadata hidden, pending 202 events released;
/// and what the released events changed, for the callbacks and webhooks they cause.
fn read(stored: &mut Stored, include_session: bool) -> (Value, Vec<Change>) {
    for (_, left) in stored.pending_events.iter_mut() {
        *left = left.saturating_sub(1);
    }
    let (ready, waiting): (Vec<_>, Vec<_>) = stored
        .pending_events
        .drain(..)
        .partition(|(_, left)| *left == 0);
    stored.pending_events = waiting;
    let mut changes = Vec::new();
    for (event, _) in ready {
        // A confirmed void changes the status; a capture keeps it (Kravia stays AUTHORIZED).
        let voided = event["event"] == "VOID" && event["success"] == true;
        if voided && let Some(status) = event.get("transaction_status") {
            stored.transaction["status"] = status.clone();
        }
        stored.transaction["updated_at"] = json!(now());
        changes.push(if voided {
            Change::Voided
        } else {
            Change::Updated
        });
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
    (tx, changes)
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
    let (body, changes) = {
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
    for change in changes {
        push::transaction_changed(&shared, &id, change);
    }
    finish(&fault, Json(body).into_response()).await
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
/// `line_id` and an integer `amount`; optional fields of their type; no `null` anywhere. And what
/// Dintero's integration checklist asks of the lines: each `line_id` once, and lines that sum to
/// `amount` (its WooCommerce plugin adds a rounding line for this reason).
fn check_capture_body(body: &Value) -> Result<i64, String> {
    if !body.is_object() {
        return Err("the body must be a JSON object".into());
    }
    if let Some(path) = first_null(body, "") {
        return Err(format!(
            "`{path}` is null; no field of a capture is nullable"
        ));
    }
    let amount = int32(&body["amount"], "amount")?;
    if body
        .get("capture_reference")
        .is_some_and(|r| !r.is_string())
    {
        return Err("`capture_reference` must be a string".into());
    }
    if let Some(items) = body.get("items") {
        let items = items.as_array().ok_or("`items` must be an array")?;
        let mut line_ids = std::collections::HashMap::new();
        let mut sum = 0i64;
        for (i, item) in items.iter().enumerate() {
            let Some(line_id) = item["line_id"].as_str().filter(|l| !l.is_empty()) else {
                return Err(format!(
                    "`items[{i}].line_id` is required and must be a string"
                ));
            };
            if let Some(first) = line_ids.insert(line_id, i) {
                return Err(format!(
                    "`items[{i}].line_id` \"{line_id}\" repeats `items[{first}].line_id`: line ids must be unique"
                ));
            }
            sum += int32(&item["amount"], &format!("items[{i}].amount"))?;
            for (key, ok) in [
                (
                    "quantity",
                    item.get("quantity").is_none_or(Value::is_number),
                ),
                ("vat", item.get("vat").is_none_or(Value::is_number)),
                (
                    "vat_amount",
                    item.get("vat_amount").is_none_or(|v| int32(v, "").is_ok()),
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
        if sum != amount {
            return Err(format!(
                "the items sum to {sum}, not to `amount` {amount}: the lines must add up to the captured amount"
            ));
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
        let authorized_amount = tx["amount"].as_i64().unwrap_or(0);
        let remaining = authorized_amount - captured_amount(stored);
        if amount <= 0 || amount > remaining {
            return error(
                StatusCode::BAD_REQUEST,
                "INVALID_AMOUNT",
                &format!(
                    "amount {amount} is not within the remaining authorized amount: {remaining} of {authorized_amount} left"
                ),
            );
        }
        let tx = &mut stored.transaction;
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
    if response.status() == StatusCode::OK {
        push::transaction_changed(&shared, &id, Change::Updated);
    }
    finish(&fault, response).await
}

/// How much of a transaction is captured or being captured: successful `INITIATE_CAPTURE` and
/// `CAPTURE` events (a `CAPTURE` completing an `INITIATE_CAPTURE` counted once), and captures
/// accepted with a 202 whose event has not shown yet, unless that event will be a failure.
fn captured_amount(stored: &Stored) -> i64 {
    let events = stored.transaction["events"].as_array();
    let initiated: Vec<&Value> = events
        .into_iter()
        .flatten()
        .filter(|e| e["event"] == "INITIATE_CAPTURE" && e["success"] == true)
        .filter_map(|e| e.get("request_id"))
        .collect();
    let done: i64 = events
        .into_iter()
        .flatten()
        .filter(|e| e["success"] == true)
        .filter(|e| match e["event"].as_str() {
            Some("INITIATE_CAPTURE") => true,
            Some("CAPTURE") => e
                .get("correlation_request_id")
                .is_none_or(|c| !initiated.contains(&c)),
            _ => false,
        })
        .filter_map(|e| e["amount"].as_i64())
        .sum();
    let pending: i64 = stored
        .pending_events
        .iter()
        .map(|(e, _)| e)
        .filter(|e| e["event"] == "INITIATE_CAPTURE" && e["success"] == true)
        .filter_map(|e| e["amount"].as_i64())
        .sum();
    done + pending
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
    if response.status() == StatusCode::OK {
        push::transaction_changed(&shared, &id, Change::Voided);
    }
    finish(&fault, response).await
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
    finish(&fault, Json(page).into_response()).await
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
    finish(
        &fault,
        Json(json!({"configuration": configuration, "updated_at": now()})).into_response(),
    )
    .await
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
    let response = match profile {
        Some(profile) => Json(profile).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("payment profile {profile_id} not found"),
        ),
    };
    finish(&fault, response).await
}

/// The bytes a transaction's PDF endpoint serves, per its `pdf_content`.
pub(crate) fn pdf_body(stored: &Stored) -> Response {
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
        // The link and `expires_at` are one instant: the CDN refuses the link from then on.
        let ttl = u64::try_from(shared.config.cdn_link_ttl.as_millis()).unwrap_or(u64::MAX);
        let expires_ms = crate::wire::now_ms().saturating_add(ttl);
        let expires_at = i64::try_from(expires_ms)
            .ok()
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .unwrap_or(jiff::Timestamp::MAX);
        Json(json!({
            "id": fid, "name": format!("{number}.pdf"), "mime_type": "application/pdf",
            "expires_at": expires_at.to_string(), "url": crate::cdn::link(&shared, &fid, expires_ms),
        }))
        .into_response()
    };
    finish(&fault, response).await
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
    finish(&fault, response).await
}
