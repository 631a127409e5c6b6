//! PostgreSQL store: the same outbox, shared by several service instances. Claims take rows
//! with `FOR UPDATE SKIP LOCKED`; new work is announced with `NOTIFY postbud_jobs` so idle
//! workers in every instance wake at once instead of waiting for their next poll.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use sqlx::{
    PgPool, Row,
    postgres::{PgListener, PgPoolOptions, PgRow},
};
use tokio::sync::{Notify, oneshot};

use super::clock::{LocalClock, MEASURE_EVERY, StoreClock};
use super::{
    AcceptedVoid, Claim, Completion, Counts, Dispatch, DispatchJobs, DispatchPatch, DispatchQuery,
    Finish, HistoryEntry, HistoryLine, Job, Lease, Millis, NewJob, Stage, Store, StoreError,
    VoidEffect, fmt_ms,
    kernel::{self, Columns, FinishPlan, dispatch_from, job_from, lease_lost},
    schema::{Dialect, migrations},
};
use crate::ids;
use postbud_channel::{Invoice, Pdf};

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e.to_string())
    }
}

/// The query parameters sqlx 0.8's PostgreSQL driver reads from a URL (`options[...]` too).
/// It ignores any other and logs it at `warn` with its value: libpq's `sslpassword`, say, in
/// clear.
const DRIVER_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// `url` without the query parameters the driver would ignore (and log with their values);
/// each one left out is logged by its name alone.
fn for_driver(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return url.to_owned();
    };
    type Pairs = Vec<(String, String)>;
    let (kept, ignored): (Pairs, Pairs) =
        parsed.query_pairs().into_owned().partition(|(key, _)| {
            DRIVER_PARAMETERS.contains(&key.as_str()) || key.starts_with("options[")
        });
    if ignored.is_empty() {
        return url.to_owned();
    }
    for (key, _) in &ignored {
        // A name that does not look like one may be a value written without its `key=`.
        let plausible = key.len() <= 40
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        tracing::warn!(
            parameter = if plausible {
                key.as_str()
            } else {
                "(a parameter that is not a name)"
            },
            "store.url: the PostgreSQL driver does not support this parameter; it is left out (its value is not shown)"
        );
    }
    if kept.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(kept);
    }
    parsed.to_string()
}

/// A pool of up to `connections` to `url`; the error names the server, never the password.
async fn connect(url: &str, connections: u32) -> Result<PgPool, StoreError> {
    let driver_url = for_driver(url);
    PgPoolOptions::new()
        .max_connections(connections)
        .acquire_timeout(Duration::from_secs(10))
        // A ping before every statement doubled the round trips of a busy store. A connection
        // idle for a while is still checked (a server restarted meanwhile closed it); one that
        // broke since its last use fails its statement, which the engine retries like any
        // passing database error, and the pool drops it.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > Duration::from_secs(5) {
                    use sqlx::Connection as _;
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect(&driver_url)
        .await
        .map_err(|e| {
            StoreError::Database(format!(
                "connect to PostgreSQL ({}): {e}",
                crate::http::redact_url(url)
            ))
        })
}

/// Reads the database server's clock between two readings of this process's, and records the
/// offset.
async fn measure(pool: &PgPool, clock: &StoreClock) -> Result<(), StoreError> {
    // The connection first: a wait for one would count as the server's answer taking long.
    let mut conn = pool.acquire().await?;
    let before = clock.local();
    let reference: i64 =
        sqlx::query_scalar("SELECT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint")
            .fetch_one(&mut *conn)
            .await?;
    let after = clock.local();
    // A round trip this slow says little of when the server read its clock: keep the last
    // offset rather than one that may be off by half of it.
    if after - before > 1_000 && clock.offset().is_some() {
        return Ok(());
    }
    clock.measured(before, reference, after);
    Ok(())
}

/// [`super::probe`] for PostgreSQL: connects once and reads the schema version, changing
/// nothing.
pub(super) async fn probe(url: &str) -> Result<String, StoreError> {
    let pool = connect(url, 1).await?;
    let table: Option<String> = sqlx::query_scalar("SELECT to_regclass('postbud_schema')::text")
        .fetch_one(&pool)
        .await?;
    let answer = match table {
        None => {
            "reachable; no Postbud schema yet: `postbud serve` or `migrate` creates it".to_owned()
        }
        Some(_) => {
            let version: Option<i64> = sqlx::query_scalar("SELECT version FROM postbud_schema")
                .fetch_optional(&pool)
                .await?;
            format!(
                "reachable; schema version {} of {}",
                version.unwrap_or(0),
                migrations(Dialect::Postgres).len()
            )
        }
    };
    let clock = StoreClock::new(super::clock::system());
    measure(&pool, &clock).await?;
    pool.close().await;
    Ok(format!(
        "{answer}; {}",
        super::clock::describe(clock.offset().unwrap_or(0))
    ))
}

/// The store for several instances.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    work: Arc<Notify>,
    /// When a count last folded the tallies of server processes gone (ms since the epoch).
    folded_at: Arc<AtomicI64>,
    /// Dropped with the last clone of the store, which ends the listener task and with it the
    /// pool: a store dropped leaves no connection behind.
    _listening: Arc<oneshot::Sender<()>>,
    /// This process's clock, corrected to the server's: every time the store writes or compares.
    clock: StoreClock,
}

