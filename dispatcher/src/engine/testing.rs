//! What the jobs' own tests share: a SQLite store in a temporary directory, a transaction
//! routed as a dispatch leaves it, a Dintero that answers with one transaction, and a channel
//! that records what it was asked to send.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::{
    config::{EngineSettings, Route},
    dintero::{
        CaptureOutcome, CaptureRequest, DinteroApi, DinteroError, VoidOutcome, model::Transaction,
    },
    store::{
        ChosenRoute, Claim, Completion, Confirmation, JobKind, Lease, NewJob, Role, Store, now_ms,
    },
};
use postbud_channel::ids;
use postbud_channel::{
    Channel, ChannelError, DeliveryContext, ErrorKind, Invoice, Pdf, Receipt, RetryClass,
    async_trait,
};

/// A SQLite store in a directory of its own (kept while the `TempDir` lives).
pub(super) async fn sqlite() -> (TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/postbud.db", dir.path().display());
    let store = crate::store::open(&url).await.expect("store opens");
    (dir, store)
}

/// The engine's settings with retries short enough for a test.
pub(super) fn settings() -> EngineSettings {
    EngineSettings {
        max_attempts: 3,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..EngineSettings::default()
    }
}

/// A route that delivers through `deliver` and falls back to `fallback`.
pub(super) fn route(deliver: &[&str], fallback: &[&str]) -> Route {
    serde_json::from_value(json!({ "deliver": deliver, "fallback": fallback })).expect("a route")
}

/// An authorized Kravia invoice `id` with these `events`.
pub(super) fn transaction(id: &str, status: &str, events: Value) -> Transaction {
    serde_json::from_value(json!({
        "id": id, "status": status, "amount": 50000, "currency": "NOK",
        "payment_product": "kravia", "payment_product_type": "kravia.invoice_b2c",
        "metadata": {"kravia:invoice_number": "INV-1", "kravia:invoice_url": "https://cdn.example/inv-1"},
        "events": events,
    }))
    .expect("a transaction")
}

/// Records in `store` what a dispatch of `tx` leaves behind: captured, its invoice kept,
/// routed by `route`, one primary delivery per channel, the first leased to `owner` (returned).
pub(super) async fn routed(store: &dyn Store, tx: &Transaction, route: &Route) -> Lease {
    let id = tx.id.as_str();
    store.submit(id).await.expect("submit");
    let dispatch = claim(store, id).await.expect("the dispatch");
    assert_eq!(dispatch.job.kind, JobKind::Dispatch);
    let pdf = Pdf::new("INV-1.pdf", Bytes::from_static(b"%PDF-1.4 test"));
    let invoice = crate::dintero::invoice_of(tx, "INV-1", pdf);
    let jobs: Vec<NewJob> = route
        .deliver
        .iter()
        .map(|channel| NewJob {
            id: ids::delivery_id(id, channel),
            kind: JobKind::Deliver,
            channel: channel.clone(),
            role: Role::Primary,
            next_at: store.now(),
        })
        .collect();
    let confirmation = Confirmation {
        captured_at: now_ms(),
        detail: "INITIATE_CAPTURE event present".into(),
    };
    store
        .complete_dispatch(
            &dispatch,
            &Completion {
                invoice: &invoice,
                route: &ChosenRoute {
                    index: 0,
                    snapshot: serde_json::to_string(route).expect("route"),
                },
                jobs: &jobs,
                detail: "routed by the test",
                lease_first_due: Some(Duration::from_secs(30)),
                confirmation: Some(&confirmation),
            },
        )
        .await
        .expect("complete the dispatch")
        .expect("the first delivery, leased")
}

/// The next job of transaction `id` due now, leased for 30 s.
pub(super) async fn claim(store: &dyn Store, id: &str) -> Option<Lease> {
    store
        .claim(&Claim {
            owner: "test",
            lease: Duration::from_secs(30),
            limit: 1,
            only: Some(id),
        })
        .await
        .expect("claim")
        .pop()
}

/// A Dintero that shows one transaction (which a test may change) and refuses everything
/// else: a job that calls what it should not fails visibly.
#[derive(Debug)]
pub(super) struct OneTransaction(pub(super) Mutex<Transaction>);

impl OneTransaction {
    pub(super) fn new(tx: Transaction) -> Arc<Self> {
        Arc::new(Self(Mutex::new(tx)))
    }

    /// Shows `tx` from now on.
    pub(super) fn show(&self, tx: Transaction) {
        *self.0.lock().expect("lock") = tx;
    }
}

fn not_expected(operation: &str) -> DinteroError {
    DinteroError::temporary(operation, "not expected by this test")
}

#[async_trait]
impl DinteroApi for OneTransaction {
    async fn transaction(&self, id: &str) -> Result<Transaction, DinteroError> {
        let tx = self.0.lock().expect("lock").clone();
        match tx.id == id {
            true => Ok(tx),
            false => Err(not_expected("GET another transaction")),
        }
    }
    async fn capture(&self, _: &str, _: &CaptureRequest) -> Result<CaptureOutcome, DinteroError> {
        Err(not_expected("capture"))
    }
    async fn void(&self, _: &str) -> Result<VoidOutcome, DinteroError> {
        Err(not_expected("void"))
    }
    async fn fetch_document(&self, _: &str) -> Result<Bytes, DinteroError> {
        Err(not_expected("fetch document"))
    }
    async fn create_invoice(&self, _: &Value) -> Result<Transaction, DinteroError> {
        Err(not_expected("create invoice"))
    }
}

/// A channel that answers every delivery with `fails` (or a receipt), can send cancellation
/// notices when `cancels`, and records the ids of the deliveries and notices it was given.
#[derive(Debug, Default)]
pub(super) struct Recording {
    pub(super) fails: Option<(RetryClass, &'static str)>,
    /// The failure says the sink may already have the invoice.
    pub(super) outcome_unknown: bool,
    /// The failure names the sink's id for what was sent (it may have reached the sink).
    pub(super) reference: Option<&'static str>,
    pub(super) cancels: bool,
    pub(super) sent: Mutex<Vec<String>>,
}

#[async_trait]
impl Channel for Recording {
    async fn deliver(
        &self,
        invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.sent
            .lock()
            .expect("lock")
            .push(ctx.delivery_id.clone());
        match self.fails {
            Some((class, message)) => {
                let mut error =
                    ChannelError::new(ErrorKind::Unexpected, message).with_retry_class(class);
                if self.outcome_unknown {
                    error = error.with_outcome_unknown();
                }
                if let Some(reference) = self.reference {
                    error = error.with_reference(reference);
                }
                Err(error)
            }
            None => Ok(Receipt::new(format!("sent {}", invoice.invoice_number))),
        }
    }

    fn supports_cancel(&self) -> bool {
        self.cancels
    }

    async fn cancel(
        &self,
        _invoice: &Invoice,
        ctx: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        self.sent
            .lock()
            .expect("lock")
            .push(ctx.delivery_id.clone());
        Ok(Receipt::new("cancelled"))
    }
}
