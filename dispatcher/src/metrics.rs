//! What `/metrics` exposes, encoded by `prometheus-client` in Prometheus' text format.
//!
//! The one gauge to alert on is `postbud_invoices_needing_attention`: invoices a person must
//! act on (see [`crate::triage`]). Invoice gauges count invoices, not jobs, so a primary
//! delivery that failed while its fallback delivered counts as delivered. Counters and
//! histograms per channel say how the channels behave: `postbud_attempts_total{kind, channel,
//! outcome}`, `postbud_attempt_duration_seconds{kind, channel}` and
//! `postbud_delivery_latency_seconds{channel}`.
//!
//! Each [`crate::App`] has its own registry (no process-global state), so a merchant service
//! that links two apps, or its tests, never mixes their figures.

use std::{fmt, time::Duration};

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

use crate::{
    store::{Finish, Job, JobKind, Store, StoreError, now_ms},
    triage::{self, Verdict},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Attempt {
    kind: &'static str,
    channel: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Work {
    kind: &'static str,
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChannelLabel {
    channel: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabel {
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EvidenceLabel {
    channel: String,
    state: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Answer {
    outcome: &'static str,
}

/// The figures of one app.
pub struct Metrics {
    registry: Registry,
    attempts: Family<Attempt, Counter>,
    attempt_seconds: Family<Work, Histogram>,
    delivery_latency: Family<ChannelLabel, Histogram>,
    invoices: Family<VerdictLabel, Gauge>,
    needing_attention: Gauge,
    jobs_queued: Gauge,
    jobs_in_flight: Gauge,
    callbacks: Family<Answer, Counter>,
    evidence: Family<EvidenceLabel, Counter>,
    links_served: Counter,
    sweep_at: Gauge,
    sweep_ok: Gauge,
    sweep_found: Gauge,
    sweep_submitted: Gauge,
    sweep_captured_elsewhere: Gauge,
    clock_offset: Gauge,
    log_writes_dropped: Gauge,
    pub(crate) workers_running: Gauge,
    pub(crate) worker_restarts: Counter,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("postbud");
        let attempts = Family::<Attempt, Counter>::default();
        registry.register(
            "attempts",
            "Attempts that ended, by job kind (dispatch, deliver, cancel, void), channel and outcome (done, retry, failed, dead, unknown: stopped because the sink may already have it, skipped, not_sent).",
            attempts.clone(),
        );
        let attempt_seconds = Family::<Work, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ])
        });
        registry.register(
            "attempt_duration_seconds",
            "How long one attempt took, by job kind and channel.",
            attempt_seconds.clone(),
        );
        let delivery_latency = Family::<ChannelLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                14_400.0, 86_400.0,
            ])
        });
        registry.register(
            "delivery_latency_seconds",
            "From a delivery being queued (right after capture) to its success, retries and send windows included, by channel.",
            delivery_latency.clone(),
        );
        let invoices = Family::<VerdictLabel, Gauge>::default();
        registry.register(
            "invoices",
            "Invoices in the store by verdict: delivered (a fallback's rescue included), pending, needs-attention, failed, voided, skipped.",
            invoices.clone(),
        );
        let gauge = |registry: &mut Registry, name: &str, help: &str| {
            let gauge = Gauge::default();
            registry.register(name, help, gauge.clone());
            gauge
        };
        let needing_attention = gauge(
            &mut registry,
            "invoices_needing_attention",
            "Invoices a person must act on: collection started and the invoice reached nobody, dead letters, captures or voids Dintero refused, cancellation notices not sent. Alert when above 0.",
        );
        let jobs_queued = gauge(
            &mut registry,
            "jobs_queued",
            "Jobs waiting for their next attempt.",
        );
        let jobs_in_flight = gauge(&mut registry, "jobs_in_flight", "Jobs claimed by a worker.");
        let evidence = Family::<EvidenceLabel, Counter>::default();
        registry.register(
            "delivery_evidence",
            "Delivery evidence received (provider events, reports, bounces read from a mailbox), by channel, state (accepted, delayed, delivered, opened, bounced, rejected) and outcome: recorded, failed (a bounce or rejection failed a delivery that ended well, or one whose sink might have had it, and ran its fallback), duplicate, not_yet (the attempt had not ended: asked again later), unknown (about no delivery Postbud knows).",
            evidence.clone(),
        );
        let callbacks = Family::<Answer, Counter>::default();
        registry.register(
            "callbacks",
            "Dintero callbacks and webhook deliveries, by outcome (accepted, rejected).",
            callbacks.clone(),
        );
        let links_served = Counter::default();
        registry.register(
            "links_served",
            "Invoice PDFs served through signed links.",
            links_served.clone(),
        );
        let sweep_at = gauge(
            &mut registry,
            "reconcile_last_timestamp_seconds",
            "When the last reconciliation sweep ran (0: never).",
        );
        let sweep_ok = gauge(
            &mut registry,
            "reconcile_last_ok",
            "1 when the last reconciliation sweep completed, 0 when it stopped early or never ran.",
        );
        let sweep_found = gauge(
            &mut registry,
            "reconcile_last_found",
            "Authorized Kravia transactions the last sweep listed.",
        );
        let sweep_submitted = gauge(
            &mut registry,
            "reconcile_last_submitted",
            "Transactions the last sweep found unknown and submitted.",
        );
        let sweep_captured_elsewhere = gauge(
            &mut registry,
            "reconcile_last_captured_elsewhere",
            "Unknown transactions the last sweep found captured already and left alone.",
        );
        let clock_offset = gauge(
            &mut registry,
            "clock_offset_milliseconds",
            "The database's clock minus this host's, as the store last measured it (PostgreSQL; 0 on SQLite). Leases and due times are judged by the database's clock; alert when beyond a few seconds.",
        );
        let log_writes_dropped = gauge(
            &mut registry,
            "log_writes_dropped",
            "Log lines that could not be written (a full disk, a closed pipe) and were dropped, since start: the workers go on.",
        );
        let workers_running = gauge(
            &mut registry,
            "workers_running",
            "Workers running now; /healthz fails while fewer run than engine.workers.",
        );
        let worker_restarts = Counter::default();
        registry.register(
            "worker_restarts",
            "Workers that died (a panic outside an attempt) and were started again.",
            worker_restarts.clone(),
        );
        Self {
            clock_offset,
            log_writes_dropped,
            workers_running,
            worker_restarts,
            registry,
            attempts,
            attempt_seconds,
            delivery_latency,
            invoices,
            needing_attention,
            jobs_queued,
            jobs_in_flight,
            callbacks,
            evidence,
            links_served,
            sweep_at,
            sweep_ok,
            sweep_found,
            sweep_submitted,
            sweep_captured_elsewhere,
        }
    }
}

