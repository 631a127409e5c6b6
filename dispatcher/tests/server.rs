//! `postbud serve`'s HTTP face: signed Dintero callbacks, signed invoice links, health, metrics.

mod common;

use std::sync::Arc;

use common::{Harness, sha256};
use postbud::Verdict;
use postbud_sandbox::{SandboxConfig, Seed};

async fn serve(app: Arc<postbud::App>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, postbud::server::router(app)).await });
    format!("http://{addr}")
}

/// A sandbox that signs its callbacks, and a served app that verifies them.
async fn signed() -> (Harness, Arc<postbud::App>, String) {
    let h = Harness::start_with(SandboxConfig {
        callback_secret: Some("cb-secret".into()),
        ..SandboxConfig::default()
    })
    .await;
    let settings = h.settings_with_dintero("callback_secret = \"cb-secret\"", "");
    let app = Arc::new(postbud::App::open(&settings).await.expect("app"));
    let base = serve(Arc::clone(&app)).await;
    (h, app, base)
}

#[tokio::test]
async fn signed_callbacks_are_accepted_and_unsigned_ones_refused() {
    let (h, app, base) = signed().await;
    let id = h.sandbox.seed(Seed::default());

    let status = h
        .sandbox
        .send_callback(&id, &format!("{base}/dintero/callback"))
        .await
        .expect("callback");
    assert_eq!(status, 200);
    let dispatch = app
        .dispatch(&id)
        .await
        .expect("store")
        .expect("queued by the callback");
    assert_eq!(dispatch.stage, postbud::Stage::New);

    let unsigned = reqwest::get(format!("{base}/dintero/callback?transaction_id={id}"))
        .await
        .expect("request");
    assert_eq!(unsigned.status(), 401);
    assert!(
        unsigned
            .text()
            .await
            .expect("body")
            .contains("Dintero-Signature header is missing")
    );

    let wrong = reqwest::Client::new()
        .get(format!(
            "{base}/dintero/callback?transaction_id=T12345678.other"
        ))
        .header(
            "Dintero-Signature",
            format!("t={},v0-hmac-sha256=00", jiff_now()),
        )
        .send()
        .await
        .expect("request");
    assert_eq!(wrong.status(), 401);
    assert!(
        app.dispatch("T12345678.other")
            .await
            .expect("store")
            .is_none()
    );
}

/// Signs a callback URL the way Dintero's reference code does, in Node.js itself:
/// `URLSearchParams.sort()` (stable, by name only) and `crypto.createHmac`. `None` when Node is
/// not installed (a failure under `POSTBUD_REQUIRE_SERVICES=1`).
fn node_signature(secret: &str, account: &str, url: &str, t: i64) -> Option<String> {
    const SCRIPT: &str = r#"
const crypto = require('crypto');
const [secret, account, method, raw, t] = process.argv.slice(1);
const url = new URL(raw);
url.searchParams.sort();
const signed = [t, account, method, url.hostname, url.pathname, url.searchParams.toString()].join('\n');
process.stdout.write(`t=${t},v0-hmac-sha256=${crypto.createHmac('sha256', secret).update(signed).digest('hex')}`);
"#;
    postbud_sandbox::node(SCRIPT, &[secret, account, "GET", url, &t.to_string()])
}

