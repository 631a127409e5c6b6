//! What the sandbox sends on its own, as Dintero does: session callbacks (`Dintero-Signature`)
//! and account webhooks (`event-signature`), each retried with a bounded number of attempts and
//! a doubling wait.
//!
//! Retries follow Dintero's words: a callback is sent again only after a 5xx, a timeout or a
//! connection error, and any 4xx is final (dintero-api.md sections 6 and 12); a webhook is sent
//! again after "any response outside of the 200 range" (section 13), a timeout or a connection
//! error.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use sha2::Sha256;

use crate::{
    Shared,
    wire::{authorized, error, now, uuid},
};

/// An account webhook subscription (`POST /v1/accounts/{aid}/hooks/subscriptions`).
#[derive(Clone)]
pub(crate) struct Subscription {
    pub(crate) id: String,
    pub(crate) url: String,
    /// The HMAC-SHA1 key of `event-signature`; deliveries are unsigned without one.
    pub(crate) secret: Option<String>,
    pub(crate) events: Vec<String>,
    pub(crate) active: bool,
    pub(crate) created_at: String,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &self.secret.as_ref().map(|_| "[redacted]"))
            .field("events", &self.events)
            .field("active", &self.active)
            .finish()
    }
}

impl Subscription {
    /// As Dintero reads a subscription back: the secret's type, never its value.
    fn shown(&self) -> Value {
        let mut config =
            json!({"url": self.url, "content_type": "application/json", "insecure_ssl": 0});
        if self.secret.is_some() {
            config["secret"] = json!({"type": "HMAC-SHA1"});
        }
        json!({"id": self.id, "config": config, "events": self.events, "active": self.active, "created_at": self.created_at})
    }
}

/// The events a subscription may ask for (those the sandbox sends).
const EVENTS: [&str; 2] = ["checkout_authorization", "checkout_transaction"];

/// Reads a subscription body as Dintero's schema has it, refusing what does not fit.
fn parse_subscription(body: &Value) -> Result<Subscription, String> {
    let config = body
        .get("config")
        .filter(|c| c.is_object())
        .ok_or("`config` is required and must be an object")?;
    let url = config["url"]
        .as_str()
        .ok_or("`config.url` is required and must be a string")?;
    let parsed = url::Url::parse(url).map_err(|e| format!("`config.url` `{url}`: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`config.url` `{url}` must be http(s)"));
    }
    if let Some(content_type) = config.get("content_type")
        && content_type != "application/json"
    {
        return Err(format!(
            "`config.content_type` is {content_type}; only \"application/json\" is sent"
        ));
    }
    if let Some(insecure) = config.get("insecure_ssl") {
        // 0 or 1, an integer: `false` is not 0.
        let n = crate::wire::int32(insecure, "config.insecure_ssl")?;
        if !(0..=1).contains(&n) {
            return Err(format!("`config.insecure_ssl` is {n}, not 0 or 1"));
        }
    }
    let secret = match config.get("secret") {
        None => None,
        Some(secret) => {
            if secret["type"] != "HMAC-SHA1" {
                return Err("`config.secret.type` must be \"HMAC-SHA1\"".into());
            }
            Some(
                secret["value"]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .ok_or("`config.secret.value` is required and must be a non-empty string")?
                    .to_owned(),
            )
        }
    };
    let events = body["events"]
        .as_array()
        .filter(|e| !e.is_empty())
        .ok_or("`events` is required: a non-empty array of event names")?;
    let mut names = Vec::new();
    for (i, event) in events.iter().enumerate() {
        let name = event
            .as_str()
            .ok_or(format!("`events[{i}]` must be a string"))?;
        if !EVENTS.contains(&name) {
            return Err(format!(
                "`events[{i}]` `{name}` is not one of {EVENTS:?} (the events the sandbox sends)"
            ));
        }
        names.push(name.to_owned());
    }
    let active = match body.get("active") {
        None => true,
        Some(active) => active.as_bool().ok_or("`active` must be a boolean")?,
    };
    Ok(Subscription {
        id: uuid(),
        url: url.to_owned(),
        secret,
        events: names,
        active,
        created_at: now(),
    })
}

