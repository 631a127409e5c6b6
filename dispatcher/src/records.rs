//! What the store holds, read through the app: for operators' commands, a merchant's own status
//! page and tests. Reading only, apart from [`App::retry`], the operator's one lever; the outbox
//! itself stays the engine's.

use std::collections::BTreeMap;

use postbud_channel::{Invoice, Pdf};

use crate::{
    App,
    store::{Dispatch, HistoryEntry, Job, StoreError, Totals},
    triage::{self, Filter, Listed, Verdict},
};

impl App {
    /// The transaction's dispatch record; `None` when this store has not seen it.
    pub async fn dispatch(&self, transaction_id: &str) -> Result<Option<Dispatch>, StoreError> {
        self.store().dispatch(transaction_id).await
    }

    /// The transaction's jobs: its dispatch, deliveries, cancellation notices, void.
    pub async fn jobs(&self, transaction_id: &str) -> Result<Vec<Job>, StoreError> {
        self.store().jobs(transaction_id).await
    }

    /// What happened to the transaction, oldest first.
    pub async fn history(&self, transaction_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.store().history(transaction_id).await
    }

    /// The invoice as the channels got it, PDF included; `None` before it was routed or after
    /// retention pruned it.
    pub async fn invoice(&self, transaction_id: &str) -> Result<Option<Invoice>, StoreError> {
        self.store().invoice(transaction_id).await
    }

    /// The invoice PDF as fetched and checked before the capture.
    pub async fn document(&self, transaction_id: &str) -> Result<Option<Pdf>, StoreError> {
        self.store().document(transaction_id).await
    }

    /// Counts of jobs by state, for health checks.
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        self.store().totals().await
    }

    /// How many invoices stand under each verdict.
    pub async fn verdicts(&self) -> Result<BTreeMap<Verdict, u64>, StoreError> {
        triage::count(self.store().as_ref()).await
    }

    /// Up to `limit` invoices matching `filter`, newest first, with their verdicts, and whether
    /// more match.
    pub async fn invoices(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<(Vec<Listed>, bool), StoreError> {
        triage::list(self.store().as_ref(), filter, limit).await
    }

    /// Requeues the transaction's failed, dead-lettered or cancelled jobs (of one channel
    /// instance, or all) for another attempt now; how many were requeued.
    pub async fn retry(
        &self,
        transaction_id: &str,
        channel: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.store().retry(transaction_id, channel).await
    }
}
