//! What the store holds, opened for reading: what `postbud status` shows and a merchant's own
//! status page needs, without Dintero credentials or channels. The outbox itself stays the
//! engine's: nothing here writes but [`App::retry`], the operator's one lever.

use std::{collections::BTreeMap, sync::Arc};

use postbud_channel::{Invoice, Pdf};

use crate::{
    App, Outcome, Settings,
    store::{self, Dispatch, HistoryEntry, Job, Millis, Store, StoreError, Totals},
    sweeps::{self, Sweep},
    triage::{self, Filter, Listed, Verdict},
};

/// The store, read-only.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = postbud::Settings::load(Some("postbud.toml".as_ref()))?;
/// let records = postbud::Records::open(&settings).await?;
/// for (verdict, count) in records.verdicts().await? {
///     println!("{verdict}: {count}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Records {
    store: Arc<dyn Store>,
    location: String,
}

impl Records {
    /// Opens the store `settings` names; never creates one (an error of kind
    /// [`crate::StoreErrorKind::Missing`] says where it looked), so a configuration pointing at
    /// the wrong place is not hidden by an empty store.
    pub async fn open(settings: &Settings) -> Result<Self, StoreError> {
        let url = settings.store_url();
        Ok(Self::of(
            store::open_existing(&url, store::clock::system()).await?,
            &url,
        ))
    }

    /// Opens the store `settings` names, creating it or applying the migrations it lacks
    /// (`postbud migrate`).
    pub async fn migrate(settings: &Settings) -> Result<Self, StoreError> {
        let url = settings.store_url();
        Ok(Self::of(store::open(&url).await?, &url))
    }

    /// The store it reads.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn of(store: Arc<dyn Store>, url: &str) -> Self {
        Self {
            store,
            location: postbud_channel::http::redact_url(url),
        }
    }

    /// Where the store is, fit to print (credentials left out).
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The transaction's dispatch record; `None` when this store has not seen it.
    pub async fn dispatch(&self, transaction_id: &str) -> Result<Option<Dispatch>, StoreError> {
        self.store.dispatch(transaction_id).await
    }

    /// The transaction's jobs: its dispatch, deliveries, cancellation notices, void.
    pub async fn jobs(&self, transaction_id: &str) -> Result<Vec<Job>, StoreError> {
        self.store.jobs(transaction_id).await
    }

    /// Where the transaction stands, as `postbud deliver` reports it: its dispatch and every
    /// job; `None` when this store has not seen it. Read, not run: the report says nothing about
    /// work started now (`newly_queued` is true).
    pub async fn outcome(&self, transaction_id: &str) -> Result<Option<Outcome>, StoreError> {
        let Some(dispatch) = self.store.dispatch(transaction_id).await? else {
            return Ok(None);
        };
        let jobs = self.store.jobs(transaction_id).await?;
        Ok(Some(Outcome {
            transaction_id: transaction_id.to_owned(),
            newly_queued: true,
            dispatch: Some(dispatch),
            jobs,
        }))
    }

    /// What happened to the transaction, oldest first.
    pub async fn history(&self, transaction_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.store.history(transaction_id).await
    }

    /// The delivery evidence recorded about a transaction, oldest first (see
    /// [`App::record_evidence`](crate::App::record_evidence)).
    pub async fn evidence(
        &self,
        transaction_id: &str,
    ) -> Result<Vec<crate::store::EvidenceEntry>, StoreError> {
        self.store.evidence(transaction_id).await
    }

    /// The invoice as the channels got it, PDF included; `None` before it was routed or after
    /// retention pruned it.
    pub async fn invoice(&self, transaction_id: &str) -> Result<Option<Invoice>, StoreError> {
        self.store.invoice(transaction_id).await
    }

    /// The invoice PDF as fetched and checked before the capture.
    pub async fn document(&self, transaction_id: &str) -> Result<Option<Pdf>, StoreError> {
        self.store.document(transaction_id).await
    }

    /// Counts of jobs by state, for health checks.
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        Ok(self.store.counts().await?.totals)
    }

    /// How many invoices stand under each verdict.
    pub async fn verdicts(&self) -> Result<BTreeMap<Verdict, u64>, StoreError> {
        let census = self.store.counts().await?.census;
        triage::count(self.store.as_ref(), &census).await
    }

    /// Up to `limit` invoices matching `filter`, newest first, with their verdicts, and whether
    /// more match.
    pub async fn invoices(
        &self,
        filter: &Filter,
        limit: usize,
    ) -> Result<(Vec<Listed>, bool), StoreError> {
        triage::list(self.store.as_ref(), filter, limit).await
    }

    /// [`Records::invoices`] for a page that must stay bounded (the console's list): reads at
    /// most about `examine` dispatches, and says where the next page begins when more may
    /// match.
    pub async fn invoices_bounded(
        &self,
        filter: &Filter,
        limit: usize,
        examine: usize,
    ) -> Result<(Vec<Listed>, Option<(Millis, String)>), StoreError> {
        triage::list_bounded(self.store.as_ref(), filter, limit, examine).await
    }

    /// The last reconciliation sweep's report, if one ran.
    pub async fn last_sweep(&self) -> Result<Option<Sweep>, StoreError> {
        sweeps::last_sweep(self.store.as_ref()).await
    }
}

impl App {
    /// The store, read-only.
    pub fn records(&self) -> Records {
        Records::of(self.store().clone(), &self.settings().store_url())
    }

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

    /// The invoice as the channels got it (see [`Records::invoice`]).
    pub async fn invoice(&self, transaction_id: &str) -> Result<Option<Invoice>, StoreError> {
        self.store().invoice(transaction_id).await
    }

    /// The invoice PDF as fetched and checked before the capture.
    pub async fn document(&self, transaction_id: &str) -> Result<Option<Pdf>, StoreError> {
        self.store().document(transaction_id).await
    }

    /// Counts of jobs by state, for health checks.
    pub async fn totals(&self) -> Result<Totals, StoreError> {
        Ok(self.store().counts().await?.totals)
    }

    /// Requeues the transaction's failed, dead-lettered or waiting jobs (of one channel
    /// instance, or all) for another attempt now; how many were requeued. A delivery that
    /// failed for good unmarked is a new send ([`crate::Job::resends`]).
    pub async fn retry(
        &self,
        transaction_id: &str,
        channel: Option<&str>,
    ) -> Result<u64, StoreError> {
        self.store().retry(transaction_id, channel).await
    }
}