/// How often a count folds the tallies of server processes gone into stripe 0: their rows make
/// the sums longer, never wrong, and a pool's connections live long, so once a minute keeps
/// the table a few rows per count and spares the reads a write each.
const FOLD_EVERY_MS: Millis = 60_000;

impl PgStore {
    /// Connects to `url` (`postgres://...`), migrates, and listens for new work. `local` is
    /// this process's clock: it is corrected to the database server's before the store is used,
    /// and kept so.
    pub async fn open_with_clock(url: &str, local: LocalClock) -> Result<Self, StoreError> {
        let pool = connect(url, 10).await?;
        let (listening, dropped) = oneshot::channel();
        let store = Self {
            pool,
            work: Arc::new(Notify::new()),
            folded_at: Arc::new(AtomicI64::new(0)),
            _listening: Arc::new(listening),
            clock: StoreClock::new(local),
        };
        measure(&store.pool, &store.clock).await?;
        store.migrate().await?;
        store.listen(dropped);
        Ok(store)
    }

    /// Runs the migrations not applied yet; one instance at a time (advisory lock).
    pub async fn migrate(&self) -> Result<i64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(7337001)")
            .execute(&mut *tx)
            .await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS postbud_schema (version BIGINT NOT NULL)")
            .execute(&mut *tx)
            .await?;
        let version: Option<i64> = sqlx::query_scalar("SELECT version FROM postbud_schema")
            .fetch_optional(&mut *tx)
            .await?;
        if version.is_none() {
            sqlx::query("INSERT INTO postbud_schema (version) VALUES (0)")
                .execute(&mut *tx)
                .await?;
        }
        let version = version.unwrap_or(0);
        for migration in migrations(Dialect::Postgres).iter().skip(version as usize) {
            sqlx::raw_sql(migration).execute(&mut *tx).await?;
        }
        let applied = migrations(Dialect::Postgres).len() as i64;
        sqlx::query("UPDATE postbud_schema SET version = $1")
            .bind(applied.max(version))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(applied.max(version))
    }

    /// Wakes this instance's idle workers when any instance announces work; reconnects after
    /// the database goes away; ends when the store is dropped.
    fn listen(&self, dropped: oneshot::Receiver<()>) {
        let (pool, work, clock) = (
            self.pool.clone(),
            Arc::clone(&self.work),
            self.clock.clone(),
        );
        tokio::spawn(async move {
            let relisten = async {
                loop {
                    match PgListener::connect_with(&pool).await {
                        Ok(mut listener) => {
                            if listener.listen("postbud_jobs").await.is_ok() {
                                while listener.recv().await.is_ok() {
                                    work.notify_one();
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN postbud_jobs failed; polling until it works again")
                        }
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            };
            // The clock is measured again and again: a host's clock that is stepped (NTP, a
            // person) is corrected within one interval.
            let remeasure = async {
                loop {
                    tokio::time::sleep(MEASURE_EVERY).await;
                    if let Err(e) = measure(&pool, &clock).await {
                        tracing::warn!(error = %e, "could not read the database's clock; the last offset stands");
                    }
                }
            };
            tokio::select! {
                _ = dropped => {}
                _ = relisten => {}
                _ = remeasure => {}
            }
            // Every clone of the store is gone: say goodbye to the server rather than drop the
            // sockets.
            pool.close().await;
        });
    }

    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        self.pool.begin().await
    }
}

impl PgStore {
    /// The counts' parts, read in one statement and so one snapshot, after folding the tallies
    /// of server processes gone into stripe 0 (see [`super::schema`]) when [`FOLD_EVERY_MS`]
    /// has passed since the last fold.
    async fn count_parts(&self) -> Result<kernel::CountParts, StoreError> {
        let (now, last) = (self.clock.now(), self.folded_at.load(Ordering::Relaxed));
        let due = now - last >= FOLD_EVERY_MS
            && (self.folded_at)
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due {
            self.fold_tallies().await?;
        }
        let mut parts = kernel::CountParts::default();
        for row in sqlx::query(&kernel::count_parts())
            .fetch_all(&self.pool)
            .await?
        {
            parts.add(&row)?;
        }
        Ok(parts)
    }

    /// Moves the tallies of server processes gone into stripe 0. Folds run concurrently
    /// safely: a row another fold took is gone when this one comes to it.
    async fn fold_tallies(&self) -> Result<(), StoreError> {
        sqlx::query(
            "WITH folded AS (
                 DELETE FROM tallies WHERE stripe <> 0 AND stripe NOT IN (SELECT pid FROM pg_stat_activity)
                 RETURNING name, count)
             INSERT INTO tallies (name, stripe, count)
             SELECT name, 0, SUM(count) FROM folded GROUP BY name ORDER BY name
             ON CONFLICT (name, stripe) DO UPDATE SET count = tallies.count + excluded.count",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// The `finished` clause: the end of the attempt `$7` holds under fence `$8` (state `$1`, due
/// `$2`, error `$3`, receipt `$4`, attempts corrected by `$5`, at `$6`), returning its
/// transaction and id; nothing when the lease is gone.
const FINISHED: &str = "finished AS (
    UPDATE jobs SET state = $1, next_at = $2, last_error = COALESCE($3, last_error), receipt = COALESCE($4, receipt),
           attempts = attempts + $5, lease_owner = NULL, lease_until = NULL, updated_at = $6
    WHERE id = $7 AND fence = $8 AND state = 'running' RETURNING transaction_id, id)";

/// Binds [`FINISHED`]'s placeholders `$1` to `$8` and the history line's event and detail
/// (`$9`, `$10`).
fn bind_finished<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    plan: &'q FinishPlan,
    now: Millis,
    lease: &'q Lease,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(plan.state.as_str())
        .bind(plan.next_at)
        .bind(plan.error.as_deref())
        .bind(plan.receipt.as_deref())
        .bind(plan.attempt_delta)
        .bind(now)
        .bind(&lease.job.id)
        .bind(lease.job.fence)
        .bind(plan.event)
        .bind(&plan.detail)
}

/// The clauses of a claim, ending in `claimed` (the jobs leased, every column): at most
/// `limit` jobs due at `now`, of the transaction `only` when `by_transaction`, leased to `owner`
/// until `until` (the placeholders, in that order); `also` narrows which jobs it may take. Each
/// branch walks its own index in due order and stops after `limit` rows, so a claim costs the
/// same with ten or ten thousand jobs waiting.
fn claimed_cte(
    by_transaction: bool,
    [now, limit, only, owner, until]: [&str; 5],
    also: &str,
) -> String {
    let only = match by_transaction {
        true => format!("AND transaction_id = {only}"),
        false => format!("AND {only}::text IS NULL"),
    };
    format!(
        "due AS (SELECT id, next_at AS at FROM jobs
                 WHERE state = 'queued' AND next_at <= {now} {only} {also}
                 ORDER BY next_at LIMIT {limit} FOR UPDATE SKIP LOCKED),
         lapsed AS (SELECT id, lease_until AS at FROM jobs
                    WHERE state = 'running' AND lease_until < {now} {only} {also}
                    ORDER BY lease_until LIMIT {limit} FOR UPDATE SKIP LOCKED),
         picked AS (SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM lapsed) both_kinds
                    ORDER BY at LIMIT {limit}),
         claimed AS (
             UPDATE jobs SET state = 'running', fence = fence + 1, attempts = attempts + 1,
                    lease_owner = {owner}, lease_until = {until}, updated_at = {now}
             WHERE id IN (SELECT id FROM picked)
             RETURNING *)"
    )
}

