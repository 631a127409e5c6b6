//! Email provider events through the public face: a `postbud` App with `serve`'s router on
//! loopback, the email channel sending to a real SMTP server (aiosmtpd) with `[events]`
//! configured, and `postbud-sandbox` playing each provider's event sender: it reads the message
//! the SMTP server received as the provider's relay would, and posts the provider's signed
//! events to `<public_url>/reports/mail`.

use std::sync::Arc;

use postbud::{App, Job, JobState, Role, Settings, Verdict};
use postbud_sandbox::{
    Sandbox, Seed,
    email_events::{Mailgun, Outcome, Post, Postmark, SendGrid, Sent, SignatureVersion, Sns},
    smtp::SmtpServer,
};

const RECIPIENT: &str = "kari@example.no";
const MAILGUN_KEY: &str = "mailgun-signing-key-for-tests";
const POSTMARK: (&str, &str) = ("postmark-hook", "s3cret-postmark");
const TOPIC: &str = "arn:aws:sns:eu-north-1:123456789012:postbud-bounces";

struct Setup {
    sandbox: Sandbox,
    smtp: SmtpServer,
    app: Arc<App>,
    base: String,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// `events` is the body of `[channels.mail.events]`; `extra_ca` a CA the channel must trust
    /// beside the SMTP server's (the SNS stand-in's).
    async fn start(test: &str, events: &str, extra_ca: Option<&str>) -> Option<Self> {
        let smtp = SmtpServer::start_or_skip(test)?;
        let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
        let dir = tempfile::tempdir().expect("dir");
        let mut ca = std::fs::read_to_string(smtp.ca_file()).expect("SMTP CA");
        ca.push_str(extra_ca.unwrap_or_default());
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca).expect("CA bundle");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let toml = format!(
            r#"
{dintero}
[server]
public_url = "{base}"

[store]
url = "sqlite://{dir}/postbud.db"

[engine]
backoff_base = "20ms"
backoff_max = "50ms"
max_attempts = 2

[channels.archive]
kind = "folder"
path = "{dir}/invoices"

[channels.mail]
kind = "email"
smtp_url = "{smtp}"
ca_file = "{ca}"
from = "Merchant AS <faktura@merchant.example>"
timeout = "5s"

[channels.mail.events]
{events}

[[routes]]
deliver = ["mail"]
fallback = ["archive"]
"#,
            dintero = sandbox.dintero_toml(),
            dir = dir.path().display(),
            smtp = smtp.url(),
            ca = ca_file.display(),
        );
        let settings = Settings::from_toml(&toml).expect("settings");
        let mut registry = postbud::Registry::discover().expect("registry");
        postbud_email::register(&mut registry).expect("no duplicate");
        let app = Arc::new(
            App::builder(&settings)
                .registry(registry)
                .open()
                .await
                .expect("app"),
        );
        tokio::spawn({
            let app = Arc::clone(&app);
            async move { axum::serve(listener, postbud::server::router(app)).await }
        });
        Some(Self {
            sandbox,
            smtp,
            app,
            base,
            _dir: dir,
        })
    }

    /// Delivers a fresh invoice by email: its transaction id, and the message as the relay got it.
    async fn deliver(&self) -> (String, Sent) {
        let id = self.sandbox.seed(Seed::default());
        let outcome = self.app.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
        let messages = self.smtp.messages();
        let raw = &messages.last().expect("a message").raw;
        (id, Sent::parse(raw, RECIPIENT))
    }

    fn reports(&self) -> String {
        format!("{}/reports/mail", self.base)
    }

    async fn post(&self, post: &Post) -> (u16, String) {
        post.send(&self.reports()).await.expect("posted")
    }

    /// The email delivery's job, as the store has it now.
    async fn mail_job(&self, id: &str) -> Job {
        let delivery = postbud::ids::delivery_id(id, "mail");
        self.app
            .jobs(id)
            .await
            .expect("store")
            .into_iter()
            .find(|j| j.id == delivery)
            .expect("the email delivery")
    }

    /// Runs what is due (the fallback a bounce queued): the fallback deliveries and their states.
    async fn fallbacks(&self, id: &str) -> Vec<(String, JobState)> {
        let outcome = self.app.deliver_now(id).await.expect("deliver");
        outcome
            .jobs
            .iter()
            .filter(|j| j.role == Some(Role::Fallback))
            .map(|j| (j.channel.clone().unwrap_or_default(), j.state))
            .collect()
    }

    /// How many history lines are `event`.
    async fn count(&self, id: &str, event: &str) -> usize {
        self.app
            .history(id)
            .await
            .expect("history")
            .iter()
            .filter(|e| e.event == event)
            .count()
    }

    /// The transaction's evidence lines: `evidence: <state> <detail>`.
    async fn evidence(&self, id: &str) -> Vec<String> {
        self.app
            .history(id)
            .await
            .expect("history")
            .into_iter()
            .filter(|e| e.event.starts_with("evidence"))
            .map(|e| format!("{} {}", e.event, e.detail))
            .collect()
    }
}

