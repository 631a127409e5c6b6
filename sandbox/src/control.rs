//! Sandbox-only endpoints (seeding, faults, counters, callbacks) and `sessions/pay`, which
//! shares transaction creation with seeding.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::{Value, json};

use crate::{
    Shared,
    pdf::invoice_pdf,
    state::{Fault, Operation, Seed, Stored, default_billing, default_items},
    wire::{error, now, uuid},
};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sandbox/transactions", post(seed_endpoint))
        .route("/sandbox/transactions/{id}", get(raw_transaction))
        .route(
            "/sandbox/transactions/{id}/callback",
            post(callback_endpoint),
        )
        .route("/sandbox/faults", post(fault_endpoint).delete(clear_faults))
        .route("/sandbox/checkout", axum::routing::put(checkout_endpoint))
        .route("/sandbox/stats", get(stats))
        .route("/sandbox/dintero.toml", get(dintero_toml_endpoint))
}

/// The `[dintero]` table for this sandbox, with the CDN's origin in `document_hosts`.
pub(crate) fn dintero_toml(shared: &Shared) -> String {
    format!(
        "{}document_hosts = [\"{}\"]\n",
        crate::dintero_toml(&format!("{}/v1", shared.base)),
        shared.cdn_base
    )
}

async fn dintero_toml_endpoint(State(shared): State<Arc<Shared>>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/toml")],
        dintero_toml(&shared),
    )
        .into_response()
}

const KRAVIA_TYPES: [&str; 3] = [
    "kravia.invoice_b2b",
    "kravia.invoice_b2c",
    "kravia.invoice_b2b_grouped",
];
const BASE58: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

fn opaque_id(account: &str) -> String {
    let tail: String = (0..22)
        .map(|_| BASE58[fastrand::usize(..BASE58.len())] as char)
        .collect();
    format!("{account}.{tail}")
}

fn format_amount(minor: i64, currency: &str) -> String {
    format!("{}.{:02} {currency}", minor / 100, minor % 100)
}

/// Creates and stores a transaction; shared by seeding and `sessions/pay`. Its callback and the
/// account's webhooks follow, as Dintero sends them once a session is authorized.
pub(crate) fn seed(shared: &Arc<Shared>, seed: Seed) -> String {
    let id = create(shared, seed);
    crate::push::transaction_changed(shared, &id, crate::push::Change::Created);
    id
}

