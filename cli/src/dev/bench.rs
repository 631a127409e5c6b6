//! `postbud bench`: N invoices through capture, PDF fetch and a webhook delivery against the
//! sandbox on loopback, beside the bare cost of the same HTTP requests without Postbud.

use std::{
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use postbud::{JobKind, Settings};

use super::stock_registry;
use crate::commands::{Failure, exit};

pub(super) fn io(e: impl std::fmt::Display) -> Failure {
    Failure {
        message: e.to_string(),
        code: exit::FAILED,
    }
}

/// Peak and current resident memory of this process, in MiB (Linux).
fn memory() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// CPU time this process has used, user and system, in milliseconds (Linux, 10 ms steps).
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are the 14th and 15th fields: 12th and 13th after the name.
    (ticks(11) + ticks(12)) * 10.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A webhook receiver that counts what it gets.
async fn receiver() -> std::io::Result<(String, Arc<AtomicUsize>)> {
    let count = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&count);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, count))
}

/// The same requests Postbud makes for one invoice, without Postbud: a token once, then per
/// invoice what the flow does: GET the transaction, the PDF through its Files descriptor,
/// POST the capture, GET the transaction and the PDF again (the flow delivers what Dintero
/// serves after capture), then POST the webhook.
async fn bare(api: &str, ids: &[String], hook: &str, concurrency: usize) -> Result<f64, Failure> {
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{api}/accounts/T12345678/auth/token"))
        .basic_auth("sandbox-client", Some("sandbox-secret"))
        .json(&serde_json::json!({"grant_type": "client_credentials", "audience": "https://api.dintero.com/v1/accounts/T12345678"}))
        .send()
        .await
        .map_err(io)?
        .json()
        .await
        .map_err(io)?;
    let token = token["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let started = Instant::now();
    let queue = Arc::new(std::sync::Mutex::new(ids.to_vec()));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (http, token, queue, api, hook) = (
            http.clone(),
            token.clone(),
            Arc::clone(&queue),
            api.to_owned(),
            hook.to_owned(),
        );
        workers.spawn(async move {
            // The transaction and its PDF, as the flow reads them before and after capture.
            let read = async |id: &str| -> Result<(serde_json::Value, usize), reqwest::Error> {
                let tx: serde_json::Value = http
                    .get(format!("{api}/transactions/{id}?includes=session"))
                    .bearer_auth(&token)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let url = tx["metadata"]["kravia:invoice_url"]
                    .as_str()
                    .unwrap_or_default();
                let descriptor: serde_json::Value = http
                    .get(url)
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let pdf = http
                    .get(descriptor["url"].as_str().unwrap_or_default())
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                assert!(pdf.starts_with(b"%PDF-"), "the bare run did not get a PDF");
                Ok((tx, pdf.len()))
            };
            loop {
                let Some(id) = queue.lock().unwrap_or_else(|p| p.into_inner()).pop() else {
                    return Ok::<(), reqwest::Error>(());
                };
                let (tx, _) = read(&id).await?;
                http.post(format!("{api}/transactions/{id}/capture"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"amount": tx["amount"]}))
                    .send()
                    .await?
                    .error_for_status()?;
                let (_, size) = read(&id).await?;
                http.post(&hook)
                    .json(&serde_json::json!({"id": id, "size": size}))
                    .send()
                    .await?
                    .error_for_status()?;
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result.map_err(io)?.map_err(io)?;
    }
    Ok(ids.len() as f64 / started.elapsed().as_secs_f64())
}

/// The sandbox in its own process, so this process's memory is Postbud's alone.
struct SandboxProcess {
    child: std::process::Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for SandboxProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SandboxProcess {
    async fn start() -> Result<Self, Failure> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(io)?
            .port();
        let child = std::process::Command::new(std::env::current_exe().map_err(io)?)
            .args([
                "sandbox",
                "--seed",
                "0",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(io)?;
        let sandbox = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while sandbox
            .http
            .get(format!("{}/sandbox/stats", sandbox.base))
            .send()
            .await
            .is_err()
        {
            if Instant::now() > deadline {
                return Err(io("the sandbox process did not start"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(sandbox)
    }

    /// Makes the sandbox hold every answer the flow waits for (see `--dintero-latency`).
    async fn hold_answers(&self, latency: Duration) -> Result<(), Failure> {
        for operation in ["token", "get", "capture", "file", "pdf"] {
            self.http
                .post(format!("{}/sandbox/faults", self.base))
                .json(&serde_json::json!({
                    "operation": operation,
                    "kind": "slow_response",
                    "ms": latency.as_millis() as u64,
                    "times": u32::MAX,
                }))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(io)?;
        }
        Ok(())
    }

    /// The `[dintero]` table the process serves: its account, and its CDN's origin, a port the
    /// process chose.
    async fn dintero_toml(&self) -> Result<String, Failure> {
        self.http
            .get(format!("{}/sandbox/dintero.toml", self.base))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(io)?
            .text()
            .await
            .map_err(io)
    }

    fn api_url(&self) -> String {
        format!("{}/v1", self.base)
    }

    /// Seeds `n` transactions, 16 requests at a time.
    async fn seed(&self, n: usize) -> Result<Vec<String>, Failure> {
        let mut ids = Vec::with_capacity(n);
        let mut pending = tokio::task::JoinSet::new();
        for i in 0..n {
            let (http, url) = (
                self.http.clone(),
                format!("{}/sandbox/transactions", self.base),
            );
            pending.spawn(async move {
                let created: serde_json::Value = http
                    .post(url)
                    .json(&serde_json::json!({}))
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                Ok::<_, reqwest::Error>((i, created["id"].as_str().unwrap_or_default().to_owned()))
            });
            if pending.len() >= 16 || i + 1 == n {
                while let Some(done) = pending.join_next().await {
                    ids.push(done.map_err(io)?.map_err(io)?);
                }
            }
        }
        ids.sort();
        Ok(ids.into_iter().map(|(_, id)| id).collect())
    }

    async fn captures(&self) -> u64 {
        let stats: serde_json::Value = match self
            .http
            .get(format!("{}/sandbox/stats", self.base))
            .send()
            .await
        {
            Ok(r) => r.json().await.unwrap_or_default(),
            Err(_) => return 0,
        };
        stats["captures"]
            .as_object()
            .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
            .unwrap_or(0)
    }
}

/// A database of its own on the PostgreSQL server the operator named, dropped afterwards.
struct ScratchDatabase {
    admin: String,
    name: String,
    url: String,
}

impl ScratchDatabase {
    async fn create(admin: &str) -> Result<Self, Failure> {
        use sqlx::Connection as _;
        let unreachable = |e: sqlx::Error| Failure {
            message: format!("--postgres {}: {e}", postbud::http::redact_url(admin)),
            code: exit::UNAVAILABLE,
        };
        let mut conn = sqlx::PgConnection::connect(admin)
            .await
            .map_err(unreachable)?;
        let name = format!("postbud_bench_{}", std::process::id());
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .map_err(unreachable)?;
        let mut url = url::Url::parse(admin).map_err(io)?;
        url.set_path(&name);
        Ok(Self {
            admin: admin.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    async fn drop_now(self) {
        use sqlx::Connection as _;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let _ = sqlx::query(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut conn)
            .await;
        }
    }
}

/// What `postbud bench` is asked to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// How many invoices.
    #[arg(long, default_value_t = 2000)]
    pub invoices: usize,
    /// Concurrent jobs per instance, and the concurrency of every baseline.
    #[arg(long, default_value_t = 16)]
    pub workers: usize,
    /// Where the benchmark's database goes.
    #[arg(long, default_value = "postbud-bench")]
    pub dir: std::path::PathBuf,
    /// Measure PostgreSQL instead: a server URL (postgres://user@host/database); the
    /// benchmark creates a database postbud_bench_<pid> there and drops it afterwards.
    #[arg(long, value_name = "URL")]
    pub postgres: Option<String>,
    /// Postbud instances sharing the store, each with its own engine and connections.
    #[arg(long, default_value_t = 1)]
    pub instances: usize,
    /// Hold every answer the flow waits for from the sandbox's Dintero API this long (the
    /// token, the transaction, the capture, the PDF's descriptor and bytes), as a real Dintero
    /// far away does: the run is then bound by waiting, not by the machine's cores, which is
    /// what shows whether instances scale. Must stay under the Dintero client's timeout.
    #[arg(long, value_name = "DURATION", value_parser = crate::args::humantime_duration)]
    pub dintero_latency: Option<Duration>,
    /// Print one JSON object (invoices_per_s, bare_http_per_s, share_of_bare_http, p50_ms,
    /// p99_ms, rss_queued_mib; cycle_per_s and share_of_cycle with --postgres; history with
    /// --history).
    #[arg(long)]
    pub json: bool,
    /// Afterwards, grow the store to this many finished invoices (copies of one delivered) and
    /// time `/metrics`, `/healthz` and `status` at each power of ten on the way.
    #[arg(long, default_value_t = 0, value_name = "INVOICES")]
    pub history: u64,
}

/// What one run measured; `--json` prints it whole.
#[derive(Debug, Default, serde::Serialize)]
struct Report {
    store: &'static str,
    invoices: usize,
    workers: usize,
    instances: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    dintero_latency_ms: Option<u128>,
    invoices_per_s: f64,
    bare_http_per_s: f64,
    /// Percent.
    share_of_bare_http: f64,
    /// CPU time of this process (Postbud; not the sandbox nor a database server) per invoice
    /// while draining.
    cpu_ms_per_invoice: f64,
    half_load_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    rss_queued_mib: f64,
    rss_peak_mib: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cycle_per_s: Option<f64>,
    /// Percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    share_of_cycle: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    history: Vec<super::history::Figures>,
}

/// Prints a report line unless the run answers in JSON.
macro_rules! report {
    ($options:expr, $($arg:tt)*) => {
        if !$options.json {
            say!($($arg)*);
        }
    };
}

/// Runs the benchmark on SQLite in `dir`, or on a scratch database on the PostgreSQL server
/// named.
pub async fn run(options: Options) -> Result<ExitCode, Failure> {
    postbud::http::ensure_crypto_provider();
    let Some(admin) = options.postgres.as_deref() else {
        std::fs::create_dir_all(&options.dir).map_err(io)?;
        for file in ["bench.db", "bench.db-wal", "bench.db-shm"] {
            let _ = std::fs::remove_file(options.dir.join(file));
        }
        let store = format!("sqlite://{}/bench.db", options.dir.display());
        let label = format!("SQLite at {}/bench.db", options.dir.display());
        let mut report = measure(&options, &store, &label).await?;
        report.store = "sqlite";
        return finish(&options, &report);
    };
    let scratch = ScratchDatabase::create(admin).await?;
    let label = format!(
        "PostgreSQL database {} (dropped afterwards)",
        postbud::http::redact_url(&scratch.url)
    );
    let result = async {
        let mut report = measure(&options, &scratch.url, &label).await?;
        report.store = "postgres";
        let cycle = durable_cycle(&scratch.url, options.invoices, options.workers).await?;
        report.cycle_per_s = Some(cycle);
        report.share_of_cycle = Some(report.invoices_per_s / cycle * 100.0);
        report!(
            options,
            "cycle:       {cycle:.0} minimal durable cycles/s on the same server (enqueue, claim with SKIP LOCKED, mark done; three commits) at {} clients: Postbud reaches {:.0} % of it",
            options.workers * options.instances,
            report.invoices_per_s / cycle * 100.0
        );
        Ok::<_, Failure>(report)
    }
    .await;
    scratch.drop_now().await;
    finish(&options, &result?)
}

fn finish(options: &Options, report: &Report) -> Result<ExitCode, Failure> {
    if options.json {
        say!("{}", serde_json::to_string(report).map_err(io)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// The least a durable queue on this server does per item, at `clients` connections: enqueue,
/// claim with `FOR UPDATE SKIP LOCKED`, mark done, each its own commit. The ceiling Postbud's
/// PostgreSQL figure is read against.
async fn durable_cycle(url: &str, items: usize, clients: usize) -> Result<f64, Failure> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(clients as u32)
        // As Postbud's pool: no ping before each statement.
        .test_before_acquire(false)
        .connect(url)
        .await
        .map_err(io)?;
    sqlx::raw_sql(
        "CREATE TABLE bench_cycle (id BIGSERIAL PRIMARY KEY, state TEXT NOT NULL, owner TEXT);
         CREATE INDEX bench_cycle_queued ON bench_cycle (id) WHERE state = 'queued';",
    )
    .execute(&pool)
    .await
    .map_err(io)?;
    let left = Arc::new(AtomicUsize::new(items));
    let started = Instant::now();
    let mut clients_running = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (pool, left) = (pool.clone(), Arc::clone(&left));
        clients_running.spawn(async move {
            let owner = format!("c{client}");
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                sqlx::query("INSERT INTO bench_cycle (state) VALUES ('queued')")
                    .execute(&pool)
                    .await?;
                claim_and_finish(&pool, &owner).await?;
            }
            Ok::<(), sqlx::Error>(())
        });
    }
    while let Some(done) = clients_running.join_next().await {
        done.map_err(io)?.map_err(io)?;
    }
    // A claim that found every queued item locked by another client left one behind: those
    // are finished inside the timed window, so every item counted went the whole cycle.
    while claim_and_finish(&pool, "drain").await.map_err(io)? {}
    let rate = items as f64 / started.elapsed().as_secs_f64();
    pool.close().await;
    Ok(rate)
}

/// Claims the oldest queued item of the cycle table and marks it done (two commits); false
/// when none was free.
async fn claim_and_finish(pool: &sqlx::PgPool, owner: &str) -> Result<bool, sqlx::Error> {
    let claimed: Option<(i64,)> = sqlx::query_as(
        "UPDATE bench_cycle SET state = 'running', owner = $1 WHERE id =
           (SELECT id FROM bench_cycle WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(owner)
    .fetch_optional(pool)
    .await?;
    let Some((id,)) = claimed else {
        return Ok(false);
    };
    sqlx::query("UPDATE bench_cycle SET state = 'done' WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await?;
    Ok(true)
}

async fn measure(options: &Options, store: &str, label: &str) -> Result<Report, Failure> {
    let (invoices, workers, instances) =
        (options.invoices, options.workers, options.instances.max(1));
    let sandbox = SandboxProcess::start().await?;
    let (hook, received) = receiver().await.map_err(io)?;
    let toml = format!(
        "{dintero}\n\
         [server]\npublic_url = \"https://invoices.merchant.example\"\nlink_secret = \"bench\"\n[store]\nurl = \"{store}\"\n\
         [engine]\nworkers = {workers}\npoll_interval = \"20ms\"\n\n\
         [channels.platform]\nkind = \"webhook\"\nurl = \"{hook}\"\nsecret = \"whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD\"\n\n[[routes]]\ndeliver = [\"platform\"]\n",
        dintero = sandbox.dintero_toml().await?,
    );
    let settings = Settings::from_toml(&toml)?;
    let timeout = settings.require_dintero()?.timeout;
    if let Some(latency) = options.dintero_latency.filter(|l| *l >= timeout) {
        return Err(Failure {
            message: format!(
                "--dintero-latency {latency:?} is at or above the Dintero client's timeout ({timeout:?}): every call would time out"
            ),
            code: exit::CONFIG,
        });
    }
    if let Some(latency) = options.dintero_latency {
        sandbox.hold_answers(latency).await?;
    }
    let registry = stock_registry()?;
    let mut apps = Vec::with_capacity(instances);
    for _ in 0..instances {
        apps.push(Arc::new(crate::commands::open(&settings, &registry).await?));
    }
    let app = Arc::clone(&apps[0]);
    report!(
        options,
        "postbud bench: {invoices} invoices, {instances} instance(s) of {workers} workers, {label}, sandbox and receiver on loopback{held}\n",
        held = options
            .dintero_latency
            .map(|d| format!(", Dintero's answers held {} ms", d.as_millis()))
            .unwrap_or_default()
    );
    let mut report = Report {
        invoices,
        workers,
        instances,
        dintero_latency_ms: options.dintero_latency.map(|d| d.as_millis()),
        ..Report::default()
    };

    // Phase 1: everything queued at once, nothing running yet.
    let bar = progress(options, invoices, "seeding and submitting");
    let ids = sandbox.seed(invoices).await?;
    for id in &ids {
        app.submit(id).await.map_err(io)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    (_, report.rss_queued_mib) = memory();
    report!(
        options,
        "queued:      {invoices} invoices submitted; resident memory {:.1} MiB",
        report.rss_queued_mib
    );

    // Phase 2: drain at full speed.
    let bar = progress(options, invoices, "capturing and delivering");
    let started = Instant::now();
    let cpu_before = cpu_ms();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut runners = tokio::task::JoinSet::new();
    for app in &apps {
        let (app, stopped) = (Arc::clone(app), stopped.clone());
        runners.spawn(async move { app.run_workers(stopped).await });
    }
    while received.load(Ordering::Relaxed) < invoices {
        bar.set_position(received.load(Ordering::Relaxed) as u64);
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(600) {
            return Err(io("the run did not finish within 10 minutes"));
        }
    }
    let elapsed = started.elapsed();
    report.cpu_ms_per_invoice = (cpu_ms() - cpu_before) / invoices as f64;
    bar.finish_and_clear();
    report.invoices_per_s = invoices as f64 / elapsed.as_secs_f64();
    let captures = sandbox.captures().await;
    report!(
        options,
        "throughput:  {:.0} invoices/s ({invoices} in {:.2} s; {captures} captures, {} webhooks), {:.2} ms of Postbud's CPU each",
        report.invoices_per_s,
        elapsed.as_secs_f64(),
        received.load(Ordering::Relaxed),
        report.cpu_ms_per_invoice
    );

    // Phase 3: latency at half that load, submitted at a steady pace.
    report.half_load_per_s = (report.invoices_per_s / 2.0).max(1.0);
    let paced = (invoices / 2).clamp(50, 5_000);
    let paced_ids = sandbox.seed(paced).await?;
    let before = received.load(Ordering::Relaxed);
    let gap = Duration::from_secs_f64(1.0 / report.half_load_per_s);
    let pace_start = Instant::now();
    for (n, id) in paced_ids.iter().enumerate() {
        let due = pace_start + gap * n as u32;
        tokio::time::sleep_until(due.into()).await;
        app.submit(id).await.map_err(io)?;
    }
    while received.load(Ordering::Relaxed) < before + paced {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::with_capacity(paced);
    for id in &paced_ids {
        let dispatch = app.dispatch(id).await.map_err(io)?;
        let jobs = app.jobs(id).await.map_err(io)?;
        if let (Some(d), Some(delivered)) =
            (dispatch, jobs.iter().find(|j| j.kind == JobKind::Deliver))
        {
            latencies.push((delivered.updated_at - d.created_at) as f64);
        }
    }
    latencies.sort_by(f64::total_cmp);
    report.p50_ms = percentile(&latencies, 0.5);
    report.p99_ms = percentile(&latencies, 0.99);
    report!(
        options,
        "latency:     at {:.0} invoices/s, submit to delivered p50 {:.1} ms, p99 {:.1} ms ({} invoices)",
        report.half_load_per_s,
        report.p50_ms,
        report.p99_ms,
        latencies.len()
    );
    let _ = stop.send(true);
    while runners.join_next().await.is_some() {}

    // Phase 4: the same HTTP requests without Postbud, at the same concurrency.
    let bare_ids = sandbox.seed(invoices).await?;
    report.bare_http_per_s =
        bare(&sandbox.api_url(), &bare_ids, &hook, workers * instances).await?;
    report.share_of_bare_http = report.invoices_per_s / report.bare_http_per_s * 100.0;
    (report.rss_peak_mib, _) = memory();
    report!(
        options,
        "bare HTTP:   {:.0} invoices/s for the same requests without Postbud (Postbud reaches {:.0} % of it)",
        report.bare_http_per_s,
        report.share_of_bare_http
    );
    report!(
        options,
        "memory:      peak resident {:.1} MiB",
        report.rss_peak_mib
    );

    // Phase 5, on request: the reads operators make, as the history grows.
    if options.history > 0 {
        let grower = match store.strip_prefix("sqlite://") {
            Some(path) => super::history::Grower::Sqlite(path.into()),
            None => {
                super::history::Grower::Postgres(sqlx::PgPool::connect(store).await.map_err(io)?)
            }
        };
        let held = (invoices + paced) as u64;
        report.history =
            super::history::measure(options, &app, &grower, &paced_ids[0], held).await?;
        for f in &report.history {
            report!(
                options,
                "history:     {:>9} invoices: /metrics {:.2} ms, /healthz {:.2} ms, status {:.2} ms (a bare HTTP GET {:.2} ms; target under 5 ms, flat)",
                f.invoices,
                f.metrics_ms,
                f.healthz_ms,
                f.status_ms,
                f.http_floor_ms
            );
            for (what, took) in &f.console {
                let verdict = match *took < super::history::CONSOLE_LIMIT_MS {
                    true => "under",
                    false => "OVER",
                };
                report!(
                    options,
                    "console:     {:>9} invoices: {what}: {took:.2} ms ({verdict} the {:.0} ms limit)",
                    f.invoices,
                    super::history::CONSOLE_LIMIT_MS
                );
            }
        }
    }
    Ok(report)
}

/// A progress bar on stderr, hidden when the run answers in JSON.
pub(super) fn progress(
    options: &Options,
    len: usize,
    message: &'static str,
) -> indicatif::ProgressBar {
    match options.json {
        true => indicatif::ProgressBar::hidden(),
        false => indicatif::ProgressBar::new(len as u64).with_message(message),
    }
}
