//! The HTTP face of `postbud serve`: Dintero callbacks and account webhooks, signed invoice
//! links, delivery reports, `/healthz`, `/metrics`. Merchant services can mount [`router`] into their own axum app.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{OriginalUri, Path, Query, RawQuery, Request, State},
    http::{HeaderMap, Method, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::get,
};
use secrecy::ExposeSecret;
use tower::ServiceExt;

use crate::app::{App, AppError};

pub(crate) mod console;
mod listen;

pub use self::console::CONTENT_SECURITY_POLICY as CONSOLE_CONTENT_SECURITY_POLICY;
pub use self::listen::{HEADER_READ_TIMEOUT, serve};

/// Longest a request may take from its head to the handler's answer (a slowly sent body
/// included).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
struct ServerState {
    app: Arc<App>,
}

/// The routes: `<server.callback_path>` (GET and POST), `<server.webhook_path>` (POST),
/// `/invoices/{file}`, `/reports/{channel}`, `/healthz`, `/metrics`, and `/console/…` when
/// `[console] enabled` (see [`console::CONTENT_SECURITY_POLICY`]); when `server.public_url`
/// has a path (`https://m.example/postbud`), the same routes answer under it as well.
///
/// A merchant's app may nest the router under a prefix of its own: signatures are checked
/// over the path the caller called, with the prefix (axum's `OriginalUri`).
pub fn router(app: Arc<App>) -> Router {
    let callback_path = app.settings().server.callback_path.clone();
    let webhook_path = app.settings().server.webhook_path.clone();
    let public_path = app.settings().server.public_path().map(str::to_owned);
    let routes = Router::new()
        .route(&callback_path, get(callback).post(callback))
        .route(&webhook_path, axum::routing::post(webhook))
        .route("/invoices/{file}", get(invoice_link))
        .route(
            "/reports/{channel}",
            get(delivery_report).post(delivery_report),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(ServerState {
            app: Arc::clone(&app),
        });
    let routes = match app.settings().console.enabled {
        true => routes.merge(console::routes(app)),
        false => routes,
    }
    .layer(axum::middleware::from_fn(request_timeout));
    match public_path {
        // A proxy may pass the public path on (`/postbud/invoices/…`) or strip it; both reach
        // the routes. `OriginalUri` keeps the path as it came for the signature checks.
        Some(prefix) => Router::new().fallback_service(
            routes.map_request(move |request: Request| strip_prefix(&prefix, request)),
        ),
        None => routes,
    }
}

/// The request with `prefix` taken off the front of its path, when the path starts with it as
/// whole segments (`/postbud/healthz` → `/healthz`, never `/postbudx` → `x`).
fn strip_prefix(prefix: &str, mut request: Request) -> Request {
    let uri = request.uri();
    let rest = match uri.path().strip_prefix(prefix) {
        Some("") => "/",
        Some(rest) if rest.starts_with('/') => rest,
        _ => return request,
    };
    let path_and_query = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    if let Ok(stripped) = Uri::from_parts(parts) {
        *request.uri_mut() = stripped;
    }
    request
}

/// The path the caller (Dintero, a provider) called, which its signature covers. `uri` is the
/// path within the router. Under `server.public_url`'s path when that has one, since a proxy
/// or the merchant's app in front may have taken it off; otherwise the path as this process
/// received it, before a merchant's app that nests the router under a prefix took that off
/// (`original`).
fn called_path(app: &App, original: &Uri, uri: &Uri) -> String {
    match app.settings().server.public_path() {
        Some(prefix) => format!("{prefix}{}", uri.path()),
        None => original.path().to_owned(),
    }
}

/// Dintero's account webhook deliveries (`checkout_authorization`, `checkout_transaction`),
/// verified with `dintero.webhook_secret` (`event-signature`: hex HMAC-SHA1 of the body). An
/// authorization starts a dispatch like a callback; a voided transaction stops its deliveries.
///
/// Dintero deletes a subscription after consecutive answers outside 2xx, and with it the void
/// and authorization notices Postbud relies on. So a correctly signed delivery Postbud does not
/// act on (another event, a body it cannot read, a transaction of another account) is answered
/// 200 and logged; only a bad signature is refused (401), and 503 asks Dintero to try later.
async fn webhook(State(state): State<ServerState>, headers: HeaderMap, body: Bytes) -> Response {
    let ignore = |why: String| {
        state.app.metrics().callback(true);
        tracing::warn!(%why, "signed webhook not acted on");
        (StatusCode::OK, format!("not acted on: {why}")).into_response()
    };
    let secret = state
        .app
        .settings()
        .dintero
        .as_ref()
        .and_then(|d| d.webhook_secret.as_ref());
    let Some(secret) = secret else {
        // Not a 4xx, which ends the subscription sooner: the operator may be setting the
        // secret now, and Dintero retries a 5xx.
        tracing::error!(
            "a webhook arrived but dintero.webhook_secret is not set, so it cannot be verified"
        );
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "webhooks cannot be verified here yet (dintero.webhook_secret is not set); retry",
        )
            .into_response();
    };
    let signature = headers.get("event-signature").and_then(|h| h.to_str().ok());
    if let Err(e) = crate::dintero::signature::verify_webhook(
        secret.expose_secret().as_bytes(),
        signature,
        &body,
    ) {
        state.app.metrics().callback(false);
        tracing::warn!(error = %e, "webhook refused");
        return (StatusCode::UNAUTHORIZED, format!("webhook: {e}")).into_response();
    }
    let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return ignore("the body is not JSON".into());
    };
    let event = payload["event"]
        .as_str()
        .or_else(|| headers.get("event").and_then(|h| h.to_str().ok()))
        .unwrap_or_default()
        .to_owned();
    let transaction = |pointer: &str| {
        payload
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    let done = match event.as_str() {
        "ping" => return (StatusCode::OK, "pong").into_response(),
        "checkout_authorization" => {
            match transaction("/authorization/transaction_id")
                .or_else(|| transaction("/transaction/id"))
            {
                Some(id) => state.app.submit(&id).await,
                // An error report without a transaction: nothing to do.
                None => return (StatusCode::OK, "no transaction: nothing to do").into_response(),
            }
        }
        "checkout_transaction" => {
            let Some(id) = transaction("/transaction/id") else {
                return ignore("checkout_transaction without transaction.id".into());
            };
            // The status may be masked out of the delivery (a subscription's `fields`): for a
            // transaction of ours, Dintero is asked; otherwise it is submitted like a callback.
            match transaction("/transaction/status").as_deref() {
                Some(status) if status != "AUTHORIZATION_VOIDED" => state.app.submit(&id).await,
                _ => match state.app.voided_elsewhere(&id, true).await {
                    Ok(false) => state.app.submit(&id).await,
                    other => other,
                },
            }
        }
        other => {
            return ignore(format!(
                "event `{other}` is neither checkout_authorization nor checkout_transaction"
            ));
        }
    };
    match done {
        // Dintero signed it, so retrying would bring the same id again: nothing to gain.
        Err(AppError::InvalidId(e)) => ignore(e.to_string()),
        done => answer(&state, done, "webhook"),
    }
}