#[tokio::test]
async fn a_callback_with_repeated_parameters_signed_as_dintero_signs_is_accepted() {
    let (h, app, base) = signed().await;
    let id = h.sandbox.seed(Seed::default());
    let url = format!(
        "{base}/dintero/callback?report_event=VOID&report_event=CAPTURE&transaction_id={id}&event=CAPTURE&time=2026-11-26T10%3A00%3A00Z"
    );
    let Some(signature) = node_signature("cb-secret", "T12345678", &url, jiff_now()) else {
        return;
    };
    let response = reqwest::Client::new()
        .get(&url)
        .header("Dintero-Signature", &signature)
        .send()
        .await
        .expect("request");
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    assert!(app.dispatch(&id).await.expect("store").is_some());
    // The same parameters in the other order are another signed string: refused.
    let swapped = url.replace(
        "report_event=VOID&report_event=CAPTURE",
        "report_event=CAPTURE&report_event=VOID",
    );
    let response = reqwest::Client::new()
        .get(&swapped)
        .header("Dintero-Signature", &signature)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn a_transaction_id_only_in_the_unsigned_body_is_checked_at_dintero_first() {
    let h = Harness::start().await;
    let app = Arc::new(h.app("").await);
    let base = serve(Arc::clone(&app)).await;
    let id = h.sandbox.seed(Seed::default());
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value| {
        client
            .post(format!("{base}/dintero/callback?method=POST"))
            .json(&body)
            .send()
    };
    let known = post(serde_json::json!({"id": id})).await.expect("request");
    assert_eq!(known.status(), 200);
    assert!(app.dispatch(&id).await.expect("store").is_some());
    let unknown = post(serde_json::json!({"id": "T12345678.NotAtDintero"}))
        .await
        .expect("request");
    assert_eq!(
        unknown.status(),
        503,
        "Dintero retries; a 404 would be final"
    );
    let odd = post(serde_json::json!({"transaction_id": format!("../{id}")}))
        .await
        .expect("request");
    assert_eq!(odd.status(), 400);
    assert_eq!(
        app.store()
            .dispatches(&postbud::store::DispatchQuery::latest(10))
            .await
            .expect("dispatches")
            .len(),
        1
    );
}

fn jiff_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

#[tokio::test]
async fn signed_links_serve_the_stored_pdf_and_refuse_tampering() {
    let h = Harness::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let toml = h.toml("").replacen(
        "[store]",
        &format!("[server]\npublic_url = \"{base}\"\n\n[store]"),
        1,
    );
    let app = Arc::new(
        postbud::App::open(&postbud::Settings::from_toml(&toml).expect("settings"))
            .await
            .expect("app"),
    );
    tokio::spawn({
        let app = Arc::clone(&app);
        async move { axum::serve(listener, postbud::server::router(app)).await }
    });
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let invoice = app.invoice(&id).await.expect("store").expect("invoice");
    let link = invoice
        .link
        .expect("a signed link, since server.public_url is set");
    assert!(link.starts_with(&base), "{link}");
    let body = reqwest::get(&link)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(sha256(&body), sha256(&h.sandbox.pdf(&id).expect("pdf")));
    let tampered = link.replace(&id, "T12345678.someoneelse");
    assert_eq!(reqwest::get(&tampered).await.expect("get").status(), 403);
    // An invoice number with CR/LF and a right-to-left override: the link still answers, with a
    // file name that is only safe characters.
    let odd = h.sandbox.seed(Seed {
        invoice_number: Some("INV\r\nSet-Cookie: a=b\u{202E}fdp.exe".into()),
        ..Seed::default()
    });
    assert_eq!(
        app.deliver_now(&odd).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let link = app
        .invoice(&odd)
        .await
        .expect("store")
        .expect("invoice")
        .link
        .expect("link");
    let response = reqwest::get(&link).await.expect("get");
    assert_eq!(response.status(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        disposition.starts_with("inline; filename=\"INV__Set-Cookie__a_b_fdp.exe~"),
        "{disposition}"
    );
    assert!(response.headers().get("set-cookie").is_none());

    assert_eq!(
        reqwest::get(format!("{base}/healthz"))
            .await
            .expect("get")
            .status(),
        200
    );
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    // Two invoices delivered; the links served were counted; the attempts per channel too.
    assert!(
        metrics.contains("postbud_invoices{verdict=\"delivered\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postbud_invoices_needing_attention 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("postbud_links_served_total 2"),
        "{metrics}"
    );
    assert!(metrics.ends_with("# EOF\n"), "OpenMetrics text: {metrics}");
}

#[tokio::test]
async fn a_merchant_initiated_invoice_comes_back_through_the_callback() {
    let h = Harness::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Arc::new(h.app("").await);
    tokio::spawn({
        let app = Arc::clone(&app);
        async move { axum::serve(listener, postbud::server::router(app)).await }
    });
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let workers = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.run_workers(stopped).await }
    });
    let order = serde_json::json!({
        "order": {"amount": 10000, "currency": "NOK", "merchant_reference": "mit-callback-1",
                  "billing_address": {"first_name": "Ola", "last_name": "Nordmann", "country": "NO"}},
        "url": {"callback_url": format!("{base}/dintero/callback")}
    });
    // Not through App::create_invoice (which records the invoice as the merchant's and submits
    // it): the callback alone must do it. Dintero does not echo a payment-level
    // invoice_channel back, so what makes it the merchant's here is the account's default.
    h.sandbox
        .set_checkout_configuration(serde_json::json!({"payment_options": [
            {"type": "kravia.invoice_b2c", "details": {"invoice_channel": "merchant"}}
        ]}));
    let request = postbud::app::pay_request(&order).expect("request");
    let gateway = postbud::dintero::DinteroClient::new(h.settings("").dintero.expect("dintero"))
        .expect("gateway");
    let tx = postbud::dintero::DinteroApi::create_invoice(&gateway, &request)
        .await
        .expect("created");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let done = app.jobs(&tx.id).await.expect("jobs").iter().any(|j| {
            j.kind == postbud::store::JobKind::Deliver && j.state == postbud::store::JobState::Done
        });
        if done {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the callback did not lead to a delivery: {:?}",
            h.sandbox.stats().callbacks
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(h.sandbox.stats().callbacks, vec![(tx.id.clone(), 200)]);
    assert_eq!(h.sandbox.captures(&tx.id), 1);
    stop.send(true).expect("stop");
    workers.await.expect("workers");
}

/// Sends a GET callback to `url`, signed by Node.js as Dintero signs `signed_for`; the status.
/// `None` when Node is not installed.
async fn callback_signed_for(url: &str, signed_for: &str) -> Option<u16> {
    let signature = node_signature("cb-secret", "T12345678", signed_for, jiff_now())?;
    let response = reqwest::Client::new()
        .get(url)
        .header("Dintero-Signature", signature)
        .send()
        .await
        .expect("request");
    Some(response.status().as_u16())
}

#[tokio::test]
async fn a_router_nested_in_the_merchant_s_app_verifies_the_path_dintero_called() {
    let h = Harness::start().await;
    let settings = h.settings_with_dintero("callback_secret = \"cb-secret\"", "");
    let app = Arc::new(postbud::App::open(&settings).await.expect("app"));
    // The merchant's own axum app, with Postbud's routes under /hooks.
    let merchant = axum::Router::new()
        .route("/", axum::routing::get(|| async { "the shop" }))
        .nest("/hooks", postbud::server::router(Arc::clone(&app)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, merchant).await });

    let id = h.sandbox.seed(Seed::default());
    let url = format!("{base}/hooks/dintero/callback?transaction_id={id}");
    let Some(status) = callback_signed_for(&url, &url).await else {
        return;
    };
    assert_eq!(status, 200, "signed for the path Dintero called");
    assert!(app.dispatch(&id).await.expect("store").is_some());

    // Signed for the path without the merchant's prefix: not the URL called, so forged.
    let other = h.sandbox.seed(Seed::default());
    let url = format!("{base}/hooks/dintero/callback?transaction_id={other}");
    let elsewhere = format!("{base}/dintero/callback?transaction_id={other}");
    assert_eq!(callback_signed_for(&url, &elsewhere).await, Some(401));
    assert!(app.dispatch(&other).await.expect("store").is_none());
}

#[tokio::test]
async fn a_public_url_with_a_path_is_in_links_and_signed_callbacks_behind_any_proxy() {
    let h = Harness::start().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let public = format!("{base}/postbud");
    let settings = h.settings_with_dintero(
        "callback_secret = \"cb-secret\"",
        &format!("[server]\npublic_url = \"{public}\"\n"),
    );
    let app = Arc::new(postbud::App::open(&settings).await.expect("app"));
    tokio::spawn({
        let app = Arc::clone(&app);
        async move { axum::serve(listener, postbud::server::router(app)).await }
    });

    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let link = app
        .invoice(&id)
        .await
        .expect("store")
        .expect("invoice")
        .link
        .expect("link");
    assert!(
        link.starts_with(&format!("{public}/invoices/{id}.pdf?")),
        "{link}"
    );
    // A proxy that passes the path on, and one that strips it: both reach the PDF.
    let pdf = sha256(&h.sandbox.pdf(&id).expect("pdf"));
    for url in [link.clone(), link.replacen("/postbud", "", 1)] {
        let response = reqwest::get(&url).await.expect("get");
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(sha256(&response.bytes().await.expect("bytes")), pdf);
    }

    // Dintero signs the path it calls, /postbud/...; verified whether or not a proxy strips it.
    let other = h.sandbox.seed(Seed::default());
    let called = format!("{public}/dintero/callback?transaction_id={other}");
    let Some(status) = callback_signed_for(&called, &called).await else {
        return;
    };
    assert_eq!(status, 200, "the path passed on");
    let stripped = format!("{base}/dintero/callback?transaction_id={other}");
    assert_eq!(
        callback_signed_for(&stripped, &called).await,
        Some(200),
        "the path stripped by a proxy"
    );
    assert!(app.dispatch(&other).await.expect("store").is_some());
    // Signed without the public path: not what Dintero was told to call.
    let third = h.sandbox.seed(Seed::default());
    let called = format!("{public}/dintero/callback?transaction_id={third}");
    let unprefixed = format!("{base}/dintero/callback?transaction_id={third}");
    assert_eq!(callback_signed_for(&called, &unprefixed).await, Some(401));
    assert!(app.dispatch(&third).await.expect("store").is_none());
}
