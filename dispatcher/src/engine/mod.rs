//! The capture-then-deliver engine.
//!
//! A dispatch job reads the transaction, decides eligibility, fetches and keeps the PDF,
//! captures (unless Dintero already shows collection started), picks a route and queues one
//! delivery job per channel instance. Delivery jobs run independently with their own retries,
//! fall back when they fail for good, and end delivered, failed or dead-lettered, never dropped.

pub mod backoff;
mod capture;
mod deliver;
mod dispatch;
mod dispatcher;
mod outcome;
mod void;
mod worker;

use std::{collections::BTreeMap, fmt, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures_util::FutureExt;

use tokio::sync::{Notify, watch};
use tracing::Instrument;

pub use self::{
    dispatch::COLLECTION_STARTED_ELSEWHERE,
    dispatcher::{DefaultDispatcher, Dispatcher},
    outcome::Outcome,
};
use crate::{
    config::{EngineSettings, Route},
    dintero::DinteroApi,
    links::LinkSigner,
    store::{Claim, Finish, Lease, Store, StoreError},
};
use postbud_channel::{Channel, ErrorKind, Invoice};

/// The capture grace of an engine built without a Dintero timeout: three times Dintero's
/// default 30 s.
const DEFAULT_CAPTURE_GRACE: Duration = Duration::from_secs(90);

/// A job for this worker to run next: a delivery leased by the dispatch that routed it comes
/// with what that dispatch just stored, so it starts without reading it back.
struct Handover {
    lease: Lease,
    routed: Option<Routed>,
}

/// What a dispatch stored as it routed the invoice, exactly as stored: the invoice with its PDF
/// and the route chosen.
struct Routed {
    invoice: Invoice,
    route: Route,
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Runs jobs from the store.
pub struct Engine {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) gateway: Arc<dyn DinteroApi>,
    pub(crate) channels: BTreeMap<String, Arc<dyn Channel>>,
    pub(crate) routes: Vec<Route>,
    pub(crate) settings: EngineSettings,
    pub(crate) links: Option<LinkSigner>,
    pub(crate) dispatcher: Arc<dyn Dispatcher>,
    pub(crate) wake: Notify,
    pub(crate) owner: String,
    pub(crate) metrics: crate::metrics::Metrics,
    /// How long a capture sent and not answered is waited for before another may be sent:
    /// longer than the Dintero client waits for an answer (see [`Engine::with_capture_grace`]).
    pub(crate) capture_grace: Duration,
    /// Whether [`Engine::run`] started the workers (only then does `/healthz` count them).
    pub(crate) workers_started: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.owner)
            .field("channels", &self.channels.keys().collect::<Vec<_>>())
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Assembles an engine.
    pub fn new(
        store: Arc<dyn Store>,
        gateway: Arc<dyn DinteroApi>,
        channels: BTreeMap<String, Arc<dyn Channel>>,
        routes: Vec<Route>,
        settings: EngineSettings,
        links: Option<LinkSigner>,
        dispatcher: Arc<dyn Dispatcher>,
    ) -> Self {
        let owner = format!("{}-{}", std::process::id(), fastrand::u32(..));
        Self {
            store,
            gateway,
            channels,
            routes,
            settings,
            links,
            dispatcher,
            wake: Notify::new(),
            owner,
            metrics: crate::metrics::Metrics::default(),
            capture_grace: DEFAULT_CAPTURE_GRACE,
            workers_started: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Waits three times `client_timeout` (the Dintero client's timeout) for a capture sent and
    /// not answered before another may be sent: the request is recorded before a token is
    /// fetched (up to one timeout), then may be in flight up to another, and a capture Dintero
    /// applies late, after the client gave up, shows in its events within the third.
    pub fn with_capture_grace(mut self, client_timeout: Duration) -> Self {
        self.capture_grace = client_timeout.saturating_mul(3);
        self
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// This engine's figures, for `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Queues a transaction and wakes an idle worker.
    pub async fn submit(&self, transaction_id: &str) -> Result<bool, StoreError> {
        let queued = self.store.submit(transaction_id).await?;
        if queued {
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// Runs one claimed job to the end of this attempt, renewing its lease meanwhile, then the
    /// delivery the attempt leased to this worker, if it did (a dispatch whose route delivers
    /// now).
    pub async fn process(&self, lease: Lease) -> Result<(), StoreError> {
        self.process_then_claim(lease, None).await.0
    }

    /// As [`Self::process`], then claims with `then` in the same write as the last attempt's
    /// end, unless its shutdown signal has turned true by then: the jobs this worker runs next.
    pub(crate) async fn process_then_claim(
        &self,
        lease: Lease,
        then: Option<(&Claim<'_>, &watch::Receiver<bool>)>,
    ) -> (Result<(), StoreError>, Vec<Lease>) {
        let mut next = Some(Handover {
            lease,
            routed: None,
        });
        let mut result = Ok(());
        let mut claimed = Vec::new();
        while let Some(Handover { lease, routed }) = next.take() {
            let span = tracing::info_span!(
                "job",
                id = %lease.job.id,
                kind = %lease.job.kind,
                transaction = %lease.job.transaction_id,
                channel = lease.job.channel.as_deref().unwrap_or(""),
                attempt = lease.job.attempts,
            );
            let done = self
                .process_in_span(lease, routed, &mut next, then, &mut claimed)
                .instrument(span)
                .await;
            result = result.and(done);
        }
        (result, claimed)
    }

    /// One attempt. When it ends as attempts do (not given up unrecorded, not fenced out) and
    /// hands over no delivery in `next`, its end is written with the claim `then` (unless
    /// shutting down), whose leases land in `claimed`.
    async fn process_in_span(
        &self,
        lease: Lease,
        routed: Option<Routed>,
        next: &mut Option<Handover>,
        then: Option<(&Claim<'_>, &watch::Receiver<bool>)>,
        claimed: &mut Vec<Lease>,
    ) -> Result<(), StoreError> {
        if lease.job.attempts > self.settings.max_attempts {
            // Attempts are counted when claimed: this many claims without a recorded end means
            // every earlier attempt died (a crash, a kill) before it could say so.
            let finish = Finish::Dead(format!(
                "gave up after {} attempts: the earlier attempts never recorded an end (the process died during them)",
                lease.job.attempts - 1
            ));
            let finish = self.given_up(&lease, finish).await?;
            return self.record_finish(&lease, finish, None).await.map(drop);
        }
        // A panic is a bug in a channel or in Postbud: it ends this attempt, recorded as failed,
        // and the worker goes on with the next job.
        let work = AssertUnwindSafe(async {
            match lease.job.kind {
                crate::store::JobKind::Dispatch => self.run_dispatch(&lease, next).await,
                crate::store::JobKind::Void => self.run_void(&lease).await,
                _ => self.run_delivery(&lease, routed).await,
            }
        })
        .catch_unwind();
        let renew = async {
            let every = self.settings.lease / 3;
            loop {
                tokio::time::sleep(every).await;
                match self.store.renew(&lease, self.settings.lease).await {
                    Ok(()) => {}
                    Err(e) if e.is_lease_lost() => {
                        tracing::warn!("lease lost; abandoning this attempt");
                        return;
                    }
                    // A passing database error: keep working, renew again next tick.
                    Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
                }
            }
        };
        let started = std::time::Instant::now();
        let finish = tokio::select! {
            outcome = work => match outcome {
                Ok(Ok(finish)) => finish,
                Ok(Err(e)) if e.is_lease_lost() => return Err(e),
                // The store failed mid-attempt: an attempt like any other, so max_attempts ends
                // it, with the error kept where `status` shows it.
                Ok(Err(e)) => self.failure(
                    &lease,
                    ErrorKind::Temporary,
                    None,
                    format!("the store failed during the attempt: {e}"),
                ),
                Err(panic) => {
                    let finish = Finish::Failed(format!(
                        "the attempt panicked ({}); fix the cause, then `postbud retry`",
                        panic_message(panic.as_ref())
                    ));
                    self.given_up(&lease, finish).await?
                }
            },
            () = renew => {
                // Lost the lease: whatever this attempt does next would be refused anyway.
                return Err(StoreError::lease_lost(&lease.job.id));
            }
        };
        tracing::info!(outcome = ?finish, "attempt finished");
        self.metrics.attempt(&lease.job, &finish, started.elapsed());
        let then = then
            .filter(|(_, shutdown)| next.is_none() && !*shutdown.borrow())
            .map(|(claim, _)| claim);
        let result = self.record_finish(&lease, finish, then).await;
        self.wake.notify_one();
        result.map(|leases| claimed.extend(leases))
    }

    /// The bookkeeping of a job that ended for good outside its own code (a panic, attempts that
    /// died unrecorded): a dispatch shows the reason, a primary delivery's fallbacks run.
    async fn given_up(&self, lease: &Lease, finish: Finish) -> Result<Finish, StoreError> {
        match (&finish, lease.job.kind) {
            (Finish::Failed(reason) | Finish::Dead(reason), crate::store::JobKind::Dispatch) => {
                self.mark_failed(lease, reason).await?;
                Ok(finish)
            }
            (_, crate::store::JobKind::Deliver) => self.failed_for_good(lease, finish).await,
            _ => Ok(finish),
        }
    }

    /// Records the end of an attempt, with the claim `then` when given. The side effect has
    /// happened; if the store is briefly unreachable, keep trying for a while: the fenced write
    /// still lands as long as nobody took the job over, and every write that lands is a repeat
    /// avoided.
    async fn record_finish(
        &self,
        lease: &Lease,
        finish: Finish,
        then: Option<&Claim<'_>>,
    ) -> Result<Vec<Lease>, StoreError> {
        let deadline = tokio::time::Instant::now() + self.settings.lease * 5;
        let mut wait = Duration::from_millis(100);
        loop {
            let recorded = match then {
                Some(claim) => {
                    self.store
                        .finish_then_claim(lease, finish.clone(), claim)
                        .await
                }
                None => self
                    .store
                    .finish(lease, finish.clone())
                    .await
                    .map(|()| Vec::new()),
            };
            match recorded {
                Err(e) if e.is_temporary() && tokio::time::Instant::now() < deadline => {
                    tracing::warn!(error = %e, "recording the attempt failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                other => return other,
            }
        }
    }

    /// The retry decision for a failure of kind `kind` after the lease's attempt.
    pub(crate) fn failure(
        &self,
        lease: &Lease,
        kind: ErrorKind,
        retry_after: Option<Duration>,
        error: String,
    ) -> Finish {
        let at = self.store.now();
        backoff::after_failure(
            &self.settings,
            lease.job.attempts,
            kind,
            retry_after,
            error,
            at,
        )
    }
}