/// Answers 503 with `Retry-After` to a request not answered within [`REQUEST_TIMEOUT`] (a body
/// sent a byte at a time holds nothing for longer). Not a 4xx: Dintero gives up on those, and a
/// callback that took long (Dintero slow to answer its check) must be sent again.
async fn request_timeout(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            "the request took too long; retry",
        )
            .into_response(),
    }
}

/// Dintero calls this when a payment is authorized (GET with query parameters, or POST with
/// `method=POST`). The callback is only a trigger: the transaction is re-read with our own
/// token, so its (unsigned) body is never trusted.
///
/// The transaction id is taken from the query, which `Dintero-Signature` covers. A callback is
/// trusted when that signature verified it; otherwise (no `dintero.callback_secret`, or an id
/// found only in the unsigned body) it goes through [`App::submit_unverified`]: a new
/// transaction is read at Dintero, at a bounded rate, before anything is stored.
async fn callback(
    State(state): State<ServerState>,
    method: Method,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let query = query.unwrap_or_default();
    let path = called_path(&state.app, &original, &uri);
    let signed = match verify_callback(&state.app, &method, &path, &headers, &query) {
        Ok(signed) => signed,
        Err(why) => {
            state.app.metrics().callback(false);
            tracing::warn!(%why, "callback refused");
            return (StatusCode::UNAUTHORIZED, why).into_response();
        }
    };
    let from_query = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "transaction_id")
        .map(|(_, v)| v.into_owned());
    let from_body = || {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("transaction_id")
                    .or_else(|| v.get("id"))
                    .and_then(|id| id.as_str().map(str::to_owned))
            })
    };
    let (transaction_id, trusted) = match from_query {
        Some(id) => (id, signed),
        None => match from_body() {
            Some(id) => (id, false),
            // report_error callbacks may come without a transaction: nothing to do, and a 4xx
            // would only make Dintero give up on a callback that was fine.
            None => return (StatusCode::OK, "no transaction_id: nothing to do").into_response(),
        },
    };
    let is_void = url::form_urlencoded::parse(query.as_bytes())
        .any(|(k, v)| k == "event" && v.eq_ignore_ascii_case("VOID"));
    let submitted = if is_void {
        state.app.voided_elsewhere(&transaction_id, trusted).await
    } else if trusted {
        state.app.submit(&transaction_id).await
    } else {
        state.app.submit_unverified(&transaction_id).await
    };
    answer(&state, submitted, "callback")
}

