//! `postbud serve` against a Dintero as lively as the real one: the sandbox pushes its own signed
//! callbacks and account webhooks (nobody hand-makes one), retries them, tokens expire every two
//! seconds, and a capture's answer is lost now and then. Every merchant invoice is still
//! captured once and delivered once.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, http::HeaderMap, routing::post};
use common::{Serve, free_port};
use postbud_sandbox::{Fault, FaultKind, Operation, Sandbox, SandboxConfig, Seed};
use serde_json::{Value, json};

const HOOK_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Deliveries the channel made, per transaction.
type Deliveries = Arc<Mutex<HashMap<String, u32>>>;

/// The merchant's platform: counts each delivery by the transaction it names.
async fn platform() -> (String, Deliveries) {
    let deliveries: Deliveries = Arc::default();
    let counter = Arc::clone(&deliveries);
    let app = Router::new().route(
        "/invoices",
        post(move |_: HeaderMap, body: Bytes| {
            let counter = Arc::clone(&counter);
            async move {
                let body: Value = serde_json::from_slice(&body).unwrap_or_default();
                let id = body["data"]["transaction_id"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned();
                *counter.lock().expect("lock").entry(id).or_insert(0) += 1;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/invoices", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, deliveries)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_delivers_every_invoice_once_from_pushed_callbacks_and_webhooks_while_tokens_expire()
{
    let sandbox = Sandbox::start(SandboxConfig {
        token_ttl: 2,
        callback_secret: Some("cb-secret".into()),
        callback_attempts: 10,
        webhook_attempts: 10,
        push_backoff: Duration::from_millis(200),
        callback_timeout: Duration::from_secs(5),
        webhook_timeout: Duration::from_secs(5),
        ..SandboxConfig::default()
    })
    .await
    .expect("sandbox");
    let (platform_url, deliveries) = platform().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = dir.path().join("postbud.toml");
    // No sweep: only what the sandbox pushes can start a delivery.
    std::fs::write(
        &config,
        format!(
            "{dintero}callback_secret = \"cb-secret\"\nwebhook_secret = \"hook-secret\"\nreconcile_every = \"0s\"\ntimeout = \"2s\"\n\n\
             [server]\nlisten = \"127.0.0.1:{port}\"\n\n\
             [store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
             [engine]\nworkers = 2\nbackoff_base = \"100ms\"\nbackoff_max = \"500ms\"\nmax_attempts = 30\npoll_interval = \"50ms\"\n\n\
             [channels.platform]\nkind = \"webhook\"\nurl = \"{platform_url}\"\nsecret = \"{HOOK_SECRET}\"\npdf = \"inline\"\n\n\
             [[routes]]\ndeliver = [\"platform\"]\n",
            dintero = sandbox.dintero_toml(),
            dir = dir.path().display(),
        ),
    )
    .expect("config");
    let serve = Serve::start(&config, port).await;

    // The account's webhook subscription, made through the API as a merchant makes it.
    let subscribed = reqwest::Client::new()
        .post(format!(
            "{}/accounts/T12345678/hooks/subscriptions",
            sandbox.api_url()
        ))
        .bearer_auth(sandbox.access_token().await.expect("a token"))
        .json(&json!({
            "config": {"url": format!("{}/dintero/webhook", serve.base), "content_type": "application/json",
                       "secret": {"type": "HMAC-SHA1", "value": "hook-secret"}, "insecure_ssl": 0},
            "events": ["checkout_authorization", "checkout_transaction"],
        }))
        .send()
        .await
        .expect("subscribe");
    assert_eq!(subscribed.status(), 201);

    // Invoices arrive over about six seconds, three token lifetimes; two of them lose their
    // capture's answer, one is Kravia's to send.
    let callback_url = format!("{}/dintero/callback", serve.base);
    let mut ours = Vec::new();
    for n in 0..10 {
        let id = sandbox.seed(Seed {
            callback_url: Some(callback_url.clone()),
            ..Seed::default()
        });
        let lost = match n {
            3 => Some(FaultKind::StatusAfterApplying { status: 503 }),
            6 => Some(FaultKind::DropAfterApplying),
            _ => None,
        };
        if let Some(kind) = lost {
            sandbox.inject(Fault {
                operation: Operation::Capture,
                transaction: Some(id.clone()),
                kind,
                times: 1,
                skip: 0,
            });
        }
        ours.push(id);
        tokio::time::sleep(Duration::from_millis(600)).await;
    }
    let kravias = sandbox.seed(Seed {
        session_channel: Some("kravia".into()),
        callback_url: Some(callback_url.clone()),
        ..Seed::default()
    });

    let delivered = || deliveries.lock().expect("lock").clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ours.iter().any(|id| !delivered().contains_key(id)) {
        assert!(
            Instant::now() < deadline,
            "delivered {:?} of {ours:?}; sandbox {:?}",
            delivered(),
            sandbox.stats()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Late callbacks, webhooks and their retries have time to arrive: nothing more happens.
    tokio::time::sleep(Duration::from_secs(3)).await;

    let delivered = delivered();
    let stats = sandbox.stats();
    for id in &ours {
        assert_eq!(delivered.get(id), Some(&1), "{id} delivered once");
        assert_eq!(sandbox.captures(id), 1, "{id} captured once");
    }
    assert_eq!(delivered.len(), ours.len(), "{delivered:?}");
    assert_eq!(sandbox.captures(&kravias), 0, "Kravia sends its own");
    assert!(
        stats.tokens_issued >= 3,
        "tokens expired during the run: {} issued",
        stats.tokens_issued
    );
    // Every invoice was announced by its callback and by both webhooks, each finally answered 200.
    for id in ours.iter().chain([&kravias]) {
        assert!(
            stats.callbacks.contains(&(id.clone(), 200)),
            "{id}: {:?}",
            stats.callbacks
        );
        for event in ["checkout_authorization", "checkout_transaction"] {
            assert!(
                stats
                    .webhooks
                    .iter()
                    .any(|(e, t, s)| e == event && t == id && *s == 200),
                "{id} {event}: {:?}",
                stats.webhooks
            );
        }
    }
    let refused: Vec<String> = stats
        .callbacks
        .iter()
        .filter(|(_, s)| (400..500).contains(s))
        .map(|(t, s)| format!("callback {t}: {s}"))
        .chain(
            stats
                .webhooks
                .iter()
                .filter(|(_, _, s)| (400..500).contains(s))
                .map(|(e, t, s)| format!("{e} {t}: {s}")),
        )
        .collect();
    assert!(refused.is_empty(), "refused with a 4xx: {refused:?}");
    drop(serve);
}
