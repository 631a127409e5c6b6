//! Dintero Checkout API client: token cache, transactions, capture, void, `sessions/pay`, and
//! the invoice PDF behind `kravia:invoice_url`.

mod api;
pub mod document;
pub mod eligibility;
mod invoice;
pub mod model;
mod retry;
pub mod scopes;
pub mod signature;
mod token;
pub mod transaction_id;

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header::HeaderMap};
use serde_json::Value;
use url::Url;

pub use self::{
    api::{
        CaptureLines, CaptureOutcome, CaptureRequest, DinteroApi, DinteroError, TransactionFilter,
        TransactionPage, VoidOutcome,
    },
    invoice::invoice_of,
};
use self::{document::DocumentPolicy, model::Transaction, token::TokenCache};
pub use crate::config::DinteroSettings;
use postbud_channel::{
    RetryClass,
    http::{self, excerpt},
};

/// Most of a Dintero API response that is read (a transaction with its events, a list page).
pub const API_LIMIT: usize = 8 * 1024 * 1024;

/// [`DinteroApi`] over Dintero's HTTP API.
#[derive(Debug)]
pub struct DinteroClient {
    settings: DinteroSettings,
    http: reqwest::Client,
    tokens: TokenCache,
    documents: DocumentPolicy,
    configurations: ConfigurationCache,
}

/// Account and profile configuration, read with the API token and kept for
/// `dintero.configuration_cache`.
#[derive(Debug, Default)]
struct ConfigurationCache {
    entries:
        std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, Option<Value>)>>,
}

impl ConfigurationCache {
    fn get(&self, key: &str, ttl: Duration) -> Option<Option<Value>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < ttl)
            .map(|(_, value)| value.clone())
    }

    fn put(&self, key: &str, value: Option<Value>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.insert(key.to_owned(), (std::time::Instant::now(), value));
    }
}

impl DinteroClient {
    /// Builds the client. Fails only when the TLS stack cannot start.
    pub fn new(settings: DinteroSettings) -> Result<Self, DinteroError> {
        let http = http::client(settings.timeout)
            .build()
            .map_err(|e| DinteroError::permanent("start HTTP client", e.to_string()))?;
        let documents = DocumentPolicy::from_settings(&settings);
        Ok(Self {
            tokens: TokenCache::default(),
            settings,
            http,
            documents,
            configurations: ConfigurationCache::default(),
        })
    }

    /// The settings it was built with.
    pub fn settings(&self) -> &DinteroSettings {
        &self.settings
    }

    fn api(&self, path: &str) -> String {
        format!(
            "{}{}",
            self.settings.api_url.as_str().trim_end_matches('/'),
            path
        )
    }

    fn system_headers(&self, builder: RequestBuilder) -> RequestBuilder {
        builder
            .header("Dintero-System-Name", &self.settings.system_name)
            .header("Dintero-System-Version", &self.settings.system_version)
            .header("Dintero-System-Plugin-Name", "postbud")
            .header("Dintero-System-Plugin-Version", env!("CARGO_PKG_VERSION"))
    }

    /// Sends an authenticated API request, refreshing the token once on 401 and, for reads,
    /// retrying in place under [`retry::read`]'s policy.
    async fn call(
        &self,
        operation: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<Response, DinteroError> {
        self.call_with(operation, method, url, body, &[]).await
    }

    /// [`Self::call`] with extra request headers.
    async fn call_with(
        &self,
        operation: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Response, DinteroError> {
        let once = || self.send(operation, method.clone(), url, body, headers);
        if method == Method::GET {
            retry::read(operation, once).await
        } else {
            once().await
        }
    }

    /// One authenticated request, sent again once with a fresh token when Dintero answers 401
    /// (the cached token was revoked or expired early); a refusal becomes the error.
    async fn send(
        &self,
        operation: &str,
        method: Method,
        url: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Result<Response, DinteroError> {
        let mut refreshed = false;
        loop {
            let token = self
                .tokens
                .get(&self.http, &self.settings)
                .await
                .map_err(|e| e.with_operation(operation))?;
            let mut request = self
                .system_headers(self.http.request(method.clone(), url))
                .bearer_auth(token.expose());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| DinteroError::transport(operation, e))?;
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !refreshed {
                refreshed = true;
                self.tokens.invalidate().await;
                continue;
            }
            if status.is_success() {
                return Ok(response);
            }
            return Err(status_error(operation, response).await);
        }
    }

    /// `configuration` of an admin resource, cached; a 404 is `None`.
    async fn configuration(
        &self,
        operation: &str,
        url: &str,
    ) -> Result<Option<Value>, DinteroError> {
        let ttl = self.settings.configuration_cache;
        if let Some(cached) = self.configurations.get(url, ttl) {
            return Ok(cached);
        }
        let value = match self.call(operation, Method::GET, url, None).await {
            Ok(response) => read_json(operation, response)
                .await?
                .get("configuration")
                .cloned(),
            Err(e) if e.status() == Some(404) => None,
            Err(e) => return Err(e),
        };
        self.configurations.put(url, value.clone());
        Ok(value)
    }

    async fn transaction_from(
        operation: &str,
        response: Response,
    ) -> Result<Transaction, DinteroError> {
        let bytes = read_body(operation, response).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            DinteroError::permanent(
                operation,
                format!(
                    "the response is not a transaction ({e}): {}",
                    excerpt(&bytes)
                ),
            )
        })
    }
}

