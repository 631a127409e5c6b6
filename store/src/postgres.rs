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
    EvidenceEntry, EvidenceWritten, Finish, HistoryEntry, HistoryLine, Job, Lease, Millis,
    NewEvidence, NewJob, Stage, Store, StoreError, StoreErrorKind, VoidEffect,
    kernel::{self, Columns, FinishPlan, dispatch_from, job_from, lease_lost},
    schema::{Dialect, migrations},
    sql::{Named, postgres, shared},
};
use postbud_channel::ids;
use postbud_channel::{Invoice, Pdf};

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::new(classify(&e), e.to_string()).with_source(e)
    }
}

/// What a PostgreSQL error says happened: the edge where sqlx's errors are classified.
fn classify(e: &sqlx::Error) -> StoreErrorKind {
    use sqlx::Error;
    match e {
        Error::Database(db) => db
            .code()
            .map_or(StoreErrorKind::Other, |code| kind_of_sqlstate(&code)),
        Error::Io(_)
        | Error::Tls(_)
        | Error::Protocol(_)
        | Error::PoolTimedOut
        | Error::PoolClosed
        | Error::WorkerCrashed => StoreErrorKind::Unavailable,
        Error::Configuration(_) => StoreErrorKind::Misconfigured,
        Error::ColumnDecode { .. }
        | Error::Decode(_)
        | Error::ColumnNotFound(_)
        | Error::ColumnIndexOutOfBounds { .. }
        | Error::TypeNotFound { .. } => StoreErrorKind::Corrupt,
        Error::Encode(_) => StoreErrorKind::Invalid,
        _ => StoreErrorKind::Other,
    }
}

/// What a SQLSTATE says happened (PostgreSQL's error codes, appendix A of its manual).
fn kind_of_sqlstate(code: &str) -> StoreErrorKind {
    match code {
        // serialization_failure, deadlock_detected, lock_not_available
        "40001" | "40P01" | "55P03" => StoreErrorKind::Busy,
        // disk_full
        "53100" => StoreErrorKind::DiskFull,
        // insufficient_privilege
        "42501" => StoreErrorKind::Denied,
        // read_only_sql_transaction: what pooled connections to the old primary answer for a
        // while after a failover or switchover; the new primary takes the write soon
        "25006" => StoreErrorKind::Unavailable,
        // invalid_catalog_name: the database in the URL does not exist
        "3D000" => StoreErrorKind::Misconfigured,
        // data_corrupted, index_corrupted
        "XX001" | "XX002" => StoreErrorKind::Corrupt,
        // admin_shutdown, crash_shutdown, cannot_connect_now
        "57P01" | "57P02" | "57P03" => StoreErrorKind::Unavailable,
        _ => match &code[..code.len().min(2)] {
            // connection exceptions
            "08" => StoreErrorKind::Unavailable,
            // integrity constraint violations
            "23" => StoreErrorKind::Conflict,
            // invalid authorization (a password, a role that may not log in)
            "28" => StoreErrorKind::Denied,
            // insufficient resources (out of memory, too many connections)
            "53" => StoreErrorKind::Busy,
            // data exceptions, syntax errors and undefined objects: the statement's fault
            "22" | "42" => StoreErrorKind::Invalid,
            _ => StoreErrorKind::Other,
        },
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
            let message = format!(
                "connect to PostgreSQL ({}): {e}",
                postbud_channel::http::redact_url(url)
            );
            StoreError::new(classify(&e), message).with_source(e)
        })
}

