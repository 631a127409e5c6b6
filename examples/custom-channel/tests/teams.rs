//! The example channel through the library's public face: configuration, delivery, error
//! classification, and the binary that links it.

use std::sync::{Arc, Mutex};

use axum::{Json, Router, http::StatusCode, routing::post};
use postbud::{App, JobState, Settings, Verdict};
use postbud_sandbox::{Sandbox, Seed};

/// A chat webhook that answers with the given statuses in turn (then 200) and keeps the bodies.
async fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new(statuses));
    let app = Router::new().route(
        "/webhook",
        post({
            let bodies = Arc::clone(&bodies);
            move |Json(body): Json<serde_json::Value>| {
                let (bodies, statuses) = (Arc::clone(&bodies), Arc::clone(&statuses));
                async move {
                    bodies.lock().expect("lock").push(body);
                    let mut statuses = statuses.lock().expect("lock");
                    let status = if statuses.is_empty() {
                        200
                    } else {
                        statuses.remove(0)
                    };
                    StatusCode::from_u16(status).expect("status")
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/webhook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, bodies)
}

async fn app(sandbox: &Sandbox, dir: &std::path::Path, url: &str) -> App {
    let toml = format!(
        "{dintero}\n\
         [server]\npublic_url = \"https://invoices.merchant.example\"\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n[engine]\nbackoff_base = \"20ms\"\nbackoff_max = \"50ms\"\n\n\
         [channels.archive]\nkind = \"folder\"\npath = \"{dir}/invoices\"\n\n[channels.finance]\nkind = \"teams\"\nwebhook_url = \"{url}\"\n\n\
         [[routes]]\ndeliver = [\"finance\"]\nfallback = [\"archive\"]\n",
        dintero = sandbox.dintero_toml(),
        dir = dir.display()
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_teams::register(&mut registry).expect("no duplicate");
    App::builder(&settings)
        .registry(registry)
        .open()
        .await
        .expect("app")
}

#[tokio::test]
async fn posts_a_card_with_the_invoice_and_its_link() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let (url, bodies) = receiver(vec![]).await;
    let app = app(&sandbox, dir.path(), &url).await;
    let id = sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let body = bodies.lock().expect("lock")[0].clone();
    assert_eq!(body["@type"], "MessageCard");
    assert!(
        body["text"]
            .as_str()
            .expect("text")
            .contains("NOK\u{a0}500.00"),
        "{body}"
    );
    let link = body["potentialAction"][0]["targets"][0]["uri"]
        .as_str()
        .expect("link");
    assert!(link.starts_with(&format!(
        "https://invoices.merchant.example/invoices/{id}.pdf"
    )));
}

#[tokio::test]
async fn throttling_is_retried_and_a_removed_webhook_falls_back() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let (url, _) = receiver(vec![429, 404]).await;
    let app = app(&sandbox, dir.path(), &url).await;
    let id = sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let teams = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("finance"))
        .expect("job");
    assert_eq!(
        (teams.state, teams.attempts),
        (JobState::Failed, 2),
        "429 retried, then 404 for good: {outcome}"
    );
    assert!(
        teams
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("404")
    );
    assert_eq!(outcome.verdict(), Verdict::Delivered, "the archive took it");
}

#[test]
fn a_typo_in_its_table_names_the_key() {
    let settings = Settings::from_toml("[channels.finance]\nkind = \"teams\"\nwebhook_url = \"https://x.example\"\nstyel = \"slack\"\n").expect("settings");
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_teams::register(&mut registry).expect("no duplicate");
    let error = registry.build_all(&settings).expect_err("typo").to_string();
    assert!(
        error.contains("channels.finance.styel")
            && error.contains("expected one of: webhook_url, style, timeout_seconds"),
        "{error}"
    );
}

#[test]
fn the_binary_that_links_it_lists_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_postbud-with-teams"))
        .arg("channels")
        .output()
        .expect("runs");
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(
        out.contains("teams") && out.contains("postbud-teams") && out.contains("folder"),
        "{out}"
    );
}
