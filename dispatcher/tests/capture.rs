//! Capture happens once, whatever is repeated, and never when the PDF or the route is missing.

mod common;

use common::{Harness, sha256};
use postbud::{App, Verdict};
use postbud_sandbox::{Fault, FaultKind, Operation, Seed};

#[tokio::test]
async fn deliver_captures_once_and_writes_the_pdf_then_a_second_deliver_does_nothing() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());

    let first = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(first.verdict(), Verdict::Delivered, "{first}");
    assert_eq!(h.sandbox.captures(&id), 1);
    let tx = h.sandbox.transaction(&id).expect("tx");
    assert_eq!(
        tx["status"], "AUTHORIZED",
        "Kravia capture keeps AUTHORIZED"
    );
    let number = tx["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("number");
    let written =
        std::fs::read(h.invoices().join(format!("{number}.pdf"))).expect("PDF in the folder");
    assert_eq!(sha256(&written), sha256(&h.sandbox.pdf(&id).expect("pdf")));
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(h.invoices().join(format!("{number}.json"))).expect("manifest"),
    )
    .expect("json");
    assert_eq!(manifest["pdf"]["sha256"], sha256(&written));
    assert_eq!(manifest["invoice"]["transaction_id"], id.as_str());

    let second = app.deliver_now(&id).await.expect("deliver again");
    assert!(!second.newly_queued);
    assert_eq!(second.verdict(), Verdict::Delivered);
    assert_eq!(h.sandbox.captures(&id), 1, "no second capture");
    let attempts = |o: &postbud::Outcome| o.jobs.iter().map(|j| j.attempts).collect::<Vec<_>>();
    assert_eq!(
        attempts(&first),
        attempts(&second),
        "nothing was attempted again"
    );
}

#[tokio::test]
async fn repeated_submits_capture_once() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    for _ in 0..5 {
        app.submit(&id).await.expect("submit");
    }
    for _ in 0..3 {
        app.deliver_now(&id).await.expect("deliver");
    }
    assert_eq!(h.sandbox.captures(&id), 1);
    let jobs = app.jobs(&id).await.expect("jobs");
    assert_eq!(jobs.len(), 2, "one dispatch and one delivery: {jobs:?}");
}

#[tokio::test]
async fn concurrent_submits_from_two_processes_sharing_the_file_capture_once() {
    let h = Harness::start().await;
    let a = h.app("").await;
    let b = App::open(&h.settings(""))
        .await
        .expect("second app on the same file");
    let ids: Vec<String> = (0..5).map(|_| h.sandbox.seed(Seed::default())).collect();
    let mut runs = tokio::task::JoinSet::new();
    let (a, b) = (std::sync::Arc::new(a), std::sync::Arc::new(b));
    for id in &ids {
        for app in [&a, &b, &a, &b] {
            let (app, id) = (std::sync::Arc::clone(app), id.clone());
            runs.spawn(async move { app.deliver_now(&id).await.expect("deliver") });
        }
    }
    while runs.join_next().await.is_some() {}
    for id in &ids {
        assert_eq!(h.sandbox.captures(id), 1, "{id}");
        let outcome = a.deliver_now(id).await.expect("status");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    }
}

