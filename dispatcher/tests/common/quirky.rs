//! The real Dintero client with misbehaviours a test switches on: a capture that takes a while
//! to land, a `sessions/pay` whose answer is lost after it landed, a listing that never ends.

use std::{
    sync::{
        Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use postbud::dintero::{
    CaptureOutcome, CaptureRequest, DinteroApi, DinteroClient, DinteroError, TransactionFilter,
    TransactionPage, VoidOutcome, model::Transaction,
};
use serde_json::{Value, json};

/// What goes wrong.
#[derive(Debug, Default, Clone)]
pub struct Quirks {
    /// Dintero takes this long to apply a capture: the request is in flight meanwhile.
    pub capture_delay: Duration,
    /// `sessions/pay` makes the invoice, then the answer is lost.
    pub lose_pay_answers: bool,
    /// Every page of authorized transactions is full of ids never seen before, of this account.
    pub endless_listing_of: Option<String>,
    /// Another system captures the transaction, with this reference, just before Postbud's
    /// capture arrives.
    pub captured_elsewhere_first: Option<String>,
}

/// The client and its quirks, counting what was sent.
#[derive(Debug)]
pub struct QuirkyDintero {
    inner: DinteroClient,
    quirks: Quirks,
    /// Capture requests sent.
    pub captures_sent: AtomicU32,
    /// Every `sessions/pay` body.
    pub pay_bodies: Mutex<Vec<Value>>,
}

impl QuirkyDintero {
    /// The client for `settings`' `[dintero]`, with `quirks`.
    pub fn new(settings: &postbud::Settings, quirks: Quirks) -> Self {
        let dintero = settings.dintero.clone().expect("[dintero]");
        Self {
            inner: DinteroClient::new(dintero).expect("client"),
            quirks,
            captures_sent: AtomicU32::new(0),
            pay_bodies: Mutex::new(Vec::new()),
        }
    }

    /// Capture requests sent so far.
    pub fn captures(&self) -> u32 {
        self.captures_sent.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl DinteroApi for QuirkyDintero {
    async fn transaction(&self, id: &str) -> Result<Transaction, DinteroError> {
        self.inner.transaction(id).await
    }
    async fn capture(
        &self,
        id: &str,
        request: &CaptureRequest,
    ) -> Result<CaptureOutcome, DinteroError> {
        self.captures_sent.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.quirks.capture_delay).await;
        if let Some(reference) = &self.quirks.captured_elsewhere_first {
            let theirs = CaptureRequest {
                amount: request.amount,
                capture_reference: Some(reference.clone()),
                items: None,
            };
            self.inner.capture(id, &theirs).await?;
        }
        self.inner.capture(id, request).await
    }
    async fn void(&self, id: &str) -> Result<VoidOutcome, DinteroError> {
        self.inner.void(id).await
    }
    async fn fetch_document(&self, url: &str) -> Result<bytes::Bytes, DinteroError> {
        self.inner.fetch_document(url).await
    }
    async fn create_invoice(&self, request: &Value) -> Result<Transaction, DinteroError> {
        self.pay_bodies.lock().expect("lock").push(request.clone());
        let made = self.inner.create_invoice(request).await?;
        if self.quirks.lose_pay_answers {
            return Err(DinteroError::temporary(
                "create invoice (POST /sessions/pay)",
                "connection reset before the answer",
            ));
        }
        Ok(made)
    }
    async fn checkout_configuration(&self) -> Result<Option<Value>, DinteroError> {
        self.inner.checkout_configuration().await
    }
    async fn payment_profile(&self, id: &str) -> Result<Option<Value>, DinteroError> {
        self.inner.payment_profile(id).await
    }
    async fn transactions(
        &self,
        filter: &TransactionFilter,
    ) -> Result<TransactionPage, DinteroError> {
        let Some(account) = &self.quirks.endless_listing_of else {
            return self.inner.transactions(filter).await;
        };
        if filter.statuses != ["AUTHORIZED"] {
            return Ok(TransactionPage::default());
        }
        let entries = (0..filter.limit)
            .map(|_| {
                json!({"id": format!("{account}.n{}", fastrand::u64(..)),
                       "payment_product": "kravia", "payment_product_type": "kravia.invoice_b2c",
                       "amount": 100, "currency": "NOK", "status": "AUTHORIZED"})
            })
            .collect();
        Ok(TransactionPage::from_entries(entries))
    }
}
