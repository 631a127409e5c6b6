//! `postbud bench --history N`: the store grown to N finished invoices, and at each power of
//! ten on the way what `/metrics`, `/healthz` and `postbud status` take, beside a bare HTTP
//! round trip on the same machine. Flat figures mean the counts are kept, not counted.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use postbud::{App, Filter, JobState, Verdict};

use super::bench::{Options, io};
use crate::commands::Failure;

/// What the reads took with this many invoices in the store (medians, milliseconds).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Figures {
    pub invoices: u64,
    pub metrics_ms: f64,
    pub healthz_ms: f64,
    pub status_ms: f64,
    /// A bare HTTP GET on loopback answered by a constant: the floor under the two above.
    pub http_floor_ms: f64,
    /// The console's reads at the largest size (medians, milliseconds), each against
    /// [`CONSOLE_LIMIT_MS`]: (what, took).
    pub console: Vec<(String, f64)>,
}

/// What each of the console's pages may take, at any size (issue 32).
pub const CONSOLE_LIMIT_MS: f64 = 50.0;

/// How the copies differ from the invoice they copy, so the console's filters have something
/// to tell apart: every copy its own invoice number, merchant reference and customer email;
/// one delivery in 1,000 failed for good and one in 100 tried twice.
const EVERY_FAILED: u64 = 1_000;
const EVERY_RETRIED: u64 = 100;

/// Where the copies of finished invoices are written.
pub enum Grower {
    Sqlite(std::path::PathBuf),
    Postgres(sqlx::PgPool),
}

/// The tables copied per invoice, and how a copy's column differs from the original's: ids
/// take a suffix, the copy is older than the original, a generated key is left out.
const TABLES: [&str; 3] = ["dispatches", "jobs", "history"];

fn copied(table: &str, column: &str) -> Option<String> {
    Some(match (table, column) {
        ("history", "id") => return None,
        (_, "transaction_id") | ("jobs", "id") | ("history", "job_id") => {
            format!("t.{column} || '.h' || n.i")
        }
        (_, "created_at") => "t.created_at - n.i".to_owned(),
        ("dispatches", "invoice_number") => "t.invoice_number || '-' || n.i".to_owned(),
        ("dispatches", "merchant_reference") => "'order-' || n.i".to_owned(),
        ("dispatches", "customer_email") => "'customer' || n.i || '@example.no'".to_owned(),
        ("jobs", "state") => format!(
            "CASE WHEN t.kind = 'deliver' AND n.i % {EVERY_FAILED} = 0 THEN 'failed' ELSE t.state END"
        ),
        ("jobs", "attempts") => format!(
            "CASE WHEN t.kind = 'deliver' AND n.i % {EVERY_RETRIED} = 0 THEN 2 ELSE t.attempts END"
        ),
        _ => format!("t.{column}"),
    })
}

impl Grower {
    /// Copies every row of `template`'s invoice as invoices `from..=to`.
    async fn grow(&self, template: &str, from: u64, to: u64) -> Result<(), Failure> {
        match self {
            Self::Sqlite(path) => {
                let (path, template) = (path.clone(), template.to_owned());
                tokio::task::spawn_blocking(move || {
                    let mut conn = rusqlite::Connection::open(path).map_err(io)?;
                    conn.busy_timeout(Duration::from_secs(30)).map_err(io)?;
                    let tx = conn.transaction().map_err(io)?;
                    for table in TABLES {
                        let columns: Vec<String> = tx
                            .prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
                            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                            .map_err(io)?;
                        let (names, values) = columns_of(table, &columns);
                        tx.execute(
                            &format!(
                                "WITH RECURSIVE n(i) AS (SELECT ?1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2)
                                 INSERT INTO {table} ({names}) SELECT {values} FROM {table} t, n WHERE t.transaction_id = ?3"
                            ),
                            rusqlite::params![from as i64, to as i64, template],
                        )
                        .map_err(io)?;
                    }
                    tx.commit().map_err(io)
                })
                .await
                .map_err(io)?
            }
            Self::Postgres(pool) => {
                let mut tx = pool.begin().await.map_err(io)?;
                for table in TABLES {
                    let columns: Vec<String> = sqlx::query_scalar(
                        "SELECT column_name::TEXT FROM information_schema.columns
                         WHERE table_name = $1 AND table_schema = current_schema() ORDER BY ordinal_position",
                    )
                    .bind(table)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(io)?;
                    let (names, values) = columns_of(table, &columns);
                    sqlx::query(&format!(
                        "INSERT INTO {table} ({names}) SELECT {values}
                         FROM {table} t, generate_series($1::BIGINT, $2::BIGINT) AS n(i) WHERE t.transaction_id = $3"
                    ))
                    .bind(from as i64)
                    .bind(to as i64)
                    .bind(template)
                    .execute(&mut *tx)
                    .await
                    .map_err(io)?;
                }
                tx.commit().await.map_err(io)
            }
        }
    }

