//! The contract every [`Store`] keeps, as a test kit (feature `testkit`): each case is written
//! once against `dyn Store`, and this crate runs every one on a SQLite file and on a fresh
//! PostgreSQL database (River's way). A backend that drifts from the others fails here, not in
//! production.
//!
//! # A third backend
//!
//! Depend on this crate with the feature in `[dev-dependencies]`:
//!
//! ```toml
//! [dev-dependencies]
//! postbud-store = { version = "0.1", features = ["testkit"] }
//! ```
//!
//! and hand [`check`] a factory that makes a fresh, empty, migrated store for each case (and
//! whatever must live as long as it, such as a temporary directory or a database dropped on
//! drop):
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use postbud_store::Store;
//! # async fn open_my_store(name: &str) -> (Arc<dyn Store>, ()) { unimplemented!() }
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn my_store_keeps_the_contract() {
//!     postbud_store::testkit::check(|case| open_my_store(case)).await;
//! }
//! ```
//!
//! Every case runs on its own store, one after the other, and a failure panics naming the
//! case. [`CASES`] lists them, for a harness that runs each as a test of its own. Together they
//! call every method of [`Store`]; the cases use real time (leases of 100 ms lapse), so run
//! them on a multi-threaded runtime.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use crate::{
    AcceptedVoid, ChosenRoute, Claim, Completion, Finish, JobKind, JobState, NewJob, Role, Stage,
    Store, now_ms,
};

const TX: &str = "T12345678.contractTx1";

/// A claim by `owner` for at most `limit` jobs, of `only` that transaction when given.
fn claim<'a>(owner: &'a str, lease: Duration, limit: u32, only: Option<&'a str>) -> Claim<'a> {
    Claim {
        owner,
        lease,
        limit,
        only,
    }
}

/// The job of `id` that is due, claimed by `owner` for `lease`.
async fn claim_one(store: &Arc<dyn Store>, id: &str, owner: &str, lease: Duration) -> crate::Lease {
    let mut leases = store
        .claim(&claim(owner, lease, 1, Some(id)))
        .await
        .expect("claim");
    assert_eq!(leases.len(), 1, "one job of {id} is due: {leases:?}");
    leases.remove(0)
}

async fn submitted(store: &Arc<dyn Store>, id: &str) {
    assert!(store.submit(id).await.expect("submit"), "{id} is new");
}

/// A lapsed lease loses every write to the worker that rescued the job.
pub async fn a_lapsed_lease_is_fenced_out(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    let old = claim_one(&store, TX, "slow", Duration::from_millis(100)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = claim_one(&store, TX, "fast", Duration::from_secs(30)).await;
    assert!(new.job.fence > old.job.fence, "a claim bumps the fence");
    assert!(matches!(
        store.finish(&old, Finish::Failed("late".into())).await,
        Err(e) if e.is_lease_lost()
    ));
    assert!(matches!(
        store.renew(&old, Duration::from_secs(30)).await,
        Err(e) if e.is_lease_lost()
    ));
    store
        .finish(&new, Finish::Done("ok".into()))
        .await
        .expect("the holder writes");
    let job = store.jobs(TX).await.expect("jobs").remove(0);
    assert_eq!(
        (job.state, job.receipt.as_deref()),
        (JobState::Done, Some("ok"))
    );
}

/// Claims come in due order, never before a job is due, never twice while leased.
pub async fn claims_follow_the_due_order_and_skip_what_is_not_due(store: Arc<dyn Store>) {
    let ids = [
        "T12345678.contractA",
        "T12345678.contractB",
        "T12345678.contractC",
    ];
    for id in ids {
        submitted(&store, id).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = store
        .claim(&claim("w", Duration::from_secs(30), 1, None))
        .await
        .expect("claim");
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].job.transaction_id, ids[0], "the oldest due first");
    store
        .finish(
            &first[0],
            Finish::Retry {
                at: now_ms() + 60_000,
                error: "later".into(),
                reference: None,
            },
        )
        .await
        .expect("retry later");
    let rest = store
        .claim(&claim("w", Duration::from_secs(30), 10, None))
        .await
        .expect("claim");
    let claimed: Vec<&str> = rest.iter().map(|l| l.job.transaction_id.as_str()).collect();
    assert_eq!(claimed, vec![ids[1], ids[2]], "not the one due in a minute");
    assert!(
        store
            .claim(&claim("other", Duration::from_secs(30), 10, None))
            .await
            .expect("claim")
            .is_empty(),
        "leased jobs are not claimed again"
    );
}

/// Submitting or enqueueing the same work twice makes one job.
pub async fn the_same_work_twice_is_one_job(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    assert!(!store.submit(TX).await.expect("again"), "known already");
    let lease = claim_one(&store, TX, "w", Duration::from_secs(30)).await;
    let delivery = NewJob {
        id: postbud_channel::ids::delivery_id(TX, "archive"),
        kind: JobKind::Deliver,
        channel: "archive".into(),
        role: Role::Primary,
        next_at: now_ms(),
    };
    store
        .enqueue(&lease, &[delivery.clone(), delivery.clone()])
        .await
        .expect("enqueue");
    store.enqueue(&lease, &[delivery]).await.expect("again");
    let deliveries = store
        .jobs(TX)
        .await
        .expect("jobs")
        .into_iter()
        .filter(|j| j.kind == JobKind::Deliver)
        .count();
    assert_eq!(deliveries, 1);
}

/// A void stops a job mid-attempt: the running worker's end is refused.
pub async fn a_void_fences_out_the_running_attempt(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    let lease = claim_one(&store, TX, "w", Duration::from_secs(30)).await;
    let effect = store.void(TX).await.expect("void");
    assert!(effect.delivered_channels.is_empty());
    assert!(matches!(
        store.finish(&lease, Finish::Done("too late".into())).await,
        Err(e) if e.is_lease_lost()
    ));
    let job = store.jobs(TX).await.expect("jobs").remove(0);
    assert_eq!(job.state, JobState::Cancelled);
    assert_eq!(
        store
            .dispatch(TX)
            .await
            .expect("dispatch")
            .expect("kept")
            .stage,
        Stage::Voided
    );
}

/// Retries that race leave one job, queued to run now, and a history line for each retry that
/// requeued something, written with it.
pub async fn concurrent_retries_requeue_one_job(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    let lease = claim_one(&store, TX, "w", Duration::from_secs(30)).await;
    store
        .finish(&lease, Finish::Failed("refused".into()))
        .await
        .expect("failed");
    assert_eq!(
        store
            .retry(TX, Some("no-such-channel"))
            .await
            .expect("retry"),
        0
    );
    let (a, b, c) = tokio::join!(
        store.retry(TX, None),
        store.retry(TX, None),
        store.retry(TX, None)
    );
    let counts = [a.expect("retry"), b.expect("retry"), c.expect("retry")];
    assert!(counts.iter().all(|n| *n <= 1), "{counts:?}");
    let jobs = store.jobs(TX).await.expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].state, jobs[0].attempts), (JobState::Queued, 0));
    let notes = store
        .history(TX)
        .await
        .expect("history")
        .iter()
        .filter(|h| h.event == "retry requested")
        .count() as u64;
    assert_eq!(
        notes,
        counts.iter().sum::<u64>(),
        "one line per requeue, never apart"
    );
    assert_eq!(
        store
            .claim(&claim("w", Duration::from_secs(30), 10, None))
            .await
            .expect("claim")
            .len(),
        1
    );
}