fn create(shared: &Shared, seed: Seed) -> String {
    let account = &shared.config.account_id;
    let id = opaque_id(account);
    let session_id = opaque_id(account);
    let product_type = seed
        .product_type
        .clone()
        .unwrap_or_else(|| "kravia.invoice_b2c".into());
    let currency = seed.currency.clone().unwrap_or_else(|| "NOK".into());
    let items = seed.items.clone().unwrap_or_else(default_items);
    let amount: i64 = items
        .iter()
        .chain(seed.shipping_option.iter())
        .filter_map(|i| i["amount"].as_i64())
        .sum();
    let billing = seed.billing_address.clone().unwrap_or_else(default_billing);
    let today = jiff::Zoned::now().date();
    // A PDF that changes at capture starts out as a preliminary one, with an earlier due date.
    let days = if seed.pdf_changes_at_capture { 7 } else { 14 };
    let due = today
        .checked_add(jiff::Span::new().days(days))
        .unwrap_or(today);
    let mut inner = shared.state.lock();
    inner.invoice_counter += 1;
    let number = seed
        .invoice_number
        .clone()
        .unwrap_or_else(|| format!("SBX{}-{:06}", &account[1..4], inner.invoice_counter));
    let shape = seed
        .pdf_shape
        .clone()
        .unwrap_or_else(|| "descriptor".into());
    let invoice_url = seed
        .invoice_url
        .clone()
        .unwrap_or_else(|| match shape.as_str() {
            "direct" => format!("{}/v1/invoices/{id}.pdf", shared.base),
            _ => format!("{}/v1/files/f-{id}", shared.base),
        });
    let kravia = json!({
        "kravia:invoice_number": number, "kravia:invoice_date": today.to_string(),
        "kravia:invoice_due_date": due.to_string(), "kravia:invoice_id": uuid(),
        "kravia:creditor_id": "sandbox-creditor", "kravia:debtor_id": uuid(),
    });
    inner.seq += 1;
    let seq = inner.seq;
    let merchant_reference = seed
        .merchant_reference
        .clone()
        .unwrap_or_else(|| format!("order-{}", inner.invoice_counter));
    inner
        .merchant_references
        .insert(merchant_reference.clone(), id.clone());
    let mut transaction = json!({
        "id": id, "session_id": session_id, "created_at": now(), "updated_at": now(),
        "payment_product": seed.payment_product.clone().unwrap_or_else(|| "kravia".into()),
        "payment_product_type": product_type,
        "status": seed.status.clone().unwrap_or_else(|| "AUTHORIZED".into()),
        "amount": amount, "currency": currency, "settlement_status": "NOT_SETTLED",
        "merchant_reference": merchant_reference,
        "customer": {"email": billing.get("email"), "phone_number": billing.get("phone_number")},
        "billing_address": billing, "items": items,
        "metadata": {
            "merchant_name": "Sandbox Merchant AS",
            "kravia:invoice_number": number, "kravia:invoice_url": invoice_url,
        },
        "events": [
            {"id": uuid(), "event": "INITIALIZE", "transaction_status": "INITIATED", "success": true, "request_id": uuid(), "created_at": now()},
            {"id": uuid(), "event": "AUTHORIZE", "transaction_status": "AUTHORIZED", "success": true, "amount": amount, "request_id": uuid(), "created_at": now(), "metadata": kravia},
        ],
    });
    if let Some(shipping) = &seed.shipping_option {
        transaction["shipping_option"] = shipping.clone();
    }
    for (key, value) in seed.overrides.iter().flatten() {
        transaction[key.as_str()] = value.clone();
    }
    if seed.kravia_delivered {
        // "An INITIATE_CAPTURE event marks the start of collection — automatically when Kravia
        // delivers the invoice" (Dintero's Kravia overview): no capture_reference of anyone's.
        transaction["events"].as_array_mut().expect("events").push(json!(
            {"id": uuid(), "event": "INITIATE_CAPTURE", "transaction_status": "AUTHORIZED", "success": true, "amount": amount, "request_id": uuid(), "created_at": now()}
        ));
    }
    let key = if seed.use_delivery_method_key {
        "invoice_delivery_method"
    } else {
        "invoice_channel"
    };
    let value = |channel: &str| match (seed.use_delivery_method_key, channel) {
        (true, "kravia") => "provider".to_owned(),
        (_, other) => other.to_owned(),
    };
    let type_key = product_type
        .strip_prefix("kravia.")
        .unwrap_or(&product_type)
        .to_owned();
    let kravia_config = |channel: &str| json!({ type_key.as_str(): { "type": "payment_product_type", "enabled": true, "days_until_due": 14, key: value(channel) } });
    let options_config = |channel: &str| json!([{ "type": product_type, "currencies": [currency], "details": { key: value(channel) } }]);
    let mut configuration = json!({});
    let session_channel = if seed.no_session_channel {
        None
    } else {
        Some(
            seed.session_channel
                .clone()
                .unwrap_or_else(|| "merchant".into()),
        )
    };
    if let Some(channel) = session_channel {
        configuration["kravia"] = kravia_config(&channel);
    }
    // A session made with POST /sessions-profile: the profile keeps the configuration, the
    // transaction only names it.
    if seed.profile_channel.is_some() || seed.profile_options_channel.is_some() {
        let profile_id = format!("sandbox-profile-{}", inner.invoice_counter);
        let mut profile_configuration = json!({});
        if let Some(channel) = &seed.profile_channel {
            profile_configuration["kravia"] = kravia_config(channel);
        }
        if let Some(channel) = &seed.profile_options_channel {
            profile_configuration["payment_options"] = options_config(channel);
        }
        inner.profiles.insert(
            profile_id.clone(),
            json!({"id": profile_id, "description": "sandbox profile", "configuration": profile_configuration}),
        );
        transaction["metadata"]["session:profile_id"] = json!(profile_id);
    }
    let pdf = invoice_pdf(&invoice_lines(&transaction, None));
    inner.transactions.insert(
        id.clone(),
        Stored {
            transaction,
            session: json!({"id": session_id, "configuration": configuration}),
            pdf_shape: shape,
            pdf_content: seed.pdf_content.clone().unwrap_or_else(|| "valid".into()),
            hide_metadata_gets: seed.metadata_after_gets,
            pending_events: Vec::new(),
            pdf,
            pdf_changes_at_capture: seed.pdf_changes_at_capture,
            seq,
            callback_url: seed.callback_url.clone(),
        },
    );
    id
}

