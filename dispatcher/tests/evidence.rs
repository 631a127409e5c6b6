//! Delivery evidence through the library's face: a bounce reported days after an invoice was
//! delivered fails that delivery and runs its route's fallback once; repeats, strays and reports
//! that outrun the attempt change nothing; the status, the history and `/metrics` show it.

mod common;

use std::{sync::Arc, time::Duration};

use common::Harness;
use postbud::{
    App, Correlation, Evidence, EvidenceState, JobState, Recorded, Verdict, ids, store::Role,
};
use postbud_sandbox::Seed;

/// The route: the customer's folder first, the back office's when it fails.
const ROUTE: &str = r#"
[channels.customer]
kind = "folder"
path = "CUSTOMER"

[channels.letter]
kind = "folder"
path = "LETTER"

[[routes]]
deliver = ["customer"]
fallback = ["letter"]
"#;

async fn app_with_fallback(h: &Harness) -> App {
    let dir = h.dir.path().display().to_string();
    h.app(
        &ROUTE
            .replace("CUSTOMER", &format!("{dir}/customer"))
            .replace("LETTER", &format!("{dir}/letter")),
    )
    .await
}

fn bounce(delivery: &str, event: &str) -> Evidence {
    Evidence::new(
        Correlation::Delivery(delivery.to_owned()),
        EvidenceState::Bounced,
        "mx.example.com (DSN)",
        event,
    )
    .with_reason("550 5.1.1 <kari@example.com>: mailbox unavailable")
    .with_payload(&b"Action: failed\r\nStatus: 5.1.1\r\n"[..])
}

#[tokio::test]
async fn a_late_bounce_fails_the_delivery_and_runs_the_fallback_once() {
    let h = Harness::start().await;
    let app = app_with_fallback(&h).await;
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let customer = ids::delivery_id(&id, "customer");
    let letter = ids::delivery_id(&id, "letter");

    // Confirmed first, then bounced after all (a mail server that accepted and then could not
    // deliver).
    let delivered = Evidence::new(
        Correlation::Delivery(customer.clone()),
        EvidenceState::Delivered,
        "mx.example.com (DSN)",
        "dsn-1",
    );
    assert_eq!(
        app.record_evidence("customer", None, &delivered)
            .await
            .expect("record"),
        Recorded::New
    );
    assert_eq!(
        app.record_evidence("customer", None, &bounce(&customer, "dsn-2"))
            .await
            .expect("record"),
        Recorded::New
    );
    let job = app
        .store()
        .job(&customer)
        .await
        .expect("job")
        .expect("there");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.evidence.as_deref(), Some("bounced"));
    assert!(
        job.last_error
            .as_deref()
            .is_some_and(|e| e.contains("550 5.1.1") && e.contains("mx.example.com")),
        "{job:?}"
    );
    // The same report again, and another report of the same bounce: recorded once, one
    // fallback.
    assert_eq!(
        app.record_evidence("customer", None, &bounce(&customer, "dsn-2"))
            .await
            .expect("record"),
        Recorded::Duplicate
    );
    assert_eq!(
        app.record_evidence("customer", None, &bounce(&customer, "dsn-3"))
            .await
            .expect("record"),
        Recorded::New
    );

    let outcome = app.deliver_now(&id).await.expect("the fallback runs");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let fallback: Vec<_> = outcome
        .jobs
        .iter()
        .filter(|j| j.role == Some(Role::Fallback))
        .collect();
    assert_eq!(fallback.len(), 1, "{outcome}");
    assert_eq!(
        (fallback[0].id.as_str(), fallback[0].state),
        (letter.as_str(), JobState::Done)
    );
    // A reporter's words reach the history and the terminal clean and bounded; an event id that
    // is no fit key is kept as its digest, and recognised again.
    let hostile = Evidence::new(
        Correlation::Delivery(customer.clone()),
        EvidenceState::Delayed,
        "mx\u{1b}[31m.example.com",
        "x".repeat(5_000),
    )
    .with_reason(format!(
        "451 4.4.1 \u{1b}]0;pwned\u{7}try later {}",
        "z".repeat(5_000)
    ));
    for expected in [Recorded::New, Recorded::Duplicate] {
        assert_eq!(
            app.record_evidence("customer", None, &hostile)
                .await
                .expect("record"),
            expected
        );
    }
    let history = app.history(&id).await.expect("history");
    let delayed = history
        .iter()
        .find(|h| h.event == "evidence: delayed")
        .expect("recorded");
    assert!(
        !delayed.detail.chars().any(char::is_control) && delayed.detail.len() < 1_400,
        "{:?}",
        delayed.detail
    );
    let count = |event: &str| history.iter().filter(|h| h.event == event).count();
    assert_eq!(count("evidence: bounced"), 2, "{history:?}");
    assert_eq!(count("evidence: delivered"), 1, "{history:?}");
    assert_eq!(count("fallback"), 1, "{history:?}");
    let recorded = app.store().evidence(&id).await.expect("evidence");
    assert_eq!(recorded.len(), 4);
    assert!(
        recorded[3].event_id.starts_with("sha256:"),
        "{:?}",
        recorded[3]
    );
    assert_eq!(
        recorded[1].payload.as_deref(),
        Some(&b"Action: failed\r\nStatus: 5.1.1\r\n"[..])
    );

    let metrics = app.render_metrics().await.expect("metrics");
    for line in [
        r#"postbud_delivery_evidence_total{channel="customer",state="bounced",outcome="recorded"} 2"#,
        r#"postbud_delivery_evidence_total{channel="customer",state="bounced",outcome="failed"} 1"#,
        r#"postbud_delivery_evidence_total{channel="customer",state="bounced",outcome="duplicate"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
}