#[async_trait::async_trait]
impl DinteroApi for DinteroClient {
    async fn transaction(&self, id: &str) -> Result<Transaction, DinteroError> {
        let operation = format!("GET transaction {id}");
        let url = format!(
            "{}?includes=session",
            self.api(&format!("/transactions/{id}"))
        );
        let response = self.call(&operation, Method::GET, &url, None).await?;
        Self::transaction_from(&operation, response).await
    }

    async fn capture(
        &self,
        id: &str,
        request: &CaptureRequest,
    ) -> Result<CaptureOutcome, DinteroError> {
        let operation = format!("capture {id}");
        let body = serde_json::to_value(request)
            .map_err(|e| DinteroError::permanent(&operation, e.to_string()))?;
        let url = self.api(&format!("/transactions/{id}/capture"));
        let response = self
            .call(&operation, Method::POST, &url, Some(&body))
            .await
            .map_err(conflict_is_unknown)?;
        if response.status() == StatusCode::ACCEPTED {
            let request_id = header_str(response.headers(), "event-request-id");
            return Ok(CaptureOutcome::Accepted { request_id });
        }
        // A 2xx whose body cannot be read is still a capture that happened: never a refusal.
        let tx = Self::transaction_from(&operation, response)
            .await
            .map_err(|e| {
                e.with_retry_class(RetryClass::Temporary).map_message(|m| {
                    format!(
                        "{m}; the capture was answered 2xx, so it is read again, never sent again"
                    )
                })
            })?;
        Ok(CaptureOutcome::Done(Box::new(tx)))
    }

    async fn void(&self, id: &str) -> Result<VoidOutcome, DinteroError> {
        let operation = format!("void {id}");
        let url = self.api(&format!("/transactions/{id}/void"));
        // A conflict (another operation on the transaction under way) leaves the void's outcome
        // unknown: the caller reads the transaction again.
        let response = self
            .call(&operation, Method::POST, &url, None)
            .await
            .map_err(conflict_is_unknown)?;
        if response.status() == StatusCode::ACCEPTED {
            // The body of a 202 is the transaction as it was: only the VOID event settles it.
            let request_id = header_str(response.headers(), "event-request-id");
            return Ok(VoidOutcome::Accepted { request_id });
        }
        let tx = Self::transaction_from(&operation, response).await?;
        Ok(VoidOutcome::Done(Box::new(tx)))
    }

    async fn fetch_document(&self, url: &str) -> Result<Bytes, DinteroError> {
        self.documents
            .fetch(&self.http, &self.tokens, &self.settings, url)
            .await
    }

    async fn create_invoice(&self, request: &Value) -> Result<Transaction, DinteroError> {
        let operation = "create invoice (POST /sessions/pay)";
        let url = self.api("/sessions/pay");
        // Dintero refuses a second session for the same merchant_reference: a retried request
        // (after a timeout, a crash) cannot make a second invoice.
        let response = self
            .call_with(
                operation,
                Method::POST,
                &url,
                Some(request),
                &[("Dintero-Feature-Toggles", "strict-merchant-reference")],
            )
            .await?;
        let body = read_json(operation, response).await?;
        let failed = body.get("success") == Some(&Value::Bool(false))
            || body.get("status").and_then(Value::as_str) == Some("FAILED");
        if failed {
            return Err(DinteroError::permanent(
                operation,
                format!(
                    "Dintero did not authorize the invoice: {}",
                    pay_failure(&body)
                ),
            ));
        }
        <Transaction as serde::Deserialize>::deserialize(&body).map_err(|e| {
            DinteroError::permanent(
                operation,
                format!(
                    "the response is not a transaction ({e}): {}",
                    excerpt(body.to_string().as_bytes())
                ),
            )
        })
    }

    async fn checkout_configuration(&self) -> Result<Option<Value>, DinteroError> {
        let url = self.api("/admin/checkout");
        self.configuration("GET checkout configuration (/admin/checkout)", &url)
            .await
    }

