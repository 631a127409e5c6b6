//! A worker outlives what goes wrong inside a job: a panicking channel, a store that fails
//! mid-attempt, attempts that die before they record their end.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::Harness;
use postbud::{
    App, BuildContext, Channel, ChannelError, ConfigError, DeliveryContext, Invoice, Receipt,
    Registry, Verdict,
    engine::{DefaultDispatcher, Engine},
    store::{Finish, JobKind, JobState, Lease, NewJob, Store, StoreError},
};
use postbud_sandbox::Seed;

static PANICKED: AtomicBool = AtomicBool::new(false);

/// Panics on its first delivery in the process, then delivers.
#[derive(Debug)]
struct PanicsOnce;

#[postbud::async_trait]
impl Channel for PanicsOnce {
    async fn deliver(
        &self,
        invoice: &Invoice,
        _: &DeliveryContext,
    ) -> Result<Receipt, ChannelError> {
        if !PANICKED.swap(true, Ordering::SeqCst) {
            let huge: u64 = u64::MAX;
            let _ = std::time::Instant::now() + Duration::from_secs(huge);
        }
        Ok(Receipt::new(format!("took {}", invoice.invoice_number)))
    }
}

fn build(_: BuildContext<'_>) -> Result<Box<dyn Channel>, ConfigError> {
    Ok(Box::new(PanicsOnce))
}

