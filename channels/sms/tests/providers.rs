//! The SMS channel against the provider stand-ins of `postbud-sandbox`, with `postbud serve`'s
//! router on loopback for the signed links and the delivery reports.

use std::{sync::Arc, time::Duration};

use postbud::{App, JobState, Settings, Verdict};
use postbud_sandbox::{Sandbox, Seed, sms};

struct Setup {
    sandbox: Sandbox,
    app: Arc<App>,
    base: String,
    _dir: tempfile::TempDir,
}

fn credentials(provider: &str) -> String {
    match provider {
        "twilio" => format!(
            "account_sid = \"{}\"\nauth_token = \"{}\"",
            sms::TWILIO_SID,
            sms::TWILIO_TOKEN
        ),
        "vonage" => format!(
            "api_key = \"{}\"\napi_secret = \"{}\"",
            sms::VONAGE_KEY.0,
            sms::VONAGE_KEY.1
        ),
        "sinch" => format!(
            "service_plan_id = \"{}\"\napi_token = \"{}\"",
            sms::SINCH_PLAN.0,
            sms::SINCH_PLAN.1
        ),
        "linkmobility" => format!(
            "username = \"{}\"\npassword = \"{}\"\nplatform_id = \"SMS\"\nplatform_partner_id = \"1234\"",
            sms::LINK_USER.0,
            sms::LINK_USER.1
        ),
        "46elks" => format!(
            "username = \"{}\"\npassword = \"{}\"",
            sms::ELKS_USER.0,
            sms::ELKS_USER.1
        ),
        other => panic!("no credentials for {other}"),
    }
}

async fn setup(provider: &str, extra_keys: &str) -> Setup {
    setup_under(provider, extra_keys, "").await
}

/// [`setup`] with `server.public_url` = the router's address + `path` (a proxy that passes the
/// path on).
async fn setup_under(provider: &str, extra_keys: &str, path: &str) -> Setup {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}{path}", listener.local_addr().expect("addr"));
    let channel = if provider == "http" {
        extra_keys.to_owned()
    } else {
        format!(
            "base_url = \"{}\"\n{}\n{extra_keys}",
            sandbox.provider_url(provider),
            credentials(provider)
        )
    };
    let toml = format!(
        "{dintero}\n\
         [server]\npublic_url = \"{base}\"\n\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
         [engine]\nbackoff_base = \"20ms\"\nbackoff_max = \"50ms\"\nmax_attempts = 2\n\n[channels.archive]\nkind = \"folder\"\npath = \"{dir}/invoices\"\n\n\
         [channels.sms]\nkind = \"sms\"\nprovider = \"{provider}\"\nfrom = \"Merchant\"\n{channel}\n\n[[routes]]\ndeliver = [\"sms\"]\nfallback = [\"archive\"]\n",
        dintero = sandbox.dintero_toml(),
        dir = dir.path().display()
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_sms::register(&mut registry).expect("no duplicate");
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
    Setup {
        sandbox,
        app,
        base,
        _dir: dir,
    }
}

