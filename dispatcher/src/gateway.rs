//! The payment provider as the engine sees it. Dintero is the implementation
//! ([`crate::dintero::DinteroGateway`]); tests and other providers can bring their own.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::{channel::ErrorKind, dintero::model::Transaction};

/// Transaction operations Postbud needs from the provider.
#[async_trait::async_trait]
pub trait PaymentGateway: Send + Sync + std::fmt::Debug {
    /// The transaction with its events and session (for eligibility).
    async fn transaction(&self, id: &str) -> Result<Transaction, GatewayError>;
    /// Starts collection. Must not be called when [`Transaction::capture_event`] is present.
    async fn capture(
        &self,
        id: &str,
        request: &CaptureRequest,
    ) -> Result<CaptureOutcome, GatewayError>;
    /// Cancels the invoice.
    async fn void(&self, id: &str) -> Result<Transaction, GatewayError>;
    /// Downloads the document behind `kravia:invoice_url`, following a Files API descriptor.
    async fn fetch_document(&self, url: &str) -> Result<Bytes, GatewayError>;
    /// Creates a merchant-initiated invoice (`POST /v1/sessions/pay`).
    async fn create_invoice(&self, request: &Value) -> Result<Transaction, GatewayError>;
    /// Checks the credentials without changing anything; says what was checked.
    async fn probe(&self) -> Result<String, GatewayError> {
        Ok("no probe for this gateway".into())
    }
}

/// Body of `POST /transactions/{id}/capture`.
#[derive(Debug, Clone, Serialize)]
pub struct CaptureRequest {
    /// The full authorized amount.
    pub amount: i64,
    /// Stable per transaction, so our capture is recognisable in `event_reference`.
    pub capture_reference: String,
    /// Every line, with its amount and quantity.
    pub items: Vec<Value>,
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

/// A failed call to the provider, classified like a channel error.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation}: {message}")]
pub struct GatewayError {
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

impl GatewayError {
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
