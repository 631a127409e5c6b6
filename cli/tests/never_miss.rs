//! Never miss an invoice: with no callback at all, `postbud serve`'s sweep finds every
//! merchant-delivered invoice at Dintero and delivers it once; `postbud reconcile` says what it
//! found; a fleet on PostgreSQL sweeps once per interval.

mod common;

use std::time::{Duration, Instant};

use common::{Serve, free_port, run, setup, text};
use postbud_sandbox::Seed;

/// The configuration file with keys added to its `[dintero]` table.
fn with_dintero_keys(config: &std::path::Path, keys: &str) {
    let text = std::fs::read_to_string(config).expect("config");
    std::fs::write(
        config,
        text.replacen("[store]", &format!("{keys}\n\n[store]"), 1),
    )
    .expect("config");
}

fn pdfs(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "pdf"))
            })
            .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_callbacks_the_sweep_delivers_every_merchant_invoice_once_across_pages() {
    let port = free_port();
    let s = setup(&format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")).await;
    with_dintero_keys(&s.config, "reconcile_every = \"2s\"");
    // More than one page of Dintero's list (100), and Kravia's own invoices among them.
    let ours: Vec<String> = (0..130).map(|_| s.sandbox.seed(Seed::default())).collect();
    let kravias: Vec<String> = (0..5)
        .map(|_| {
            s.sandbox.seed(Seed {
                session_channel: Some("kravia".into()),
                ..Seed::default()
            })
        })
        .collect();
    let serve = Serve::start(&s.config, port).await;
    let invoices = s.dir.path().join("invoices");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pdfs(&invoices) < ours.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} delivered",
            pdfs(&invoices),
            ours.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Another sweep or two: nothing is captured or delivered again.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(pdfs(&invoices), ours.len());
    for id in &ours {
        assert_eq!(s.sandbox.captures(id), 1, "{id}");
    }
    for id in &kravias {
        assert_eq!(s.sandbox.captures(id), 0, "Kravia sends {id} itself");
    }
    assert!(
        s.sandbox.stats().callbacks.is_empty(),
        "no callback was involved"
    );
    let status = run(&s.config, &["status", "--json"], &[]).await;
    let report: serde_json::Value = serde_json::from_slice(&status.stdout).expect("json");
    assert_eq!(report["counts"]["skipped"], 5, "{}", text(&status));
    assert_eq!(report["last_sweep"]["found"], 135, "{}", text(&status));
    assert_eq!(
        report["last_sweep"]["new"],
        0,
        "the later sweep read nothing again: {}",
        text(&status)
    );
    let status = run(&s.config, &["status"], &[]).await;
    assert!(
        text(&status).contains("last reconciliation sweep"),
        "{}",
        text(&status)
    );
    let metrics = reqwest::get(format!("{}/metrics", serve.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("postbud_reconcile_last_found 135"),
        "{metrics}"
    );
    assert!(metrics.contains("postbud_reconcile_last_ok 1"), "{metrics}");
}

/// An invoice another deployment captured is left alone by this one's sweep, and `status` says
/// how many the last sweep left so, beside what it found and submitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_counts_what_the_last_sweep_found_captured_elsewhere() {
    let s = setup("").await;
    let delivered = s.sandbox.seed(Seed::default());
    let first = run(&s.config, &["deliver", &delivered], &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    // The same account seen from a second store: the delivered invoice is unknown there.
    let elsewhere = s.dir.path().join("elsewhere.toml");
    let toml = std::fs::read_to_string(&s.config).expect("config");
    let store = format!("sqlite://{}/postbud.db", s.dir.path().display());
    assert!(toml.contains(&store), "{toml}");
    let other = format!("sqlite://{}/elsewhere.db", s.dir.path().display());
    std::fs::write(&elsewhere, toml.replace(&store, &other)).expect("config");
    s.sandbox.seed(Seed::default());
    let sweep = run(&elsewhere, &["reconcile"], &[]).await;
    assert!(
        text(&sweep).contains("1 unknown here but captured already"),
        "{}",
        text(&sweep)
    );
    let status = run(&elsewhere, &["status"], &[]).await;
    assert!(
        text(&status).contains("found 2, new 1, submitted 1, captured elsewhere 1, voided 0"),
        "{}",
        text(&status)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_prints_what_it_found_and_is_cheap_the_second_time() {
    let s = setup("").await;
    let ids: Vec<String> = (0..3).map(|_| s.sandbox.seed(Seed::default())).collect();
    let first = run(&s.config, &["reconcile"], &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let said = text(&first);
    assert!(
        said.contains("found 3 authorized Kravia transaction(s)")
            && said.contains("3 new to this store, 3 submitted"),
        "{said}"
    );
    let gets_before = s.sandbox.stats().requests.get("get").copied().unwrap_or(0);
    let second = run(&s.config, &["reconcile"], &[]).await;
    assert!(
        text(&second).contains("found 3") && text(&second).contains("0 new"),
        "{}",
        text(&second)
    );
    assert_eq!(
        s.sandbox.stats().requests.get("get").copied().unwrap_or(0),
        gets_before,
        "no transaction was read again"
    );
    let deliver = run(&s.config, &["deliver", &ids[0]], &[]).await;
    assert_eq!(deliver.status.code(), Some(0), "{}", text(&deliver));
    let check = run(&s.config, &["check"], &[]).await;
    assert!(
        text(&check).contains("neither dintero.callback_secret nor dintero.webhook_secret"),
        "{}",
        text(&check)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_postgres_sweep_once_per_interval() {
    let Some((url, name)) =
        common::postgres_database("two_instances_on_postgres_sweep_once_per_interval").await
    else {
        return;
    };
    let (a, b) = (free_port(), free_port());
    let s = setup(&format!("[server]\nlisten = \"127.0.0.1:{a}\"\n")).await;
    with_dintero_keys(&s.config, "reconcile_every = \"1s\"");
    let text_a = std::fs::read_to_string(&s.config).expect("config").replace(
        &format!("sqlite://{}/postbud.db", s.dir.path().display()),
        &url,
    );
    std::fs::write(&s.config, &text_a).expect("config a");
    let config_b = s.dir.path().join("b.toml");
    std::fs::write(
        &config_b,
        text_a.replace(&format!("127.0.0.1:{a}"), &format!("127.0.0.1:{b}")),
    )
    .expect("config b");
    let ids: Vec<String> = (0..4).map(|_| s.sandbox.seed(Seed::default())).collect();
    let lists = || s.sandbox.stats().requests.get("list").copied().unwrap_or(0);
    let serve_a = Serve::start(&s.config, a).await;
    let serve_b = Serve::start(&config_b, b).await;
    let started = Instant::now();
    let before = lists();
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let sweeps = f64::from(lists() - before) / 2.0; // two listings per sweep: authorized, voided
    let intervals = started.elapsed().as_secs_f64();
    assert!(sweeps >= 3.0, "{sweeps} sweeps in {intervals:.1} s");
    assert!(
        sweeps <= intervals + 1.5,
        "{sweeps} sweeps in {intervals:.1} s: the instances swept together"
    );
    for id in &ids {
        assert_eq!(s.sandbox.captures(id), 1, "{id}");
    }
    drop((serve_a, serve_b));
    common::drop_postgres_database(&name).await;
}