/// History reads back in the order it was written; a turn has one holder until it ends.
pub async fn history_keeps_its_order_and_a_turn_one_holder(store: Arc<dyn Store>) {
    for event in ["first", "second", "third"] {
        store
            .record(&crate::HistoryLine {
                transaction_id: TX,
                job_id: None,
                event,
                detail: "",
            })
            .await
            .expect("record");
    }
    let events: Vec<String> = store
        .history(TX)
        .await
        .expect("history")
        .into_iter()
        .map(|h| h.event)
        .collect();
    assert_eq!(events, ["first", "second", "third"]);
    let until = now_ms() + 150;
    assert!(store.take_turn("sweep", "a", until).await.expect("turn"));
    assert!(!store.take_turn("sweep", "b", until).await.expect("turn"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        store
            .take_turn("sweep", "b", now_ms() + 1000)
            .await
            .expect("turn")
    );
}

/// The census and totals counted from every row, through the listing: what the kept counts
/// must equal.
async fn counted_row_by_row(store: &Arc<dyn Store>) -> (Vec<crate::CensusRow>, crate::Totals) {
    let mut census: Vec<crate::CensusRow> = Vec::new();
    let mut totals = crate::Totals::default();
    let all = crate::DispatchQuery::latest(10_000);
    for listed in store.dispatches(&all).await.expect("every dispatch") {
        let has = |states: &[JobState]| listed.jobs.iter().any(|j| states.contains(&j.state));
        let (active, troubled) = (
            has(&[JobState::Queued, JobState::Running]),
            has(&[JobState::Failed, JobState::Dead]),
        );
        let stage = listed.dispatch.stage;
        match census
            .iter_mut()
            .find(|r| (r.stage, r.active, r.troubled) == (stage, active, troubled))
        {
            Some(row) => row.count += 1,
            None => census.push(crate::CensusRow {
                stage,
                active,
                troubled,
                count: 1,
            }),
        }
        totals.dispatches += 1;
        for job in &listed.jobs {
            match (job.kind, job.state) {
                (_, JobState::Queued) => totals.queued += 1,
                (_, JobState::Running) => totals.in_flight += 1,
                (JobKind::Deliver, JobState::Done) => totals.delivered += 1,
                (_, JobState::Failed) => totals.failed += 1,
                (_, JobState::Dead) => totals.dead += 1,
                (_, JobState::Skipped) => totals.skipped += 1,
                _ => {}
            }
        }
    }
    (census, totals)
}

/// The kept counts equal a count of every row.
async fn assert_counts_agree(store: &Arc<dyn Store>, when: &str) {
    let sorted = |mut rows: Vec<crate::CensusRow>| {
        rows.sort_by_key(|r| (r.stage.as_str(), r.active, r.troubled));
        rows
    };
    let (census, totals) = counted_row_by_row(store).await;
    let kept = store.counts().await.expect("counts");
    assert_eq!(sorted(kept.census), sorted(census), "census {when}");
    let kept = kept.totals;
    assert_eq!(format!("{kept:?}"), format!("{totals:?}"), "totals {when}");
}

/// The counts `/metrics`, `/healthz` and `status` show are kept as rows change, not counted
/// from the history; whatever moved a row, they equal a count of every row: deliveries done,
/// failed, dead-lettered and retried, a dispatch skipped and submitted again, voids of a
/// delivered and of an unknown transaction, a prune.
pub async fn kept_counts_agree_with_every_row_counted(store: Arc<dyn Store>) {
    let lease = Duration::from_secs(30);
    let id = |n: u32| format!("T12345678.count{n}");
    let claimed = async |id: &str| {
        store
            .claim(&claim("w", lease, 10, Some(id)))
            .await
            .expect("claim")
    };
    // Dispatched and routed to one channel; the delivery ends as `end` (None: still queued).
    let routed = async |id: &str, end: Option<Finish>| {
        submitted(&store, id).await;
        let dispatch = claimed(id).await.remove(0);
        let patch = crate::DispatchPatch {
            stage: Some(Stage::Routed),
            ..Default::default()
        };
        store
            .update_dispatch(&dispatch, patch)
            .await
            .expect("routed");
        let delivery = NewJob {
            id: postbud_channel::ids::delivery_id(id, "archive"),
            kind: JobKind::Deliver,
            channel: "archive".into(),
            role: Role::Primary,
            next_at: now_ms(),
        };
        store
            .enqueue(&dispatch, &[delivery])
            .await
            .expect("enqueue");
        store
            .finish(&dispatch, Finish::Done("routed".into()))
            .await
            .expect("done");
        if let Some(end) = end {
            let attempt = claimed(id).await.remove(0);
            store.finish(&attempt, end).await.expect("delivery ends");
        }
    };
    assert_counts_agree(&store, "when empty").await;
    submitted(&store, &id(0)).await;
    routed(&id(1), Some(Finish::Done("sent".into()))).await;
    routed(&id(2), Some(Finish::Failed("refused".into()))).await;
    routed(&id(3), Some(Finish::Dead("gave up".into()))).await;
    routed(&id(4), None).await;
    routed(&id(5), Some(Finish::Done("sent".into()))).await;
    submitted(&store, &id(6)).await;
    let skipped = claimed(&id(6)).await.remove(0);
    let patch = crate::DispatchPatch {
        stage: Some(Stage::Skipped),
        ..Default::default()
    };
    store
        .update_dispatch(&skipped, patch)
        .await
        .expect("skipped");
    store
        .finish(&skipped, Finish::Skipped("not ours".into()))
        .await
        .expect("skip");
    let running = claimed(&id(4)).await;
    assert_eq!(running.len(), 1, "the queued delivery is running");
    assert_counts_agree(&store, "with every state held").await;

    assert_eq!(store.retry(&id(2), None).await.expect("retry"), 1);
    store.void(&id(5)).await.expect("void a delivered one");
    store
        .void("T12345678.countUnknown")
        .await
        .expect("void an unknown one");
    store
        .finish(&running[0], Finish::Done("sent".into()))
        .await
        .expect("done");
    assert!(
        store.submit(&id(6)).await.expect("again"),
        "a skipped one is submitted again"
    );
    assert_counts_agree(&store, "after retry, voids, a resubmission").await;

    store.prune(now_ms() + 60_000).await.expect("prune");
    assert_counts_agree(&store, "after a prune").await;
}

/// The record after a capture, kept with the routing, comes first in its transaction: the
/// dispatch shows collection started and no 202 pending, and its history line precedes the
/// deliveries queued and the dispatch done. A lapsed lease writes none of it.
pub async fn a_completion_keeps_the_capture_record_first(store: Arc<dyn Store>) {
    use crate::{Confirmation, DispatchPatch};
    submitted(&store, TX).await;
    let old = claim_one(&store, TX, "slow", Duration::from_millis(100)).await;
    let capturing = DispatchPatch {
        stage: Some(Stage::Capturing),
        capture_reference: Some(Some("ref".into())),
        capture_request_id: Some(Some("req-1".into())),
        ..DispatchPatch::default()
    };
    store
        .update_dispatch(&old, capturing)
        .await
        .expect("capturing");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = claim_one(&store, TX, "fast", Duration::from_secs(30)).await;
    let seen = new
        .dispatch
        .as_ref()
        .expect("a dispatch job comes with its dispatch");
    assert_eq!(
        (
            seen.stage,
            seen.capture_reference.as_deref(),
            seen.capture_request_id.as_deref()
        ),
        (Stage::Capturing, Some("ref"), Some("req-1")),
        "as the claim found it"
    );
    let pdf =
        postbud_channel::Pdf::new("1001.pdf", bytes::Bytes::from_static(b"%PDF-1.4 contract"));
    let invoice = postbud_channel::Invoice::new(TX, "1001", "NOK", pdf);
    let route = ChosenRoute {
        index: 0,
        snapshot: "{}".into(),
    };
    let jobs = [NewJob {
        id: format!("{TX}:deliver:email"),
        kind: JobKind::Deliver,
        channel: "email".into(),
        role: Role::Primary,
        next_at: now_ms(),
    }];
    let confirmation = Confirmation {
        captured_at: 1_234,
        detail: "INITIATE_CAPTURE event present".into(),
    };
    let completion = |confirmation| Completion {
        invoice: &invoice,
        route: &route,
        jobs: &jobs,
        detail: "routed",
        lease_first_due: Some(Duration::from_secs(30)),
        confirmation,
    };
    assert!(matches!(
        store
            .complete_dispatch(&old, &completion(Some(&confirmation)))
            .await,
        Err(e) if e.is_lease_lost()
    ));
    let dispatch = store.dispatch(TX).await.expect("read").expect("dispatch");
    assert_eq!(
        (dispatch.captured_at, dispatch.capture_request_id.as_deref()),
        (None, Some("req-1"))
    );
    let leased = store
        .complete_dispatch(&new, &completion(Some(&confirmation)))
        .await
        .expect("the holder completes")
        .expect("the delivery due now is leased");
    assert_eq!(
        (leased.job.kind, leased.owner.as_str()),
        (JobKind::Deliver, "fast")
    );
    assert!(leased.dispatch.is_none(), "a delivery comes without one");
    let dispatch = store.dispatch(TX).await.expect("read").expect("dispatch");
    assert_eq!(
        (
            dispatch.stage,
            dispatch.captured_at,
            dispatch.capture_request_id
        ),
        (Stage::Routed, Some(1_234), None)
    );
    let history = store.history(TX).await.expect("history");
    let events: Vec<&str> = history.iter().map(|h| h.event.as_str()).collect();
    let captured = events
        .iter()
        .position(|e| *e == "captured")
        .expect("a captured line");
    assert_eq!(
        events[captured..],
        ["captured", "queued", "done"],
        "{events:?}"
    );
    assert_eq!(history[captured].detail, "INITIATE_CAPTURE event present");
}

/// Ending an attempt and claiming the next job is one write: refused whole to a lapsed lease
/// (nothing claimed), and for the holder the end is recorded and the next due job leased.
pub async fn an_end_and_the_next_claim_are_one_write(store: Arc<dyn Store>) {
    let (first, second) = ("T12345678.contractEnd1", "T12345678.contractEnd2");
    submitted(&store, first).await;
    let old = claim_one(&store, first, "slow", Duration::from_millis(100)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = claim_one(&store, first, "fast", Duration::from_secs(30)).await;
    submitted(&store, second).await;
    let next = claim("slow", Duration::from_secs(30), 1, None);
    assert!(matches!(
        store
            .finish_then_claim(&old, Finish::Done("late".into()), &next)
            .await,
        Err(e) if e.is_lease_lost()
    ));
    let waiting = store.jobs(second).await.expect("jobs").remove(0);
    assert_eq!(
        waiting.state,
        JobState::Queued,
        "nothing claimed with a refused end"
    );

    let next = claim("fast", Duration::from_secs(30), 1, None);
    let leased = store
        .finish_then_claim(&new, Finish::Done("sent".into()), &next)
        .await
        .expect("the holder ends and claims");
    assert_eq!(leased.len(), 1, "{leased:?}");
    assert_eq!(
        (
            leased[0].job.transaction_id.as_str(),
            leased[0].owner.as_str()
        ),
        (second, "fast")
    );
    let seen = leased[0]
        .dispatch
        .as_ref()
        .map(|d| d.transaction_id.as_str());
    assert_eq!(
        seen,
        Some(second),
        "the next dispatch comes with its record"
    );
    let ended = store.jobs(first).await.expect("jobs").remove(0);
    assert_eq!(
        (ended.state, ended.receipt.as_deref()),
        (JobState::Done, Some("sent"))
    );
    let history = store.history(first).await.expect("history");
    assert_eq!(
        history.last().map(|h| h.event.as_str()),
        Some("done"),
        "{history:?}"
    );
    let running = store.jobs(second).await.expect("jobs").remove(0);
    assert_eq!(
        (running.state, running.fence),
        (JobState::Running, leased[0].job.fence)
    );

    let none = store
        .finish_then_claim(
            &leased[0],
            Finish::Retry {
                at: now_ms() + 60_000,
                error: "later".into(),
                reference: None,
            },
            &next,
        )
        .await
        .expect("the last one ends");
    assert!(none.is_empty(), "nothing else is due: {none:?}");
    let retried = store.jobs(second).await.expect("jobs").remove(0);
    assert_eq!(retried.state, JobState::Queued);
}

/// A capture request is recorded and cleared; only a dispatch stopped because collection was
/// started elsewhere is adopted, once, and its job queued again as new; a merchant-initiated
/// origin is recorded before the first attempt and fences out one under way.
pub async fn a_capture_is_adopted_only_when_stopped_for_a_collection_elsewhere(
    store: Arc<dyn Store>,
) {
    let (elsewhere, other) = ("T12345678.contractAdopt1", "T12345678.contractAdopt2");
    for (id, reason) in [
        (
            elsewhere,
            format!("{}: Dintero shows …", crate::COLLECTION_STARTED_ELSEWHERE),
        ),
        (other, "no route matches this invoice".to_owned()),
    ] {
        submitted(&store, id).await;
        let lease = claim_one(&store, id, "w", Duration::from_secs(30)).await;
        let requested = crate::DispatchPatch {
            capture_reference: Some(Some("order-1".into())),
            ..Default::default()
        };
        store
            .update_dispatch(&lease, requested)
            .await
            .expect("requested");
        let seen = store.dispatch(id).await.expect("read").expect("dispatch");
        assert_eq!(seen.capture_reference.as_deref(), Some("order-1"));
        let cleared = crate::DispatchPatch {
            capture_reference: Some(None),
            stage: Some(Stage::Failed),
            reason: Some(Some(reason)),
            ..Default::default()
        };
        store
            .update_dispatch(&lease, cleared)
            .await
            .expect("cleared");
        let seen = store.dispatch(id).await.expect("read").expect("dispatch");
        assert_eq!(
            seen.capture_reference, None,
            "a request refused is no request"
        );
        store
            .finish(&lease, Finish::Failed("stopped".into()))
            .await
            .expect("failed");
    }
    assert!(!store.adopt_capture(other, "adopted").await.expect("adopt"));
    assert!(
        store
            .adopt_capture(elsewhere, "adopted")
            .await
            .expect("adopt")
    );
    assert!(
        !store
            .adopt_capture(elsewhere, "again")
            .await
            .expect("adopt"),
        "once"
    );
    let adopted = store
        .dispatch(elsewhere)
        .await
        .expect("read")
        .expect("dispatch");
    assert_eq!(adopted.stage, Stage::Captured);
    assert!(adopted.captured_at.is_some() && adopted.reason.is_none());
    let job = store.jobs(elsewhere).await.expect("jobs").remove(0);
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    let history = store.history(elsewhere).await.expect("history");
    assert!(
        history.iter().any(|h| h.event == "capture adopted"),
        "{history:?}"
    );

    let declared = "T12345678.contractOrigin";
    submitted(&store, declared).await;
    let running = claim_one(&store, declared, "w", Duration::from_secs(30)).await;
    store
        .mark_origin(declared, crate::ORIGIN_DECLARED, "declared")
        .await
        .expect("origin");
    let seen = store
        .dispatch(declared)
        .await
        .expect("read")
        .expect("dispatch");
    assert_eq!(seen.origin.as_deref(), Some(crate::ORIGIN_DECLARED));
    assert!(
        matches!(
            store.finish(&running, Finish::Done("late".into())).await,
            Err(e) if e.is_lease_lost()
        ),
        "the attempt that read before the origin was recorded is fenced out"
    );
}

/// Opening a store again applies no migration twice and keeps what it holds.
pub async fn migrations_applied_twice_change_nothing(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    // This crate's own tests open every store twice before a case; here the store still
    // answers after it.
    assert_eq!(store.jobs(TX).await.expect("jobs").len(), 1);
}

/// The store's clock is the one due times are stamped with: a job submitted now is due by the
/// store's `now`, claimable at once, and the offset it reports (if any) is small on one host.
pub async fn the_store_clock_stamps_what_it_writes(store: Arc<dyn Store>) {
    let before = store.now();
    submitted(&store, TX).await;
    let after = store.now();
    assert!(after >= before, "the store's clock does not run back");
    let job = store
        .job(&postbud_channel::ids::dispatch_id(TX))
        .await
        .expect("job")
        .expect("the dispatch job");
    assert!(
        (before - 1_000..=after + 1_000).contains(&job.next_at),
        "due at the store's now: {before} ≤ {} ≤ {after}",
        job.next_at
    );
    if let Some(offset) = store.clock_offset() {
        assert!(
            offset.abs() < 60_000,
            "one host's clocks agree within a minute: {offset} ms"
        );
    }
    claim_one(&store, TX, "w", Duration::from_secs(30)).await;
}

/// One job reads back as the transaction's listing has it; an unknown one is `None`.
pub async fn a_job_reads_back_by_its_id(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    let lease = claim_one(&store, TX, "w", Duration::from_secs(30)).await;
    let one = store
        .job(&lease.job.id)
        .await
        .expect("job")
        .expect("the claimed job");
    assert_eq!(
        (
            one.state,
            one.fence,
            one.attempts,
            one.transaction_id.as_str()
        ),
        (JobState::Running, lease.job.fence, 1, TX)
    );
    let listed = store.jobs(TX).await.expect("jobs").remove(0);
    assert_eq!(format!("{one:?}"), format!("{listed:?}"));
    assert!(store.job("dsp-unknown").await.expect("job").is_none());
}

/// A PDF kept before the capture is kept once: a later attempt gets the first copy back, the
/// history says so once, and a lease another worker took over keeps nothing.
pub async fn a_document_is_kept_once_and_only_under_the_lease(store: Arc<dyn Store>) {
    use postbud_channel::Pdf;
    assert!(store.document(TX).await.expect("read").is_none());
    submitted(&store, TX).await;
    let old = claim_one(&store, TX, "slow", Duration::from_millis(100)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = claim_one(&store, TX, "fast", Duration::from_secs(30)).await;
    let first = Pdf::new("1001.pdf", bytes::Bytes::from_static(b"%PDF-1.4 first"));
    assert!(
        matches!(store.save_document(&old, &first).await, Err(e) if e.is_lease_lost()),
        "a lease taken over keeps nothing"
    );
    assert!(store.document(TX).await.expect("read").is_none());
    let kept = store.save_document(&new, &first).await.expect("kept");
    assert_eq!(kept.bytes, first.bytes);
    let second = Pdf::new("1001.pdf", bytes::Bytes::from_static(b"%PDF-1.4 second"));
    let again = store.save_document(&new, &second).await.expect("again");
    assert_eq!(
        again.bytes, first.bytes,
        "every attempt sends the same bytes"
    );
    assert_eq!(again.sha256, first.sha256);
    let stored = store.document(TX).await.expect("read").expect("kept");
    assert_eq!(
        (stored.file_name.as_str(), &stored.bytes),
        ("1001.pdf", &first.bytes)
    );
    let noted = store
        .history(TX)
        .await
        .expect("history")
        .iter()
        .filter(|h| h.event == "pdf fetched")
        .count();
    assert_eq!(noted, 1);
}

/// The invoice snapshot reads back with the PDF kept after the capture, which replaced the one
/// kept before it; before a completion there is none.
pub async fn an_invoice_reads_back_with_the_pdf_after_the_capture(store: Arc<dyn Store>) {
    use postbud_channel::{Invoice, Pdf};
    submitted(&store, TX).await;
    let lease = claim_one(&store, TX, "w", Duration::from_secs(30)).await;
    let before = Pdf::new("1001.pdf", bytes::Bytes::from_static(b"%PDF-1.4 before"));
    store.save_document(&lease, &before).await.expect("kept");
    assert!(
        store.invoice(TX).await.expect("read").is_none(),
        "no snapshot yet"
    );
    let after = Pdf::new("1001.pdf", bytes::Bytes::from_static(b"%PDF-1.4 after"));
    let invoice = Invoice::new(TX, "1001", "NOK", after.clone());
    let route = ChosenRoute {
        index: 2,
        snapshot: r#"{"deliver":["email"]}"#.into(),
    };
    store
        .complete_dispatch(
            &lease,
            &Completion {
                invoice: &invoice,
                route: &route,
                jobs: &[],
                detail: "routed",
                lease_first_due: None,
                confirmation: None,
            },
        )
        .await
        .expect("completed");
    let read = store
        .invoice(TX)
        .await
        .expect("read")
        .expect("the snapshot");
    assert_eq!(
        (read.transaction_id.as_str(), read.invoice_number.as_str()),
        (TX, "1001")
    );
    assert_eq!(read.pdf.bytes, after.bytes, "the copy after the capture");
    assert_eq!(
        store.document(TX).await.expect("read").expect("kept").bytes,
        after.bytes
    );
    let dispatch = store.dispatch(TX).await.expect("read").expect("dispatch");
    assert_eq!(
        (
            dispatch.stage,
            dispatch.route,
            dispatch.route_snapshot.as_deref()
        ),
        (Stage::Routed, Some(2), Some(route.snapshot.as_str()))
    );
    assert!(
        store
            .invoice("T12345678.unknown")
            .await
            .expect("read")
            .is_none()
    );
}

/// Jobs made outside a lease (cancellation notices) are made once, with one history line each.
pub async fn jobs_made_outside_a_lease_are_made_once(store: Arc<dyn Store>) {
    let due = now_ms() + 60_000;
    let notice = NewJob {
        id: format!("{TX}:cancel:email"),
        kind: JobKind::Cancel,
        channel: "email".into(),
        role: Role::Cancel,
        next_at: due,
    };
    store
        .enqueue_free(TX, &[notice.clone(), notice.clone()])
        .await
        .expect("enqueue");
    store
        .enqueue_free(TX, std::slice::from_ref(&notice))
        .await
        .expect("again");
    let jobs = store.jobs(TX).await.expect("jobs");
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        (jobs[0].kind, jobs[0].role, jobs[0].state, jobs[0].next_at),
        (JobKind::Cancel, Some(Role::Cancel), JobState::Queued, due)
    );
    assert_eq!(jobs[0].channel.as_deref(), Some("email"));
    let queued = store
        .history(TX)
        .await
        .expect("history")
        .iter()
        .filter(|h| h.event == "queued" && h.job_id.as_deref() == Some(notice.id.as_str()))
        .count();
    assert_eq!(queued, 1);
    assert!(
        store
            .claim(&claim("w", Duration::from_secs(30), 10, None))
            .await
            .expect("claim")
            .is_empty(),
        "not due for a minute"
    );
}

/// A void Dintero accepted is recorded with its request id and queues the job that waits for
/// its confirmation, once; a waiting job left from an earlier void that ended runs again.
pub async fn an_accepted_void_queues_its_confirmation_once(store: Arc<dyn Store>) {
    let confirm = NewJob {
        id: format!("{TX}:void"),
        kind: JobKind::Void,
        channel: "dintero".into(),
        role: Role::Confirm,
        next_at: now_ms(),
    };
    let accepted = AcceptedVoid {
        transaction_id: TX,
        request_id: Some("req-void-1"),
        confirm: &confirm,
    };
    store.void_accepted(&accepted).await.expect("accepted");
    let dispatch = store.dispatch(TX).await.expect("read").expect("recorded");
    assert_eq!(
        (dispatch.stage, dispatch.void_request_id.as_deref()),
        (Stage::Voiding, Some("req-void-1"))
    );
    let job = store.job(&confirm.id).await.expect("job").expect("queued");
    assert_eq!(
        (job.kind, job.role, job.state),
        (JobKind::Void, Some(Role::Confirm), JobState::Queued)
    );
    let lease = claim_one(&store, TX, "w", Duration::from_secs(30)).await;
    assert_eq!(lease.job.id, confirm.id);
    store
        .finish(&lease, Finish::Done("voided".into()))
        .await
        .expect("done");
    let again = AcceptedVoid {
        request_id: None,
        ..accepted
    };
    store.void_accepted(&again).await.expect("accepted again");
    let job = store.job(&confirm.id).await.expect("job").expect("kept");
    assert_eq!((job.state, job.attempts), (JobState::Queued, 0));
    assert!(job.fence > lease.job.fence, "the old attempt is fenced out");
    assert_eq!(store.jobs(TX).await.expect("jobs").len(), 1, "one job");
    let noted = store
        .history(TX)
        .await
        .expect("history")
        .iter()
        .filter(|h| h.event == "void accepted")
        .count();
    assert_eq!(noted, 2);
}

/// Persistent values: absent until set, set once by the first of several racing to set them,
/// replaced only when asked.
pub async fn persistent_values_are_set_once_unless_replaced(store: Arc<dyn Store>) {
    assert!(store.meta("link_key").await.expect("meta").is_none());
    let (a, b, c) = tokio::join!(
        store.meta_init("link_key", "a"),
        store.meta_init("link_key", "b"),
        store.meta_init("link_key", "c")
    );
    let (a, b, c) = (a.expect("init"), b.expect("init"), c.expect("init"));
    assert!(a == b && b == c, "one value wins: {a} {b} {c}");
    assert_eq!(store.meta("link_key").await.expect("meta"), Some(a.clone()));
    assert_eq!(
        store.meta_init("link_key", "later").await.expect("init"),
        a,
        "set once"
    );
    store.set_meta("link_key", "new").await.expect("set");
    assert_eq!(
        store.meta("link_key").await.expect("meta").as_deref(),
        Some("new")
    );
    store.set_meta("other", "x").await.expect("set");
    assert_eq!(
        store.meta("link_key").await.expect("meta").as_deref(),
        Some("new"),
        "a key of its own"
    );
}

/// A store that announces new work wakes a waiting worker when a job is queued.
pub async fn announced_work_wakes_a_waiting_worker(store: Arc<dyn Store>) {
    let Some(signal) = store.work_signal() else {
        // A store that cannot tell is polled; nothing to check.
        return;
    };
    // A store may start listening for its own announcements after it opened (PostgreSQL's
    // LISTEN connection): work queued before that is found by the workers' polling, so the
    // contract is that announcements arrive once the store listens. New work is queued until
    // one is announced, for ten seconds at most.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for n in 0.. {
        let woken = signal.notified();
        submitted(&store, &format!("{TX}{n}")).await;
        if tokio::time::timeout(Duration::from_millis(250), woken)
            .await
            .is_ok()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no submission was announced within ten seconds ({} tried)",
            n + 1
        );
    }
}