fn sendgrid_keys(sendgrid: &SendGrid) -> String {
    format!(
        "provider = \"sendgrid\"\npublic_key = \"{}\"",
        sendgrid.public_key()
    )
}

const BOUNCE: &str = "550 5.1.1 <kari@example.no>: Recipient address rejected: User unknown";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_sendgrid_batch_records_each_event_and_the_bounce_with_its_reason() {
    let test = "a_signed_sendgrid_batch_records_each_event_and_the_bounce_with_its_reason";
    let sendgrid = SendGrid::new();
    let Some(s) = Setup::start(test, &sendgrid_keys(&sendgrid), None).await else {
        return;
    };
    let (id, sent) = s.deliver().await;
    let delivery = postbud::ids::delivery_id(&id, "mail");
    assert_eq!(
        sent.header("X-SMTPAPI"),
        Some(format!("{{\"unique_args\":{{\"postbud_delivery\":\"{delivery}\"}}}}").as_str()),
        "the delivery id travels where SendGrid echoes it back"
    );
    let batch = [
        sendgrid.event(&sent, &Outcome::Processed),
        sendgrid.event(
            &sent,
            &Outcome::Deferred("421 4.7.0 try again later".into()),
        ),
        sendgrid.event(&sent, &Outcome::Bounced(BOUNCE.into())),
    ];
    let (status, answer) = s.post(&sendgrid.sign_now(&batch)).await;
    assert_eq!((status, answer.as_str()), (200, "recorded 3, ignored 0"));
    let evidence = s.evidence(&id).await;
    assert!(
        evidence.iter().any(|e| e.starts_with("evidence: accepted")),
        "{evidence:?}"
    );
    assert!(
        evidence
            .iter()
            .any(|e| e.starts_with("evidence: delayed") && e.contains("421 4.7.0")),
        "{evidence:?}"
    );
    assert!(
        evidence.iter().any(|e| e.starts_with("evidence: bounced")
            && e.contains("[mail] sendgrid: 550 5.1.1")
            && e.contains("User unknown")),
        "{evidence:?}"
    );
    // The bounce failed the delivered invoice's email, and the route's fallback delivers it.
    let job = s.mail_job(&id).await;
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    assert_eq!(job.evidence.as_deref(), Some("bounced"));
    assert!(
        job.last_error
            .as_deref()
            .is_some_and(|e| e.contains("550 5.1.1") && e.contains("sendgrid")),
        "{job:?}"
    );
    assert_eq!(
        s.fallbacks(&id).await,
        vec![("archive".to_owned(), JobState::Done)]
    );
    // Each piece keeps its own event, not the batch.
    let recorded = s.app.records().evidence(&id).await.expect("evidence");
    assert_eq!(recorded.len(), 3);
    for piece in &recorded {
        let payload: serde_json::Value =
            serde_json::from_slice(piece.payload.as_deref().expect("payload")).expect("JSON");
        assert!(payload.is_object(), "one event: {payload}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_unsigned_sendgrid_events_are_refused_and_change_nothing() {
    let test = "forged_stale_and_unsigned_sendgrid_events_are_refused_and_change_nothing";
    let sendgrid = SendGrid::new();
    let Some(s) = Setup::start(test, &sendgrid_keys(&sendgrid), None).await else {
        return;
    };
    let (id, sent) = s.deliver().await;
    let bounce = [sendgrid.event(&sent, &Outcome::Bounced(BOUNCE.into()))];

    // Signed by another key.
    let (status, _) = s.post(&SendGrid::new().sign_now(&bounce)).await;
    assert_eq!(status, 401, "another key");
    // Signed, then changed: a delivered event turned into a bounce.
    let delivered = [sendgrid.event(&sent, &Outcome::Delivered)];
    let signed = sendgrid.sign_now(&delivered);
    let tampered = String::from_utf8(signed.body.clone())
        .expect("utf8")
        .replace("\"delivered\"", "\"bounce\"");
    let (status, _) = s.post(&signed.with_body(tampered)).await;
    assert_eq!(status, 401, "a changed body");
    // Signed 16 minutes ago: over max_age (15 minutes).
    let stale = jiff::Timestamp::now().as_second() - 16 * 60;
    let (status, answer) = s.post(&sendgrid.sign(&bounce, stale)).await;
    assert_eq!(status, 401, "stale: {answer}");
    // No signature at all.
    let unsigned = sendgrid
        .sign_now(&bounce)
        .without("X-Twilio-Email-Event-Webhook-Signature")
        .without("X-Twilio-Email-Event-Webhook-Timestamp");
    let (status, _) = s.post(&unsigned).await;
    assert_eq!(status, 400, "unsigned");
    // Control characters and a huge body: refused, never a panic.
    let (status, _) = s
        .post(&Post {
            headers: vec![],
            body: vec![0u8; 1 << 20],
        })
        .await;
    assert_eq!(status, 400, "garbage");

    assert_eq!(s.evidence(&id).await, Vec::<String>::new());
    // The same bounce, signed right, is still taken: nothing above poisoned anything.
    let (status, _) = s.post(&sendgrid.sign_now(&bounce)).await;
    assert_eq!(status, 200);
    assert_eq!(s.evidence(&id).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_about_messages_postbud_did_not_send_are_answered_200_and_ignored() {
    let test = "events_about_messages_postbud_did_not_send_are_answered_200_and_ignored";
    let sendgrid = SendGrid::new();
    let Some(s) = Setup::start(test, &sendgrid_keys(&sendgrid), None).await else {
        return;
    };
    let (id, sent) = s.deliver().await;
    let foreign = Sent::foreign("someone@example.com");
    let batch = [
        sendgrid.event(&foreign, &Outcome::Bounced(BOUNCE.into())),
        sendgrid.event(&sent, &Outcome::Delivered),
        // A click says nothing about delivery: left out.
        {
            let mut click = sendgrid.event(&sent, &Outcome::Opened);
            click["event"] = "click".into();
            click
        },
    ];
    let (status, answer) = s.post(&sendgrid.sign_now(&batch)).await;
    assert_eq!((status, answer.as_str()), (200, "recorded 1, ignored 1"));
    let evidence = s.evidence(&id).await;
    assert_eq!(evidence.len(), 1, "{evidence:?}");
    assert!(
        evidence[0].starts_with("evidence: delivered"),
        "{evidence:?}"
    );

    // Without the unique argument (a relay that drops it), the `smtp-id` is the message's
    // `Message-ID`, which the delivery's receipt kept.
    let mut opened = sendgrid.event(&sent, &Outcome::Opened);
    opened
        .as_object_mut()
        .expect("event")
        .remove("postbud_delivery");
    let (status, answer) = s.post(&sendgrid.sign_now(&[opened])).await;
    assert_eq!((status, answer.as_str()), (200, "recorded 1, ignored 0"));
    assert_eq!(s.count(&id, "evidence: opened").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_sendgrid_batch_is_recorded_once_and_runs_one_fallback() {
    let test = "a_replayed_sendgrid_batch_is_recorded_once_and_runs_one_fallback";
    let sendgrid = SendGrid::new();
    let Some(s) = Setup::start(test, &sendgrid_keys(&sendgrid), None).await else {
        return;
    };
    let (id, sent) = s.deliver().await;
    let post = sendgrid.sign_now(&[sendgrid.event(&sent, &Outcome::Bounced(BOUNCE.into()))]);
    // SendGrid sends a batch again when the answer did not arrive; within max_age the
    // signature is the same and valid, and the engine recognises the event by its id.
    for _ in 0..2 {
        let (status, _) = s.post(&post).await;
        assert_eq!(status, 200);
    }
    assert_eq!(s.count(&id, "evidence: bounced").await, 1, "recorded once");
    assert_eq!(s.count(&id, "fallback").await, 1, "one fallback");
    assert_eq!(
        s.fallbacks(&id).await,
        vec![("archive".to_owned(), JobState::Done)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ses_events_through_sns_are_verified_with_signature_versions_1_and_2() {
    let test = "ses_events_through_sns_are_verified_with_signature_versions_1_and_2";
    let sns = Sns::start(TOPIC).await.expect("SNS stand-in");
    let keys = format!(
        "provider = \"ses\"\ntopic_arn = \"{TOPIC}\"\ncertificate_origins = [\"{}\"]",
        sns.origin()
    );
    let sns_ca = std::fs::read_to_string(sns.ca_file()).expect("SNS CA");
    let Some(s) = Setup::start(test, &keys, Some(&sns_ca)).await else {
        return;
    };

    // Subscribing: the confirmation is verified, then SNS's URL is visited, once.
    let (status, answer) = s
        .post(&sns.subscription_confirmation(SignatureVersion::V2))
        .await;
    assert_eq!((status, answer.as_str()), (200, "recorded 0, ignored 0"));
    assert_eq!(sns.confirmations().len(), 1);

    let (v1, sent_v1) = s.deliver().await;
    let delivery = postbud::ids::delivery_id(&v1, "mail");
    assert_eq!(
        sent_v1.header("X-SES-MESSAGE-TAGS"),
        Some(format!("postbud_delivery={delivery}").as_str())
    );
    let bounce = sns.ses_event(&sent_v1, &Outcome::Bounced(BOUNCE.into()));
    let (status, answer) = s.post(&sns.notify_now(&bounce, SignatureVersion::V1)).await;
    assert_eq!((status, answer.as_str()), (200, "recorded 1, ignored 0"));
    let evidence = s.evidence(&v1).await;
    assert!(
        evidence.iter().any(|e| e.starts_with("evidence: bounced")
            && e.contains("[mail] amazon-ses: Permanent (General): 5.1.1")),
        "{evidence:?}"
    );

    assert_eq!(s.mail_job(&v1).await.state, JobState::Failed);

    // A plain SES notification (no configuration set, so no tags): matched by the Message-ID.
    let (plain, sent_plain) = s.deliver().await;
    let mut notification = sns.ses_event(&sent_plain, &Outcome::Bounced(BOUNCE.into()));
    let object = notification.as_object_mut().expect("event");
    object.remove("eventType");
    object.insert("notificationType".into(), "Bounce".into());
    object["mail"].as_object_mut().expect("mail").remove("tags");
    let (status, answer) = s
        .post(&sns.notify_now(&notification, SignatureVersion::V2))
        .await;
    assert_eq!((status, answer.as_str()), (200, "recorded 1, ignored 0"));
    assert_eq!(
        s.mail_job(&plain).await.evidence.as_deref(),
        Some("bounced")
    );

    let (v2, sent_v2) = s.deliver().await;
    let delivered = sns.ses_event(&sent_v2, &Outcome::Delivered);
    let (status, _) = s
        .post(&sns.notify_now(&delivered, SignatureVersion::V2))
        .await;
    assert_eq!(status, 200);
    assert!(
        s.evidence(&v2)
            .await
            .iter()
            .any(|e| e.starts_with("evidence: delivered") && e.contains("250 2.6.0")),
    );

    // Forged (the message changed after signing), stale, of another topic, unsigned.
    let signed = sns.notify_now(&bounce, SignatureVersion::V2);
    let forged = String::from_utf8(signed.body.clone())
        .expect("utf8")
        .replace("Permanent", "Transient");
    let (status, _) = s.post(&signed.with_body(forged)).await;
    assert_eq!(status, 401, "forged");
    let old = jiff::Timestamp::now() - jiff::SignedDuration::from_mins(16);
    let (status, _) = s
        .post(&sns.notify(
            &sns.ses_event(&sent_v2, &Outcome::Bounced(BOUNCE.into())),
            SignatureVersion::V2,
            old,
        ))
        .await;
    assert_eq!(status, 401, "stale");
    let other = Sns::start("arn:aws:sns:eu-north-1:123456789012:other")
        .await
        .expect("other topic");
    let (status, _) = s
        .post(&other.notify_now(&delivered, SignatureVersion::V2))
        .await;
    assert_eq!(status, 401, "another topic");
    let mut unsigned: serde_json::Value =
        serde_json::from_slice(&sns.notify_now(&bounce, SignatureVersion::V1).body).expect("json");
    unsigned
        .as_object_mut()
        .expect("object")
        .remove("Signature");
    let (status, _) = s
        .post(&Post {
            headers: vec![],
            body: unsigned.to_string().into_bytes(),
        })
        .await;
    assert_eq!(status, 400, "unsigned");
    assert!(
        !s.evidence(&v2)
            .await
            .iter()
            .any(|e| e.starts_with("evidence: bounced") || e.starts_with("evidence: delayed")),
        "nothing refused was recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailgun_events_are_verified_and_a_replayed_signature_is_refused() {
    let test = "mailgun_events_are_verified_and_a_replayed_signature_is_refused";
    let mailgun = Mailgun::new(MAILGUN_KEY);
    let keys = format!("provider = \"mailgun\"\nsigning_key = \"{MAILGUN_KEY}\"");
    let Some(s) = Setup::start(test, &keys, None).await else {
        return;
    };
    let (id, sent) = s.deliver().await;
    let delivery = postbud::ids::delivery_id(&id, "mail");
    assert_eq!(
        sent.header("X-Mailgun-Variables"),
        Some(format!("{{\"postbud_delivery\":\"{delivery}\"}}").as_str())
    );
    let failed = mailgun.event(&sent, &Outcome::Bounced(BOUNCE.into()));
    let signed_at = jiff::Timestamp::now().as_second();
    let post = mailgun.sign(&failed, signed_at, "token-once");
    let (status, answer) = s.post(&post).await;
    assert_eq!((status, answer.as_str()), (200, "recorded 1, ignored 0"));
    // Mailgun's own retry of the same request passes and is recorded once; the signature, which
    // covers the timestamp and token but not the body, taken for another body is a replay.
    let (status, _) = s.post(&post).await;
    assert_eq!(status, 200, "the same request again: Mailgun's retry");
    let delivered = mailgun.event(&sent, &Outcome::Delivered);
    let (status, _) = s
        .post(&mailgun.sign(&delivered, signed_at, "token-once"))
        .await;
    assert_eq!(status, 401, "the same token with another body: a replay");
    let (status, _) = s.post(&Mailgun::new("another-key").sign_now(&failed)).await;
    assert_eq!(status, 401, "another key");
    let stale = jiff::Timestamp::now().as_second() - 16 * 60;
    let (status, _) = s.post(&mailgun.sign(&failed, stale, "fresh-token")).await;
    assert_eq!(status, 401, "stale");
    let evidence = s.evidence(&id).await;
    assert_eq!(evidence.len(), 1, "recorded once: {evidence:?}");
    assert!(
        evidence[0].starts_with("evidence: bounced") && evidence[0].contains("5.1.1"),
        "{evidence:?}"
    );
    assert_eq!(
        s.fallbacks(&id).await,
        vec![("archive".to_owned(), JobState::Done)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmark_events_are_taken_only_with_the_basic_credentials() {
    let test = "postmark_events_are_taken_only_with_the_basic_credentials";
    let postmark = Postmark::new(POSTMARK.0, POSTMARK.1);
    let keys = format!(
        "provider = \"postmark\"\nusername = \"{}\"\npassword = \"{}\"",
        POSTMARK.0, POSTMARK.1
    );
    let Some(s) = Setup::start(test, &keys, None).await else {
        return;
    };
    let (id, sent) = s.deliver().await;
    let delivery = postbud::ids::delivery_id(&id, "mail");
    assert_eq!(
        sent.header("X-PM-Metadata-postbud-delivery"),
        Some(delivery.as_str())
    );
    let bounce = postmark
        .record(&sent, &Outcome::Bounced(BOUNCE.into()))
        .expect("a bounce record");
    for (credentials, expected) in [
        (None, 401),
        (Some((POSTMARK.0, "wrong")), 401),
        (Some(("someone", POSTMARK.1)), 401),
    ] {
        let (status, answer) = s.post(&postmark.post_as(&bounce, credentials)).await;
        assert_eq!(status, expected, "{credentials:?}: {answer}");
        assert!(!answer.contains(POSTMARK.1), "no secret in the answer");
    }
    assert_eq!(s.evidence(&id).await, Vec::<String>::new());
    let (status, answer) = s.post(&postmark.post(&bounce)).await;
    assert_eq!((status, answer.as_str()), (200, "recorded 1, ignored 0"));
    let evidence = s.evidence(&id).await;
    assert!(
        evidence.iter().any(
            |e| e.starts_with("evidence: bounced") && e.contains("[mail] postmark: HardBounce")
        ),
        "{evidence:?}"
    );
    assert_eq!(s.mail_job(&id).await.state, JobState::Failed);
}

/// Opens an app whose email channel has `events` as `[channels.mail.events]`: the error.
async fn misconfigured(events: &str) -> String {
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "{dintero}\n\
         [store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
         [channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"faktura@merchant.example\"\n\n\
         [channels.mail.events]\n{events}\n\n[[routes]]\ndeliver = [\"mail\"]\n",
        dintero = postbud_sandbox::dintero_toml("http://127.0.0.1:9"),
        dir = dir.path().display()
    );
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_email::register(&mut registry).expect("no duplicate");
    match Settings::from_toml(&toml) {
        Err(e) => e.to_string(),
        Ok(settings) => App::builder(&settings)
            .registry(registry)
            .open()
            .await
            .map(|_| "opened".to_owned())
            .unwrap_or_else(|e| e.to_string()),
    }
}

#[tokio::test]
async fn misconfigured_events_name_the_key_at_fault_and_never_a_secret() {
    let error = misconfigured("provider = \"sendgrid\"\nsigning_key = \"hush-hush\"").await;
    assert!(
        error.contains("channels.mail.events.signing_key") && error.contains("\"mailgun\""),
        "{error}"
    );
    assert!(!error.contains("hush-hush"), "{error}");
    let error = misconfigured("provider = \"mailgun\"").await;
    assert!(
        error.contains("channels.mail.events.signing_key"),
        "{error}"
    );
    let error = misconfigured("provider = \"sendgrid\"\npublic_key = \"AAAA\"").await;
    assert!(
        error.contains("channels.mail.events.public_key") && error.contains("P-256"),
        "{error}"
    );
    let error = misconfigured("provider = \"ses\"\ntopic_arn = \"bounces\"").await;
    assert!(error.contains("channels.mail.events.topic_arn"), "{error}");
    let error = misconfigured(
        "provider = \"ses\"\ntopic_arn = \"arn:aws:sns:eu-north-1:123456789012:b\"\ncertificate_origins = [\"http://127.0.0.1:1\"]",
    )
    .await;
    assert!(
        error.contains("channels.mail.events.certificate_origins"),
        "{error}"
    );
    let error = misconfigured("provider = \"sparkpost\"").await;
    assert!(
        error.contains("sparkpost") && error.contains("`sendgrid`"),
        "{error}"
    );
}
