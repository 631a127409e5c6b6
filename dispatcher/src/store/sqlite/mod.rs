//! SQLite store: one file, WAL mode, leases and fencing in single statements.

mod db;

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use rusqlite::{Connection, Row, params};

use self::db::Db;

use super::{
    AcceptedVoid, Claim, Completion, Confirmation, Counts, Dispatch, DispatchJobs, DispatchPatch,
    DispatchQuery, Finish, HistoryEntry, HistoryLine, Job, Lease, Millis, NewJob, Stage, Store,
    StoreError, VoidEffect, fmt_ms,
    kernel::{self, Columns, FinishPlan, dispatch_from, job_from, lease_lost},
    now_ms,
    schema::{Dialect, migrations},
};
use crate::ids;
use postbud_channel::{Invoice, Pdf};

/// The embedded store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
}

/// Guard shared by every write made under a lease.
const FENCED: &str = "id = ? AND fence = ? AND state = 'running'";

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://FILE`) and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                StoreError::Database(format!(
                    "store.url `{url}`: expected sqlite://FILE or postgres://…"
                ))
            })?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            // Each connection would get its own empty in-memory database, and the outbox
            // would vanish with the process.
            return Err(StoreError::Database(format!(
                "store.url `{url}`: name a database file, as in sqlite://postbud.db"
            )));
        }
        let store = Self {
            db: Arc::new(Db::open(Path::new(path))?),
        };
        store.db.write(migrate).await?;
        Ok(store)
    }
}

/// Applies the migrations not yet applied. The write transaction holds the write lock, so
/// processes starting together migrate one after the other.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    for (index, migration) in migrations(Dialect::Sqlite)
        .iter()
        .enumerate()
        .skip(version as usize)
    {
        conn.execute_batch(migration)?;
        conn.execute_batch(&format!("PRAGMA user_version = {}", index + 1))?;
    }
    Ok(())
}

impl SqliteStore {
    /// The counts' parts, read in one statement and so one snapshot.
    async fn count_parts(&self) -> Result<kernel::CountParts, StoreError> {
        self.db
            .read(|conn| {
                let mut statement = conn.prepare_cached(&kernel::count_parts())?;
                let mut found = statement.query([])?;
                let mut parts = kernel::CountParts::default();
                while let Some(row) = found.next()? {
                    parts.add(row)?;
                }
                Ok(parts)
            })
            .await
    }
}

impl Columns for Row<'_> {
    fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(column)?)
    }
    fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(column)?)
    }
}

/// Keeps `pdf` as the transaction's document, with its history line, unless one is kept
/// already or the lease is gone; whether it was kept now.
fn keep_document(conn: &Connection, lease: &Lease, pdf: &Pdf) -> Result<bool, StoreError> {
    let saved = exec(
        conn,
        &format!(
            "INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at)
             SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM jobs WHERE {FENCED})
             ON CONFLICT (transaction_id) DO NOTHING"
        ),
        params![
            lease.job.transaction_id,
            pdf.file_name,
            pdf.sha256,
            pdf.bytes.as_ref(),
            now_ms(),
            lease.job.id,
            lease.job.fence,
        ],
    )?;
    if saved == 1 {
        history(
            conn,
            &lease.job.transaction_id,
            Some(&lease.job.id),
            "pdf fetched",
            &kernel::pdf_note(pdf),
        )?;
    }
    Ok(saved == 1)
}

/// A claim's statement with what it binds, owned, to run on the writer.
struct ClaimPlan {
    sql: String,
    owner: String,
    only: Option<String>,
    limit: u32,
    lease_ms: i64,
}

