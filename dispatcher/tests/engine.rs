//! Deliveries: fallbacks, dead letters, restarts, lease rescue and fencing, voids.

mod common;

use std::time::Duration;

use common::Harness;
use postbud::{
    Verdict,
    store::{Finish, JobKind, JobState},
};
use postbud_sandbox::{Fault, FaultKind, Operation, Seed};

const BROKEN: &str = r#"
[channels.broken]
kind = "folder"
path = "/nonexistent/postbud-test"
create = false
"#;

#[tokio::test]
async fn a_permanent_failure_falls_back_and_is_kept_visible() {
    let h = Harness::start().await;
    let app = h
        .app(&format!(
            "{BROKEN}\n[[routes]]\ndeliver = [\"broken\"]\nfallback = [\"archive\"]\n"
        ))
        .await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let broken = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("broken"))
        .expect("broken job");
    assert_eq!(broken.state, JobState::Failed);
    assert!(
        broken
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("/nonexistent/postbud-test"),
        "{broken:?}"
    );
    let fallback = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("archive"))
        .expect("fallback job");
    assert_eq!(
        (fallback.state, fallback.role),
        (JobState::Done, Some(postbud::Role::Fallback))
    );
    assert_eq!(h.sandbox.captures(&id), 1);
}

/// A channel that fails temporarily a configured number of times, registered the way a
/// merchant's crate registers one.
#[derive(Debug)]
struct Flaky {
    failures_left: std::sync::atomic::AtomicU32,
}

#[derive(Debug, serde::Deserialize, postbud::keys::JsonSchema)]
#[schemars(crate = "postbud::keys::schemars")]
#[serde(deny_unknown_fields)]
struct FlakyConfig {
    fail_times: u32,
}

#[postbud::async_trait]
impl postbud::Channel for Flaky {
    async fn deliver(
        &self,
        invoice: &postbud::Invoice,
        ctx: &postbud::DeliveryContext,
    ) -> Result<postbud::Receipt, postbud::ChannelError> {
        use std::sync::atomic::Ordering;
        if self.failures_left.load(Ordering::SeqCst) > 0 {
            self.failures_left.fetch_sub(1, Ordering::SeqCst);
            return Err(postbud::ChannelError::temporary("upstream answered 503")
                .with_retry_after(Duration::from_millis(20)));
        }
        Ok(postbud::Receipt::new(format!(
            "took {} on attempt {}",
            invoice.invoice_number, ctx.attempt
        )))
    }
}

fn build_flaky(
    ctx: postbud::BuildContext<'_>,
) -> Result<Box<dyn postbud::Channel>, postbud::ConfigError> {
    let config: FlakyConfig = ctx.config.extract()?;
    Ok(Box::new(Flaky {
        failures_left: config.fail_times.into(),
    }))
}

postbud::register_channel! {
    static FLAKY = {
        kind: "flaky-test",
        description: "fails temporarily fail_times times, then delivers",
        crate_name: "postbud-engine-tests",
        example: "",
        config: FlakyConfig,
        build: build_flaky,
    };
}

#[tokio::test]
async fn temporary_failures_are_retried_with_the_same_delivery_id() {
    let h = Harness::start().await;
    let app = h.app("[channels.flaky]\nkind = \"flaky-test\"\nfail_times = 2\n\n[[routes]]\ndeliver = [\"flaky\"]\n").await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.kind == JobKind::Deliver)
        .expect("job");
    assert_eq!(job.attempts, 3);
    assert!(
        job.receipt
            .as_deref()
            .unwrap_or_default()
            .contains("attempt 3"),
        "{job:?}"
    );
    let history = app.history(&id).await.expect("history");
    let retries = history
        .iter()
        .filter(|e| e.event == "retry" && e.job_id.as_deref() == Some(job.id.as_str()))
        .count();
    assert_eq!(retries, 2, "{history:?}");
}

