//! Dintero's transaction, parsed tolerantly: unknown statuses, events and fields are kept.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// `GET /v1/transactions/{id}`. Only the fields Postbud reads are typed; the rest stay in
/// [`Transaction::extra`] so nothing Dintero adds is lost when a snapshot is stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Transaction {
    /// `<aid>.<opaque>`.
    pub id: String,
    /// `kravia`, `vipps`, ...
    pub payment_product: String,
    /// `kravia.invoice_b2b`, ...
    pub payment_product_type: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// Lifecycle status.
    pub status: Status,
    /// The merchant's reference.
    #[serde(default)]
    pub merchant_reference: Option<String>,
    /// The session behind the transaction.
    #[serde(default)]
    pub session_id: Option<String>,
    /// `{customer_id, email, phone_number}`.
    #[serde(default)]
    pub customer: Option<CustomerRef>,
    /// Billing address.
    #[serde(default)]
    pub billing_address: Option<Address>,
    /// Order lines.
    #[serde(default)]
    pub items: Vec<Item>,
    /// The shipping option chosen (`id`, `line_id`, `amount`, `vat`, `vat_amount`, ...): a
    /// line of its own, beside `items`, that a capture must include. One that cannot be read as
    /// a line is left out (the capture's lines then do not add up, and the full amount is
    /// captured without them) rather than make the whole transaction unreadable.
    #[serde(default, deserialize_with = "lenient_line")]
    pub shipping_option: Option<Item>,
    /// Operations applied so far, oldest first.
    #[serde(default)]
    pub events: Vec<Event>,
    /// `kravia:invoice_number`, `kravia:invoice_url`, `merchant_name`, ...
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// The session, when fetched with `includes=session`.
    #[serde(default)]
    pub session: Option<Value>,
    /// Everything else Dintero sent.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A line, or `None` when the value is not one.
fn lenient_line<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Item>, D::Error> {
    let value = Option::<Value>::deserialize(d)?;
    Ok(value.and_then(|v| serde_json::from_value(v).ok()))
}

/// `customer` on a transaction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CustomerRef {
    /// Merchant's customer id.
    #[serde(default)]
    pub customer_id: Option<String>,
    /// Email.
    #[serde(default)]
    pub email: Option<String>,
    /// Phone.
    #[serde(default)]
    pub phone_number: Option<String>,
}

/// Dintero's `OrderAddress`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Address {
    #[serde(default)]
    pub first_name: Option<String>,
    #[serde(default)]
    pub last_name: Option<String>,
    #[serde(default)]
    pub business_name: Option<String>,
    #[serde(default)]
    pub organization_number: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub phone_number: Option<String>,
    #[serde(default)]
    pub address_line: Option<String>,
    #[serde(default)]
    pub address_line_2: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub postal_place: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub customer_reference: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// Dintero's `OrderItem`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[allow(missing_docs)]
pub struct Item {
    #[serde(default)]
    pub line_id: Option<String>,
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub quantity: Option<f64>,
    pub amount: i64,
    #[serde(default)]
    pub vat_amount: Option<i64>,
    #[serde(default)]
    pub vat: Option<f64>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A `TransactionEvent`. The key is `event`; older Kravia pages call it `name`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Event id.
    #[serde(default)]
    pub id: Option<String>,
    /// `CAPTURE`, `INITIATE_CAPTURE`, ... ; unknown names are kept as they are.
    #[serde(alias = "name")]
    pub event: EventName,
    /// Whether the operation succeeded. Optional in Dintero's schema ("the event operation
    /// completed with success"): absent is neither a success nor a failure, not yet.
    #[serde(default)]
    pub success: Option<bool>,
    /// Status after the event.
    #[serde(default)]
    pub transaction_status: Option<Status>,
    /// Amount in minor units.
    #[serde(default)]
    pub amount: Option<i64>,
    /// Request that created the event.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The earlier `INITIATE_*` request this event completes.
    #[serde(default)]
    pub correlation_request_id: Option<String>,
    /// The merchant's `capture_reference`.
    #[serde(default)]
    pub event_reference: Option<String>,
    /// Kravia puts invoice facts here.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Failure details when `success` is false.
    #[serde(default)]
    pub error: Option<Value>,
    /// Everything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

macro_rules! open_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know; kept verbatim.
            Other(String),
        }

        impl $name {
            /// The wire name.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)+
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                match s {
                    $($text => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Ok(Self::from(s.as_str()))
            }
        }
    };
}