/// Reads the database server's clock between two readings of this process's, and records the
/// offset.
async fn measure(pool: &PgPool, clock: &StoreClock) -> Result<(), StoreError> {
    // The connection first: a wait for one would count as the server's answer taking long.
    let mut conn = pool.acquire().await?;
    let before = clock.local();
    let reference: i64 = first(&Named::new(postgres::CLOCK).fetch_one(&mut *conn).await?)?;
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
    let table: Option<String> = first(&Named::new(postgres::SCHEMA_TABLE).fetch_one(&pool).await?)?;
    let answer = match table {
        None => {
            "reachable; no Postbud schema yet: `postbud serve` or `migrate` creates it".to_owned()
        }
        Some(_) => {
            let version = Named::new(postgres::SCHEMA_VERSION)
                .fetch_optional(&pool)
                .await?
                .as_ref()
                .map(first::<i64>)
                .transpose()?;
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
        Named::new(postgres::MIGRATION_LOCK)
            .fetch_all(&mut *tx)
            .await?;
        Named::new(postgres::SCHEMA_VERSIONED)
            .execute(&mut *tx)
            .await?;
        let version = Named::new(postgres::SCHEMA_VERSION)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(first::<i64>)
            .transpose()?;
        if version.is_none() {
            Named::new(postgres::SCHEMA_UNVERSIONED)
                .execute(&mut *tx)
                .await?;
        }
        let version = version.unwrap_or(0);
        for migration in migrations(Dialect::Postgres).iter().skip(version as usize) {
            sqlx::raw_sql(migration).execute(&mut *tx).await?;
        }
        let applied = migrations(Dialect::Postgres).len() as i64;
        Named::new(postgres::SCHEMA_MIGRATED)
            .bind("version", applied.max(version))
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
            Named::new(postgres::FOLD_TALLIES)
                .execute(&self.pool)
                .await?;
        }
        let mut parts = kernel::CountParts::default();
        for row in Named::new(shared::COUNTS).fetch_all(&self.pool).await? {
            parts.add(&row)?;
        }
        Ok(parts)
    }
}

/// Binds the parameters of `shared/finish.sql` and the history line's event and detail.
fn bind_finished<'q>(
    named: Named<'q>,
    plan: &'q FinishPlan,
    now: Millis,
    lease: &'q Lease,
) -> Named<'q> {
    named
        .bind("state", plan.state.as_str())
        .bind("next_at", plan.next_at)
        .bind("error", plan.error.as_deref())
        .bind("receipt", plan.receipt.as_deref())
        .bind("reference", plan.reference.as_deref())
        .bind("outcome_unknown", plan.outcome_unknown)
        .bind("attempt_delta", plan.attempt_delta)
        .bind("now", now)
        .bind("job_id", &lease.job.id)
        .bind("fence", lease.job.fence)
        .bind("event", plan.event)
        .bind("detail", &plan.detail)
}