#[tokio::test]
async fn retries_run_out_into_a_dead_letter_and_the_fallback_delivers() {
    let h = Harness::start().await;
    let app = h.app("[channels.flaky]\nkind = \"flaky-test\"\nfail_times = 100\n\n[[routes]]\ndeliver = [\"flaky\"]\nfallback = [\"archive\"]\n").await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let flaky = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("flaky"))
        .expect("job");
    assert_eq!(flaky.state, JobState::Dead, "{outcome}");
    assert_eq!(flaky.attempts, 6, "max_attempts");
    assert!(
        flaky
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("gave up after 6 attempts: upstream answered 503"),
        "{flaky:?}"
    );
    assert_eq!(
        outcome.verdict(),
        Verdict::Delivered,
        "the fallback delivered: {outcome}"
    );
    let totals = app.totals().await.expect("totals");
    assert_eq!((totals.dead, totals.delivered), (1, 1), "{totals:?}");
    // An operator's retry requeues the dead letter.
    assert_eq!(app.retry(&id, Some("flaky")).await.expect("retry"), 1);
}

/// A delivery due now runs in the worker that routed it, right after the dispatch, with no
/// claim of its own; nothing is left for another claim.
#[tokio::test]
async fn a_delivery_due_now_runs_in_the_claim_of_its_dispatch() {
    let h = Harness::start().await;
    let id = h.sandbox.seed(Seed::default());
    let app = h.app("").await;
    app.submit(&id).await.expect("submit");
    let claim = postbud::store::Claim {
        owner: "only",
        lease: Duration::from_secs(30),
        limit: 10,
        only: Some(&id),
    };
    let leases = app.store().claim(&claim).await.expect("claim");
    assert_eq!(leases.len(), 1);
    app.engine()
        .process(leases[0].clone())
        .await
        .expect("dispatch and delivery");
    let jobs = app.store().jobs(&id).await.expect("jobs");
    let states: Vec<(JobKind, JobState, u32)> =
        jobs.iter().map(|j| (j.kind, j.state, j.attempts)).collect();
    assert_eq!(
        states,
        [
            (JobKind::Dispatch, JobState::Done, 1),
            (JobKind::Deliver, JobState::Done, 1)
        ]
    );
    assert!(app.store().claim(&claim).await.expect("claim").is_empty());
    assert_eq!(h.sandbox.captures(&id), 1);
}

#[tokio::test]
async fn a_restarted_process_finishes_the_work_left() {
    let h = Harness::start().await;
    let id = h.sandbox.seed(Seed::default());
    {
        // First process: captures and queues the delivery (due a moment later, so the dispatch
        // does not take it on itself: later than a dispatch takes on a loaded machine), then
        // stops before delivering.
        let app = h
            .app("[[routes]]\ndeliver = [\"archive\"]\ndelay = \"400ms\"\n")
            .await;
        app.submit(&id).await.expect("submit");
        let leases = app
            .store()
            .claim(&postbud::store::Claim {
                owner: "first",
                lease: Duration::from_secs(30),
                limit: 1,
                only: Some(&id),
            })
            .await
            .expect("claim");
        assert_eq!(leases[0].job.kind, JobKind::Dispatch);
        app.engine()
            .process(leases[0].clone())
            .await
            .expect("dispatch");
        // ...and claims the delivery, then dies holding it (lease 1 s).
        tokio::time::sleep(Duration::from_millis(450)).await;
        let leases = app
            .store()
            .claim(&postbud::store::Claim {
                owner: "first",
                lease: Duration::from_secs(1),
                limit: 1,
                only: Some(&id),
            })
            .await
            .expect("claim");
        assert_eq!(leases[0].job.kind, JobKind::Deliver);
    }
    assert_eq!(h.sandbox.captures(&id), 1);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let app = h.app("").await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn({
        let app = std::sync::Arc::new(app);
        let a = std::sync::Arc::clone(&app);
        async move {
            a.run_workers(stopped).await;
            app
        }
    });
    let store = postbud::store::SqliteStore::open(&h.settings("").store.url)
        .await
        .expect("store");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = postbud::store::Store::jobs(&store, &id)
            .await
            .expect("jobs");
        if jobs.iter().all(|j| j.state == JobState::Done) {
            assert_eq!(jobs[1].attempts, 2, "the rescued attempt is the second");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not finished: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).expect("stop");
    workers.await.expect("workers");
    assert_eq!(
        h.sandbox.captures(&id),
        1,
        "the restart did not capture again"
    );
}

