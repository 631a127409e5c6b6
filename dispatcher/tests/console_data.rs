//! What the console's actions do through `App`, on a real SQLite store and the sandbox: a
//! delivery asked for again through one channel (once per request, refused where it cannot
//! be), and a retry of everything a filter matches, in batches, capped.

mod common;

use std::time::Duration;

use common::Harness;
use postbud::{Filter, JobKind, JobState, RedeliverError, Role, Verdict};
use postbud_sandbox::Seed;

/// A second folder channel beside the archive.
fn with_copies(h: &Harness) -> String {
    let copies = h.dir.path().join("copies");
    std::fs::create_dir_all(&copies).expect("copies");
    format!(
        "[channels.copy]\nkind = \"folder\"\npath = \"{}\"\n",
        copies.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_invoice_is_delivered_again_through_one_channel_once_per_request() {
    let h = Harness::start().await;
    let app = h.app(&with_copies(&h)).await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("delivered");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let copies = || {
        std::fs::read_dir(h.dir.path().join("copies"))
            .expect("dir")
            .count()
    };
    assert_eq!(copies(), 0, "the route delivers to the archive only");

    let first = app.redeliver(&id, "copy").await.expect("queued");
    assert!(first.queued, "{first:?}");
    // A double click, before or after the first ran: nothing more is queued.
    let again = app.redeliver(&id, "copy").await.expect("the same");
    assert_eq!(
        (again.job_id.as_str(), again.queued),
        (first.job_id.as_str(), false)
    );
    app.deliver_waiting(&id, Duration::from_secs(5))
        .await
        .expect("ran");
    let again = app.redeliver(&id, "copy").await.expect("the same");
    assert_eq!(
        (again.job_id.as_str(), again.queued),
        (first.job_id.as_str(), false)
    );

    let jobs = app.jobs(&id).await.expect("jobs");
    let redelivered: Vec<_> = jobs
        .iter()
        .filter(|j| j.role == Some(Role::Redelivery))
        .collect();
    assert_eq!(redelivered.len(), 1, "{jobs:?}");
    let job = redelivered[0];
    assert_eq!(
        (job.kind, job.state, job.channel.as_deref(), job.id.as_str()),
        (
            JobKind::Deliver,
            JobState::Done,
            Some("copy"),
            first.job_id.as_str()
        )
    );
    assert!(copies() >= 1, "the copy channel wrote the invoice");
    let mut search = Filter::default();
    search.search = Some(id.clone());
    let (listed, more) = app.records().invoices(&search, 10).await.expect("listed");
    assert!(!more);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].assessment.verdict, Verdict::Delivered);

    let unknown = app
        .redeliver(&id, "fax")
        .await
        .expect_err("no such channel");
    assert!(
        matches!(&unknown, RedeliverError::UnknownChannel { .. })
            && unknown.to_string().contains("`fax`")
            && unknown.to_string().contains("archive, copy"),
        "{unknown}"
    );
    let nobody = app
        .redeliver("T12345678.nothere", "copy")
        .await
        .expect_err("not known");
    assert!(
        matches!(nobody, RedeliverError::UnknownTransaction(_)),
        "{nobody}"
    );
    let waiting = h.sandbox.seed(Seed::default());
    app.submit(&waiting).await.expect("submitted");
    let early = app
        .redeliver(&waiting, "copy")
        .await
        .expect_err("not routed");
    assert!(
        matches!(&early, RedeliverError::NotRouted { .. }) && early.to_string().contains("new"),
        "{early}"
    );
    assert!(
        app.jobs(&waiting)
            .await
            .expect("jobs")
            .iter()
            .all(|j| j.kind == JobKind::Dispatch),
        "nothing queued for it"
    );
}

