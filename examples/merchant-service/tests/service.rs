//! The shop's service end to end: an invoice created through its own endpoint comes back through
//! Dintero's callback, is captured and delivered by the linked library, and shows as delivered;
//! the shutdown signal drains it.

use std::{sync::Arc, time::Duration};

use postbud_sandbox::Sandbox;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_invoiced_captured_delivered_and_reported() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let toml = format!(
        "{dintero}\n\
         [server]\npublic_url = \"{base}\"\n[store]\nurl = \"sqlite://{dir}/shop.db\"\n[engine]\npoll_interval = \"20ms\"\n\n\
         [channels.archive]\nkind = \"folder\"\npath = \"{dir}/invoices\"\n\n[[routes]]\ndeliver = [\"archive\"]\n",
        dintero = sandbox.dintero_toml(),
        dir = dir.path().display()
    );
    let settings = postbud::Settings::from_toml(&toml).expect("settings");
    let app = Arc::new(postbud::App::open(&settings).await.expect("app"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn({
        let app = Arc::clone(&app);
        async move {
            let routes = merchant_service::router(Arc::clone(&app));
            app.serve(listener, routes, async {
                let _ = stopped.await;
            })
            .await;
        }
    });

    let http = reqwest::Client::new();
    let order = serde_json::json!({
        "order": {"amount": 12500, "currency": "NOK", "merchant_reference": "order-77",
                  "billing_address": {"first_name": "Ola", "last_name": "Nordmann", "email": "ola@example.no", "country": "NO"}},
        "url": {"callback_url": format!("{base}/dintero/callback")}
    });
    let created: serde_json::Value = http
        .post(format!("{base}/orders/invoice"))
        .json(&order)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let id = created["transaction_id"].as_str().expect("id").to_owned();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let status = loop {
        let status: serde_json::Value = http
            .get(format!("{base}/orders/{id}/invoice"))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if status["deliveries"][0]["state"] == "done" {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not delivered: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status["captured"], true);
    assert_eq!(sandbox.captures(&id), 1);
    assert!(
        sandbox
            .stats()
            .callbacks
            .iter()
            .any(|(tx, code)| *tx == id && *code == 200),
        "the callback drove it"
    );
    stop.send(()).expect("stop");
    tokio::time::timeout(Duration::from_secs(15), service)
        .await
        .expect("drained within the grace period")
        .expect("the service ended cleanly");
    assert!(
        reqwest::get(format!("{base}/healthz")).await.is_err(),
        "no longer listening"
    );
}