#[tokio::test]
async fn a_worker_whose_lease_lapsed_cannot_overwrite_the_newer_attempt() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    app.submit(&id).await.expect("submit");
    let store = app.store();
    let old = store
        .claim(&postbud::store::Claim {
            owner: "slow",
            lease: Duration::from_millis(100),
            limit: 1,
            only: Some(&id),
        })
        .await
        .expect("claim")
        .remove(0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = store
        .claim(&postbud::store::Claim {
            owner: "fast",
            lease: Duration::from_secs(30),
            limit: 1,
            only: Some(&id),
        })
        .await
        .expect("rescue")
        .remove(0);
    assert!(new.job.fence > old.job.fence);
    let late = store
        .finish(&old, Finish::Failed("late write".into()))
        .await;
    assert!(matches!(&late, Err(e) if e.is_lease_lost()), "{late:?}");
    assert!(store.renew(&old, Duration::from_secs(5)).await.is_err());
    store
        .finish(&new, Finish::Done("ok".into()))
        .await
        .expect("current holder writes");
}

#[tokio::test]
async fn void_cancels_at_dintero_and_drops_a_cancellation_for_delivered_invoices() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let report = app
        .void(&id, std::time::Duration::from_secs(10))
        .await
        .expect("void");
    assert_eq!(report.status, "AUTHORIZATION_VOIDED");
    assert!(!report.already_voided);
    assert_eq!(
        h.sandbox.transaction(&id).expect("tx")["status"],
        "AUTHORIZATION_VOIDED"
    );
    let number = h.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("n")
        .to_owned();
    let notice: serde_json::Value = serde_json::from_slice(
        &std::fs::read(h.invoices().join(format!("{number}.voided.json"))).expect("notice"),
    )
    .expect("json");
    assert_eq!(notice["type"], "invoice.voided");
    assert_eq!(report.outcome.verdict(), Verdict::Voided);
    // Voiding again calls nothing and sends nothing twice.
    let again = app
        .void(&id, std::time::Duration::from_secs(10))
        .await
        .expect("void again");
    assert!(again.already_voided);
    assert_eq!(h.sandbox.stats().voids.get(&id), Some(&1));
}

/// A delivered invoice and the path of the cancellation notice its folder channel would drop.
async fn delivered(h: &Harness, app: &postbud::App) -> (String, std::path::PathBuf) {
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    (id.clone(), h.void_notice(&id))
}

fn accepted_void(id: &str, after_gets: u32, fail: bool) -> Fault {
    Fault {
        operation: Operation::Void,
        transaction: Some(id.to_owned()),
        kind: FaultKind::Accepted { after_gets, fail },
        times: 1,
        skip: 0,
    }
}

#[tokio::test]
async fn a_202_void_confirmed_later_stops_and_notifies_only_after_its_event() {
    let h = Harness::start().await;
    let app = h.app("").await;
    // Confirmed within the wait: settled inline.
    let (id, notice) = delivered(&h, &app).await;
    h.sandbox.inject(accepted_void(&id, 2, false));
    let report = app.void(&id, Duration::from_secs(5)).await.expect("void");
    assert!(!report.pending);
    assert_eq!(
        report.outcome.verdict(),
        Verdict::Voided,
        "{}",
        report.outcome
    );
    assert!(notice.exists());
    // Not confirmed within the wait: nothing stops and no notice goes out until the event.
    let (id, notice) = delivered(&h, &app).await;
    h.sandbox.inject(accepted_void(&id, 4, false));
    let report = app.void(&id, Duration::ZERO).await.expect("void");
    assert!(report.pending);
    assert_ne!(report.outcome.verdict(), Verdict::Voided);
    assert!(!notice.exists(), "no notice before Dintero confirms");
    // The job `serve` would run finishes it.
    let outcome = app
        .deliver_waiting(&id, Duration::from_secs(10))
        .await
        .expect("run");
    assert_eq!(outcome.verdict(), Verdict::Voided, "{outcome}");
    assert!(notice.exists(), "the notice after the event");
    let void_job = outcome
        .jobs
        .iter()
        .find(|j| j.kind == JobKind::Void)
        .expect("void job");
    assert_eq!(void_job.state, JobState::Done);
    assert_eq!(h.sandbox.stats().voids.get(&id), Some(&1));
}

