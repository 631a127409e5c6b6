//! What an adversarial re-test found at the edges: an invoice pruned by retention is still
//! retried and cancelled, unsigned hints of one kind cannot starve another, and a listing gone
//! wrong cannot fill the store in one sweep.

mod common;

use std::{sync::Arc, time::Duration};

use common::{
    Harness,
    quirky::{Quirks, QuirkyDintero},
};
use postbud::{App, AppError, Verdict};
use postbud_sandbox::Seed;

#[tokio::test]
async fn an_invoice_pruned_by_retention_is_still_retried_and_cancelled() {
    let h = Harness::start().await;
    // The archive is down when the invoice is captured: it is dead-lettered, needs attention.
    let toml = h
        .toml("")
        .replace("max_attempts = 6", "max_attempts = 1")
        .replace(
            &format!("path = \"{}/invoices\"", h.dir.path().display()),
            &format!(
                "path = \"{}/invoices\"\ncreate = false",
                h.dir.path().display()
            ),
        );
    let app = App::open(&postbud::Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    // Retention runs before anybody looks: the PDF and the invoice are deleted.
    assert!(app.prune(Duration::ZERO).await.expect("prune") >= 1);
    assert!(app.invoice(&id).await.expect("store").is_none(), "pruned");
    // The share is back; the operator retries: the invoice is read again from Dintero.
    std::fs::create_dir_all(h.invoices()).expect("share back");
    app.retry(&id, None).await.expect("retry");
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1, "never captured again");
    // Delivered from what was read again, nothing kept anew: voided long after, the
    // cancellation notice still goes out.
    assert!(
        app.invoice(&id).await.expect("store").is_none(),
        "still pruned"
    );
    let report = app.void(&id, Duration::from_secs(5)).await.expect("void");
    assert_eq!(
        report.outcome.verdict(),
        Verdict::Voided,
        "{}",
        report.outcome
    );
    assert!(h.void_notice(&id).exists(), "the cancellation notice");
}

#[tokio::test]
async fn a_flood_of_unsigned_void_hints_never_holds_back_a_new_invoice() {
    let h = Harness::start().await;
    let app = h.app("[server]\nunverified_per_second = 2\n").await;
    let delivered = h.sandbox.seed(Seed::default());
    app.deliver_now(&delivered).await.expect("deliver");
    // Unsigned `event=VOID` hints for a known invoice, each read at Dintero, until the budget
    // for such hints is spent.
    let mut refused = false;
    for _ in 0..10 {
        if let Err(AppError::Busy(_)) = app.voided_elsewhere(&delivered, false).await {
            refused = true;
            break;
        }
    }
    assert!(refused, "the hints have a budget");
    // A new invoice's unsigned callback still gets its read.
    let new = h.sandbox.seed(Seed::default());
    assert!(app.submit_unverified(&new).await.expect("not busy"));
}

#[tokio::test]
async fn a_listing_that_never_ends_cannot_fill_the_store_in_one_sweep() {
    let h = Harness::start().await;
    let settings = h.settings("");
    let account = settings
        .dintero
        .as_ref()
        .expect("dintero")
        .account_id
        .clone();
    let gateway = Arc::new(QuirkyDintero::new(
        &settings,
        Quirks {
            endless_listing_of: Some(account),
            ..Quirks::default()
        },
    ));
    let app = App::builder(&settings)
        .dintero(gateway)
        .open()
        .await
        .expect("app");
    let failed = app.reconcile().await;
    assert!(failed.is_err(), "stopped");
    let sweep = app.last_sweep().await.expect("read").expect("kept");
    assert_eq!(sweep.new, 1_000, "{sweep:?}");
    assert!(
        sweep
            .error
            .as_deref()
            .is_some_and(|e| e.contains("more than 1000 transactions new")),
        "{sweep:?}"
    );
    assert_eq!(app.totals().await.expect("totals").dispatches, 1_000);
}