fn account_matches(shared: &Shared, aid: &str) -> Result<(), Response> {
    if aid == shared.config.account_id {
        Ok(())
    } else {
        Err(error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            &format!("the token is not for account {aid}"),
        ))
    }
}

/// `POST /v1/accounts/{aid}/hooks/subscriptions`: 201 with the subscription as read back, then
/// a `ping` delivery.
pub(crate) async fn create_subscription(
    State(shared): State<Arc<Shared>>,
    Path(aid): Path<String>,
    headers: HeaderMap,
    body: Option<Json<Value>>,
) -> Response {
    if let Err(r) = authorized(&shared, &headers).and_then(|()| account_matches(&shared, &aid)) {
        return r;
    }
    let Some(Json(body)) = body else {
        return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "body must be JSON");
    };
    let subscription = match parse_subscription(&body) {
        Ok(s) => s,
        Err(message) => return error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &message),
    };
    let shown = subscription.shown();
    shared.state.lock().subscriptions.push(subscription.clone());
    if subscription.active {
        let payload =
            json!({"account_id": shared.config.account_id, "event": "ping", "hook": shown});
        spawn_webhook(&shared, subscription, "ping", String::new(), payload);
    }
    (StatusCode::CREATED, Json(shown)).into_response()
}

/// `GET /v1/accounts/{aid}/hooks/subscriptions`.
pub(crate) async fn list_subscriptions(
    State(shared): State<Arc<Shared>>,
    Path(aid): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&shared, &headers).and_then(|()| account_matches(&shared, &aid)) {
        return r;
    }
    let shown: Vec<Value> = shared
        .state
        .lock()
        .subscriptions
        .iter()
        .map(Subscription::shown)
        .collect();
    Json(shown).into_response()
}

/// `DELETE /v1/accounts/{aid}/hooks/subscriptions/{id}`.
pub(crate) async fn delete_subscription(
    State(shared): State<Arc<Shared>>,
    Path((aid, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = authorized(&shared, &headers).and_then(|()| account_matches(&shared, &aid)) {
        return r;
    }
    let mut inner = shared.state.lock();
    let before = inner.subscriptions.len();
    inner.subscriptions.retain(|s| s.id != id);
    if inner.subscriptions.len() == before {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!("subscription {id} not found"),
        );
    }
    StatusCode::NO_CONTENT.into_response()
}

/// What changed in a transaction, for the pushes it causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// Created: the session callback, `checkout_transaction`, and `checkout_authorization`
    /// when it is authorized.
    Created,
    /// Created in another status, or updated (a capture, a status set): `checkout_transaction`.
    Updated,
    /// A `VOID` event was applied: `checkout_transaction`, and the callback when its URL asks
    /// for `report_event=VOID`.
    Voided,
}

