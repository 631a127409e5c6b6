//! Dintero's API as the engine uses it: the seam between the flow and the HTTP client
//! ([`DinteroClient`](super::DinteroClient)). Tests bring their own implementation to play a
//! Dintero that misbehaves in ways the sandbox does not.

use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use super::model::Transaction;
use postbud_channel::{ChannelError, ErrorKind, RetryClass};
use reqwest::StatusCode;

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
    ) -> Result<TransactionPage, DinteroError> {
        Ok(TransactionPage::default())
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
    /// The merchant's own reference for the settlement report (see [`CaptureRequest::full`]);
    /// left out when the transaction has none. Postbud recognises its capture by its own
    /// record of the request, never by this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_reference: Option<String>,
    /// Every line, the shipping option among them, when they can be sent as Dintero checks
    /// them (see [`CaptureLines`]); otherwise left out, and the full amount is captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<Value>>,
}

/// How the transaction's lines went into a capture, for the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureLines {
    /// Sent: this many lines (the shipping option counted), summing to the amount.
    Sent(usize),
    /// The transaction has no lines: the amount alone is captured.
    None,
    /// Left out, and why: the full amount is captured without lines.
    LeftOut(String),
}

impl std::fmt::Display for CaptureLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sent(n) => write!(f, "{n} line(s)"),
            Self::None => f.write_str("no lines"),
            Self::LeftOut(why) => write!(
                f,
                "without items: {why}, so the full amount is captured without lines"
            ),
        }
    }
}

impl CaptureRequest {
    /// The full capture of `tx`.
    ///
    /// The lines are the items and the shipping option ("include all the captured items in the
    /// call to /capture, also the shipping option", Dintero's integration checklist). Dintero
    /// refuses lines whose `line_id`s repeat or whose amounts do not add up to `amount` (its own
    /// WooCommerce plugin adds a rounding line for that reason); `items` is optional, so lines
    /// that cannot be sent as they are are left out rather than altered, and the amount alone
    /// is captured.
    ///
    /// `capture_reference` is the merchant's own: it "overrides" `order.event_reference` on the
    /// settlement report, so it is that value (`metadata.event_reference`), else the
    /// `merchant_reference`.
    pub fn full(tx: &Transaction) -> (Self, CaptureLines) {
        let capture_reference = tx
            .metadata_str("event_reference")
            .or(tx.merchant_reference.as_deref())
            .filter(|r| !r.trim().is_empty())
            .map(str::to_owned);
        let (items, lines) = match capture_lines(tx) {
            Ok(items) if items.is_empty() => (None, CaptureLines::None),
            Ok(items) => {
                let n = items.len();
                (Some(items), CaptureLines::Sent(n))
            }
            Err(why) => (None, CaptureLines::LeftOut(why)),
        };
        let request = Self {
            amount: tx.amount,
            capture_reference,
            items,
        };
        (request, lines)
    }
}

