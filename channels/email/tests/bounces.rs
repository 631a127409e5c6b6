//! Bounces, end to end against real servers: the invoice goes through Postfix (which accepts it,
//! then fails to deliver it and writes the DSN), the DSN lands in Dovecot, and the channel's
//! evidence source reads it over IMAP into the engine (`App::record_evidence`).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use postbud::{App, Settings, Verdict};
use postbud_channel::{
    Channel, ChannelError, Correlation, Evidence, EvidenceSink, EvidenceState, Recorded,
};
use postbud_sandbox::{
    Sandbox, Seed,
    imap::{Dovecot, Stored},
    postfix::Postfix,
};

const EXIM_FAILED: &str = include_str!("bounces/exim-failed.eml");
const EXIM_ID: &str = "dlv-5f1e2d3c4b5a69788796a5b4";

/// What the sink answers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// What the engine answers (`App::record_evidence`).
    Engine,
    /// `NotYet`, whatever it is.
    NotYet,
}

/// Records what the source hands over, and passes it to the engine (or answers `NotYet`).
struct Recording {
    app: Option<Arc<App>>,
    answer: Mutex<Answer>,
    seen: Mutex<Vec<(Evidence, Recorded)>>,
}

#[async_trait::async_trait]
impl EvidenceSink for Recording {
    async fn record(&self, channel: &str, evidence: Evidence) -> Result<Recorded, ChannelError> {
        let answer = *self.answer.lock().unwrap();
        let recorded = match (answer, &self.app) {
            (Answer::Engine, Some(app)) => app
                .record_evidence(channel, None, &evidence)
                .await
                .map_err(|e| ChannelError::temporary(e.to_string()))?,
            (Answer::Engine, None) => Recorded::Unknown("no engine in this test".into()),
            (Answer::NotYet, _) => Recorded::NotYet,
        };
        self.seen.lock().unwrap().push((evidence, recorded.clone()));
        Ok(recorded)
    }
}

impl Recording {
    fn new(app: Option<Arc<App>>, answer: Answer) -> Arc<Self> {
        Arc::new(Self {
            app,
            answer: Mutex::new(answer),
            seen: Mutex::new(Vec::new()),
        })
    }

    fn seen(&self) -> Vec<(Evidence, Recorded)> {
        self.seen.lock().unwrap().clone()
    }
}

/// The channel's evidence source, running until the returned sender is dropped or sent to.
fn run_source(
    channel: &Arc<dyn Channel>,
    sink: Arc<Recording>,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), ChannelError>>,
) {
    let source = channel.evidence_source().expect("bounces are configured");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        source
            .run(
                "mail",
                sink,
                Box::pin(async move {
                    let _ = stopped.await;
                }),
            )
            .await
    });
    (stop, task)
}