impl Columns for PgRow {
    fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    fn now(&self) -> Millis {
        self.clock.now()
    }

    fn clock_offset(&self) -> Option<Millis> {
        self.clock.offset()
    }

    async fn adopt_capture(&self, transaction_id: &str, detail: &str) -> Result<bool, StoreError> {
        let now = self.clock.now();
        let mut tx = self.write().await?;
        let adopted = sqlx::query(kernel::ADOPT_CAPTURE)
            .bind(now)
            .bind(transaction_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if adopted == 0 {
            return Ok(false);
        }
        sqlx::query(kernel::REQUEUE_DISPATCH)
            .bind(now)
            .bind(ids::dispatch_id(transaction_id))
            .execute(&mut *tx)
            .await?;
        history(
            &mut *tx,
            self.clock.now(),
            transaction_id,
            None,
            "capture adopted",
            detail,
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn mark_origin(
        &self,
        transaction_id: &str,
        origin: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let now = self.clock.now();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO dispatches (transaction_id, stage, origin, created_at, updated_at) VALUES ($1, 'new', $2, $3, $4)
             ON CONFLICT (transaction_id) DO UPDATE SET origin = excluded.origin
             WHERE dispatches.stage IN ('new', 'skipped')",
        )
        .bind(transaction_id)
        .bind(origin)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // A callback may have started the dispatch before this was recorded: an attempt that has
        // not captured yet is fenced out and queued again, so it cannot skip the invoice on what
        // it read before.
        sqlx::query(
            "UPDATE jobs SET state = 'queued', next_at = $1, fence = fence + 1, lease_owner = NULL, lease_until = NULL, updated_at = $1
             WHERE id = $2 AND state IN ('running', 'skipped')
               AND EXISTS (SELECT 1 FROM dispatches WHERE transaction_id = $3 AND stage IN ('new', 'skipped'))",
        )
        .bind(now)
        .bind(ids::dispatch_id(transaction_id))
        .bind(transaction_id)
        .execute(&mut *tx)
        .await?;
        history(
            &mut *tx,
            self.clock.now(),
            transaction_id,
            None,
            "merchant-initiated",
            detail,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn void_accepted(&self, void: &AcceptedVoid<'_>) -> Result<(), StoreError> {
        let (transaction_id, request_id, job) =
            (void.transaction_id, void.request_id, void.confirm);
        let now = self.clock.now();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO dispatches (transaction_id, stage, void_request_id, created_at, updated_at) VALUES ($1, 'voiding', $2, $3, $4)
             ON CONFLICT (transaction_id) DO UPDATE SET void_request_id = excluded.void_request_id, updated_at = excluded.updated_at",
        )
        .bind(transaction_id)
        .bind(request_id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE jobs SET state = 'queued', next_at = $1, attempts = 0, last_error = NULL, fence = fence + 1, updated_at = $2
             WHERE id = $3 AND state IN ('done', 'failed', 'dead', 'cancelled')",
        )
        .bind(now)
        .bind(now)
        .bind(&job.id)
        .execute(&mut *tx)
        .await?;
        insert_jobs(
            &mut tx,
            self.clock.now(),
            transaction_id,
            std::slice::from_ref(job),
        )
        .await?;
        let detail = format!(
            "Dintero accepted the void (202, event-request-id {}); waiting for its VOID event",
            request_id.unwrap_or("not given")
        );
        history(
            &mut *tx,
            self.clock.now(),
            transaction_id,
            Some(&job.id),
            "void accepted",
            &detail,
        )
        .await?;
        sqlx::query("SELECT pg_notify('postbud_jobs', '')")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_turn(&self, name: &str, owner: &str, until: Millis) -> Result<bool, StoreError> {
        let taken = sqlx::query(kernel::TAKE_TURN)
            .bind(name)
            .bind(owner)
            .bind(until)
            .bind(self.clock.now())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(taken == 1)
    }

    async fn submit(&self, transaction_id: &str) -> Result<bool, StoreError> {
        // One statement, so one round trip and one commit; the history line and the wake-up
        // come only with a job queued (new, or skipped before and looked at again).
        let queued = sqlx::query(
            "WITH dispatch AS (
                 INSERT INTO dispatches (transaction_id, stage, created_at, updated_at) VALUES ($1, 'new', $2, $2)
                 ON CONFLICT (transaction_id) DO NOTHING),
             inserted AS (
                 INSERT INTO jobs (id, transaction_id, kind, state, next_at, created_at, updated_at)
                 VALUES ($3, $1, 'dispatch', 'queued', $2, $2, $2) ON CONFLICT (id) DO NOTHING
                 RETURNING 'queued for dispatch' AS detail),
             requeued AS (
                 UPDATE jobs SET state = 'queued', next_at = $2, attempts = 0, updated_at = $2
                 WHERE id = $3 AND state = 'skipped' RETURNING 'skipped before; looking again' AS detail),
             queued AS (SELECT detail FROM inserted UNION ALL SELECT detail FROM requeued),
             noted AS (
                 INSERT INTO history (transaction_id, job_id, at, event, detail)
                 SELECT $1, $3, $2, 'submitted', detail FROM queued)
             SELECT pg_notify('postbud_jobs', '') FROM queued",
        )
        .bind(transaction_id)
        .bind(self.clock.now())
        .bind(ids::dispatch_id(transaction_id))
        .fetch_all(&self.pool)
        .await?;
        Ok(!queued.is_empty())
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<Vec<Lease>, StoreError> {
        let (owner, lease, limit, only) = (claim.owner, claim.lease, claim.limit, claim.only);
        let now = self.clock.now();
        let rows = sqlx::query(&format!(
            "WITH {claimed}
             SELECT claimed.*, {dispatch}
             FROM claimed LEFT JOIN dispatches d ON d.transaction_id = claimed.transaction_id AND claimed.kind = 'dispatch'",
            claimed = claimed_cte(only.is_some(), ["$1", "$2", "$3", "$4", "$5"], ""),
            dispatch = kernel::dispatch_columns("d"),
        ))
        .bind(now)
        .bind(i64::from(limit))
        .bind(only)
        .bind(owner)
        .bind(now + lease.as_millis() as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Lease {
                    job: job_from(row)?,
                    owner: owner.to_owned(),
                    dispatch: kernel::dispatch_of_claim(row)?,
                })
            })
            .collect()
    }

    async fn renew(&self, lease: &Lease, duration: Duration) -> Result<(), StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET lease_until = $1 WHERE id = $2 AND fence = $3 AND state = 'running'",
        )
        .bind(self.clock.now() + duration.as_millis() as i64)
        .bind(&lease.job.id)
        .bind(lease.job.fence)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(lease_lost(lease))
        }
    }

    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<(), StoreError> {
        let now = self.clock.now();
        let Some(plan) = FinishPlan::of(lease, &finish, now) else {
            return Ok(());
        };
        // The end and its history line in one statement: one round trip, one commit.
        let sql = format!(
            "WITH {FINISHED}
             INSERT INTO history (transaction_id, job_id, at, event, detail)
             SELECT transaction_id, id, $6, $9, $10 FROM finished"
        );
        let updated = bind_finished(sqlx::query(&sql), &plan, now, lease)
            .execute(&self.pool)
            .await?;
        if updated.rows_affected() != 1 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn finish_then_claim(
        &self,
        lease: &Lease,
        finish: Finish,
        next: &Claim<'_>,
    ) -> Result<Vec<Lease>, StoreError> {
        let now = self.clock.now();
        let Some(plan) = FinishPlan::of(lease, &finish, now) else {
            return self.claim(next).await;
        };
        // The end, its history line and the next claim in one statement: one round trip, one
        // commit. The claim runs only if the end is written, and never picks the job just
        // finished (one statement must not change a row twice).
        let sql = format!(
            "WITH {FINISHED},
             noted AS (
                 INSERT INTO history (transaction_id, job_id, at, event, detail)
                 SELECT transaction_id, id, $6, $9, $10 FROM finished),
             {claimed}
             SELECT (SELECT COUNT(*) FROM finished) AS finished_count, claimed.*, {dispatch}
             FROM (SELECT 1) one LEFT JOIN claimed ON true
                  LEFT JOIN dispatches d ON d.transaction_id = claimed.transaction_id AND claimed.kind = 'dispatch'",
            claimed = claimed_cte(
                next.only.is_some(),
                ["$6", "$11", "$12", "$13", "$14"],
                "AND id <> $7 AND EXISTS (SELECT 1 FROM finished)",
            ),
            dispatch = kernel::dispatch_columns("d"),
        );
        let rows = bind_finished(sqlx::query(&sql), &plan, now, lease)
            .bind(i64::from(next.limit))
            .bind(next.only)
            .bind(next.owner)
            .bind(now + next.lease.as_millis() as i64)
            .fetch_all(&self.pool)
            .await?;
        let finished: i64 = match rows.first() {
            Some(row) => row.try_get("finished_count")?,
            None => 0,
        };
        if finished != 1 {
            return Err(lease_lost(lease));
        }
        let mut leases = Vec::new();
        for row in &rows {
            if row.try_get::<Option<String>, _>("id")?.is_some() {
                leases.push(Lease {
                    job: job_from(row)?,
                    owner: next.owner.to_owned(),
                    dispatch: kernel::dispatch_of_claim(row)?,
                });
            }
        }
        Ok(leases)
    }

    async fn update_dispatch(&self, lease: &Lease, patch: DispatchPatch) -> Result<(), StoreError> {
        let (event, detail) = patch.note.clone().unzip();
        let now = self.clock.now();
        let document = patch.document.as_ref();
        // The change, the PDF and their history lines in one statement: one round trip, one
        // commit.
        let updated: i64 = sqlx::query_scalar("WITH updated AS (
                 UPDATE dispatches SET
                    stage = COALESCE($1, stage),
                    reason = CASE WHEN $2::boolean THEN $3 ELSE reason END,
                    capture_reference = CASE WHEN $20::boolean THEN $4 ELSE capture_reference END,
                    capture_request_id = CASE WHEN $5::boolean THEN $6 ELSE capture_request_id END,
                    captured_at = COALESCE($7, captured_at),
                    invoice_number = COALESCE($8, invoice_number),
                    route = COALESCE($9, route),
                    updated_at = $10
                 WHERE transaction_id = $11 AND EXISTS (SELECT 1 FROM jobs WHERE id = $12 AND fence = $13 AND state = 'running')
                 RETURNING transaction_id),
             kept AS (
                 INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
                 SELECT transaction_id, $16, $17, $18, $10 FROM updated WHERE $18::bytea IS NOT NULL
                 ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id),
             noted AS (
                 INSERT INTO history (transaction_id, job_id, at, event, detail)
                 SELECT transaction_id, $12, $10, event, detail FROM (
                     SELECT 0 AS part, transaction_id, 'pdf fetched' AS event, $19::text AS detail FROM kept
                     UNION ALL SELECT 1, transaction_id, $14::text, $15::text FROM updated WHERE $14::text IS NOT NULL) lines
                 ORDER BY part)
             SELECT COUNT(*) FROM updated")
        .bind(patch.stage.map(Stage::as_str))
        .bind(patch.reason.is_some())
        .bind(patch.reason.flatten())
        .bind(patch.capture_reference.clone().flatten())
        .bind(patch.capture_request_id.is_some())
        .bind(patch.capture_request_id.flatten())
        .bind(patch.captured_at)
        .bind(patch.invoice_number)
        .bind(patch.route.map(|r| r as i64))
        .bind(now)
        .bind(&lease.job.transaction_id)
        .bind(&lease.job.id)
        .bind(lease.job.fence)
        .bind(event)
        .bind(detail)
        .bind(document.map(|pdf| &pdf.file_name))
        .bind(document.map(|pdf| &pdf.sha256))
        .bind(document.map(|pdf| pdf.bytes.as_ref()))
        .bind(document.map(kernel::pdf_note))
        .bind(patch.capture_reference.is_some())
        .fetch_one(&self.pool)
        .await?;
        if updated != 1 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn complete_dispatch(
        &self,
        lease: &Lease,
        completion: &Completion<'_>,
    ) -> Result<Option<Lease>, StoreError> {
        let Completion {
            invoice,
            route,
            jobs,
            detail,
            lease_first_due,
            confirmation,
        } = *completion;
        let json =
            serde_json::to_string(invoice).map_err(|e| StoreError::Database(e.to_string()))?;
        let now = self.clock.now();
        let column = |f: fn(&NewJob) -> String| jobs.iter().map(f).collect::<Vec<String>>();
        // All of it in one statement, so one round trip and one commit: the capture's record
        // after it, the snapshot and the route, the PDF, the deliveries with their history lines
        // (after the capture's and before the dispatch's own, as they are written in SQLite), the
        // dispatch job done, and one wake-up for the new jobs.
        let found = sqlx::query(
            "WITH routed AS (
                 UPDATE dispatches SET invoice = $1, invoice_number = $2, stage = 'routed', route = $3, reason = NULL,
                        updated_at = $4, route_snapshot = $8, captured_at = COALESCE($22, captured_at),
                        capture_request_id = CASE WHEN $22::bigint IS NULL THEN capture_request_id END
                 WHERE transaction_id = $5 AND EXISTS (SELECT 1 FROM jobs WHERE id = $6 AND fence = $7 AND state = 'running')
                 RETURNING transaction_id),
             kept AS (
                 INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
                 SELECT transaction_id, $9, $10, $11, $4 FROM routed
                 ON CONFLICT (transaction_id) DO UPDATE SET file_name = excluded.file_name, sha256 = excluded.sha256,
                     bytes = excluded.bytes, fetched_at = excluded.fetched_at),
             done AS (
                 UPDATE jobs SET state = 'done', receipt = $12, lease_owner = NULL, lease_until = NULL, updated_at = $4
                 WHERE id = $6 AND fence = $7 AND state = 'running' AND EXISTS (SELECT 1 FROM routed)),
             planned AS (
                 SELECT * FROM unnest($14::text[], $15::text[], $16::text[], $17::text[], $18::bigint[], $19::text[])
                     WITH ORDINALITY AS j(id, kind, channel, role, next_at, detail, n)),
             queued AS (
                 INSERT INTO jobs (id, transaction_id, kind, channel, role, state, next_at, created_at, updated_at,
                                   fence, attempts, lease_owner, lease_until)
                 SELECT p.id, r.transaction_id, p.kind, p.channel, p.role,
                        CASE WHEN leased THEN 'running' ELSE 'queued' END, p.next_at, $4, $4,
                        CASE WHEN leased THEN 1 ELSE 0 END, CASE WHEN leased THEN 1 ELSE 0 END,
                        CASE WHEN leased THEN $20 END, CASE WHEN leased THEN $21::BIGINT END
                 FROM routed r, planned p, LATERAL (SELECT p.n = 1 AND $21::BIGINT IS NOT NULL AND p.next_at <= $4 AS leased) l
                 ORDER BY p.n
                 ON CONFLICT (id) DO NOTHING RETURNING *),
             noted AS (
                 INSERT INTO history (transaction_id, job_id, at, event, detail)
                 SELECT transaction_id, job_id, $4, event, detail FROM (
                     SELECT -1 AS part, 0::bigint AS n, transaction_id, $6 AS job_id, 'captured' AS event, $23::text AS detail
                         FROM routed WHERE $23::text IS NOT NULL
                     UNION ALL SELECT 0, p.n, $5 AS transaction_id, p.id AS job_id, 'queued' AS event, p.detail
                         FROM queued q JOIN planned p ON p.id = q.id
                     UNION ALL SELECT 1, 0, transaction_id, $6, 'done', $13 FROM routed) lines
                 ORDER BY part, n)
             SELECT (SELECT COUNT(*) FROM routed) AS routed_count,
                    (SELECT COUNT(*) FROM (SELECT pg_notify('postbud_jobs', '') FROM queued WHERE state = 'queued' LIMIT 1) woken) AS woken,
                    next.*
             FROM (SELECT 1) one LEFT JOIN (SELECT * FROM queued WHERE state = 'running') next ON true",
        )
        .bind(json)
        .bind(&invoice.invoice_number)
        .bind(route.index as i64)
        .bind(now)
        .bind(&lease.job.transaction_id)
        .bind(&lease.job.id)
        .bind(lease.job.fence)
        .bind(&route.snapshot)
        .bind(&invoice.pdf.file_name)
        .bind(&invoice.pdf.sha256)
        .bind(invoice.pdf.bytes.as_ref())
        .bind(detail)
        .bind(format!("attempt {}: {detail}", lease.job.attempts))
        .bind(column(|j| j.id.clone()))
        .bind(column(|j| j.kind.as_str().to_owned()))
        .bind(column(|j| j.channel.clone()))
        .bind(column(|j| j.role.as_str().to_owned()))
        .bind(jobs.iter().map(|j| j.next_at).collect::<Vec<i64>>())
        .bind(column(queued_line))
        .bind(&lease.owner)
        .bind(lease_first_due.map(|d| now + d.as_millis() as i64))
        .bind(confirmation.map(|c| c.captured_at))
        .bind(confirmation.map(|c| &c.detail))
        .fetch_one(&self.pool)
        .await?;
        let routed: i64 = found.try_get("routed_count")?;
        if routed != 1 {
            return Err(lease_lost(lease));
        }
        // The first delivery, leased here when it was due now.
        match found.try_get::<Option<String>, _>("id")? {
            Some(_) => Ok(Some(Lease {
                job: job_from(&found)?,
                owner: lease.owner.clone(),
                dispatch: None,
            })),
            None => Ok(None),
        }
    }

    async fn save_document(&self, lease: &Lease, pdf: &Pdf) -> Result<Pdf, StoreError> {
        let detail = kernel::pdf_note(pdf);
        // Kept and noted in one statement: one round trip, one commit.
        let saved = sqlx::query(
            "WITH saved AS (
                 INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
                 SELECT $1, $2, $3, $4, $5 WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $6 AND fence = $7 AND state = 'running')
                 ON CONFLICT (transaction_id) DO NOTHING RETURNING transaction_id)
             INSERT INTO history (transaction_id, job_id, at, event, detail)
             SELECT transaction_id, $6, $5, 'pdf fetched', $8 FROM saved",
        )
        .bind(&lease.job.transaction_id)
        .bind(&pdf.file_name)
        .bind(&pdf.sha256)
        .bind(pdf.bytes.as_ref())
        .bind(self.clock.now())
        .bind(&lease.job.id)
        .bind(lease.job.fence)
        .bind(&detail)
        .execute(&self.pool)
        .await?;
        if saved.rows_affected() == 1 {
            return Ok(pdf.clone());
        }
        // Kept already (by an earlier attempt); otherwise our lease is gone.
        self.document(&lease.job.transaction_id)
            .await?
            .ok_or_else(|| lease_lost(lease))
    }

    async fn document(&self, transaction_id: &str) -> Result<Option<Pdf>, StoreError> {
        let row =
            sqlx::query("SELECT file_name, sha256, bytes FROM documents WHERE transaction_id = $1")
                .bind(transaction_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(|row| {
            Ok(Pdf {
                file_name: row.try_get("file_name")?,
                sha256: row.try_get("sha256")?,
                bytes: Bytes::from(row.try_get::<Vec<u8>, _>("bytes")?),
            })
        })
        .transpose()
    }

    async fn invoice(&self, transaction_id: &str) -> Result<Option<Invoice>, StoreError> {
        let json: Option<Option<String>> =
            sqlx::query_scalar("SELECT invoice FROM dispatches WHERE transaction_id = $1")
                .bind(transaction_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(json) = json.flatten() else {
            return Ok(None);
        };
        let mut invoice: Invoice = serde_json::from_str(&json)
            .map_err(|e| StoreError::Database(format!("invoice snapshot: {e}")))?;
        let pdf = self.document(transaction_id).await?.ok_or_else(|| {
            StoreError::Database(format!("invoice {transaction_id} has no stored PDF"))
        })?;
        invoice.pdf = pdf;
        Ok(Some(invoice))
    }

    async fn enqueue(&self, lease: &Lease, jobs: &[NewJob]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let held: Option<i64> = sqlx::query_scalar(
            "SELECT 1::bigint FROM jobs WHERE id = $1 AND fence = $2 AND state = 'running'",
        )
        .bind(&lease.job.id)
        .bind(lease.job.fence)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            return Err(lease_lost(lease));
        }
        insert_jobs(&mut tx, self.clock.now(), &lease.job.transaction_id, jobs).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn enqueue_free(&self, transaction_id: &str, jobs: &[NewJob]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        insert_jobs(&mut tx, self.clock.now(), transaction_id, jobs).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn dispatch(&self, transaction_id: &str) -> Result<Option<Dispatch>, StoreError> {
        let row = sqlx::query("SELECT * FROM dispatches WHERE transaction_id = $1")
            .bind(transaction_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(dispatch_from).transpose()
    }

    async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn jobs(&self, transaction_id: &str) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE transaction_id = $1
             ORDER BY CASE kind WHEN 'dispatch' THEN 0 WHEN 'deliver' THEN 1 ELSE 2 END, created_at, channel",
        )
        .bind(transaction_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from).collect()
    }

    async fn record(&self, line: &HistoryLine<'_>) -> Result<(), StoreError> {
        // One statement: it commits on its own.
        history(
            &self.pool,
            self.clock.now(),
            line.transaction_id,
            line.job_id,
            line.event,
            line.detail,
        )
        .await
    }

    async fn history(&self, transaction_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT at, job_id, event, detail FROM history WHERE transaction_id = $1 ORDER BY id",
        )
        .bind(transaction_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(HistoryEntry {
                    at: row.try_get("at")?,
                    job_id: row.try_get("job_id")?,
                    event: row.try_get("event")?,
                    detail: row.try_get("detail")?,
                })
            })
            .collect()
    }

    async fn retry(&self, transaction_id: &str, channel: Option<&str>) -> Result<u64, StoreError> {
        // The requeue and its history line commit together, as on SQLite.
        let mut tx = self.write().await?;
        let done = sqlx::query(kernel::RETRY)
            .bind(self.clock.now())
            .bind(transaction_id)
            .bind(channel)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if done > 0 {
            history(
                &mut *tx,
                self.clock.now(),
                transaction_id,
                None,
                "retry requested",
                &kernel::retry_note(done),
            )
            .await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    async fn void(&self, transaction_id: &str) -> Result<VoidEffect, StoreError> {
        let now = self.clock.now();
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO dispatches (transaction_id, stage, created_at, updated_at) VALUES ($1, 'voided', $2, $3)
             ON CONFLICT (transaction_id) DO UPDATE SET stage = 'voided', updated_at = excluded.updated_at",
        )
        .bind(transaction_id)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Channels that delivered, or were delivering when the void came (their send may reach
        // the customer although its end can no longer be recorded): each gets a notice.
        let delivered_channels: Vec<String> = sqlx::query_scalar(
            "SELECT channel FROM jobs WHERE transaction_id = $1 AND kind = 'deliver' AND state IN ('done', 'running') ORDER BY channel",
        )
        .bind(transaction_id)
        .fetch_all(&mut *tx)
        .await?;
        // Bumping the fence refuses the late writes of a worker that is mid-attempt.
        let cancelled: Vec<String> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'cancelled', fence = fence + 1, lease_owner = NULL, lease_until = NULL, updated_at = $1
             WHERE transaction_id = $2 AND kind IN ('dispatch', 'deliver') AND state IN ('queued', 'running')
             RETURNING id",
        )
        .bind(now)
        .bind(transaction_id)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO history (transaction_id, job_id, at, event, detail) VALUES ($1, NULL, $2, 'voided', $3)")
            .bind(transaction_id)
            .bind(now)
            .bind(format!("{} pending job(s) stopped", cancelled.len()))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(VoidEffect {
            cancelled,
            delivered_channels,
        })
    }

    async fn dispatches(&self, query: &DispatchQuery) -> Result<Vec<DispatchJobs>, StoreError> {
        let sql = super::listed(query).replace('?', "$");
        let (after_at, after_id) = query.after.clone().unzip();
        let found = sqlx::query(&sql)
            .bind(query.channel.as_deref())
            .bind(query.created_from)
            .bind(query.created_before)
            .bind(after_at)
            .bind(after_id)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?;
        let dispatches = found
            .iter()
            .map(dispatch_from)
            .collect::<Result<Vec<_>, _>>()?;
        // The page's jobs in one query, not one per dispatch: `/metrics` reads every page.
        let ids: Vec<&str> = dispatches
            .iter()
            .map(|d| d.transaction_id.as_str())
            .collect();
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE transaction_id = ANY($1)
             ORDER BY CASE kind WHEN 'dispatch' THEN 0 WHEN 'deliver' THEN 1 ELSE 2 END, created_at, channel",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut jobs: std::collections::HashMap<String, Vec<Job>> =
            std::collections::HashMap::new();
        for row in &rows {
            let job = job_from(row)?;
            jobs.entry(job.transaction_id.clone())
                .or_default()
                .push(job);
        }
        Ok(dispatches
            .into_iter()
            .map(|dispatch| {
                let jobs = jobs.remove(&dispatch.transaction_id).unwrap_or_default();
                DispatchJobs { dispatch, jobs }
            })
            .collect())
    }

    async fn prune(&self, before: super::Millis) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids: Vec<String> = sqlx::query_scalar(&super::PRUNABLE.replace('?', "$"))
            .bind(before)
            .fetch_all(&mut *tx)
            .await?;
        let now = self.clock.now();
        for id in &ids {
            for statement in super::PRUNE {
                let query = statement.replace('?', "$");
                let mut query = sqlx::query(&query).bind(id);
                if statement.contains("?2") {
                    query = query.bind(now);
                }
                query.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        if ids.is_empty() {
            return Ok(0);
        }
        // Dead tuples keep the old bytes until vacuum; VACUUM cannot run in a transaction.
        for table in ["documents", "dispatches", "jobs", "history"] {
            sqlx::raw_sql(&format!("VACUUM {table}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(ids.len() as u64)
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        self.count_parts().await?.counts()
    }

    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    fn work_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.work))
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(self.meta(key).await?.unwrap_or_else(|| value.to_owned()))
    }
}

async fn insert_jobs(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    now: Millis,
    transaction_id: &str,
    jobs: &[NewJob],
) -> Result<(), StoreError> {
    for job in jobs {
        // The job, its history line and the wake-up in one statement; the last two only for a
        // job not there before.
        sqlx::query(
            "WITH inserted AS (
                 INSERT INTO jobs (id, transaction_id, kind, channel, role, state, next_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $7) ON CONFLICT (id) DO NOTHING RETURNING id),
             noted AS (
                 INSERT INTO history (transaction_id, job_id, at, event, detail)
                 SELECT $2, id, $7, 'queued', $8 FROM inserted)
             SELECT pg_notify('postbud_jobs', '') FROM inserted",
        )
        .bind(&job.id)
        .bind(transaction_id)
        .bind(job.kind.as_str())
        .bind(&job.channel)
        .bind(job.role.as_str())
        .bind(job.next_at)
        .bind(now)
        .bind(queued_line(job))
        .fetch_all(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The history line of a job queued.
fn queued_line(job: &NewJob) -> String {
    format!(
        "[{}] {} ({}) due {}",
        job.channel,
        job.kind,
        job.role,
        fmt_ms(job.next_at)
    )
}

async fn history<'e>(
    on: impl sqlx::PgExecutor<'e>,
    at: Millis,
    transaction_id: &str,
    job_id: Option<&str>,
    event: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(kernel::HISTORY)
        .bind(transaction_id)
        .bind(job_id)
        .bind(at)
        .bind(event)
        .bind(detail)
        .execute(on)
        .await?;
    Ok(())
}
