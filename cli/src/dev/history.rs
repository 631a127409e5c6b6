//! `postbud bench --history N`: the store grown to N finished invoices, and at each power of
//! ten on the way what `/metrics`, `/healthz` and `postbud status` take, beside a bare HTTP
//! round trip on the same machine. Flat figures mean the counts are kept, not counted.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use postbud::{App, Filter};

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
}

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
        });
    }
    bar.finish_and_clear();
    Ok(figures)
}
