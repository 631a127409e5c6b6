//! Dintero's account webhooks, and voids made outside Postbud (Dintero's Backoffice): a voided
//! invoice whose delivery still waits is never sent; one already delivered gets its notices.

mod common;

use std::{sync::Arc, time::Duration};

use common::Harness;
use postbud::Verdict;
use postbud_sandbox::Seed;

async fn serve(app: Arc<postbud::App>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, postbud::server::router(app)).await });
    format!("http://{addr}")
}

/// `event-signature` computed by Node.js itself (HMAC-SHA1, hex), as Dintero's sample does.
fn node_hmac_sha1(secret: &str, body: &str) -> Option<String> {
    const SCRIPT: &str = "const c=require('crypto');const [s,b]=process.argv.slice(1);process.stdout.write(c.createHmac('sha1',s).update(b).digest('hex'))";
    postbud_sandbox::node(SCRIPT, &[secret, body])
}

fn with_webhook_secret(h: &Harness, extra: &str) -> postbud::Settings {
    h.settings_with_dintero("webhook_secret = \"wh-secret\"", extra)
}

#[tokio::test]
async fn account_webhooks_are_verified_and_start_a_dispatch() {
    let h = Harness::start().await;
    let app = Arc::new(
        postbud::App::open(&with_webhook_secret(&h, ""))
            .await
            .expect("app"),
    );
    let base = serve(Arc::clone(&app)).await;
    let id = h.sandbox.seed(Seed::default());
    let body = serde_json::json!({"account_id": "T12345678", "event": "checkout_authorization",
        "event_delivery": "d-1", "authorization": {"transaction_id": id, "session_id": "s", "merchant_reference": "o-1"}})
    .to_string();
    let Some(signature) = node_hmac_sha1("wh-secret", &body) else {
        return;
    };
    let client = reqwest::Client::new();
    let post = |body: String, signature: Option<String>| {
        let mut request = client
            .post(format!("{base}/dintero/webhook"))
            .header("content-type", "application/json")
            .header("event", "checkout_authorization")
            .body(body);
        if let Some(signature) = signature {
            request = request.header("event-signature", signature);
        }
        request.send()
    };
    let bad = post(body.clone(), Some("00".repeat(20)))
        .await
        .expect("post");
    assert_eq!(bad.status(), 401);
    let unsigned = post(body.clone(), None).await.expect("post");
    assert_eq!(unsigned.status(), 401);
    assert!(
        app.dispatch(&id).await.expect("read").is_none(),
        "nothing stored"
    );
    let good = post(body.clone(), Some(signature)).await.expect("post");
    assert_eq!(
        good.status(),
        200,
        "{}",
        good.text().await.unwrap_or_default()
    );
    assert!(app.dispatch(&id).await.expect("read").is_some());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
}