    /// What autovacuum does soon after a bulk load, done at once: dead row versions cleared
    /// and the planner's statistics of the tables just grown, so the reads are timed as a
    /// store in use would run them.
    async fn settle(&self) -> Result<(), Failure> {
        match self {
            Self::Sqlite(_) => Ok(()),
            Self::Postgres(pool) => {
                sqlx::query("VACUUM ANALYZE")
                    .execute(pool)
                    .await
                    .map_err(io)?;
                Ok(())
            }
        }
    }
}

fn columns_of(table: &str, columns: &[String]) -> (String, String) {
    let kept: Vec<(&String, String)> = columns
        .iter()
        .filter_map(|c| copied(table, c).map(|v| (c, v)))
        .collect();
    let names: Vec<&str> = kept.iter().map(|(c, _)| c.as_str()).collect();
    let values: Vec<&str> = kept.iter().map(|(_, v)| v.as_str()).collect();
    (names.join(", "), values.join(", "))
}

/// The median of `runs` timings of `read`, after one to warm up, in milliseconds.
async fn median_ms<F, Fut>(runs: usize, mut read: F) -> Result<f64, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    read().await?;
    let mut took = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        read().await?;
        took.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    took.sort_by(f64::total_cmp);
    Ok(took[took.len() / 2])
}

/// Grows the store from `held` finished invoices to `options.history`, copying `template`,
/// and times the reads at each power of ten from 10,000 and at the end.
pub async fn measure(
    options: &Options,
    app: &Arc<App>,
    grower: &Grower,
    template: &str,
    held: u64,
) -> Result<Vec<Figures>, Failure> {
    let target = options.history;
    let mut sizes: Vec<u64> = std::iter::successors(Some(10_000u64), |n| n.checked_mul(10))
        .take_while(|n| *n < target)
        .filter(|n| *n > held)
        .collect();
    sizes.push(target.max(held));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(io)?;
    let base = format!("http://{}", listener.local_addr().map_err(io)?);
    let router = postbud::server::router(Arc::clone(app))
        .route("/bench-floor", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, router).await });
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let (http, url) = (http.clone(), format!("{base}{path}"));
        move || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let answer = http.get(&url).send().await.map_err(io)?;
                if !answer.status().is_success() {
                    return Err(io(format!("GET {url}: {}", answer.status())));
                }
                answer.bytes().await.map_err(io)?;
                Ok(())
            }
        }
    };
    let records = app.records();
    let mut figures = Vec::new();
    let mut have = held;
    let bar = super::bench::progress(
        options,
        target.saturating_sub(held) as usize,
        "copying finished invoices",
    );
    for size in sizes {
        // Each copy is one transaction; PostgreSQL's row-level tally triggers update one row per
        // count and server process, and a version chain that long in one transaction slows
        // every next update of it: smaller batches keep the chains short.
        const BATCH: u64 = 5_000;
        while have < size {
            let next = (have + BATCH).min(size);
            grower.grow(template, have + 1, next).await?;
            bar.inc(next - have);
            have = next;
        }
        grower.settle().await?;
        let held = records.totals().await.map_err(io)?.dispatches;
        if held != size {
            return Err(io(format!(
                "the store holds {held} invoices after copying, not {size}"
            )));
        }
        let status = || async {
            records.verdicts().await.map_err(io)?;
            records.invoices(&Filter::default(), 20).await.map_err(io)?;
            records.last_sweep().await.map_err(io)?;
            Ok(())
        };
        figures.push(Figures {
            invoices: size,
            metrics_ms: median_ms(15, get("/metrics")).await?,
            healthz_ms: median_ms(15, get("/healthz")).await?,
            status_ms: median_ms(15, status).await?,
            http_floor_ms: median_ms(15, get("/bench-floor")).await?,
            console: Vec::new(),
        });
    }
    bar.finish_and_clear();
    if let Some(last) = figures.last_mut() {
        last.console = console(app, template, last.invoices).await?;
    }
    Ok(figures)
}