impl Metrics {
    /// Counts the end of an attempt on `job` that took `took`.
    pub fn attempt(&self, job: &Job, finish: &Finish, took: Duration) {
        let outcome = match finish {
            Finish::Done(_) | Finish::DoneWith { .. } => "done",
            Finish::Retry { .. } => "retry",
            Finish::Failed(_) => "failed",
            Finish::Dead(_) => "dead",
            Finish::Unknown { .. } => "unknown",
            Finish::Skipped(_) => "skipped",
            // The attempt recorded its own end: a delivery not sent because of a void, or a
            // dispatch that completed in one transaction.
            Finish::Recorded if job.kind == JobKind::Dispatch => "done",
            Finish::Recorded => "not_sent",
            // A closed send window: not an attempt.
            Finish::Postpone(_) => return,
        };
        let channel = job.channel.clone().unwrap_or_default();
        self.attempts
            .get_or_create(&Attempt {
                kind: job.kind.as_str(),
                channel: channel.clone(),
                outcome,
            })
            .inc();
        self.attempt_seconds
            .get_or_create(&Work {
                kind: job.kind.as_str(),
                channel: channel.clone(),
            })
            .observe(took.as_secs_f64());
        if job.kind == JobKind::Deliver && outcome == "done" {
            let waited = (now_ms() - job.created_at).max(0) as f64 / 1000.0;
            self.delivery_latency
                .get_or_create(&ChannelLabel { channel })
                .observe(waited);
        }
    }

    /// Counts a callback or webhook delivery answered.
    pub fn callback(&self, accepted: bool) {
        let outcome = if accepted { "accepted" } else { "rejected" };
        self.callbacks.get_or_create(&Answer { outcome }).inc();
    }

    /// Counts a piece of delivery evidence by what became of it.
    pub fn evidence(
        &self,
        channel: &str,
        state: postbud_channel::EvidenceState,
        outcome: &'static str,
    ) {
        self.evidence
            .get_or_create(&EvidenceLabel {
                channel: channel.to_owned(),
                state: state.as_str(),
                outcome,
            })
            .inc();
    }

    /// Counts an invoice PDF served through a signed link.
    pub fn link_served(&self) {
        self.links_served.inc();
    }

    /// The text `/metrics` answers: the store's gauges read now, then everything encoded.
    pub async fn render(&self, store: &dyn Store) -> Result<String, StoreError> {
        let counts = store.counts().await?;
        let totals = counts.totals;
        let counts = triage::count(store, &counts.census).await?;
        for verdict in Verdict::ALL {
            let n = counts.get(&verdict).copied().unwrap_or(0);
            self.invoices
                .get_or_create(&VerdictLabel {
                    verdict: verdict.as_str(),
                })
                .set(n as i64);
        }
        let attention = counts.get(&Verdict::NeedsAttention).copied().unwrap_or(0);
        self.needing_attention.set(attention as i64);
        self.jobs_queued.set(totals.queued as i64);
        self.jobs_in_flight.set(totals.in_flight as i64);
        // Always there, 0 before the first sweep: an alert on its age fires when sweeps never
        // ran.
        let sweep = crate::sweeps::last_sweep(store)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        self.sweep_at.set((sweep.at / 1000).max(0));
        self.sweep_ok
            .set(i64::from(sweep.at > 0 && sweep.error.is_none()));
        self.sweep_found.set(sweep.found as i64);
        self.sweep_submitted.set(sweep.submitted as i64);
        self.sweep_captured_elsewhere
            .set(sweep.captured_elsewhere as i64);
        self.clock_offset
            .set(store.clock_offset().unwrap_or_default());
        self.log_writes_dropped
            .set(crate::log_sink::dropped() as i64);
        let mut out = String::new();
        encode(&mut out, &self.registry).map_err(|e| {
            StoreError::new(
                crate::store::StoreErrorKind::Other,
                format!("encoding the metrics: {e}"),
            )
        })?;
        Ok(out)
    }
}