open_enum!(
    /// Transaction status.
    Status {
        Initiated = "INITIATED",
        Authorized = "AUTHORIZED",
        AuthorizationVoided = "AUTHORIZATION_VOIDED",
        Captured = "CAPTURED",
        PartiallyCaptured = "PARTIALLY_CAPTURED",
        PartiallyCapturedRefunded = "PARTIALLY_CAPTURED_REFUNDED",
        Refunded = "REFUNDED",
        PartiallyRefunded = "PARTIALLY_REFUNDED",
        Declined = "DECLINED",
        Failed = "FAILED",
        Unknown = "UNKNOWN",
        OnHold = "ON_HOLD",
    }
);

open_enum!(
    /// Transaction event name.
    EventName {
        Initialize = "INITIALIZE",
        Initiate = "INITIATE",
        Authorize = "AUTHORIZE",
        Capture = "CAPTURE",
        Refund = "REFUND",
        Void = "VOID",
        InitiateRefund = "INITIATE_REFUND",
        InitiateVoid = "INITIATE_VOID",
        InitiateCapture = "INITIATE_CAPTURE",
        Settlement = "SETTLEMENT",
    }
);

impl Event {
    /// `success: true`.
    pub fn succeeded(&self) -> bool {
        self.success == Some(true)
    }

    /// `success: false`: Dintero refused the operation.
    pub fn failed(&self) -> bool {
        self.success == Some(false)
    }

    /// `INITIATE_CAPTURE` or `CAPTURE`.
    pub fn is_capture(&self) -> bool {
        matches!(self.event, EventName::InitiateCapture | EventName::Capture)
    }
}

