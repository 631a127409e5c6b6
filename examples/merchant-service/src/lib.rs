//! What "linked into a merchant service" looks like, the README's library example grown up: the
//! shop's own axum app mounts Postbud's router (Dintero callbacks, signed invoice links, health,
//! metrics) beside its own endpoints, and [`postbud::App::serve`] runs it all with the workers,
//! the reconcile sweep and retention (`src/main.rs`). The shop's endpoints:
//!
//! - `POST /orders/invoice` creates a merchant-initiated Kravia invoice for an order; Postbud
//!   captures and delivers it;
//! - `GET /orders/{transaction_id}/invoice` tells the shop's back office where that invoice is.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use postbud::App;
use serde_json::{Value, json};

/// The shop's routes and Postbud's, in one router.
pub fn router(app: Arc<App>) -> Router {
    let shop = Router::new()
        .route("/orders/invoice", post(create_invoice))
        .route("/orders/{transaction_id}/invoice", get(invoice_status))
        .with_state(Arc::clone(&app));
    shop.merge(postbud::server::router(app))
}

async fn create_invoice(State(app): State<Arc<App>>, Json(order): Json<Value>) -> Response {
    match app.create_invoice(&order).await {
        Ok(created) => (
            if created.existing {
                StatusCode::OK
            } else {
                StatusCode::CREATED
            },
            Json(json!({
                "transaction_id": created.transaction.id,
                "status": created.transaction.status.to_string(),
                "existing": created.existing,
            })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": e.to_string()})),
        )
            .into_response(),
    }
}

async fn invoice_status(
    State(app): State<Arc<App>>,
    Path(transaction_id): Path<String>,
) -> Response {
    let dispatch = match app.dispatch(&transaction_id).await {
        Ok(Some(dispatch)) => dispatch,
        Ok(None) => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "no such invoice"})),
            )
                .into_response();
        }
        Err(e) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": e.to_string()})),
            )
                .into_response();
        }
    };
    let jobs = app.jobs(&transaction_id).await.unwrap_or_default();
    let deliveries: Vec<Value> = jobs
        .iter()
        .filter(|j| j.kind != postbud::JobKind::Dispatch)
        .map(|j| json!({"channel": j.channel, "kind": j.kind, "state": j.state, "attempts": j.attempts, "last_error": j.last_error, "receipt": j.receipt}))
        .collect();
    Json(json!({
        "transaction_id": transaction_id,
        "invoice_number": dispatch.invoice_number,
        "stage": dispatch.stage,
        "reason": dispatch.reason,
        "captured": dispatch.captured_at.is_some(),
        "deliveries": deliveries,
    }))
    .into_response()
}