    async fn payment_profile(&self, profile_id: &str) -> Result<Option<Value>, DinteroError> {
        let operation = format!("GET payment profile {profile_id}");
        let mut url = Url::parse(&self.api("/admin/session/profiles"))
            .map_err(|e| DinteroError::permanent(&operation, e.to_string()))?;
        // One path segment, escaped: the id comes from transaction metadata.
        url.path_segments_mut()
            .map_err(|()| {
                DinteroError::permanent(&operation, "dintero.api_url cannot have a path")
            })?
            .push(profile_id);
        self.configuration(&operation, url.as_str()).await
    }

    async fn transactions(
        &self,
        filter: &TransactionFilter,
    ) -> Result<TransactionPage, DinteroError> {
        let operation = "list transactions (GET /transactions)";
        let mut url = Url::parse(&self.api("/transactions"))
            .map_err(|e| DinteroError::permanent(operation, e.to_string()))?;
        {
            let mut query = url.query_pairs_mut();
            for status in &filter.statuses {
                query.append_pair("status", status);
            }
            let optional = [
                ("payment_product", &filter.payment_product),
                ("merchant_reference", &filter.merchant_reference),
                ("created_at.gte", &filter.created_since),
                ("starting_after", &filter.starting_after),
            ];
            for (key, value) in optional {
                if let Some(value) = value {
                    query.append_pair(key, value);
                }
            }
            query.append_pair("limit", &filter.limit.clamp(1, 100).to_string());
        }
        let response = self
            .call(operation, Method::GET, url.as_str(), None)
            .await?;
        let bytes = read_body(operation, response).await?;
        let entries: Vec<Value> = serde_json::from_slice(&bytes).map_err(|e| {
            DinteroError::permanent(
                operation,
                format!(
                    "the response is not a list of transactions ({e}): {}",
                    excerpt(&bytes)
                ),
            )
        })?;
        Ok(TransactionPage::from_entries(entries))
    }

    async fn probe(&self) -> Result<String, DinteroError> {
        self.tokens.invalidate().await;
        self.tokens.get(&self.http, &self.settings).await?;
        Ok(format!(
            "got an access token for account {} from {}",
            self.settings.account_id, self.settings.auth_url
        ))
    }
}

/// Dintero's reason for a `sessions/pay` that did not authorize: the newest failed event's
/// error, or the error of the body.
fn pay_failure(body: &Value) -> String {
    let event_error = body
        .get("events")
        .and_then(Value::as_array)
        .and_then(|events| events.iter().rev().find_map(|e| e.get("error")));
    match event_error.or_else(|| body.get("error")) {
        Some(error) => error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), str::to_owned),
        None => "no reason given".into(),
    }
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// A 409 on a capture or void leaves its outcome unknown (Dintero may be applying this very
/// operation): temporary, so the events are read before anything is sent again.
fn conflict_is_unknown(e: DinteroError) -> DinteroError {
    if e.status() != Some(409) {
        return e;
    }
    e.with_retry_class(RetryClass::Temporary).map_message(|m| {
        format!(
            "{m}; a conflict leaves the outcome unknown: the transaction's events are read again before anything is sent again"
        )
    })
}

/// Dintero's refusal, classified by the SDK's one rule, with Dintero's own words.
pub(crate) async fn status_error(operation: &str, response: Response) -> DinteroError {
    let status = response.status();
    let retry_after = http::retry_after(response.headers());
    let body = http::read_prefix(response, http::ANSWER_LIMIT).await;
    DinteroError::refusal(
        operation,
        status,
        retry_after,
        format!("HTTP {status}: {}", error_message(&body)),
    )
}

/// A Dintero API response body, within [`API_LIMIT`].
async fn read_body(operation: &str, response: Response) -> Result<Bytes, DinteroError> {
    http::read_limited(response, API_LIMIT)
        .await
        .map_err(|e| DinteroError::new(operation, e.into()))
}

/// A Dintero API response body as JSON, within [`API_LIMIT`].
async fn read_json(operation: &str, response: Response) -> Result<Value, DinteroError> {
    let bytes = read_body(operation, response).await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        DinteroError::permanent(
            operation,
            format!("the response is not JSON ({e}): {}", excerpt(&bytes)),
        )
    })
}

/// Dintero's `{"error": {"code", "message"}}` as one line, or an excerpt of any other body.
fn error_message(body: &[u8]) -> String {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|b| b.get("error"));
    match error.and_then(|e| e.get("message")).and_then(Value::as_str) {
        Some(message) => match error.and_then(|e| e.get("code")).and_then(Value::as_str) {
            Some(code) => excerpt(format!("{message} (code {code})").as_bytes()),
            None => excerpt(message.as_bytes()),
        },
        None => excerpt(body),
    }
}