impl Transaction {
    /// What a route's `when` looks at: product type, currency, billing country, and whether
    /// the billing address or the customer has an email address and a phone number.
    pub fn route_facts(&self) -> crate::config::RouteFacts<'_> {
        let billing = self.billing_address.as_ref();
        let customer = self.customer.as_ref();
        crate::config::RouteFacts {
            product_type: &self.payment_product_type,
            currency: &self.currency,
            country: billing.and_then(|b| b.country.as_deref()),
            has_email: billing
                .and_then(|b| b.email.as_ref())
                .or(customer.and_then(|c| c.email.as_ref()))
                .is_some(),
            has_phone: billing
                .and_then(|b| b.phone_number.as_ref())
                .or(customer.and_then(|c| c.phone_number.as_ref()))
                .is_some(),
            peppol: None,
        }
    }

    /// A string value of `metadata`.
    pub fn metadata_str(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(Value::as_str)
    }

    /// A Kravia fact from the transaction metadata or, failing that, the newest event that has it.
    pub fn kravia_event_value(&self, key: &str) -> Option<&str> {
        self.metadata_str(key).or_else(|| {
            self.events
                .iter()
                .rev()
                .find_map(|e| e.metadata.get(key).and_then(Value::as_str))
        })
    }

    /// The successful `INITIATE_CAPTURE` or `CAPTURE` event, if collection has started.
    pub fn capture_event(&self) -> Option<&Event> {
        self.events.iter().find(|e| e.succeeded() && e.is_capture())
    }

    /// An `INITIATE_CAPTURE` or `CAPTURE` event that says neither success nor failure: collection
    /// may have started, so nobody may capture or deliver on the belief that it has not.
    pub fn undecided_capture_event(&self) -> Option<&Event> {
        self.events
            .iter()
            .find(|e| e.success.is_none() && e.is_capture())
    }

    /// The event of one of `names` completing the accepted (202) request `request_id`,
    /// successful or not: the one whose `correlation_request_id` is the request (how Dintero
    /// links a completion to its `event-request-id`), else one whose own `request_id` is.
    pub fn completing_event(&self, request_id: &str, names: &[EventName]) -> Option<&Event> {
        let of_kind = |e: &&Event| names.contains(&e.event);
        self.events
            .iter()
            .filter(of_kind)
            .find(|e| e.correlation_request_id.as_deref() == Some(request_id))
            .or_else(|| {
                self.events
                    .iter()
                    .filter(of_kind)
                    .find(|e| e.request_id.as_deref() == Some(request_id))
            })
    }

    /// Whether a void has settled: `Some(Ok)` when the transaction is voided, `Some(Err)` with
    /// Dintero's reason when the `VOID` event answering `request_id` (or, without one, the newest
    /// `VOID` event) failed, `None` while nothing says yet.
    pub fn void_result(&self, request_id: Option<&str>) -> Option<Result<(), String>> {
        if self.is_voided() {
            return Some(Ok(()));
        }
        // Only the VOID event settles it: an INITIATE_VOID says a void started, not that it held.
        let is_void = |e: &&Event| e.event == EventName::Void;
        let answer = match request_id {
            Some(id) => self.completing_event(id, &[EventName::Void]),
            None => self.events.iter().rev().find(is_void),
        }?;
        match answer.success {
            Some(true) => return Some(Ok(())),
            // Not settled yet: neither a success nor a refusal.
            None => return None,
            Some(false) => {}
        }
        let reason = answer.error.as_ref().map_or_else(
            || "Dintero reported the void as failed, without a reason".to_owned(),
            |e| {
                e.get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| e.to_string(), str::to_owned)
            },
        );
        Some(Err(reason))
    }

    /// Whether the transaction has been voided.
    pub fn is_voided(&self) -> bool {
        self.status == Status::AuthorizationVoided
            || self
                .events
                .iter()
                .any(|e| e.succeeded() && e.event == EventName::Void)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_status_and_event_names_are_kept_and_name_is_an_alias() {
        let tx: Transaction = serde_json::from_value(serde_json::json!({
            "id": "T1.a", "payment_product": "kravia", "payment_product_type": "kravia.invoice_b2c",
            "amount": 100, "currency": "NOK", "status": "SOMETHING_NEW",
            "events": [
                {"name": "CAPTURE", "success": true, "metadata": {"kravia:invoice_due_date": "2026-12-01"}},
                {"event": "FUTURE_EVENT", "success": false, "shiny": 1},
                {"event": "INITIATE_CAPTURE"}
            ],
            "brand_new_field": {"x": 1}
        }))
        .expect("parses");
        assert_eq!(tx.status, Status::Other("SOMETHING_NEW".into()));
        assert_eq!(tx.events[0].event, EventName::Capture);
        assert!(tx.events[0].succeeded());
        assert_eq!(tx.events[1].event.as_str(), "FUTURE_EVENT");
        assert!(tx.capture_event().is_some());
        assert!(
            tx.events[2].success.is_none() && tx.undecided_capture_event().is_some(),
            "an event without `success` is not yet a success"
        );
        assert_eq!(
            tx.kravia_event_value("kravia:invoice_due_date"),
            Some("2026-12-01")
        );
        let back = serde_json::to_value(&tx).expect("serialises");
        assert_eq!(back["brand_new_field"]["x"], 1);
        assert_eq!(back["events"][1]["shiny"], 1);
    }

    #[test]
    fn a_refused_accepted_void_is_found_by_its_correlation_and_its_kind() {
        let tx: Transaction = serde_json::from_value(serde_json::json!({
            "id": "T1.a", "payment_product": "kravia", "payment_product_type": "kravia.invoice_b2c",
            "amount": 100, "currency": "NOK", "status": "AUTHORIZED",
            "events": [
                // The accepted request's own event carries its id as `request_id`.
                {"event": "INITIATE_VOID", "success": true, "request_id": "r-1"},
                {"event": "VOID", "success": false, "request_id": "r-2", "correlation_request_id": "r-1",
                 "error": {"message": "the invoice is paid"}}
            ]
        }))
        .expect("parses");
        assert_eq!(
            tx.void_result(Some("r-1")),
            Some(Err("the invoice is paid".to_owned()))
        );
        assert_eq!(
            tx.completing_event("r-1", &[EventName::InitiateVoid])
                .map(|e| e.event.clone()),
            Some(EventName::InitiateVoid),
            "without a correlated event of the kind, the request's own"
        );
        assert!(tx.completing_event("r-1", &[EventName::Capture]).is_none());
    }
}
