//! Worker loops and the synchronous `deliver_now` drive.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::{Engine, Outcome};
use crate::store::{Claim, StoreError};

impl Engine {
    /// Runs `settings.workers` workers until `shutdown` turns true. Each claims one job at a
    /// time, a busy one with the end of its previous attempt; idle workers wake on new work or
    /// every `poll_interval`.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.workers_started
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let mut workers = tokio::task::JoinSet::new();
        let mut indexes = std::collections::HashMap::new();
        for index in 0..self.settings.workers.max(1) {
            let task = workers.spawn(Arc::clone(&self).worker(index, shutdown.clone()));
            indexes.insert(task.id(), index);
        }
        // A worker that dies (a panic outside an attempt's guard: a log sink, a bug) is
        // started again, so the engine keeps the workers it was configured with.
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
        // Stopped on purpose: no longer a count for `/healthz` to hold the engine to.
        self.workers_started
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }

    /// Workers running and configured, once [`Engine::run`] started them.
    pub fn workers(&self) -> Option<(usize, usize)> {
        self.workers_started
            .load(std::sync::atomic::Ordering::Relaxed)
            .then(|| {
                (
                    self.metrics.workers_running.get().max(0) as usize,
                    self.settings.workers.max(1),
                )
            })
    }

    /// Worker `index`: claims and runs jobs until `shutdown` turns true. Counted in
    /// `workers_running` while it runs, however it ends.
    async fn worker(self: Arc<Self>, index: usize, mut shutdown: watch::Receiver<bool>) {
        let engine = self;
        let _running = Running::start(&engine.metrics.workers_running);
        let owner = format!("{}-w{index}", engine.owner);
        let claim = Claim {
            owner: &owner,
            lease: engine.settings.lease,
            limit: 1,
            only: None,
        };
        let mut failures = 0u32;
        // Jobs claimed with the end of the previous attempt: run even when shutting
        // down, as an attempt under way is, rather than left leased until it lapses.
        let mut claimed = Vec::new();
        while !*shutdown.borrow() || !claimed.is_empty() {
            let leases = match claimed.is_empty() {
                true => engine.store.claim(&claim).await,
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
                        let (result, next) = engine.process_then_claim(lease, then).await;
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
            let idle = engine.settings.poll_interval * 2u32.pow(failures.min(6));
            let elsewhere = engine.store.work_signal();
            let other_process = async {
                match &elsewhere {
                    Some(signal) => signal.notified().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = engine.wake.notified() => {}
                () = other_process => {}
                () = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Submits the transaction and works on its jobs now, waiting up to `wait` for retries that
    /// come due, then reports where every job stands.
    pub async fn deliver_now(
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