fn phone(number: &str) -> Seed {
    Seed {
        billing_address: Some(
            serde_json::json!({"first_name": "Kari", "last_name": "Nordmann", "phone_number": number, "country": "NO"}),
        ),
        ..Seed::default()
    }
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Success, a temporary error (retried, then dead-lettered) and a permanent one (no retry) for
/// one provider.
async fn three_outcomes(provider: &str, expected_to: &str) {
    let s = setup(provider, "").await;
    // Success: the number is normalised, the text carries the signed link.
    let id = s.sandbox.seed(phone("912 34 567"));
    let outcome = s.app.deliver_now(&id).await.expect("deliver");
    assert_eq!(
        outcome.verdict(),
        Verdict::Delivered,
        "{provider}: {outcome}"
    );
    let sent = s.sandbox.stats().sms;
    assert_eq!(sent.len(), 1, "{provider}");
    assert_eq!(
        sent[0].to, expected_to,
        "{provider}: E.164 as the provider wants it"
    );
    assert!(
        sent[0]
            .text
            .contains(&format!("{}/invoices/{id}.pdf?expires=", s.base)),
        "{provider}: {}",
        sent[0].text
    );
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("sms"))
        .expect("job");
    assert!(
        job.receipt.as_deref().unwrap_or_default().contains("(ref "),
        "{provider}: the provider's id is kept: {job:?}"
    );
    if matches!(provider, "vonage" | "sinch" | "linkmobility") {
        assert_eq!(
            sent[0].reference.as_deref(),
            Some(job.id.as_str()),
            "{provider}: the delivery id is the client reference"
        );
    }

    // Temporary: retried up to max_attempts (2), then dead; the fallback delivers.
    let id = s.sandbox.seed(phone("+4791230000"));
    let outcome = s.app.deliver_now(&id).await.expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("sms"))
        .expect("job");
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Dead, 2),
        "{provider}: {outcome}"
    );
    assert_eq!(
        outcome.verdict(),
        Verdict::Delivered,
        "{provider}: the fallback delivered"
    );

    // Permanent: one attempt, failed, the fallback delivers.
    let id = s.sandbox.seed(phone("+4791239999"));
    let outcome = s.app.deliver_now(&id).await.expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("sms"))
        .expect("job");
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Failed, 1),
        "{provider}: {outcome}"
    );
    assert_eq!(outcome.verdict(), Verdict::Delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio() {
    three_outcomes("twilio", "+4791234567").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage() {
    three_outcomes("vonage", "4791234567").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sinch() {
    three_outcomes("sinch", "+4791234567").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linkmobility() {
    three_outcomes("linkmobility", "+4791234567").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elks() {
    three_outcomes("46elks", "+4791234567").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_http_gateway_is_reached_by_configuration_alone() {
    // The generic request, configured to speak Twilio's shape to the Twilio stand-in.
    let s = setup("twilio", "").await;
    let preset = format!(
        "[channels.sms.http]\nurl = \"{}/2010-04-01/Accounts/{}/Messages.json\"\nauth = \"basic\"\nusername = \"{}\"\npassword = \"{}\"\n\
         fields = {{ to = \"To\", text = \"Body\", from = \"From\" }}\nmessage_id = \"/sid\"\nsuccess_pointer = \"/status\"\nsuccess_value = \"queued\"\n",
        s.sandbox.provider_url("twilio"),
        sms::TWILIO_SID,
        sms::TWILIO_SID,
        sms::TWILIO_TOKEN
    );
    let (generic, _dir) = setup_with_sandbox(&s.sandbox, &preset).await;
    let id = s.sandbox.seed(phone("91234567"));
    let outcome = generic.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("sms"))
        .expect("job");
    assert!(
        job.receipt
            .as_deref()
            .unwrap_or_default()
            .contains("(ref SM"),
        "{job:?}"
    );
}

/// An app on an existing sandbox whose `sms` channel is a generic HTTP gateway.
async fn setup_with_sandbox(sandbox: &Sandbox, preset: &str) -> (App, tempfile::TempDir) {
    app_with_channel(sandbox, &format!("provider = \"http\"\n\n{preset}")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_link_in_the_sms_downloads_the_same_pdf_from_postbud_serve() {
    let s = setup("46elks", "").await;
    let id = s.sandbox.seed(phone("91234567"));
    assert_eq!(
        s.app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let text = s.sandbox.stats().sms[0].text.clone();
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .expect("a link in the text");
    let body = reqwest::get(link)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(
        sha256(&body),
        sha256(&s.sandbox.pdf(&id).expect("pdf")),
        "{text}"
    );
    assert!(
        text.starts_with("Faktura SBX"),
        "Norwegian for a Norwegian customer: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_delivery_reports_are_verified_and_recorded() {
    let s = setup("twilio", "").await;
    let delivered = s.sandbox.seed(phone("+4791234567"));
    let undelivered = s.sandbox.seed(phone("+4791238888"));
    for id in [&delivered, &undelivered] {
        assert_eq!(
            s.app.deliver_now(id).await.expect("deliver").verdict(),
            Verdict::Delivered
        );
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.sandbox.stats().sms_reports.len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stand-in sent no reports"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        s.sandbox
            .stats()
            .sms_reports
            .iter()
            .all(|(_, status)| *status == 200),
        "{:?}",
        s.sandbox.stats().sms_reports
    );
    let events = |id: &str| {
        let app = Arc::clone(&s.app);
        let id = id.to_owned();
        async move {
            app.history(&id)
                .await
                .expect("history")
                .into_iter()
                .map(|e| format!("{} {}", e.event, e.detail))
                .collect::<Vec<_>>()
        }
    };
    let history = events(&delivered).await;
    assert!(
        history
            .iter()
            .any(|e| e.starts_with("evidence: delivered") && e.contains("MessageStatus=delivered")),
        "{history:?}"
    );
    let history = events(&undelivered).await;
    assert!(
        history
            .iter()
            .any(|e| e.starts_with("evidence: bounced") && e.contains("ErrorCode=30003")),
        "{history:?}"
    );

    // A forged report is refused: without the URL Postbud signed for this delivery, and with it
    // but without Twilio's own signature.
    let delivery = postbud::ids::delivery_id(&delivered, "sms");
    let post = |url: String| {
        reqwest::Client::new()
            .post(url)
            .header("X-Twilio-Signature", "AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .form(&[("MessageSid", "SMx"), ("MessageStatus", "undelivered")])
            .send()
    };
    let forged = post(format!("{}/reports/sms?delivery={delivery}", s.base))
        .await
        .expect("post");
    // Twilio's reports are taken on their own signature, which this one does not carry.
    assert_eq!(forged.status(), 401);
    assert!(
        forged
            .text()
            .await
            .expect("text")
            .contains("does not match")
    );
    let signed = s.app.links().expect("links").report_url("sms", &delivery);
    let forged = post(signed).await.expect("post");
    assert_eq!(forged.status(), 401);
    assert!(
        forged
            .text()
            .await
            .expect("text")
            .contains("does not match")
    );
    let history = events(&delivered).await;
    assert!(!history.iter().any(|e| e.contains("SMx")), "{history:?}");
}

/// `server.public_url` with a path, behind a proxy that passes it on: the link in the SMS and the
/// report URL Twilio calls carry it, Twilio's signature over that URL verifies, the link serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_a_public_url_with_a_path_links_and_twilio_reports_carry_it_and_verify() {
    let s = setup_under("twilio", "", "/postbud").await;
    assert!(s.base.ends_with("/postbud"), "{}", s.base);
    let id = s.sandbox.seed(phone("+4791234567"));
    assert_eq!(
        s.app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let text = s.sandbox.stats().sms[0].text.clone();
    let start = text
        .find(&format!("{}/invoices/{id}.pdf?", s.base))
        .unwrap_or_else(|| panic!("the link carries the path: {text}"));
    let link = text[start..].split_whitespace().next().expect("link");
    let pdf = reqwest::get(link).await.expect("get");
    assert_eq!(pdf.status(), 200, "{link}");
    assert_eq!(
        sha256(&pdf.bytes().await.expect("bytes")),
        sha256(&s.sandbox.pdf(&id).expect("pdf"))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.sandbox.stats().sms_reports.is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stand-in sent no report"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s.sandbox.stats().sms_reports[0].1,
        200,
        "the report, at {}/reports/sms?…, signed over that URL",
        s.base
    );
    let history = s.app.history(&id).await.expect("history");
    assert!(
        history.iter().any(|e| e.event == "evidence: delivered"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_providers_that_do_not_sign_are_accepted_only_on_the_url_postbud_signed() {
    let s = setup("vonage", "").await;
    // The stand-in's own receipt would come first: this test posts its own.
    s.sandbox.set_sms_reports(sms::Reports {
        delay: Duration::from_secs(3600),
        ..Default::default()
    });
    let id = s.sandbox.seed(phone("91234567"));
    assert_eq!(
        s.app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let delivery = postbud::ids::delivery_id(&id, "sms");
    let report = |url: String| {
        reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"status": "delivered", "messageId": "m-1"}))
            .send()
    };
    // Unsigned, or signed for another delivery: refused as unauthenticated, nothing recorded.
    let other = postbud::ids::delivery_id(&id, "archive");
    for url in [
        format!("{}/reports/sms?delivery={delivery}", s.base),
        s.app
            .links()
            .expect("links")
            .report_url("sms", &other)
            .replace(&other, &delivery),
    ] {
        assert_eq!(report(url).await.expect("post").status(), 401);
    }
    // Signed, but for a delivery of another channel: refused too.
    let archive = s.app.links().expect("links").report_url("sms", &other);
    assert_eq!(report(archive).await.expect("post").status(), 404);
    let history = s.app.history(&id).await.expect("history");
    assert!(
        !history.iter().any(|e| e.event.starts_with("evidence")),
        "{history:?}"
    );
    // The URL Postbud gave the provider: recorded.
    let signed = s.app.links().expect("links").report_url("sms", &delivery);
    assert_eq!(report(signed).await.expect("post").status(), 200);
    let history = s.app.history(&id).await.expect("history");
    assert!(
        history.iter().any(|e| e.event == "evidence: delivered"),
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_number_fails_permanently_with_the_reason_and_falls_back() {
    let s = setup("twilio", "").await;
    let id = s.sandbox.seed(phone("12"));
    let outcome = s.app.deliver_now(&id).await.expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("sms"))
        .expect("job");
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("`12`"),
        "{job:?}"
    );
    assert_eq!(
        outcome.verdict(),
        Verdict::Delivered,
        "the fallback delivered"
    );
    assert!(s.sandbox.stats().sms.is_empty(), "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_over_max_segments_is_refused_before_sending() {
    let s = setup("twilio", "max_segments = 1\nmerchant_name = \"Blåbær & Søn Trelast og Byggevarer AS, avdeling Nordre Aker\"").await;
    let id = s.sandbox.seed(phone("91234567"));
    let outcome = s.app.deliver_now(&id).await.expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("sms"))
        .expect("job");
    assert_eq!(job.state, JobState::Failed);
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or_default()
            .contains("over max_segments = 1"),
        "{job:?}"
    );
    assert!(s.sandbox.stats().sms.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_mobility_gets_no_four_byte_characters() {
    let s = setup("linkmobility", "merchant_name = \"Blåbær 🫐\"").await;
    let id = s.sandbox.seed(phone("91234567"));
    assert_eq!(
        s.app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let text = s.sandbox.stats().sms[0].text.clone();
    assert!(text.contains("fra Blåbær ?:"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_key_in_the_url_never_reaches_errors_history_or_the_store() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    // Nothing listens on port 9: every attempt fails with a transport error naming the URL.
    let preset = "[channels.sms.http]\nurl = \"http://127.0.0.1:9/send?api_key=KEY-0123456789&to_format=e164\"\nauth = \"none\"\n\
         fields = { to = \"to\", text = \"text\" }\n";
    let (app, dir) = setup_with_sandbox(&sandbox, preset).await;
    let id = sandbox.seed(phone("91234567"));
    let outcome = app
        .deliver_waiting(&id, Duration::from_millis(300))
        .await
        .expect("deliver");
    let job = outcome
        .jobs
        .iter()
        .find(|j| j.channel.as_deref() == Some("sms"))
        .expect("job");
    let error = job.last_error.clone().unwrap_or_default();
    assert!(error.contains("api_key=***"), "{error}");
    let history = app.history(&id).await.expect("history");
    let everything = format!("{error} {history:?}");
    assert!(!everything.contains("KEY-0123456789"), "{everything}");
    drop(app);
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let path = entry.expect("entry").path();
        // The -wal and -shm files may vanish as the last connection closes.
        if path.to_string_lossy().contains("postbud.db")
            && let Ok(bytes) = std::fs::read(&path)
        {
            assert!(
                !bytes.windows(14).any(|w| w == b"KEY-0123456789"),
                "{} holds the key",
                path.display()
            );
        }
    }
}

#[test]
fn credentials_never_go_to_a_provider_over_plain_http_except_on_loopback() {
    let build = |channel: &str| {
        let toml = format!(
            "[server]\npublic_url = \"https://inv.example\"\n\n[channels.sms]\nkind = \"sms\"\nfrom = \"Merchant\"\n{channel}\n"
        );
        let settings = Settings::from_toml(&toml).expect("settings");
        let mut registry = postbud::Registry::discover().expect("registry");
        postbud_sms::register(&mut registry).expect("no duplicate");
        registry
            .build_all(&settings)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    for channel in [
        "provider = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\nbase_url = \"http://sms-proxy.example\"",
        "provider = \"http\"\n[channels.sms.http]\nurl = \"http://gw.example/send?api_key=k-123\"\nfields = { to = \"to\", text = \"text\" }",
    ] {
        let error = build(channel).expect_err(channel);
        assert!(error.contains("must use https"), "{error}");
        assert!(!error.contains("k-123"), "{error}");
    }
    build("provider = \"twilio\"\naccount_sid = \"AC1\"\nauth_token = \"t\"\nbase_url = \"http://127.0.0.1:9\"")
        .expect("loopback");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_a_provider_refuses_stop_the_delivery_naming_their_key() {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let wrong = "WRONG-7Q7Q";
    let cases = [
        ("twilio", "auth_token", "20003"),
        ("vonage", "api_secret", "status 4"),
        ("sinch", "api_token", "401"),
        ("linkmobility", "password", "401"),
        ("46elks", "password", "401"),
    ];
    for (provider, key, said) in cases {
        // The right credentials with the secret's value replaced.
        let right = credentials(provider);
        let channel = right
            .lines()
            .map(|line| match line.split_once(" = ") {
                Some((k, _)) if k == key => format!("{key} = \"{wrong}\""),
                _ => line.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_ne!(channel, right, "{provider}: the secret is replaced");
        let (app, _dir) = app_with_channel(
            &sandbox,
            &format!(
                "provider = \"{provider}\"\nbase_url = \"{}\"\n{channel}",
                sandbox.provider_url(provider)
            ),
        )
        .await;
        let id = sandbox.seed(phone("91234567"));
        let outcome = app.deliver_now(&id).await.expect("deliver");
        let job = outcome
            .jobs
            .iter()
            .find(|j| j.channel.as_deref() == Some("sms"))
            .expect("job");
        assert_eq!(
            (job.state, job.attempts),
            (JobState::Dead, 1),
            "{provider}: {outcome}"
        );
        let error = job.last_error.clone().unwrap_or_default();
        assert!(
            error.starts_with(postbud::credentials::CREDENTIALS_REFUSED)
                && error.contains(said)
                && error.contains(&format!("fix channels.sms.{key}")),
            "{provider}: {error}"
        );
        assert!(!error.contains(wrong), "{provider}: {error}");
    }
}

/// An app on an existing sandbox whose `sms` channel has the keys `channel`.
async fn app_with_channel(sandbox: &Sandbox, channel: &str) -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let toml = format!(
        "{dintero}\n\
         [server]\npublic_url = \"http://127.0.0.1:9\"\n\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
         [channels.sms]\nkind = \"sms\"\nfrom = \"Merchant\"\n{channel}\n\n[[routes]]\ndeliver = [\"sms\"]\n",
        dintero = sandbox.dintero_toml(),
        dir = dir.path().display()
    );
    let settings = Settings::from_toml(&toml).expect("settings");
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_sms::register(&mut registry).expect("no duplicate");
    let app = App::builder(&settings)
        .registry(registry)
        .open()
        .await
        .expect("app");
    (app, dir)
}