/// The text of a transaction's invoice PDF; `payment` adds the payment details capture brings.
pub(crate) fn invoice_lines(tx: &Value, payment: Option<&str>) -> Vec<String> {
    let billing = &tx["billing_address"];
    let customer_name = [
        billing["business_name"].as_str(),
        billing["first_name"].as_str(),
        billing["last_name"].as_str(),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ");
    let metadata = &tx["metadata"];
    // Kravia's facts are on the newest event that has them.
    let event_metadata = tx["events"]
        .as_array()
        .and_then(|events| {
            events
                .iter()
                .rev()
                .find(|e| e["metadata"]["kravia:invoice_date"].is_string())
        })
        .map_or(metadata, |e| &e["metadata"]);
    let fact = |key: &str| {
        metadata[key]
            .as_str()
            .or_else(|| event_metadata[key].as_str())
            .unwrap_or("-")
            .to_owned()
    };
    let mut lines = vec![
        "Sandbox Merchant AS - Faktura / Invoice".into(),
        format!("Invoice number: {}", fact("kravia:invoice_number")),
        format!("Customer: {customer_name}"),
        format!(
            "Invoice date: {}   Due date: {}",
            fact("kravia:invoice_date"),
            fact("kravia:invoice_due_date")
        ),
        format!(
            "Amount: {}",
            format_amount(
                tx["amount"].as_i64().unwrap_or(0),
                tx["currency"].as_str().unwrap_or("NOK")
            )
        ),
        format!("Transaction: {}", tx["id"].as_str().unwrap_or("")),
    ];
    if let Some(payment) = payment {
        lines.push(payment.to_owned());
    }
    lines
}

async fn seed_endpoint(State(shared): State<Arc<Shared>>, body: Option<Json<Seed>>) -> Response {
    let seed = body.map(|Json(s)| s).unwrap_or_default();
    // The transaction's amount is the sum of its lines: each must be an integer.
    for (i, item) in seed.items.iter().flatten().enumerate() {
        if let Err(message) = crate::wire::int32(&item["amount"], &format!("items[{i}].amount")) {
            return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message);
        }
    }
    let id = self::seed(&shared, seed);
    let tx = shared
        .state
        .lock()
        .transactions
        .get(&id)
        .map(|s| s.transaction.clone());
    (
        StatusCode::CREATED,
        Json(json!({"id": id, "transaction": tx})),
    )
        .into_response()
}

async fn raw_transaction(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match shared.state.lock().transactions.get(&id) {
        Some(s) => Json(s.transaction.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such transaction"),
    }
}

async fn fault_endpoint(State(shared): State<Arc<Shared>>, Json(fault): Json<Fault>) -> Response {
    shared.state.lock().faults.push(fault);
    StatusCode::NO_CONTENT.into_response()
}

/// Sets the account's checkout configuration (`{"payment_options": [...]}`).
async fn checkout_endpoint(
    State(shared): State<Arc<Shared>>,
    Json(configuration): Json<Value>,
) -> Response {
    shared.state.lock().checkout = configuration;
    StatusCode::NO_CONTENT.into_response()
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> Response {
    shared.state.lock().faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(shared): State<Arc<Shared>>) -> Response {
    Json(shared.state.lock().stats.clone()).into_response()
}

async fn callback_endpoint(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let Some(url) = body.get("url").and_then(Value::as_str) else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "`url` is required");
    };
    match crate::push::send_callback(&shared, &id, url, None).await {
        Ok(status) => Json(json!({"status": status})).into_response(),
        Err(e) => error(StatusCode::BAD_GATEWAY, "CALLBACK_FAILED", &e),
    }
}