/// The console's reads with `size` copies of `template` in the store: the list's first page
/// and one deep in (by cursor), each filter, a search by each key, the verdict counts, and one
/// invoice's page; medians of 15 after one to warm up.
async fn console(app: &Arc<App>, template: &str, size: u64) -> Result<Vec<(String, f64)>, Failure> {
    const PAGE: usize = 50;
    let records = app.records();
    let original = (app.dispatch(template).await.map_err(io)?)
        .ok_or_else(|| io(format!("{template} is not in the store")))?;
    let channel = (app.jobs(template).await.map_err(io)?.into_iter())
        .find(|j| j.kind == postbud::JobKind::Deliver)
        .and_then(|j| j.channel)
        .ok_or_else(|| io(format!("{template} has no delivery")))?;
    // A copy in the middle: its cursor, and the keys a search finds it by.
    let middle = (size / 2).max(1);
    let copy = format!("{template}.h{middle}");
    let number = format!(
        "{}-{middle}",
        original.invoice_number.clone().unwrap_or_default()
    );
    let filter = |set: &dyn Fn(&mut Filter)| {
        let mut filter = Filter::default();
        set(&mut filter);
        filter
    };
    let mut lists: Vec<(&str, Filter)> = vec![
        ("list, first page", Filter::default()),
        (
            "list, a page deep in (cursor)",
            filter(&|f| f.after = Some((original.created_at - middle as i64, copy.clone()))),
        ),
        (
            "filter: needs attention",
            filter(&|f| f.verdicts = vec![Verdict::NeedsAttention]),
        ),
        (
            "filter: channel",
            filter(&|f| f.channel = Some(channel.clone())),
        ),
        (
            "filter: delivery state failed",
            filter(&|f| f.delivery_state = Some(JobState::Failed)),
        ),
        (
            "filter: delivery state done",
            filter(&|f| f.delivery_state = Some(JobState::Done)),
        ),
        ("filter: retried", filter(&|f| f.retried = true)),
    ];
    for (what, key) in [
        ("search: transaction id", copy.clone()),
        ("search: invoice number", number),
        ("search: merchant reference", format!("order-{middle}")),
        (
            "search: customer email",
            format!("CUSTOMER{middle}@example.no"),
        ),
    ] {
        lists.push((what, filter(&|f| f.search = Some(key.clone()))));
    }
    let mut took = Vec::new();
    for (what, filter) in lists {
        let one = filter.search.is_some();
        let read = || async {
            let (listed, _) = records.invoices(&filter, PAGE).await.map_err(io)?;
            if listed.is_empty() || (one && listed.len() != 1) {
                return Err(io(format!("{what}: {} invoices listed", listed.len())));
            }
            Ok(())
        };
        took.push((what.to_owned(), median_ms(15, read).await?));
    }
    let counts = || async {
        records.verdicts().await.map_err(io)?;
        Ok(())
    };
    took.push(("verdict counts".to_owned(), median_ms(15, counts).await?));
    let page = || async {
        app.dispatch(&copy).await.map_err(io)?;
        app.jobs(&copy).await.map_err(io)?;
        app.history(&copy).await.map_err(io)?;
        records.evidence(&copy).await.map_err(io)?;
        Ok(())
    };
    took.push((
        "invoice page (dispatch, jobs, history, evidence)".to_owned(),
        median_ms(15, page).await?,
    ));
    Ok(took)
}
