//! The merchant's own operator binary, `postbud-with-teams`, a few lines over `postbud-cli`:
//! `check`, `deliver`, `status`, `void` and `serve` run with its `teams` kind as the stock
//! binary runs with the first-party ones.

use std::{
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use postbud_channel::{
    http, serde_json,
    testing::{self, tokio},
};
use postbud_sandbox::{Sandbox, Seed};

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

/// The cards the Teams webhook took that mention `text`.
fn cards_for(teams: &testing::Receiver, text: &str) -> usize {
    teams
        .requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains(text))
        .count()
}

#[tokio::test(
    crate = "postbud_channel::testing::tokio",
    flavor = "multi_thread",
    worker_threads = 2
)]
async fn the_merchants_binary_runs_every_operator_command_with_its_own_kind() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    // A Teams incoming webhook that keeps every card.
    let teams = testing::Receiver::start(vec![]).await;
    let webhook = teams.url();
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
    assert_eq!(cards_for(&teams, &number), 1, "one card for {number}");

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
    assert_eq!(
        cards_for(&teams, "cancelled"),
        1,
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
    let client = http::client(Duration::from_secs(2))
        .build()
        .expect("a client");
    while client
        .get(format!("{base}/healthz"))
        .send()
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
    while cards_for(&teams, &number) == 0 {
        assert!(
            Instant::now() < deadline,
            "the served callback never reached Teams"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(sandbox.captures(&second), 1);
    assert_eq!(cards_for(&teams, &number), 1);
}