/// Evidence is recorded once per event, only about a delivery whose attempt ended; the sink's
/// reference finds its delivery; a late state never takes back a further one; a bounce of a
/// delivered job fails it and queues what follows once, however many bounces arrive.
pub async fn evidence_is_recorded_once_and_a_bounce_fails_a_delivery_once(store: Arc<dyn Store>) {
    use crate::{EvidenceFailure, EvidenceWritten, NewEvidence};
    use postbud_channel::EvidenceState;

    // Due a minute ago by this host's clock: due by the store's too (PostgreSQL judges by the
    // database's clock, a few milliseconds off even on the same host).
    let due = now_ms() - 60_000;
    let delivery = NewJob {
        id: "dlv-contract-email".into(),
        kind: JobKind::Deliver,
        channel: "email".into(),
        role: Role::Primary,
        next_at: due,
    };
    let fallback = NewJob {
        id: "dlv-contract-sms".into(),
        kind: JobKind::Deliver,
        channel: "sms".into(),
        role: Role::Fallback,
        next_at: due,
    };
    // Under a dispatch, as every delivery is (what the counts count).
    submitted(&store, TX).await;
    store
        .enqueue_free(TX, std::slice::from_ref(&delivery))
        .await
        .expect("enqueue");
    let then = [fallback.clone()];
    let evidence = |event_id: &'static str, state: EvidenceState| NewEvidence {
        job_id: "dlv-contract-email",
        transaction_id: TX,
        event_id,
        state,
        reporter: "mx.example (DSN)",
        reason: "550 5.1.1 no such user",
        payload: b"Final-Recipient: rfc822;kari@example.com\0",
        reported_at: Some(1_700_000_000_000),
        fails: state.is_failure().then_some(EvidenceFailure {
            error: "bounced: 550 5.1.1 no such user",
            then: &then,
            then_detail: "[email] bounced; falling back to sms",
        }),
        detail: "[email] mx.example (DSN): 550 5.1.1 no such user",
    };
    let record = |event_id, state| {
        let store = Arc::clone(&store);
        async move {
            store
                .record_evidence(&evidence(event_id, state))
                .await
                .expect("record")
        }
    };
    assert_eq!(
        record("e0", EvidenceState::Delivered).await,
        EvidenceWritten::NotYet,
        "queued"
    );
    let lease = store
        .claim(&claim("w", Duration::from_secs(30), 10, Some(TX)))
        .await
        .expect("claim")
        .into_iter()
        .find(|l| l.job.id == delivery.id)
        .expect("the delivery is due");
    assert_eq!(
        record("e0", EvidenceState::Bounced).await,
        EvidenceWritten::NotYet,
        "running"
    );
    store
        .finish(
            &lease,
            Finish::DoneWith {
                receipt: "250 queued".into(),
                reference: "<m1@merchant.example>".into(),
            },
        )
        .await
        .expect("finish");
    let found = store
        .job_by_reference("email", "<m1@merchant.example>")
        .await
        .expect("by reference")
        .expect("the delivery its sink named");
    assert_eq!(found.id, delivery.id);
    assert_eq!(found.reference.as_deref(), Some("<m1@merchant.example>"));
    assert!(
        store
            .job_by_reference("sms", "<m1@merchant.example>")
            .await
            .expect("by reference")
            .is_none(),
        "another channel's reference is another delivery"
    );

    assert_eq!(
        record("e1", EvidenceState::Delivered).await,
        EvidenceWritten::New { failed: false }
    );
    assert_eq!(
        record("e1", EvidenceState::Delivered).await,
        EvidenceWritten::Duplicate
    );
    assert_eq!(
        record("e2", EvidenceState::Delayed).await,
        EvidenceWritten::New { failed: false }
    );
    let job = store.job(&delivery.id).await.expect("job").expect("there");
    assert_eq!(
        (job.state, job.evidence.as_deref()),
        (JobState::Done, Some("delivered")),
        "a late delay does not take back a delivery"
    );

    assert_eq!(
        record("e3", EvidenceState::Bounced).await,
        EvidenceWritten::New { failed: true }
    );
    assert_eq!(
        record("e4", EvidenceState::Bounced).await,
        EvidenceWritten::New { failed: false },
        "a second bounce fails nothing more"
    );
    assert_eq!(
        record("e3", EvidenceState::Bounced).await,
        EvidenceWritten::Duplicate
    );
    let job = store.job(&delivery.id).await.expect("job").expect("there");
    assert_eq!(
        (
            job.state,
            job.evidence.as_deref(),
            job.last_error.as_deref()
        ),
        (
            JobState::Failed,
            Some("bounced"),
            Some("bounced: 550 5.1.1 no such user")
        )
    );
    let jobs = store.jobs(TX).await.expect("jobs");
    let queued: Vec<_> = jobs.iter().filter(|j| j.id == fallback.id).collect();
    assert_eq!(queued.len(), 1, "{jobs:?}");
    assert_eq!(
        (queued[0].role, queued[0].state),
        (Some(Role::Fallback), JobState::Queued)
    );
    let history = store.history(TX).await.expect("history");
    let count = |event: &str| history.iter().filter(|h| h.event == event).count();
    assert_eq!(
        (
            count("evidence: delivered"),
            count("evidence: delayed"),
            count("evidence: bounced"),
            count("fallback")
        ),
        (1, 1, 2, 1),
        "{history:?}"
    );
    let recorded = store.evidence(TX).await.expect("evidence");
    let events: Vec<(&str, &str)> = recorded
        .iter()
        .map(|e| (e.event_id.as_str(), e.state.as_str()))
        .collect();
    assert_eq!(
        events,
        [
            ("e1", "delivered"),
            ("e2", "delayed"),
            ("e3", "bounced"),
            ("e4", "bounced")
        ]
    );
    assert_eq!(
        recorded[0].payload.as_deref(),
        Some(&b"Final-Recipient: rfc822;kari@example.com\0"[..]),
        "the raw event is kept as it came"
    );
    assert_eq!(recorded[0].reported_at, Some(1_700_000_000_000));

    // A second delivery given the same reference: the reference names neither.
    let twin = NewJob {
        id: "dlv-contract-twin".into(),
        ..delivery.clone()
    };
    store
        .enqueue_free(TX, std::slice::from_ref(&twin))
        .await
        .expect("enqueue");
    let lease = store
        .claim(&claim("w", Duration::from_secs(30), 10, Some(TX)))
        .await
        .expect("claim")
        .into_iter()
        .find(|l| l.job.id == twin.id)
        .expect("the twin is due");
    store
        .finish(
            &lease,
            Finish::DoneWith {
                receipt: "250 queued".into(),
                reference: "<m1@merchant.example>".into(),
            },
        )
        .await
        .expect("finish");
    assert!(
        store
            .job_by_reference("email", "<m1@merchant.example>")
            .await
            .expect("by reference")
            .is_none(),
        "a reference two deliveries share names neither"
    );
    // Once the invoice is voided, a bounce of a delivered job is recorded and fails nothing.
    store.void(TX).await.expect("void");
    let on_twin = NewEvidence {
        job_id: "dlv-contract-twin",
        ..evidence("e6", EvidenceState::Bounced)
    };
    assert_eq!(
        store.record_evidence(&on_twin).await.expect("record"),
        EvidenceWritten::New { failed: false }
    );
    let twin_now = store.job(&twin.id).await.expect("job").expect("there");
    assert_eq!(
        (twin_now.state, twin_now.evidence.as_deref()),
        (JobState::Done, Some("bounced"))
    );

    let unknown = NewEvidence {
        job_id: "dlv-nobody-made",
        ..evidence("e5", EvidenceState::Bounced)
    };
    assert_eq!(
        store.record_evidence(&unknown).await.expect("record"),
        EvidenceWritten::NoJob
    );
    assert_counts_agree(&store, "after a bounce failed a delivery").await;
}