/// The answer to a callback or webhook (`what`) Postbud took, or could not take: counted, logged,
/// and a `Retry-After` when it was only too many at once.
fn answer(state: &ServerState, outcome: Result<bool, AppError>, what: &str) -> Response {
    match outcome {
        Ok(_) => {
            state.app.metrics().callback(true);
            (StatusCode::OK, "accepted").into_response()
        }
        Err(e) => {
            let (status, message) = callback_error(&e);
            if status.is_server_error() {
                tracing::error!(error = %e, what, "not accepted; Dintero will retry");
            } else {
                state.app.metrics().callback(false);
                tracing::warn!(error = %e, what, "refused");
            }
            let mut response = (status, message).into_response();
            if let AppError::Busy(wait) = e {
                let seconds = wait.as_secs().max(1).to_string();
                if let Ok(value) = header::HeaderValue::from_str(&seconds) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
            }
            response
        }
    }
}

/// The answer to a callback that was not accepted. Dintero retries 5xx and gives up on 4xx, so
/// only what can never succeed is a 4xx.
fn callback_error(e: &AppError) -> (StatusCode, String) {
    match e {
        AppError::InvalidId(e) => (StatusCode::BAD_REQUEST, e.to_string()),
        // Not a 404: Dintero gives up on a 4xx, and a transaction it has only just authorized
        // might not be readable yet. A made-up id gains nothing from the retries either, since
        // each costs a check within `server.unverified_per_second`.
        AppError::Dintero(g) if g.status() == Some(404) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "Dintero does not know this transaction (yet); retry later".into(),
        ),
        AppError::Busy(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many unverified callbacks; retry later".into(),
        ),
        // Not stored means not accepted: a 5xx makes Dintero retry.
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            "could not accept the callback now; retry".into(),
        ),
    }
}

/// `Ok(true)` when a configured secret verified the signature over `path` (see
/// [`called_path`]), `Ok(false)` when no secret is configured, `Err` when the signature is
/// missing or wrong.
fn verify_callback(
    app: &App,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    query: &str,
) -> Result<bool, String> {
    let Some(dintero) = app.settings().dintero.as_ref() else {
        return Ok(false);
    };
    let Some(secret) = dintero.callback_secret.as_ref() else {
        return Ok(false);
    };
    let host = match &app.settings().server.public_url {
        Some(url) => url.host_str().unwrap_or_default().to_owned(),
        None => headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(|h| h.rsplit_once(':').map_or(h, |(host, _)| host).to_owned())
            .unwrap_or_default(),
    };
    let signature = headers
        .get("dintero-signature")
        .and_then(|h| h.to_str().ok());
    crate::dintero::signature::verify(
        secret.expose_secret().as_bytes(),
        &dintero.account_id,
        signature,
        crate::dintero::signature::SignedRequest {
            method: method.as_str(),
            host: &host,
            path,
            query,
        },
        jiff::Timestamp::now().as_second(),
    )
    .map(|()| true)
    .map_err(|e| e.to_string())
}

async fn invoice_link(
    State(state): State<ServerState>,
    Path(file): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(transaction_id) = file.strip_suffix(".pdf") else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let expires = params
        .get("expires")
        .and_then(|e| e.parse::<i64>().ok())
        .unwrap_or(0);
    let signature = params
        .get("signature")
        .map(String::as_str)
        .unwrap_or_default();
    let Some(signer) = state.app.links() else {
        return (
            StatusCode::NOT_FOUND,
            "invoice links are not enabled (set server.public_url)",
        )
            .into_response();
    };
    if !signer.verify(
        transaction_id,
        expires,
        signature,
        jiff::Timestamp::now().as_second(),
    ) {
        return (StatusCode::FORBIDDEN, "this link is invalid or has expired").into_response();
    }
    match state.app.document(transaction_id).await {
        Ok(Some(pdf)) => {
            state.app.metrics().link_served();
            (
                [
                    (header::CONTENT_TYPE, "application/pdf".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        // Sanitised again: a copy stored by an older version may carry anything.
                        format!(
                            "inline; filename=\"{}\"",
                            postbud_channel::file_name::pdf(&pdf.file_name)
                        ),
                    ),
                    (header::CACHE_CONTROL, "private, max-age=300".to_owned()),
                ],
                pdf.bytes,
            )
                .into_response()
        }
        Ok(None) => (StatusCode::NOT_FOUND, "no such invoice").into_response(),
        Err(e) => {
            tracing::error!(error = %e, "reading a PDF for a link failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable").into_response()
        }
    }
}

