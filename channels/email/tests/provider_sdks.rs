//! Signatures checked against independent implementations, both ways: each provider's official
//! SDK from PyPI verifies what `postbud-sandbox` signs (SendGrid's `EventWebhook`, Mailgun's
//! `SecurityGuard.verify_webhook`, `aws-sns-message-validator` for SNS version 1 and
//! `cryptography` for version 2), and Postbud's served `/reports/<channel>` verifies what
//! independent code signs (`cryptography` and Python's `hmac`, following each provider's
//! documentation; Postmark's credentials put in the URL by `requests`).
//!
//! The SDKs come from PyPI into the virtual environment `.ci/run` makes; without them each test
//! says it skipped (and fails under `POSTBUD_REQUIRE_SERVICES=1`).

use std::{
    io::Write as _,
    process::{Command, Stdio},
    sync::Arc,
};

use postbud::{App, Settings};
use postbud_sandbox::email_events::{
    Mailgun, Outcome, Post, Postmark, SendGrid, Sent, SignatureVersion, Sns,
};

const SCRIPT: &str = include_str!("provider_sdks.py");
const TOPIC: &str = "arn:aws:sns:eu-north-1:123456789012:postbud-bounces";

/// The Python with the providers' SDKs, or `None` after saying why the test skips.
fn python(test: &str) -> Option<&'static str> {
    let found = ["python3", "/usr/bin/python3"].into_iter().find(|p| {
        Command::new(p)
            .args([
                "-c",
                "import sendgrid, mailgun.security, sns_message_validator, cryptography, requests",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if found.is_none() {
        let why = "python3 with the email providers' SDKs not found (pip install sendgrid mailgun aws-sns-message-validator)";
        assert_ne!(
            std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "{test}: {why}"
        );
        postbud_sandbox::skipped(&format!("{test}: {why}"));
    }
    found
}

/// What `provider_sdks.py <args>` prints with `stdin` as its input.
fn run(python: &str, args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write");
    let output = child.wait_with_output().expect("python ran");
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf8")
        .trim()
        .to_owned()
}

/// An app serving `/reports/mail` for an email channel with `events`; its base URL. (No SMTP
/// server: nothing is sent, and the events are about deliveries it does not know, which a
/// verified request gets 200 for and a refused one 401 or 400.)
async fn served(
    events: &str,
    ca_file: Option<&std::path::Path>,
) -> (String, Arc<App>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let ca = ca_file
        .map(|f| format!("ca_file = \"{}\"\n", f.display()))
        .unwrap_or_default();
    let toml = format!(
        "{dintero}\n[server]\npublic_url = \"{base}\"\n\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
         [channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"faktura@merchant.example\"\n{ca}\n\
         [channels.mail.events]\n{events}\n\n[[routes]]\ndeliver = [\"mail\"]\n",
        dintero = postbud_sandbox::dintero_toml("http://127.0.0.1:9"),
        dir = dir.path().display()
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
    (format!("{base}/reports/mail"), app, dir)
}

/// A message Postbud sent, as the provider's relay saw it (for a delivery the app never made).
fn sent() -> Sent {
    Sent::parse(
        b"Message-ID: <dlv-0123456789abcdef01234567@merchant.example>\r\n\
          X-SMTPAPI: {\"unique_args\":{\"postbud_delivery\":\"dlv-0123456789abcdef01234567\"}}\r\n\
          X-Mailgun-Variables: {\"postbud_delivery\":\"dlv-0123456789abcdef01234567\"}\r\n\
          X-SES-MESSAGE-TAGS: postbud_delivery=dlv-0123456789abcdef01234567\r\n\r\n",
        "kari@example.no",
    )
}

fn header<'a>(post: &'a Post, name: &str) -> &'a str {
    post.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
        .expect("header")
}

const BOUNCE: &str = "550 5.1.1 no such user";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sendgrid_sdk_verifies_the_sandbox_and_postbud_verifies_independent_signatures() {
    let test = "sendgrid_sdk_verifies_the_sandbox_and_postbud_verifies_independent_signatures";
    let Some(python) = python(test) else { return };
    // The SDK checks what the sandbox signs; and refuses it changed.
    let sandbox = SendGrid::new();
    let post = sandbox.sign_now(&[sandbox.event(&sent(), &Outcome::Bounced(BOUNCE.into()))]);
    let args = |post: &Post| {
        vec![
            "sendgrid-verify".to_owned(),
            sandbox.public_key(),
            header(post, "X-Twilio-Email-Event-Webhook-Signature").to_owned(),
            header(post, "X-Twilio-Email-Event-Webhook-Timestamp").to_owned(),
        ]
    };
    let verify = |post: &Post| {
        let args = args(post);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(python, &args, &post.body)
    };
    assert_eq!(verify(&post), "valid");
    let mut changed = post.body.clone();
    changed[3] ^= 1;
    assert_eq!(verify(&post.clone().with_body(changed)), "invalid");

    // Postbud verifies what `cryptography` signs with a key it made.
    let body = format!(
        "[{}]\r\n",
        serde_json::to_string(&sandbox.event(&sent(), &Outcome::Delivered)).expect("json")
    );
    let signed: serde_json::Value =
        serde_json::from_str(&run(python, &["sendgrid-sign"], body.as_bytes())).expect("json");
    let (url, _app, _dir) = served(
        &format!(
            "provider = \"sendgrid\"\npublic_key = \"{}\"",
            signed["public_key"].as_str().expect("key")
        ),
        None,
    )
    .await;
    let post = Post {
        headers: vec![
            (
                "X-Twilio-Email-Event-Webhook-Signature".into(),
                signed["signature"].as_str().expect("sig").into(),
            ),
            (
                "X-Twilio-Email-Event-Webhook-Timestamp".into(),
                signed["timestamp"].as_str().expect("ts").into(),
            ),
        ],
        body: body.into_bytes(),
    };
    let (status, answer) = post.send(&url).await.expect("posted");
    assert_eq!((status, answer.as_str()), (200, "recorded 0, ignored 1"));
    let forged = post.clone().with_body(b"[]\r\n".to_vec());
    assert_eq!(forged.send(&url).await.expect("posted").0, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sns_validators_verify_the_sandbox_and_postbud_verifies_independent_signatures() {
    let test = "sns_validators_verify_the_sandbox_and_postbud_verifies_independent_signatures";
    let Some(python) = python(test) else { return };
    let sns = Sns::start(TOPIC).await.expect("SNS stand-in");
    let ca = sns.ca_file();
    let ca = ca.to_str().expect("path");
    let regex = r"^https://127\.0\.0\.1:[0-9]+/";
    let event = sns.ses_event(&sent(), &Outcome::Bounced(BOUNCE.into()));
    for version in [SignatureVersion::V1, SignatureVersion::V2] {
        let post = sns.notify_now(&event, version);
        assert_eq!(
            run(python, &["sns-verify", ca, regex], &post.body),
            "valid",
            "{version:?}"
        );
        let forged = String::from_utf8(post.body.clone())
            .expect("utf8")
            .replace("Permanent", "Transient");
        assert_ne!(
            run(python, &["sns-verify", ca, regex], forged.as_bytes()),
            "valid",
            "{version:?} changed"
        );
    }
    let confirmation = sns.subscription_confirmation(SignatureVersion::V1);
    assert_eq!(
        run(python, &["sns-verify", ca, regex], &confirmation.body),
        "valid"
    );

    // Postbud verifies what `cryptography` signs, over AWS's canonical string as the script
    // builds it, with the test key whose certificate the stand-in serves.
    let (url, _app, _dir) = served(
        &format!(
            "provider = \"ses\"\ntopic_arn = \"{TOPIC}\"\ncertificate_origins = [\"{}\"]",
            sns.origin()
        ),
        Some(&sns.ca_file()),
    )
    .await;
    let key_file = tempfile::NamedTempFile::new().expect("file");
    std::fs::write(key_file.path(), postbud_sandbox::email_events::SIGNING_KEY).expect("key");
    for version in ["1", "2"] {
        let fields = serde_json::json!({
            "Type": "Notification",
            "MessageId": format!("independent-{version}"),
            "TopicArn": TOPIC,
            "Subject": "Amazon SES Email Event Notification",
            "Message": event.to_string(),
            "Timestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        });
        let signed = run(
            python,
            &[
                "sns-sign",
                version,
                key_file.path().to_str().expect("path"),
                &sns.certificate_url(),
            ],
            fields.to_string().as_bytes(),
        );
        let post = Post {
            headers: vec![("Content-Type".into(), "text/plain; charset=UTF-8".into())],
            body: signed.clone().into_bytes(),
        };
        let (status, answer) = post.send(&url).await.expect("posted");
        assert_eq!(
            (status, answer.as_str()),
            (200, "recorded 0, ignored 1"),
            "version {version}"
        );
        let forged = post.with_body(signed.replace("Amazon SES", "Amazon SEZ"));
        assert_eq!(
            forged.send(&url).await.expect("posted").0,
            401,
            "version {version}, the subject changed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailgun_sdk_verifies_the_sandbox_and_postbud_verifies_independent_signatures() {
    let test = "mailgun_sdk_verifies_the_sandbox_and_postbud_verifies_independent_signatures";
    let Some(python) = python(test) else { return };
    let key = "mailgun-webhook-signing-key";
    let sandbox = Mailgun::new(key);
    let post = sandbox.sign_now(&sandbox.event(&sent(), &Outcome::Bounced(BOUNCE.into())));
    let body: serde_json::Value = serde_json::from_slice(&post.body).expect("json");
    let signature = &body["signature"];
    let field = |name: &str| signature[name].as_str().expect("field").to_owned();
    let (timestamp, token, hmac) = (field("timestamp"), field("token"), field("signature"));
    assert_eq!(
        run(
            python,
            &["mailgun-verify", key, &token, &timestamp, &hmac],
            b""
        ),
        "valid"
    );
    assert_eq!(
        run(
            python,
            &["mailgun-verify", "another-key", &token, &timestamp, &hmac],
            b""
        ),
        "invalid"
    );

    let (url, _app, _dir) = served(
        &format!("provider = \"mailgun\"\nsigning_key = \"{key}\""),
        None,
    )
    .await;
    let event = sandbox.event(&sent(), &Outcome::Delivered);
    let signed = run(python, &["mailgun-sign", key], event.to_string().as_bytes());
    let post = Post {
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: signed.clone().into_bytes(),
    };
    let (status, answer) = post.send(&url).await.expect("posted");
    assert_eq!((status, answer.as_str()), (200, "recorded 0, ignored 1"));
    let other = run(
        python,
        &["mailgun-sign", "another-key"],
        event.to_string().as_bytes(),
    );
    assert_eq!(
        post.with_body(other).send(&url).await.expect("posted").0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postmarks_url_credentials_sent_by_requests_are_taken_and_others_refused() {
    let test = "postmarks_url_credentials_sent_by_requests_are_taken_and_others_refused";
    let Some(python) = python(test) else { return };
    let (url, _app, _dir) = served(
        "provider = \"postmark\"\nusername = \"hook\"\npassword = \"p4ss:word\"",
        None,
    )
    .await;
    let record = Postmark::new("hook", "p4ss:word")
        .record(&sent(), &Outcome::Bounced(BOUNCE.into()))
        .expect("record");
    let body = record.to_string();
    let with = |credentials: &str| url.replacen("http://", &format!("http://{credentials}@"), 1);
    assert_eq!(
        run(
            python,
            &["postmark-post", &with("hook:p4ss%3Aword")],
            body.as_bytes()
        ),
        "200"
    );
    assert_eq!(
        run(
            python,
            &["postmark-post", &with("hook:wrong")],
            body.as_bytes()
        ),
        "401"
    );
    assert_eq!(
        run(python, &["postmark-post", &url], body.as_bytes()),
        "401"
    );
}
