//! One contract, run against every store (River's way): each test below is written once
//! against `dyn Store` and runs on a SQLite file and on a fresh PostgreSQL database. A backend
//! that drifts from the other fails here, not in production.

use std::{sync::Arc, time::Duration};

use super::{Claim, Finish, JobKind, JobState, NewJob, Store, StoreError, now_ms};

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
async fn claim_one(store: &Arc<dyn Store>, id: &str, owner: &str, lease: Duration) -> super::Lease {
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
async fn a_lapsed_lease_is_fenced_out(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    let old = claim_one(&store, TX, "slow", Duration::from_millis(100)).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = claim_one(&store, TX, "fast", Duration::from_secs(30)).await;
    assert!(new.job.fence > old.job.fence, "a claim bumps the fence");
    assert!(matches!(
        store.finish(&old, Finish::Failed("late".into())).await,
        Err(StoreError::LeaseLost(_))
    ));
    assert!(matches!(
        store.renew(&old, Duration::from_secs(30)).await,
        Err(StoreError::LeaseLost(_))
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
async fn claims_follow_the_due_order_and_skip_what_is_not_due(store: Arc<dyn Store>) {
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
async fn the_same_work_twice_is_one_job(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    assert!(!store.submit(TX).await.expect("again"), "known already");
    let lease = claim_one(&store, TX, "w", Duration::from_secs(30)).await;
    let delivery = NewJob {
        id: crate::ids::delivery_id(TX, "archive"),
        kind: JobKind::Deliver,
        channel: "archive".into(),
        role: super::Role::Primary,
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
async fn a_void_fences_out_the_running_attempt(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    let lease = claim_one(&store, TX, "w", Duration::from_secs(30)).await;
    let effect = store.void(TX).await.expect("void");
    assert!(effect.delivered_channels.is_empty());
    assert!(matches!(
        store.finish(&lease, Finish::Done("too late".into())).await,
        Err(StoreError::LeaseLost(_))
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
        super::Stage::Voided
    );
}

/// Retries that race leave one job, queued to run now, and a history line for each retry that
/// requeued something, written with it.
async fn concurrent_retries_requeue_one_job(store: Arc<dyn Store>) {
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
async fn history_keeps_its_order_and_a_turn_one_holder(store: Arc<dyn Store>) {
    for event in ["first", "second", "third"] {
        store
            .record(&super::HistoryLine {
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
async fn counted_row_by_row(store: &Arc<dyn Store>) -> (Vec<super::CensusRow>, super::Totals) {
    let mut census: Vec<super::CensusRow> = Vec::new();
    let mut totals = super::Totals::default();
    let all = super::DispatchQuery::latest(10_000);
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
            None => census.push(super::CensusRow {
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
    let sorted = |mut rows: Vec<super::CensusRow>| {
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
async fn kept_counts_agree_with_every_row_counted(store: Arc<dyn Store>) {
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
        let patch = super::DispatchPatch {
            stage: Some(super::Stage::Routed),
            ..Default::default()
        };
        store
            .update_dispatch(&dispatch, patch)
            .await
            .expect("routed");
        let delivery = NewJob {
            id: crate::ids::delivery_id(id, "archive"),
            kind: JobKind::Deliver,
            channel: "archive".into(),
            role: super::Role::Primary,
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
    let patch = super::DispatchPatch {
        stage: Some(super::Stage::Skipped),
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
async fn a_completion_keeps_the_capture_record_first(store: Arc<dyn Store>) {
    use super::{ChosenRoute, Completion, Confirmation, DispatchPatch, Role, Stage};
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
        Err(StoreError::LeaseLost(_))
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
async fn an_end_and_the_next_claim_are_one_write(store: Arc<dyn Store>) {
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
        Err(StoreError::LeaseLost(_))
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
async fn a_capture_is_adopted_only_when_stopped_for_a_collection_elsewhere(store: Arc<dyn Store>) {
    let (elsewhere, other) = ("T12345678.contractAdopt1", "T12345678.contractAdopt2");
    for (id, reason) in [
        (
            elsewhere,
            format!(
                "{}: Dintero shows …",
                crate::engine::COLLECTION_STARTED_ELSEWHERE
            ),
        ),
        (other, "no route matches this invoice".to_owned()),
    ] {
        submitted(&store, id).await;
        let lease = claim_one(&store, id, "w", Duration::from_secs(30)).await;
        let requested = super::DispatchPatch {
            capture_reference: Some(Some("order-1".into())),
            ..Default::default()
        };
        store
            .update_dispatch(&lease, requested)
            .await
            .expect("requested");
        let seen = store.dispatch(id).await.expect("read").expect("dispatch");
        assert_eq!(seen.capture_reference.as_deref(), Some("order-1"));
        let cleared = super::DispatchPatch {
            capture_reference: Some(None),
            stage: Some(super::Stage::Failed),
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
    assert_eq!(adopted.stage, super::Stage::Captured);
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
        .mark_origin(declared, super::ORIGIN_DECLARED, "declared")
        .await
        .expect("origin");
    let seen = store
        .dispatch(declared)
        .await
        .expect("read")
        .expect("dispatch");
    assert_eq!(seen.origin.as_deref(), Some(super::ORIGIN_DECLARED));
    assert!(
        matches!(
            store.finish(&running, Finish::Done("late".into())).await,
            Err(StoreError::LeaseLost(_))
        ),
        "the attempt that read before the origin was recorded is fenced out"
    );
}

/// Generates one test per contract function for a store made by `$open`.
macro_rules! contract {
    ($open:path: $($test:ident),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $test() {
            let Some((store, _keep)) = $open(stringify!($test)).await else { return };
            super::$test(store).await;
        }
    )*};
}

macro_rules! every_contract {
    ($open:path) => {
        contract!($open:
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
        );
    };
}

/// Opening a store again applies no migration twice and keeps what it holds.
async fn migrations_applied_twice_change_nothing(store: Arc<dyn Store>) {
    submitted(&store, TX).await;
    // The second open of the same URL happens in each backend's module below; here the store
    // still answers after it.
    assert_eq!(store.jobs(TX).await.expect("jobs").len(), 1);
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;

    async fn open(_test: &str) -> Option<(Arc<dyn Store>, tempfile::TempDir)> {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}", dir.path().join("postbud.db").display());
        let first = crate::store::open(&url).await.expect("open");
        drop(first);
        // Every test runs on a store opened a second time: its migrations must be no-ops.
        let store = crate::store::open(&url).await.expect("open again");
        Some((store, dir))
    }

    every_contract!(open);
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;

    /// A fresh database on the local server, dropped with the guard.
    pub(super) struct Database {
        admin: String,
        name: String,
    }

    impl Drop for Database {
        fn drop(&mut self) {
            let (admin, name) = (self.admin.clone(), self.name.clone());
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&pool)
                                .await;
                    }
                });
            })
            .join();
        }
    }

    async fn open(test: &str) -> Option<(Arc<dyn Store>, Database)> {
        let admin = std::env::var("POSTBUD_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "postbud_contract_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let pool = match sqlx::PgPool::connect(&admin).await {
            Ok(pool) => pool,
            Err(e) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!(
                    "{test}: PostgreSQL required (POSTBUD_REQUIRE_SERVICES=1) but unreachable at {admin}: {e}"
                )
            }
            Err(e) => {
                postbud_sandbox::skipped(&format!("{test}: no PostgreSQL at {admin}: {e}"));
                return None;
            }
        };
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create database");
        let database = Database { admin, name };
        let (base, _) = database
            .admin
            .rsplit_once('/')
            .expect("a database in the URL");
        let url = format!("{base}/{}", database.name);
        drop(crate::store::open(&url).await.expect("open"));
        let store = crate::store::open(&url).await.expect("open again");
        Some((store, database))
    }

    every_contract!(open);
}