#[tokio::test]
async fn a_void_dintero_refuses_sends_no_notice_and_says_why() {
    let h = Harness::start().await;
    let app = h.app("").await;
    // The late VOID event fails.
    let (id, notice) = delivered(&h, &app).await;
    h.sandbox.inject(accepted_void(&id, 1, true));
    let err = app
        .void(&id, Duration::from_secs(5))
        .await
        .expect_err("refused");
    assert!(
        matches!(err, postbud::app::AppError::VoidRefused(_)),
        "{err}"
    );
    assert!(
        err.to_string().contains("declined by the payment provider"),
        "{err}"
    );
    assert!(!notice.exists());
    let dispatch = app.dispatch(&id).await.expect("read").expect("dispatch");
    assert_eq!(
        dispatch.stage,
        postbud::Stage::Routed,
        "the deliveries stay as they were"
    );
    // The same, found by the job after the command stopped waiting.
    let (id, notice) = delivered(&h, &app).await;
    h.sandbox.inject(accepted_void(&id, 3, true));
    assert!(
        app.void(&id, Duration::ZERO)
            .await
            .expect("pending")
            .pending
    );
    let outcome = app
        .deliver_waiting(&id, Duration::from_secs(10))
        .await
        .expect("run");
    let void_job = outcome
        .jobs
        .iter()
        .find(|j| j.kind == JobKind::Void)
        .expect("void job");
    assert_eq!(void_job.state, JobState::Failed, "{outcome}");
    assert!(
        void_job
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("declined"),
        "{outcome}"
    );
    // The invoice stands while the merchant meant to cancel it: a person must look.
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    assert!(!notice.exists());
    // Voided again later, and this time Dintero confirms: the old refusal does not answer for
    // the new request, and the job that ended is queued again.
    h.sandbox.inject(accepted_void(&id, 2, false));
    assert!(
        app.void(&id, Duration::ZERO)
            .await
            .expect("pending")
            .pending
    );
    let outcome = app
        .deliver_waiting(&id, Duration::from_secs(10))
        .await
        .expect("run");
    assert_eq!(outcome.verdict(), Verdict::Voided, "{outcome}");
    assert!(notice.exists());
    // Refused at once (400): Dintero's reason.
    let (id, notice) = delivered(&h, &app).await;
    h.sandbox.inject(Fault {
        operation: Operation::Void,
        transaction: Some(id.clone()),
        kind: FaultKind::Status {
            status: 400,
            retry_after: None,
        },
        times: 1,
        skip: 0,
    });
    let err = app
        .void(&id, Duration::from_secs(5))
        .await
        .expect_err("refused");
    assert!(
        err.to_string()
            .contains("injected fault (code SANDBOX_FAULT)"),
        "{err}"
    );
    assert!(!notice.exists());
}

#[tokio::test]
async fn void_before_delivery_stops_the_pending_delivery() {
    let h = Harness::start().await;
    let (app, id) = h.captured_and_waiting("1h").await;
    let report = app
        .void(&id, std::time::Duration::from_secs(10))
        .await
        .expect("void");
    let delivery = report
        .outcome
        .jobs
        .iter()
        .find(|j| j.kind == JobKind::Deliver)
        .expect("delivery");
    assert_eq!(delivery.state, JobState::Cancelled);
    assert!(
        !h.invoices().exists()
            || std::fs::read_dir(h.invoices())
                .expect("dir")
                .next()
                .is_none(),
        "nothing delivered"
    );
}

#[tokio::test]
async fn merchant_initiated_invoices_go_through_the_same_flow() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let order = serde_json::json!({
        "order": {
            "amount": 29900, "currency": "NOK", "merchant_reference": "inv-2026-001",
            "items": [{"line_id": "sub-001", "description": "Subscription", "quantity": 1, "amount": 29900, "vat": 25, "vat_amount": 5980}],
            "billing_address": {"first_name": "Ola", "last_name": "Nordmann", "email": "ola@example.no",
                                "address_line": "Storgata 2", "postal_code": "0151", "postal_place": "Oslo", "country": "NO"}
        },
        "payment": {"payment_product_type": "kravia.invoice_b2c"}
    });
    let created = app.create_invoice(&order).await.expect("created");
    let tx = &created.transaction;
    assert!(!created.existing);
    assert_eq!(tx.status, postbud::dintero::model::Status::Authorized);
    // Dintero's session for sessions/pay has no Kravia configuration: the invoice is the
    // merchant's because Postbud asked for it, and that was recorded at creation.
    assert!(h.sandbox.transaction(&tx.id).is_some());
    let outcome = app.deliver_now(&tx.id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&tx.id), 1);
    let history = app.history(&tx.id).await.expect("history");
    assert!(
        history.iter().any(|e| e
            .detail
            .contains("from the sessions/pay request Postbud made")),
        "{history:?}"
    );
    // The same order again (a re-run after a timeout): Dintero refuses a second invoice for the
    // reference, and the first one is reported and continued.
    let again = app.create_invoice(&order).await.expect("found again");
    assert!(again.existing);
    assert_eq!(again.transaction.id, tx.id);
    let outcome = app.deliver_now(&tx.id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&tx.id), 1);
    let pays = |h: &Harness| h.sandbox.stats().requests.get("pay").copied().unwrap_or(0);
    assert_eq!(pays(&h), 2);
    for (order, missing) in [
        (
            serde_json::json!({"order": {"amount": 1, "currency": "NOK", "merchant_reference": "x"}}),
            "billing_address",
        ),
        (
            serde_json::json!({"order": {"amount": 1, "currency": "NOK", "billing_address": {}}}),
            "order.merchant_reference",
        ),
        (
            serde_json::json!({"order": {"amount": 1, "currency": "NOK", "merchant_reference": " ", "billing_address": {}}}),
            "order.merchant_reference",
        ),
    ] {
        let err = app.create_invoice(&order).await.expect_err(missing);
        assert!(err.to_string().contains(missing), "{err}");
    }
    assert_eq!(pays(&h), 2, "refused before calling Dintero");
}