/// `POST /v1/sessions/pay`: a merchant-initiated Kravia invoice, authorized at once.
pub(crate) async fn pay(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    let fault = shared.state.lock().take_fault(Operation::Pay, None);
    if let Some(crate::state::FaultKind::Status { status, .. }) = fault {
        return error(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "SANDBOX_FAULT",
            "injected fault",
        );
    }
    if let Some(crate::state::FaultKind::Declined { message }) = &fault {
        return Json(json!({
            "status": "FAILED", "success": false, "actions": [],
            "events": [{"event": "AUTHORIZE", "success": false, "transaction_status": "FAILED",
                        "error": {"code": "DECLINED", "message": message}}],
        }))
        .into_response();
    }
    if let Err(refused) = crate::wire::authorized(&shared, &headers) {
        return refused;
    }
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "body must be JSON");
    };
    let payment = &body["payment"];
    let order = &body["session"]["order"];
    let product_type = payment["payment_product_type"].as_str().unwrap_or_default();
    if !KRAVIA_TYPES.contains(&product_type) {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("payment.payment_product_type must be one of {KRAVIA_TYPES:?}"),
        );
    }
    if payment["operation"] != "invoice_payment" {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "payment.operation must be \"invoice_payment\"",
        );
    }
    if !payment["days_until_due"]
        .as_i64()
        .is_some_and(|d| (0..=365).contains(&d))
    {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "payment.days_until_due is required (0-365)",
        );
    }
    let (Some(amount), Some(currency)) = (order["amount"].as_i64(), order["currency"].as_str())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "session.order.amount and session.order.currency are required",
        );
    };
    let Some(merchant_reference) = order["merchant_reference"]
        .as_str()
        .filter(|r| !r.is_empty())
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "session.order.merchant_reference is required",
        );
    };
    let strict = headers
        .get("dintero-feature-toggles")
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| {
            h.split(',')
                .any(|t| t.trim() == "strict-merchant-reference")
        });
    if strict
        && let Some(existing) = shared
            .state
            .lock()
            .merchant_references
            .get(merchant_reference)
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({
                "error": {"code": "BAD_REQUEST", "message": format!("merchant_reference {merchant_reference} is already used by a session (transaction {existing})")},
                "success": false,
            })),
        )
            .into_response();
    }
    if order["billing_address"].is_null() {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "session.order.billing_address is required for Kravia",
        );
    }
    let items: Vec<Value> = order["items"].as_array().cloned().unwrap_or_default();
    let mut items_total = 0i64;
    for (i, item) in items.iter().enumerate() {
        // Each line's amount an integer: a `true` is not 1, and is not left out of the sum.
        match crate::wire::int32(&item["amount"], &format!("session.order.items[{i}].amount")) {
            Ok(amount) => items_total += amount,
            Err(message) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
        }
    }
    if !items.is_empty() && items_total != amount {
        return error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            &format!("order.amount {amount} does not equal the sum of the items {items_total}"),
        );
    }
    let items = if items.is_empty() {
        vec![
            json!({"line_id": "1", "description": "Invoice", "quantity": 1, "amount": amount, "vat": 0, "vat_amount": 0}),
        ]
    } else {
        items
    };
    // The payment-level option steers Kravia; the session this call creates has no
    // `configuration.kravia`, and nothing shows the value when the transaction is read back.
    let says_merchant = |key: &str| payment[key].as_str() == Some("merchant");
    let merchant_delivers = match shared.config.pay_reads {
        crate::PayChannelKey::Either => {
            says_merchant("invoice_channel") || says_merchant("invoice_delivery_method")
        }
        crate::PayChannelKey::InvoiceChannel => says_merchant("invoice_channel"),
        crate::PayChannelKey::InvoiceDeliveryMethod => says_merchant("invoice_delivery_method"),
    };
    let id = seed(
        &shared,
        Seed {
            kravia_delivered: !merchant_delivers,
            product_type: Some(product_type.to_owned()),
            currency: Some(currency.to_owned()),
            billing_address: Some(order["billing_address"].clone()),
            items: Some(items),
            merchant_reference: Some(merchant_reference.to_owned()),
            callback_url: body["session"]["url"]["callback_url"]
                .as_str()
                .map(str::to_owned),
            no_session_channel: true,
            ..Seed::default()
        },
    );
    let mut tx = shared
        .state
        .lock()
        .transactions
        .get(&id)
        .map(|s| s.transaction.clone())
        .unwrap_or_default();
    tx["success"] = json!(true);
    tx["actions"] = json!([]);
    Json(tx).into_response()
}
