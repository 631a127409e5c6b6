//! The runner: workers that claim jobs, hold each job's lease while its attempt runs (renewed
//! meanwhile; an attempt whose lease was lost is abandoned, and the store's fencing refuses its
//! writes), catch an attempt that panics, record how every attempt ended, and start a worker
//! that died again. What an attempt does is the [`Jobs`]' business: the runner knows nothing of
//! Dintero or channels.

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use backon::{ExponentialBuilder, Retryable};
use futures_util::FutureExt;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use super::{
    Outcome, backoff,
    job::{Attempt, Handover, Jobs, Routed},
};
use crate::{
    config::EngineSettings,
    metrics::Metrics,
    store::{Claim, Finish, Lease, Store, StoreError},
};
use postbud_channel::RetryClass;

/// Runs the jobs `J` from the store.
pub(crate) struct Runner<J> {
    store: Arc<dyn Store>,
    settings: EngineSettings,
    /// Wakes an idle worker: new work was queued in this process.
    wake: Arc<Notify>,
    /// This process's name in the leases it takes.
    owner: String,
    metrics: Metrics,
    /// Whether [`Runner::run`] started the workers (only then does `/healthz` count them).
    workers_started: AtomicBool,
    jobs: J,
}

impl<J: Jobs> Runner<J> {
    /// A runner of `jobs` from `store`; `wake` is the signal the jobs give when they queue work.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        settings: EngineSettings,
        wake: Arc<Notify>,
        jobs: J,
    ) -> Self {
        Self {
            store,
            settings,
            wake,
            owner: format!("{}-{}", std::process::id(), fastrand::u32(..)),
            metrics: Metrics::default(),
            workers_started: AtomicBool::new(false),
            jobs,
        }
    }

    /// The jobs it runs.
    pub(crate) fn jobs(&self) -> &J {
        &self.jobs
    }

    /// The jobs it runs, to configure before it runs them.
    pub(crate) fn jobs_mut(&mut self) -> &mut J {
        &mut self.jobs
    }

    /// The store it claims from.
    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Its figures, for `/metrics`.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The name of this process in its leases.
    pub(crate) fn owner(&self) -> &str {
        &self.owner
    }

    /// Queues a transaction and wakes an idle worker.
    pub(crate) async fn submit(&self, transaction_id: &str) -> Result<bool, StoreError> {
        let queued = self.store.submit(transaction_id).await?;
        if queued {
            self.wake.notify_one();
        }
        Ok(queued)
    }

    /// Runs one claimed job to the end of this attempt, renewing its lease meanwhile, then the
    /// job the attempt leased to this worker, if it did (a dispatch whose route delivers now).
    pub(crate) async fn process(&self, lease: Lease) -> Result<(), StoreError> {
        self.process_then_claim(lease, None).await.0
    }

    /// As [`Self::process`], then claims with `then` in the same write as the last attempt's
    /// end, unless its shutdown signal has turned true by then: the jobs this worker runs next.
    async fn process_then_claim(
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
    /// hands over no job in `next`, its end is written with the claim `then` (unless shutting
    /// down), whose leases land in `claimed`.
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
            let finish = self.jobs.given_up(&lease, finish).await?;
            return self.record_finish(&lease, finish, None).await.map(drop);
        }
        // A panic is a bug in a channel or in Postbud: it ends this attempt, recorded as failed,
        // and the worker goes on with the next job.
        let work = AssertUnwindSafe(self.jobs.attempt(&lease, routed)).catch_unwind();
        let started = std::time::Instant::now();
        let finish = tokio::select! {
            outcome = work => match outcome {
                Ok(Ok(Attempt { finish, next: handed })) => {
                    *next = handed;
                    finish
                }
                Ok(Err(e)) if e.is_lease_lost() => return Err(e),
                // The store failed mid-attempt: an attempt like any other, so max_attempts ends
                // it, with the error kept where `status` shows it.
                Ok(Err(e)) => backoff::after_failure(
                    &self.settings,
                    lease.job.attempts,
                    RetryClass::Temporary,
                    None,
                    format!("the store failed during the attempt: {e}"),
                    self.store.now(),
                ),
                Err(panic) => {
                    let finish = Finish::Failed(format!(
                        "the attempt panicked ({}); fix the cause, then `postbud retry`",
                        panic_message(panic.as_ref())
                    ));
                    self.jobs.given_up(&lease, finish).await?
                }
            },
            () = self.renew_until_lost(&lease) => {
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

    /// Renews `lease` every third of its length; returns only when it was lost.
    async fn renew_until_lost(&self, lease: &Lease) {
        let every = self.settings.lease / 3;
        loop {
            tokio::time::sleep(every).await;
            match self.store.renew(lease, self.settings.lease).await {
                Ok(()) => {}
                Err(e) if e.is_lease_lost() => {
                    tracing::warn!("lease lost; abandoning this attempt");
                    return;
                }
                // A passing database error: keep working, renew again next tick.
                Err(e) => tracing::warn!(error = %e, "lease renewal failed"),
            }
        }
    }

    /// Records the end of an attempt, with the claim `then` when given. The side effect has
    /// happened: whatever the store answers short of a lost lease (a failover's read-only
    /// connection, a busy file, a dropped connection), keep trying for five leases: the fenced
    /// write still lands as long as nobody took the job over, and every write that lands is a
    /// repeat avoided.
    async fn record_finish(
        &self,
        lease: &Lease,
        finish: Finish,
        then: Option<&Claim<'_>>,
    ) -> Result<Vec<Lease>, StoreError> {
        let record = || async {
            match then {
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
            }
        };
        record
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_millis(500))
                    .without_max_times()
                    .with_total_delay(Some(self.settings.lease * 5)),
            )
            .sleep(tokio::time::sleep)
            .when(|e: &StoreError| !e.is_lease_lost())
            .notify(|e: &StoreError, wait| {
                tracing::warn!(error = %e, ?wait, "recording the attempt failed; retrying");
            })
            .await
    }

    /// Runs `settings.workers` workers until `shutdown` turns true. Each claims one job at a
    /// time, a busy one with the end of its previous attempt; idle workers wake on new work or
    /// every `poll_interval`.
    pub(crate) async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.workers_started.store(true, Ordering::Relaxed);
        let mut workers = tokio::task::JoinSet::new();
        let mut indexes = std::collections::HashMap::new();
        for index in 0..self.settings.workers.max(1) {
            let task = workers.spawn(Arc::clone(&self).worker(index, shutdown.clone()));
            indexes.insert(task.id(), index);
        }
        // A worker that dies (a panic outside an attempt's guard: a log sink, a bug) is
        // started again, so the runner keeps the workers it was configured with.
        while let Some(ended) = workers.join_next_with_id().await {
            let Err(e) = ended else { continue };
            let Some(index) = indexes.remove(&e.id()) else {
                continue;
            };
            if !e.is_panic() || *shutdown.borrow() {
                continue;
            }
            self.metrics.worker_restarts.inc();
            tracing::error!(
                worker = index,
                "a worker died; starting it again in a second"
            );
            // Not at once: a worker that dies on every claim must not spin a core.
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                continue;
            }
            let task = workers.spawn(Arc::clone(&self).worker(index, shutdown.clone()));
            indexes.insert(task.id(), index);
        }
        // Stopped on purpose: no longer a count for `/healthz` to hold the runner to.
        self.workers_started.store(false, Ordering::Relaxed);
    }

    /// Workers running and configured, once [`Runner::run`] started them.
    pub(crate) fn workers(&self) -> Option<(usize, usize)> {
        self.workers_started.load(Ordering::Relaxed).then(|| {
            (
                self.metrics.workers_running.get().max(0) as usize,
                self.settings.workers.max(1),
            )
        })
    }

    /// Worker `index`: claims and runs jobs until `shutdown` turns true. Counted in
    /// `workers_running` while it runs, however it ends.
    async fn worker(self: Arc<Self>, index: usize, mut shutdown: watch::Receiver<bool>) {
        let _running = Running::start(&self.metrics.workers_running);
        let owner = format!("{}-w{index}", self.owner);
        let claim = Claim {
            owner: &owner,
            lease: self.settings.lease,
            limit: 1,
            only: None,
        };
        let mut failures = 0u32;
        // Jobs claimed with the end of the previous attempt: run even when shutting
        // down, as an attempt under way is, rather than left leased until it lapses.
        let mut claimed = Vec::new();
        while !*shutdown.borrow() || !claimed.is_empty() {
            let leases = match claimed.is_empty() {
                true => self.store.claim(&claim).await,
                false => Ok(std::mem::take(&mut claimed)),
            };
            match leases {
                Ok(leases) if !leases.is_empty() => {
                    failures = 0;
                    let last = leases.len() - 1;
                    for (n, lease) in leases.into_iter().enumerate() {
                        // The next claim rides on the last attempt's end, unless
                        // shutting down (by then), when nothing new should start.
                        let then = (n == last).then_some((&claim, &shutdown));
                        let (result, next) = self.process_then_claim(lease, then).await;
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "job attempt not recorded");
                        }
                        claimed.extend(next);
                    }
                    continue;
                }
                Ok(_) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::error!(error = %e, "claiming work failed; backing off");
                }
            }
            let idle = self.settings.poll_interval * 2u32.pow(failures.min(6));
            let elsewhere = self.store.work_signal();
            let other_process = async {
                match &elsewhere {
                    Some(signal) => signal.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = other_process => {}
                () = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Submits the transaction and works on its jobs now, waiting up to `wait` for retries that
    /// come due, then reports where every job stands.
    pub(crate) async fn deliver_now(
        &self,
        transaction_id: &str,
        wait: Duration,
    ) -> Result<Outcome, StoreError> {
        let newly_queued = self.submit(transaction_id).await?;
        let deadline = self.store.now() + wait.as_millis() as i64;
        loop {
            let leases = self
                .store
                .claim(&Claim {
                    owner: &self.owner,
                    lease: self.settings.lease,
                    limit: 1,
                    only: Some(transaction_id),
                })
                .await?;
            if !leases.is_empty() {
                for lease in leases {
                    if let Err(e) = self.process(lease).await {
                        tracing::warn!(error = %e, "job attempt not recorded");
                    }
                }
                continue;
            }
            let jobs = self.store.jobs(transaction_id).await?;
            let next = jobs
                .iter()
                .filter(|j| !j.state.is_final())
                .map(|j| j.next_at)
                .min();
            match next {
                Some(at) if at <= deadline => {
                    let pause = (at - self.store.now()).clamp(10, 1_000) as u64;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                _ => {
                    let dispatch = self.store.dispatch(transaction_id).await?;
                    return Ok(Outcome {
                        transaction_id: transaction_id.to_owned(),
                        newly_queued,
                        dispatch,
                        jobs,
                    });
                }
            }
        }
    }
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".into())
}

/// Counts a running worker in a gauge until dropped, a panic's unwinding included.
struct Running(prometheus_client::metrics::gauge::Gauge);

impl Running {
    fn start(gauge: &prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}