static PANICS_ONCE: postbud::ChannelFactory = postbud::ChannelFactory::new(
    "panics-once",
    "panics on its first delivery",
    "resilience-test",
    "",
    build,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_job_is_recorded_as_failed_and_the_worker_goes_on() {
    let h = Harness::start().await;
    let mut registry = Registry::discover().expect("registry");
    registry.add(&PANICS_ONCE).expect("added");
    let toml = h
        .toml("[channels.odd]\nkind = \"panics-once\"\n\n[[routes]]\ndeliver = [\"odd\"]\nfallback = [\"archive\"]\n")
        .replacen("[engine]\n", "[engine]\nworkers = 1\n", 1);
    let settings = postbud::Settings::from_toml(&toml).expect("settings");
    let app = Arc::new(
        App::builder(&settings)
            .registry(registry)
            .open()
            .await
            .expect("app"),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.run_workers(stopped).await }
    });
    let first = h.sandbox.seed(Seed::default());
    app.submit(&first).await.expect("submit");
    let second = h.sandbox.seed(Seed::default());
    app.submit(&second).await.expect("submit");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let state = |id: String| {
        let app = Arc::clone(&app);
        async move {
            app.jobs(&id)
                .await
                .expect("jobs")
                .into_iter()
                .find(|j| j.kind == JobKind::Deliver)
        }
    };
    loop {
        let (a, b) = (state(first.clone()).await, state(second.clone()).await);
        if a.as_ref().is_some_and(|j| j.state.is_final())
            && b.as_ref().is_some_and(|j| j.state.is_final())
        {
            let (a, b) = (a.expect("a"), b.expect("b"));
            let (panicked, fine) = if a.state == JobState::Failed {
                (a, b)
            } else {
                (b, a)
            };
            assert_eq!(panicked.state, JobState::Failed);
            assert!(
                panicked
                    .last_error
                    .as_deref()
                    .unwrap_or("")
                    .contains("panicked"),
                "{panicked:?}"
            );
            assert_eq!(
                fine.state,
                JobState::Done,
                "the single worker went on: {fine:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker stopped: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).expect("stop");
    workers.await.expect("workers");
}

/// A store that counts the reads of invoices and dispatches, the claims that found work and
/// the ends that claimed the next job, and, when `failing`, fails every `complete_dispatch`, as
/// a full disk or a broken row would.
#[derive(Debug)]
struct Watched {
    store: Arc<dyn Store>,
    failing: bool,
    invoice_reads: AtomicUsize,
    dispatch_reads: AtomicUsize,
    documents_saved: AtomicUsize,
    dispatch_updates: AtomicUsize,
    claims_that_found_work: AtomicUsize,
    ends_that_claimed: AtomicUsize,
    /// Claims that panic, outside any attempt (a bug, a log sink that panics), before claims
    /// work again.
    claims_that_panic: AtomicUsize,
}

impl Watched {
    fn new(store: Arc<dyn Store>, failing: bool) -> Self {
        Self {
            store,
            failing,
            invoice_reads: AtomicUsize::new(0),
            dispatch_reads: AtomicUsize::new(0),
            documents_saved: AtomicUsize::new(0),
            dispatch_updates: AtomicUsize::new(0),
            claims_that_found_work: AtomicUsize::new(0),
            ends_that_claimed: AtomicUsize::new(0),
            claims_that_panic: AtomicUsize::new(0),
        }
    }
}

#[postbud::async_trait]
impl Store for Watched {
    async fn mark_origin(&self, t: &str, o: &str, d: &str) -> Result<(), StoreError> {
        self.store.mark_origin(t, o, d).await
    }
    async fn adopt_capture(&self, t: &str, d: &str) -> Result<bool, StoreError> {
        self.store.adopt_capture(t, d).await
    }
    async fn submit(&self, t: &str) -> Result<bool, StoreError> {
        self.store.submit(t).await
    }
    async fn set_meta(&self, k: &str, v: &str) -> Result<(), StoreError> {
        self.store.set_meta(k, v).await
    }
    async fn take_turn(&self, n: &str, o: &str, u: i64) -> Result<bool, StoreError> {
        self.store.take_turn(n, o, u).await
    }
    async fn void_accepted(&self, v: &postbud::store::AcceptedVoid<'_>) -> Result<(), StoreError> {
        self.store.void_accepted(v).await
    }
    async fn claim(&self, c: &postbud::store::Claim<'_>) -> Result<Vec<Lease>, StoreError> {
        let panics = &self.claims_that_panic;
        if panics
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            panic!("a claim that panics outside any attempt");
        }
        let leases = self.store.claim(c).await?;
        if !leases.is_empty() {
            self.claims_that_found_work.fetch_add(1, Ordering::SeqCst);
        }
        Ok(leases)
    }
    async fn finish_then_claim(
        &self,
        l: &Lease,
        f: Finish,
        next: &postbud::store::Claim<'_>,
    ) -> Result<Vec<Lease>, StoreError> {
        self.ends_that_claimed.fetch_add(1, Ordering::SeqCst);
        self.store.finish_then_claim(l, f, next).await
    }
    async fn renew(&self, l: &Lease, d: Duration) -> Result<(), StoreError> {
        self.store.renew(l, d).await
    }
    async fn finish(&self, l: &Lease, f: Finish) -> Result<(), StoreError> {
        self.store.finish(l, f).await
    }
    async fn update_dispatch(
        &self,
        l: &Lease,
        p: postbud::store::DispatchPatch,
    ) -> Result<(), StoreError> {
        self.dispatch_updates.fetch_add(1, Ordering::SeqCst);
        self.store.update_dispatch(l, p).await
    }
    async fn save_document(&self, l: &Lease, p: &postbud::Pdf) -> Result<postbud::Pdf, StoreError> {
        self.documents_saved.fetch_add(1, Ordering::SeqCst);
        self.store.save_document(l, p).await
    }
    async fn complete_dispatch(
        &self,
        l: &Lease,
        c: &postbud::store::Completion<'_>,
    ) -> Result<Option<Lease>, StoreError> {
        if self.failing {
            return Err(StoreError::new(
                postbud::store::StoreErrorKind::Unavailable,
                "disk I/O error (injected)",
            ));
        }
        self.store.complete_dispatch(l, c).await
    }
    async fn document(&self, t: &str) -> Result<Option<postbud::Pdf>, StoreError> {
        self.store.document(t).await
    }
    async fn invoice(&self, t: &str) -> Result<Option<Invoice>, StoreError> {
        self.invoice_reads.fetch_add(1, Ordering::SeqCst);
        self.store.invoice(t).await
    }
    async fn enqueue(&self, l: &Lease, j: &[NewJob]) -> Result<(), StoreError> {
        self.store.enqueue(l, j).await
    }
    async fn dispatch(&self, t: &str) -> Result<Option<postbud::store::Dispatch>, StoreError> {
        self.dispatch_reads.fetch_add(1, Ordering::SeqCst);
        self.store.dispatch(t).await
    }
    async fn job(&self, id: &str) -> Result<Option<postbud::store::Job>, StoreError> {
        self.store.job(id).await
    }
    async fn jobs(&self, t: &str) -> Result<Vec<postbud::store::Job>, StoreError> {
        self.store.jobs(t).await
    }
    async fn record(&self, l: &postbud::store::HistoryLine<'_>) -> Result<(), StoreError> {
        self.store.record(l).await
    }
    async fn history(&self, t: &str) -> Result<Vec<postbud::store::HistoryEntry>, StoreError> {
        self.store.history(t).await
    }
    async fn record_evidence(
        &self,
        e: &postbud::store::NewEvidence<'_>,
    ) -> Result<postbud::store::EvidenceWritten, StoreError> {
        self.store.record_evidence(e).await
    }
    async fn keep_reference(&self, l: &Lease, r: &str) -> Result<(), StoreError> {
        self.store.keep_reference(l, r).await
    }
    async fn job_by_reference(
        &self,
        c: &str,
        r: &str,
    ) -> Result<Option<postbud::store::Job>, StoreError> {
        self.store.job_by_reference(c, r).await
    }
    async fn evidence(&self, t: &str) -> Result<Vec<postbud::store::EvidenceEntry>, StoreError> {
        self.store.evidence(t).await
    }
    async fn retry(&self, t: &str, c: Option<&str>) -> Result<u64, StoreError> {
        self.store.retry(t, c).await
    }
    async fn void(&self, t: &str) -> Result<postbud::store::VoidEffect, StoreError> {
        self.store.void(t).await
    }
    async fn enqueue_free(&self, t: &str, j: &[NewJob]) -> Result<(), StoreError> {
        self.store.enqueue_free(t, j).await
    }
    async fn dispatches(
        &self,
        q: &postbud::store::DispatchQuery,
    ) -> Result<Vec<postbud::store::DispatchJobs>, StoreError> {
        self.store.dispatches(q).await
    }
    async fn record_audit(&self, entry: &postbud::AuditEntry) -> Result<(), StoreError> {
        self.store.record_audit(entry).await
    }
    async fn audit_log(
        &self,
        before: Option<postbud::Millis>,
        limit: u32,
    ) -> Result<Vec<postbud::AuditEntry>, StoreError> {
        self.store.audit_log(before, limit).await
    }
    async fn prune(&self, before: i64) -> Result<u64, StoreError> {
        self.store.prune(before).await
    }
    async fn counts(&self) -> Result<postbud::Counts, StoreError> {
        self.store.counts().await
    }
    async fn meta(&self, k: &str) -> Result<Option<String>, StoreError> {
        self.store.meta(k).await
    }
    async fn meta_init(&self, k: &str, v: &str) -> Result<String, StoreError> {
        self.store.meta_init(k, v).await
    }
}

async fn engine(h: &Harness, store: Arc<dyn Store>, max_attempts: u32) -> Engine {
    engine_with(h, store, |s| s.max_attempts = max_attempts).await
}

async fn engine_with(
    h: &Harness,
    store: Arc<dyn Store>,
    tune: impl FnOnce(&mut postbud::config::EngineSettings),
) -> Engine {
    let settings = h.settings("");
    let mut engine_settings = settings.engine.clone();
    tune(&mut engine_settings);
    let app = App::open(&settings).await.expect("app");
    let gateway =
        postbud::dintero::DinteroClient::new(settings.require_dintero().expect("d").clone())
            .expect("gateway");
    let channels = Registry::discover()
        .expect("registry")
        .build_all(&settings)
        .expect("channels");
    drop(app);
    Engine::new(
        store,
        Arc::new(gateway),
        channels,
        settings.routes.clone(),
        engine_settings,
        None,
        Arc::new(DefaultDispatcher),
    )
}

#[tokio::test]
async fn a_store_error_during_attempts_counts_them_and_ends_in_a_visible_dead_letter() {
    let h = Harness::start().await;
    let store = postbud::store::open(&h.settings("").store.url)
        .await
        .expect("store");
    let engine = engine(&h, Arc::new(Watched::new(Arc::clone(&store), true)), 2).await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = engine
        .deliver_now(&id, Duration::from_secs(10))
        .await
        .expect("run");
    let dispatch = outcome
        .jobs
        .iter()
        .find(|j| j.kind == JobKind::Dispatch)
        .expect("job");
    assert_eq!(dispatch.state, JobState::Dead, "{outcome}");
    assert_eq!(dispatch.attempts, 2);
    assert!(
        dispatch
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("disk I/O error (injected)"),
        "{dispatch:?}"
    );
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention);
    assert_eq!(
        h.sandbox.captures(&id),
        1,
        "captured once, however often it was tried"
    );
}

