//! The reliability suite: worker processes killed, paused and cut off from their database while
//! invoices flow, against a sandbox in its own process that injects Dintero's failure modes.
//! Each test prints its figures.
//!
//! Counted by the sandbox: captures per transaction. Counted by the webhook receiver here: sends
//! per delivery id (`webhook-id`). Promised: nothing lost, nothing captured twice, at most one
//! repeated send per kill.

mod common;

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use std::future::IntoFuture;

use axum::{Router, http::HeaderMap, routing::post};

/// The tests in this file run one at a time: they measure, and they share two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct SandboxProcess {
    child: Child,
    base: String,
    /// The `[dintero]` table it serves at `/sandbox/dintero.toml`.
    dintero: String,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sandbox() -> SandboxProcess {
    postbud::http::ensure_crypto_provider();
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_postbud"))
        .args([
            "sandbox",
            "--seed",
            "0",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sandbox");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{base}/sandbox/stats")).await.is_err() {
        assert!(Instant::now() < deadline, "sandbox did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The table names the CDN's origin, another port the process chose.
    let dintero = reqwest::get(format!("{base}/sandbox/dintero.toml"))
        .await
        .expect("the sandbox's [dintero] table")
        .text()
        .await
        .expect("text");
    SandboxProcess {
        child,
        base,
        dintero,
    }
}

impl SandboxProcess {
    async fn seed(&self, n: usize) -> Vec<String> {
        let http = reqwest::Client::new();
        let mut ids = Vec::with_capacity(n);
        for _ in 0..n {
            let created: serde_json::Value = http
                .post(format!("{}/sandbox/transactions", self.base))
                .json(&serde_json::json!({}))
                .send()
                .await
                .expect("seed")
                .json()
                .await
                .expect("json");
            ids.push(created["id"].as_str().expect("id").to_owned());
        }
        ids
    }

    async fn fault(&self, fault: serde_json::Value) {
        reqwest::Client::new()
            .post(format!("{}/sandbox/faults", self.base))
            .json(&fault)
            .send()
            .await
            .expect("fault");
    }

    async fn captures(&self) -> HashMap<String, u64> {
        let stats: serde_json::Value = reqwest::get(format!("{}/sandbox/stats", self.base))
            .await
            .expect("stats")
            .json()
            .await
            .expect("json");
        stats["captures"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Counts sends per `webhook-id`, answering after `delay`.
async fn receiver(delay: Duration) -> (String, Arc<Mutex<HashMap<String, u32>>>) {
    let sends = Arc::new(Mutex::new(HashMap::new()));
    let counter = Arc::clone(&sends);
    let app = Router::new().route(
        "/hook",
        post(move |headers: HeaderMap| {
            let counter = Arc::clone(&counter);
            async move {
                tokio::time::sleep(delay).await;
                let id = headers
                    .get("webhook-id")
                    .and_then(|h| h.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                *counter.lock().expect("lock").entry(id).or_insert(0) += 1;
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, sends)
}

fn config(
    dir: &std::path::Path,
    sandbox: &SandboxProcess,
    store: &str,
    hook: &str,
    workers: usize,
) -> std::path::PathBuf {
    let path = dir.join("postbud.toml");
    std::fs::write(
        &path,
        format!(
            "{dintero}timeout = \"2s\"\n\n\
             [server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://invoices.example\"\nlink_secret = \"reliability\"\n\n[store]\nurl = \"{store}\"\n\n\
             [engine]\nworkers = {workers}\nlease = \"1s\"\nbackoff_base = \"100ms\"\nbackoff_max = \"1s\"\nmax_attempts = 50\npoll_interval = \"100ms\"\n\n\
             [channels.platform]\nkind = \"webhook\"\nurl = \"{hook}\"\nsecret = \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"\n\n[[routes]]\ndeliver = [\"platform\"]\n",
            dintero = sandbox.dintero
        ),
    )
    .expect("config");
    path
}

fn worker(config: &std::path::Path, extra_env: &[(&str, String)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_postbud"));
    command
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_remove("POSTBUD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        command.env(k, v);
    }
    command.spawn().expect("worker")
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

async fn open(config: &std::path::Path) -> postbud::App {
    let settings = postbud::Settings::load(Some(config)).expect("settings");
    let mut registry = postbud::Registry::discover().expect("registry");
    postbud_webhook::register(&mut registry).expect("webhook");
    postbud::App::builder(&settings)
        .registry(registry)
        .open()
        .await
        .expect("app")
}

struct Run {
    delivered: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Submits `ids`, then waits until every delivery is done, killing and restarting a worker every
/// `kill_every` when given. Returns the figures and the number of kills.
async fn drive(
    app: &postbud::App,
    ids: &[String],
    workers: &mut [Child],
    config: &std::path::Path,
    kill_every: Option<Duration>,
) -> (Run, u32) {
    let started = Instant::now();
    for id in ids {
        app.submit(id).await.expect("submit");
    }
    let mut kills = 0;
    let mut last_kill = Instant::now();
    loop {
        let totals = app.totals().await.expect("totals");
        if totals.delivered >= ids.len() as u64 && totals.queued == 0 && totals.in_flight == 0 {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let dir = config.parent().expect("dir");
            let mut logs: Vec<_> = std::fs::read_dir(dir)
                .expect("dir")
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "log"))
                .collect();
            logs.sort();
            let last = logs
                .last()
                .map(|p| std::fs::read_to_string(p).unwrap_or_default())
                .unwrap_or_default();
            panic!("not finished: {totals:?}; last worker log:\n{last}");
        }
        if let Some(every) = kill_every
            && last_kill.elapsed() >= every
        {
            let victim = kills as usize % workers.len();
            signal(&workers[victim], "KILL");
            let _ = workers[victim].wait();
            workers[victim] = worker(config, &[]);
            kills += 1;
            last_kill = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let mut latencies = Vec::new();
    for id in ids {
        let dispatch = app.dispatch(id).await.expect("dispatch").expect("exists");
        let jobs = app.jobs(id).await.expect("jobs");
        let done = jobs
            .iter()
            .filter(|j| j.kind == postbud::JobKind::Deliver)
            .map(|j| j.updated_at)
            .max()
            .expect("a delivery");
        latencies.push((done - dispatch.created_at) as f64);
    }
    latencies.sort_by(f64::total_cmp);
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    (
        Run {
            delivered: ids.len() as u64,
            seconds,
            p50_ms: at(0.5),
            p99_ms: at(0.99),
        },
        kills,
    )
}

fn assert_promises(
    captures: &HashMap<String, u64>,
    sends: &HashMap<String, u32>,
    ids: &[String],
    kills: u32,
    label: &str,
    repeats_bounded_by_kills: bool,
) {
    let lost: Vec<&String> = ids
        .iter()
        .filter(|id| captures.get(*id).copied().unwrap_or(0) == 0)
        .collect();
    let twice: Vec<&String> = ids
        .iter()
        .filter(|id| captures.get(*id).copied().unwrap_or(0) > 1)
        .collect();
    let undelivered = ids.len().saturating_sub(sends.len());
    let repeats: u32 = sends.values().map(|n| n - 1).sum();
    println!(
        "{label}: {} dispatches, {kills} kills: {} lost, {} captured twice, {undelivered} undelivered, {repeats} repeated sends",
        ids.len(),
        lost.len(),
        twice.len()
    );
    assert!(lost.is_empty(), "{label}: never captured: {lost:?}");
    assert!(twice.is_empty(), "{label}: captured twice: {twice:?}");
    assert_eq!(undelivered, 0, "{label}: deliveries missing");
    if repeats_bounded_by_kills {
        assert!(
            repeats <= kills,
            "{label}: {repeats} repeated sends for {kills} kills"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_four_workers_killed_every_two_seconds_under_dintero_faults() {
    let _serial = SERIAL.lock().await;
    let Some((url, name)) = common::postgres_database(
        "postgres_four_workers_killed_every_two_seconds_under_dintero_faults",
    )
    .await
    else {
        return;
    };
    let sandbox = sandbox().await;
    let (hook, sends) = receiver(Duration::from_millis(5)).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = config(dir.path(), &sandbox, &url, &hook, 1);
    let app = open(&config).await;
    for fault in [
        serde_json::json!({"operation": "capture", "kind": "status", "status": 503, "times": 40}),
        serde_json::json!({"operation": "capture", "kind": "status", "status": 429, "retry_after": 1, "times": 20}),
        serde_json::json!({"operation": "capture", "kind": "accepted", "after_gets": 2, "times": 40}),
        serde_json::json!({"operation": "capture", "kind": "slow_response", "ms": 3000, "times": 10}),
        serde_json::json!({"operation": "get", "kind": "status", "status": 503, "times": 40}),
        serde_json::json!({"operation": "pdf", "kind": "status", "status": 502, "times": 20}),
    ] {
        sandbox.fault(fault).await;
    }
    let ids = sandbox.seed(1000).await;
    let mut workers: Vec<Child> = (0..4).map(|_| worker(&config, &[])).collect();
    let (run, kills) = drive(
        &app,
        &ids,
        &mut workers,
        &config,
        Some(Duration::from_secs(2)),
    )
    .await;
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let sends = sends.lock().expect("lock").clone();
    assert_promises(
        &sandbox.captures().await,
        &sends,
        &ids,
        kills,
        "postgres, 4 workers",
        true,
    );
    assert!(
        kills >= 2,
        "the run was too short to kill workers ({kills} kills)"
    );
    println!(
        "postgres, 4 workers, kills every 2 s, Dintero faults: {:.0} dispatches/s, submit to delivered p50 {:.0} ms, p99 {:.0} ms",
        run.delivered as f64 / run.seconds,
        run.p50_ms,
        run.p99_ms
    );
    common::drop_postgres_database(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_one_worker_restarted_repeatedly() {
    let _serial = SERIAL.lock().await;
    let sandbox = sandbox().await;
    let (hook, sends) = receiver(Duration::from_millis(20)).await;
    let dir = tempfile::tempdir().expect("dir");
    let store = format!("sqlite://{}/postbud.db", dir.path().display());
    let config = config(dir.path(), &sandbox, &store, &hook, 1);
    let app = open(&config).await;
    sandbox.fault(serde_json::json!({"operation": "capture", "kind": "slow_response", "ms": 3000, "times": 5})).await;
    let ids = sandbox.seed(500).await;
    let mut workers = vec![worker(&config, &[])];
    let (run, kills) = drive(
        &app,
        &ids,
        &mut workers,
        &config,
        Some(Duration::from_secs(2)),
    )
    .await;
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let sends = sends.lock().expect("lock").clone();
    assert_promises(
        &sandbox.captures().await,
        &sends,
        &ids,
        kills,
        "sqlite, 1 worker",
        true,
    );
    assert!(
        kills >= 2,
        "the run was too short to kill workers ({kills} kills)"
    );
    println!(
        "sqlite, 1 worker killed every 2 s: {:.0} dispatches/s, p50 {:.0} ms, p99 {:.0} ms",
        run.delivered as f64 / run.seconds,
        run.p50_ms,
        run.p99_ms
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_throughput_with_one_two_and_four_workers() {
    let _serial = SERIAL.lock().await;
    let Some((url, name)) =
        common::postgres_database("postgres_throughput_with_one_two_and_four_workers").await
    else {
        return;
    };
    let sandbox = sandbox().await;
    let (hook, _) = receiver(Duration::ZERO).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = config(dir.path(), &sandbox, &url, &hook, 8);
    let app = open(&config).await;
    for processes in [1, 2, 4] {
        let ids = sandbox.seed(300).await;
        let mut workers: Vec<Child> = (0..processes).map(|_| worker(&config, &[])).collect();
        let (run, _) = drive(&app, &ids, &mut workers, &config, None).await;
        for w in &mut workers {
            let _ = w.kill();
            let _ = w.wait();
        }
        println!(
            "postgres, {processes} worker process(es) x 8: {:.0} dispatches/s, submit to delivered p50 {:.0} ms, p99 {:.0} ms",
            run.delivered as f64 / run.seconds,
            run.p50_ms,
            run.p99_ms
        );
    }
    common::drop_postgres_database(&name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_paused_past_its_lease_cannot_write_late() {
    let _serial = SERIAL.lock().await;
    let Some((url, name)) =
        common::postgres_database("a_worker_paused_past_its_lease_cannot_write_late").await
    else {
        return;
    };
    let sandbox = sandbox().await;
    // A slow platform: the first worker is mid-delivery when it is paused.
    let (hook, sends) = receiver(Duration::from_millis(1500)).await;
    let dir = tempfile::tempdir().expect("dir");
    let config = config(dir.path(), &sandbox, &url, &hook, 8);
    let app = open(&config).await;
    let ids = sandbox.seed(1).await;
    let mut first = worker(&config, &[]);
    app.submit(&ids[0]).await.expect("submit");
    // Wait until the delivery is claimed by the first worker.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = app.jobs(&ids[0]).await.expect("jobs");
        if jobs
            .iter()
            .any(|j| j.kind == postbud::JobKind::Deliver && j.state == postbud::JobState::Running)
        {
            break;
        }
        assert!(Instant::now() < deadline, "never claimed: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    signal(&first, "STOP");
    // Past the 1 s lease, a second worker takes the delivery over and finishes it.
    let mut second = worker(&config, &[]);
    loop {
        let jobs = app.jobs(&ids[0]).await.expect("jobs");
        if jobs
            .iter()
            .any(|j| j.kind == postbud::JobKind::Deliver && j.state == postbud::JobState::Done)
        {
            break;
        }
        assert!(Instant::now() < deadline, "not rescued: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal(&first, "CONT");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let history = app.history(&ids[0]).await.expect("history");
    let delivered: Vec<_> = history.iter().filter(|e| e.event == "delivered").collect();
    println!(
        "paused worker: {} 'delivered' records, {} sends seen by the platform",
        delivered.len(),
        sends.lock().expect("lock").values().sum::<u32>()
    );
    assert_eq!(
        delivered.len(),
        1,
        "the resumed worker's late write was refused: {history:?}"
    );
    let job = app
        .jobs(&ids[0])
        .await
        .expect("jobs")
        .into_iter()
        .find(|j| j.kind == postbud::JobKind::Deliver)
        .expect("job");
    assert_eq!(job.attempts, 2, "the rescue is the second attempt");
    for child in [&mut first, &mut second] {
        let _ = child.kill();
        let _ = child.wait();
    }
    common::drop_postgres_database(&name).await;
}

/// A TCP proxy to PostgreSQL that can cut every connection and refuse new ones for a while: the
/// database "going away" without touching the shared server.
struct Proxy {
    port: u16,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
}

async fn proxy(target: (String, u16)) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (cut, cuts) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            if *cuts.borrow() {
                continue; // refused while cut: the socket is dropped
            }
            let (target, mut cuts) = (target.clone(), cuts.clone());
            tokio::spawn(async move {
                let Ok(mut server) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = cuts.wait_for(|cut| *cut) => {}
                }
            });
        }
    });
    Proxy {
        port,
        cut: Arc::new(cut),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_going_away_mid_run_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let Some((url, name)) =
        common::postgres_database("the_database_going_away_mid_run_loses_nothing").await
    else {
        return;
    };
    let sandbox = sandbox().await;
    let (hook, sends) = receiver(Duration::from_millis(100)).await;
    let dir = tempfile::tempdir().expect("dir");
    let parsed = url::Url::parse(&url).expect("url");
    let proxy = proxy((
        parsed.host_str().expect("host").to_owned(),
        parsed.port().unwrap_or(5432),
    ))
    .await;
    let mut through = parsed.clone();
    through.set_host(Some("127.0.0.1")).expect("host");
    through.set_port(Some(proxy.port)).expect("port");
    // The workers reach the database only through the proxy; this test's own view goes direct.
    let config = config(dir.path(), &sandbox, through.as_str(), &hook, 8);
    let direct = dir.path().join("direct.toml");
    std::fs::write(
        &direct,
        std::fs::read_to_string(&config)
            .expect("config")
            .replace(through.as_str(), &url),
    )
    .expect("direct");
    let app = open(&direct).await;
    let ids = sandbox.seed(400).await;
    let mut workers: Vec<Child> = (0..2).map(|_| worker(&config, &[])).collect();
    // A callback endpoint whose store is behind the proxy too: while the database is away, a
    // callback must not be acknowledged as accepted.
    let behind = Arc::new(open(&config).await);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let callback = format!(
        "http://{}/dintero/callback",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(axum::serve(listener, postbud::server::router(Arc::clone(&behind))).into_future());
    let late = sandbox.seed(1).await.remove(0);
    let cutter = {
        let cut = Arc::clone(&proxy.cut);
        let (callback, late) = (callback.clone(), late.clone());
        tokio::spawn(async move {
            let mut during_cut = Vec::new();
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_secs(2)).await;
                let _ = cut.send(true);
                tokio::time::sleep(Duration::from_millis(500)).await;
                let answer = reqwest::get(format!("{callback}?transaction_id={late}"))
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0);
                during_cut.push(answer);
                tokio::time::sleep(Duration::from_millis(2500)).await;
                let _ = cut.send(false);
            }
            during_cut
        })
    };
    let (run, _) = drive(&app, &ids, &mut workers, &config, None).await;
    let during_cut = cutter.await.expect("cutter");
    println!("callbacks answered while the database was away: {during_cut:?}");
    assert!(
        during_cut.iter().all(|status| *status != 200),
        "a callback was acknowledged without being stored: {during_cut:?}"
    );
    let after = reqwest::get(format!("{callback}?transaction_id={late}"))
        .await
        .expect("callback")
        .status()
        .as_u16();
    assert_eq!(after, 200, "accepted once the database is back");
    for w in &mut workers {
        let _ = w.kill();
        let _ = w.wait();
    }
    let sends = sends.lock().expect("lock").clone();
    assert_promises(
        &sandbox.captures().await,
        &sends,
        &ids,
        0,
        "postgres cut twice for 3 s",
        // Attempts that ended while the database was away cannot be recorded; when a lease lapses
        // meanwhile, another worker repeats them. Nothing may be lost or captured twice.
        false,
    );
    println!(
        "postgres cut twice for 3 s: {:.0} dispatches/s over {:.1} s",
        run.delivered as f64 / run.seconds,
        run.seconds
    );
    common::drop_postgres_database(&name).await;
}
