//! The webhook channel against a receiver that verifies every request with the Standard Webhooks
//! reference library, and the Dintero sandbox.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
};

use postbud::{App, JobState, Settings, Verdict};
use postbud_sandbox::{Sandbox, Seed};

const OLD: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const NEW: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

struct Receiver {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    /// Starts the verifying receiver, or skips (loudly) when the reference library is missing.
    fn start(test: &str, secrets: &[&str], responses: &str) -> Option<Self> {
        let python = ["python3", "/usr/bin/python3"].into_iter().find(|p| {
            Command::new(p)
                .args(["-c", "import standardwebhooks"])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        let Some(python) = python else {
            let why = "python3 with the standardwebhooks library not found (pip install standardwebhooks)";
            assert_ne!(
                std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref(),
                Ok("1"),
                "{test}: {why}"
            );
            postbud_sandbox::skipped(&format!("{test}: {why}"));
            return None;
        };
        let dir = tempfile::tempdir().expect("dir");
        let script = dir.path().join("receiver.py");
        std::fs::write(&script, include_str!("receiver.py")).expect("script");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let log = dir.path().join("requests.jsonl");
        let mut command = Command::new(python);
        command
            .arg(&script)
            .args(["--port", &port.to_string(), "--responses", responses])
            .arg("--log")
            .arg(&log);
        for secret in secrets {
            command.args(["--secret", secret]);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("receiver starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read");
        assert_eq!(line.trim(), "READY");
        Some(Self {
            child,
            port,
            log,
            _dir: dir,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hooks/invoices", self.port)
    }

    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }
}

async fn app(sandbox: &Sandbox, dir: &std::path::Path, hook: &str, extra: &str) -> App {
    let routes = if extra.contains("[[routes]]") {
        ""
    } else {
        "[[routes]]\ndeliver = [\"platform\"]\n"
    };
    let toml = format!(
        "{dintero}\n\
         [server]\npublic_url = \"https://invoices.merchant.example\"\n\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
         [engine]\nbackoff_base = \"50ms\"\nbackoff_max = \"1s\"\n\n[channels.archive]\nkind = \"folder\"\npath = \"{dir}/invoices\"\n\n\
         [channels.platform]\nkind = \"webhook\"\n{hook}\n\n{extra}\n{routes}",
        dintero = sandbox.dintero_toml(),
        dir = dir.display()
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_webhook::register(&mut registry).expect("no duplicate");
    App::builder(&settings)
        .registry(registry)
        .open()
        .await
        .expect("app")
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_verifies_with_the_reference_library_across_a_rotation() {
    let Some(receiver) = Receiver::start(
        "every_request_verifies_with_the_reference_library_across_a_rotation",
        &[OLD, NEW],
        "",
    ) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(&sandbox, dir.path(), &format!("url = \"{}\"\nsecret = [\"{OLD}\", \"{NEW}\"]\nheaders = {{ \"X-Tenant\" = \"shop-42\" }}", receiver.url()), "").await;
    let id = sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    app.void(&id, std::time::Duration::from_secs(10))
        .await
        .expect("void");

    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "invoice.ready, then invoice.voided");
    for request in &requests {
        assert_eq!(
            request["verified"][OLD], true,
            "a receiver on the old secret accepts: {request}"
        );
        assert_eq!(
            request["verified"][NEW], true,
            "a receiver on the new secret accepts: {request}"
        );
        assert_eq!(request["headers"]["x-tenant"], "shop-42");
    }
    let ready: serde_json::Value =
        serde_json::from_str(requests[0]["body"].as_str().expect("body")).expect("json");
    assert_eq!(ready["type"], "invoice.ready");
    assert_eq!(
        requests[0]["headers"]["webhook-id"],
        postbud::ids::delivery_id(&id, "platform")
    );
    let data = &ready["data"];
    assert_eq!(data["transaction_id"], id.as_str());
    assert_eq!(data["amount"], 50000);
    assert_eq!(data["currency"], "NOK");
    assert_eq!(
        data["pdf"]["sha256"],
        sha256(&sandbox.pdf(&id).expect("pdf"))
    );
    assert!(
        data["pdf"]["url"]
            .as_str()
            .expect("url")
            .starts_with(&format!(
                "https://invoices.merchant.example/invoices/{id}.pdf?expires="
            ))
    );
    assert!(
        data["pdf"].get("content_base64").is_none(),
        "link mode sends no bytes"
    );
    assert!(
        data["due_date"].is_string()
            && data["customer"]["email"] == "kari@example.no"
            && data["lines"][0]["amount"] == 50000
    );
    let voided: serde_json::Value =
        serde_json::from_str(requests[1]["body"].as_str().expect("body")).expect("json");
    assert_eq!(voided["type"], "invoice.voided");
    assert_ne!(
        requests[1]["headers"]["webhook-id"],
        requests[0]["headers"]["webhook-id"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_503s_then_200_is_three_attempts_with_one_webhook_id() {
    let Some(receiver) = Receiver::start(
        "two_503s_then_200_is_three_attempts_with_one_webhook_id",
        &[NEW],
        "503,503,200",
    ) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(
        &sandbox,
        dir.path(),
        &format!(
            "url = \"{}\"\nsecret = \"{NEW}\"\npdf = \"inline\"",
            receiver.url()
        ),
        "",
    )
    .await;
    let id = sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("platform"))
        .expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Done, 3));
    let requests = receiver.requests();
    assert_eq!(requests.len(), 3);
    let ids: std::collections::BTreeSet<_> = requests
        .iter()
        .map(|r| r["headers"]["webhook-id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1, "one webhook-id across the retries");
    let stamps: Vec<_> = requests
        .iter()
        .map(|r| {
            r["headers"]["webhook-timestamp"]
                .as_str()
                .expect("ts")
                .parse::<i64>()
                .expect("int")
        })
        .collect();
    assert!(
        stamps[2] >= stamps[0] + 2,
        "Retry-After: 1 honoured twice: {stamps:?}"
    );
    assert!(requests.iter().all(|r| r["verified"][NEW] == true));
    let body: serde_json::Value =
        serde_json::from_str(requests[2]["body"].as_str().expect("body")).expect("json");
    use base64::Engine as _;
    let pdf = base64::engine::general_purpose::STANDARD
        .decode(
            body["data"]["pdf"]["content_base64"]
                .as_str()
                .expect("inline"),
        )
        .expect("base64");
    assert_eq!(sha256(&pdf), sha256(&sandbox.pdf(&id).expect("pdf")));
    let history = app.history(&id).await.expect("history");
    assert!(
        history
            .iter()
            .filter(|e| e.event == "retry")
            .all(|e| e.detail.contains("HTTP 503")),
        "{history:?}"
    );
    assert!(
        job.receipt
            .as_deref()
            .unwrap_or_default()
            .contains("HTTP 200"),
        "status and body excerpt kept: {job:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_410_is_not_retried_and_the_fallback_delivers() {
    let Some(receiver) = Receiver::start(
        "a_410_is_not_retried_and_the_fallback_delivers",
        &[NEW],
        "410",
    ) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(
        &sandbox,
        dir.path(),
        &format!("url = \"{}\"\nsecret = \"{NEW}\"", receiver.url()),
        "[[routes]]\ndeliver = [\"platform\"]\nfallback = [\"archive\"]\n",
    )
    .await;
    let id = sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let hook = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("platform"))
        .expect("job");
    assert_eq!((hook.state, hook.attempts), (JobState::Failed, 1));
    assert!(
        hook.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("HTTP 410 Gone"),
        "{hook:?}"
    );
    assert_eq!(receiver.requests().len(), 1, "no further attempts");
    let archive = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("archive"))
        .expect("fallback");
    assert_eq!(archive.state, JobState::Done);
}

#[tokio::test]
async fn private_targets_and_plain_http_are_refused_at_configuration() {
    for (url, expected) in [
        ("https://10.1.2.3/hooks", "private address"),
        ("https://169.254.169.254/latest/meta-data", "cloud metadata"),
        ("http://platform.example/hooks", "plain http"),
    ] {
        let toml = format!(
            "[server]\npublic_url = \"https://x.example\"\n[channels.platform]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"{NEW}\"\n"
        );
        let settings = Settings::from_toml(&toml).expect("settings");
        let mut registry = postbud::Registry::discover().expect("registry");
        postbud_webhook::register(&mut registry).expect("no duplicate");
        let error = registry
            .build_all(&settings)
            .expect_err("refused")
            .to_string();
        assert!(
            error.contains("channels.platform.url") && error.contains(expected),
            "{url}: {error}"
        );
    }
}
