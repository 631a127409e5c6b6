//! A sandbox on loopback, a real SQLite file in a temporary directory, and an `App` wired to both.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod console;
pub mod quirky;

use postbud::{App, Settings};
use postbud_sandbox::{Sandbox, SandboxConfig};
use tempfile::TempDir;

pub struct Harness {
    pub sandbox: Sandbox,
    pub dir: TempDir,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(SandboxConfig::default()).await
    }

    pub async fn start_with(config: SandboxConfig) -> Self {
        let sandbox = Sandbox::start(config).await.expect("sandbox starts");
        let dir = tempfile::tempdir().expect("temp dir");
        Self { sandbox, dir }
    }

    pub fn invoices(&self) -> PathBuf {
        self.dir.path().join("invoices")
    }

    /// Base configuration against the sandbox, plus `extra` TOML (routes default to the archive).
    pub fn toml(&self, extra: &str) -> String {
        let routes = if extra.contains("[[routes]]") {
            ""
        } else {
            "[[routes]]\ndeliver = [\"archive\"]\n"
        };
        format!(
            r#"
{dintero}timeout = "2s"

[store]
url = "sqlite://{dir}/postbud.db"

[engine]
backoff_base = "50ms"
backoff_max = "400ms"
max_attempts = 6
lease = "3s"
poll_interval = "50ms"

[channels.archive]
kind = "folder"
path = "{dir}/invoices"

{extra}
{routes}
"#,
            dintero = self.sandbox.dintero_toml(),
            dir = self.dir.path().display(),
        )
    }

    /// [`Harness::settings`] with `keys` added to the `[dintero]` table.
    pub fn settings_with_dintero(&self, keys: &str, extra: &str) -> Settings {
        let toml =
            self.toml(extra)
                .replacen("timeout = \"2s\"", &format!("timeout = \"2s\"\n{keys}"), 1);
        Settings::from_toml(&toml).expect("valid settings")
    }

    pub fn settings(&self, extra: &str) -> Settings {
        Settings::from_toml(&self.toml(extra)).expect("valid settings")
    }

    pub async fn app(&self, extra: &str) -> App {
        App::open(&self.settings(extra)).await.expect("app opens")
    }

    /// An app whose route waits `delay` before delivering to the archive, and a transaction it
    /// captured whose delivery is still waiting.
    pub async fn captured_and_waiting(&self, delay: &str) -> (App, String) {
        let app = self
            .app(&format!(
                "[[routes]]\ndeliver = [\"archive\"]\ndelay = \"{delay}\"\n"
            ))
            .await;
        let id = self.sandbox.seed(postbud_sandbox::Seed::default());
        let outcome = app
            .deliver_waiting(&id, std::time::Duration::ZERO)
            .await
            .expect("deliver");
        assert_eq!(outcome.verdict(), postbud::Verdict::Pending, "{outcome}");
        assert_eq!(self.sandbox.captures(&id), 1);
        (app, id)
    }

    /// Where the archive drops the cancellation notice of a transaction.
    pub fn void_notice(&self, id: &str) -> PathBuf {
        let number = self.sandbox.transaction(id).expect("tx")["metadata"]["kravia:invoice_number"]
            .as_str()
            .expect("invoice number")
            .to_owned();
        self.invoices().join(format!("{number}.voided.json"))
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A dispatch's history says what it did in the order it did it: the PDF kept with the capture's
/// request, the capture's record after it (written with the routing), the delivery queued and
/// the dispatch done.
pub fn assert_dispatch_history_in_order(history: &[postbud::HistoryEntry]) {
    let events: Vec<&str> = history.iter().map(|h| h.event.as_str()).collect();
    let from = events.iter().position(|e| *e == "pdf fetched");
    assert_eq!(
        from.and_then(|from| events.get(from..from + 5)),
        Some(
            &[
                "pdf fetched",
                "capture requested",
                "captured",
                "queued",
                "done"
            ][..]
        ),
        "{events:?}"
    );
}