/// Routes `tx` with an invoice numbered `number` (merchant reference `reference`, customer
/// email `email`) and one primary delivery per channel, due now.
async fn routed_with(
    store: &Arc<dyn Store>,
    tx: &str,
    number: &str,
    reference: &str,
    email: &str,
    channels: &[&str],
) {
    use postbud_channel::{Invoice, Pdf};
    submitted(store, tx).await;
    let lease = claim_one(store, tx, "w", Duration::from_secs(30)).await;
    let pdf = Pdf::new("x.pdf", bytes::Bytes::from_static(b"%PDF-1.4 x"));
    let mut invoice = Invoice::new(tx, number, "NOK", pdf);
    invoice.merchant_reference = Some(reference.into());
    invoice.customer.email = Some(email.into());
    let jobs: Vec<NewJob> = (channels.iter())
        .map(|channel| NewJob {
            id: format!("{tx}:{channel}"),
            kind: JobKind::Deliver,
            channel: (*channel).into(),
            role: Role::Primary,
            next_at: now_ms() - 1,
        })
        .collect();
    let route = ChosenRoute {
        index: 0,
        snapshot: "{}".into(),
    };
    store
        .complete_dispatch(
            &lease,
            &Completion {
                invoice: &invoice,
                route: &route,
                jobs: &jobs,
                detail: "routed",
                lease_first_due: None,
                confirmation: None,
            },
        )
        .await
        .expect("routed");
}

