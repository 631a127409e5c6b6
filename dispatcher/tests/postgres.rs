//! The PostgreSQL store against the running server: the same promises as SQLite, shared by
//! several instances, with LISTEN/NOTIFY waking idle workers.

mod common;

use std::{sync::Arc, time::Duration};

use common::Harness;
use postbud::{App, Settings, Verdict, store::Finish};
use postbud_sandbox::Seed;

/// A fresh database on the local server, dropped afterwards.
struct Database {
    admin: String,
    name: String,
}

impl Database {
    async fn create(test: &str) -> Option<Self> {
        let admin = std::env::var("POSTBUD_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        // A counter, not the clock: tests that start together must never share a database.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "postbud_test_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let pool = match sqlx::PgPool::connect(&admin).await {
            Ok(pool) => pool,
            Err(e) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!(
                    "{test}: PostgreSQL required (POSTBUD_REQUIRE_SERVICES=1) but unreachable at {admin}: {e}"
                )
            }
            Err(e) => {
                postbud_sandbox::skipped(&format!("{test}: no PostgreSQL at {admin}: {e}"));
                return None;
            }
        };
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create database");
        Some(Self { admin, name })
    }

    fn url(&self) -> String {
        let (base, _) = self.admin.rsplit_once('/').expect("a database in the URL");
        format!("{base}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // A runtime of its own: the test's may be shutting down.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&pool)
                        .await;
                }
            });
        })
        .join();
    }
}

