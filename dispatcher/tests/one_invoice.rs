//! One invoice per debt, whatever Dintero does: Postbud never delivers an invoice whose
//! collection someone else started, says "merchant" under both names of Dintero's option, heals
//! skips that can change and an invoice whose creation record was lost, and reads what Dintero
//! lists one transaction at a time.

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    Harness,
    quirky::{Quirks, QuirkyDintero},
};
use postbud::{
    App, AppError, Verdict,
    dintero::{DinteroApi, TransactionFilter},
};
use postbud_sandbox::{Fault, FaultKind, Operation, PayChannelKey, SandboxConfig, Seed};
use serde_json::{Value, json};

/// An order for `invoice create`.
fn order(reference: &str) -> Value {
    json!({"order": {"amount": 29900, "currency": "NOK", "merchant_reference": reference,
        "items": [{"line_id": "1", "description": "Subscription", "quantity": 1, "amount": 29900, "vat": 25, "vat_amount": 5980}],
        "billing_address": {"first_name": "Ola", "last_name": "Nordmann", "email": "ola@example.no", "country": "NO"}}})
}

/// The transaction's successful capture events at the sandbox, by their `event_reference`.
fn capture_references(h: &Harness, id: &str) -> Vec<Value> {
    h.sandbox.transaction(id).expect("tx")["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["event"] == "INITIATE_CAPTURE" && e["success"] == true)
        .map(|e| e["event_reference"].clone())
        .collect()
}

/// The PDFs in the archive.
fn archived(h: &Harness) -> usize {
    std::fs::read_dir(h.invoices())
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "pdf"))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn an_invoice_created_is_the_merchant_s_under_either_name_of_the_option() {
    for reading in [
        PayChannelKey::InvoiceChannel,
        PayChannelKey::InvoiceDeliveryMethod,
    ] {
        let h = Harness::start_with(SandboxConfig {
            pay_reads: reading,
            ..SandboxConfig::default()
        })
        .await;
        let app = h.app("").await;
        let created = app.create_invoice(&order("inv-7")).await.expect("created");
        let id = created.transaction.id.clone();
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(
            outcome.verdict(),
            Verdict::Delivered,
            "{reading:?}: {outcome}"
        );
        // Postbud's capture alone: Kravia neither delivered it nor started collection.
        assert_eq!(
            capture_references(&h, &id),
            vec![json!("inv-7")],
            "{reading:?}"
        );
        assert_eq!(archived(&h), 1, "{reading:?}");
    }
}

#[tokio::test]
async fn a_collection_started_elsewhere_is_never_followed_by_a_delivery_until_adopted() {
    let h = Harness::start().await;
    let app = h.app("").await;
    // The session says merchant, yet Kravia delivered it and started collection itself.
    let id = h.sandbox.seed(Seed {
        kravia_delivered: true,
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    let reason = outcome.assessment().reason;
    assert!(
        reason.starts_with("collection was started elsewhere")
            && reason.contains("--adopt-capture"),
        "{reason}"
    );
    assert_eq!(h.sandbox.captures(&id), 0);
    assert_eq!(archived(&h), 0, "nothing delivered");
    // The same word from every path: a callback, a retry.
    app.submit(&id).await.expect("submit");
    assert_eq!(
        app.deliver_now(&id).await.expect("again").verdict(),
        Verdict::NeedsAttention
    );
    assert_eq!(archived(&h), 0);
    // An operator who knows the customer lacks it: delivered, never captured again.
    let outcome = app
        .adopt_capture(&id, Duration::from_secs(10))
        .await
        .expect("adopt");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 0);
    assert_eq!(archived(&h), 1);
    assert!(
        app.history(&id)
            .await
            .expect("history")
            .iter()
            .any(|e| e.event == "capture adopted"),
    );
    // Nothing left to adopt, and no capture to adopt on an untouched invoice.
    assert!(matches!(
        app.adopt_capture(&id, Duration::ZERO).await,
        Err(AppError::NothingToAdopt(_))
    ));
    let fresh = h.sandbox.seed(Seed::default());
    assert!(matches!(
        app.adopt_capture(&fresh, Duration::ZERO).await,
        Err(AppError::NothingToAdopt(_))
    ));
    assert_eq!(h.sandbox.captures(&fresh), 0);
}

#[tokio::test]
async fn an_on_hold_transaction_whose_second_callback_is_lost_is_delivered_by_the_next_sweep() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed {
        status: Some("ON_HOLD".into()),
        ..Seed::default()
    });
    // The first callback: ON_HOLD, not ours yet.
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Skipped
    );
    // Dintero authorizes it later; the callback that would say so never arrives.
    h.sandbox.set_status(&id, "AUTHORIZED");
    let sweep = app.reconcile().await.expect("sweep");
    assert_eq!(sweep.looked_again, 1, "{sweep:?}");
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
    // A skip that cannot change (the session says Kravia) is left alone.
    let kravia = h.sandbox.seed(Seed {
        session_channel: Some("kravia".into()),
        ..Seed::default()
    });
    app.deliver_now(&kravia).await.expect("deliver");
    let sweep = app.reconcile().await.expect("sweep");
    assert_eq!(sweep.looked_again, 0, "{sweep:?}");
}