/// The transaction ids `query` lists, in order.
async fn listed(store: &Arc<dyn Store>, query: crate::DispatchQuery) -> Vec<String> {
    let query = crate::DispatchQuery {
        limit: 100,
        ..query
    };
    let found = store.dispatches(&query).await.expect("listed");
    found
        .into_iter()
        .map(|d| d.dispatch.transaction_id)
        .collect()
}

/// The console's filters each find what they say, alone and together, whatever the source
/// the store reads them from: a delivery's state, a job tried twice, a search by each key
/// (the email ASCII case-insensitively; a NUL or a wildcard matches nothing, without failing);
/// pages follow the cursor without a gap or a repeat; a prune drops the email, not the rest.
pub async fn listings_filter_by_state_retries_and_search(store: Arc<dyn Store>) {
    use crate::DispatchQuery as Q;
    let (a, b, c, d) = (
        "T12345678.listA",
        "T12345678.listB",
        "T12345678.listC",
        "T12345678.listD",
    );
    routed_with(
        &store,
        a,
        "1001",
        "order-A",
        "Kari.Nordmann@Example.NO",
        &["email"],
    )
    .await;
    let lease = claim_one(&store, a, "w", Duration::from_secs(30)).await;
    store
        .finish(&lease, Finish::Done("sent".into()))
        .await
        .expect("done");
    routed_with(&store, b, "1002", "order-B", "ola@example.no", &["sms"]).await;
    let lease = claim_one(&store, b, "w", Duration::from_secs(30)).await;
    let retry = Finish::Retry {
        at: now_ms() - 1,
        error: "busy".into(),
        reference: None,
    };
    store.finish(&lease, retry).await.expect("retry");
    let lease = claim_one(&store, b, "w", Duration::from_secs(30)).await;
    assert_eq!(lease.job.attempts, 2, "{lease:?}");
    store
        .finish(&lease, Finish::Failed("refused".into()))
        .await
        .expect("failed");
    submitted(&store, c).await;
    routed_with(&store, d, "1004", "order-D", "per@example.no", &["email"]).await;
    store.void(d).await.expect("voided");

    let mut all = listed(&store, Q::default()).await;
    assert_eq!(all.len(), 4, "{all:?}");
    let search = |text: &str| Q {
        search: Some(text.into()),
        ..Q::default()
    };
    for (text, expected) in [
        ("1001", vec![a]),
        ("order-B", vec![b]),
        (" KARI.NORDMANN@example.no ", vec![a]),
        (b, vec![b]),
        (c, vec![c]),
        ("order-%", vec![]),
        ("10\u{0}01", vec![]),
        ("nobody@example.no", vec![]),
    ] {
        assert_eq!(
            listed(&store, search(text)).await,
            expected,
            "search {text:?}"
        );
    }
    assert_eq!(
        listed(&store, search("  ")).await,
        all,
        "an empty search is none"
    );
    let state = |state: JobState| Q {
        delivery_state: Some(state),
        ..Q::default()
    };
    for (s, expected) in [
        (JobState::Done, vec![a]),
        (JobState::Failed, vec![b]),
        (JobState::Cancelled, vec![d]),
        // C's dispatch job is queued: not a delivery.
        (JobState::Queued, vec![]),
        (JobState::Skipped, vec![]),
    ] {
        assert_eq!(listed(&store, state(s)).await, expected, "state {s}");
    }
    let retried = Q {
        retried: true,
        ..Q::default()
    };
    assert_eq!(listed(&store, retried.clone()).await, [b]);
    let on = |channel: &str, query: Q| Q {
        channel: Some(channel.into()),
        ..query
    };
    assert_eq!(listed(&store, on("sms", retried.clone())).await, [b]);
    assert!(listed(&store, on("email", retried)).await.is_empty());
    let troubled = Q {
        troubled: true,
        ..Q::default()
    };
    assert_eq!(listed(&store, troubled.clone()).await, [b]);
    let troubled_search = Q {
        search: Some("1001".into()),
        ..troubled
    };
    assert!(
        listed(&store, troubled_search).await.is_empty(),
        "every filter holds"
    );
    let failed_email = Q {
        delivery_state: Some(JobState::Failed),
        channel: Some("email".into()),
        ..Q::default()
    };
    assert!(listed(&store, failed_email).await.is_empty());

    // A page of one at a time, each after the last: every invoice once, newest first.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .dispatches(&Q {
                after: after.clone(),
                ..Q::latest(1)
            })
            .await
            .expect("page");
        let Some(last) = page.last() else { break };
        after = Some((
            last.dispatch.created_at,
            last.dispatch.transaction_id.clone(),
        ));
        paged.extend(page.into_iter().map(|d| d.dispatch.transaction_id));
    }
    assert_eq!(paged, all);
    all.sort();
    paged.sort();
    paged.dedup();
    assert_eq!(paged, all, "no repeat");

    // A prune forgets the customer's email; the merchant's reference stays an id.
    assert!(store.prune(now_ms() + 60_000).await.expect("pruned") >= 1);
    assert!(
        listed(&store, search("kari.nordmann@example.no"))
            .await
            .is_empty()
    );
    assert_eq!(listed(&store, search("order-A")).await, [a]);
}