#[tokio::test]
async fn attempts_that_die_before_recording_their_end_are_counted_too() {
    let h = Harness::start().await;
    let store = postbud::store::open(&h.settings("").store.url)
        .await
        .expect("store");
    let engine = engine(&h, Arc::clone(&store), 3).await;
    let id = h.sandbox.seed(Seed::default());
    store.submit(&id).await.expect("submit");
    // Three claims whose workers die at once (the lease lapses, nobody records anything).
    for _ in 0..3 {
        let leases = store
            .claim(&postbud::store::Claim {
                owner: "doomed",
                lease: Duration::from_millis(1),
                limit: 1,
                only: Some(&id),
            })
            .await
            .expect("claim");
        assert_eq!(leases.len(), 1);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let outcome = engine
        .deliver_now(&id, Duration::from_secs(5))
        .await
        .expect("run");
    let dispatch = outcome
        .jobs
        .iter()
        .find(|j| j.kind == JobKind::Dispatch)
        .expect("job");
    assert_eq!(dispatch.state, JobState::Dead, "{outcome}");
    assert!(
        dispatch
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("never recorded an end"),
        "{dispatch:?}"
    );
    assert_eq!(h.sandbox.captures(&id), 0);
}

/// The PDF fetched before the capture is kept in the capture's own record (first in the
/// history, no write of its own), the record after the capture goes with the routing, the
/// dispatch record comes with the claim, and a delivery that runs right after the dispatch that
/// routed it delivers what that dispatch stored, handed over in memory: no read of the invoice
/// or its PDF, and of the dispatch only the one `deliver_now` reports from.
#[tokio::test]
async fn a_dispatch_and_its_delivery_write_and_read_only_what_they_must() {
    let h = Harness::start().await;
    let store = postbud::store::open(&h.settings("").store.url)
        .await
        .expect("store");
    let watched = Arc::new(Watched::new(Arc::clone(&store), false));
    let engine = engine(&h, Arc::clone(&watched) as Arc<dyn Store>, 3).await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = engine
        .deliver_now(&id, Duration::from_secs(10))
        .await
        .expect("run");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(watched.invoice_reads.load(Ordering::SeqCst), 0);
    assert_eq!(watched.dispatch_reads.load(Ordering::SeqCst), 1);
    let stored = store.invoice(&id).await.expect("read").expect("invoice");
    let delivered = std::fs::read(h.invoices().join(format!("{}.pdf", stored.invoice_number)))
        .expect("the PDF in the archive");
    assert_eq!(
        delivered,
        stored.pdf.bytes.as_ref(),
        "the stored PDF was delivered"
    );
    assert_eq!(watched.documents_saved.load(Ordering::SeqCst), 0);
    // The record before the capture is a write of its own; the one after goes with the routing.
    assert_eq!(watched.dispatch_updates.load(Ordering::SeqCst), 1);
    common::assert_dispatch_history_in_order(&store.history(&id).await.expect("history"));
}

/// A busy worker claims its next job with the end of its attempt, and a dispatch leases its
/// delivery to the worker that routed it: with 24 invoices queued and 2 workers, a claim of its
/// own finds work only for a worker's first job; every other job comes with an end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_workers_claim_their_next_job_with_the_end_of_the_last() {
    let h = Harness::start().await;
    let store = postbud::store::open(&h.settings("").store.url)
        .await
        .expect("store");
    let watched = Arc::new(Watched::new(Arc::clone(&store), false));
    let engine = Arc::new(
        engine_with(&h, Arc::clone(&watched) as Arc<dyn Store>, |s| {
            s.workers = 2
        })
        .await,
    );
    let ids: Vec<String> = (0..24).map(|_| h.sandbox.seed(Seed::default())).collect();
    for id in &ids {
        engine.submit(id).await.expect("submit");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn(Arc::clone(&engine).run(stopped));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for id in &ids {
        loop {
            let jobs = store.jobs(id).await.expect("jobs");
            let delivered = jobs
                .iter()
                .any(|j| j.kind == JobKind::Deliver && j.state == JobState::Done);
            if delivered {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{id}: {jobs:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    stop.send(true).expect("stop");
    workers.await.expect("workers");
    let found = watched.claims_that_found_work.load(Ordering::SeqCst);
    let ends = watched.ends_that_claimed.load(Ordering::SeqCst);
    // A job retried (a slow answer on a loaded machine) comes due later and may be found by an
    // idle worker's own claim: it is allowed for, not the rule.
    let mut retried = 0;
    for id in &ids {
        let jobs = store.jobs(id).await.expect("jobs");
        retried += jobs.iter().filter(|j| j.attempts > 1).count();
    }
    assert!(
        found <= 2 + retried,
        "{found} claims of their own found work ({retried} jobs retried, {ends} ends claimed)"
    );
    assert!(ends >= 22, "{ends} ends claimed the next job");
    for id in &ids {
        assert_eq!(h.sandbox.captures(id), 1, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_that_dies_is_started_again() {
    let h = Harness::start().await;
    let store = postbud::store::open(&h.settings("").store.url)
        .await
        .expect("store");
    let watched = Arc::new(Watched::new(Arc::clone(&store), false));
    // Both workers die at their first claim.
    watched.claims_that_panic.store(2, Ordering::SeqCst);
    let engine = Arc::new(
        engine_with(&h, Arc::clone(&watched) as Arc<dyn Store>, |s| {
            s.workers = 2
        })
        .await,
    );
    assert_eq!(engine.workers(), None, "not started");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(Arc::clone(&engine).run(stopped));
    let ids: Vec<String> = (0..6).map(|_| h.sandbox.seed(Seed::default())).collect();
    for id in &ids {
        engine.submit(id).await.expect("submit");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for id in &ids {
        loop {
            let done = store
                .jobs(id)
                .await
                .expect("jobs")
                .iter()
                .any(|j| j.kind == JobKind::Deliver && j.state == JobState::Done);
            if done {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} was not delivered"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    assert_eq!(watched.claims_that_panic.load(Ordering::SeqCst), 0);
    // Started again a second after each death, not at once (a worker that always dies must
    // not spin a core).
    while engine.workers() != Some((2, 2)) {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            engine.workers()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = engine
        .metrics()
        .render(store.as_ref())
        .await
        .expect("metrics");
    assert!(
        metrics.contains("postbud_worker_restarts_total 2"),
        "{metrics}"
    );
    stop.send(true).expect("stop");
    run.await.expect("stopped");
    assert_eq!(engine.workers(), None, "stopped on purpose");
}
