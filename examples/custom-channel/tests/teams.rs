//! The example channel through the library's public face: configuration, delivery, error
//! classification, and the binary that links it.

use postbud::{App, JobState, Settings, Verdict};
use postbud_channel::{serde_json, testing};
use postbud_sandbox::{Sandbox, Seed};

/// A chat webhook that answers with the given statuses in turn (the last one repeats; none is
/// 200) and keeps the requests.
async fn receiver(statuses: Vec<u16>) -> testing::Receiver {
    testing::Receiver::start(statuses.into_iter().map(|s| (s, vec![])).collect()).await
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

#[testing::tokio::test(crate = "postbud_channel::testing::tokio")]
async fn posts_a_card_with_the_invoice_and_its_link() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let webhook = receiver(vec![]).await;
    let app = app(&sandbox, dir.path(), webhook.url()).await;
    let id = sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let body: serde_json::Value =
        serde_json::from_slice(&webhook.requests()[0].body).expect("JSON");
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

#[testing::tokio::test(crate = "postbud_channel::testing::tokio")]
async fn throttling_is_retried_and_a_removed_webhook_falls_back() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let webhook = receiver(vec![429, 404]).await;
    let app = app(&sandbox, dir.path(), webhook.url()).await;
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
