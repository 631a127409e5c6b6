//! The email channel against a real SMTP server (aiosmtpd, STARTTLS and AUTH required) and the
//! Dintero sandbox, through the library's public face.

use mail_parser::{MessageParser, MimeHeaders};
use postbud::{App, JobState, Settings, Verdict};
use postbud_sandbox::{Sandbox, Seed, smtp::SmtpServer};

struct Setup {
    sandbox: Sandbox,
    smtp: SmtpServer,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start(test: &str) -> Option<Self> {
        let smtp = SmtpServer::start_or_skip(test)?;
        let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
        Some(Self {
            sandbox,
            smtp,
            dir: tempfile::tempdir().expect("dir"),
        })
    }

    /// An app whose `mail` channel is the email channel; `extra` adds keys to it and tables.
    async fn app(&self, mail_keys: &str, extra: &str) -> App {
        let routes = if extra.contains("[[routes]]") {
            ""
        } else {
            "[[routes]]\ndeliver = [\"mail\"]\n"
        };
        let toml = format!(
            r#"
{dintero}
[store]
url = "sqlite://{dir}/postbud.db"

[engine]
backoff_base = "50ms"
backoff_max = "200ms"

[channels.archive]
kind = "folder"
path = "{dir}/invoices"

[channels.mail]
kind = "email"
smtp_url = "{smtp}"
ca_file = "{ca}"
from = "Merchant AS <faktura@merchant.example>"
reply_to = "regnskap@merchant.example"
timeout = "5s"
{mail_keys}

{extra}
{routes}
"#,
            dintero = self.sandbox.dintero_toml(),
            dir = self.dir.path().display(),
            smtp = self.smtp.url(),
            ca = self.smtp.ca_file().display(),
        );
        App::open(&Settings::from_toml(&toml).expect("settings"))
            .await
            .expect("app")
    }
}