/// The capture lines of `tx` (its items, then its shipping option), or why they cannot be sent.
fn capture_lines(tx: &Transaction) -> Result<Vec<Value>, String> {
    let mut lines = Vec::with_capacity(tx.items.len() + 1);
    let mut seen = std::collections::HashSet::new();
    let mut total: i64 = 0;
    let all = tx
        .items
        .iter()
        .map(|item| ("items", item))
        .chain(tx.shipping_option.iter().map(|s| ("shipping_option", s)));
    for (source, item) in all {
        let Some(line_id) = item.line_id.as_deref().filter(|l| !l.is_empty()) else {
            return Err(format!("a line ({source}) has no line_id"));
        };
        if !seen.insert(line_id) {
            return Err(format!("line_id `{line_id}` is used twice"));
        }
        total = total.saturating_add(item.amount);
        let mut line = serde_json::Map::new();
        line.insert("line_id".into(), Value::from(line_id));
        line.insert("amount".into(), Value::from(item.amount));
        let quantity = item
            .quantity
            .or((source == "shipping_option").then_some(1.0));
        let optional = [
            ("quantity", quantity.map(Value::from)),
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
        lines.push(Value::Object(line));
    }
    if !lines.is_empty() && total != tx.amount {
        return Err(format!(
            "the lines sum to {total}, the amount is {}",
            tx.amount
        ));
    }
    Ok(lines)
}

/// One page of `GET /v1/transactions`. An entry Postbud cannot read is set aside with the
/// reason, so one odd transaction never hides the rest of the page, nor the pages after it.
#[derive(Debug, Clone, Default)]
pub struct TransactionPage {
    /// The transactions read.
    pub transactions: Vec<Transaction>,
    /// The entries that could not be read as transactions: their `id` when they have one, and
    /// why.
    pub unreadable: Vec<(Option<String>, String)>,
    /// Entries on the page, read or not: a full page means another may follow.
    pub len: usize,
    /// The `id` of the page's last entry that has one, read or not: where the next page starts.
    pub last_id: Option<String>,
}

impl TransactionPage {
    /// Reads a page from Dintero's JSON array, entry by entry.
    pub fn from_entries(entries: Vec<Value>) -> Self {
        let len = entries.len();
        let id_of = |entry: &Value| entry.get("id").and_then(Value::as_str).map(str::to_owned);
        // The cursor: the last entry's id, or the last id on the page when it has none (a page
        // must never end a listing because one entry is odd).
        let last_id = entries.iter().rev().find_map(id_of);
        let mut page = Self {
            len,
            last_id,
            ..Self::default()
        };
        for entry in entries {
            let id = id_of(&entry);
            match serde_json::from_value::<Transaction>(entry) {
                Ok(tx) => page.transactions.push(tx),
                Err(e) => page.unreadable.push((id, e.to_string())),
            }
        }
        page
    }
}

impl From<Vec<Transaction>> for TransactionPage {
    fn from(transactions: Vec<Transaction>) -> Self {
        Self {
            len: transactions.len(),
            last_id: transactions.last().map(|t| t.id.clone()),
            transactions,
            unreadable: Vec::new(),
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

/// A failed call to Dintero, classified as a channel error is: what happened
/// ([`DinteroError::kind`]), whether to retry ([`DinteroError::retry_class`]), the HTTP status
/// when Dintero answered, and the underlying error ([`std::error::Error::source`]).
#[derive(Debug, Clone)]
pub struct DinteroError {
    operation: String,
    status: Option<u16>,
    // Boxed: the error travels in every `Result` of the Dintero client, and the SDK's error is
    // large next to the rest.
    error: Box<ChannelError>,
}

impl DinteroError {
    /// `operation` failed with `error`.
    pub fn new(operation: impl Into<String>, error: ChannelError) -> Self {
        Self {
            operation: operation.into(),
            status: None,
            error: Box::new(error),
        }
    }

    /// A permanent error without an HTTP status (a refused URL, a body that is not a PDF).
    pub fn permanent(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(operation, ChannelError::permanent(message))
    }

    /// A temporary error without an HTTP status (a capture whose outcome is not known yet).
    pub fn temporary(operation: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(operation, ChannelError::temporary(message))
    }

    /// Dintero answered `status`, described by `detail`: classified by the SDK's one rule
    /// ([`postbud_channel::http::refusal`]), the status kept.
    pub fn refusal(
        operation: impl Into<String>,
        status: StatusCode,
        retry_after: Option<Duration>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status: Some(status.as_u16()),
            ..Self::new(
                operation,
                postbud_channel::http::refusal(status, retry_after, detail),
            )
        }
    }

    /// The request got no answer: the SDK's one classifier
    /// ([`postbud_channel::http::transport_error`]), with the URL shown redacted (a document
    /// URL may be a signed link).
    pub fn transport(operation: impl Into<String>, error: reqwest::Error) -> Self {
        let url = error
            .url()
            .map(|u| format!(" ({})", postbud_channel::http::redact_url(u.as_str())))
            .unwrap_or_default();
        let error =
            postbud_channel::http::transport_error(error).map_message(|m| format!("{m}{url}"));
        Self::new(operation, error)
    }

    /// The same failure, attributed to `operation`.
    pub fn with_operation(mut self, operation: impl Into<String>) -> Self {
        self.operation = operation.into();
        self
    }

    /// The same failure, retried (or not) against its kind's habit.
    pub fn with_retry_class(mut self, retry_class: RetryClass) -> Self {
        self.error = Box::new((*self.error).with_retry_class(retry_class));
        self
    }

    /// The same failure, its message rewritten by `f` (to add what the caller knows).
    pub fn map_message(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.error = Box::new((*self.error).map_message(f));
        self
    }

    /// What was attempted: `GET transaction T1.x`, `capture T1.x`, `fetch invoice PDF`.
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// What happened.
    pub fn kind(&self) -> ErrorKind {
        self.error.kind()
    }

    /// Temporary (retry) or permanent.
    pub fn retry_class(&self) -> RetryClass {
        self.error.retry_class()
    }

    /// True when a retry may succeed.
    pub fn is_temporary(&self) -> bool {
        self.error.is_temporary()
    }

    /// The status and Dintero's own words (an excerpt of its body), or the transport error.
    pub fn message(&self) -> &str {
        self.error.message()
    }

    /// Dintero's `Retry-After`.
    pub fn retry_after(&self) -> Option<Duration> {
        self.error.retry_after()
    }

    /// The HTTP status, when Dintero answered.
    pub fn status(&self) -> Option<u16> {
        self.status
    }
}

impl std::fmt::Display for DinteroError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.operation, self.error.message())
    }
}

impl std::error::Error for DinteroError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(self.error.as_ref())
    }
}