#[tokio::test]
async fn an_invoice_whose_every_channel_bounced_needs_attention_with_the_reason() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let archive = ids::delivery_id(&id, "archive");
    // A provider's refusal (a suppression list) fails a delivery as a bounce does; its raw event
    // is kept bounded.
    let mut rejected = bounce(&archive, "dsn-1");
    rejected.state = EvidenceState::Rejected;
    rejected.payload = vec![b'x'; 100_000].into();
    assert_eq!(
        app.record_evidence("archive", None, &rejected)
            .await
            .expect("record"),
        Recorded::New
    );
    let kept = app.store().evidence(&id).await.expect("evidence");
    assert_eq!(
        kept[0].payload.as_ref().map(Vec::len),
        Some(postbud::PAYLOAD_LIMIT)
    );
    let outcome = app.deliver_now(&id).await.expect("outcome");
    let assessment = outcome.assessment();
    assert_eq!(assessment.verdict, Verdict::NeedsAttention, "{outcome}");
    assert!(
        outcome.to_string().contains("550 5.1.1"),
        "the reason shows: {outcome}"
    );
    assert!(
        outcome.to_string().contains("[rejected]"),
        "the evidence shows: {outcome}"
    );
}

#[tokio::test]
async fn reports_that_outrun_the_attempt_stray_or_name_another_channel_change_nothing() {
    let h = Harness::start().await;
    let (app, id) = h.captured_and_waiting("1h").await;
    let archive = ids::delivery_id(&id, "archive");
    // The delivery waits for its send window: its attempt has not ended.
    assert_eq!(
        app.record_evidence("archive", None, &bounce(&archive, "early"))
            .await
            .expect("record"),
        Recorded::NotYet
    );
    // A delivery Postbud never made, an id with control characters, another channel's delivery,
    // a report URL signed for another delivery: each refused with its reason.
    for (channel, about, signed_for, why) in [
        (
            "archive",
            Correlation::Delivery("dlv-nobody-made-this".into()),
            None,
            "no delivery `dlv-nobody-made-this`",
        ),
        (
            "archive",
            Correlation::Delivery("dlv-\u{0}\r\nX-Injected: 1".into()),
            None,
            "is `dlv-???X-Injected: 1`",
        ),
        (
            "archive",
            Correlation::Delivery("dlv-\r\nX-Injected: 1".into()),
            None,
            "no delivery `dlv-??X-Injected: 1`",
        ),
        (
            "archive",
            Correlation::Reference("r".repeat(100_000)),
            None,
            "is `rrrr",
        ),
        (
            "archive",
            Correlation::Reference("<nobody@merchant.example>".into()),
            None,
            "has the reference `<nobody@merchant.example>`",
        ),
        (
            "elsewhere",
            Correlation::Delivery(archive.clone()),
            None,
            "is not a delivery of channel `elsewhere`",
        ),
    ] {
        let mut evidence = bounce("", "stray");
        evidence.about = about;
        match app
            .record_evidence(channel, signed_for, &evidence)
            .await
            .expect("record")
        {
            Recorded::Unknown(reason) => assert!(reason.contains(why), "{reason}"),
            other => panic!("{other:?}"),
        }
    }
    let history = app.history(&id).await.expect("history");
    assert!(
        !history.iter().any(|h| h.event.starts_with("evidence")),
        "{history:?}"
    );
    let job = app
        .store()
        .job(&archive)
        .await
        .expect("job")
        .expect("there");
    assert_eq!(job.state, JobState::Queued, "untouched");
}