/// The audit log reads back newest first, a page at a time: a page never splits a
/// millisecond, so the next page, read before it, misses no entry; what an entry says is
/// kept as said (a NUL visibly), and a prune leaves the log alone.
pub async fn the_audit_log_pages_newest_first(store: Arc<dyn Store>) {
    use crate::AuditEntry;
    let entries = [
        AuditEntry::new(1_000, "kari", "login", "console", "ok"),
        AuditEntry::new(2_000, "kari", "retry", TX, "1 job(s) requeued"),
        AuditEntry::new(2_000, "ola", "void", TX, "refused: <b>\u{0}</b>\nline"),
        AuditEntry::new(2_000, "kari", "redeliver", TX, "queued"),
        AuditEntry::new(
            3_000,
            "kari",
            "retry-matching",
            "verdict=needs-attention",
            "3 of 3",
        ),
    ];
    for entry in &entries {
        store.record_audit(entry).await.expect("recorded");
    }
    assert!(store.audit_log(None, 0).await.expect("read").is_empty());
    let first = store.audit_log(None, 2).await.expect("first page");
    let actions: Vec<&str> = first.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        ["retry-matching", "redeliver", "void", "retry"],
        "the millisecond whole"
    );
    assert_eq!(first[2].result, "refused: <b>\u{2400}</b>\nline");
    assert_eq!(
        (
            first[2].user.as_str(),
            first[2].at,
            first[2].target.as_str()
        ),
        ("ola", 2_000, TX)
    );
    let next = store
        .audit_log(Some(first.last().expect("an entry").at), 2)
        .await
        .expect("next page");
    assert_eq!(next, [entries[0].clone()]);
    assert_eq!(store.audit_log(None, 100).await.expect("all").len(), 5);
    store.prune(now_ms() + 60_000).await.expect("prune");
    assert_eq!(
        store.audit_log(None, 100).await.expect("all").len(),
        5,
        "kept"
    );
}