/// Sends what Dintero sends when transaction `id` changes: its session callback (when it has a
/// callback URL that asks for this change) and the account webhooks subscribed to it, each in
/// its own task.
pub(crate) fn transaction_changed(shared: &Arc<Shared>, id: &str, change: Change) {
    let (transaction, callback_url, event_id, subscriptions) = {
        let inner = shared.state.lock();
        let Some(stored) = inner.transactions.get(id) else {
            return;
        };
        let event_id = stored.transaction["events"]
            .as_array()
            .and_then(|events| events.iter().rev().find(|e| e["event"] == "VOID"))
            .and_then(|e| e["id"].as_str())
            .map(str::to_owned);
        let subscriptions: Vec<Subscription> = inner
            .subscriptions
            .iter()
            .filter(|s| s.active)
            .cloned()
            .collect();
        (
            stored.transaction.clone(),
            stored.callback_url.clone(),
            event_id,
            subscriptions,
        )
    };
    if let Some(url) = callback_url {
        let event = match change {
            Change::Created => Some(None),
            Change::Voided => {
                let asks = url::Url::parse(&url).is_ok_and(|u| {
                    u.query_pairs()
                        .any(|(k, v)| k == "report_event" && v == "VOID")
                });
                asks.then(|| Some(("VOID".to_owned(), event_id.unwrap_or_default())))
            }
            Change::Updated => None,
        };
        if let Some(event) = event {
            let (shared, id) = (Arc::clone(shared), id.to_owned());
            tokio::spawn(async move {
                callback_with_retries(&shared, &id, &url, event).await;
            });
        }
    }
    let account = &shared.config.account_id;
    let summary = json!({
        "id": transaction["id"], "session_id": transaction["session_id"],
        "merchant_reference": transaction["merchant_reference"],
        "merchant_reference_2": transaction.get("merchant_reference_2").cloned().unwrap_or(json!("")),
        "created_at": transaction["created_at"], "updated_at": transaction["updated_at"],
        "status": transaction["status"],
    });
    for subscription in subscriptions {
        if change == Change::Created
            && transaction["status"] == "AUTHORIZED"
            && subscription
                .events
                .iter()
                .any(|e| e == "checkout_authorization")
        {
            let payload = json!({
                "account_id": account, "event": "checkout_authorization",
                "authorization": {"merchant_reference": transaction["merchant_reference"], "session_id": transaction["session_id"], "transaction_id": transaction["id"]},
                "transaction": summary,
            });
            spawn_webhook(
                shared,
                subscription.clone(),
                "checkout_authorization",
                id.to_owned(),
                payload,
            );
        }
        if subscription
            .events
            .iter()
            .any(|e| e == "checkout_transaction")
        {
            let payload = json!({"account_id": account, "event": "checkout_transaction", "transaction": summary});
            spawn_webhook(
                shared,
                subscription,
                "checkout_transaction",
                id.to_owned(),
                payload,
            );
        }
    }
}

/// The wait before retry `retry` (1 for the first): the configured backoff, doubled each time,
/// at most 30 s.
fn backoff(shared: &Shared, retry: u32) -> Duration {
    shared
        .config
        .push_backoff
        .saturating_mul(1 << retry.saturating_sub(1).min(16))
        .min(Duration::from_secs(30))
}

/// One delivery of `event` to a subscription, in its own task: signed, retried on any answer
/// outside 2xx, a timeout or a connection error, up to `webhook_attempts`.
fn spawn_webhook(
    shared: &Arc<Shared>,
    subscription: Subscription,
    event: &'static str,
    transaction: String,
    mut payload: Value,
) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let delivery = uuid();
        payload["event_delivery"] = json!(delivery);
        // Signed over these very bytes, which are the ones sent.
        let body = serde_json::to_vec(&payload).expect("JSON serialises");
        let signature = subscription.secret.as_ref().map(|secret| {
            let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("any key length");
            mac.update(&body);
            hex::encode(mac.finalize().into_bytes())
        });
        let attempts = shared.config.webhook_attempts.max(1);
        for attempt in 1..=attempts {
            let mut request = shared
                .push_http
                .post(&subscription.url)
                .timeout(shared.config.webhook_timeout)
                .header("content-type", "application/json")
                .header("user-agent", "Dintero-Hook/1.0 (postbud-sandbox)")
                .header("event", event)
                .header("event-delivery", &delivery)
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header("event-signature", signature);
            }
            let status = match request.send().await {
                Ok(response) => response.status().as_u16(),
                Err(_) => 0,
            };
            shared.state.lock().stats.webhooks.push((
                event.to_owned(),
                transaction.clone(),
                status,
            ));
            if (200..300).contains(&status) {
                return;
            }
            if attempt < attempts {
                tokio::time::sleep(backoff(&shared, attempt)).await;
            }
        }
        tracing::warn!(event, url = %subscription.url, attempts, "webhook delivery given up");
    });
}