#[tokio::test]
async fn a_bounce_after_a_restart_and_a_prune_is_acted_on_and_one_of_a_voided_invoice_is_only_recorded()
 {
    let h = Harness::start().await;
    let id = h.sandbox.seed(Seed::default());
    let voided = h.sandbox.seed(Seed::default());
    {
        let app = app_with_fallback(&h).await;
        for tx in [&id, &voided] {
            assert_eq!(
                app.deliver_now(tx).await.expect("deliver").verdict(),
                Verdict::Delivered
            );
        }
        app.void(&voided, Duration::from_secs(10))
            .await
            .expect("void");
        let opened = Evidence::new(
            Correlation::Delivery(ids::delivery_id(&id, "customer")),
            EvidenceState::Opened,
            "mailbox provider",
            "open-1",
        )
        .with_reason("opened by kari@example.com")
        .with_payload(&b"{\"email\":\"kari@example.com\"}"[..]);
        assert_eq!(
            app.record_evidence("customer", None, &opened)
                .await
                .expect("record"),
            Recorded::New
        );
        // Retention prunes the invoices last changed before now (a millisecond clock: one
        // passes): the personal data goes, the records of what was done stay.
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(app.prune(Duration::ZERO).await.expect("prune"), 2);
    }
    // Days later, another process.
    let app = Arc::new(app_with_fallback(&h).await);
    let kept = app.store().evidence(&id).await.expect("evidence");
    assert_eq!(kept.len(), 1);
    assert_eq!(
        (
            kept[0].state.as_str(),
            kept[0].reason.as_str(),
            kept[0].payload.as_deref()
        ),
        ("opened", "", None),
        "retention removed what the reporter said of the customer, kept what happened"
    );
    let customer = ids::delivery_id(&id, "customer");
    assert_eq!(
        app.record_evidence("customer", None, &bounce(&customer, "late"))
            .await
            .expect("record"),
        Recorded::New
    );
    let job = app
        .store()
        .job(&customer)
        .await
        .expect("job")
        .expect("there");
    assert_eq!(job.state, JobState::Failed);
    let queued = app
        .store()
        .job(&ids::delivery_id(&id, "letter"))
        .await
        .expect("job")
        .expect("the fallback is queued");
    assert_eq!(queued.state, JobState::Queued);
    // The invoice is read again from Dintero for it: retention pruned the PDF.
    let outcome = app.deliver_now(&id).await.expect("the fallback runs");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    // What the late bounce said of the customer goes with the next prune, like the rest.
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(app.prune(Duration::ZERO).await.expect("prune") >= 1);
    let said: Vec<_> = app
        .store()
        .evidence(&id)
        .await
        .expect("evidence")
        .into_iter()
        .map(|e| (e.reason, e.payload))
        .collect();
    assert!(
        said.iter()
            .all(|(reason, payload)| reason.is_empty() && payload.is_none()),
        "{said:?}"
    );
    let job = app
        .store()
        .job(&customer)
        .await
        .expect("job")
        .expect("there");
    assert_eq!(
        job.last_error, None,
        "the reason of its failure names the customer"
    );

    let on_voided = ids::delivery_id(&voided, "customer");
    assert_eq!(
        app.record_evidence("customer", None, &bounce(&on_voided, "late"))
            .await
            .expect("record"),
        Recorded::New
    );
    let job = app
        .store()
        .job(&on_voided)
        .await
        .expect("job")
        .expect("there");
    assert_eq!(
        (job.state, job.evidence.as_deref()),
        (JobState::Done, Some("bounced")),
        "a voided invoice is nobody's to receive: recorded, no fallback"
    );
    assert!(
        app.store()
            .job(&ids::delivery_id(&voided, "letter"))
            .await
            .expect("job")
            .is_none()
    );
    // The sink the channels' own sources use says the same.
    let sink = app.evidence_sink();
    assert_eq!(
        sink.record("customer", bounce(&customer, "late"))
            .await
            .expect("record"),
        Recorded::Duplicate
    );
}