#[tokio::test]
async fn a_sessions_pay_that_is_not_authorized_is_an_error_with_dintero_s_reason() {
    let h = Harness::start().await;
    let app = h.app("").await;
    h.sandbox.inject(postbud_sandbox::Fault {
        operation: postbud_sandbox::Operation::Pay,
        transaction: None,
        kind: postbud_sandbox::FaultKind::Declined {
            message: "the customer's address could not be verified".into(),
        },
        times: 1,
        skip: 0,
    });
    let order = serde_json::json!({"order": {"amount": 100, "currency": "NOK", "merchant_reference": "declined-1",
        "billing_address": {"first_name": "Ola", "last_name": "Nordmann", "address_line": "Storgata 2",
                            "postal_code": "0151", "postal_place": "Oslo", "country": "NO"}}});
    let err = app.create_invoice(&order).await.expect_err("declined");
    assert!(err.to_string().contains("could not be verified"), "{err}");
    assert!(
        app.store()
            .dispatches(&postbud::store::DispatchQuery::latest(5))
            .await
            .expect("dispatches")
            .is_empty()
    );
}

#[tokio::test]
async fn a_send_window_holds_deliveries_until_it_opens() {
    let h = Harness::start().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let hhmm = |seconds: u64| format!("{:02}:{:02}", (seconds / 3600) % 24, (seconds / 60) % 60);
    let window = format!("{}-{} UTC", hhmm(now + 3 * 3600), hhmm(now + 4 * 3600));
    let app = h
        .app(&format!(
            "[[routes]]\ndeliver = [\"archive\"]\nwindow = \"{window}\"\n"
        ))
        .await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app
        .deliver_waiting(&id, Duration::from_millis(200))
        .await
        .expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Pending, "{outcome}");
    assert_eq!(
        h.sandbox.captures(&id),
        1,
        "captured now, delivered in the window"
    );
    let delivery = outcome
        .jobs
        .iter()
        .find(|j| j.kind == JobKind::Deliver)
        .expect("delivery");
    let wait_s = (delivery.next_at / 1000) - now as i64;
    assert!(
        (3 * 3600 - 60..=3 * 3600).contains(&wait_s),
        "opens in ~3 h, not {wait_s} s ({window})"
    );
    assert_eq!(
        delivery.attempts, 0,
        "waiting for a window is not an attempt"
    );
}