/// Waits for `done`, generously: mail takes its own time through Postfix.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what}: never happened\n{}",
            context()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn has(stored: &Stored, flag: &str) -> bool {
    stored.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

fn billing(email: &str) -> serde_json::Value {
    serde_json::json!({"first_name": "Kari", "last_name": "Nordmann", "email": email, "address_line": "Storgata 1",
        "postal_code": "0151", "postal_place": "Oslo", "country": "NO"})
}

async fn app(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    smtp_url: &str,
    dovecot: &Dovecot,
) -> Arc<App> {
    let routes = "[[routes]]\ndeliver = [\"mail\"]\n";
    app_with_routes(sandbox, dir, smtp_url, dovecot, routes).await
}

async fn app_with_routes(
    sandbox: &Sandbox,
    dir: &std::path::Path,
    smtp_url: &str,
    dovecot: &Dovecot,
    routes: &str,
) -> Arc<App> {
    let toml = format!(
        r#"
{dintero}
[store]
url = "sqlite://{dir}/postbud.db"

[engine]
backoff_base = "50ms"
backoff_max = "200ms"

[channels.mail]
kind = "email"
smtp_url = "{smtp_url}"
from = "Merchant AS <faktura@merchant.example>"
bcc = ["archive@merchant.example"]
timeout = "10s"

[channels.mail.bounces]
imap_url = "{imap}"
ca_file = "{ca}"
return_path = "bounces@merchant.example"
poll_interval = "1s"

[channels.letter]
kind = "folder"
path = "{dir}/letters"

{routes}
"#,
        dintero = sandbox.dintero_toml(),
        dir = dir.display(),
        imap = dovecot.imaps_url(),
        ca = dovecot.ca_file().display(),
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    Arc::new(App::open(&settings).await.expect("app"))
}

/// The `mail` channel as configured for `app`, built as the app builds it (the registry of the
/// core kinds plus this crate's).
fn mail_channel(app: &App) -> Arc<dyn Channel> {
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_email::register(&mut registry).expect("no duplicate");
    registry
        .build_all(app.settings())
        .expect("channels")
        .remove("mail")
        .expect("the mail channel")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_the_receiving_server_rejects_after_accepting_it_is_bounced_by_its_dsn() {
    let test = "an_invoice_the_receiving_server_rejects_after_accepting_it_is_bounced_by_its_dsn";
    let Some(dovecot) = Dovecot::start_or_skip(test) else {
        return;
    };
    let Some(postfix) = Postfix::start_or_skip(test, &dovecot) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(&sandbox, dir.path(), &postfix.smtp_url(), &dovecot).await;
    let id = sandbox.seed(Seed {
        billing_address: Some(billing("kari@gone.example")),
        ..Seed::default()
    });
    let delivery = postbud::ids::delivery_id(&id, "mail");

    // Postfix takes it: the attempt is a success, as far as SMTP can tell.
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert!(
        format!("{outcome}").contains("DSN asked for"),
        "Postfix offers DSN: {outcome}"
    );

    // Then the receiving server refuses it, and Postfix's DSN reaches the bounce mailbox.
    wait_for(
        "the DSN in the bounce mailbox",
        || !dovecot.messages().is_empty(),
        || postfix.log(),
    )
    .await;
    let raw = String::from_utf8_lossy(&dovecot.raw_messages()[0]).into_owned();
    assert!(
        raw.contains(&format!("Original-Envelope-Id: {delivery}")),
        "ENVID was the delivery id: {raw}"
    );
    assert!(
        raw.contains(&format!("To: bounces+{delivery}@merchant.example")),
        "the DSN went to the VERP return path: {raw}"
    );

    let channel = mail_channel(&app);
    let offer = channel.evidence();
    assert!(offer.later.contains(&EvidenceState::Bounced), "{offer:?}");
    // `postbud check` logs into the mailbox too, reading nothing.
    let checked = channel.check().await.expect("check");
    assert!(
        checked.contains("bounce mailbox INBOX") && checked.contains("(IDLE)"),
        "{checked}"
    );
    assert!(
        !checked.contains(postbud_sandbox::imap::PASSWORD),
        "{checked}"
    );
    assert!(dovecot.messages().iter().all(|m| !has(m, "$PostbudRead")));

    let sink = Recording::new(Some(Arc::clone(&app)), Answer::Engine);
    let (stop, task) = run_source(&channel, Arc::clone(&sink));
    wait_for(
        "the DSN read and flagged",
        || {
            dovecot
                .messages()
                .first()
                .is_some_and(|m| has(m, "$PostbudRead") && has(m, "\\Seen"))
        },
        || format!("{:?}\n{}", sink.seen(), dovecot.log()),
    )
    .await;
    let seen = sink.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let (evidence, recorded) = &seen[0];
    assert_eq!(evidence.about, Correlation::Delivery(delivery.clone()));
    assert_eq!(evidence.state, EvidenceState::Bounced);
    assert!(
        evidence.reason.contains("550 5.1.1") && evidence.reason.contains("User doesn't exist"),
        "the receiving server's diagnostic: {}",
        evidence.reason
    );
    assert_eq!(evidence.reporter, "mx.postbud.test (DSN)");
    assert_eq!(*recorded, Recorded::New);
    let history = app.history(&id).await.expect("history");
    assert!(
        history
            .iter()
            .any(|e| e.event == "evidence: bounced" && e.detail.contains("User doesn't exist")),
        "{history:?}"
    );
    let _ = stop.send(());
    assert!(task.await.expect("joined").is_ok());

    // A second reader (a restart) finds nothing new: a marker message shows its pass is over.
    let again = Recording::new(Some(Arc::clone(&app)), Answer::Engine);
    let (stop, task) = run_source(&channel, Arc::clone(&again));
    dovecot
        .deliver(b"From: someone@customer.example\r\nTo: bounces@merchant.example\r\nSubject: hello\r\nMessage-ID: <marker@customer.example>\r\n\r\nNot a bounce.\r\n")
        .expect("marker");
    wait_for(
        "the marker passed by",
        || {
            dovecot
                .messages()
                .get(1)
                .is_some_and(|m| has(m, "$PostbudRead"))
        },
        || dovecot.log(),
    )
    .await;
    assert!(again.seen().is_empty(), "{:?}", again.seen());
    let marker = &dovecot.messages()[1];
    assert!(
        !has(marker, "\\Seen"),
        "not a bounce: left unread for people: {marker:?}"
    );
    let _ = stop.send(());
    assert!(task.await.expect("joined").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_standard_bounce_is_correlated_by_its_return_path_and_an_unknown_one_is_flagged() {
    let test =
        "a_non_standard_bounce_is_correlated_by_its_return_path_and_an_unknown_one_is_flagged";
    let Some(dovecot) = Dovecot::start_or_skip(test) else {
        return;
    };
    let Some(postfix) = Postfix::start_or_skip(test, &dovecot) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app(&sandbox, dir.path(), &postfix.smtp_url(), &dovecot).await;
    // Delivered for real (to an address Dovecot takes: the bounce mailbox itself).
    let id = sandbox.seed(Seed {
        billing_address: Some(billing("bounces@merchant.example")),
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let delivery = postbud::ids::delivery_id(&id, "mail");
    // The invoice lands in the mailbox; its blind copy to archive@ (no such user) bounces, and
    // that DSN lands there too: a bounce about the blind copy, not about the customer's.
    wait_for(
        "the invoice and the blind copy's DSN in the mailbox",
        || dovecot.messages().len() == 2,
        || postfix.log(),
    )
    .await;

    // An Exim bounce about that delivery, with no multipart/report; and one about a delivery
    // Postbud never made.
    dovecot
        .deliver(EXIM_FAILED.replace(EXIM_ID, &delivery).as_bytes())
        .expect("bounce");
    dovecot
        .deliver(
            EXIM_FAILED
                .replace(EXIM_ID, "dlv-000000000000000000000000")
                .as_bytes(),
        )
        .expect("unknown bounce");

    let sink = Recording::new(Some(Arc::clone(&app)), Answer::Engine);
    let (stop, task) = run_source(&mail_channel(&app), Arc::clone(&sink));
    wait_for(
        "all four read",
        || dovecot.messages().iter().all(|m| has(m, "$PostbudRead")) && sink.seen().len() == 2,
        || format!("{:?} {:?}", dovecot.messages(), sink.seen()),
    )
    .await;
    let seen = sink.seen();
    let (ours, recorded) = &seen[0];
    assert_eq!(ours.about, Correlation::Delivery(delivery.clone()));
    assert_eq!(ours.state, EvidenceState::Bounced);
    assert!(ours.reason.contains("550 5.1.1"), "{}", ours.reason);
    assert_eq!(*recorded, Recorded::New);
    let (unknown, recorded) = &seen[1];
    assert_eq!(
        unknown.about,
        Correlation::Delivery("dlv-000000000000000000000000".into())
    );
    assert!(matches!(recorded, Recorded::Unknown(_)), "{recorded:?}");
    let messages = dovecot.messages();
    // The invoice and the blind copy's DSN are passed by, unread; both bounces are read.
    assert!(
        !has(&messages[0], "\\Seen") && !has(&messages[1], "\\Seen"),
        "{messages:?}"
    );
    assert!(
        has(&messages[2], "\\Seen") && has(&messages[3], "\\Seen"),
        "{messages:?}"
    );
    let _ = stop.send(());
    assert!(task.await.expect("joined").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bounce_the_engine_cannot_take_yet_stays_unread_and_is_read_again() {
    let test = "a_bounce_the_engine_cannot_take_yet_stays_unread_and_is_read_again";
    let Some(dovecot) = Dovecot::start_or_skip(test) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    // Plain IMAP on loopback this time; nothing is sent.
    let toml = format!(
        r#"
{dintero}
[store]
url = "sqlite://{dir}/postbud.db"

[channels.mail]
kind = "email"
smtp_url = "smtp://127.0.0.1:9"
from = "Merchant AS <faktura@merchant.example>"

[channels.mail.bounces]
imap_url = "{imap}"
return_path = "bounces@merchant.example"
poll_interval = "1s"

[[routes]]
deliver = ["mail"]
"#,
        dintero = sandbox.dintero_toml(),
        dir = dir.path().display(),
        imap = dovecot.imap_url(),
    );
    let app = App::open(&Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    dovecot.deliver(EXIM_FAILED.as_bytes()).expect("bounce");
    let sink = Recording::new(None, Answer::NotYet);
    let (stop, task) = run_source(&mail_channel(&app), Arc::clone(&sink));
    wait_for(
        "the bounce handed over",
        || !sink.seen().is_empty(),
        || dovecot.log(),
    )
    .await;
    // A marker behind it: once it is passed by, the pass that answered NotYet is over.
    dovecot
        .deliver(b"From: someone@customer.example\r\nTo: bounces@merchant.example\r\nSubject: hello\r\nMessage-ID: <marker2@customer.example>\r\n\r\nNot a bounce.\r\n")
        .expect("marker");
    wait_for(
        "the marker passed by",
        || {
            dovecot
                .messages()
                .get(1)
                .is_some_and(|m| has(m, "$PostbudRead"))
        },
        || dovecot.log(),
    )
    .await;
    let bounce = &dovecot.messages()[0];
    assert!(
        bounce.flags.iter().all(|f| f == "\\Recent"),
        "left as it was: {bounce:?}"
    );

    // The engine can take it now: the next pass (poll_interval, as something waits) reads it.
    *sink.answer.lock().unwrap() = Answer::Engine;
    wait_for(
        "the bounce read again and flagged",
        || {
            dovecot.messages()[0]
                .flags
                .iter()
                .any(|f| f == "$PostbudRead")
        },
        || format!("{:?}", sink.seen()),
    )
    .await;
    let seen = sink.seen();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(matches!(seen.last().unwrap().1, Recorded::Unknown(_)));
    let _ = stop.send(());
    assert!(task.await.expect("joined").is_ok());
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_showing_it() {
    let test = "a_wrong_password_is_refused_without_showing_it";
    let Some(dovecot) = Dovecot::start_or_skip(test) else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        r#"
[dintero]
account_id = "T12345678"
client_id = "id"
client_secret = "secret"
[store]
url = "sqlite://{dir}/postbud.db"

[channels.mail]
kind = "email"
smtp_url = "smtp://127.0.0.1:9"
from = "Merchant AS <faktura@merchant.example>"

[channels.mail.bounces]
imap_url = "imap://bounces:hunter2-wrong@127.0.0.1:{port}/INBOX"
return_path = "bounces@merchant.example"
poll_interval = "1s"
"#,
        dir = dir.path().display(),
        port = dovecot.imap_port(),
    );
    let app = App::open(&Settings::from_toml(&toml).expect("settings"))
        .await
        .expect("app");
    let sink = Recording::new(None, Answer::Engine);
    let (_stop, task) = run_source(&mail_channel(&app), sink);
    // Five failed logins in a row: the source gives up and says why.
    let error = task.await.expect("joined").expect_err("refused");
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("login refused"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");
}

#[tokio::test]
async fn the_bounces_table_is_checked_with_the_key_named() {
    for (bounces, key, expected) in [
        (
            "imap_url = \"imap://u:hunter2@imap.example/INBOX\"\nreturn_path = \"bounces@merchant.example\"",
            "channels.mail.bounces.imap_url",
            "only on loopback",
        ),
        (
            "imap_url = \"imaps://u:hunter2@imap.example/INBOX\"\nreturn_path = \"bounces+x@merchant.example\"",
            "channels.mail.bounces.return_path",
            "already has a `+`",
        ),
        (
            "imap_url = \"imaps://u:hunter2@imap.example/INBOX\"",
            "channels.mail.bounces.return_path",
            "missing key `return_path`",
        ),
        (
            "imap_url = \"imaps://u:hunter2@imap.example/INBOX\"\nreturn_path = \"bounces@merchant.example\"\nca_file = \"/nonexistent/ca.pem\"",
            "channels.mail.bounces.ca_file",
            "/nonexistent/ca.pem",
        ),
    ] {
        let toml = format!(
            r#"
[dintero]
account_id = "T12345678"
client_id = "id"
client_secret = "secret"
[store]
url = "sqlite::memory:"

[channels.mail]
kind = "email"
smtp_url = "smtp://127.0.0.1:9"
from = "Merchant AS <faktura@merchant.example>"

[channels.mail.bounces]
{bounces}
"#
        );
        let error = match Settings::from_toml(&toml) {
            Err(e) => e.to_string(),
            Ok(settings) => App::open(&settings).await.expect_err(key).to_string(),
        };
        assert!(error.contains(key) && error.contains(expected), "{error}");
        assert!(!error.contains("hunter2"), "{error}");
    }
}

/// The job `job_id` of the transaction `id`, as the records show it.
async fn job_of(app: &App, id: &str, job_id: &str) -> Option<postbud::Job> {
    app.records()
        .jobs(id)
        .await
        .expect("jobs")
        .into_iter()
        .find(|j| j.id == job_id)
}

/// What `postbud serve` does: the app runs the channel's bounce mailbox itself. The DSN fails
/// the delivered invoice with the receiving server's diagnostic, the route's fallback delivers
/// once, the DSN is marked, and a restart reads nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_reads_the_dsn_fails_the_delivery_and_the_fallback_delivers_once() {
    let test = "the_app_reads_the_dsn_fails_the_delivery_and_the_fallback_delivers_once";
    let Some(dovecot) = Dovecot::start_or_skip(test) else {
        return;
    };
    let Some(postfix) = Postfix::start_or_skip(test, &dovecot) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app_with_routes(
        &sandbox,
        dir.path(),
        &postfix.smtp_url(),
        &dovecot,
        "[[routes]]\ndeliver = [\"mail\"]\nfallback = [\"letter\"]\n",
    )
    .await;
    let id = sandbox.seed(Seed {
        billing_address: Some(billing("kari@gone.example")),
        ..Seed::default()
    });
    let delivery = postbud::ids::delivery_id(&id, "mail");
    let letter = postbud::ids::delivery_id(&id, "letter");
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    assert!(
        job_of(&app, &id, &letter).await.is_none(),
        "no fallback while the email counts as delivered"
    );
    wait_for(
        "the DSN in the bounce mailbox",
        || !dovecot.messages().is_empty(),
        || postfix.log(),
    )
    .await;

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sources = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.run_evidence_sources(stopped).await }
    });
    wait_for(
        "the DSN read and marked",
        || {
            dovecot
                .messages()
                .first()
                .is_some_and(|m| has(m, "$PostbudRead") && has(m, "\\Seen"))
        },
        || dovecot.log(),
    )
    .await;
    let job = job_of(&app, &id, &delivery).await.expect("there");
    assert_eq!(job.state, postbud::JobState::Failed, "{job:?}");
    assert_eq!(job.evidence.as_deref(), Some("bounced"));
    let error = job.last_error.as_deref().unwrap_or_default();
    assert!(
        error.contains("550 5.1.1")
            && error.contains("User doesn't exist")
            && error.contains("mx.postbud.test"),
        "the receiving server's diagnostic, and who reported it: {error}"
    );
    let queued = job_of(&app, &id, &letter)
        .await
        .expect("the fallback is queued");
    assert_eq!(queued.state, postbud::JobState::Queued);
    let outcome = app.deliver_now(&id).await.expect("the fallback runs");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let letters = std::fs::read_dir(dir.path().join("letters"))
        .expect("the letter folder")
        .count();
    assert!(letters >= 1, "the fallback wrote the invoice");

    // Restarted: a marker behind the DSN shows the new pass is over; nothing was read twice.
    let _ = stop.send(true);
    sources.await.expect("stopped");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sources = tokio::spawn({
        let app = Arc::clone(&app);
        async move { app.run_evidence_sources(stopped).await }
    });
    dovecot
        .deliver(b"From: someone@customer.example\r\nTo: bounces@merchant.example\r\nSubject: hello\r\nMessage-ID: <marker3@customer.example>\r\n\r\nNot a bounce.\r\n")
        .expect("marker");
    wait_for(
        "the marker passed by",
        || {
            dovecot
                .messages()
                .get(1)
                .is_some_and(|m| has(m, "$PostbudRead"))
        },
        || dovecot.log(),
    )
    .await;
    let _ = stop.send(true);
    sources.await.expect("stopped");
    let history = app.history(&id).await.expect("history");
    let count = |event: &str| history.iter().filter(|h| h.event == event).count();
    assert_eq!(count("evidence: bounced"), 1, "{history:?}");
    assert_eq!(count("fallback"), 1, "{history:?}");
    assert_eq!(
        app.records().evidence(&id).await.expect("evidence").len(),
        1
    );
}

/// A server without IDLE is polled every `poll_interval`: mail that arrives while the source runs
/// is read. Hostile messages (huge, control characters, no headers) are passed by, never a panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_idle_the_mailbox_is_polled_and_hostile_messages_are_passed_by() {
    let test = "without_idle_the_mailbox_is_polled_and_hostile_messages_are_passed_by";
    let Some(dovecot) = Dovecot::start_or_skip_with(test, false) else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        r#"
[store]
url = "sqlite://{dir}/postbud.db"

[channels.mail]
kind = "email"
smtp_url = "smtp://127.0.0.1:9"
from = "Merchant AS <faktura@merchant.example>"

[channels.mail.bounces]
imap_url = "{imap}"
ca_file = "{ca}"
return_path = "bounces@merchant.example"
poll_interval = "1s"
"#,
        dir = dir.path().display(),
        imap = dovecot.imaps_url(),
        ca = dovecot.ca_file().display(),
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_email::register(&mut registry).expect("no duplicate");
    let channel = registry
        .build_all(&settings)
        .expect("channels")
        .remove("mail")
        .expect("mail");
    let sink = Recording::new(None, Answer::Engine);
    let (stop, task) = run_source(&channel, Arc::clone(&sink));

    let mut huge = EXIM_FAILED.as_bytes().to_vec();
    huge.extend(std::iter::repeat_n(b'A', 3 * 1024 * 1024));
    // The first pass: the mailbox is read once, with one message in it.
    dovecot
        .deliver(b"\x00\x01\x1b[31m not a message at all \x07")
        .expect("deliver");
    wait_for(
        "the first pass",
        || {
            dovecot
                .messages()
                .first()
                .is_some_and(|m| has(m, "$PostbudRead"))
        },
        || dovecot.log(),
    )
    .await;
    // Then more arrives, which only a later poll can find.
    for raw in [
        b"Subject: \x1b]0;evil\x07\r\nTo: bounces+dlv-\x1b[31m@merchant.example\r\n\r\n550 5.1.1\r\n"
            .to_vec(),
        huge,
        EXIM_FAILED.as_bytes().to_vec(),
    ] {
        dovecot.deliver(&raw).expect("deliver");
    }
    wait_for(
        "every message read while the source ran",
        || {
            let messages = dovecot.messages();
            messages.len() == 4 && messages.iter().all(|m| has(m, "$PostbudRead"))
        },
        || format!("{:?} {:?}", dovecot.messages(), sink.seen()),
    )
    .await;
    let seen = sink.seen();
    // The huge one is the Exim bounce with junk after it: read within the bound, as the last.
    assert_eq!(seen.len(), 2, "{seen:?}");
    for (evidence, recorded) in &seen {
        assert_eq!(evidence.about, Correlation::Delivery(EXIM_ID.into()));
        assert!(evidence.payload.len() <= 64 * 1024);
        assert!(matches!(recorded, Recorded::Unknown(_)));
    }
    let messages = dovecot.messages();
    assert!(!has(&messages[0], "\\Seen") && !has(&messages[1], "\\Seen"));
    assert!(has(&messages[2], "\\Seen") && has(&messages[3], "\\Seen"));
    let _ = stop.send(());
    assert!(task.await.expect("joined").is_ok());
}

/// A receiving server that cannot be reached: Postfix keeps the message and sends a delay
/// warning. The delivery is `delayed`, recorded and waited for: no failure, no fallback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_warning_is_recorded_and_the_delivery_waits() {
    let test = "a_delay_warning_is_recorded_and_the_delivery_waits";
    let Some(dovecot) = Dovecot::start_or_skip(test) else {
        return;
    };
    let Some(postfix) = Postfix::start_or_skip(test, &dovecot) else {
        return;
    };
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let app = app_with_routes(
        &sandbox,
        dir.path(),
        &postfix.smtp_url(),
        &dovecot,
        "[[routes]]\ndeliver = [\"mail\"]\nfallback = [\"letter\"]\n",
    )
    .await;
    let id = sandbox.seed(Seed {
        billing_address: Some(billing(&format!("ola@{}", postbud_sandbox::postfix::SLOW))),
        ..Seed::default()
    });
    let delivery = postbud::ids::delivery_id(&id, "mail");
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    // The blind copy to archive@ bounces at once; the customer's copy is only delayed.
    wait_for(
        "the delay warning in the bounce mailbox",
        || {
            dovecot
                .raw_messages()
                .iter()
                .any(|m| String::from_utf8_lossy(m).contains("Action: delayed"))
        },
        || postfix.log(),
    )
    .await;
    let sink = Recording::new(Some(Arc::clone(&app)), Answer::Engine);
    let (stop, task) = run_source(&mail_channel(&app), Arc::clone(&sink));
    wait_for(
        "the delay warning read",
        || {
            sink.seen()
                .iter()
                .any(|(e, _)| e.state == EvidenceState::Delayed)
        },
        || format!("{:?}", sink.seen()),
    )
    .await;
    let _ = stop.send(());
    assert!(task.await.expect("joined").is_ok());
    let seen = sink.seen();
    assert!(
        seen.iter().all(|(e, _)| e.state == EvidenceState::Delayed
            && e.about == Correlation::Delivery(delivery.clone())),
        "nothing but the customer's delay (the blind copy's bounce is passed by): {seen:?}"
    );
    let mail = job_of(&app, &id, &delivery).await.expect("there");
    assert_eq!(mail.state, postbud::JobState::Done, "{mail:?}");
    assert!(
        job_of(&app, &id, &postbud::ids::delivery_id(&id, "letter"))
            .await
            .is_none(),
        "a delay runs no fallback"
    );
    let history = app.history(&id).await.expect("history");
    assert!(
        history.iter().any(|h| h.event == "evidence: delayed"),
        "{history:?}"
    );
}