/// A provider's status callback for a delivery: the channel verifies and reads it, and the
/// delivery's history records what it says.
async fn delivery_report(
    State(state): State<ServerState>,
    Path(channel): Path<String>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.app.has_channel(&channel) {
        return (StatusCode::NOT_FOUND, format!("no channel `{channel}`")).into_response();
    }
    // Every report URL Postbud hands a provider is signed for its channel and delivery: a report
    // that is not, whatever the provider (Twilio signs its own; most do not), is refused.
    let query: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let delivery = query
        .get("delivery")
        .map(String::as_str)
        .unwrap_or_default();
    // A report URL Postbud handed a provider is signed for its channel and delivery; a report
    // on any other URL is the channel's to authenticate (a provider's own signature), and a
    // channel that cannot refuses it (401).
    let signed = !delivery.is_empty()
        && state.app.links().is_some_and(|links| {
            links.verify_report(
                &channel,
                delivery,
                query.get("sig").map(String::as_str).unwrap_or_default(),
            )
        });
    // Signatures cover the URL the provider called: the public one, not the one behind a proxy.
    let origin = state
        .app
        .settings()
        .server
        .public_url
        .as_ref()
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    let url = format!(
        "{origin}{}{}",
        called_path(&state.app, &original, &uri),
        uri.query().map(|q| format!("?{q}")).unwrap_or_default()
    );
    let mut report = postbud_channel::InboundReport::new(
        url,
        headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body,
    );
    if signed {
        report = report.signed_for(delivery);
    }
    let evidence = match state.app.channel_report(&channel, &report).await {
        Some(Ok(evidence)) => evidence,
        None => return (StatusCode::NOT_FOUND, format!("no channel `{channel}`")).into_response(),
        Some(Err(e)) => {
            tracing::warn!(channel, error = %e, "delivery report refused");
            // A failure on Postbud's side (a signing certificate that could not be fetched) is
            // answered 503, so that the provider sends the report again.
            let status = match (e.kind(), e.retry_class()) {
                (postbud_channel::ErrorKind::Unauthorized, _) => StatusCode::UNAUTHORIZED,
                (_, postbud_channel::RetryClass::Temporary) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            return (status, e.message().to_owned()).into_response();
        }
    };
    let signed_for = signed.then_some(delivery);
    let (mut recorded, mut unknown) = (0, Vec::new());
    for piece in &evidence {
        match state.app.record_evidence(&channel, signed_for, piece).await {
            Ok(postbud_channel::Recorded::Unknown(why)) => unknown.push(why),
            Ok(postbud_channel::Recorded::NotYet) => {
                // Recorded pieces are recognised when the provider sends the whole again.
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the delivery's attempt has not ended yet; send it again later",
                )
                    .into_response();
            }
            Ok(_) => recorded += 1,
            // Not stored means not accepted: a 5xx makes the provider send it again.
            Err(e) => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("store unavailable: {e}"),
                )
                    .into_response();
            }
        }
    }
    if signed && recorded == 0 && !unknown.is_empty() {
        return (StatusCode::NOT_FOUND, "no such delivery of this channel").into_response();
    }
    for why in &unknown {
        tracing::info!(channel, reason = %why, "delivery evidence ignored");
    }
    // Events about deliveries Postbud did not make (another system's mail through the same
    // provider account) are answered 200: refusing them would have the provider send them again
    // for days.
    (
        StatusCode::OK,
        format!("recorded {recorded}, ignored {}", unknown.len()),
    )
        .into_response()
}

async fn healthz(State(state): State<ServerState>) -> Response {
    match state.app.health().await {
        Ok(ok) => (StatusCode::OK, ok).into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
    }
}

async fn metrics(State(state): State<ServerState>) -> Response {
    match state.app.render_metrics().await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripped(prefix: &str, uri: &str) -> String {
        let request = Request::builder()
            .uri(uri)
            .body(axum::body::Body::empty())
            .expect("request");
        strip_prefix(prefix, request).uri().to_string()
    }

    #[test]
    fn the_public_path_is_taken_off_whole_segments_only() {
        assert_eq!(stripped("/postbud", "/postbud/healthz"), "/healthz");
        assert_eq!(
            stripped("/postbud", "/postbud/dintero/callback?b=2&a=1"),
            "/dintero/callback?b=2&a=1"
        );
        assert_eq!(stripped("/postbud", "/postbud"), "/");
        assert_eq!(
            stripped("/postbud", "/postbudx/healthz"),
            "/postbudx/healthz"
        );
        assert_eq!(stripped("/postbud", "/healthz"), "/healthz");
    }
}
