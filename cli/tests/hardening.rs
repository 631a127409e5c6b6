//! `postbud serve` as an attacker (or a careless proxy) meets it. One transaction is one
//! dispatch, whatever the spelling of its id, counted where it costs money: captures at the
//! sandbox, paid SMS at the provider stand-in. A flood of made-up ids stores nothing. SIGTERM
//! stops the work at once, and a half-sent request cannot keep the process alive.

mod common;

use std::time::{Duration, Instant};

use common::{Serve, free_port, run, setup, text};
use postbud_sandbox::Seed;

async fn serve_with_sms() -> (common::Setup, Serve) {
    let port = free_port();
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
    let serve = Serve::start(&s.config, port).await;
    (s, serve)
}

fn spellings(id: &str) -> [String; 5] {
    [
        id.to_owned(),
        format!("x/../{id}"),
        format!("./{id}"),
        format!("{id}/"),
        format!("{id}/."),
    ]
}

async fn callback(client: &reqwest::Client, base: &str, id: &str) -> u16 {
    client
        .get(format!("{base}/dintero/callback"))
        .query(&[("transaction_id", id), ("merchant_reference", "order-1")])
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_spellings_of_five_transactions_capture_and_deliver_five_times() {
    let (s, serve) = serve_with_sms().await;
    let ids: Vec<String> = (0..5).map(|_| s.sandbox.seed(Seed::default())).collect();
    let client = reqwest::Client::new();
    // Together: every spelling of every transaction at once.
    let together = futures_join(
        ids.iter()
            .flat_map(|id| spellings(id))
            .map(|spelling| {
                let (client, base) = (client.clone(), serve.base.clone());
                tokio::spawn(async move { (callback(&client, &base, &spelling).await, spelling) })
            })
            .collect(),
    )
    .await;
    // Then one after another.
    let mut one_by_one = Vec::new();
    for id in &ids {
        for spelling in spellings(id) {
            one_by_one.push((callback(&client, &serve.base, &spelling).await, spelling));
        }
    }
    for (status, spelling) in together.iter().chain(&one_by_one) {
        let expected = if ids.contains(spelling) { 200 } else { 400 };
        assert_eq!(*status, expected, "{spelling}");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.sandbox.stats().sms.len() < 5 {
        assert!(Instant::now() < deadline, "not every invoice was delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Anything extra would have arrived by now.
    tokio::time::sleep(Duration::from_millis(700)).await;
    for id in &ids {
        assert_eq!(s.sandbox.captures(id), 1, "{id}");
    }
    let sms = s.sandbox.stats().sms;
    assert_eq!(sms.len(), 5, "{sms:?}");
    for id in &ids {
        assert_eq!(
            sms.iter().filter(|m| m.text.contains(id.as_str())).count(),
            1,
            "one SMS for {id}"
        );
    }
    let status = run(&s.config, &["status", "--json"], &[]).await;
    let totals: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        totals["invoices"].as_array().map(Vec::len),
        Some(5),
        "{}",
        text(&status)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_well_formed_unknown_ids_stores_nothing_and_reads_dintero_at_a_bounded_rate() {
    let (s, serve) = serve_with_sms().await;
    let gets_before = s.sandbox.stats().requests.get("get").copied().unwrap_or(0);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let statuses = futures_join(
        (0..300)
            .map(|n| {
                let (client, base) = (client.clone(), serve.base.clone());
                let id = format!("T12345678.Unknown{n:05}");
                tokio::spawn(async move { (callback(&client, &base, &id).await, id) })
            })
            .collect(),
    )
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let gets = s.sandbox.stats().requests.get("get").copied().unwrap_or(0) - gets_before;
    // Burst of 20 plus 20 a second (the default `server.unverified_per_second`).
    let bound = 20.0 + 20.0 * elapsed + 1.0;
    assert!(
        f64::from(gets) <= bound,
        "{gets} GETs in {elapsed:.2} s (bound {bound:.0})"
    );
    assert!(statuses.iter().all(|(s, _)| *s == 503), "{statuses:?}");
    assert!(f64::from(gets) < 300.0, "the limit was never reached");
    // Ids of another account or of another shape never reach Dintero at all.
    for id in ["P12345678.abc", "T87654321.abc", "T12345678.a%00b"] {
        assert_eq!(callback(&client, &serve.base, id).await, 400, "{id}");
    }
    let status = run(&s.config, &["status", "--json"], &[]).await;
    let totals: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(
        totals["invoices"].as_array().map(Vec::len),
        Some(0),
        "{}",
        text(&status)
    );
    assert_eq!(
        s.sandbox.stats().requests.get("get").copied().unwrap_or(0) - gets_before,
        gets
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_refuses_odd_spellings_before_touching_anything() {
    let s = setup("").await;
    let id = s.sandbox.seed(Seed::default());
    for (args, spelling) in [
        (vec!["deliver"], format!("x/../{id}")),
        (vec!["void"], format!("{id}/")),
        (vec!["retry"], format!("./{id}")),
        (vec!["status"], format!("{id}\u{1b}[2J")),
        (vec!["deliver"], "P12345678.abc".to_owned()),
    ] {
        let mut args: Vec<&str> = args;
        args.push(&spelling);
        let output = run(&s.config, &args, &[]).await;
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", text(&output));
        assert!(text(&output).contains("is refused"), "{}", text(&output));
        assert!(
            !text(&output).contains('\u{1b}'),
            "escape reached the terminal"
        );
    }
    assert_eq!(s.sandbox.captures(&id), 0);
    assert_eq!(s.sandbox.stats().voids.len(), 0);
}

async fn futures_join<T: Send + 'static>(handles: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("joined"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_claiming_at_once_and_a_half_sent_request_cannot_hold_the_process() {
    let port = free_port();
    let s = setup(&format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[routes]]\ndeliver = [\"archive\"]\ndelay = \"1500ms\"\n"
    ))
    .await;
    let mut serve = Serve::start(&s.config, port).await;
    let id = s.sandbox.seed(Seed::default());
    assert_eq!(
        callback(&reqwest::Client::new(), &serve.base, &id).await,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.sandbox.captures(&id) == 0 {
        assert!(Instant::now() < deadline, "never captured");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A client that sends half a request head and then nothing.
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut slow, b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .expect("write");
    let stopped_at = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let exit = loop {
        if let Some(status) = serve.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(20),
            "the half-sent request kept the process alive"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));
    // The delivery came due 1.5 s after capture, while the process was shutting down: a worker
    // that stopped claiming at SIGTERM never started it.
    let number = s.sandbox.transaction(&id).expect("tx")["metadata"]["kravia:invoice_number"]
        .as_str()
        .expect("number")
        .to_owned();
    assert!(
        !s.dir.path().join(format!("invoices/{number}.pdf")).exists(),
        "a job was claimed after SIGTERM"
    );
    let status = run(&s.config, &["status", &id], &[]).await;
    assert!(text(&status).contains("queued"), "{}", text(&status));
    drop(slow);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_passwords_never_reach_the_terminal() {
    let s = setup("").await;
    // Nobody listens on port 9: each command fails connecting, which takes the pool's patience.
    for url in ["postgres://postbud:hunter2@127.0.0.1:9/postbud?sslmode=disable&password=hunter2"] {
        for args in [vec!["status", "T12345678.abc"]] {
            let output = run(&s.config, &args, &[("POSTBUD_STORE__URL", url)]).await;
            let said = text(&output);
            assert_ne!(output.status.code(), Some(0), "{said}");
            assert!(!said.contains("hunter2"), "{args:?}: {said}");
            assert!(said.contains("***"), "{args:?}: {said}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_sequences_in_dintero_data_never_reach_the_terminal() {
    let s = setup("").await;
    let id = s.sandbox.seed(Seed {
        invoice_number: Some("INV-1\u{1b}[2J\u{1b}]0;owned\u{7}\u{202E}".into()),
        ..Seed::default()
    });
    let deliver = run(&s.config, &["deliver", &id], &[]).await;
    assert_eq!(deliver.status.code(), Some(0), "{}", text(&deliver));
    for args in [
        vec!["status"],
        vec!["status", id.as_str()],
        vec!["status", "--json"],
    ] {
        let output = run(&s.config, &args, &[]).await;
        let said = text(&output);
        assert!(said.contains("INV-1"), "{args:?}: {said}");
        if args.contains(&"--json") {
            let parsed: serde_json::Value =
                serde_json::from_slice(&output.stdout).expect("still JSON");
            assert!(
                parsed["invoices"][0]["invoice_number"]
                    .as_str()
                    .is_some_and(|n| n.contains('\u{202E}'))
            );
        }
        for bad in ['\u{1b}', '\u{7}', '\u{202E}'] {
            assert!(
                !said.contains(bad),
                "{args:?}: {bad:?} reached the terminal: {said:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_moved_away_while_serving_gets_503_until_it_is_back() {
    let port = free_port();
    let s = setup(&format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    let serve = Serve::start(&s.config, port).await;
    let client = reqwest::Client::new();
    let db = s.dir.path().join("postbud.db");
    let away = s.dir.path().join("postbud.db.moved");
    std::fs::rename(&db, &away).expect("move away");
    let id = s.sandbox.seed(Seed::default());
    assert_eq!(
        callback(&client, &serve.base, &id).await,
        503,
        "not stored: Dintero must retry"
    );
    let health = client
        .get(format!("{}/healthz", serve.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status().as_u16(), 503);
    assert!(health.text().await.expect("text").contains("was removed"));
    assert!(!db.exists(), "no empty store was created in its place");
    // A different file in its place (a careless restore) is not written to either.
    std::fs::write(&db, b"").expect("impostor");
    assert_eq!(callback(&client, &serve.base, &id).await, 503);
    std::fs::remove_file(&db).expect("remove impostor");
    std::fs::rename(&away, &db).expect("move back");
    assert_eq!(callback(&client, &serve.base, &id).await, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.sandbox.captures(&id) == 0 {
        assert!(
            Instant::now() < deadline,
            "not delivered once the file was back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
