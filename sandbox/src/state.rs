//! The sandbox's data: accounts, tokens, transactions, faults, counters.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Which Dintero operation a fault applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `POST /accounts/{aid}/auth/token`.
    Token,
    /// `GET /transactions/{id}`.
    Get,
    /// `POST /transactions/{id}/capture`.
    Capture,
    /// `POST /transactions/{id}/void`.
    Void,
    /// `GET /files/{fid}` (the descriptor) or the direct invoice URL.
    File,
    /// The PDF bytes on the CDN (`GET /files/{fid}.pdf` on the CDN's own origin).
    Pdf,
    /// `POST /sessions/pay`.
    Pay,
    /// `GET /transactions` (the list).
    List,
    /// `GET /admin/checkout` and `GET /admin/session/profiles/{id}`.
    Admin,
}

/// What goes wrong.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status (and `Retry-After` when given) instead of doing the operation.
    Status {
        /// HTTP status.
        status: u16,
        /// `Retry-After` seconds.
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// Do the operation, then hold the response this long (a client timeout sees no answer,
    /// although the operation happened).
    SlowResponse {
        /// Milliseconds.
        ms: u64,
    },
    /// Capture or void: answer 202 with `event-request-id` and the transaction as it was; the
    /// event completing it (its `correlation_request_id` is the request id) appears after
    /// `after_gets` further reads of the transaction.
    Accepted {
        /// Reads before the event shows.
        #[serde(default = "one")]
        after_gets: u32,
        /// The late event reports a failure (`success: false` with an error) and changes nothing.
        #[serde(default)]
        fail: bool,
    },
    /// `sessions/pay` only: answer 200 with `success: false`, status `FAILED` and this message
    /// in the failed event's error, as Dintero does for a refused authorization.
    Declined {
        /// The error message.
        message: String,
    },
    /// Do the operation, then answer with this status instead of its result (a gateway in front
    /// of Dintero failing on the way back): the client is told it failed, yet it happened.
    StatusAfterApplying {
        /// HTTP status.
        status: u16,
    },
    /// Do the operation, then close the connection without a byte of answer: the client sees a
    /// connection error, yet it happened.
    DropAfterApplying,
}

fn one() -> u32 {
    1
}

/// A fault, applied to the next `times` matching requests.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// Which operation.
    pub operation: Operation,
    /// Only this transaction (any when absent).
    #[serde(default)]
    pub transaction: Option<String>,
    /// What happens.
    #[serde(flatten)]
    pub kind: FaultKind,
    /// How many requests it hits.
    #[serde(default = "one")]
    pub times: u32,
    /// Matching requests let through before it starts hitting.
    #[serde(default)]
    pub skip: u32,
}

/// What a seeded transaction looks like. Every field has a sensible default.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Seed {
    /// `kravia` unless set.
    pub payment_product: Option<String>,
    /// `kravia.invoice_b2c` unless set.
    pub product_type: Option<String>,
    /// `AUTHORIZED` unless set.
    pub status: Option<String>,
    /// `NOK` unless set.
    pub currency: Option<String>,
    /// Session-level `invoice_channel` (`configuration.kravia.<type>`); `merchant` unless
    /// `session_channel` is explicitly null-ed with `no_session_channel`.
    pub session_channel: Option<String>,
    /// Leave the session level unset.
    pub no_session_channel: bool,
    /// Make the session from a payment profile whose `configuration.kravia.<type>` has this
    /// channel; the transaction records the profile in `metadata["session:profile_id"]`.
    pub profile_channel: Option<String>,
    /// Make the session from a payment profile whose `configuration.payment_options[]` has
    /// this channel for the transaction's type.
    pub profile_options_channel: Option<String>,
    /// Write `invoice_delivery_method` instead of `invoice_channel` (newer schemas).
    pub use_delivery_method_key: bool,
    /// Billing address; a Norwegian consumer unless set.
    pub billing_address: Option<Value>,
    /// Order lines; one 500 NOK line at 25 % unless set.
    pub items: Option<Vec<Value>>,
    /// The chosen shipping option (`line_id`, `amount`, `vat`, ...), kept beside the items as
    /// Dintero keeps it; its amount is part of the transaction's.
    pub shipping_option: Option<Value>,
    /// Top-level fields written over the transaction as made (a `created_at` long ago, an
    /// `amount` of a shape Postbud cannot read): what a test needs that no other option makes.
    pub overrides: Option<serde_json::Map<String, Value>>,
    /// Kravia sent this invoice itself and started collection: the transaction carries
    /// Kravia's own `INITIATE_CAPTURE` (no `event_reference`), as Dintero's overview describes.
    pub kravia_delivered: bool,
    /// Merchant reference.
    pub merchant_reference: Option<String>,
    /// `kravia:invoice_number`; a sandbox number unless set.
    pub invoice_number: Option<String>,
    /// `descriptor` (Files API JSON, default) or `direct` (the URL serves the PDF).
    pub pdf_shape: Option<String>,
    /// `valid` (default), `html`, `truncated`, or `oversize:<bytes>`.
    pub pdf_content: Option<String>,
    /// Use this `kravia:invoice_url` instead of the sandbox's own.
    pub invoice_url: Option<String>,
    /// The Kravia metadata is missing from the first N reads.
    pub metadata_after_gets: u32,
    /// Send the session callback (GET, signed when a secret is set) here once authorized, as
    /// Dintero does for `session.url.callback_url`.
    pub callback_url: Option<String>,
    /// The PDF gets payment details at capture (new bytes) and the due date moves, as the
    /// delivery page's "payment details added" may mean.
    pub pdf_changes_at_capture: bool,
}