/// Dintero deletes a webhook subscription after consecutive answers outside 2xx, and with it the
/// void and authorization notices Postbud relies on: every correctly signed delivery is answered
/// 2xx, also one Postbud does not act on; only a bad signature is refused.
#[tokio::test]
async fn a_signed_webhook_postbud_does_not_act_on_is_answered_200_and_a_forged_one_401() {
    let h = Harness::start().await;
    let app = Arc::new(
        postbud::App::open(&with_webhook_secret(&h, ""))
            .await
            .expect("app"),
    );
    let base = serve(Arc::clone(&app)).await;
    let client = reqwest::Client::new();
    let post = |body: &str, signature: &str| {
        client
            .post(format!("{base}/dintero/webhook"))
            .header("content-type", "application/json")
            .header("event-signature", signature)
            .body(body.to_owned())
            .send()
    };
    let not_acted_on = [
        // An event of the account Postbud has nothing to do with.
        serde_json::json!({"account_id": "T12345678", "event": "payout_created", "event_delivery": "d-1"})
            .to_string(),
        // A transaction update whose fields mask leaves out the id.
        serde_json::json!({"account_id": "T12345678", "event": "checkout_transaction", "event_delivery": "d-2",
            "transaction": {"status": "AUTHORIZED"}})
        .to_string(),
        // An authorization of a transaction that is not this account's.
        serde_json::json!({"account_id": "P87654321", "event": "checkout_authorization", "event_delivery": "d-3",
            "authorization": {"transaction_id": "P87654321.elsewhere"}})
        .to_string(),
        "not JSON at all".to_owned(),
    ];
    for body in &not_acted_on {
        let Some(signature) = node_hmac_sha1("wh-secret", body) else {
            return;
        };
        let answer = post(body, &signature).await.expect("post");
        let status = answer.status();
        let text = answer.text().await.expect("text");
        assert_eq!(status, 200, "{body}: {text}");
        assert!(text.contains("not acted on"), "{body}: {text}");
        let forged = post(body, &"00".repeat(20)).await.expect("post");
        assert_eq!(forged.status(), 401, "{body}");
    }
    assert!(
        app.store()
            .dispatches(&postbud::store::DispatchQuery::latest(10))
            .await
            .expect("dispatches")
            .is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn an_invoice_voided_at_dintero_while_its_delivery_waits_is_not_sent() {
    let h = Harness::start().await;
    let (app, id) = h.captured_and_waiting("1s").await;
    // Voided in Dintero's Backoffice; no callback, no webhook reaches Postbud.
    h.sandbox.set_status(&id, "AUTHORIZATION_VOIDED");
    let outcome = app
        .deliver_waiting(&id, Duration::from_secs(5))
        .await
        .expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Voided, "{outcome}");
    assert!(
        !h.invoices().exists()
            || std::fs::read_dir(h.invoices())
                .expect("dir")
                .next()
                .is_none(),
        "nothing delivered"
    );
    let history = app.history(&id).await.expect("history");
    assert!(
        history
            .iter()
            .any(|e| e.event == "not sent" && e.detail.contains("voided at Dintero")),
        "{history:?}"
    );
}

#[tokio::test]
async fn an_invoice_voided_at_dintero_after_delivery_gets_its_notices_by_callback_or_webhook() {
    let h = Harness::start().await;
    let app = Arc::new(
        postbud::App::open(&with_webhook_secret(&h, ""))
            .await
            .expect("app"),
    );
    let base = serve(Arc::clone(&app)).await;
    let notice = |id: &str| h.void_notice(id);
    // By the session callback with event=VOID (report_event=VOID).
    let by_callback = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&by_callback)
            .await
            .expect("deliver")
            .verdict(),
        Verdict::Delivered
    );
    h.sandbox.set_status(&by_callback, "AUTHORIZATION_VOIDED");
    let status = reqwest::Client::new()
        .get(format!("{base}/dintero/callback"))
        .query(&[("transaction_id", by_callback.as_str()), ("event", "VOID")])
        .send()
        .await
        .expect("callback")
        .status();
    assert_eq!(status, 200);
    let outcome = app.deliver_now(&by_callback).await.expect("run");
    assert_eq!(outcome.verdict(), Verdict::Voided, "{outcome}");
    assert!(notice(&by_callback).exists());
    // By a checkout_transaction webhook.
    let by_webhook = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&by_webhook)
            .await
            .expect("deliver")
            .verdict(),
        Verdict::Delivered
    );
    h.sandbox.set_status(&by_webhook, "AUTHORIZATION_VOIDED");
    let body = serde_json::json!({"account_id": "T12345678", "event": "checkout_transaction", "event_delivery": "d-2",
        "transaction": {"id": by_webhook, "status": "AUTHORIZATION_VOIDED", "merchant_reference": "o"}})
    .to_string();
    let Some(signature) = node_hmac_sha1("wh-secret", &body) else {
        return;
    };
    let status = reqwest::Client::new()
        .post(format!("{base}/dintero/webhook"))
        .header("event-signature", signature)
        .body(body)
        .send()
        .await
        .expect("webhook")
        .status();
    assert_eq!(status, 200);
    let outcome = app.deliver_now(&by_webhook).await.expect("run");
    assert_eq!(outcome.verdict(), Verdict::Voided, "{outcome}");
    assert!(notice(&by_webhook).exists());
    // A VOID hint for a transaction Dintero does not show voided changes nothing.
    let standing = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&standing).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let _ = reqwest::Client::new()
        .get(format!("{base}/dintero/callback"))
        .query(&[("transaction_id", standing.as_str()), ("event", "VOID")])
        .send()
        .await
        .expect("callback");
    assert_eq!(
        app.deliver_now(&standing).await.expect("run").verdict(),
        Verdict::Delivered
    );
    assert!(!notice(&standing).exists());
}

#[tokio::test]
async fn the_sweep_stops_deliveries_of_invoices_voided_at_dintero() {
    let h = Harness::start().await;
    let (app, id) = h.captured_and_waiting("1h").await;
    h.sandbox.set_status(&id, "AUTHORIZATION_VOIDED");
    let sweep = app.reconcile().await.expect("sweep");
    assert_eq!(sweep.voided, 1, "{sweep:?}");
    let dispatch = app.dispatch(&id).await.expect("read").expect("dispatch");
    assert_eq!(dispatch.stage, postbud::Stage::Voided);
}

#[tokio::test]
async fn the_sweep_leaves_alone_invoices_captured_by_another_deployment() {
    let h = Harness::start().await;
    // Another deployment with the same credentials (or an old backup of this store) delivered
    // this invoice; this store never saw it.
    let elsewhere = h.app("").await;
    let delivered = h.sandbox.seed(Seed::default());
    assert_eq!(
        elsewhere
            .deliver_now(&delivered)
            .await
            .expect("deliver")
            .verdict(),
        Verdict::Delivered
    );
    drop(elsewhere);
    let other_store = h.dir.path().join("other.db");
    let toml = h.toml("").replace(
        &format!("sqlite://{}/postbud.db", h.dir.path().display()),
        &format!("sqlite://{}", other_store.display()),
    );
    let app = postbud::App::open(&postbud::Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    let missed = h.sandbox.seed(Seed::default());
    let sweep = app.reconcile().await.expect("sweep");
    assert_eq!(
        (
            sweep.found,
            sweep.new,
            sweep.submitted,
            sweep.captured_elsewhere
        ),
        (2, 1, 1, 1),
        "{sweep:?}"
    );
    assert!(app.dispatch(&delivered).await.expect("read").is_none());
    assert_eq!(
        app.deliver_now(&missed).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    assert_eq!(h.sandbox.captures(&delivered), 1);
    // An invoice recorded as created but never queued (a crash in between) is queued by the sweep.
    let stranded = h.sandbox.seed(Seed {
        no_session_channel: true,
        ..Seed::default()
    });
    app.store()
        .mark_origin(
            &stranded,
            postbud::store::ORIGIN_CREATED,
            "created, then the process died",
        )
        .await
        .expect("mark");
    let sweep = app.reconcile().await.expect("sweep");
    assert_eq!(sweep.submitted, 1, "{sweep:?}");
    assert_eq!(
        app.deliver_now(&stranded).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
}