/// 620 invoices need attention: counting stops at the cap, a capped retry requeues exactly the
/// cap's worth newest first across a batch boundary, the rest follow in a second, and the
/// pages of the listing cover every invoice once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_is_retried_in_batches_up_to_the_cap() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let store = app.store();
    const N: usize = 620;
    for i in 0..N {
        assert!(
            store
                .submit(&format!("T{:08}.bulk", i))
                .await
                .expect("submit")
        );
    }
    let claim = postbud::store::Claim {
        owner: "test",
        lease: Duration::from_secs(60),
        limit: 200,
        only: None,
    };
    let mut failed = 0;
    while failed < N {
        let leases = store.claim(&claim).await.expect("claim");
        assert!(!leases.is_empty(), "{failed} of {N} failed so far");
        for lease in leases {
            let why = postbud::store::Finish::Failed("no route matches".into());
            store.finish(&lease, why).await.expect("failed");
            failed += 1;
        }
    }
    let mut attention = Filter::default();
    attention.verdicts = vec![Verdict::NeedsAttention];
    assert_eq!(
        app.count_matching(&attention, 10_000).await.expect("count"),
        N as u64
    );
    assert_eq!(
        app.count_matching(&attention, 600).await.expect("count"),
        600
    );
    assert_eq!(app.count_matching(&attention, 0).await.expect("count"), 0);

    // Every invoice once through the pages of the listing.
    let mut seen = std::collections::BTreeSet::new();
    let mut page = attention.clone();
    loop {
        let (listed, more) = app.records().invoices(&page, 75).await.expect("page");
        for l in &listed {
            assert!(seen.insert(l.dispatch.transaction_id.clone()), "a repeat");
        }
        match (more, listed.last()) {
            (true, Some(last)) => page.after = Some(last.cursor()),
            _ => break,
        }
    }
    assert_eq!(seen.len(), N);

    let done = app.retry_matching(&attention, 550).await.expect("retried");
    assert_eq!((done.matched, done.requeued, done.capped), (550, 550, true));
    assert_eq!(
        app.count_matching(&attention, 10_000).await.expect("count"),
        70
    );
    // Newest first: the newest invoice was retried, the oldest was not.
    let (newest, oldest) = (format!("T{:08}.bulk", N - 1), "T00000000.bulk");
    let newest_jobs = app.jobs(&newest).await.expect("jobs");
    assert_eq!(newest_jobs[0].state, JobState::Queued, "{newest_jobs:?}");
    assert_eq!(
        app.jobs(oldest).await.expect("jobs")[0].state,
        JobState::Failed
    );
    let history = app.history(&newest).await.expect("history");
    assert!(
        history.iter().any(|h| h.event == "retry requested"),
        "{history:?}"
    );

    let rest = app
        .retry_matching(&attention, 10_000)
        .await
        .expect("retried");
    assert_eq!((rest.matched, rest.requeued, rest.capped), (70, 70, false));
    assert_eq!(
        app.count_matching(&attention, 10_000).await.expect("count"),
        0
    );
    let nothing = app.retry_matching(&attention, 10).await.expect("none");
    assert_eq!((nothing.matched, nothing.capped), (0, false));

    app.record_audit(
        "kari",
        "retry-matching",
        "verdict=needs-attention",
        "550 of 620 requeued",
    )
    .await
    .expect("audited");
    let log = app.records().audit_log(None, 10).await.expect("log");
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            log[0].user.as_str(),
            log[0].action.as_str(),
            log[0].result.as_str()
        ),
        ("kari", "retry-matching", "550 of 620 requeued")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounded_page_reads_no_more_than_it_may_and_says_where_to_go_on() {
    let h = Harness::start().await;
    let app = h.app("").await;
    for _ in 0..5 {
        let id = h.sandbox.seed(Seed::default());
        let outcome = app.deliver_now(&id).await.expect("delivered");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    }
    let records = app.records();

    // A verdict none has, the store cannot select: two read a page, then a cursor to go on,
    // until the store is read through.
    let mut filter = Filter::default();
    filter.verdicts = vec![Verdict::Voided];
    let mut pages = 0;
    loop {
        let (found, next) = records
            .invoices_bounded(&filter, 50, 2)
            .await
            .expect("a page");
        assert!(found.is_empty());
        pages += 1;
        match next {
            Some(after) => filter.after = Some(after),
            None => break,
        }
        assert!(pages < 10, "the cursor moves on");
    }
    assert_eq!(pages, 3, "5 invoices read 2 a page: 2, 2, 1");

    // Every delivered one is found once across the bounded pages.
    let mut filter = Filter::default();
    filter.verdicts = vec![Verdict::Delivered];
    let mut seen = Vec::new();
    loop {
        let (found, next) = records
            .invoices_bounded(&filter, 50, 2)
            .await
            .expect("a page");
        assert!(found.len() <= 2);
        seen.extend(found.into_iter().map(|l| l.dispatch.transaction_id));
        match next {
            Some(after) => filter.after = Some(after),
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (5, 5), "{seen:?}");
}