impl ClaimPlan {
    fn of(claim: &Claim<'_>) -> Self {
        // Each branch walks its own index in due order and stops after `limit` rows, so a claim
        // costs the same with ten or ten thousand jobs waiting.
        let due = match claim.only {
            None => {
                "SELECT id FROM (
                     SELECT id, due FROM (SELECT id, next_at AS due FROM jobs
                                          WHERE state = 'queued' AND next_at <= ?1 ORDER BY next_at LIMIT ?2)
                     UNION ALL
                     SELECT id, due FROM (SELECT id, lease_until AS due FROM jobs
                                          WHERE state = 'running' AND lease_until < ?1 ORDER BY lease_until LIMIT ?2))
                 ORDER BY due LIMIT ?2"
            }
            Some(_) => {
                "SELECT id FROM jobs
                 WHERE transaction_id = ?3
                   AND ((state = 'queued' AND next_at <= ?1) OR (state = 'running' AND lease_until < ?1))
                 ORDER BY next_at LIMIT ?2"
            }
        };
        Self {
            sql: format!(
                "UPDATE jobs SET state = 'running', fence = fence + 1, attempts = attempts + 1,
                        lease_owner = ?4, lease_until = ?5, updated_at = ?1
                 WHERE id IN ({due})
                 RETURNING *"
            ),
            owner: claim.owner.to_owned(),
            only: claim.only.map(str::to_owned),
            limit: claim.limit,
            lease_ms: claim.lease.as_millis() as i64,
        }
    }

    fn run(&self, conn: &Connection) -> Result<Vec<Lease>, StoreError> {
        let now = now_ms();
        let mut leases = rows(
            conn,
            &self.sql,
            params![now, self.limit, self.only, self.owner, now + self.lease_ms],
            |row| {
                Ok(Lease {
                    job: job_from(row)?,
                    owner: self.owner.clone(),
                    dispatch: None,
                })
            },
        )?;
        for lease in leases
            .iter_mut()
            .filter(|l| l.job.kind == super::JobKind::Dispatch)
        {
            lease.dispatch = row(
                conn,
                "SELECT * FROM dispatches WHERE transaction_id = ?",
                [&lease.job.transaction_id],
                |r| dispatch_from(r),
            )?;
        }
        Ok(leases)
    }
}

/// Writes the end of the attempt `lease` holds, as `plan` says.
fn finish_in(conn: &Connection, lease: &Lease, plan: &FinishPlan) -> Result<(), StoreError> {
    let updated = exec(
        conn,
        &format!(
            "UPDATE jobs SET state = ?, next_at = ?, last_error = COALESCE(?, last_error), receipt = COALESCE(?, receipt),
                    attempts = attempts + ?, lease_owner = NULL, lease_until = NULL, updated_at = ?
             WHERE {FENCED}"
        ),
        params![plan.state.as_str(), plan.next_at, plan.error, plan.receipt, plan.attempt_delta, now_ms(), lease.job.id, lease.job.fence],
    )?;
    if updated != 1 {
        return Err(lease_lost(lease));
    }
    history(
        conn,
        &lease.job.transaction_id,
        Some(&lease.job.id),
        plan.event,
        &plan.detail,
    )
}

/// Applies `patch` to the dispatch `lease` holds, with the PDF it keeps and its history line.
fn patch_dispatch(
    conn: &Connection,
    lease: &Lease,
    patch: &DispatchPatch,
) -> Result<(), StoreError> {
    if let Some(pdf) = &patch.document {
        keep_document(conn, lease, pdf)?;
    }
    let updated = exec(
        conn,
        &format!(
            "UPDATE dispatches SET
                stage = COALESCE(?, stage),
                reason = CASE WHEN ? THEN ? ELSE reason END,
                capture_reference = CASE WHEN ? THEN ? ELSE capture_reference END,
                capture_request_id = CASE WHEN ? THEN ? ELSE capture_request_id END,
                captured_at = COALESCE(?, captured_at),
                invoice_number = COALESCE(?, invoice_number),
                route = COALESCE(?, route),
                updated_at = ?
             WHERE transaction_id = ? AND EXISTS (SELECT 1 FROM jobs WHERE {FENCED})"
        ),
        params![
            patch.stage.map(Stage::as_str),
            patch.reason.is_some(),
            patch.reason.as_ref().and_then(Option::as_deref),
            patch.capture_reference.is_some(),
            patch.capture_reference.as_ref().and_then(Option::as_deref),
            patch.capture_request_id.is_some(),
            patch.capture_request_id.as_ref().and_then(Option::as_deref),
            patch.captured_at,
            patch.invoice_number,
            patch.route.map(|r| r as i64),
            now_ms(),
            lease.job.transaction_id,
            lease.job.id,
            lease.job.fence,
        ],
    )?;
    if updated != 1 {
        return Err(lease_lost(lease));
    }
    match &patch.note {
        Some((event, detail)) => history(
            conn,
            &lease.job.transaction_id,
            Some(&lease.job.id),
            event,
            detail,
        ),
        None => Ok(()),
    }
}