/// The kinds of the core plus this crate's, linked explicitly: a test binary that never names
/// the crate would lose its `inventory` entry.
fn registry() -> postbud::Registry {
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_email::register(&mut registry).expect("no duplicate");
    registry
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn billing(email: &str, country: &str) -> serde_json::Value {
    serde_json::json!({"first_name": "Kari", "last_name": "Nordmann", "email": email, "address_line": "Storgata 1",
        "postal_code": "0151", "postal_place": "Oslo", "country": country})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_invoice_email_is_well_formed_and_carries_the_same_pdf() {
    let Some(s) = Setup::start("the_invoice_email_is_well_formed_and_carries_the_same_pdf").await
    else {
        return;
    };
    let app = s.app("", "").await;
    let id = s.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");

    let messages = s.smtp.messages();
    assert_eq!(messages.len(), 1);
    let envelope = &messages[0].envelope;
    assert_eq!(envelope["tls"], true, "STARTTLS was used");
    assert_eq!(envelope["auth"], true, "AUTH was used");
    assert_eq!(envelope["rcpt_tos"], serde_json::json!(["kari@example.no"]));

    let message = MessageParser::default()
        .parse(&messages[0].raw)
        .expect("parses");
    let expected_id = format!(
        "{}@merchant.example",
        postbud::ids::delivery_id(&id, "mail")
    );
    assert_eq!(message.message_id(), Some(expected_id.as_str()));
    let number = s.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("n")
        .to_owned();
    assert_eq!(
        message.subject(),
        Some(format!("Faktura {number} fra Sandbox Merchant AS").as_str())
    );
    assert!(message.reply_to().is_some());

    // multipart/mixed { multipart/alternative { text/plain, text/html }, application/pdf }
    let root = message.root_part();
    assert_eq!(
        root.content_type()
            .map(|c| (c.c_type.as_ref(), c.subtype())),
        Some(("multipart", Some("mixed")))
    );
    let parts: Vec<(String, String)> = message
        .parts
        .iter()
        .map(|p| {
            p.content_type()
                .map(|c| {
                    (
                        c.c_type.to_string(),
                        c.subtype().unwrap_or_default().to_owned(),
                    )
                })
                .unwrap_or_default()
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("multipart", "mixed"),
        ("multipart", "alternative"),
        ("text", "plain"),
        ("text", "html"),
        ("application", "pdf"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(parts, expected, "MIME structure");
    let text = message.body_text(0).expect("text");
    assert!(
        text.contains(&number) && text.contains("500,00\u{a0}kr"),
        "{text}"
    );
    let html = message.body_html(0).expect("html");
    assert!(html.contains("<strong>500,00\u{a0}kr</strong>"), "{html}");

    let attachment = message.attachment(0).expect("the PDF is attached");
    assert_eq!(
        attachment.attachment_name(),
        Some(format!("{number}.pdf").as_str())
    );
    assert_eq!(
        sha256(attachment.contents()),
        sha256(&s.sandbox.pdf(&id).expect("pdf"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_451_is_retried_and_the_message_id_stays_the_same() {
    let Some(s) = Setup::start("a_451_is_retried_and_the_message_id_stays_the_same").await else {
        return;
    };
    let app = s.app("", "").await;
    let id = s.sandbox.seed(Seed {
        billing_address: Some(billing("greylist-kari@example.no", "NO")),
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("mail"))
        .expect("job");
    assert_eq!(job.attempts, 2);
    let history = app.history(&id).await.expect("history");
    let retry = history
        .iter()
        .find(|e| e.event == "retry")
        .expect("a retry");
    assert!(retry.detail.contains("451"), "{retry:?}");
    let expected_id = format!(
        "<{}@merchant.example>",
        postbud::ids::delivery_id(&id, "mail")
    );
    assert!(
        job.receipt
            .as_deref()
            .unwrap_or_default()
            .contains(&expected_id),
        "{job:?}"
    );
    let messages = s.smtp.messages();
    assert_eq!(messages.len(), 1);
    let message = MessageParser::default()
        .parse(&messages[0].raw)
        .expect("parses");
    assert_eq!(
        message.message_id().map(|m| format!("<{m}>")),
        Some(expected_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_550_fails_permanently_and_the_fallback_delivers() {
    let Some(s) = Setup::start("a_550_fails_permanently_and_the_fallback_delivers").await else {
        return;
    };
    let app = s
        .app(
            "",
            "[[routes]]\ndeliver = [\"mail\"]\nfallback = [\"archive\"]\n",
        )
        .await;
    let id = s.sandbox.seed(Seed {
        billing_address: Some(billing("reject-me@example.no", "NO")),
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let mail = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("mail"))
        .expect("mail job");
    assert_eq!(
        (mail.state, mail.attempts),
        (JobState::Failed, 1),
        "no retry after a 550"
    );
    assert!(
        mail.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("550"),
        "{mail:?}"
    );
    let archive = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("archive"))
        .expect("fallback");
    assert_eq!(archive.state, JobState::Done);
    assert!(s.smtp.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_does_not_parse_fails_permanently() {
    let Some(s) = Setup::start("an_address_that_does_not_parse_fails_permanently").await else {
        return;
    };
    let app = s.app("", "").await;
    let id = s.sandbox.seed(Seed {
        billing_address: Some(billing("kari at example", "NO")),
        ..Seed::default()
    });
    let outcome = app.deliver_now(&id).await.expect("deliver");
    let mail = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("mail"))
        .expect("mail job");
    assert_eq!(mail.state, JobState::Failed);
    assert!(
        mail.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("`kari at example` is not an email address"),
        "{mail:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_of_the_four_languages_renders() {
    let Some(s) = Setup::start("each_of_the_four_languages_renders").await else {
        return;
    };
    let app = s.app("", "").await;
    let cases = [
        ("NO", "Faktura", "fra", "500,00\u{a0}kr", "Vennlig hilsen"),
        (
            "SE",
            "Faktura",
            "från",
            "500,00\u{a0}kr",
            "Med vänliga hälsningar",
        ),
        (
            "FI",
            "Lasku",
            "–",
            "500,00\u{a0}€",
            "Ystävällisin terveisin",
        ),
        ("GB", "Invoice", "from", "EUR\u{a0}500.00", "Kind regards"),
    ];
    for (country, word, from, amount, closing) in cases {
        let currency = if matches!(country, "FI" | "GB") {
            "EUR"
        } else if country == "SE" {
            "SEK"
        } else {
            "NOK"
        };
        let id = s.sandbox.seed(Seed {
            billing_address: Some(billing("kari@example.no", country)),
            currency: Some(currency.into()),
            ..Seed::default()
        });
        assert_eq!(
            app.deliver_now(&id).await.expect("deliver").verdict(),
            Verdict::Delivered
        );
        let messages = s.smtp.messages();
        let message = MessageParser::default()
            .parse(&messages.last().expect("one more").raw)
            .expect("parses");
        let subject = message.subject().unwrap_or_default().to_owned();
        assert!(
            subject.starts_with(word) && subject.contains(from),
            "{country}: {subject}"
        );
        let text = message.body_text(0).expect("text");

        assert!(
            text.contains(amount) && text.contains(closing),
            "{country}: {text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voided_invoice_gets_a_cancellation_threaded_under_the_invoice() {
    let Some(s) =
        Setup::start("a_voided_invoice_gets_a_cancellation_threaded_under_the_invoice").await
    else {
        return;
    };
    let app = s.app("", "").await;
    let id = s.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    app.void(&id, std::time::Duration::from_secs(10))
        .await
        .expect("void");
    let messages = s.smtp.messages();
    assert_eq!(messages.len(), 2);
    let invoice = MessageParser::default()
        .parse(&messages[0].raw)
        .expect("parses");
    let cancel = MessageParser::default()
        .parse(&messages[1].raw)
        .expect("parses");
    assert!(
        cancel
            .subject()
            .unwrap_or_default()
            .starts_with("Kreditert"),
        "{:?}",
        cancel.subject()
    );
    assert_eq!(cancel.in_reply_to().as_text(), invoice.message_id());
    assert_ne!(cancel.message_id(), invoice.message_id());
    assert!(cancel.attachment(0).is_none(), "no PDF with a cancellation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_pdf_is_replaced_by_the_signed_link() {
    let Some(s) = Setup::start("a_large_pdf_is_replaced_by_the_signed_link").await else {
        return;
    };
    let app = s
        .app(
            "max_attachment_bytes = 100",
            "[server]\npublic_url = \"https://invoices.merchant.example\"\n",
        )
        .await;
    let id = s.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let messages = s.smtp.messages();
    let message = MessageParser::default()
        .parse(&messages[0].raw)
        .expect("parses");
    assert!(message.attachment(0).is_none());
    let text = message.body_text(0).expect("text");
    assert!(
        text.contains(&format!(
            "https://invoices.merchant.example/invoices/{id}.pdf?expires="
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connects_upgrades_and_authenticates_without_sending() {
    let Some(s) = Setup::start("check_connects_upgrades_and_authenticates_without_sending").await
    else {
        return;
    };
    let app = s.app("", "").await;
    let results = app.check().await;
    let mail = results
        .iter()
        .find(|(name, _)| name == "mail")
        .expect("mail");
    assert!(mail.1.is_ok(), "{:?}", mail.1);
    let said = mail.1.as_ref().expect("ok");
    assert!(
        said.contains("STARTTLS required"),
        "check says whether TLS is on: {said}"
    );
    assert!(s.smtp.messages().is_empty());
    let wrong = s.app("password = \"wrong\"", "").await;
    let results = wrong.check().await;
    let error = results
        .iter()
        .find(|(name, _)| name == "mail")
        .expect("mail")
        .1
        .clone()
        .expect_err("bad password");
    assert!(
        error.to_string().contains("535") || error.to_string().to_lowercase().contains("auth"),
        "{error}"
    );
    assert!(
        !error.to_string().contains("wrong"),
        "no password in errors: {error}"
    );
    assert_eq!(error.kind(), postbud::ErrorKind::Unauthorized, "{error}");
    assert_eq!(error.config_key(), Some("password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_stops_the_delivery_for_the_operator_without_the_fallback() {
    let Some(s) =
        Setup::start("a_refused_login_stops_the_delivery_for_the_operator_without_the_fallback")
            .await
    else {
        return;
    };
    let app = s
        .app(
            "password = \"wrong-R2D2\"",
            "[[routes]]\ndeliver = [\"mail\"]\nfallback = [\"archive\"]\n",
        )
        .await;
    let id = s.sandbox.seed(Seed::default());
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::NeedsAttention, "{outcome}");
    let mail = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("mail"))
        .expect("mail job");
    // One attempt, stopped: not a permanent failure of the invoice, no retries used up.
    assert_eq!((mail.state, mail.attempts), (JobState::Dead, 1), "{mail:?}");
    let error = mail.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with(postbud::credentials::CREDENTIALS_REFUSED)
            && error.contains("not authorised")
            && error.contains("535")
            && error.contains("fix channels.mail.password"),
        "{error}"
    );
    assert!(
        outcome
            .jobs
            .iter()
            .all(|j| j.channel.as_deref() != Some("archive")),
        "the fallback does not run for a key to fix: {outcome}"
    );
    let history = app.history(&id).await.expect("history");
    let shown = format!("{history:?} {outcome}");
    assert!(shown.contains("fix channels.mail.password"), "{shown}");
    assert!(
        !shown.contains("R2D2"),
        "no password in the history: {shown}"
    );
    assert!(s.smtp.messages().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_errors_are_reported_when_the_channel_is_built() {
    let Some(s) = Setup::start("template_errors_are_reported_when_the_channel_is_built").await
    else {
        return;
    };
    let templates = s.dir.path().join("templates");
    std::fs::create_dir_all(templates.join("nb")).expect("dir");
    std::fs::write(
        templates.join("nb/subject.txt"),
        "Faktura {{ invoice.nummer }}",
    )
    .expect("write");
    let toml = format!(
        "[channels.mail]\nkind = \"email\"\nsmtp_url = \"{}\"\nfrom = \"a@b.example\"\ntemplates = \"{}\"\n",
        s.smtp.url(),
        templates.display()
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let error = registry()
        .build_all(&settings)
        .expect_err("broken template")
        .to_string();
    assert!(
        error.contains("channels.mail.templates") && error.contains("nb/subject.txt"),
        "{error}"
    );
    assert!(
        !error.contains(postbud_sandbox::smtp::PASSWORD),
        "no password in errors: {error}"
    );
}

/// DKIM-signed messages verify with dkimpy (Debian's python3-dkim), given the public key as the
/// DNS record would publish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkim_signatures_verify_with_an_independent_implementation() {
    let Some(s) = Setup::start("dkim_signatures_verify_with_an_independent_implementation").await
    else {
        return;
    };
    let dir = s.dir.path();
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .status()
            .expect("openssl");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&["genrsa", "-traditional", "-out", "dkim.pem", "2048"]);
    openssl(&[
        "rsa",
        "-in",
        "dkim.pem",
        "-pubout",
        "-outform",
        "DER",
        "-out",
        "dkim.pub.der",
    ]);
    let app = s
        .app(&format!("dkim = {{ domain = \"merchant.example\", selector = \"postbud\", private_key_file = \"{}/dkim.pem\" }}", dir.display()), "")
        .await;
    let id = s.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let messages = s.smtp.messages();
    let raw = &messages[0].raw;
    assert!(
        String::from_utf8_lossy(raw).contains("d=merchant.example"),
        "signed"
    );
    std::fs::write(dir.join("message.eml"), raw).expect("write");
    let verify = r#"
import base64, sys
try:
    import dkim
except ImportError:
    print("NO-DKIMPY"); sys.exit(0)
key = base64.b64encode(open(sys.argv[2], "rb").read()).decode()
record = ("v=DKIM1; k=rsa; p=" + key).encode()
ok = dkim.verify(open(sys.argv[1], "rb").read(), dnsfunc=lambda name, timeout=5: record)
print("VALID" if ok else "INVALID")
"#;
    let output = std::process::Command::new("/usr/bin/python3")
        .args(["-c", verify])
        .arg(dir.join("message.eml"))
        .arg(dir.join("dkim.pub.der"))
        .output()
        .expect("python3");
    let verdict = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if verdict == "NO-DKIMPY" {
        assert_ne!(
            std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "python3-dkim is required"
        );
        postbud_sandbox::skipped("the DKIM verification: python3-dkim is not installed");
        return;
    }
    assert_eq!(
        verdict,
        "VALID",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_password_is_never_configured_to_travel_without_tls_except_on_loopback() {
    let build = |url: &str| {
        let toml = format!(
            "[channels.mail]\nkind = \"email\"\nsmtp_url = \"{url}\"\nfrom = \"a@b.example\"\n"
        );
        let settings = Settings::from_toml(&toml).expect("settings");
        registry()
            .build_all(&settings)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for url in [
        "smtp://user:hunter2@mail.example:587",
        "smtp://user:hunter2@mail.example:587?tls=none",
        "smtp://user:hunter2@mail.example:587?tls=opportunistic",
        "smtp://user:hunter2@10.0.0.5:25",
    ] {
        let error = build(url).expect_err(url);
        assert!(
            error.contains("without TLS") && error.contains("tls=required"),
            "{url}: {error}"
        );
        assert!(!error.contains("hunter2"), "{error}");
    }
    for url in [
        "smtp://user:pw@mail.example:587?tls=required",
        "smtps://user:pw@mail.example:465",
        "smtp://user:pw@127.0.0.1:2525",
        "smtp://mail.example:25",
    ] {
        build(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    }
}

/// The DKIM key inline (`private_key`) or from a file (`private_key_file`, the configuration's
/// `<key>_file` rule); one that does not parse is named, never shown.
#[tokio::test]
async fn a_dkim_key_is_taken_inline_or_from_a_file_and_a_bad_one_is_never_shown() {
    let dir = tempfile::tempdir().expect("dir");
    // An Ed25519 seed: 32 bytes, base64.
    let seed = "QkFTRTY0LWVkMjU1MTktc2VlZC1mb3ItZGtpbS10ZXM=";
    let build = |dkim: &str| {
        let toml = format!(
            "[channels.mail]\nkind = \"email\"\nsmtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"a@b.example\"\n\
             dkim = {{ domain = \"b.example\", selector = \"s\", algorithm = \"ed25519\", {dkim} }}\n"
        );
        let settings = Settings::from_toml(&toml).map_err(|e| e.to_string())?;
        registry()
            .build_all(&settings)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    build(&format!("private_key = \"{seed}\"")).expect("inline");
    let file = dir.path().join("dkim.key");
    std::fs::write(&file, format!("{seed}\n")).expect("write");
    build(&format!("private_key_file = \"{}\"", file.display())).expect("from a file");
    std::fs::write(&file, "not-a-key-K3YC0NTENT\n").expect("write");
    let error = build(&format!("private_key_file = \"{}\"", file.display())).expect_err("bad");
    assert!(
        error.contains("channels.mail.dkim.private_key") && error.contains("ed25519"),
        "{error}"
    );
    assert!(!error.contains("K3YC0NTENT"), "{error}");
    let error = build(&format!(
        "private_key = \"{seed}\", private_key_file = \"{}\"",
        file.display()
    ))
    .expect_err("both");
    assert!(error.contains("set one of them"), "{error}");
    assert!(
        !error.contains(seed) && !error.contains("K3YC0NTENT"),
        "{error}"
    );
}

/// With `[bounces]` set, each message goes over a connection of its own (to carry the DSN
/// parameters): STARTTLS and AUTH as before, the VERP return path as the envelope sender, the
/// same `Message-ID` on a retry, and a 550 and a 451 classified as the pooled transport's are.
/// aiosmtpd offers no DSN, so none is asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_bounces_the_return_path_names_the_delivery_and_tls_auth_and_retries_hold() {
    let Some(s) = Setup::start(
        "with_bounces_the_return_path_names_the_delivery_and_tls_auth_and_retries_hold",
    )
    .await
    else {
        return;
    };
    let bounces = "[channels.mail.bounces]\nimap_url = \"imap://bounces:pw@127.0.0.1:9/INBOX\"\nreturn_path = \"bounces@merchant.example\"\n\n[[routes]]\ndeliver = [\"mail\"]\nfallback = [\"archive\"]\n";
    let app = s.app("", bounces).await;

    let greylisted = s.sandbox.seed(Seed {
        billing_address: Some(billing("greylist-kari@example.no", "NO")),
        ..Seed::default()
    });
    let outcome = app.deliver_now(&greylisted).await.expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("mail"))
        .expect("job");
    assert_eq!((job.state, job.attempts), (JobState::Done, 2), "{job:?}");
    let receipt = job.receipt.as_deref().unwrap_or_default();
    assert!(
        receipt.contains("return path with the delivery id (the server offers no DSN)"),
        "{receipt}"
    );
    let delivery = postbud::ids::delivery_id(&greylisted, "mail");
    assert!(
        receipt.contains(&format!("<{delivery}@merchant.example>")),
        "{receipt}"
    );
    let messages = s.smtp.messages();
    assert_eq!(messages.len(), 1);
    let envelope = &messages[0].envelope;
    assert_eq!(
        envelope["mail_from"],
        format!("bounces+{delivery}@merchant.example")
    );
    assert_eq!(
        envelope["rcpt_tos"],
        serde_json::json!(["greylist-kari@example.no"])
    );
    assert_eq!(envelope["tls"], true, "STARTTLS was used");
    assert_eq!(envelope["auth"], true, "AUTH was used");
    let message = MessageParser::default()
        .parse(&messages[0].raw)
        .expect("parses");
    assert_eq!(
        message.message_id(),
        Some(format!("{delivery}@merchant.example").as_str())
    );
    assert_eq!(
        message
            .from()
            .and_then(|f| f.first())
            .and_then(|a| a.address()),
        Some("faktura@merchant.example"),
        "the From stays the merchant's"
    );

    let rejected = s.sandbox.seed(Seed {
        billing_address: Some(billing("reject-me@example.no", "NO")),
        ..Seed::default()
    });
    let outcome = app.deliver_now(&rejected).await.expect("deliver");
    let mail = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("mail"))
        .expect("mail job");
    assert_eq!(
        (mail.state, mail.attempts),
        (JobState::Failed, 1),
        "{mail:?}"
    );
    assert!(
        mail.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("550"),
        "{mail:?}"
    );
}