/// A case running on a store.
pub type CaseRun = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One case of the contract: its name and what it runs on a fresh store.
#[derive(Clone, Copy)]
pub struct Case {
    /// The case's name (its function's).
    pub name: &'static str,
    /// Runs the case on the store given; panics when the store breaks the contract.
    pub run: fn(Arc<dyn Store>) -> CaseRun,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

macro_rules! cases {
    ($($case:ident),+ $(,)?) => {
        /// Every case of the contract, in the order [`check`] runs them.
        pub const CASES: &[Case] = &[$(Case {
            name: stringify!($case),
            run: |store| Box::pin($case(store)),
        }),+];
    };
}

/// A delivery whose last attempt may have reached the sink unknown to Postbud (stopped by
/// `Finish::Unknown`, or waiting after a `Finish::Retry` with a reference) keeps the sink's
/// reference; the sink's report of it settles the delivery: short of a failure it is done (and a
/// waiting retry is not made), a failure fails it and queues what follows, once. Evidence about a
/// dead delivery that merely kept an earlier send's reference, or a failure of a voided invoice,
/// changes no state.
pub async fn evidence_settles_a_delivery_whose_outcome_was_unknown(store: Arc<dyn Store>) {
    use crate::{EvidenceFailure, EvidenceWritten, NewEvidence};
    use postbud_channel::EvidenceState;

    let due = now_ms() - 60_000;
    let job = |id: &str, role| NewJob {
        id: id.into(),
        kind: JobKind::Deliver,
        channel: "peppol".into(),
        role,
        next_at: due,
    };
    let fallback = job("dlv-contract-fallback", Role::Fallback);
    let then = [fallback.clone()];
    let evidence = |transaction_id, job_id, event_id, state: EvidenceState| NewEvidence {
        job_id,
        transaction_id,
        event_id,
        state,
        reporter: "Storecove",
        reason: "",
        payload: b"{}",
        reported_at: None,
        fails: state.is_failure().then_some(EvidenceFailure {
            error: "rejected: the receiving access point refused it",
            then: &then,
            then_detail: "[peppol] rejected; falling back",
        }),
        detail: "[peppol] Storecove: succeeded",
    };
    let record = |transaction_id, job_id, event_id, state| {
        let store = Arc::clone(&store);
        let evidence = evidence(transaction_id, job_id, event_id, state);
        async move { store.record_evidence(&evidence).await.expect("record") }
    };
    let state = |id: &'static str| {
        let store = Arc::clone(&store);
        async move { store.job(id).await.expect("job").expect("there") }
    };
    // Enqueues `id` under `transaction_id`, claims it and ends the attempt with `finish`.
    let attempt = |transaction_id: &'static str, id: &'static str, finish: Finish| {
        let store = Arc::clone(&store);
        let new = job(id, Role::Primary);
        async move {
            store
                .enqueue_free(transaction_id, &[new])
                .await
                .expect("enqueue");
            let lease = store
                .claim(&claim(
                    "w",
                    Duration::from_secs(30),
                    10,
                    Some(transaction_id),
                ))
                .await
                .expect("claim")
                .into_iter()
                .find(|l| l.job.id == id)
                .expect("due");
            store.finish(&lease, finish).await.expect("finish");
        }
    };
    let unknown = |reference: &str| Finish::Unknown {
        error: "HTTP 422 to a repeat; the sink may already have it".into(),
        reference: Some(reference.into()),
    };
    submitted(&store, TX).await;

    // Stopped on an unknown outcome, then reported delivered: done.
    attempt(TX, "dlv-contract-ok", unknown("guid-ok")).await;
    let stopped = state("dlv-contract-ok").await;
    assert_eq!(
        (
            stopped.state,
            stopped.outcome_unknown,
            stopped.reference.as_deref()
        ),
        (JobState::Dead, true, Some("guid-ok"))
    );
    let found = store
        .job_by_reference("peppol", "guid-ok")
        .await
        .expect("by reference")
        .expect("found by the sink's id");
    assert_eq!(found.id, "dlv-contract-ok");
    assert_eq!(
        record(TX, "dlv-contract-ok", "s1", EvidenceState::Delivered).await,
        EvidenceWritten::New { failed: false }
    );
    let settled = state("dlv-contract-ok").await;
    assert_eq!(
        (
            settled.state,
            settled.evidence.as_deref(),
            settled.receipt.as_deref(),
            settled.last_error.as_deref(),
            settled.outcome_unknown
        ),
        (
            JobState::Done,
            Some("delivered"),
            Some("[peppol] Storecove: succeeded"),
            None,
            false
        )
    );

    // Waiting to retry after an answer that was lost: the report settles it now, and the retry
    // is not made.
    attempt(
        TX,
        "dlv-contract-wait",
        Finish::Retry {
            at: now_ms() + 3_600_000,
            error: "Storecove submission: the connection closed before an answer".into(),
            reference: Some("guid-wait".into()),
        },
    )
    .await;
    let waiting = state("dlv-contract-wait").await;
    assert_eq!(
        (waiting.state, waiting.outcome_unknown),
        (JobState::Queued, true)
    );
    assert_eq!(
        record(TX, "dlv-contract-wait", "w1", EvidenceState::Delivered).await,
        EvidenceWritten::New { failed: false }
    );
    assert_eq!(state("dlv-contract-wait").await.state, JobState::Done);