fn settings(h: &Harness, db: &Database, extra: &str) -> Settings {
    let toml = h.toml(extra).replace(
        &format!("sqlite://{}/postbud.db", h.dir.path().display()),
        &db.url(),
    );
    Settings::from_toml(&toml).expect("settings")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_once_on_postgres() {
    let Some(db) = Database::create("delivers_once_on_postgres").await else {
        return;
    };
    let h = Harness::start().await;
    let app = App::open(&settings(&h, &db, "")).await.expect("app");
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let again = app.deliver_now(&id).await.expect("again");
    assert!(!again.newly_queued);
    assert_eq!(h.sandbox.captures(&id), 1);
    let totals = app.totals().await.expect("totals");
    assert_eq!((totals.dispatches, totals.delivered), (1, 1));
    common::assert_dispatch_history_in_order(&app.history(&id).await.expect("history"));
    assert!(app.document(&id).await.expect("read").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_work_and_capture_once() {
    let Some(db) = Database::create("two_instances_share_the_work_and_capture_once").await else {
        return;
    };
    let h = Harness::start().await;
    let a = Arc::new(App::open(&settings(&h, &db, "")).await.expect("a"));
    let b = Arc::new(App::open(&settings(&h, &db, "")).await.expect("b"));
    let ids: Vec<String> = (0..8).map(|_| h.sandbox.seed(Seed::default())).collect();
    let mut runs = tokio::task::JoinSet::new();
    for id in &ids {
        for app in [&a, &b] {
            let (app, id) = (Arc::clone(app), id.clone());
            runs.spawn(async move { app.deliver_now(&id).await.expect("deliver") });
        }
    }
    while runs.join_next().await.is_some() {}
    for id in &ids {
        assert_eq!(h.sandbox.captures(id), 1, "{id}");
        assert_eq!(
            a.deliver_now(id).await.expect("status").verdict(),
            Verdict::Delivered
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lapsed_lease_cannot_overwrite_the_newer_attempt() {
    let Some(db) = Database::create("a_lapsed_lease_cannot_overwrite_the_newer_attempt").await
    else {
        return;
    };
    let h = Harness::start().await;
    let app = App::open(&settings(&h, &db, "")).await.expect("app");
    let id = h.sandbox.seed(Seed::default());
    app.submit(&id).await.expect("submit");
    let store = app.store();
    let old = store
        .claim(&postbud::store::Claim {
            owner: "slow",
            lease: Duration::from_millis(100),
            limit: 1,
            only: Some(&id),
        })
        .await
        .expect("claim")
        .remove(0);
    tokio::time::sleep(Duration::from_millis(150)).await;
    let new = store
        .claim(&postbud::store::Claim {
            owner: "fast",
            lease: Duration::from_secs(30),
            limit: 1,
            only: None,
        })
        .await
        .expect("rescue")
        .remove(0);
    assert!(new.job.fence > old.job.fence);
    assert!(
        store
            .finish(&old, Finish::Failed("late".into()))
            .await
            .is_err()
    );
    store
        .finish(&new, Finish::Done("ok".into()))
        .await
        .expect("current holder writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_work_wakes_another_instance_through_listen_notify() {
    let Some(db) = Database::create("new_work_wakes_another_instance_through_listen_notify").await
    else {
        return;
    };
    let h = Harness::start().await;
    // The worker instance polls only every 60 s: only a NOTIFY can wake it in time.
    let toml = h
        .toml("")
        .replace(
            &format!("sqlite://{}/postbud.db", h.dir.path().display()),
            &db.url(),
        )
        .replace("poll_interval = \"50ms\"", "poll_interval = \"60s\"");
    let sleepy = Arc::new(
        App::open(&Settings::from_toml(&toml).expect("settings"))
            .await
            .expect("sleepy"),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let runner = tokio::spawn({
        let sleepy = Arc::clone(&sleepy);
        async move { sleepy.run_workers(stopped).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let submitter = App::open(&settings(&h, &db, "")).await.expect("submitter");
    let id = h.sandbox.seed(Seed::default());
    let started = std::time::Instant::now();
    submitter.submit(&id).await.expect("submit");
    loop {
        let jobs = submitter.jobs(&id).await.expect("jobs");
        if jobs.iter().any(|j| {
            j.kind == postbud::store::JobKind::Deliver && j.state == postbud::store::JobState::Done
        }) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "not woken: {jobs:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "delivered {:?} after the submit in another instance",
        started.elapsed()
    );
    stop.send(true).expect("stop");
    runner.await.expect("runner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_invoices_post_capture_pdfs_and_confirmed_voids_on_postgres() {
    let Some(db) =
        Database::create("created_invoices_post_capture_pdfs_and_confirmed_voids_on_postgres")
            .await
    else {
        return;
    };
    let h = Harness::start().await;
    let app = App::open(&settings(&h, &db, "")).await.expect("app");
    // A merchant-initiated invoice: recorded as the merchant's, with a PDF that changes at capture.
    let order = serde_json::json!({"order": {"amount": 29900, "currency": "NOK", "merchant_reference": "pg-1",
        "billing_address": {"first_name": "Ola", "last_name": "Nordmann", "country": "NO"}}});
    let created = app.create_invoice(&order).await.expect("created");
    let id = created.transaction.id.clone();
    let outcome = app.deliver_now(&id).await.expect("deliver");
    assert_eq!(outcome.verdict(), Verdict::Delivered, "{outcome}");
    let dispatch = app.dispatch(&id).await.expect("read").expect("dispatch");
    assert_eq!(
        dispatch.origin.as_deref(),
        Some(postbud::store::ORIGIN_CREATED)
    );
    let again = app.create_invoice(&order).await.expect("found");
    assert!(again.existing);
    let changing = h.sandbox.seed(Seed {
        pdf_changes_at_capture: true,
        ..Seed::default()
    });
    app.deliver_now(&changing).await.expect("deliver");
    let kept = app
        .invoice(&changing)
        .await
        .expect("read")
        .expect("invoice");
    assert_eq!(
        kept.pdf.bytes.as_ref(),
        h.sandbox.pdf(&changing).expect("pdf").as_slice()
    );
    // A void Dintero confirms only later, and then a second one after a refusal.
    h.sandbox.inject(postbud_sandbox::Fault {
        operation: postbud_sandbox::Operation::Void,
        transaction: Some(id.clone()),
        kind: postbud_sandbox::FaultKind::Accepted {
            after_gets: 2,
            fail: false,
        },
        times: 1,
        skip: 0,
    });
    let report = app.void(&id, Duration::ZERO).await.expect("void");
    assert!(report.pending);
    let outcome = app
        .deliver_waiting(&id, Duration::from_secs(10))
        .await
        .expect("run");
    assert_eq!(outcome.verdict(), Verdict::Voided, "{outcome}");
    assert_eq!(h.sandbox.captures(&id), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prune_and_triage_on_postgres() {
    let Some(db) = Database::create("prune_and_triage_on_postgres").await else {
        return;
    };
    let h = Harness::start().await;
    let app = App::open(&settings(&h, &db, "")).await.expect("app");
    let id = h.sandbox.seed(Seed::default());
    assert_eq!(
        app.deliver_now(&id).await.expect("deliver").verdict(),
        Verdict::Delivered
    );
    let counts = app.records().verdicts().await.expect("count");
    assert_eq!(counts[&Verdict::Delivered], 1);
    let mut archive = postbud::Filter::default();
    archive.channel = Some("archive".into());
    let (listed, more) = app.records().invoices(&archive, 10).await.expect("list");
    assert_eq!((listed.len(), more), (1, false));
    // The page carries the transaction's jobs, dispatch first, so the verdict is the full one.
    let kinds: Vec<_> = listed[0].jobs.iter().map(|j| j.kind).collect();
    assert_eq!(
        kinds,
        vec![
            postbud::store::JobKind::Dispatch,
            postbud::store::JobKind::Deliver
        ]
    );
    assert_eq!(listed[0].assessment.verdict, Verdict::Delivered);
    let sha = app
        .document(&id)
        .await
        .expect("document")
        .expect("pdf")
        .sha256;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(app.prune(Duration::from_millis(1)).await.expect("prune"), 1);
    assert_eq!(app.prune(Duration::from_millis(1)).await.expect("again"), 0);
    let store = app.store();
    assert!(store.document(&id).await.expect("document").is_none());
    assert!(store.invoice(&id).await.expect("invoice").is_none());
    let dispatch = store.dispatch(&id).await.expect("dispatch").expect("kept");
    assert_eq!(dispatch.pdf_sha256.as_deref(), Some(sha.as_str()));
    assert!(dispatch.pruned_at.is_some());
    let history = store.history(&id).await.expect("history");
    assert!(history.iter().any(|h| h.event == "pruned"));
    assert!(
        history
            .iter()
            .filter(|h| h.event != "pruned")
            .all(|h| h.detail.is_empty())
    );
    assert!(
        store
            .jobs(&id)
            .await
            .expect("jobs")
            .iter()
            .all(|j| j.receipt.is_none() && j.last_error.is_none())
    );
    let census = store.counts().await.expect("counts").census;
    let counts = postbud::triage::count(store.as_ref(), &census)
        .await
        .expect("count");
    assert_eq!(counts[&Verdict::Delivered], 1, "the record still answers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_s_probe_reads_the_schema_without_creating_it() {
    let Some(db) = Database::create("check_s_probe_reads_the_schema_without_creating_it").await
    else {
        return;
    };
    let before = postbud::store::probe(&db.url()).await.expect("probe");
    assert!(before.contains("no Postbud schema yet"), "{before}");
    // Probing twice still finds nothing: the probe created nothing.
    let again = postbud::store::probe(&db.url()).await.expect("probe");
    assert!(again.contains("no Postbud schema yet"), "{again}");
    let h = Harness::start().await;
    let _app = App::open(&settings(&h, &db, "")).await.expect("app");
    let after = postbud::store::probe(&db.url()).await.expect("probe");
    // Migrated to the latest schema, whichever that is: "schema version N of N".
    let (now, latest) = after
        .split_once("schema version ")
        .and_then(|(_, rest)| rest.split_once(" of "))
        .map(|(now, rest)| (now, rest.split(';').next().unwrap_or_default()))
        .unwrap_or_else(|| panic!("no schema version in {after}"));
    assert_eq!(now, latest, "{after}");
    assert!(now.parse::<u32>().is_ok_and(|n| n >= 9), "{after}");
    // The same database on a port nothing listens on, whichever port the server has.
    let mut wrong = url::Url::parse(&db.url()).expect("a URL");
    wrong.set_port(Some(1)).expect("a port");
    let wrong = wrong.to_string();
    let refused = postbud::store::probe(&wrong)
        .await
        .expect_err("nothing listens");
    assert!(
        refused.to_string().contains("connect to PostgreSQL"),
        "{refused}"
    );
}

/// The counts sum one row per count and server process; the rows of processes gone are folded
/// into one at most once a minute, and the sums are right before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_fold_the_rows_of_processes_gone_and_stay_right() {
    let Some(db) = Database::create("counts_fold_the_rows_of_processes_gone_and_stay_right").await
    else {
        return;
    };
    let h = Harness::start().await;
    let app = App::open(&settings(&h, &db, "")).await.expect("app");
    for _ in 0..2 {
        let id = h.sandbox.seed(Seed::default());
        app.deliver_now(&id).await.expect("deliver");
    }
    let raw = sqlx::PgPool::connect(&db.url()).await.expect("connect");
    // Two processes gone (no server process has a negative pid) that counted a delivery each.
    let gone = "INSERT INTO tallies (name, stripe, count) VALUES ('job:deliver:done', $1, 1)";
    for stripe in [-7, -8] {
        sqlx::query(gone)
            .bind(stripe)
            .execute(&raw)
            .await
            .expect("insert");
    }
    let strays = "SELECT COUNT(*) FROM tallies WHERE stripe < 0";
    let count = |sql: &'static str| {
        let raw = raw.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&raw)
                .await
                .expect("count")
        }
    };

    // A new instance folds on its first count, and the sum is what it was.
    let fresh = App::open(&settings(&h, &db, "")).await.expect("fresh");
    let totals = fresh.totals().await.expect("totals");
    assert_eq!((totals.dispatches, totals.delivered), (2, 4));
    assert_eq!(count(strays).await, 0, "folded");
    let folded = "SELECT CAST(COALESCE(SUM(count), 0) AS BIGINT) FROM tallies WHERE name = 'job:deliver:done' AND stripe = 0";
    assert!(
        count(folded).await >= 2,
        "the rows gone were added to stripe 0"
    );

    // Within the minute it does not fold again, and the sum still holds the row.
    sqlx::query(gone)
        .bind(-9)
        .execute(&raw)
        .await
        .expect("insert");
    let totals = fresh.totals().await.expect("totals");
    assert_eq!(
        totals.delivered, 5,
        "a stray row counts before it is folded"
    );
    assert_eq!(count(strays).await, 1, "not folded again within the minute");
}

/// A store dropped leaves no connection behind: its pool and its LISTEN connection go with it
/// (a merchant service that reopens its store, or a test, would otherwise keep them open; and
/// a database dropped under the listener made it reconnect and warn every second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_store_leaves_no_connection_behind() {
    let Some(db) = Database::create("a_dropped_store_leaves_no_connection_behind").await else {
        return;
    };
    let h = Harness::start().await;
    let id = h.sandbox.seed(Seed::default());
    let app = App::open(&settings(&h, &db, "")).await.expect("app");
    app.deliver_now(&id).await.expect("delivered");
    let admin = sqlx::PgPool::connect(&db.admin).await.expect("admin");
    let connections = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'",
        )
        .bind(&db.name)
        .fetch_one(&admin)
        .await
        .expect("count connections")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while connections().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pool and the listener never both connected"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(app);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while connections().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} connections left 10 s after the store was dropped",
            connections().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_whose_clocks_disagree_capture_once() {
    let Some(db) = Database::create("instances_whose_clocks_disagree_capture_once").await else {
        return;
    };
    let h = Harness::start().await;
    // Leases of 3 s; one host's clock is 90 s ahead, far past a lease.
    let open = |skew_ms: i64| {
        let settings = settings(&h, &db, "");
        async move {
            let quirks = common::quirky::Quirks {
                capture_delay: Duration::from_millis(1500),
                ..Default::default()
            };
            let gateway = Arc::new(common::quirky::QuirkyDintero::new(&settings, quirks));
            let app = App::builder(&settings)
                .dintero(Arc::clone(&gateway) as Arc<dyn postbud::dintero::DinteroApi>)
                .clock_skew_ms(skew_ms)
                .open()
                .await
                .expect("app");
            (Arc::new(app), gateway)
        }
    };
    let ((slow, slow_dintero), (fast, fast_dintero)) = (open(0).await, open(90_000).await);
    assert!(
        fast.clock_report()
            .is_some_and(|r| r.starts_with("! this host's clock is 90.")),
        "{:?}",
        fast.clock_report()
    );
    // As many invoices as the slow instance has workers: it claims them all, and its captures
    // are on their way when the fast one starts looking for work.
    let ids: Vec<String> = (0..4).map(|_| h.sandbox.seed(Seed::default())).collect();
    for id in &ids {
        slow.submit(id).await.expect("submit");
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for app in [&slow, &fast] {
        let (app, stopped) = (Arc::clone(app), stopped.clone());
        workers.spawn(async move { app.run_workers(stopped).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while tokio::time::Instant::now() < deadline {
        let verdicts = slow.records().verdicts().await.expect("verdicts");
        if verdicts.get(&Verdict::Delivered).copied() == Some(ids.len() as u64) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.send(true).expect("stop");
    while workers.join_next().await.is_some() {}
    let sent = slow_dintero.captures() + fast_dintero.captures();
    assert_eq!(
        sent,
        ids.len() as u32,
        "one capture request per invoice, from either instance"
    );
    for id in &ids {
        assert_eq!(h.sandbox.captures(id), 1, "{id}");
        assert_eq!(
            slow.deliver_now(id).await.expect("status").verdict(),
            Verdict::Delivered,
            "{id}"
        );
    }
}
