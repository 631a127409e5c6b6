//! The Dintero client as the sandbox sees it: tokens, headers, the capture body.

mod common;

use common::Harness;
use postbud::Verdict;
use postbud_sandbox::Seed;

#[tokio::test]
async fn the_token_is_cached_and_refreshed_once_on_401() {
    let h = Harness::start().await;
    let app = h.app("").await;
    for _ in 0..3 {
        let id = h.sandbox.seed(Seed::default());
        assert_eq!(
            app.deliver_now(&id).await.expect("deliver").verdict(),
            Verdict::Delivered
        );
    }
    assert_eq!(
        h.sandbox.stats().tokens_issued,
        1,
        "one token for all calls"
    );
    h.sandbox.revoke_tokens();
    let id = h.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert_eq!(
        h.sandbox.stats().tokens_issued,
        2,
        "refreshed once after the 401"
    );
    let history = app.history(&id).await.expect("history");
    assert!(
        !history.iter().any(|e| e.event == "retry"),
        "the refresh needed no retry: {history:?}"
    );
}

#[tokio::test]
async fn a_shipped_order_is_captured_with_its_shipping_line_and_the_merchant_s_reference() {
    let h = Harness::start().await;
    let app = h.app("").await;
    let items = vec![
        serde_json::json!({"line_id": "1", "description": "Chair", "quantity": 2, "amount": 30000, "vat": 25, "vat_amount": 6000}),
        serde_json::json!({"line_id": "2", "description": "Book", "quantity": 1, "amount": 15000, "vat": 12, "vat_amount": 1607}),
    ];
    // Dintero keeps the shipping option beside the items; the amount covers both, and a
    // capture whose lines do not add up to it is refused.
    let id = h.sandbox.seed(Seed {
        items: Some(items),
        shipping_option: Some(
            serde_json::json!({"id": "bring-home", "line_id": "shipping",
            "amount": 9900, "vat": 25, "vat_amount": 1980, "description": "Bring home delivery",
            "operator": "Bring", "title": "Home delivery"}),
        ),
        merchant_reference: Some("order-1042".into()),
        ..Seed::default()
    });
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let tx = h.sandbox.transaction(&id).expect("tx");
    let event = tx["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["event"] == "INITIATE_CAPTURE")
        .expect("event");
    assert_eq!(event["amount"], 54900);
    // The settlement report keeps the merchant's own reference, not one of Postbud's.
    assert_eq!(event["event_reference"], "order-1042");
    assert_eq!(event["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(event["items"][1]["line_id"], "2");
    assert_eq!(event["items"][2]["line_id"], "shipping");
    assert_eq!(event["items"][2]["amount"], 9900);
    let headers = h.sandbox.stats().system_headers;
    assert_eq!(
        headers.get("dintero-system-name").map(String::as_str),
        Some("postbud")
    );
    assert_eq!(
        headers
            .get("dintero-system-plugin-name")
            .map(String::as_str),
        Some("postbud")
    );
    assert_eq!(
        headers
            .get("dintero-system-plugin-version")
            .map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    // The invoice the channels get carries the amounts and lines of the transaction, the
    // shipping among them.
    let invoice = app.invoice(&id).await.expect("store").expect("invoice");
    assert_eq!(
        (invoice.amount, invoice.vat_amount, invoice.lines.len()),
        (54900, 9587, 3)
    );
    assert_eq!(
        invoice.lines.iter().map(|l| l.amount).sum::<i64>(),
        invoice.amount
    );
    assert_eq!(invoice.lines[2].description, "Bring home delivery");
    assert_eq!(invoice.locale, "nb");
    assert!(invoice.due_date.is_some());
}

#[tokio::test]
async fn an_absurd_token_lifetime_is_bounded_not_a_panic() {
    let h = Harness::start_with(postbud_sandbox::SandboxConfig {
        token_ttl: u64::MAX,
        ..Default::default()
    })
    .await;
    let app = h.app("").await;
    for _ in 0..2 {
        let id = h.sandbox.seed(Seed::default());
        let outcome = app.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    }
    assert_eq!(h.sandbox.stats().tokens_issued, 1);
}