#[tokio::test]
async fn a_merchant_initiated_invoice_made_elsewhere_is_delivered_once_when_declared() {
    let h = Harness::start().await;
    let app = h.app("").await;
    // Made by the merchant's own backend with sessions/pay: nothing on the transaction says so.
    let id = h.sandbox.seed(Seed {
        no_session_channel: true,
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Skipped, "{outcome}");
    for _ in 0..2 {
        let outcome = app
            .declare_merchant_initiated(&id, Duration::from_secs(10))
            .await
            .expect("declared");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    }
    assert_eq!(h.sandbox.captures(&id), 1);
    assert_eq!(archived(&h), 1);
    // A checkout session says who sends it: a declaration cannot overrule it.
    let checkout = h.sandbox.seed(Seed {
        session_channel: Some("kravia".into()),
        ..Seed::default()
    });
    let refused = app
        .declare_merchant_initiated(&checkout, Duration::ZERO)
        .await;
    assert!(
        matches!(&refused, Err(AppError::NotMerchantInitiated(why)) if why.contains("its session says `kravia`")),
        "{refused:?}"
    );
    assert_eq!(h.sandbox.captures(&checkout), 0);
    // Kravia's own collection still stops a declared one.
    let delivered_by_kravia = h.sandbox.seed(Seed {
        no_session_channel: true,
        kravia_delivered: true,
        ..Seed::default()
    });
    let outcome = app
        .declare_merchant_initiated(&delivered_by_kravia, Duration::ZERO)
        .await
        .expect("declared");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
}

#[tokio::test]
async fn a_sweep_page_with_an_unreadable_transaction_still_delivers_the_others() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let first = h.sandbox.seed(Seed::default());
    let odd = h.sandbox.seed(Seed {
        overrides: Some(
            json!({"amount": "299.00"})
                .as_object()
                .cloned()
                .expect("object"),
        ),
        ..Seed::default()
    });
    let last = h.sandbox.seed(Seed::default());
    let sweep = app.reconcile().await.expect("sweep");
    // The odd one is set aside and still submitted, so that its dispatch shows it.
    assert_eq!((sweep.unreadable, sweep.submitted), (1, 3), "{sweep:?}");
    assert!(sweep.error.is_none(), "{sweep:?}");
    for id in [&first, &last] {
        assert_eq!(
            app.deliver_now(id).await.expect("deliver").verdict(),
            Verdict::Delivered
        );
    }
    assert_eq!(h.sandbox.captures(&odd), 0);
    let outcome = app.deliver_now(&odd).await.expect("its dispatch");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
}

#[tokio::test]
async fn a_void_of_an_invoice_older_than_the_look_back_is_still_found() {
    let h = Harness::start().await;
    let app = App::open(&h.settings_with_dintero("reconcile_lookback = \"14days\"", ""))
        .await
        .expect("app");
    let long_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 40);
    let id = h.sandbox.seed(Seed {
        overrides: Some(
            json!({"created_at": long_ago.to_string()})
                .as_object()
                .cloned()
                .expect("object"),
        ),
        ..Seed::default()
    });
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    // Voided in Dintero's Backoffice, six weeks after the invoice was made.
    h.sandbox.set_status(&id, "AUTHORIZATION_VOIDED");
    let sweep = app.reconcile().await.expect("sweep");
    assert_eq!(sweep.voided, 1, "{sweep:?}");
    let outcome = app.deliver_now(&id).await.expect("notices");
    assert_eq!(outcome.verdict(), Verdict::Voided, "{outcome}");
    assert!(h.void_notice(&id).exists(), "the cancellation notice");
}