/// An attempt that took a lapsed dispatch over sends the PDF the first attempt kept, not the
/// copy it fetched itself, so every channel and every retry gets the same bytes.
#[tokio::test]
async fn an_attempt_that_took_over_uses_the_pdf_kept_first() {
    use postbud::{Pdf, store::Store};
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}/store.db", dir.path().display());
    let store = postbud::store::SqliteStore::open(&url)
        .await
        .expect("store");
    store.submit("T1").await.expect("submit");
    let claim = |owner: &'static str, lease: Duration| {
        let store = store.clone();
        async move {
            store
                .claim(&postbud::store::Claim {
                    owner,
                    lease,
                    limit: 1,
                    only: None,
                })
                .await
                .expect("claim")
                .remove(0)
        }
    };
    let first = claim("first", Duration::from_millis(1)).await;
    let kept = Pdf::new(
        "first.pdf",
        bytes::Bytes::from_static(b"%PDF-1.4 first %%EOF"),
    );
    let used = store.save_document(&first, &kept).await.expect("keep");
    assert_eq!(used.sha256, kept.sha256);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = claim("second", Duration::from_secs(30)).await;
    assert!(
        second.job.fence > first.job.fence,
        "the lapsed lease was taken over"
    );
    let fetched = Pdf::new(
        "second.pdf",
        bytes::Bytes::from_static(b"%PDF-1.4 second %%EOF"),
    );
    let used = store.save_document(&second, &fetched).await.expect("keep");
    assert_eq!(
        (used.file_name.as_str(), used.sha256.as_str()),
        ("first.pdf", kept.sha256.as_str())
    );
    assert_eq!(used.bytes, kept.bytes);
}

#[tokio::test]
async fn an_order_whose_reference_belongs_to_a_checkout_invoice_is_never_taken_over() {
    let h = Harness::start().await;
    let app = h.app("").await;
    // A checkout invoice Kravia delivers itself, with the reference the order reuses.
    let checkout = h.sandbox.seed(Seed {
        session_channel: Some("kravia".into()),
        merchant_reference: Some("shared-ref".into()),
        ..Seed::default()
    });
    let order = serde_json::json!({"order": {"amount": 50000, "currency": "NOK", "merchant_reference": "shared-ref",
        "billing_address": {"first_name": "Ola", "last_name": "Nordmann", "country": "NO"}}});
    let err = app
        .create_invoice(&order)
        .await
        .expect_err("refused by Dintero");
    assert!(err.to_string().contains("already used"), "{err}");
    assert!(app.dispatch(&checkout).await.expect("read").is_none());
    assert_eq!(h.sandbox.captures(&checkout), 0);
}

#[tokio::test]
async fn recording_an_invoice_as_created_fences_out_an_attempt_that_read_too_early() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let store = app.store();
    let id = h.sandbox.seed(Seed {
        no_session_channel: true,
        ..Seed::default()
    });
    // A callback's attempt is under way and has read the dispatch before its origin was known.
    store.submit(&id).await.expect("submit");
    let early = store
        .claim(&postbud::store::Claim {
            owner: "callback-worker",
            lease: Duration::from_secs(60),
            limit: 1,
            only: Some(&id),
        })
        .await
        .expect("claim")
        .pop()
        .expect("lease");
    store
        .mark_origin(&id, postbud::store::ORIGIN_CREATED, "created by the test")
        .await
        .expect("mark");
    let skip = postbud::store::DispatchPatch {
        stage: Some(postbud::Stage::Skipped),
        reason: Some(Some("resolves to `kravia`".into())),
        ..Default::default()
    };
    let refused = store
        .update_dispatch(&early, skip)
        .await
        .expect_err("fenced out");
    assert!(refused.is_lease_lost(), "{refused}");
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
}

#[tokio::test]
async fn the_store_and_the_files_written_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let h = Harness::start().await;
    // A store file left world-readable by an older version is tightened on open.
    let db = h.dir.path().join("postbud.db");
    std::fs::write(&db, b"").expect("create");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    for suffix in ["", "-wal", "-shm"] {
        let path = h.dir.path().join(format!("postbud.db{suffix}"));
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}: {mode:o}", path.display());
    }
    for entry in std::fs::read_dir(h.invoices()).expect("dir") {
        let path = entry.expect("entry").path();
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o640, "{}: {mode:o}", path.display());
    }
    // A mode the merchant chooses, and one that is not a mode.
    let strict = h.app("[channels.strict]\nkind = \"folder\"\npath = \"STRICT\"\nmode = \"0600\"\n\n[[routes]]\ndeliver = [\"strict\"]\n".replace("STRICT", &h.dir.path().join("strict").display().to_string()).as_str()).await;
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        strict.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    for entry in std::fs::read_dir(h.dir.path().join("strict")).expect("dir") {
        let mode = entry
            .expect("entry")
            .metadata()
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let settings = postbud::Settings::from_toml(
        &h.toml("[channels.odd]\nkind = \"folder\"\npath = \"x\"\nmode = \"rwx\"\n"),
    )
    .expect("parses");
    let err = postbud::Registry::discover()
        .expect("r")
        .build_all(&settings)
        .expect_err("bad mode")
        .to_string();
    assert!(
        err.contains("channels.odd.mode") && err.contains("octal"),
        "{err}"
    );
}

