//! Dintero's API as the engine uses it: the seam between the flow and the HTTP client
//! ([`DinteroClient`](super::DinteroClient)). Tests bring their own implementation to play a
//! Dintero that misbehaves in ways the sandbox does not.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::model::Transaction;
use crate::channel::ErrorKind;

/// The Dintero operations the engine needs.
#[async_trait::async_trait]
pub trait DinteroApi: Send + Sync + std::fmt::Debug {
    /// The transaction with its events and session (for eligibility).
    async fn transaction(&self, id: &str) -> Result<Transaction, DinteroError>;
    /// Starts collection. Must not be called when [`Transaction::capture_event`] is present.
    async fn capture(
        &self,
        id: &str,
        request: &CaptureRequest,
    ) -> Result<CaptureOutcome, DinteroError>;
    /// Cancels the invoice.
    async fn void(&self, id: &str) -> Result<VoidOutcome, DinteroError>;
    /// Downloads the document behind `kravia:invoice_url`, following a Files API descriptor.
    async fn fetch_document(&self, url: &str) -> Result<Bytes, DinteroError>;
    /// Creates a merchant-initiated invoice (`POST /v1/sessions/pay`).
    async fn create_invoice(&self, request: &Value) -> Result<Transaction, DinteroError>;
    /// The `configuration` of the account's checkout (`GET /v1/admin/checkout`), where the
    /// account-wide `payment_options` live; `None` when the provider has none.
    async fn checkout_configuration(&self) -> Result<Option<Value>, DinteroError> {
        Ok(None)
    }
    /// The `configuration` of a payment profile (`GET /v1/admin/session/profiles/{id}`);
    /// `None` when it does not exist.
    async fn payment_profile(&self, _profile_id: &str) -> Result<Option<Value>, DinteroError> {
        Ok(None)
    }
    /// One page of the account's transactions (`GET /v1/transactions`), newest first.
    async fn transactions(
        &self,
        _filter: &TransactionFilter,
    ) -> Result<Vec<Transaction>, DinteroError> {
        Ok(Vec::new())
    }
    /// Checks the credentials without changing anything; says what was checked.
    async fn probe(&self) -> Result<String, DinteroError> {
        Ok("no probe for this gateway".into())
    }
}

/// Body of `POST /transactions/{id}/capture`. It never carries a JSON `null`: Dintero's schema
/// has no nullable field there and answers 400.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureRequest {
    /// The full authorized amount.
    pub amount: i64,
    /// Stable per transaction, so our capture is recognisable in `event_reference`.
    pub capture_reference: String,
    /// Every line (`line_id`, `amount` and the optional fields the line has), or nothing when a
    /// line lacks its `line_id`: `items` is optional, and the full amount is captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Value>>,
}

impl CaptureRequest {
    /// The full capture of `tx`, with its lines when every line can be named.
    pub fn full(tx: &Transaction, capture_reference: String) -> Self {
        let items = tx
            .items
            .iter()
            .map(|item| {
                let line_id = item.line_id.as_ref().filter(|l| !l.is_empty())?;
                let mut line = serde_json::Map::new();
                line.insert("line_id".into(), Value::from(line_id.as_str()));
                line.insert("amount".into(), Value::from(item.amount));
                let optional = [
                    ("quantity", item.quantity.map(Value::from)),
                    ("vat", item.vat.map(Value::from)),
                    ("vat_amount", item.vat_amount.map(Value::from)),
                    ("id", item.id.as_deref().map(Value::from)),
                    ("description", item.description.as_deref().map(Value::from)),
                ];
                for (key, value) in optional {
                    // A NaN would serialise as null.
                    if let Some(value) = value.filter(|v| !v.is_null()) {
                        line.insert(key.into(), value);
                    }
                }
                Some(Value::Object(line))
            })
            .collect::<Option<Vec<_>>>()
            .filter(|items| !items.is_empty());
        Self {
            amount: tx.amount,
            capture_reference,
            items,
        }
    }
}

/// Which transactions [`DinteroApi::transactions`] lists; every field that is set must hold.
#[derive(Debug, Clone, Default)]
pub struct TransactionFilter {
    /// Any of these statuses.
    pub statuses: Vec<String>,
    /// `kravia`, ...
    pub payment_product: Option<String>,
    /// The merchant's reference.
    pub merchant_reference: Option<String>,
    /// Created at or after this RFC 3339 time.
    pub created_since: Option<String>,
    /// The last id of the previous page.
    pub starting_after: Option<String>,
    /// Page size, 1 to 100.
    pub limit: u32,
}

/// How Dintero answered a capture.
#[derive(Debug, Clone)]
pub enum CaptureOutcome {
    /// 200: the transaction carries the `INITIATE_CAPTURE` event.
    Done(Box<Transaction>),
    /// 202: accepted; an event with this `request_id` (or correlated to it) will follow.
    Accepted {
        /// `event-request-id` header.
        request_id: Option<String>,
    },
}

/// How Dintero answered a void.
#[derive(Debug, Clone)]
pub enum VoidOutcome {
    /// 200: the transaction after the void.
    Done(Box<Transaction>),
    /// 202: accepted; a `VOID` event correlated to this request (success or failure) will
    /// complete it.
    Accepted {
        /// `event-request-id` header.
        request_id: Option<String>,
    },
}

/// A failed call to Dintero, classified like a channel error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct DinteroError {
    /// What was attempted: `GET transaction T1.x`, `capture T1.x`, `fetch invoice PDF`.
    pub operation: String,
    /// Temporary (retry) or permanent.
    pub kind: ErrorKind,
    /// Status and body excerpt, or the transport error.
    pub message: String,
    /// Provider's `Retry-After`.
    pub retry_after: Option<Duration>,
    /// The HTTP status, when there was a response.
    pub status: Option<u16>,
}

impl DinteroError {
    /// A permanent error without an HTTP status (a refused URL, a body that is not a PDF).
    pub fn permanent(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            operation: operation.into(),
            kind: ErrorKind::Permanent,
            message: message.into(),
            retry_after: None,
            status: None,
        }
    }

    /// A temporary error without an HTTP status (timeout, connection refused).
    pub fn temporary(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Temporary,
            ..Self::permanent(operation, message)
        }
    }

    /// True when a retry may succeed.
    pub fn is_temporary(&self) -> bool {
        self.kind == ErrorKind::Temporary
    }
}