/// `Dintero-Signature` as documented: HMAC-SHA256 over
/// `t \n account \n METHOD \n host \n path \n query`, the query sorted by name with a stable sort
/// (`URLSearchParams.sort()`) and form-encoded as `URLSearchParams` writes it (WHATWG
/// `application/x-www-form-urlencoded`: space as `+`, `*-._` and alphanumerics raw, `~` as
/// `%7E`).
pub(crate) fn signature(
    secret: &str,
    account: &str,
    method: &str,
    url: &url::Url,
    t: i64,
) -> String {
    let mut pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let signed = format!(
        "{t}\n{account}\n{method}\n{}\n{}\n{query}",
        url.host_str().unwrap_or_default(),
        url.path()
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(signed.as_bytes());
    format!(
        "t={t},v0-hmac-sha256={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The callback for transaction `id` to `callback_url`, signed when a secret is configured:
/// `GET` with `transaction_id`, `session_id`, `merchant_reference` and `time` added to the
/// query (and `event`, `event_id` for a reported event), or `POST` with the transaction as its
/// body when the URL says `method=POST`.
fn callback_request(
    shared: &Shared,
    id: &str,
    callback_url: &str,
    event: Option<&(String, String)>,
) -> Result<reqwest::RequestBuilder, String> {
    let transaction = shared
        .state
        .lock()
        .transactions
        .get(id)
        .map(|s| s.transaction.clone())
        .ok_or_else(|| format!("no transaction {id}"))?;
    let text = |key: &str| transaction[key].as_str().unwrap_or_default().to_owned();
    let mut url =
        url::Url::parse(callback_url).map_err(|e| format!("callback url `{callback_url}`: {e}"))?;
    let post = url
        .query_pairs()
        .any(|(k, v)| k == "method" && v.eq_ignore_ascii_case("POST"));
    url.query_pairs_mut()
        .append_pair("transaction_id", id)
        .append_pair("session_id", &text("session_id"))
        .append_pair("merchant_reference", &text("merchant_reference"))
        .append_pair("time", &now());
    if let Some((name, event_id)) = event {
        url.query_pairs_mut()
            .append_pair("event", name)
            .append_pair("event_id", event_id);
    }
    let method = if post { "POST" } else { "GET" };
    let mut request = if post {
        shared.push_http.post(url.clone()).json(&transaction)
    } else {
        shared.push_http.get(url.clone())
    };
    if let Some(secret) = &shared.config.callback_secret {
        let t = jiff::Timestamp::now().as_second();
        request = request.header(
            "Dintero-Signature",
            signature(secret, &shared.config.account_id, method, &url, t),
        );
    }
    Ok(request.timeout(shared.config.callback_timeout))
}

/// Sends the callback once and records the status it got (0: no answer).
pub(crate) async fn send_callback(
    shared: &Shared,
    id: &str,
    callback_url: &str,
    event: Option<&(String, String)>,
) -> Result<u16, String> {
    let request = callback_request(shared, id, callback_url, event)?;
    let (status, result) = match request.send().await {
        Ok(response) => {
            let status = response.status().as_u16();
            (status, Ok(status))
        }
        Err(e) => (0, Err(e.to_string())),
    };
    shared
        .state
        .lock()
        .stats
        .callbacks
        .push((id.to_owned(), status));
    result
}

/// Sends the callback until it is answered with anything but a 5xx, up to `callback_attempts`:
/// a 4xx is final, as for Dintero. `delay_callback=<s>` (at most 60) on the URL holds the first
/// attempt.
async fn callback_with_retries(
    shared: &Shared,
    id: &str,
    callback_url: &str,
    event: Option<(String, String)>,
) {
    let delay = url::Url::parse(callback_url)
        .ok()
        .and_then(|u| {
            u.query_pairs()
                .find(|(k, _)| k == "delay_callback")
                .and_then(|(_, v)| v.parse::<u64>().ok())
        })
        .unwrap_or(0)
        .min(60);
    // Dintero calls back after authorization, not inside the request that authorized.
    tokio::time::sleep(Duration::from_millis(20) + Duration::from_secs(delay)).await;
    let attempts = shared.config.callback_attempts.max(1);
    for attempt in 1..=attempts {
        match send_callback(shared, id, callback_url, event.as_ref()).await {
            Ok(status) if !(500..600).contains(&status) => return,
            _ if attempt < attempts => tokio::time::sleep(backoff(shared, attempt)).await,
            _ => {}
        }
    }
    tracing::warn!(transaction = id, attempts, "callback given up");
}