/// A transaction's jobs, dispatch first.
fn jobs_of(conn: &Connection, transaction_id: &str) -> Result<Vec<Job>, StoreError> {
    rows(
        conn,
        "SELECT * FROM jobs WHERE transaction_id = ?
         ORDER BY CASE kind WHEN 'dispatch' THEN 0 WHEN 'deliver' THEN 1 ELSE 2 END, created_at, channel",
        [transaction_id],
        |r| job_from(r),
    )
}

/// Every row `sql` returns, mapped by `from`.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    from: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut found = statement.query(params)?;
    let mut all = Vec::new();
    while let Some(row) = found.next()? {
        all.push(from(row)?);
    }
    Ok(all)
}

/// The first row `sql` returns, mapped by `from`.
fn row<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    from: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let mut found = statement.query(params)?;
    found.next()?.map(from).transpose()
}

/// Runs one statement; the number of rows it changed.
fn exec(conn: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize, StoreError> {
    Ok(conn.prepare_cached(sql)?.execute(params)?)
}

/// Fails unless `lease` still holds its job.
fn held(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let sql = format!("SELECT 1 FROM jobs WHERE {FENCED}");
    match row(conn, &sql, params![lease.job.id, lease.job.fence], |_| {
        Ok(())
    })? {
        Some(()) => Ok(()),
        None => Err(lease_lost(lease)),
    }
}

fn history(
    conn: &Connection,
    transaction_id: &str,
    job_id: Option<&str>,
    event: &str,
    detail: &str,
) -> Result<(), StoreError> {
    exec(
        conn,
        kernel::HISTORY,
        params![transaction_id, job_id, now_ms(), event, detail],
    )?;
    Ok(())
}

fn insert_jobs(conn: &Connection, transaction_id: &str, jobs: &[NewJob]) -> Result<(), StoreError> {
    let now = now_ms();
    for job in jobs {
        let inserted = exec(
            conn,
            "INSERT INTO jobs (id, transaction_id, kind, channel, role, state, next_at, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            params![job.id, transaction_id, job.kind.as_str(), job.channel, job.role.as_str(), job.next_at, now, now],
        )?;
        if inserted == 1 {
            let detail = format!(
                "[{}] {} ({}) due {}",
                job.channel,
                job.kind,
                job.role.as_str(),
                fmt_ms(job.next_at)
            );
            history(conn, transaction_id, Some(&job.id), "queued", &detail)?;
        }
    }
    Ok(())
}

fn document(conn: &Connection, transaction_id: &str) -> Result<Option<Pdf>, StoreError> {
    row(
        conn,
        "SELECT file_name, sha256, bytes FROM documents WHERE transaction_id = ?",
        [transaction_id],
        |row| {
            Ok(Pdf {
                file_name: row.get("file_name")?,
                sha256: row.get("sha256")?,
                bytes: Bytes::from(row.get::<_, Vec<u8>>("bytes")?),
            })
        },
    )
}

fn meta(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    row(conn, "SELECT value FROM meta WHERE key = ?", [key], |row| {
        Ok(row.get(0)?)
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn submit(&self, transaction_id: &str) -> Result<bool, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .write(move |conn| {
                let now = now_ms();
                let job_id = ids::dispatch_id(&transaction_id);
                exec(
                    conn,
                    "INSERT INTO dispatches (transaction_id, stage, created_at, updated_at) VALUES (?, 'new', ?, ?)
                     ON CONFLICT (transaction_id) DO NOTHING",
                    params![transaction_id, now, now],
                )?;
                let inserted = exec(
                    conn,
                    "INSERT INTO jobs (id, transaction_id, kind, state, next_at, created_at, updated_at)
                     VALUES (?, ?, 'dispatch', 'queued', ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                    params![job_id, transaction_id, now, now, now],
                )? == 1;
                let requeued = !inserted
                    && exec(
                        conn,
                        "UPDATE jobs SET state = 'queued', next_at = ?, attempts = 0, updated_at = ?
                         WHERE id = ? AND state = 'skipped'",
                        params![now, now, job_id],
                    )? == 1;
                if inserted || requeued {
                    let detail = if inserted {
                        "queued for dispatch"
                    } else {
                        "skipped before; looking again"
                    };
                    history(conn, &transaction_id, Some(&job_id), "submitted", detail)?;
                }
                Ok(inserted || requeued)
            })
            .await
    }

    async fn adopt_capture(&self, transaction_id: &str, detail: &str) -> Result<bool, StoreError> {
        let (transaction_id, detail) = (transaction_id.to_owned(), detail.to_owned());
        self.db
            .write(move |conn| {
                let now = now_ms();
                if exec(conn, kernel::ADOPT_CAPTURE, params![now, transaction_id])? == 0 {
                    return Ok(false);
                }
                exec(
                    conn,
                    kernel::REQUEUE_DISPATCH,
                    params![now, ids::dispatch_id(&transaction_id)],
                )?;
                history(conn, &transaction_id, None, "capture adopted", &detail)?;
                Ok(true)
            })
            .await
    }

    async fn mark_origin(
        &self,
        transaction_id: &str,
        origin: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (transaction_id, origin, detail) = (
            transaction_id.to_owned(),
            origin.to_owned(),
            detail.to_owned(),
        );
        self.db
            .write(move |conn| {
                let now = now_ms();
                exec(
                    conn,
                    "INSERT INTO dispatches (transaction_id, stage, origin, created_at, updated_at) VALUES (?, 'new', ?, ?, ?)
                     ON CONFLICT (transaction_id) DO UPDATE SET origin = excluded.origin
                     WHERE dispatches.stage IN ('new', 'skipped')",
                    params![transaction_id, origin, now, now],
                )?;
                // A callback may have started the dispatch before this was recorded: an attempt
                // that has not captured yet is fenced out and queued again, so it cannot skip
                // the invoice on what it read before.
                exec(
                    conn,
                    "UPDATE jobs SET state = 'queued', next_at = ?, fence = fence + 1, lease_owner = NULL, lease_until = NULL, updated_at = ?
                     WHERE id = ? AND state IN ('running', 'skipped')
                       AND EXISTS (SELECT 1 FROM dispatches WHERE transaction_id = ? AND stage IN ('new', 'skipped'))",
                    params![now, now, ids::dispatch_id(&transaction_id), transaction_id],
                )?;
                history(conn, &transaction_id, None, "merchant-initiated", &detail)
            })
            .await
    }

    async fn void_accepted(&self, void: &AcceptedVoid<'_>) -> Result<(), StoreError> {
        let (transaction_id, request_id, job) = (
            void.transaction_id.to_owned(),
            void.request_id.map(str::to_owned),
            void.confirm.clone(),
        );
        self.db
            .write(move |conn| {
                let now = now_ms();
                exec(
                    conn,
                    "INSERT INTO dispatches (transaction_id, stage, void_request_id, created_at, updated_at) VALUES (?, 'voiding', ?, ?, ?)
                     ON CONFLICT (transaction_id) DO UPDATE SET void_request_id = excluded.void_request_id, updated_at = excluded.updated_at",
                    params![transaction_id, request_id, now, now],
                )?;
                exec(
                    conn,
                    "UPDATE jobs SET state = 'queued', next_at = ?, attempts = 0, last_error = NULL, fence = fence + 1, updated_at = ?
                     WHERE id = ? AND state IN ('done', 'failed', 'dead', 'cancelled')",
                    params![now, now, job.id],
                )?;
                insert_jobs(conn, &transaction_id, std::slice::from_ref(&job))?;
                let detail = format!(
                    "Dintero accepted the void (202, event-request-id {}); waiting for its VOID event",
                    request_id.as_deref().unwrap_or("not given")
                );
                history(conn, &transaction_id, Some(&job.id), "void accepted", &detail)
            })
            .await
    }

    async fn take_turn(&self, name: &str, owner: &str, until: Millis) -> Result<bool, StoreError> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.db
            .write(move |conn| {
                Ok(exec(
                    conn,
                    kernel::TAKE_TURN,
                    params![name, owner, until, now_ms()],
                )? == 1)
            })
            .await
    }

    async fn claim(&self, claim: &Claim<'_>) -> Result<Vec<Lease>, StoreError> {
        let claim = ClaimPlan::of(claim);
        self.db.write(move |conn| claim.run(conn)).await
    }

    async fn finish_then_claim(
        &self,
        lease: &Lease,
        finish: Finish,
        next: &Claim<'_>,
    ) -> Result<Vec<Lease>, StoreError> {
        let plan = FinishPlan::of(lease, &finish, now_ms());
        let (lease, claim) = (lease.clone(), ClaimPlan::of(next));
        self.db
            .write(move |conn| {
                if let Some(plan) = &plan {
                    finish_in(conn, &lease, plan)?;
                }
                claim.run(conn)
            })
            .await
    }

    async fn renew(&self, lease: &Lease, duration: Duration) -> Result<(), StoreError> {
        let lease = lease.clone();
        let until = now_ms() + duration.as_millis() as i64;
        self.db
            .write(move |conn| {
                let sql = format!("UPDATE jobs SET lease_until = ? WHERE {FENCED}");
                match exec(conn, &sql, params![until, lease.job.id, lease.job.fence])? {
                    1 => Ok(()),
                    _ => Err(lease_lost(&lease)),
                }
            })
            .await
    }

    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<(), StoreError> {
        let Some(plan) = FinishPlan::of(lease, &finish, now_ms()) else {
            return Ok(());
        };
        let lease = lease.clone();
        self.db
            .write(move |conn| finish_in(conn, &lease, &plan))
            .await
    }

    async fn update_dispatch(&self, lease: &Lease, patch: DispatchPatch) -> Result<(), StoreError> {
        let lease = lease.clone();
        self.db
            .write(move |conn| patch_dispatch(conn, &lease, &patch))
            .await
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
        let (lease, number, jobs) = (lease.clone(), invoice.invoice_number.clone(), jobs.to_vec());
        let confirmation = confirmation.map(Confirmation::patch);
        let route = route.clone();
        let pdf = invoice.pdf.clone();
        let line = format!("attempt {}: {detail}", lease.job.attempts);
        let detail = detail.to_owned();
        self.db
            .write(move |conn| {
                if let Some(patch) = &confirmation {
                    patch_dispatch(conn, &lease, patch)?;
                }
                let now = now_ms();
                let updated = exec(
                    conn,
                    &format!(
                        "UPDATE dispatches SET invoice = ?, invoice_number = ?, stage = 'routed', route = ?, route_snapshot = ?, reason = NULL, updated_at = ?
                         WHERE transaction_id = ? AND EXISTS (SELECT 1 FROM jobs WHERE {FENCED})"
                    ),
                    params![json, number, route.index as i64, route.snapshot, now, lease.job.transaction_id, lease.job.id, lease.job.fence],
                )?;
                if updated != 1 {
                    return Err(lease_lost(&lease));
                }
                exec(
                    conn,
                    "INSERT INTO documents (transaction_id, file_name, sha256, bytes, fetched_at) VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (transaction_id) DO UPDATE SET file_name = excluded.file_name, sha256 = excluded.sha256,
                         bytes = excluded.bytes, fetched_at = excluded.fetched_at",
                    params![lease.job.transaction_id, pdf.file_name, pdf.sha256, pdf.bytes.as_ref(), now],
                )?;
                insert_jobs(conn, &lease.job.transaction_id, &jobs)?;
                exec(
                    conn,
                    &format!(
                        "UPDATE jobs SET state = 'done', receipt = ?, lease_owner = NULL, lease_until = NULL, updated_at = ? WHERE {FENCED}"
                    ),
                    params![detail, now, lease.job.id, lease.job.fence],
                )?;
                history(conn, &lease.job.transaction_id, Some(&lease.job.id), "done", &line)?;
                let (Some(duration), Some(first)) = (lease_first_due, jobs.first()) else {
                    return Ok(None);
                };
                // Claimed as `claim` would claim it, by the worker that completed the dispatch.
                let next = row(
                    conn,
                    "UPDATE jobs SET state = 'running', fence = fence + 1, attempts = attempts + 1,
                            lease_owner = ?, lease_until = ?, updated_at = ?
                     WHERE id = ? AND state = 'queued' AND next_at <= ? RETURNING *",
                    params![lease.owner, now + duration.as_millis() as i64, now, first.id, now],
                    |r| job_from(r),
                )?;
                Ok(next.map(|job| Lease { job, owner: lease.owner.clone(), dispatch: None }))
            })
            .await
    }

    async fn save_document(&self, lease: &Lease, pdf: &Pdf) -> Result<Pdf, StoreError> {
        let (lease, pdf) = (lease.clone(), pdf.clone());
        self.db
            .write(move |conn| {
                if keep_document(conn, &lease, &pdf)? {
                    return Ok(pdf);
                }
                // Kept already (by an earlier attempt); otherwise our lease is gone.
                document(conn, &lease.job.transaction_id)?.ok_or_else(|| lease_lost(&lease))
            })
            .await
    }

    async fn document(&self, transaction_id: &str) -> Result<Option<Pdf>, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |conn| document(conn, &transaction_id))
            .await
    }

    async fn invoice(&self, transaction_id: &str) -> Result<Option<Invoice>, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |conn| {
                let json: Option<Option<String>> = row(
                    conn,
                    "SELECT invoice FROM dispatches WHERE transaction_id = ?",
                    [&transaction_id],
                    |row| Ok(row.get(0)?),
                )?;
                let Some(json) = json.flatten() else {
                    return Ok(None);
                };
                let mut invoice: Invoice = serde_json::from_str(&json)
                    .map_err(|e| StoreError::Database(format!("invoice snapshot: {e}")))?;
                invoice.pdf = document(conn, &transaction_id)?.ok_or_else(|| {
                    StoreError::Database(format!("invoice {transaction_id} has no stored PDF"))
                })?;
                Ok(Some(invoice))
            })
            .await
    }

    async fn enqueue(&self, lease: &Lease, jobs: &[NewJob]) -> Result<(), StoreError> {
        let (lease, jobs) = (lease.clone(), jobs.to_vec());
        self.db
            .write(move |conn| {
                held(conn, &lease)?;
                insert_jobs(conn, &lease.job.transaction_id, &jobs)
            })
            .await
    }

    async fn enqueue_free(&self, transaction_id: &str, jobs: &[NewJob]) -> Result<(), StoreError> {
        let (transaction_id, jobs) = (transaction_id.to_owned(), jobs.to_vec());
        self.db
            .write(move |conn| insert_jobs(conn, &transaction_id, &jobs))
            .await
    }

    async fn dispatch(&self, transaction_id: &str) -> Result<Option<Dispatch>, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |conn| {
                row(
                    conn,
                    "SELECT * FROM dispatches WHERE transaction_id = ?",
                    [transaction_id],
                    |r| dispatch_from(r),
                )
            })
            .await
    }

    async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_owned();
        self.db
            .read(move |conn| {
                row(conn, "SELECT * FROM jobs WHERE id = ?", [id], |r| {
                    job_from(r)
                })
            })
            .await
    }

    async fn jobs(&self, transaction_id: &str) -> Result<Vec<Job>, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |conn| jobs_of(conn, &transaction_id))
            .await
    }

    async fn record(&self, line: &HistoryLine<'_>) -> Result<(), StoreError> {
        let (transaction_id, job_id) = (
            line.transaction_id.to_owned(),
            line.job_id.map(str::to_owned),
        );
        let (event, detail) = (line.event.to_owned(), line.detail.to_owned());
        self.db
            .write(move |conn| history(conn, &transaction_id, job_id.as_deref(), &event, &detail))
            .await
    }

    async fn history(&self, transaction_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |conn| {
                rows(
                    conn,
                    "SELECT at, job_id, event, detail FROM history WHERE transaction_id = ? ORDER BY id",
                    [transaction_id],
                    |row| {
                        Ok(HistoryEntry {
                            at: row.get("at")?,
                            job_id: row.get("job_id")?,
                            event: row.get("event")?,
                            detail: row.get("detail")?,
                        })
                    },
                )
            })
            .await
    }

    async fn retry(&self, transaction_id: &str, channel: Option<&str>) -> Result<u64, StoreError> {
        let (transaction_id, channel) = (transaction_id.to_owned(), channel.map(str::to_owned));
        self.db
            .write(move |conn| {
                let done = exec(
                    conn,
                    kernel::RETRY,
                    params![now_ms(), transaction_id, channel],
                )? as u64;
                if done > 0 {
                    history(
                        conn,
                        &transaction_id,
                        None,
                        "retry requested",
                        &kernel::retry_note(done),
                    )?;
                }
                Ok(done)
            })
            .await
    }

    async fn void(&self, transaction_id: &str) -> Result<VoidEffect, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .write(move |conn| {
                let now = now_ms();
                exec(
                    conn,
                    "INSERT INTO dispatches (transaction_id, stage, created_at, updated_at) VALUES (?, 'voided', ?, ?)
                     ON CONFLICT (transaction_id) DO UPDATE SET stage = 'voided', updated_at = excluded.updated_at",
                    params![transaction_id, now, now],
                )?;
                // Channels that delivered, or were delivering when the void came (their send may
                // reach the customer although its end can no longer be recorded): each gets a notice.
                let delivered_channels: Vec<String> = rows(
                    conn,
                    "SELECT channel FROM jobs WHERE transaction_id = ? AND kind = 'deliver' AND state IN ('done', 'running') ORDER BY channel",
                    [&transaction_id],
                    |row| Ok(row.get(0)?),
                )?;
                // Bumping the fence refuses the late writes of a worker that is mid-attempt.
                let cancelled: Vec<String> = rows(
                    conn,
                    "UPDATE jobs SET state = 'cancelled', fence = fence + 1, lease_owner = NULL, lease_until = NULL, updated_at = ?
                     WHERE transaction_id = ? AND kind IN ('dispatch', 'deliver') AND state IN ('queued', 'running')
                     RETURNING id",
                    params![now, transaction_id],
                    |row| Ok(row.get(0)?),
                )?;
                let detail = format!("{} pending job(s) stopped", cancelled.len());
                history(conn, &transaction_id, None, "voided", &detail)?;
                Ok(VoidEffect {
                    cancelled,
                    delivered_channels,
                })
            })
            .await
    }

    async fn dispatches(&self, query: &DispatchQuery) -> Result<Vec<DispatchJobs>, StoreError> {
        let query = query.clone();
        self.db
            .read(move |conn| {
                let sql = super::listed(&query);
                let (after_at, after_id) = query.after.unzip();
                let found = rows(
                    conn,
                    &sql,
                    rusqlite::params![
                        query.channel,
                        query.created_from,
                        query.created_before,
                        after_at,
                        after_id,
                        query.limit
                    ],
                    |r| dispatch_from(r),
                )?;
                found
                    .into_iter()
                    .map(|dispatch| {
                        let jobs = jobs_of(conn, &dispatch.transaction_id)?;
                        Ok(DispatchJobs { dispatch, jobs })
                    })
                    .collect()
            })
            .await
    }

    async fn prune(&self, before: Millis) -> Result<u64, StoreError> {
        let pruned = self
            .db
            .write(move |conn| {
                let ids = rows(conn, super::PRUNABLE, [before], |row| {
                    Ok(row.get::<_, String>(0)?)
                })?;
                let now = now_ms();
                for id in &ids {
                    for statement in super::PRUNE {
                        if statement.contains("?2") {
                            exec(conn, statement, params![id, now])?;
                        } else {
                            exec(conn, statement, [id])?;
                        }
                    }
                }
                Ok(ids.len() as u64)
            })
            .await?;
        // `secure_delete` zeroed what the rows held; the WAL still has the pages as they were
        // until it is checkpointed and truncated. Readers holding on delay that, not the prune:
        // the next pass truncates it.
        if pruned > 0
            && let Err(e) = self.db.checkpoint().await
        {
            tracing::warn!(error = %e, pruned, "pruned, but the WAL still holds the old pages");
        }
        Ok(pruned)
    }

    async fn counts(&self) -> Result<Counts, StoreError> {
        self.count_parts().await?.counts()
    }

    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let key = key.to_owned();
        self.db.read(move |conn| meta(conn, &key)).await
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.db
            .write(move |conn| {
                exec(
                    conn,
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    params![key, value],
                )?;
                Ok(())
            })
            .await
    }

    async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.db
            .write(move |conn| {
                exec(
                    conn,
                    "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                    params![key, value],
                )?;
                Ok(meta(conn, &key)?.unwrap_or(value))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database made by a version before the kept counts gets them from the rows it holds.
    #[tokio::test]
    async fn an_older_database_counts_what_it_holds() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("postbud.db");
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &migrations(Dialect::Sqlite)[..5] {
                conn.execute_batch(migration).expect("older schema");
            }
            conn.execute_batch(
                "PRAGMA user_version = 5;
                 INSERT INTO dispatches (transaction_id, stage, created_at, updated_at) VALUES
                     ('T1', 'routed', 1, 1), ('T2', 'skipped', 2, 2), ('T3', 'new', 3, 3), ('T4', 'routed', 4, 4);
                 INSERT INTO jobs (id, transaction_id, kind, state, next_at, created_at, updated_at) VALUES
                     ('d1', 'T1', 'dispatch', 'done', 0, 1, 1), ('s1', 'T1', 'deliver', 'done', 0, 1, 1),
                     ('d2', 'T2', 'dispatch', 'skipped', 0, 2, 2), ('d3', 'T3', 'dispatch', 'queued', 0, 3, 3),
                     ('d4', 'T4', 'dispatch', 'done', 0, 4, 4), ('s4', 'T4', 'deliver', 'failed', 0, 4, 4);
                 INSERT INTO history (transaction_id, job_id, at, event, detail) VALUES ('T1', 'd1', 1, 'submitted', 'first');",
            )
            .expect("rows");
        }
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .expect("migrated");
        let counts = store.counts().await.expect("counts");
        let totals = counts.totals;
        let counted = (
            totals.dispatches,
            totals.delivered,
            totals.skipped,
            totals.queued,
            totals.failed,
        );
        assert_eq!(counted, (4, 1, 1, 1, 1), "{totals:?}");
        let mut census: Vec<_> = (counts.census.into_iter())
            .map(|r| (r.stage.as_str(), r.active, r.troubled, r.count))
            .collect();
        census.sort();
        // The history kept its lines and their order through the table's rebuild.
        store
            .record(&HistoryLine {
                transaction_id: "T1",
                job_id: None,
                event: "later",
                detail: "second",
            })
            .await
            .expect("record");
        let events: Vec<String> = (store.history("T1").await.expect("history").into_iter())
            .map(|h| h.detail)
            .collect();
        assert_eq!(events, ["first", "second"]);
        assert_eq!(
            census,
            [
                ("new", true, false, 1),
                ("routed", false, false, 1),
                ("routed", false, true, 1),
                ("skipped", false, false, 1)
            ]
        );
    }

    #[tokio::test]
    async fn a_url_without_a_file_is_refused_with_the_key() {
        for url in ["sqlite://", "sqlite::memory:", "mysql://db/postbud"] {
            let e = SqliteStore::open(url).await.expect_err(url).to_string();
            assert!(e.contains(&format!("store.url `{url}`")), "{e}");
        }
    }
}