#[tokio::test]
async fn a_conflict_on_capture_is_an_unknown_outcome_read_again_not_a_failure() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    h.sandbox.inject(Fault {
        operation: Operation::Capture,
        transaction: Some(id.clone()),
        kind: FaultKind::Status {
            status: 409,
            retry_after: None,
        },
        times: 1,
        skip: 0,
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
}

async fn app_with(h: &Harness, quirks: Quirks, extra: &str) -> (App, Arc<QuirkyDintero>) {
    let settings = h.settings(extra);
    let gateway = Arc::new(QuirkyDintero::new(&settings, quirks));
    let app = App::builder(&settings)
        .dintero(Arc::clone(&gateway) as Arc<dyn DinteroApi>)
        .open()
        .await
        .expect("app");
    (app, gateway)
}

#[tokio::test]
async fn an_invoice_whose_creation_record_was_lost_is_found_by_its_intent() {
    let h = Harness::start().await;
    let quirks = Quirks {
        lose_pay_answers: true,
        ..Quirks::default()
    };
    let (app, _) = app_with(&h, quirks, "").await;
    let lost = app.create_invoice(&order("inv-lost")).await;
    assert!(lost.is_err(), "the answer was lost");
    // Dintero made it; nothing on it says the merchant delivers it.
    let sweep = app.reconcile().await.expect("sweep");
    assert_eq!(sweep.submitted, 1, "{sweep:?}");
    let page = app
        .dintero()
        .transactions(&TransactionFilter {
            merchant_reference: Some("inv-lost".into()),
            limit: 10,
            ..TransactionFilter::default()
        })
        .await
        .expect("list");
    let id = page.transactions[0].id.clone();
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(capture_references(&h, &id), vec![json!("inv-lost")]);
}

#[tokio::test]
async fn invoice_create_says_merchant_both_ways_asks_for_void_reports_and_refuses_grouped_types() {
    let h = Harness::start().await;
    let (app, gateway) = app_with(
        &h,
        Quirks::default(),
        "[server]\npublic_url = \"https://m.example/postbud\"\n",
    )
    .await;
    app.create_invoice(&order("inv-9")).await.expect("created");
    let body = gateway.pay_bodies.lock().expect("lock")[0].clone();
    assert_eq!(body["payment"]["invoice_channel"], "merchant");
    assert_eq!(body["payment"]["invoice_delivery_method"], "merchant");
    assert_eq!(
        body["session"]["url"]["callback_url"],
        "https://m.example/postbud/dintero/callback?report_event=VOID"
    );
    let mut grouped = order("inv-10");
    grouped["payment"] = json!({"payment_product_type": "kravia.invoice_b2b_grouped"});
    let refused = app.create_invoice(&grouped).await;
    assert!(
        matches!(&refused, Err(AppError::Config(e)) if e.to_string().contains("grouped invoices are not")),
        "{refused:?}"
    );
    assert_eq!(
        gateway.pay_bodies.lock().expect("lock").len(),
        1,
        "Dintero was not called"
    );
}

#[tokio::test]
async fn a_conflict_on_void_is_an_unknown_outcome_read_again_not_a_refusal() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    h.sandbox.inject(Fault {
        operation: Operation::Void,
        transaction: Some(id.clone()),
        kind: FaultKind::Status {
            status: 409,
            retry_after: None,
        },
        times: 1,
        skip: 0,
    });
    // Dintero's transaction decides: not voided, so "try again" (exit 4), never "refused".
    let unknown = app.void(&id, Duration::from_millis(300)).await;
    assert!(
        matches!(&unknown, Err(AppError::Dintero(e)) if e.is_temporary() && e.to_string().contains("outcome unknown")),
        "{unknown:?}"
    );
    assert!(
        !h.void_notice(&id).exists(),
        "no notice before Dintero says"
    );
    // Had the void landed despite the conflict, Dintero shows it, and the void is done.
    let landed = h.sandbox.seed(Seed::default());
    app.deliver_now(&landed).await.expect("deliver");
    h.sandbox.inject(Fault {
        operation: Operation::Void,
        transaction: Some(landed.clone()),
        kind: FaultKind::StatusAfterApplying { status: 409 },
        times: 1,
        skip: 0,
    });
    let report = app
        .void(&landed, Duration::from_secs(5))
        .await
        .expect("voided");
    assert_eq!(
        report.outcome.verdict(),
        Verdict::Voided,
        "{}",
        report.outcome
    );
    assert!(h.void_notice(&landed).exists());
}

#[tokio::test]
async fn a_capture_refused_because_another_system_captured_first_is_not_taken_for_ours() {
    let h = Harness::start().await;
    let quirks = Quirks {
        captured_elsewhere_first: Some("erp-77".into()),
        ..Quirks::default()
    };
    let (app, _) = app_with(&h, quirks, "").await;
    let id = h.sandbox.seed(Seed::default());
    // Postbud's capture comes second and is refused (beyond the authorised amount); the capture
    // Dintero shows is the other system's.
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    assert!(
        outcome
            .assessment()
            .reason
            .starts_with("collection was started elsewhere"),
        "{outcome}"
    );
    assert_eq!(capture_references(&h, &id), vec![json!("erp-77")]);
    assert_eq!(archived(&h), 0, "nothing delivered");
}