#[tokio::test]
async fn a_capture_whose_response_is_lost_is_not_repeated() {
    // The capture takes effect, but the answer comes after the client's 2 s timeout: the retry
    // re-reads the transaction, finds INITIATE_CAPTURE, and does not capture again.
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    lose_the_capture_answer(&h, &id);
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
    let history = app.history(&id).await.expect("history");
    assert!(
        history
            .iter()
            .any(|e| e.event == "retry" && e.detail.contains("timed out")),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_permanent_capture_failure_delivers_nothing() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    h.sandbox.inject(Fault {
        operation: Operation::Capture,
        transaction: Some(id.clone()),
        kind: FaultKind::Status {
            status: 400,
            retry_after: None,
        },
        times: 1,
        skip: 0,
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    // Dintero refused the capture: the invoice exists and nobody sends it.
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    let reason = outcome
        .dispatch
        .as_ref()
        .and_then(|d| d.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.contains("capture failed permanently")
            && reason.contains("400")
            && reason.contains("injected fault (code SANDBOX_FAULT)"),
        "Dintero's message, not a body dump: {reason}"
    );
    assert!(
        outcome
            .jobs
            .iter()
            .all(|j| j.kind == postbud::store::JobKind::Dispatch),
        "no delivery job: {outcome}"
    );
    assert!(
        !h.invoices().exists()
            || std::fs::read_dir(h.invoices())
                .expect("dir")
                .next()
                .is_none()
    );
    // Once the cause is fixed (here: the fault is gone), `retry` captures and delivers.
    assert_eq!(app.retry(&id, None).await.expect("retry"), 1);
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
}

#[tokio::test]
async fn a_capture_body_fits_the_schema_whatever_the_lines_lack() {
    let h = Harness::start().await;
    let app = h.app("").await;
    // Lines without vat, quantity or id: items are sent with what exists, never a null.
    let sparse = h.sandbox.seed(Seed {
        items: Some(vec![
            serde_json::json!({"line_id": "1", "amount": 30000}),
            serde_json::json!({"line_id": "2", "amount": 20000, "description": "Freight"}),
        ]),
        ..Seed::default()
    });
    // A line without line_id (and without vat): the full amount is captured without items.
    let unnamed = h.sandbox.seed(Seed {
        items: Some(vec![
            serde_json::json!({"id": "sku-1", "description": "Consulting", "amount": 30000}),
            serde_json::json!({"line_id": "2", "amount": 20000}),
        ]),
        ..Seed::default()
    });
    for id in [&sparse, &unnamed] {
        let outcome = app.deliver_now(id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
        assert_eq!(h.sandbox.captures(id), 1);
    }
    let capture_event = |id: &str| {
        let tx = h.sandbox.transaction(id).expect("tx");
        tx["events"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["event"] == "INITIATE_CAPTURE")
            .cloned()
            .expect("captured")
    };
    let items = capture_event(&sparse)["items"].clone();
    assert_eq!(
        items,
        serde_json::json!([{"line_id": "1", "amount": 30000}, {"line_id": "2", "amount": 20000, "description": "Freight"}])
    );
    let event = capture_event(&unnamed);
    assert!(event.get("items").is_none(), "{event}");
    assert_eq!(event["amount"], 50000);
    let history = app.history(&unnamed).await.expect("history");
    assert!(
        history
            .iter()
            .any(|e| e.detail.contains("a line (items) has no line_id")),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_pdf_that_changes_at_capture_is_delivered_in_its_post_capture_form() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed {
        pdf_changes_at_capture: true,
        ..Seed::default()
    });
    let before = h.sandbox.pdf(&id).expect("pdf");
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let after = h.sandbox.pdf(&id).expect("pdf");
    assert_ne!(sha256(&before), sha256(&after), "the sandbox changed it");
    let tx = h.sandbox.transaction(&id).expect("tx");
    let number = tx["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("number");
    let written = std::fs::read(h.invoices().join(format!("{number}.pdf"))).expect("written");
    assert_eq!(sha256(&written), sha256(&after), "the post-capture bytes");
    let invoice = app.invoice(&id).await.expect("read").expect("kept");
    assert_eq!(invoice.pdf.sha256, sha256(&after));
    let due = jiff::Zoned::now()
        .date()
        .checked_add(jiff::Span::new().days(14))
        .expect("date");
    assert_eq!(
        invoice.due_date,
        Some(due),
        "facts from the post-capture transaction"
    );
    let history = app.history(&id).await.expect("history");
    let line = format!("differs from sha256 {}", sha256(&before));
    assert!(
        history.iter().any(|e| e.detail.contains(&line)),
        "{history:?}"
    );
}

#[tokio::test]
async fn a_failing_fetch_after_capture_is_retried_and_never_captures_again() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    // The first PDF request (before capture) passes; the next two (after capture) fail.
    h.sandbox.inject(Fault {
        operation: Operation::Pdf,
        transaction: Some(id.clone()),
        kind: FaultKind::Status {
            status: 503,
            retry_after: None,
        },
        times: 2,
        skip: 1,
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
    // A PDF that stays unreadable after capture: dead-lettered and visible, captured once.
    let stuck = h.sandbox.seed(Seed::default());
    h.sandbox.inject(Fault {
        operation: Operation::Pdf,
        transaction: Some(stuck.clone()),
        kind: FaultKind::Status {
            status: 404,
            retry_after: None,
        },
        times: 100,
        skip: 1,
    });
    let outcome = app.deliver_now(&stuck).await.expect("deliver");
    // Collection started and the invoice reached nobody.
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    let reason = outcome.dispatch.and_then(|d| d.reason).unwrap_or_default();
    assert!(
        reason.contains("captured, but reading the invoice after capture failed"),
        "{reason}"
    );
    assert_eq!(h.sandbox.captures(&stuck), 1);
}

#[tokio::test]
async fn an_accepted_202_capture_is_confirmed_by_its_event_and_not_repeated() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    h.sandbox.inject(Fault {
        operation: Operation::Capture,
        transaction: Some(id.clone()),
        kind: FaultKind::Accepted {
            after_gets: 8,
            fail: false,
        },
        times: 1,
        skip: 0,
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
    let history = app.history(&id).await.expect("history");
    assert!(
        history.iter().any(|e| e.event == "capture accepted"),
        "{history:?}"
    );
}

#[tokio::test]
async fn transient_dintero_errors_are_retried_then_succeed() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    let fault = |operation, status, retry_after, times| Fault {
        operation,
        transaction: Some(id.clone()),
        kind: FaultKind::Status {
            status,
            retry_after,
        },
        times,
        skip: 0,
    };
    h.sandbox.inject(fault(Operation::Get, 503, None, 4));
    h.sandbox.inject(fault(Operation::Capture, 429, Some(1), 1));
    h.sandbox.inject(fault(Operation::Capture, 503, None, 1));
    h.sandbox.inject(fault(Operation::Pdf, 502, None, 1));
    let started = std::time::Instant::now();
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(1),
        "Retry-After: 1 was honoured"
    );
    let history = app.history(&id).await.expect("history");
    let retries: Vec<_> = history
        .iter()
        .filter(|e| e.event == "retry")
        .map(|e| e.detail.as_str())
        .collect();
    assert!(retries.iter().any(|d| d.contains("429")), "{retries:?}");
    assert!(retries.iter().any(|d| d.contains("503")), "{retries:?}");
}

#[tokio::test]
async fn no_matching_route_means_no_capture() {
    let h = Harness::start().await;
    let app = h.app("[[routes]]\nwhen = { product_type = \"kravia.invoice_b2b\" }\ndeliver = [\"archive\"]\n").await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention);
    assert!(
        outcome
            .dispatch
            .as_ref()
            .and_then(|d| d.reason.as_deref())
            .unwrap_or_default()
            .contains("no route matches"),
        "{outcome}"
    );
    assert_eq!(h.sandbox.captures(&id), 0);
}

#[tokio::test]
async fn an_invoice_paid_before_its_capture_is_confirmed_is_still_delivered() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    h.sandbox.inject(Fault {
        operation: Operation::Capture,
        transaction: Some(id.clone()),
        kind: FaultKind::Accepted {
            after_gets: 7,
            fail: false,
        },
        times: 1,
        skip: 0,
    });
    let outcome = app
        .deliver_waiting(&id, std::time::Duration::from_millis(100))
        .await
        .expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Pending, "{outcome}");
    // Kravia reports the invoice paid: the status moves on while the capture is being confirmed.
    paid_then_delivered_once(&h, &app, &id).await;
}

/// A capture whose answer was lost leaves only the record before it; if the invoice is paid
/// before the retry (Dintero's status moves on to `CAPTURED`), the retry still finds the capture
/// it asked for and delivers, once.
#[tokio::test]
async fn an_invoice_paid_after_a_capture_whose_answer_was_lost_is_still_delivered() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    lose_the_capture_answer(&h, &id);
    let outcome = app
        .deliver_waiting(&id, std::time::Duration::from_millis(10))
        .await
        .expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Pending, "{outcome}");
    let dispatch = outcome.dispatch.expect("dispatch");
    assert!(
        dispatch.capture_reference.is_some() && dispatch.captured_at.is_none(),
        "{dispatch:?}"
    );
    paid_then_delivered_once(&h, &app, &id).await;
}

/// The next capture of `id` takes effect, but its answer comes after the client's 2 s timeout.
fn lose_the_capture_answer(h: &Harness, id: &str) {
    h.sandbox.inject(Fault {
        operation: Operation::Capture,
        transaction: Some(id.to_owned()),
        kind: FaultKind::SlowResponse { ms: 3_000 },
        times: 1,
        skip: 0,
    });
}

/// Kravia reports the invoice paid (Dintero's status moves on to `CAPTURED`); the next attempt
/// still delivers it, without a second capture.
async fn paid_then_delivered_once(h: &Harness, app: &postbud::App, id: &str) {
    h.sandbox.set_status(id, "CAPTURED");
    let outcome = app
        .deliver_waiting(id, std::time::Duration::from_secs(10))
        .await
        .expect("deliver");
    let history = app.history(id).await.expect("history");
    assert_eq!(
        outcome.verdict(),
        Verdict::Delivered,
        "{outcome} {history:#?}"
    );
    assert_eq!(h.sandbox.captures(id), 1);
}