    // Stopped on an unknown outcome, then reported rejected: failed, the fallback queued.
    attempt(TX, "dlv-contract-no", unknown("guid-no")).await;
    assert_eq!(
        record(TX, "dlv-contract-no", "f1", EvidenceState::Rejected).await,
        EvidenceWritten::New { failed: true }
    );
    assert_eq!(
        record(TX, "dlv-contract-no", "f2", EvidenceState::Rejected).await,
        EvidenceWritten::New { failed: false },
        "a second rejection fails nothing more"
    );
    let failed = state("dlv-contract-no").await;
    assert_eq!(
        (
            failed.state,
            failed.evidence.as_deref(),
            failed.outcome_unknown
        ),
        (JobState::Failed, Some("rejected"), false)
    );
    let jobs = store.jobs(TX).await.expect("jobs");
    assert!(
        jobs.iter()
            .any(|j| j.id == fallback.id && j.state == JobState::Queued),
        "the fallback is queued: {jobs:?}"
    );

    // Dead for another reason with an earlier send's reference (delivered, bounced, sent again
    // on request, its key refused): a report of that send is recorded and changes nothing.
    attempt(
        TX,
        "dlv-contract-old",
        Finish::DoneWith {
            receipt: "accepted".into(),
            reference: "guid-old".into(),
        },
    )
    .await;
    assert_eq!(
        record(TX, "dlv-contract-old", "o0", EvidenceState::Bounced).await,
        EvidenceWritten::New { failed: true }
    );
    assert!(store.retry(TX, Some("peppol")).await.expect("retry") >= 1);
    // Failed for good with a definite answer: sent again, it is a new send.
    let resent = state("dlv-contract-old").await;
    assert_eq!(
        (
            resent.state,
            resent.resends,
            resent.reference.as_deref(),
            resent.receipt.as_deref()
        ),
        (JobState::Queued, 1, None, None)
    );
    let lease = store
        .claim(&claim("w", Duration::from_secs(30), 10, Some(TX)))
        .await
        .expect("claim")
        .into_iter()
        .find(|l| l.job.id == "dlv-contract-old")
        .expect("requeued");
    store
        .finish(&lease, Finish::Dead("the key was refused".into()))
        .await
        .expect("finish");
    assert_eq!(
        record(TX, "dlv-contract-old", "o1", EvidenceState::Delivered).await,
        EvidenceWritten::New { failed: false }
    );
    let old = state("dlv-contract-old").await;
    assert_eq!(
        (old.state, old.last_error.as_deref()),
        (JobState::Dead, Some("the key was refused"))
    );

    // Sent again while the sink may have it: the same send, its reference kept.
    attempt(TX, "dlv-contract-again", unknown("guid-again")).await;
    store.retry(TX, Some("peppol")).await.expect("retry");
    let again = state("dlv-contract-again").await;
    assert_eq!(
        (
            again.state,
            again.resends,
            again.reference.as_deref(),
            again.outcome_unknown
        ),
        (JobState::Queued, 0, Some("guid-again"), true)
    );

    // The sink's id kept before the request goes out: it finds the delivery while the attempt
    // runs (a report then waits for its end), and only the lease's holder may keep one.
    store
        .enqueue_free(TX, &[job("dlv-contract-before", Role::Primary)])
        .await
        .expect("enqueue");
    let running = store
        .claim(&claim("w", Duration::from_secs(30), 10, Some(TX)))
        .await
        .expect("claim")
        .into_iter()
        .find(|l| l.job.id == "dlv-contract-before")
        .expect("due");
    store
        .keep_reference(&running, "guid-before")
        .await
        .expect("kept under the lease");
    let found = store
        .job_by_reference("peppol", "guid-before")
        .await
        .expect("by reference")
        .expect("found while it runs");
    assert_eq!(
        (found.id.as_str(), found.state),
        ("dlv-contract-before", JobState::Running)
    );
    assert_eq!(
        record(TX, "dlv-contract-before", "b1", EvidenceState::Delivered).await,
        EvidenceWritten::NotYet
    );
    let mut stale = running.clone();
    stale.job.fence -= 1;
    assert!(
        store.keep_reference(&stale, "guid-stale").await.is_err(),
        "a lost lease keeps nothing"
    );

    // A delivery whose lease lapsed (its worker died mid-attempt) may have reached the sink.
    store
        .enqueue_free(TX, &[job("dlv-contract-lapsed", Role::Primary)])
        .await
        .expect("enqueue");
    let first = store
        .claim(&claim("dies", Duration::from_millis(100), 10, Some(TX)))
        .await
        .expect("claim")
        .into_iter()
        .find(|l| l.job.id == "dlv-contract-lapsed")
        .expect("due");
    assert!(
        !first.job.outcome_unknown,
        "a first claim knows nothing sent"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let again = store
        .claim(&claim("rescues", Duration::from_secs(30), 10, Some(TX)))
        .await
        .expect("claim")
        .into_iter()
        .find(|l| l.job.id == "dlv-contract-lapsed")
        .expect("lapsed, claimed again");
    assert!(
        again.job.outcome_unknown,
        "the rescued attempt may follow a send"
    );

    // Stopped on an unknown outcome, then voided: a rejection is only recorded.
    const VOIDED: &str = "T12345678.contractUnknownVoided";
    submitted(&store, VOIDED).await;
    attempt(VOIDED, "dlv-contract-voided", unknown("guid-voided")).await;
    let effect = store.void(VOIDED).await.expect("void");
    assert_eq!(
        effect.delivered_channels,
        ["peppol"],
        "the sink may have it: a channel that can cancel sends its notice"
    );
    assert_eq!(
        record(VOIDED, "dlv-contract-voided", "v1", EvidenceState::Rejected).await,
        EvidenceWritten::New { failed: false }
    );
    assert_eq!(state("dlv-contract-voided").await.state, JobState::Dead);
}

cases!(
    a_lapsed_lease_is_fenced_out,
    claims_follow_the_due_order_and_skip_what_is_not_due,
    the_same_work_twice_is_one_job,
    a_void_fences_out_the_running_attempt,
    concurrent_retries_requeue_one_job,
    history_keeps_its_order_and_a_turn_one_holder,
    migrations_applied_twice_change_nothing,
    kept_counts_agree_with_every_row_counted,
    a_completion_keeps_the_capture_record_first,
    an_end_and_the_next_claim_are_one_write,
    a_capture_is_adopted_only_when_stopped_for_a_collection_elsewhere,
    the_store_clock_stamps_what_it_writes,
    a_job_reads_back_by_its_id,
    a_document_is_kept_once_and_only_under_the_lease,
    an_invoice_reads_back_with_the_pdf_after_the_capture,
    jobs_made_outside_a_lease_are_made_once,
    an_accepted_void_queues_its_confirmation_once,
    persistent_values_are_set_once_unless_replaced,
    announced_work_wakes_a_waiting_worker,
    evidence_is_recorded_once_and_a_bounce_fails_a_delivery_once,
    evidence_settles_a_delivery_whose_outcome_was_unknown,
    listings_filter_by_state_retries_and_search,
    the_audit_log_pages_newest_first,
);

/// Runs every case of the contract, each on a fresh store `open` makes for it (given the
/// case's name); `open` returns the store and whatever must live as long as it does. Panics
/// naming the first case the store fails.
pub async fn check<F, Fut, Keep>(mut open: F)
where
    F: FnMut(&'static str) -> Fut,
    Fut: Future<Output = (Arc<dyn Store>, Keep)>,
{
    for case in CASES {
        let (store, keep) = open(case.name).await;
        let outcome = tokio::spawn((case.run)(store)).await;
        drop(keep);
        if let Err(failed) = outcome {
            panic!("the store breaks the contract in `{}`: {failed}", case.name);
        }
    }
}
