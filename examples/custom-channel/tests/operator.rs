//! The merchant's own operator binary, `postbud-with-teams`, a few lines over `postbud-cli`:
//! `check`, `deliver`, `status`, `void` and `serve` run with its `teams` kind as the stock
//! binary runs with the first-party ones.

use std::{
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Json, Router, http::StatusCode, routing::post};
use postbud_sandbox::{Sandbox, Seed};

/// A Teams incoming webhook that keeps every card.
async fn teams() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let cards = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new().route(
        "/webhook",
        post({
            let cards = Arc::clone(&cards);
            move |Json(card): Json<serde_json::Value>| {
                let cards = Arc::clone(&cards);
                async move {
                    cards.lock().expect("lock").push(card);
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/webhook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, cards)
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postbud-with-teams"));
    command
        .env_remove("POSTBUD_CONFIG")
        .env_remove("POSTBUD_LOG");
    command
}

async fn run(config: &std::path::Path, args: &[&str]) -> Output {
    let mut command = binary();
    command.arg("--config").arg(config).args(args);
    tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("joined")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn cards_for(cards: &Mutex<Vec<serde_json::Value>>, number: &str) -> usize {
    cards
        .lock()
        .expect("lock")
        .iter()
        .filter(|c| c.to_string().contains(number))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_merchants_binary_runs_every_operator_command_with_its_own_kind() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let (webhook, cards) = teams().await;
    let dir = tempfile::tempdir().expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let config = dir.path().join("postbud.toml");
    std::fs::write(
        &config,
        format!(
            "{dintero}\n[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
             [channels.finance]\nkind = \"teams\"\nwebhook_url = \"{webhook}\"\n\n[[routes]]\ndeliver = [\"finance\"]\n",
            dintero = sandbox.dintero_toml(),
            dir = dir.path().display()
        ),
    )
    .expect("config");

    // The stock binary does not know the kind; this one does, and `check` probes it.
    let check = run(&config, &["check"]).await;
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    assert!(text(&check).contains("finance"), "{}", text(&check));

    // `deliver`: captured once, the card posted, the verdict delivered.
    let first = sandbox.seed(Seed::default());
    let deliver = run(&config, &["deliver", &first]).await;
    assert_eq!(deliver.status.code(), Some(0), "{}", text(&deliver));
    assert_eq!(sandbox.captures(&first), 1);
    let number = sandbox.transaction(&first).expect("known")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("invoice number")
        .to_owned();
    assert_eq!(cards_for(&cards, &number), 1, "one card for {number}");

    // `status`: the invoice, its verdict and its channel.
    let status = run(&config, &["status", &first, "--json"]).await;
    assert_eq!(status.status.code(), Some(0), "{}", text(&status));
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(report["assessment"]["verdict"], "delivered", "{report}");
    assert!(
        report["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .any(|j| j["channel"] == "finance" && j["state"] == "done"),
        "{report}"
    );

    // `void`: confirmed at Dintero, and the channel that delivered is told.
    let void = run(&config, &["void", &first]).await;
    assert_eq!(void.status.code(), Some(0), "{}", text(&void));
    assert_eq!(
        sandbox.transaction(&first).expect("known")["status"],
        "AUTHORIZATION_VOIDED"
    );
    assert!(
        cards
            .lock()
            .expect("lock")
            .iter()
            .any(|c| c.to_string().contains("cancelled")),
        "a cancellation card was posted"
    );

    // `serve`: a callback from Dintero delivers another invoice through the same kind.
    let mut serve = binary()
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/healthz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "serve never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = sandbox.seed(Seed {
        callback_url: Some(format!("{base}/dintero/callback")),
        ..Seed::default()
    });
    let number = sandbox.transaction(&second).expect("known")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("invoice number")
        .to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    while cards_for(&cards, &number) == 0 {
        assert!(
            Instant::now() < deadline,
            "the served callback never reached Teams"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(sandbox.captures(&second), 1);
    assert_eq!(cards_for(&cards, &number), 1);
}