/// A stored transaction and its sandbox-only facts.
#[derive(Debug, Clone)]
pub struct Stored {
    pub transaction: Value,
    pub session: Value,
    pub pdf_shape: String,
    pub pdf_content: String,
    pub hide_metadata_gets: u32,
    /// (event, reads left before it shows)
    pub pending_events: Vec<(Value, u32)>,
    pub pdf: Vec<u8>,
    pub pdf_changes_at_capture: bool,
    /// Order of creation, for the list's cursor.
    pub seq: u64,
    /// `session.url.callback_url`: where Dintero calls back.
    pub callback_url: Option<String>,
}

/// Counters a test reads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Capture calls that took effect, per transaction.
    pub captures: BTreeMap<String, u32>,
    /// Void calls that took effect, per transaction.
    pub voids: BTreeMap<String, u32>,
    /// Tokens issued.
    pub tokens_issued: u32,
    /// Requests per operation, including refused ones.
    pub requests: BTreeMap<String, u32>,
    /// `Dintero-System-*` headers of the last capture, void or pay request.
    pub system_headers: BTreeMap<String, String>,
    /// Callback attempts: the transaction, and the HTTP status each got (0: no answer).
    pub callbacks: Vec<(String, u16)>,
    /// Webhook delivery attempts: the event, the transaction (empty for `ping`), and the HTTP
    /// status each got (0: no answer).
    pub webhooks: Vec<(String, String, u16)>,
    /// Messages the SMS provider stand-ins accepted.
    pub sms: Vec<crate::sms::Sms>,
    /// Delivery reports the SMS stand-ins sent: (the provider's message or batch id, the HTTP
    /// status each got, 0 for no answer).
    pub sms_reports: Vec<(String, u16)>,
    /// Requests to the CDN that carried an `Authorization` header (each refused with a 400).
    pub cdn_with_authorization: u32,
    /// Requests to the CDN with a link past its `expires_at` (each refused with a 403).
    pub cdn_expired: u32,
}

#[derive(Debug, Default)]
pub struct Inner {
    pub transactions: HashMap<String, Stored>,
    /// The account's checkout configuration (`GET /admin/checkout`).
    pub checkout: Value,
    /// Payment profiles by id.
    pub profiles: HashMap<String, Value>,
    /// Merchant references of the sessions made so far.
    pub merchant_references: HashMap<String, String>,
    /// Issued tokens and when each expires (Unix milliseconds).
    pub tokens: HashMap<String, u64>,
    pub faults: Vec<Fault>,
    /// Account webhook subscriptions.
    pub subscriptions: Vec<crate::push::Subscription>,
    pub stats: Stats,
    /// How the SMS stand-ins send delivery reports.
    pub sms_reports: crate::sms::Reports,
    pub invoice_counter: u32,
    pub seq: u64,
}

#[derive(Debug, Default)]
pub struct State {
    pub inner: Mutex<Inner>,
}

impl State {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    /// Takes the first fault matching the request, counting the request.
    pub fn take_fault(
        &mut self,
        operation: Operation,
        transaction: Option<&str>,
    ) -> Option<FaultKind> {
        let name = serde_json::to_value(operation)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *self.stats.requests.entry(name).or_default() += 1;
        let index = self.faults.iter().position(|f| {
            f.operation == operation
                && f.times > 0
                && (f.transaction.is_none() || f.transaction.as_deref() == transaction)
        })?;
        let fault = &mut self.faults[index];
        if fault.skip > 0 {
            fault.skip -= 1;
            return None;
        }
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            self.faults.remove(index);
        }
        Some(kind)
    }
}

pub fn default_billing() -> Value {
    json!({
        "first_name": "Kari", "last_name": "Nordmann",
        "email": "kari@example.no", "phone_number": "+4791234567",
        "address_line": "Storgata 1", "postal_code": "0151", "postal_place": "Oslo", "country": "NO"
    })
}

pub fn default_items() -> Vec<Value> {
    vec![
        json!({"line_id": "1", "id": "item-1", "description": "Consulting", "quantity": 1, "amount": 50000, "vat": 25, "vat_amount": 10000}),
    ]
}