impl Columns for PgRow {
    fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn blob_opt(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

/// The first column of `row`.
fn first<'r, T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>>(
    row: &'r PgRow,
) -> Result<T, StoreError> {
    Ok(row.try_get(0)?)
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
        let adopted = Named::new(shared::ADOPT_CAPTURE)
            .bind("now", now)
            .bind("transaction_id", transaction_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if adopted == 0 {
            return Ok(false);
        }
        Named::new(shared::REQUEUE_DISPATCH)
            .bind("now", now)
            .bind("job_id", ids::dispatch_id(transaction_id))
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
        Named::new(shared::MARK_ORIGIN)
            .bind("transaction_id", transaction_id)
            .bind("origin", origin)
            .bind("now", now)
            .execute(&mut *tx)
            .await?;
        Named::new(shared::FENCE_OUT_UNDECIDED)
            .bind("now", now)
            .bind("job_id", ids::dispatch_id(transaction_id))
            .bind("transaction_id", transaction_id)
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
        Named::new(shared::VOID_ACCEPTED)
            .bind("transaction_id", transaction_id)
            .bind("request_id", request_id)
            .bind("now", now)
            .execute(&mut *tx)
            .await?;
        Named::new(shared::REQUEUE_CONFIRM)
            .bind("now", now)
            .bind("job_id", &job.id)
            .execute(&mut *tx)
            .await?;
        insert_jobs(
            &mut tx,
            self.clock.now(),
            transaction_id,
            std::slice::from_ref(job),
        )
        .await?;
        history(
            &mut *tx,
            self.clock.now(),
            transaction_id,
            Some(&job.id),
            "void accepted",
            &kernel::void_accepted_line(request_id),
        )
        .await?;
        Named::new(postgres::NOTIFY).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn take_turn(&self, name: &str, owner: &str, until: Millis) -> Result<bool, StoreError> {
        let taken = Named::new(shared::TAKE_TURN)
            .bind("name", name)
            .bind("owner", owner)
            .bind("until", until)
            .bind("now", self.clock.now())
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(taken == 1)
    }

    async fn submit(&self, transaction_id: &str) -> Result<bool, StoreError> {
        let queued = Named::new(postgres::SUBMIT)
            .bind("transaction_id", transaction_id)
            .bind("now", self.clock.now())
            .bind("job_id", ids::dispatch_id(transaction_id))
            .fetch_all(&self.pool)
            .await?;
        Ok(!queued.is_empty())
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<Vec<Lease>, StoreError> {
        let (owner, lease, limit, only) = (claim.owner, claim.lease, claim.limit, claim.only);
        let now = self.clock.now();
        let rows = Named::new(postgres::claim(only.is_some()))
            .bind("now", now)
            .bind("limit", i64::from(limit))
            .bind("only", only)
            .bind("owner", owner)
            .bind("until", now + lease.as_millis() as i64)
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
        let done = Named::new(shared::RENEW)
            .bind("until", self.clock.now() + duration.as_millis() as i64)
            .bind("job_id", &lease.job.id)
            .bind("fence", lease.job.fence)
            .execute(&self.pool)
            .await?;
        kernel::held(done.rows_affected(), lease)
    }

    async fn keep_reference(&self, lease: &Lease, reference: &str) -> Result<(), StoreError> {
        let done = Named::new(shared::KEEP_REFERENCE)
            .bind("reference", kernel::storable(reference))
            .bind("job_id", &lease.job.id)
            .bind("fence", lease.job.fence)
            .execute(&self.pool)
            .await?;
        kernel::held(done.rows_affected(), lease)
    }

    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<(), StoreError> {
        let now = self.clock.now();
        let Some(plan) = FinishPlan::of(lease, &finish, now) else {
            return Ok(());
        };
        let updated = bind_finished(Named::new(postgres::finish()), &plan, now, lease)
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
        let statement = postgres::finish_then_claim(next.only.is_some());
        let rows = bind_finished(Named::new(statement), &plan, now, lease)
            .bind("limit", i64::from(next.limit))
            .bind("only", next.only)
            .bind("owner", next.owner)
            .bind("until", now + next.lease.as_millis() as i64)
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
        let document = patch.document.as_ref();
        let updated = Named::new(postgres::update_dispatch())
            .bind("stage", patch.stage.map(Stage::as_str))
            .bind("set_reason", patch.reason.is_some())
            .bind("reason", patch.reason.clone().flatten())
            .bind("set_capture_reference", patch.capture_reference.is_some())
            .bind(
                "capture_reference",
                patch.capture_reference.clone().flatten(),
            )
            .bind("set_capture_request_id", patch.capture_request_id.is_some())
            .bind(
                "capture_request_id",
                patch.capture_request_id.clone().flatten(),
            )
            .bind("captured_at", patch.captured_at)
            .bind("invoice_number", patch.invoice_number.clone())
            .bind("route", patch.route.map(|r| r as i64))
            .bind("now", self.clock.now())
            .bind("transaction_id", &lease.job.transaction_id)
            .bind("job_id", &lease.job.id)
            .bind("fence", lease.job.fence)
            .bind("event", event)
            .bind("detail", detail)
            .bind("file_name", document.map(|pdf| &pdf.file_name))
            .bind("sha256", document.map(|pdf| &pdf.sha256))
            .bind("bytes", document.map(|pdf| pdf.bytes.as_ref()))
            .bind("pdf_note", document.map(kernel::pdf_note))
            .fetch_one(&self.pool)
            .await?;
        if first::<i64>(&updated)? != 1 {
            return Err(lease_lost(lease));
        }
        Ok(())
    }

    async fn complete_dispatch(
        &self,
        lease: &Lease,
        completion: &Completion<'_>,
    ) -> Result<Option<Lease>, StoreError> {
        let snapshot = kernel::Snapshot::of(lease, completion)?;
        let (jobs, confirmation) = (completion.jobs, completion.confirmation);
        let now = self.clock.now();
        let column = |f: fn(&NewJob) -> String| jobs.iter().map(f).collect::<Vec<String>>();
        let found = Named::new(postgres::COMPLETE_DISPATCH)
            .bind("invoice", snapshot.json)
            .bind("invoice_number", snapshot.invoice_number)
            .bind("merchant_reference", snapshot.merchant_reference)
            .bind("customer_email", snapshot.customer_email)
            .bind("route", snapshot.route)
            .bind("now", now)
            .bind("transaction_id", &lease.job.transaction_id)
            .bind("job_id", &lease.job.id)
            .bind("fence", lease.job.fence)
            .bind("route_snapshot", snapshot.route_snapshot)
            .bind("file_name", snapshot.pdf.file_name)
            .bind("sha256", snapshot.pdf.sha256)
            .bind("bytes", snapshot.pdf.bytes.as_ref())
            .bind("receipt", snapshot.receipt)
            .bind("done_line", snapshot.done_line)
            .bind("job_ids", column(|j| j.id.clone()))
            .bind("kinds", column(|j| j.kind.as_str().to_owned()))
            .bind("channels", column(|j| j.channel.clone()))
            .bind("roles", column(|j| j.role.as_str().to_owned()))
            .bind("due", jobs.iter().map(|j| j.next_at).collect::<Vec<i64>>())
            .bind("queued_lines", column(kernel::queued_line))
            .bind("owner", &lease.owner)
            .bind(
                "lease_until",
                completion
                    .lease_first_due
                    .map(|d| now + d.as_millis() as i64),
            )
            .bind("captured_at", confirmation.map(|c| c.captured_at))
            .bind("captured_line", confirmation.map(|c| &c.detail))
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
        let saved = Named::new(postgres::SAVE_DOCUMENT)
            .bind("transaction_id", &lease.job.transaction_id)
            .bind("file_name", &pdf.file_name)
            .bind("sha256", &pdf.sha256)
            .bind("bytes", pdf.bytes.as_ref())
            .bind("now", self.clock.now())
            .bind("job_id", &lease.job.id)
            .bind("fence", lease.job.fence)
            .bind("detail", kernel::pdf_note(pdf))
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
        let row = Named::new(shared::DOCUMENT)
            .bind("transaction_id", transaction_id)
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
        let row = Named::new(shared::INVOICE)
            .bind("transaction_id", transaction_id)
            .fetch_optional(&self.pool)
            .await?;
        let json = row.as_ref().map(first::<Option<String>>).transpose()?;
        let Some(json) = json.flatten() else {
            return Ok(None);
        };
        let pdf = self.document(transaction_id).await?;
        kernel::invoice_from(transaction_id, &json, pdf).map(Some)
    }

    async fn enqueue(&self, lease: &Lease, jobs: &[NewJob]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let held = Named::new(shared::HELD)
            .bind("job_id", &lease.job.id)
            .bind("fence", lease.job.fence)
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
        let row = Named::new(shared::DISPATCH)
            .bind("transaction_id", transaction_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(dispatch_from).transpose()
    }

    async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let row = Named::new(shared::JOB)
            .bind("id", id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from).transpose()
    }

    async fn jobs(&self, transaction_id: &str) -> Result<Vec<Job>, StoreError> {
        let rows = Named::new(shared::JOBS)
            .bind("transaction_id", transaction_id)
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
            &kernel::storable(line.detail),
        )
        .await
    }

    async fn record_evidence(
        &self,
        evidence: &NewEvidence<'_>,
    ) -> Result<EvidenceWritten, StoreError> {
        let e = kernel::OwnedEvidence::of(evidence);
        let mut tx = self.write().await?;
        let job = Named::new(postgres::JOB_FOR_EVIDENCE)
            .bind("job_id", &e.job_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(job) = job else {
            return Ok(EvidenceWritten::NoJob);
        };
        let state: String = job.try_get("state")?;
        let outcome_unknown = job.try_get::<i64, _>("outcome_unknown")? != 0;
        if kernel::evidence_waits(&state, outcome_unknown) {
            return Ok(EvidenceWritten::NotYet);
        }
        let now = self.clock.now();
        let inserted = Named::new(shared::INSERT_EVIDENCE)
            .bind("job_id", &e.job_id)
            .bind("event_id", &e.event_id)
            .bind("transaction_id", &e.transaction_id)
            .bind("state", e.state.as_str())
            .bind("reporter", &e.reporter)
            .bind("reason", &e.reason)
            .bind("payload", &e.payload[..])
            .bind("reported_at", e.reported_at)
            .bind("now", now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if inserted == 0 {
            return Ok(EvidenceWritten::Duplicate);
        }
        history(
            &mut *tx,
            now,
            &e.transaction_id,
            Some(&e.job_id),
            &e.event,
            &e.detail,
        )
        .await?;
        let mut failed = false;
        if let Some(fails) = &e.fails {
            failed = Named::new(shared::EVIDENCE_FAILS_JOB)
                .bind("error", &fails.error)
                .bind("state", e.state.as_str())
                .bind("now", now)
                .bind("job_id", &e.job_id)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
            if failed && insert_jobs(&mut tx, now, &e.transaction_id, &fails.then).await? > 0 {
                history(
                    &mut *tx,
                    now,
                    &e.transaction_id,
                    Some(&e.job_id),
                    "fallback",
                    &fails.then_detail,
                )
                .await?;
            }
        }
        if e.fails.is_none() {
            Named::new(shared::EVIDENCE_SETTLES_JOB)
                .bind("receipt", &e.detail)
                .bind("now", now)
                .bind("job_id", &e.job_id)
                .execute(&mut *tx)
                .await?;
        }
        if !failed {
            Named::new(shared::EVIDENCE_ADVANCES_JOB)
                .bind("state", e.state.as_str())
                .bind("rank", kernel::evidence_rank(e.state))
                .bind("now", now)
                .bind("job_id", &e.job_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(EvidenceWritten::New { failed })
    }

    async fn job_by_reference(
        &self,
        channel: &str,
        reference: &str,
    ) -> Result<Option<Job>, StoreError> {
        let rows = Named::new(shared::JOB_BY_REFERENCE)
            .bind("reference", reference)
            .bind("channel", channel)
            .fetch_all(&self.pool)
            .await?;
        match rows.as_slice() {
            [one] => job_from(one).map(Some),
            _ => Ok(None),
        }
    }

    async fn evidence(&self, transaction_id: &str) -> Result<Vec<EvidenceEntry>, StoreError> {
        let rows = Named::new(shared::EVIDENCE_OF)
            .bind("transaction_id", transaction_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(kernel::evidence_from).collect()
    }

    async fn history(&self, transaction_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let rows = Named::new(shared::HISTORY)
            .bind("transaction_id", transaction_id)
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
        let done = Named::new(shared::RETRY)
            .bind("now", self.clock.now())
            .bind("transaction_id", transaction_id)
            .bind("channel", channel)
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
        Named::new(shared::VOID)
            .bind("transaction_id", transaction_id)
            .bind("now", now)
            .execute(&mut *tx)
            .await?;
        let delivered_channels = Named::new(shared::DELIVERED_CHANNELS)
            .bind("transaction_id", transaction_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(first::<String>)
            .collect::<Result<Vec<_>, _>>()?;
        let cancelled = Named::new(shared::CANCEL_PENDING)
            .bind("now", now)
            .bind("transaction_id", transaction_id)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(first::<String>)
            .collect::<Result<Vec<_>, _>>()?;
        history(
            &mut *tx,
            now,
            transaction_id,
            None,
            "voided",
            &kernel::voided_line(&cancelled),
        )
        .await?;
        tx.commit().await?;
        Ok(VoidEffect {
            cancelled,
            delivered_channels,
        })
    }

    async fn dispatches(&self, query: &DispatchQuery) -> Result<Vec<DispatchJobs>, StoreError> {
        let Some(source) = kernel::Source::of(query) else {
            return Ok(Vec::new());
        };
        let window = kernel::Window::of(query);
        let (search, email) = kernel::search_of(query);
        let found = Named::new(shared::dispatches(source))
            .bind("channel", query.channel.as_deref())
            .bind("state", query.delivery_state.map(|s| s.as_str()))
            .bind("retried", i64::from(query.retried))
            .bind("troubled", i64::from(query.troubled))
            .bind("search", search)
            .bind("email", email)
            .bind("created_from", window.from)
            .bind("until", window.until)
            .bind("after_at", window.after_at)
            .bind("after_id", window.after_id)
            .bind("limit", i64::from(query.limit))
            .fetch_all(&self.pool)
            .await?;
        let dispatches = found
            .iter()
            .map(dispatch_from)
            .collect::<Result<Vec<_>, _>>()?;
        let ids: Vec<&str> = dispatches
            .iter()
            .map(|d| d.transaction_id.as_str())
            .collect();
        let rows = Named::new(postgres::JOBS_OF_PAGE)
            .bind("transaction_ids", &ids)
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

    async fn record_audit(&self, entry: &super::AuditEntry) -> Result<(), StoreError> {
        Named::new(shared::RECORD_AUDIT)
            .bind("at", entry.at)
            .bind("user_name", kernel::storable(&entry.user))
            .bind("action", kernel::storable(&entry.action))
            .bind("target", kernel::storable(&entry.target))
            .bind("result", kernel::storable(&entry.result))
            .execute(&self.pool)
            .await
            .map(drop)
    }

    async fn audit_log(
        &self,
        before: Option<super::Millis>,
        limit: u32,
    ) -> Result<Vec<super::AuditEntry>, StoreError> {
        let Some(skip) = limit.checked_sub(1) else {
            return Ok(Vec::new());
        };
        Named::new(shared::AUDIT_LOG)
            .bind("before", before)
            .bind("skip", i64::from(skip))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(kernel::audit_from)
            .collect()
    }

    async fn prune(&self, before: super::Millis) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let ids = Named::new(shared::PRUNABLE)
            .bind("before", before)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(first::<String>)
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.clock.now();
        for id in &ids {
            for statement in shared::PRUNE {
                let mut query = Named::new(statement).bind("transaction_id", id);
                if statement.contains(":now") {
                    query = query.bind("now", now);
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
        let row = Named::new(shared::META)
            .bind("key", key)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(first::<String>).transpose()
    }

    fn work_signal(&self) -> Option<Arc<Notify>> {
        Some(Arc::clone(&self.work))
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        Named::new(shared::SET_META)
            .bind("key", key)
            .bind("value", value)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError> {
        Named::new(shared::META_INIT)
            .bind("key", key)
            .bind("value", value)
            .execute(&self.pool)
            .await?;
        Ok(self.meta(key).await?.unwrap_or_else(|| value.to_owned()))
    }
}

/// Inserts `jobs` not there yet, each with its history line; how many were new.
async fn insert_jobs(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    now: Millis,
    transaction_id: &str,
    jobs: &[NewJob],
) -> Result<usize, StoreError> {
    let mut new = 0;
    for job in jobs {
        // One row (the wake-up) for a job that was not there before.
        new += Named::new(postgres::INSERT_JOB)
            .bind("id", &job.id)
            .bind("transaction_id", transaction_id)
            .bind("kind", job.kind.as_str())
            .bind("channel", &job.channel)
            .bind("role", job.role.as_str())
            .bind("next_at", job.next_at)
            .bind("now", now)
            .bind("detail", kernel::queued_line(job))
            .fetch_all(&mut **tx)
            .await?
            .len();
    }
    Ok(new)
}

async fn history<'e>(
    on: impl sqlx::PgExecutor<'e>,
    at: Millis,
    transaction_id: &str,
    job_id: Option<&str>,
    event: &str,
    detail: &str,
) -> Result<(), StoreError> {
    Named::new(shared::RECORD)
        .bind("transaction_id", transaction_id)
        .bind("job_id", job_id)
        .bind("at", at)
        .bind("event", event)
        .bind("detail", detail)
        .execute(on)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_say_what_happened_and_whether_to_retry() {
        for (code, kind, temporary) in [
            ("23505", StoreErrorKind::Conflict, false),
            ("23503", StoreErrorKind::Conflict, false),
            ("40001", StoreErrorKind::Busy, true),
            ("40P01", StoreErrorKind::Busy, true),
            ("08006", StoreErrorKind::Unavailable, true),
            ("57P01", StoreErrorKind::Unavailable, true),
            ("53100", StoreErrorKind::DiskFull, true),
            ("53300", StoreErrorKind::Busy, true),
            ("28P01", StoreErrorKind::Denied, false),
            ("3D000", StoreErrorKind::Misconfigured, false),
            ("XX001", StoreErrorKind::Corrupt, false),
            ("42P01", StoreErrorKind::Invalid, false),
            ("22P02", StoreErrorKind::Invalid, false),
        ] {
            assert_eq!(kind_of_sqlstate(code), kind, "{code}");
            assert_eq!(kind.is_temporary(), temporary, "{code}");
        }
    }

    /// A database of schema 8 (before the console) gets the search's keys of the invoices it
    /// routed from their snapshots, and an audit log, as SQLite's does.
    #[tokio::test]
    async fn a_schema_8_database_gets_the_search_keys_of_what_it_holds() {
        let admin = std::env::var("POSTBUD_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let Ok(pool) = PgPool::connect(&admin).await else {
            assert_ne!(
                std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref(),
                Ok("1"),
                "PostgreSQL required (POSTBUD_REQUIRE_SERVICES=1) but unreachable"
            );
            use std::io::Write as _;
            let _ = std::io::stderr().write_all(b"SKIPPED a_schema_8_database: no PostgreSQL\n");
            return;
        };
        let name = format!("postbud_schema8_{}", std::process::id());
        let dropped = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        sqlx::raw_sql(&dropped).execute(&pool).await.expect("drop");
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&pool)
            .await
            .expect("create");
        let url = format!("{}/{name}", admin.rsplit_once('/').expect("a database").0);
        {
            let old = PgPool::connect(&url).await.expect("connect");
            for migration in &migrations(Dialect::Postgres)[..8] {
                sqlx::raw_sql(migration)
                    .execute(&old)
                    .await
                    .expect("schema 8");
            }
            sqlx::raw_sql(crate::schema::SCHEMA_8_ROWS)
                .execute(&old)
                .await
                .expect("rows");
            sqlx::raw_sql(
                "CREATE TABLE postbud_schema (version BIGINT NOT NULL); INSERT INTO postbud_schema VALUES (8);",
            )
            .execute(&old)
            .await
            .expect("version");
            old.close().await;
        }
        let store = PgStore::open_with_clock(&url, crate::clock::system())
            .await
            .expect("migrated");
        crate::schema::assert_schema_8_migrated(&store).await;
        assert_eq!(
            store.migrate().await.expect("again"),
            migrations(Dialect::Postgres).len() as i64
        );
        store.pool.close().await;
        sqlx::raw_sql(&dropped).execute(&pool).await.expect("drop");
    }

    /// Every statement PostgreSQL runs prepares against the schema, in a schema of its own
    /// rolled back after, and declares as many parameters as it has names.
    #[tokio::test]
    async fn every_statement_prepares_against_the_schema() {
        use sqlx::{Executor as _, Statement as _};
        let admin = std::env::var("POSTBUD_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let pool = match PgPool::connect(&admin).await {
            Ok(pool) => pool,
            Err(e) if std::env::var("POSTBUD_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("PostgreSQL required (POSTBUD_REQUIRE_SERVICES=1) but unreachable: {e}")
            }
            // Straight to stderr in one write, past the harness's capture: the test command counts skips.
            Err(e) => {
                use std::io::Write as _;
                let _ = std::io::stderr().write_all(
                    format!("SKIPPED every_statement_prepares: no PostgreSQL: {e}\n").as_bytes(),
                );
                return;
            }
        };
        let mut tx = pool.begin().await.expect("begin");
        let schema = format!("postbud_statements_{}", std::process::id());
        let setup = format!("CREATE SCHEMA {schema}; SET LOCAL search_path = {schema}");
        sqlx::raw_sql(&setup)
            .execute(&mut *tx)
            .await
            .expect("schema");
        for migration in migrations(Dialect::Postgres) {
            sqlx::raw_sql(&migration)
                .execute(&mut *tx)
                .await
                .expect("migrate");
        }
        sqlx::raw_sql(postgres::SCHEMA_VERSIONED)
            .execute(&mut *tx)
            .await
            .expect("the version's table");
        for (name, sql) in postgres::every_statement() {
            let numbered = crate::sql::numbered(&sql);
            let prepared = (&mut *tx)
                .prepare(numbered.sql.as_str())
                .await
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let declared = match prepared.parameters() {
                Some(sqlx::Either::Left(types)) => types.len(),
                Some(sqlx::Either::Right(n)) => n,
                None => 0,
            };
            assert_eq!(declared, numbered.names.len(), "{name}");
        }
        tx.rollback().await.expect("rollback");
    }

    #[test]
    fn a_driver_error_keeps_its_cause() {
        use std::error::Error as _;
        let e = StoreError::from(sqlx::Error::PoolTimedOut);
        assert_eq!(e.kind(), StoreErrorKind::Unavailable);
        assert!(e.is_temporary());
        assert!(
            e.source()
                .is_some_and(|s| s.to_string().contains("timed out"))
        );
        let e = StoreError::from(sqlx::Error::ColumnNotFound("stage".into()));
        assert_eq!(e.kind(), StoreErrorKind::Corrupt);
        assert!(!e.is_temporary());
    }
}
