//! The `postbud` binary as an operator runs it, against the sandbox on loopback and a real
//! SQLite file.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use postbud_sandbox::{Fault, FaultKind, Operation, Seed};

mod common;

use common::{free_port, postbud, run, setup, sha256, text};

#[test]
fn channels_lists_the_folder_kind() {
    let output = postbud().arg("channels").output().expect("runs");
    assert!(output.status.success());
    let out = text(&output);
    assert!(
        out.contains("folder") && out.contains("writes the PDF") && out.contains("postbud-email"),
        "{out}"
    );
}

/// `postbud status | head`: the reader may go away first; that is no error and no panic.
#[test]
fn a_reader_that_went_away_ends_the_output_quietly() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let output = postbud()
        .arg("channels")
        .stdout(writer)
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{:?}: {err}", output.status);
    assert!(err.is_empty(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_captures_once_writes_the_pdf_and_a_second_deliver_does_nothing() {
    let s = setup("").await;
    let id = s.sandbox.seed(Seed::default());
    let first = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    assert!(
        text(&first).contains("archive") && text(&first).contains("done"),
        "{}",
        text(&first)
    );
    assert_eq!(s.sandbox.captures(&id), 1);
    let number = s.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("n")
        .to_owned();
    let pdf = std::fs::read(s.dir.path().join(format!("invoices/{number}.pdf"))).expect("pdf");
    assert_eq!(sha256(&pdf), sha256(&s.sandbox.pdf(&id).expect("pdf")));

    let second = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        text(&second).contains("known before this run"),
        "{}",
        text(&second)
    );
    assert_eq!(s.sandbox.captures(&id), 1);

    let status = run(&s.config, &["status", &id, "--json"], &[]).await;
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(json["jobs"][1]["state"], "done");
    assert_eq!(json["jobs"][1]["attempts"], 1);
    // What that `done` stands for, said by the channel itself.
    let means = json["channels"]["archive"]["delivered_means"]
        .as_str()
        .unwrap_or_default();
    assert!(means.contains("synced and renamed"), "{json}");
    assert_eq!(json["channels"]["archive"]["later"], serde_json::json!([]));
    assert_eq!(json["evidence"], serde_json::json!([]));
    let human = text(&run(&s.config, &["status", &id], &[]).await);
    assert!(
        human.contains("what `done` means") && human.contains("archive: the PDF and its manifest"),
        "{human}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_killed_between_capture_and_recording_it_does_not_capture_again() {
    let s = setup("").await;
    let id = s.sandbox.seed(Seed::default());
    // The capture lands at once; its response is held for 20 s, long enough to kill the
    // process after Dintero recorded the capture and before Postbud learned of it.
    s.sandbox.inject(Fault {
        operation: Operation::Capture,
        transaction: Some(id.clone()),
        kind: FaultKind::SlowResponse { ms: 20_000 },
        times: 1,
        skip: 0,
    });
    let mut child = postbud()
        .arg("--config")
        .arg(&s.config)
        .args(["deliver", &id])
        .env("POSTBUD_ENGINE__LEASE", "2s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.sandbox.captures(&id) == 0 {
        assert!(Instant::now() < deadline, "the capture never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();

    // A new process resumes once the dead one's (2 s) lease lapses.
    let resumed = run(&s.config, &["deliver", &id, "--wait", "30s"], &[]).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", text(&resumed));
    assert_eq!(s.sandbox.captures(&id), 1, "no second capture");
    let number = s.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("n")
        .to_owned();
    assert!(s.dir.path().join(format!("invoices/{number}.pdf")).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn work_left_for_later_exits_75() {
    let s = setup("[[routes]]\ndeliver = [\"archive\"]\ndelay = \"1h\"\n").await;
    let id = s.sandbox.seed(Seed::default());
    let output = run(&s.config, &["deliver", &id, "--wait", "1s"], &[]).await;
    assert_eq!(output.status.code(), Some(75), "{}", text(&output));
    assert!(text(&output).contains("next attempt"), "{}", text(&output));
    assert_eq!(s.sandbox.captures(&id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_is_not_eligible_exits_3_with_the_reason() {
    let s = setup("").await;
    let id = s.sandbox.seed(Seed {
        session_channel: Some("kravia".into()),
        ..Seed::default()
    });
    let output = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(output.status.code(), Some(3), "{}", text(&output));
    assert!(
        text(&output).contains("invoice channel resolves to `kravia`"),
        "{}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dintero_error_is_one_clear_message() {
    let s = setup("").await;
    let id = s.sandbox.seed(Seed::default());
    // A wrong client secret is the configuration's to fix: exit 2 naming the key, from every
    // command that talks to Dintero (serve does not start).
    let wrong = [("POSTBUD_DINTERO__CLIENT_SECRET", "wrong")];
    for args in [&["deliver", id.as_str()][..], &["check"], &["serve"]] {
        let output = run(&s.config, args, &wrong).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        let out = text(&output);
        assert!(
            out.contains("HTTP 401")
                && out.contains("check dintero.client_id and dintero.client_secret"),
            "{args:?}: {out}"
        );
        assert!(!out.contains("wrong"), "the secret is not echoed: {out}");
    }
    assert_eq!(s.sandbox.captures(&id), 0);
    // Dintero out of reach is not the configuration's fault: exit 4.
    let away = run(
        &s.config,
        &["deliver", &id],
        &[
            ("POSTBUD_DINTERO__API_URL", "http://127.0.0.1:9/v1"),
            ("POSTBUD_DINTERO__AUTH_URL", "http://127.0.0.1:9/v1"),
        ],
    )
    .await;
    assert_eq!(away.status.code(), Some(4), "{}", text(&away));

    let missing = run(&s.config, &["deliver", "T12345678.doesnotexist"], &[]).await;
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing).contains("Dintero does not know transaction T12345678.doesnotexist"),
        "{}",
        text(&missing)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_exits_2_naming_key_and_source() {
    let s = setup("[channels.mail]\nkind = \"emial\"\n").await;
    let output = run(&s.config, &["check"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let out = text(&output);
    assert!(
        out.contains("channels.mail.kind")
            && out.contains("unknown channel kind \"emial\"")
            && out.contains("postbud.toml"),
        "{out}"
    );

    let s = setup("").await;
    let output = run(
        &s.config,
        &["check"],
        &[("POSTBUD_ENGINE__WORKERS", "many")],
    )
    .await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).contains("environment variable"),
        "{}",
        text(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_probes_dintero_and_every_channel() {
    let s = setup("").await;
    let output = run(&s.config, &["check"], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let out = text(&output);
    assert!(
        out.contains("✓ dintero: got an access token") && out.contains("✓ channel archive"),
        "{out}"
    );
    assert!(out.contains("(scope `admin:checkout`)"), "{out}");
}

/// Postbud reads the account's checkout configuration to tell who sends an invoice. A client
/// not granted `admin:checkout` is told once, naming the scope, before any invoice fails for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_admin_checkout_is_one_configuration_error_naming_the_scope() {
    let s = setup("").await;
    s.sandbox
        .withhold_scope(postbud_sandbox::scopes::ADMIN_CHECKOUT);
    let names_the_scope =
        |out: &str| out.contains("HTTP 403") && out.contains("grant the scope `admin:checkout`");

    let check = run(&s.config, &["check"], &[]).await;
    let out = text(&check);
    assert_eq!(check.status.code(), Some(2), "{out}");
    assert!(out.contains("✗ dintero:") && names_the_scope(&out), "{out}");

    // `serve` refuses to start (it would fail invoice after invoice).
    let listen = format!("127.0.0.1:{}", free_port());
    let mut serve = postbud()
        .arg("--config")
        .arg(&s.config)
        .arg("serve")
        .env("POSTBUD_SERVER__LISTEN", &listen)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    while serve.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = serve.kill();
            let _ = serve.wait();
            panic!("serve started without the scope");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let served = serve.wait_with_output().expect("output");
    let out = text(&served);
    assert_eq!(served.status.code(), Some(2), "{out}");
    assert!(names_the_scope(&out), "{out}");

    // `deliver` says so before it touches the invoice.
    let id = s.sandbox.seed(Seed::default());
    let deliver = run(&s.config, &["deliver", &id], &[]).await;
    let out = text(&deliver);
    assert_eq!(deliver.status.code(), Some(2), "{out}");
    assert!(names_the_scope(&out), "{out}");
    assert_eq!(s.sandbox.captures(&id), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn void_and_retry_from_the_command_line() {
    let s = setup("").await;
    let id = s.sandbox.seed(Seed::default());
    assert_eq!(
        run(&s.config, &["deliver", &id], &[]).await.status.code(),
        Some(0)
    );
    let void = run(&s.config, &["void", &id], &[]).await;
    assert_eq!(void.status.code(), Some(0), "{}", text(&void));
    assert!(text(&void).contains("voided at Dintero"), "{}", text(&void));
    assert_eq!(
        s.sandbox.transaction(&id).expect("tx")["status"],
        "AUTHORIZATION_VOIDED"
    );
    let retry = run(&s.config, &["retry", &id], &[]).await;
    assert!(
        text(&retry).contains("nothing to retry"),
        "{}",
        text(&retry)
    );
    // Dintero accepts a void but confirms it only later: exit 75, nothing cancelled yet.
    let id = s.sandbox.seed(Seed::default());
    assert_eq!(
        run(&s.config, &["deliver", &id], &[]).await.status.code(),
        Some(0)
    );
    let accepted = |fail| Fault {
        operation: Operation::Void,
        transaction: Some(id.clone()),
        kind: FaultKind::Accepted {
            after_gets: 50,
            fail,
        },
        times: 1,
        skip: 0,
    };
    s.sandbox.inject(accepted(false));
    let void = run(&s.config, &["void", &id, "--wait", "300ms"], &[]).await;
    assert_eq!(void.status.code(), Some(75), "{}", text(&void));
    assert!(
        text(&void).contains("nothing is cancelled"),
        "{}",
        text(&void)
    );
    // A void Dintero refuses: exit 1 with Dintero's reason.
    let id = s.sandbox.seed(Seed::default());
    assert_eq!(
        run(&s.config, &["deliver", &id], &[]).await.status.code(),
        Some(0)
    );
    s.sandbox.inject(Fault {
        kind: FaultKind::Accepted {
            after_gets: 1,
            fail: true,
        },
        transaction: Some(id.clone()),
        ..accepted(true)
    });
    let void = run(&s.config, &["void", &id], &[]).await;
    assert_eq!(void.status.code(), Some(1), "{}", text(&void));
    assert!(
        text(&void).contains("declined by the payment provider"),
        "{}",
        text(&void)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_create_makes_a_merchant_initiated_invoice_and_delivers_it() {
    let s = setup("").await;
    let order = s.dir.path().join("order.json");
    std::fs::write(
        &order,
        r#"{"order": {"amount": 29900, "currency": "NOK", "merchant_reference": "inv-1",
            "items": [{"line_id": "1", "description": "Subscription", "quantity": 1, "amount": 29900, "vat": 25, "vat_amount": 5980}],
            "billing_address": {"first_name": "Ola", "last_name": "Nordmann", "email": "ola@example.no", "country": "NO"}}}"#,
    )
    .expect("order");
    let output = run(
        &s.config,
        &["invoice", "create", order.to_str().expect("utf8")],
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let id = text(&output)
        .split_whitespace()
        .nth(1)
        .expect("id")
        .to_owned();
    assert_eq!(s.sandbox.captures(&id), 1);
    // Run again with the same order (say, after a timeout): one invoice, reported and continued.
    let again = run(
        &s.config,
        &["invoice", "create", order.to_str().expect("utf8")],
        &[],
    )
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        text(&again).contains(&format!(
            "already has an invoice for this merchant_reference; continuing with {id}"
        )),
        "{}",
        text(&again)
    );
    assert_eq!(s.sandbox.captures(&id), 1);
    assert_eq!(s.sandbox.stats().captures.len(), 1, "one invoice in all");
    // An order without merchant_reference is refused before Dintero is called.
    std::fs::write(
        &order,
        r#"{"order": {"amount": 100, "currency": "NOK", "billing_address": {"country": "NO"}}}"#,
    )
    .expect("order");
    let refused = run(
        &s.config,
        &["invoice", "create", order.to_str().expect("utf8")],
        &[],
    )
    .await;
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains("order.merchant_reference"),
        "{}",
        text(&refused)
    );
    assert_eq!(s.sandbox.stats().requests.get("pay").copied(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sample_order_file_makes_an_invoice() {
    let s = setup("").await;
    let order = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/examples/order.json");
    let output = run(&s.config, &["invoice", "create", order], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert!(
        text(&output).contains("kravia.invoice_b2b, 62500 NOK"),
        "{}",
        text(&output)
    );
    assert_eq!(s.sandbox.stats().captures.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_a_callback_captures_delivers_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let s = setup(&format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    let mut child = postbud()
        .arg("--config")
        .arg(&s.config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/healthz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "serve never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = s.sandbox.seed(Seed::default());
    let status = s
        .sandbox
        .send_callback(&id, &format!("{base}/dintero/callback"))
        .await
        .expect("callback");
    assert_eq!(status, 200);
    let number = s.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("n")
        .to_owned();
    let pdf = s.dir.path().join(format!("invoices/{number}.pdf"));
    while !pdf.exists() {
        assert!(Instant::now() < deadline, "the workers never delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.sandbox.captures(&id), 1);
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("postbud_callbacks_total{outcome=\"accepted\"} 1"),
        "{metrics}"
    );
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let exit = tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("joined");
    assert_eq!(exit.code(), Some(0), "graceful shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_captures_then_the_email_arrives() {
    let Some(smtp) =
        postbud_sandbox::smtp::SmtpServer::start_or_skip("deliver_captures_then_the_email_arrives")
    else {
        return;
    };
    let s = setup(&format!(
        "[channels.mail]\nkind = \"email\"\nsmtp_url = \"{}\"\nca_file = \"{}\"\nfrom = \"Merchant AS <faktura@merchant.example>\"\n\n[[routes]]\ndeliver = [\"mail\"]\n",
        smtp.url(),
        smtp.ca_file().display()
    ))
    .await;
    let id = s.sandbox.seed(Seed::default());
    let output = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(s.sandbox.captures(&id), 1);
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{}", text(&output));
    let raw = String::from_utf8_lossy(&messages[0].raw);
    assert!(
        raw.contains(&format!(
            "{}@merchant.example",
            postbud::ids::delivery_id(&id, "mail")
        )),
        "{raw}"
    );
    assert!(
        !text(&output).contains(postbud_sandbox::smtp::PASSWORD),
        "the SMTP password is not printed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_captures_then_the_webhook_arrives() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(axum::http::HeaderMap, String)>();
    let receiver = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((headers, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let s = setup(&format!(
        "[channels.platform]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret = \"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\npdf = \"inline\"\n\n[[routes]]\ndeliver = [\"platform\"]\n"
    ))
    .await;
    let id = s.sandbox.seed(Seed::default());
    let output = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(s.sandbox.captures(&id), 1);
    let (headers, body) = rx.recv().await.expect("the webhook arrived");
    assert_eq!(
        headers["webhook-id"],
        postbud::ids::delivery_id(&id, "platform").as_str()
    );
    assert!(
        headers["webhook-signature"]
            .to_str()
            .expect("ascii")
            .starts_with("v1,")
    );
    let body: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(body["type"], "invoice.ready");
    assert_eq!(body["data"]["transaction_id"], id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_sends_the_sms_and_its_link_downloads_the_pdf_from_serve() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let s = setup(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\"\n\n\
         [channels.sms]\nkind = \"sms\"\nprovider = \"twilio\"\nfrom = \"Merchant\"\naccount_sid = \"{sid}\"\nauth_token = \"{token}\"\nbase_url = \"PROVIDER\"\n\n\
         [[routes]]\ndeliver = [\"sms\"]\n",
        sid = postbud_sandbox::sms::TWILIO_SID,
        token = postbud_sandbox::sms::TWILIO_TOKEN,
    ))
    .await;
    let config = std::fs::read_to_string(&s.config)
        .expect("config")
        .replace("PROVIDER", &s.sandbox.provider_url("twilio"));
    std::fs::write(&s.config, config).expect("config");
    let mut serve = postbud()
        .arg("--config")
        .arg(&s.config)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while reqwest::get(format!("{base}/healthz"))
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
        != 200
    {
        assert!(Instant::now() < deadline, "serve never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = s.sandbox.seed(Seed::default());
    let output = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(s.sandbox.captures(&id), 1);
    let sms = s.sandbox.stats().sms;
    assert_eq!(sms.len(), 1);
    let link = sms[0]
        .text
        .split_whitespace()
        .find(|w| w.starts_with("http"))
        .expect("a link")
        .to_owned();
    let pdf = reqwest::get(&link)
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(sha256(&pdf), sha256(&s.sandbox.pdf(&id).expect("pdf")));
    let _ = serve.kill();
    let _ = serve.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_captures_then_the_files_land_on_the_sftp_server() {
    let Some(sshd) = postbud_sandbox::sshd::Sshd::start_or_skip(
        "deliver_captures_then_the_files_land_on_the_sftp_server",
        false,
    ) else {
        return;
    };
    let s = setup(&format!(
        "[channels.erp]\nkind = \"sftp\"\nhost = \"127.0.0.1\"\nport = {}\nusername = \"{}\"\nprivate_key = \"{}\"\nknown_hosts = \"{}\"\nremote_dir = \"{}\"\nformats = [\"pdf\", \"json\"]\n\n[[routes]]\ndeliver = [\"erp\"]\n",
        sshd.port(),
        sshd.user(),
        sshd.client_key().display(),
        sshd.known_hosts().display(),
        sshd.inbound().display()
    ))
    .await;
    let id = s.sandbox.seed(Seed::default());
    let output = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    assert_eq!(s.sandbox.captures(&id), 1);
    let number = s.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("n")
        .to_owned();
    let pdf = std::fs::read(sshd.inbound().join(format!("{number}.pdf"))).expect("the PDF landed");
    assert_eq!(sha256(&pdf), sha256(&s.sandbox.pdf(&id).expect("pdf")));
}

/// Async because the email transport's connection pool lives on the runtime.
#[tokio::test]
async fn the_example_configurations_are_valid() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/examples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).expect("config/examples") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let output = postbud()
            .arg("--config")
            .arg(&path)
            .arg("channels")
            .output()
            .expect("runs");
        assert!(
            output.status.success(),
            "{}: {}",
            path.display(),
            text(&output)
        );
        let settings = postbud::Settings::load(Some(&path))
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!settings.routes.is_empty(), "{}", path.display());
        // Live configurations: nothing `check` would call a dead end but the secrets an
        // example leaves for the environment.
        for dead in settings.dead_ends() {
            assert!(
                dead.problem.contains("placeholder"),
                "{}: {dead}",
                path.display()
            );
        }
        // Every channel table is typed by its kind; only files that exist on a production host
        // (an SSH key) may be missing here.
        let mut registry = postbud::Registry::discover().expect("registry");
        postbud_email::register(&mut registry).expect("email");
        postbud_webhook::register(&mut registry).expect("webhook");
        postbud_sms::register(&mut registry).expect("sms");
        postbud_sftp::register(&mut registry).expect("sftp");
        if let Err(e) = registry.build_all(&settings) {
            for problem in e.messages().iter().flat_map(|m| m.split("\n  - ")) {
                assert!(
                    problem.contains("private_key") && problem.contains("No such file"),
                    "{}: {problem}",
                    path.display()
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 3, "checked {checked} examples");
}

#[test]
fn the_demo_runs_every_channel_to_its_table() {
    let dir = tempfile::tempdir().expect("dir");
    let output = postbud()
        .arg("demo")
        .arg("--dir")
        .arg(dir.path().join("demo"))
        .output()
        .expect("runs");
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    for expected in [
        "to 0192:974760673: Storecove accepted submission",
        "the delivery's evidence is now `delivered`",
        "erp",
        "customer-email",
        "customer-sms",
        "platform",
        "(fallback)",
        "(cancel)",
        "skipped",
        "the SMS link serves the PDF",
        "already done (captures at Dintero: 1",
    ] {
        assert!(out.contains(expected), "`{expected}` missing from:\n{out}");
    }
    let erp: Vec<_> = std::fs::read_dir(dir.path().join("demo/sftp/erp"))
        .expect("erp drop")
        .collect();
    assert!(erp.len() >= 6, "UBL, PDF, JSON and their sidecars");
}

/// The benchmark's figures, parsed from its output.
fn bench_figures(out: &str, invoices: usize) {
    let line = |prefix: &str| {
        out.lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"))
            .to_owned()
    };
    let rate: f64 = line("throughput:")
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("a rate");
    assert!(rate > 0.0, "{out}");
    assert!(
        line("throughput:").contains(&format!("{invoices} captures, {invoices} webhooks")),
        "every invoice captured once and delivered once:\n{out}"
    );
    assert!(line("latency:").contains("p99"), "{out}");
    assert!(line("bare HTTP:").contains("invoices/s"), "{out}");
    assert!(line("memory:").contains("MiB"), "{out}");
}

#[test]
fn bench_measures_sqlite_and_prints_its_figures() {
    let dir = tempfile::tempdir().expect("dir");
    let output = postbud()
        .args(["bench", "--invoices", "60", "--workers", "4", "--dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("SQLite at"), "{out}");
    bench_figures(&out, 60);
}

/// `postbud bench --json` with `args` on a SQLite file of its own: the one JSON object it prints,
/// after checking it exited 0 and printed nothing else on stdout.
fn bench_json(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("dir");
    let output = postbud()
        .arg("bench")
        .args(args)
        .args(["--json", "--dir"])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(0), "{}", text(&output));
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"))
}

/// `--history` grows the store to the size asked, checks it counts exactly that, and times the
/// operators' reads there.
#[test]
fn bench_history_times_the_operators_reads_as_the_store_grows() {
    let report = bench_json(&["--invoices", "30", "--workers", "2", "--history", "1500"]);
    let history = report["history"]
        .as_array()
        .unwrap_or_else(|| panic!("no history: {report}"));
    assert_eq!(history.len(), 1, "{report}");
    assert_eq!(
        history[0]["invoices"], 1500,
        "the store was grown and checked: {report}"
    );
    for key in ["metrics_ms", "healthz_ms", "status_ms", "http_floor_ms"] {
        assert!(history[0][key].as_f64() > Some(0.0), "{key}: {report}");
    }
}

/// `--json` answers with one object scripts can compare, and nothing else on stdout; two
/// instances share the store and still capture and deliver each invoice once.
#[test]
fn bench_json_prints_one_object_with_its_figures() {
    let report = bench_json(&["--invoices", "40", "--workers", "2", "--instances", "2"]);
    for key in [
        "invoices_per_s",
        "bare_http_per_s",
        "share_of_bare_http",
        "p50_ms",
        "p99_ms",
        "rss_queued_mib",
    ] {
        let figure = report[key]
            .as_f64()
            .unwrap_or_else(|| panic!("no `{key}` in {report}"));
        assert!(figure >= 0.0, "{key}: {report}");
    }
    assert!(report["invoices_per_s"].as_f64() > Some(0.0), "{report}");
    let share = report["invoices_per_s"].as_f64().unwrap_or_default()
        / report["bare_http_per_s"].as_f64().unwrap_or(1.0)
        * 100.0;
    assert!(
        (share - report["share_of_bare_http"].as_f64().unwrap_or_default()).abs() < 1e-6,
        "{report}"
    );
    assert_eq!(report["instances"], 2, "{report}");
    assert!(
        report.get("cycle_per_s").is_none(),
        "no PostgreSQL cycle on SQLite: {report}"
    );
    assert!(report.get("dintero_latency_ms").is_none(), "{report}");
}

/// A latency every call would time out on is refused before anything runs, naming the option.
#[test]
fn bench_refuses_a_dintero_latency_past_the_client_s_timeout() {
    let dir = tempfile::tempdir().expect("dir");
    let output = postbud()
        .args([
            "bench",
            "--invoices",
            "5",
            "--dintero-latency",
            "45s",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2), "{}", text(&output));
    let said = text(&output);
    assert!(
        said.contains("--dintero-latency 45s") && said.contains("timeout (30s)"),
        "{said}"
    );
}

/// `--dintero-latency` holds every answer the flow waits for, as a Dintero far away does: each
/// invoice then waits for the transaction, the PDF's descriptor and its bytes before the
/// capture, the capture, and the three again after it, one after the other (seven; at least
/// six asked for here).
#[test]
fn bench_holds_dintero_s_answers_when_asked() {
    let report = bench_json(&[
        "--invoices",
        "20",
        "--workers",
        "4",
        "--dintero-latency",
        "25ms",
    ]);
    assert_eq!(report["dintero_latency_ms"], 25, "{report}");
    let p50 = report["p50_ms"].as_f64().unwrap_or_default();
    assert!(p50 >= 150.0, "six held answers in a row at least: {report}");
    // Without Postbud the same requests wait just as long: 20 invoices of seven held answers
    // each at a concurrency of 4 take at least 875 ms.
    let bare = report["bare_http_per_s"].as_f64().unwrap_or(f64::MAX);
    assert!(bare <= 25.0, "{report}");
}

#[tokio::test]
async fn bench_measures_postgres_on_a_scratch_database_it_drops() {
    let admin = std::env::var("POSTBUD_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let pool = match sqlx::PgPool::connect(&admin).await {
        Ok(pool) => pool,
        Err(e) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("PostgreSQL required but unreachable at {admin}: {e}")
        }
        Err(e) => {
            postbud_sandbox::skipped(&format!(
                "bench on PostgreSQL: no PostgreSQL at {admin}: {e}"
            ));
            return;
        }
    };
    let dir = tempfile::tempdir().expect("dir");
    let mut command = postbud();
    command
        .args([
            "bench",
            "--invoices",
            "60",
            "--workers",
            "4",
            "--postgres",
            &admin,
        ])
        .arg("--dir")
        .arg(dir.path());
    let output = tokio::task::spawn_blocking(move || command.output().expect("runs"))
        .await
        .expect("joined");
    let out = text(&output);
    assert_eq!(output.status.code(), Some(0), "{out}");
    assert!(out.contains("PostgreSQL database"), "{out}");
    bench_figures(&out, 60);
    assert!(
        out.lines().any(|l| l.starts_with("cycle:")
            && l.contains("durable cycles/s")
            && l.contains("% of it")),
        "the server's own ceiling measured in the same run:\n{out}"
    );
    let name = out
        .split_whitespace()
        .find_map(|w| {
            w.rsplit('/')
                .next()
                .filter(|n| n.starts_with("postbud_bench_"))
        })
        .expect("the scratch database is named")
        .to_owned();
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(&name)
        .fetch_one(&pool)
        .await
        .expect("pg_database");
    assert_eq!(left, 0, "{name} was dropped");
    assert!(!dir.path().join("bench.db").exists(), "no SQLite file");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliver_declares_a_merchant_initiated_invoice_and_adopts_a_capture_made_elsewhere() {
    let s = setup("").await;
    // Made by the merchant's own backend with sessions/pay: Dintero's default says Kravia.
    let id = s.sandbox.seed(Seed {
        no_session_channel: true,
        ..Seed::default()
    });
    let skipped = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(skipped.status.code(), Some(3), "{}", text(&skipped));
    let declared = run(&s.config, &["deliver", "--merchant-initiated", &id], &[]).await;
    assert_eq!(declared.status.code(), Some(0), "{}", text(&declared));
    assert_eq!(s.sandbox.captures(&id), 1);
    // Kravia delivered this one and started collection: nothing is sent, the reason says how
    // to deliver it anyway.
    let id = s.sandbox.seed(Seed {
        kravia_delivered: true,
        ..Seed::default()
    });
    let stopped = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(stopped.status.code(), Some(1), "{}", text(&stopped));
    assert!(
        text(&stopped).contains("collection was started elsewhere")
            && text(&stopped).contains(&format!("postbud deliver --adopt-capture {id}")),
        "{}",
        text(&stopped)
    );
    let adopted = run(&s.config, &["deliver", "--adopt-capture", &id], &[]).await;
    assert_eq!(adopted.status.code(), Some(0), "{}", text(&adopted));
    assert_eq!(s.sandbox.captures(&id), 0, "never captured by Postbud");
    // Nothing left to adopt: exit 3 with the reason.
    let again = run(&s.config, &["deliver", "--adopt-capture", &id], &[]).await;
    assert_eq!(again.status.code(), Some(3), "{}", text(&again));
    assert!(
        text(&again).contains("not stopped by a collection started elsewhere"),
        "{}",
        text(&again)
    );
}

/// The log pipe goes away under a running `serve` (a log shipper that died): every invoice is
/// still delivered, `/healthz` answers 200 throughout, and the lines dropped are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_outlives_a_closed_log_pipe() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let s = setup(&format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    let mut child = postbud()
        .arg("--config")
        .arg(&s.config)
        .arg("serve")
        .env("POSTBUD_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let base = format!("http://127.0.0.1:{port}");
    let health = || async {
        reqwest::get(format!("{base}/healthz"))
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while health().await != 200 {
        assert!(Instant::now() < deadline, "serve never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The reader of its logs goes away: every later write to stderr fails (EPIPE).
    drop(child.stderr.take());
    let ids: Vec<String> = (0..20).map(|_| s.sandbox.seed(Seed::default())).collect();
    for id in &ids {
        let status = s
            .sandbox
            .send_callback(id, &format!("{base}/dintero/callback"))
            .await
            .expect("callback");
        assert_eq!(status, 200);
    }
    let pdfs: Vec<_> = ids
        .iter()
        .map(|id| {
            let number =
                s.sandbox.transaction(id).expect("tx")["metadata"]["kravia:invoice_number"]
                    .as_str()
                    .expect("n")
                    .to_owned();
            s.dir.path().join(format!("invoices/{number}.pdf"))
        })
        .collect();
    while !pdfs.iter().all(|p| p.exists()) {
        assert!(Instant::now() < deadline, "the workers stopped delivering");
        assert_eq!(health().await, 200, "/healthz while delivering");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for id in &ids {
        assert_eq!(s.sandbox.captures(id), 1, "{id}");
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let dropped = metrics
        .lines()
        .find_map(|l| l.strip_prefix("postbud_log_writes_dropped "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert!(dropped > 0, "{metrics}");
    assert!(metrics.contains("postbud_workers_running 4"), "{metrics}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn console_hash_password_prints_an_argon2id_hash_of_the_line_on_stdin_and_never_the_password() {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_postbud"))
        .args(["console", "hash-password"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"s3cret pass\xc3\xa6\r\n")
        .expect("write");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "{stdout}{stderr}"
    );
    let hash = stdout.trim();
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(::postbud::password::verify("s3cret passæ", hash));
    assert!(!::postbud::password::verify("s3cret passæ\r", hash));
    // The configuration takes it.
    let toml = format!(
        "[console]\nenabled = true\n[[console.users]]\nname = \"kari\"\npassword_hash = \"{hash}\"\nrole = \"operator\"\n"
    );
    let settings = ::postbud::Settings::from_toml(&toml).expect("valid");
    assert!(
        !format!("{settings:?}").contains(hash),
        "the hash is not in Debug"
    );

    // No password: an error, no hash.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_postbud"))
        .args(["console", "hash-password"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty());
}
