//! Delivery reports end to end: each provider's stand-in sends its reports as the provider does,
//! to `postbud serve`'s router, and they reach the right delivery's history; forged, stale and
//! unsigned ones change nothing.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use postbud::{App, Job, JobState, Role, Settings, Verdict};
use postbud_sandbox::{Sandbox, Seed, sms};

/// LINK Mobility's token in the gate's report URL.
const LINK_TOKEN: &str = "link-gate-token-5f3a";

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
            "username = \"{}\"\npassword = \"{}\"\nplatform_id = \"SMS\"\nplatform_partner_id = \"1234\"\ngate_id = \"{}\"",
            sms::LINK_USER.0,
            sms::LINK_USER.1,
            sms::LINK_GATE
        ),
        "46elks" => format!(
            "username = \"{}\"\npassword = \"{}\"",
            sms::ELKS_USER.0,
            sms::ELKS_USER.1
        ),
        other => panic!("no credentials for {other}"),
    }
}

/// An app whose route delivers by `sms` (the provider's keys plus `keys`) and falls back to a
/// folder, served on loopback; the stand-ins report as `reports` says.
async fn setup(provider: &str, keys: &str, reports: sms::Reports) -> Setup {
    let sandbox = Sandbox::start(Default::default()).await.expect("sandbox");
    let dir = tempfile::tempdir().expect("dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let toml = format!(
        "{dintero}\n\
         [server]\npublic_url = \"{base}\"\n\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
         [engine]\nbackoff_base = \"20ms\"\nbackoff_max = \"50ms\"\nmax_attempts = 2\n\n\
         [channels.archive]\nkind = \"folder\"\npath = \"{dir}/invoices\"\n\n\
         [channels.sms]\nkind = \"sms\"\nprovider = \"{provider}\"\nfrom = \"Merchant\"\nbase_url = \"{url}\"\n{credentials}\n{keys}\n\n\
         [[routes]]\ndeliver = [\"sms\"]\nfallback = [\"archive\"]\n",
        dintero = sandbox.dintero_toml(),
        dir = dir.path().display(),
        url = sandbox.provider_url(provider),
        credentials = credentials(provider),
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
    let reports = sms::Reports {
        link_gate_url: Some(format!("{base}/reports/sms?token={LINK_TOKEN}")),
        ..reports
    };
    sandbox.set_sms_reports(reports);
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

impl Setup {
    /// Delivers an invoice to `number` by SMS (handed over), and returns its transaction id.
    async fn deliver(&self, number: &str) -> String {
        let id = self.sandbox.seed(phone(number));
        let outcome = self.app.deliver_now(&id).await.expect("deliver");
        assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
        id
    }

    /// Waits until the stand-ins have sent `count` reports, and returns the status each got.
    async fn reports_sent(&self, count: usize) -> Vec<u16> {
        // Not a time limit on the code under test: a stand-in that never reports ends the test.
        for _ in 0..3000 {
            let sent = self.sandbox.stats().sms_reports;
            if sent.len() >= count {
                return sent.into_iter().map(|(_, status)| status).collect();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "the stand-in sent {:?}, not {count} reports",
            self.sandbox.stats().sms_reports
        );
    }

    /// The SMS delivery of an invoice, as the store has it.
    async fn sms_job(&self, id: &str) -> Job {
        let delivery = postbud::ids::delivery_id(id, "sms");
        self.app
            .jobs(id)
            .await
            .expect("jobs")
            .into_iter()
            .find(|j| j.id == delivery)
            .expect("the SMS delivery")
    }

    /// Runs what is due for an invoice, and returns its fallback deliveries: (channel, state).
    async fn fallbacks(&self, id: &str) -> Vec<(String, JobState)> {
        let outcome = self.app.deliver_now(id).await.expect("deliver");
        outcome
            .jobs
            .iter()
            .filter(|j| j.role == Some(Role::Fallback))
            .map(|j| (j.channel.clone().unwrap_or_default(), j.state))
            .collect()
    }

    /// The evidence lines of an invoice's history: `evidence: <state> <detail>`.
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

    async fn post(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>, kind: &str) -> u16 {
        let mut request = reqwest::Client::new()
            .post(url)
            .header("content-type", kind)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.expect("post").status().as_u16()
    }
}

/// (provider, its report keys, how the stand-in reports, what the bounce's reason says)
fn cases() -> Vec<(&'static str, String, sms::Reports, &'static str)> {
    let default = sms::Reports::default;
    vec![
        ("twilio", String::new(), default(), "ErrorCode=30003"),
        (
            "twilio",
            format!("webhook_secret = \"{}\"", sms::TWILIO_SHARED_KEY.1),
            sms::Reports {
                twilio_shared_key: Some("HMAC_SHA1"),
                ..default()
            },
            "ErrorCode=30003 (unreachable destination handset)",
        ),
        (
            "twilio",
            format!("webhook_secret = \"{}\"", sms::TWILIO_SHARED_KEY.1),
            sms::Reports {
                twilio_shared_key: Some("HMAC_SHA256"),
                ..default()
            },
            "MessageStatus=undelivered",
        ),
        (
            "sinch",
            format!("webhook_secret = \"{}\"", sms::SINCH_WEBHOOK_SECRET),
            default(),
            "status=FAILED code=402",
        ),
        // Without the secret: taken on the callback URL Postbud signed for the batch.
        ("sinch", String::new(), default(), "status=FAILED"),
        (
            "vonage",
            format!("signature_secret = \"{}\"", sms::VONAGE_SIGNATURE_SECRET),
            default(),
            "status=failed err-code=3 (absent subscriber, permanent)",
        ),
        (
            "vonage",
            format!(
                "signature_secret = \"{}\"\nsignature_method = \"sha256\"",
                sms::VONAGE_SIGNATURE_SECRET
            ),
            sms::Reports {
                vonage_method: "sha256",
                vonage_json: true,
                ..default()
            },
            "err-code=3",
        ),
        ("vonage", String::new(), default(), "status=failed"),
        (
            "linkmobility",
            format!("webhook_secret = \"{LINK_TOKEN}\""),
            default(),
            "resultCode=2104 (unknown subscriber)",
        ),
        ("46elks", String::new(), default(), "status=failed"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_providers_delivered_and_undelivered_reports_reach_the_right_delivery() {
    for (provider, keys, reports, bounce_reason) in cases() {
        let case = format!("{provider} [{keys}] {reports:?}");
        let s = setup(provider, &keys, reports).await;
        let delivered = s.deliver("+4791234567").await;
        let undelivered = s.deliver("+4791238888").await;
        let statuses = s.reports_sent(2).await;
        assert_eq!(statuses, [200, 200], "{case}");
        let history = s.evidence(&delivered).await;
        assert_eq!(history.len(), 1, "{case}: {history:?}");
        assert!(
            history[0].starts_with("evidence: delivered [sms] "),
            "{case}: {history:?}"
        );
        let history = s.evidence(&undelivered).await;
        assert_eq!(history.len(), 1, "{case}: {history:?}");
        assert!(
            history[0].starts_with("evidence: bounced [sms] ")
                && history[0].contains(bounce_reason),
            "{case}: {history:?}"
        );

        // Delivered stays done; undelivered fails the delivery with the reason and runs the
        // route's fallback, once.
        let job = s.sms_job(&delivered).await;
        assert_eq!(
            (job.state, job.evidence.as_deref()),
            (JobState::Done, Some("delivered")),
            "{case}: {job:?}"
        );
        assert!(s.fallbacks(&delivered).await.is_empty(), "{case}");
        let job = s.sms_job(&undelivered).await;
        assert_eq!(
            (job.state, job.evidence.as_deref()),
            (JobState::Failed, Some("bounced")),
            "{case}: {job:?}"
        );
        assert!(
            job.last_error
                .as_deref()
                .is_some_and(|e| e.contains(bounce_reason)),
            "{case}: {job:?}"
        );
        let once = [("archive".to_owned(), JobState::Done)];
        assert_eq!(s.fallbacks(&undelivered).await, once, "{case}");
        assert_eq!(s.fallbacks(&undelivered).await, once, "{case}: not again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_report_sent_twice_reaches_the_delivery() {
    let s = setup(
        "sinch",
        &format!("webhook_secret = \"{}\"", sms::SINCH_WEBHOOK_SECRET),
        sms::Reports {
            delay: Duration::from_millis(300),
            copies: 2,
            ..Default::default()
        },
    )
    .await;
    let id = s.deliver("+4791238888").await;
    assert_eq!(s.reports_sent(2).await, [200, 200]);
    let history = s.evidence(&id).await;
    assert_eq!(history.len(), 1, "recorded once: {history:?}");
    assert!(history[0].starts_with("evidence: bounced"), "{history:?}");
    assert_eq!(
        s.fallbacks(&id).await,
        [("archive".to_owned(), JobState::Done)],
        "one fallback"
    );
}

/// A report on the account's callback URL (not the one Postbud signed for the delivery),
/// authenticated by the provider's signature and correlated by the provider's message id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_twilio_report_on_the_accounts_url_is_correlated_by_the_message_sid() {
    let s = setup(
        "twilio",
        "",
        sms::Reports {
            delay: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await;
    let id = s.deliver("+4791238888").await;
    let sid = s
        .sms_job(&id)
        .await
        .reference
        .expect("the message sid is kept");
    assert!(sid.starts_with("SM"), "{sid}");
    let url = format!("{}/reports/sms", s.base);
    let params: BTreeMap<String, String> = [
        ("MessageSid", sid.as_str()),
        ("MessageStatus", "undelivered"),
        ("ErrorCode", "30005"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish()
        .into_bytes();
    let signature = sms::twilio_signature(&url, &params);
    let headers = [("x-twilio-signature", signature)];
    let form = "application/x-www-form-urlencoded";
    assert_eq!(s.post(&url, &headers, body.clone(), form).await, 200);
    assert_eq!(
        s.post(&url, &headers, body, form).await,
        200,
        "a replay is answered"
    );
    let history = s.evidence(&id).await;
    assert_eq!(history.len(), 1, "and recorded once: {history:?}");
    assert!(
        history[0].contains("ErrorCode=30005 (unknown destination handset)"),
        "{history:?}"
    );
    assert_eq!(s.sms_job(&id).await.state, JobState::Failed);
    assert_eq!(
        s.fallbacks(&id).await,
        [("archive".to_owned(), JobState::Done)]
    );
}

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stale_and_unsigned_reports_change_nothing() {
    // Reports never sent: each case posts its own.
    let silent = || sms::Reports {
        delay: Duration::from_secs(3600),
        ..Default::default()
    };

    // Twilio: a signature by another secret, and none.
    let s = setup("twilio", "", silent()).await;
    let id = s.deliver("+4791234567").await;
    let delivery = postbud::ids::delivery_id(&id, "sms");
    let url = format!("{}/reports/sms?delivery={delivery}", s.base);
    let params: BTreeMap<String, String> =
        [("MessageSid", "SMx"), ("MessageStatus", "undelivered")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&params)
        .finish()
        .into_bytes();
    let form = "application/x-www-form-urlencoded";
    let forged = sms::twilio_signature_with("not-the-token", "HMAC_SHA1", &url, &params);
    assert_eq!(
        s.post(&url, &[("x-twilio-signature", forged)], body.clone(), form)
            .await,
        401
    );
    assert_eq!(s.post(&url, &[], body.clone(), form).await, 401);
    // The right signature, for the URL of another delivery.
    let other = url.replace(&delivery, "someone-else");
    let signed = sms::twilio_signature(&other, &params);
    assert_eq!(
        s.post(&url, &[("x-twilio-signature", signed)], body, form)
            .await,
        401
    );
    assert!(s.evidence(&id).await.is_empty());

    // Sinch: stale, forged and unsigned; and, signed, about a delivery Postbud never made.
    let s = setup(
        "sinch",
        &format!("webhook_secret = \"{}\"", sms::SINCH_WEBHOOK_SECRET),
        silent(),
    )
    .await;
    let id = s.deliver("+4791234567").await;
    let delivery = postbud::ids::delivery_id(&id, "sms");
    let url = format!("{}/reports/sms", s.base);
    let report = |reference: &str| {
        serde_json::to_vec(&serde_json::json!({"type": "recipient_delivery_report_sms", "batch_id": "01B",
            "recipient": "+4791234567", "code": 402, "status": "FAILED", "at": "2026-12-06T12:00:00.000Z",
            "client_reference": reference}))
        .expect("json")
    };
    let json = "application/json";
    let body = report(&delivery);
    let stale = sms::sinch_headers(sms::SINCH_WEBHOOK_SECRET, &body, "n1", now() - 3600);
    assert_eq!(s.post(&url, &stale, body.clone(), json).await, 401);
    let forged = sms::sinch_headers("not-the-secret", &body, "n2", now());
    assert_eq!(s.post(&url, &forged, body.clone(), json).await, 401);
    assert_eq!(s.post(&url, &[], body.clone(), json).await, 401);
    let unknown = report("no-such-delivery");
    let signed = sms::sinch_headers(sms::SINCH_WEBHOOK_SECRET, &unknown, "n3", now());
    assert_eq!(
        s.post(&url, &signed, unknown, json).await,
        200,
        "a report about another system's message is answered, and ignored"
    );
    assert!(s.evidence(&id).await.is_empty());

    // Vonage: stale, forged, unsigned.
    let s = setup(
        "vonage",
        &format!("signature_secret = \"{}\"", sms::VONAGE_SIGNATURE_SECRET),
        silent(),
    )
    .await;
    let id = s.deliver("+4791234567").await;
    let delivery = postbud::ids::delivery_id(&id, "sms");
    let url = format!("{}/reports/sms", s.base);
    let receipt = |timestamp: i64, secret: &str| {
        let mut params: BTreeMap<String, String> = [
            ("messageId", "0A1"),
            ("status", "failed"),
            ("err-code", "3"),
            ("client-ref", delivery.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        params.insert("timestamp".into(), timestamp.to_string());
        let sig = sms::vonage_signature(secret, "md5hash", &params);
        params.insert("sig".into(), sig);
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&params)
            .finish()
            .into_bytes()
    };
    for body in [
        receipt(now() - 3600, sms::VONAGE_SIGNATURE_SECRET),
        receipt(now(), "not-the-secret"),
        b"status=failed&client-ref=x".to_vec(),
    ] {
        assert_eq!(s.post(&url, &[], body, form).await, 401);
    }
    assert!(s.evidence(&id).await.is_empty());

    // LINK Mobility: a wrong token, none. 46elks: not on the URL Postbud signed.
    let s = setup(
        "linkmobility",
        &format!("webhook_secret = \"{LINK_TOKEN}\""),
        silent(),
    )
    .await;
    let id = s.deliver("+4791234567").await;
    let delivery = postbud::ids::delivery_id(&id, "sms");
    let body =
        serde_json::to_vec(&serde_json::json!({"refId": delivery, "id": "m1", "resultCode": 2104}))
            .expect("json");
    for url in [
        format!("{}/reports/sms?token=wrong", s.base),
        format!("{}/reports/sms", s.base),
    ] {
        assert_eq!(s.post(&url, &[], body.clone(), json).await, 401);
    }
    assert!(s.evidence(&id).await.is_empty());
    let s = setup("46elks", "", silent()).await;
    let id = s.deliver("+4791234567").await;
    let delivery = postbud::ids::delivery_id(&id, "sms");
    assert_eq!(
        s.post(
            &format!("{}/reports/sms?delivery={delivery}", s.base),
            &[],
            b"id=s1&status=failed".to_vec(),
            form
        )
        .await,
        401
    );
    assert!(s.evidence(&id).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_with_control_characters_or_a_huge_field_is_recorded_clean() {
    let s = setup(
        "sinch",
        &format!("webhook_secret = \"{}\"", sms::SINCH_WEBHOOK_SECRET),
        sms::Reports {
            delay: Duration::from_secs(3600),
            ..Default::default()
        },
    )
    .await;
    let id = s.deliver("+4791234567").await;
    let delivery = postbud::ids::delivery_id(&id, "sms");
    let body = serde_json::to_vec(&serde_json::json!({"type": "recipient_delivery_report_sms", "batch_id": "01B",
        "recipient": "+4791234567", "code": 0, "status": "DELIVERED", "at": "2026-12-06T12:00:00.000Z",
        "operator": format!("evil\r\nevidence: delivered\u{1b}[31m{}", "x".repeat(100_000)),
        "client_reference": delivery}))
    .expect("json");
    let headers = sms::sinch_headers(sms::SINCH_WEBHOOK_SECRET, &body, "n", now());
    assert_eq!(
        s.post(
            &format!("{}/reports/sms", s.base),
            &headers,
            body,
            "application/json"
        )
        .await,
        200
    );
    let history = s.evidence(&id).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(
        !history[0].chars().any(char::is_control) && history[0].len() < 1000,
        "{history:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_gateways_report_is_taken_on_the_url_postbud_signed() {
    // The generic request speaks Twilio's shape to the Twilio stand-in; its reports come from
    // the gateway to the callback URL Postbud gave it.
    let s = setup("twilio", "", sms::Reports::default()).await;
    let (app, base, _dir) = generic(&s).await;
    let id = s.sandbox.seed(phone("91234567"));
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let delivery = postbud::ids::delivery_id(&id, "sms");
    let json = "application/json";
    let body = br#"{"status":"UNDELIV"}"#.to_vec();
    let unsigned = format!("{base}/reports/sms?delivery={delivery}");
    assert_eq!(s.post(&unsigned, &[], body.clone(), json).await, 401);
    assert!(
        app.history(&id)
            .await
            .expect("history")
            .iter()
            .all(|e| !e.event.starts_with("evidence"))
    );
    let signed = app.links().expect("links").report_url("sms", &delivery);
    assert_eq!(s.post(&signed, &[], body, json).await, 200);
    let history = app.history(&id).await.expect("history");
    assert!(
        history
            .iter()
            .any(|e| e.event == "evidence: bounced" && e.detail.contains("status=undeliv")),
        "{history:?}"
    );
}

/// A second app on `s`'s sandbox whose `sms` channel is a generic gateway, served on loopback.
async fn generic(s: &Setup) -> (Arc<App>, String, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("dir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let toml = format!(
        "{dintero}\n[server]\npublic_url = \"{base}\"\n\n[store]\nurl = \"sqlite://{dir}/postbud.db\"\n\n\
         [channels.sms]\nkind = \"sms\"\nfrom = \"Merchant\"\nprovider = \"http\"\n\n[channels.sms.http]\n\
         url = \"{url}/2010-04-01/Accounts/{sid}/Messages.json\"\nauth = \"basic\"\nusername = \"{sid}\"\npassword = \"{token}\"\n\
         fields = {{ to = \"To\", text = \"Body\", from = \"From\" }}\nmessage_id = \"/sid\"\n\n[[routes]]\ndeliver = [\"sms\"]\n",
        dintero = s.sandbox.dintero_toml(),
        dir = dir.path().display(),
        url = s.sandbox.provider_url("twilio"),
        sid = sms::TWILIO_SID,
        token = sms::TWILIO_TOKEN,
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
    (app, base, dir)
}