#[tokio::test]
async fn a_void_that_lands_mid_send_still_sends_that_channel_a_notice() {
    let h = Harness::start().await;
    let (app, id) = h.captured_and_waiting("50ms").await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    // A worker is sending right now; its end will never be recorded once the void lands.
    let sending = app
        .store()
        .claim(&postbud::store::Claim {
            owner: "sender",
            lease: Duration::from_secs(60),
            limit: 1,
            only: Some(&id),
        })
        .await
        .expect("claim");
    assert_eq!(sending.len(), 1);
    let effect = app.engine().voided(&id).await.expect("void");
    assert_eq!(effect.delivered_channels, vec!["archive".to_owned()]);
    let jobs = app.jobs(&id).await.expect("jobs");
    assert!(
        jobs.iter()
            .any(|j| j.kind == JobKind::Cancel && j.channel.as_deref() == Some("archive")),
        "{jobs:?}"
    );
}

/// The route chosen for an invoice is stored with it: an operator who reorders or edits
/// `[[routes]]` and restarts changes nothing for invoices already routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_invoice_keeps_its_route_when_the_configuration_changes() {
    let h = Harness::start().await;
    let dir = h.dir.path().display().to_string();
    let channels = format!(
        "[channels.gone]\nkind = \"folder\"\npath = \"/nonexistent/postbud-gone\"\ncreate = false\n\n\
         [channels.other]\nkind = \"folder\"\npath = \"{dir}/other\"\n\n"
    );
    // Before: deliver to `gone` after 300 ms, falling back to the archive.
    let before = h
        .app(&format!(
            "{channels}[[routes]]\ndeliver = [\"gone\"]\nfallback = [\"archive\"]\ndelay = \"300ms\"\n\n\
             [[routes]]\ndeliver = [\"other\"]\n"
        ))
        .await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = before
        .deliver_waiting(&id, Duration::ZERO)
        .await
        .expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Pending, "{outcome}");
    drop(before);
    // After a restart with the routes reordered and the first one's fallback changed.
    let after = h
        .app(&format!(
            "{channels}[[routes]]\ndeliver = [\"other\"]\n\n\
             [[routes]]\ndeliver = [\"gone\"]\nfallback = [\"other\"]\n"
        ))
        .await;
    let outcome = after
        .deliver_waiting(&id, Duration::from_secs(10))
        .await
        .expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let delivered: Vec<(String, JobState)> = outcome
        .jobs
        .iter()
        .filter(|j| j.kind == JobKind::Deliver)
        .map(|j| (j.channel.clone().unwrap_or_default(), j.state))
        .collect();
    assert_eq!(
        delivered,
        vec![
            ("gone".to_owned(), JobState::Failed),
            ("archive".to_owned(), JobState::Done)
        ],
        "the route chosen at capture, not today's: {outcome}"
    );
    assert!(
        !h.dir.path().join("other").exists(),
        "nothing went where today's configuration would have sent it"
    );
}

/// Workers stopped while busy leave nothing leased: a job claimed with the end of the previous
/// attempt is run, not left for its lease to lapse, and every invoice is either finished or
/// still queued for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_stopped_while_busy_leave_no_job_leased() {
    let h = Harness::start().await;
    let app = std::sync::Arc::new(h.app("").await);
    let ids: Vec<String> = (0..60).map(|_| h.sandbox.seed(Seed::default())).collect();
    for id in &ids {
        app.submit(id).await.expect("submit");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn({
        let app = std::sync::Arc::clone(&app);
        async move { app.run_workers(stopped).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let jobs = app.jobs(&ids[10]).await.expect("jobs");
        if jobs
            .iter()
            .any(|j| j.kind == JobKind::Deliver && j.state == JobState::Done)
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no delivery: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(true).expect("stop");
    workers.await.expect("workers");
    let (mut finished, mut queued) = (0, 0);
    for id in &ids {
        for job in app.jobs(id).await.expect("jobs") {
            assert_ne!(job.state, JobState::Running, "left leased: {job:?}");
            match job.state {
                JobState::Queued => queued += 1,
                _ => finished += 1,
            }
        }
    }
    assert!(
        finished > 0 && queued > 0,
        "stopped part way: {finished} finished, {queued} queued"
    );
}
