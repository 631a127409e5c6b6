//! The capture-then-deliver engine: a runner and three jobs.
//!
//! The runner (`runner`) claims jobs, holds and renews their leases, catches panics and records
//! how each attempt ended. The jobs do the work, each in its own module: the dispatch job
//! (`dispatch`) reads the transaction, decides eligibility, fetches and keeps the PDF, captures
//! (unless Dintero already shows collection started), picks a route and queues one delivery
//! job per channel instance; the delivery job (`delivery`) runs one of those with its own
//! retries, falls back when it fails for good, and ends delivered, failed or dead-lettered,
//! never dropped; the void job (`void`) applies a void Dintero confirmed. The flow (`flow`)
//! hands each job kind to its job.

pub mod backoff;
mod capture;
mod channels;
mod delivery;
mod dispatch;
mod dispatcher;
mod flow;
mod job;
mod outcome;
mod runner;
#[cfg(test)]
mod testing;
mod void;

use std::{collections::BTreeMap, fmt, sync::Arc, time::Duration};

use tokio::sync::{Notify, watch};

pub use self::{
    channels::Channels,
    dispatcher::{DefaultDispatcher, Dispatcher, Reached},
    outcome::Outcome,
};
use self::{
    delivery::DeliveryJob, dispatch::DispatchJob, flow::Flow, runner::Runner, void::VoidJob,
};
use crate::{
    config::{EngineSettings, Route},
    dintero::DinteroApi,
    links::LinkSigner,
    store::{Store, StoreError, VoidEffect},
};
use postbud_channel::Channel;

/// The capture grace of an engine built without a Dintero timeout: three times Dintero's
/// default 30 s.
const DEFAULT_CAPTURE_GRACE: Duration = Duration::from_secs(90);

/// The runner with the flow's three jobs, and the channels they send through.
pub struct Engine {
    runner: Arc<Runner<Flow>>,
    channels: Arc<Channels>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("owner", &self.runner.owner())
            .field("channels", &self.channels)
            .field("routes", &self.runner.jobs().dispatch.routes.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Assembles an engine: each job gets what it needs of these.
    pub fn new(
        store: Arc<dyn Store>,
        gateway: Arc<dyn DinteroApi>,
        channels: BTreeMap<String, Arc<dyn Channel>>,
        routes: Vec<Route>,
        settings: EngineSettings,
        links: Option<LinkSigner>,
        dispatcher: Arc<dyn Dispatcher>,
    ) -> Self {
        let channels = Arc::new(Channels::new(channels));
        let routes: Arc<[Route]> = routes.into();
        let wake = Arc::new(Notify::new());
        let flow = Flow {
            dispatch: DispatchJob {
                retry: backoff::RetryPolicy::new(settings.clone(), Arc::clone(&store)),
                store: Arc::clone(&store),
                gateway: Arc::clone(&gateway),
                dispatcher: Arc::clone(&dispatcher),
                routes: Arc::clone(&routes),
                channels: Arc::clone(&channels),
                links: links.clone(),
                settings: settings.clone(),
                capture_grace: DEFAULT_CAPTURE_GRACE,
                wake: Arc::clone(&wake),
            },
            delivery: DeliveryJob {
                retry: backoff::RetryPolicy::new(settings.clone(), Arc::clone(&store)),
                store: Arc::clone(&store),
                gateway: Arc::clone(&gateway),
                dispatcher,
                channels: Arc::clone(&channels),
                routes,
                links,
            },
            void: VoidJob {
                retry: backoff::RetryPolicy::new(settings.clone(), Arc::clone(&store)),
                store: Arc::clone(&store),
                gateway,
                channels: Arc::clone(&channels),
                wake: Arc::clone(&wake),
            },
        };
        Self {
            runner: Arc::new(Runner::new(store, settings, wake, flow)),
            channels,
        }
    }

    /// Waits three times `client_timeout` (the Dintero client's timeout) for a capture sent and
    /// not answered before another may be sent: the request is recorded before a token is
    /// fetched (up to one timeout), then may be in flight up to another, and a capture Dintero
    /// applies late, after the client gave up, shows in its events within the third.
    pub fn with_capture_grace(mut self, client_timeout: Duration) -> Self {
        // An engine owned here has no workers running (they hold it in an `Arc`), so the
        // runner is not shared yet.
        if let Some(runner) = Arc::get_mut(&mut self.runner) {
            runner.jobs_mut().dispatch.capture_grace = client_timeout.saturating_mul(3);
        }
        self
    }

    /// The deliveries the route's fallback makes once the primary delivery `job` failed
    /// (`why`), with the history line that says so; `None` when it makes none.
    pub(crate) async fn fallback_of(
        &self,
        job: &crate::store::Job,
        why: &str,
    ) -> Result<Option<(Vec<crate::store::NewJob>, String)>, StoreError> {
        self.runner.jobs().delivery.fallback_of(job, why).await
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        self.runner.store()
    }

    /// This engine's figures, for `/metrics`.
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.runner.metrics()
    }

    /// The channel instances the jobs send through.
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// Queues a transaction and wakes an idle worker.
    pub async fn submit(&self, transaction_id: &str) -> Result<bool, StoreError> {
        self.runner.submit(transaction_id).await
    }

    /// Runs one claimed job to the end of this attempt, renewing its lease meanwhile, then the
    /// delivery the attempt leased to this worker, if it did (a dispatch whose route delivers
    /// now). For this workspace's tests, which claim by hand.
    #[cfg(feature = "unstable-internals")]
    pub async fn process(&self, lease: crate::store::Lease) -> Result<(), StoreError> {
        self.runner.process(lease).await
    }

    /// Runs `settings.workers` workers until `shutdown` turns true. Each claims one job at a
    /// time, a busy one with the end of its previous attempt; idle workers wake on new work or
    /// every `poll_interval`.
    pub async fn run(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        Arc::clone(&self.runner).run(shutdown).await;
    }

    /// Workers running and configured, once [`Engine::run`] started them.
    pub fn workers(&self) -> Option<(usize, usize)> {
        self.runner.workers()
    }

    /// Submits the transaction and works on its jobs now, waiting up to `wait` for retries that
    /// come due, then reports where every job stands.
    pub async fn deliver_now(
        &self,
        transaction_id: &str,
        wait: Duration,
    ) -> Result<Outcome, StoreError> {
        self.runner.deliver_now(transaction_id, wait).await
    }

    /// Dintero confirmed the void: stops the pending deliveries and queues a cancellation notice
    /// through every channel that delivered the invoice and can send one.
    pub async fn voided(&self, transaction_id: &str) -> Result<VoidEffect, StoreError> {
        self.runner.jobs().void.voided(transaction_id).await
    }

    /// Queues the job that waits for Dintero to settle a void it accepted with 202.
    pub async fn await_void(
        &self,
        transaction_id: &str,
        request_id: Option<&str>,
    ) -> Result<(), StoreError> {
        self.runner
            .jobs()
            .void
            .await_void(transaction_id, request_id)
            .await
    }
}
