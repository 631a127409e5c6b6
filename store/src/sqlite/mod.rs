//! SQLite store: one file, WAL mode, leases and fencing in single statements.

mod db;

use std::{path::Path, sync::Arc, time::Duration};

use bytes::Bytes;
use rusqlite::{Connection, Row, ToSql, named_params};

use self::db::Db;

use super::{
    AcceptedVoid, AuditEntry, Claim, Completion, Confirmation, Counts, Dispatch, DispatchJobs,
    DispatchPatch, DispatchQuery, EvidenceEntry, EvidenceWritten, Finish, HistoryEntry,
    HistoryLine, Job, Lease, Millis, NewEvidence, NewJob, Stage, Store, StoreError, StoreErrorKind,
    VoidEffect,
    kernel::{self, Columns, FinishPlan, dispatch_from, job_from, lease_lost},
    now_ms,
    schema::{Dialect, migrations},
    sql::{shared, sqlite},
};
use postbud_channel::ids;
use postbud_channel::{Invoice, Pdf};

/// The embedded store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    db: Arc<Db>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://FILE`) and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| {
                StoreError::new(
                    StoreErrorKind::Misconfigured,
                    format!("store.url `{url}`: expected sqlite://FILE or postgres://…"),
                )
            })?;
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" {
            // Each connection would get its own empty in-memory database, and the outbox
            // would vanish with the process.
            return Err(StoreError::new(
                StoreErrorKind::Misconfigured,
                format!("store.url `{url}`: name a database file, as in sqlite://postbud.db"),
            ));
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
                let mut parts = kernel::CountParts::default();
                for_each_row(conn, shared::COUNTS, named_params! {}, |row| parts.add(row))?;
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
    fn blob_opt(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.get(column)?)
    }
}

/// Keeps `pdf` as the transaction's document, with its history line, unless one is kept
/// already or the lease is gone; whether it was kept now.
fn keep_document(conn: &Connection, lease: &Lease, pdf: &Pdf) -> Result<bool, StoreError> {
    let saved = exec(
        conn,
        sqlite::KEEP_DOCUMENT,
        named_params! {
            ":transaction_id": lease.job.transaction_id,
            ":file_name": pdf.file_name,
            ":sha256": pdf.sha256,
            ":bytes": pdf.bytes.as_ref(),
            ":now": now_ms(),
            ":job_id": lease.job.id,
            ":fence": lease.job.fence,
        },
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

/// A claim with what it binds, owned, to run on the writer.
struct ClaimPlan {
    owner: String,
    only: Option<String>,
    limit: u32,
    lease_ms: i64,
}

impl ClaimPlan {
    fn of(claim: &Claim<'_>) -> Self {
        Self {
            owner: claim.owner.to_owned(),
            only: claim.only.map(str::to_owned),
            limit: claim.limit,
            lease_ms: claim.lease.as_millis() as i64,
        }
    }

    fn run(&self, conn: &Connection) -> Result<Vec<Lease>, StoreError> {
        let (now, until) = (now_ms(), now_ms() + self.lease_ms);
        let lease = |row: &Row<'_>| {
            Ok(Lease {
                job: job_from(row)?,
                owner: self.owner.clone(),
                dispatch: None,
            })
        };
        let mut leases = match &self.only {
            None => rows(
                conn,
                sqlite::CLAIM,
                named_params! {":now": now, ":limit": self.limit, ":owner": self.owner, ":until": until},
                lease,
            )?,
            Some(only) => rows(
                conn,
                sqlite::CLAIM_OF_TRANSACTION,
                named_params! {
                    ":now": now, ":limit": self.limit, ":only": only, ":owner": self.owner, ":until": until,
                },
                lease,
            )?,
        };
        for lease in leases
            .iter_mut()
            .filter(|l| l.job.kind == super::JobKind::Dispatch)
        {
            lease.dispatch = dispatch(conn, &lease.job.transaction_id)?;
        }
        Ok(leases)
    }
}

/// Writes the end of the attempt `lease` holds, as `plan` says.
fn finish_in(conn: &Connection, lease: &Lease, plan: &FinishPlan) -> Result<(), StoreError> {
    let updated = exec(
        conn,
        shared::FINISH,
        named_params! {
            ":state": plan.state.as_str(),
            ":next_at": plan.next_at,
            ":error": plan.error,
            ":receipt": plan.receipt,
            ":reference": plan.reference,
            ":outcome_unknown": plan.outcome_unknown,
            ":attempt_delta": plan.attempt_delta,
            ":now": now_ms(),
            ":job_id": lease.job.id,
            ":fence": lease.job.fence,
        },
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
        shared::PATCH_DISPATCH,
        named_params! {
            ":stage": patch.stage.map(Stage::as_str),
            ":set_reason": patch.reason.is_some(),
            ":reason": patch.reason.as_ref().and_then(Option::as_deref),
            ":set_capture_reference": patch.capture_reference.is_some(),
            ":capture_reference": patch.capture_reference.as_ref().and_then(Option::as_deref),
            ":set_capture_request_id": patch.capture_request_id.is_some(),
            ":capture_request_id": patch.capture_request_id.as_ref().and_then(Option::as_deref),
            ":captured_at": patch.captured_at,
            ":invoice_number": patch.invoice_number,
            ":route": patch.route.map(|r| r as i64),
            ":now": now_ms(),
            ":transaction_id": lease.job.transaction_id,
            ":job_id": lease.job.id,
            ":fence": lease.job.fence,
        },
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
        shared::JOBS,
        named_params! {":transaction_id": transaction_id},
        |r| job_from(r),
    )
}

/// A transaction's dispatch record.
fn dispatch(conn: &Connection, transaction_id: &str) -> Result<Option<Dispatch>, StoreError> {
    row(
        conn,
        shared::DISPATCH,
        named_params! {":transaction_id": transaction_id},
        |r| dispatch_from(r),
    )
}

/// Values bound to a statement's `:name`s.
type Named<'a> = &'a [(&'a str, &'a dyn ToSql)];

/// `sql` prepared (and cached), after checking that `params` name each of its parameters once
/// and nothing else: SQLite would leave a parameter not named NULL, silently.
fn prepared<'c>(
    conn: &'c Connection,
    sql: &str,
    params: Named<'_>,
) -> Result<rusqlite::CachedStatement<'c>, StoreError> {
    let statement = conn.prepare_cached(sql)?;
    let declared = statement.parameter_count();
    let names_each_once = params.len() == declared
        && params.iter().enumerate().all(|(i, (name, _))| {
            statement.parameter_index(name).ok().flatten().is_some()
                && params[..i].iter().all(|(other, _)| other != name)
        });
    if !names_each_once {
        let given: Vec<&str> = params.iter().map(|(name, _)| *name).collect();
        let wanted: Vec<&str> = (1..=declared)
            .filter_map(|i| statement.parameter_name(i))
            .collect();
        return Err(StoreError::new(
            StoreErrorKind::Invalid,
            format!(
                "statement `{}`: given {given:?}, it names {wanted:?}",
                sql.lines().next().unwrap_or_default()
            ),
        ));
    }
    Ok(statement)
}

/// Calls `each` with every row `sql` returns.
fn for_each_row(
    conn: &Connection,
    sql: &str,
    params: Named<'_>,
    mut each: impl FnMut(&Row<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut statement = prepared(conn, sql, params)?;
    let mut found = statement.query(params)?;
    while let Some(row) = found.next()? {
        each(row)?;
    }
    Ok(())
}

/// Every row `sql` returns, mapped by `from`.
fn rows<T>(
    conn: &Connection,
    sql: &str,
    params: Named<'_>,
    from: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Vec<T>, StoreError> {
    let mut all = Vec::new();
    for_each_row(conn, sql, params, |row| {
        all.push(from(row)?);
        Ok(())
    })?;
    Ok(all)
}

/// The first row `sql` returns, mapped by `from`.
fn row<T>(
    conn: &Connection,
    sql: &str,
    params: Named<'_>,
    from: impl Fn(&Row<'_>) -> Result<T, StoreError>,
) -> Result<Option<T>, StoreError> {
    let mut statement = prepared(conn, sql, params)?;
    let mut found = statement.query(params)?;
    found.next()?.map(from).transpose()
}

/// Runs one statement; the number of rows it changed, or returned when it has `RETURNING`.
fn exec(conn: &Connection, sql: &str, params: Named<'_>) -> Result<usize, StoreError> {
    let mut statement = prepared(conn, sql, params)?;
    if statement.column_count() == 0 {
        return Ok(statement.execute(params)?);
    }
    let mut found = statement.query(params)?;
    let mut returned = 0;
    while found.next()?.is_some() {
        returned += 1;
    }
    Ok(returned)
}

/// Fails unless `lease` still holds its job.
fn held(conn: &Connection, lease: &Lease) -> Result<(), StoreError> {
    let found = row(
        conn,
        shared::HELD,
        named_params! {":job_id": lease.job.id, ":fence": lease.job.fence},
        |_| Ok(()),
    )?;
    found.ok_or_else(|| lease_lost(lease))
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
        shared::RECORD,
        named_params! {
            ":transaction_id": transaction_id,
            ":job_id": job_id,
            ":at": now_ms(),
            ":event": event,
            ":detail": detail,
        },
    )?;
    Ok(())
}

/// Inserts `jobs` not there yet, each with its history line; how many were new.
fn insert_jobs(
    conn: &Connection,
    transaction_id: &str,
    jobs: &[NewJob],
) -> Result<usize, StoreError> {
    let now = now_ms();
    let mut new = 0;
    for job in jobs {
        let inserted = exec(
            conn,
            sqlite::INSERT_JOB,
            named_params! {
                ":id": job.id,
                ":transaction_id": transaction_id,
                ":kind": job.kind.as_str(),
                ":channel": job.channel,
                ":role": job.role.as_str(),
                ":next_at": job.next_at,
                ":now": now,
            },
        )?;
        if inserted == 1 {
            new += 1;
            history(
                conn,
                transaction_id,
                Some(&job.id),
                "queued",
                &kernel::queued_line(job),
            )?;
        }
    }
    Ok(new)
}

/// [`Store::record_evidence`] in the writer's transaction.
fn record_evidence(
    conn: &Connection,
    e: &kernel::OwnedEvidence,
) -> Result<EvidenceWritten, StoreError> {
    let job = row(conn, shared::JOB, named_params! {":id": e.job_id}, |r| {
        Ok((
            r.get::<_, String>("state")?,
            r.get::<_, i64>("outcome_unknown")? != 0,
        ))
    })?;
    let Some((state, outcome_unknown)) = job else {
        return Ok(EvidenceWritten::NoJob);
    };
    if kernel::evidence_waits(&state, outcome_unknown) {
        return Ok(EvidenceWritten::NotYet);
    }
    let now = now_ms();
    let inserted = exec(
        conn,
        shared::INSERT_EVIDENCE,
        named_params! {
            ":job_id": e.job_id,
            ":event_id": e.event_id,
            ":transaction_id": e.transaction_id,
            ":state": e.state.as_str(),
            ":reporter": e.reporter,
            ":reason": e.reason,
            ":payload": e.payload,
            ":reported_at": e.reported_at,
            ":now": now,
        },
    )?;
    if inserted == 0 {
        return Ok(EvidenceWritten::Duplicate);
    }
    history(
        conn,
        &e.transaction_id,
        Some(&e.job_id),
        &e.event,
        &e.detail,
    )?;
    if let Some(fails) = &e.fails {
        let failed = exec(
            conn,
            shared::EVIDENCE_FAILS_JOB,
            named_params! {
                ":error": fails.error,
                ":state": e.state.as_str(),
                ":now": now,
                ":job_id": e.job_id,
            },
        )? == 1;
        if failed {
            if insert_jobs(conn, &e.transaction_id, &fails.then)? > 0 {
                history(
                    conn,
                    &e.transaction_id,
                    Some(&e.job_id),
                    "fallback",
                    &fails.then_detail,
                )?;
            }
            return Ok(EvidenceWritten::New { failed: true });
        }
    } else {
        exec(
            conn,
            shared::EVIDENCE_SETTLES_JOB,
            named_params! {":receipt": e.detail, ":now": now, ":job_id": e.job_id},
        )?;
    }
    exec(
        conn,
        shared::EVIDENCE_ADVANCES_JOB,
        named_params! {
            ":state": e.state.as_str(),
            ":rank": kernel::evidence_rank(e.state),
            ":now": now,
            ":job_id": e.job_id,
        },
    )?;
    Ok(EvidenceWritten::New { failed: false })
}

fn document(conn: &Connection, transaction_id: &str) -> Result<Option<Pdf>, StoreError> {
    row(
        conn,
        shared::DOCUMENT,
        named_params! {":transaction_id": transaction_id},
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
    row(conn, shared::META, named_params! {":key": key}, |row| {
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
                    sqlite::SUBMIT_DISPATCH,
                    named_params! {":transaction_id": transaction_id, ":now": now},
                )?;
                let inserted = exec(
                    conn,
                    sqlite::SUBMIT_JOB,
                    named_params! {":job_id": job_id, ":transaction_id": transaction_id, ":now": now},
                )? == 1;
                let requeued = !inserted
                    && exec(
                        conn,
                        sqlite::SUBMIT_AGAIN,
                        named_params! {":job_id": job_id, ":now": now},
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
                let adopted = exec(
                    conn,
                    shared::ADOPT_CAPTURE,
                    named_params! {":now": now, ":transaction_id": transaction_id},
                )?;
                if adopted == 0 {
                    return Ok(false);
                }
                exec(
                    conn,
                    shared::REQUEUE_DISPATCH,
                    named_params! {":now": now, ":job_id": ids::dispatch_id(&transaction_id)},
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
                    shared::MARK_ORIGIN,
                    named_params! {":transaction_id": transaction_id, ":origin": origin, ":now": now},
                )?;
                exec(
                    conn,
                    shared::FENCE_OUT_UNDECIDED,
                    named_params! {
                        ":now": now,
                        ":job_id": ids::dispatch_id(&transaction_id),
                        ":transaction_id": transaction_id,
                    },
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
                    shared::VOID_ACCEPTED,
                    named_params! {":transaction_id": transaction_id, ":request_id": request_id, ":now": now},
                )?;
                exec(
                    conn,
                    shared::REQUEUE_CONFIRM,
                    named_params! {":now": now, ":job_id": job.id},
                )?;
                insert_jobs(conn, &transaction_id, std::slice::from_ref(&job))?;
                let detail = kernel::void_accepted_line(request_id.as_deref());
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
                    shared::TAKE_TURN,
                    named_params! {":name": name, ":owner": owner, ":until": until, ":now": now_ms()},
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
                let renewed = exec(
                    conn,
                    shared::RENEW,
                    named_params! {":until": until, ":job_id": lease.job.id, ":fence": lease.job.fence},
                )?;
                kernel::held(renewed as u64, &lease)
            })
            .await
    }

    async fn keep_reference(&self, lease: &Lease, reference: &str) -> Result<(), StoreError> {
        let (lease, reference) = (lease.clone(), kernel::storable(reference));
        self.db
            .write(move |conn| {
                let kept = exec(
                    conn,
                    shared::KEEP_REFERENCE,
                    named_params! {":reference": reference, ":job_id": lease.job.id, ":fence": lease.job.fence},
                )?;
                kernel::held(kept as u64, &lease)
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
        let snapshot = kernel::Snapshot::of(lease, completion)?;
        let (lease, jobs) = (lease.clone(), completion.jobs.to_vec());
        let confirmation = completion.confirmation.map(Confirmation::patch);
        let lease_first_due = completion.lease_first_due;
        self.db
            .write(move |conn| {
                if let Some(patch) = &confirmation {
                    patch_dispatch(conn, &lease, patch)?;
                }
                let now = now_ms();
                let routed = exec(
                    conn,
                    sqlite::ROUTE,
                    named_params! {
                        ":invoice": snapshot.json,
                        ":invoice_number": snapshot.invoice_number,
                        ":merchant_reference": snapshot.merchant_reference,
                        ":customer_email": snapshot.customer_email,
                        ":route": snapshot.route,
                        ":route_snapshot": snapshot.route_snapshot,
                        ":now": now,
                        ":transaction_id": lease.job.transaction_id,
                        ":job_id": lease.job.id,
                        ":fence": lease.job.fence,
                    },
                )?;
                if routed != 1 {
                    return Err(lease_lost(&lease));
                }
                exec(
                    conn,
                    sqlite::REPLACE_DOCUMENT,
                    named_params! {
                        ":transaction_id": lease.job.transaction_id,
                        ":file_name": snapshot.pdf.file_name,
                        ":sha256": snapshot.pdf.sha256,
                        ":bytes": snapshot.pdf.bytes.as_ref(),
                        ":now": now,
                    },
                )?;
                insert_jobs(conn, &lease.job.transaction_id, &jobs)?;
                exec(
                    conn,
                    sqlite::DISPATCHED,
                    named_params! {
                        ":receipt": snapshot.receipt,
                        ":now": now,
                        ":job_id": lease.job.id,
                        ":fence": lease.job.fence,
                    },
                )?;
                history(
                    conn,
                    &lease.job.transaction_id,
                    Some(&lease.job.id),
                    "done",
                    &snapshot.done_line,
                )?;
                let (Some(duration), Some(first)) = (lease_first_due, jobs.first()) else {
                    return Ok(None);
                };
                // Claimed as `claim` would claim it, by the worker that completed the dispatch.
                let next = row(
                    conn,
                    sqlite::LEASE_FIRST,
                    named_params! {
                        ":owner": lease.owner,
                        ":until": now + duration.as_millis() as i64,
                        ":now": now,
                        ":job_id": first.id,
                    },
                    |r| job_from(r),
                )?;
                Ok(next.map(|job| Lease {
                    job,
                    owner: lease.owner.clone(),
                    dispatch: None,
                }))
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
                    shared::INVOICE,
                    named_params! {":transaction_id": transaction_id},
                    |row| Ok(row.get(0)?),
                )?;
                let Some(json) = json.flatten() else {
                    return Ok(None);
                };
                let pdf = document(conn, &transaction_id)?;
                kernel::invoice_from(&transaction_id, &json, pdf).map(Some)
            })
            .await
    }

    async fn enqueue(&self, lease: &Lease, jobs: &[NewJob]) -> Result<(), StoreError> {
        let (lease, jobs) = (lease.clone(), jobs.to_vec());
        self.db
            .write(move |conn| {
                held(conn, &lease)?;
                insert_jobs(conn, &lease.job.transaction_id, &jobs).map(|_| ())
            })
            .await
    }

    async fn enqueue_free(&self, transaction_id: &str, jobs: &[NewJob]) -> Result<(), StoreError> {
        let (transaction_id, jobs) = (transaction_id.to_owned(), jobs.to_vec());
        self.db
            .write(move |conn| insert_jobs(conn, &transaction_id, &jobs).map(|_| ()))
            .await
    }

    async fn dispatch(&self, transaction_id: &str) -> Result<Option<Dispatch>, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |conn| dispatch(conn, &transaction_id))
            .await
    }

    async fn job(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let id = id.to_owned();
        self.db
            .read(move |conn| {
                row(conn, shared::JOB, named_params! {":id": id}, |r| {
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

    async fn record_evidence(
        &self,
        evidence: &NewEvidence<'_>,
    ) -> Result<EvidenceWritten, StoreError> {
        let evidence = kernel::OwnedEvidence::of(evidence);
        self.db
            .write(move |conn| record_evidence(conn, &evidence))
            .await
    }

    async fn job_by_reference(
        &self,
        channel: &str,
        reference: &str,
    ) -> Result<Option<Job>, StoreError> {
        let (channel, reference) = (channel.to_owned(), reference.to_owned());
        self.db
            .read(move |conn| {
                let mut found = rows(
                    conn,
                    shared::JOB_BY_REFERENCE,
                    named_params! {":reference": reference, ":channel": channel},
                    |r| job_from(r),
                )?;
                Ok(match found.len() {
                    1 => found.pop(),
                    _ => None,
                })
            })
            .await
    }

    async fn evidence(&self, transaction_id: &str) -> Result<Vec<EvidenceEntry>, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |conn| {
                rows(
                    conn,
                    shared::EVIDENCE_OF,
                    named_params! {":transaction_id": transaction_id},
                    |r| kernel::evidence_from(r),
                )
            })
            .await
    }

    async fn history(&self, transaction_id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let transaction_id = transaction_id.to_owned();
        self.db
            .read(move |conn| {
                rows(
                    conn,
                    shared::HISTORY,
                    named_params! {":transaction_id": transaction_id},
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
                    shared::RETRY,
                    named_params! {":now": now_ms(), ":transaction_id": transaction_id, ":channel": channel},
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
                let this = named_params! {":transaction_id": transaction_id};
                exec(
                    conn,
                    shared::VOID,
                    named_params! {":transaction_id": transaction_id, ":now": now},
                )?;
                let delivered_channels: Vec<String> = rows(
                    conn,
                    shared::DELIVERED_CHANNELS,
                    this,
                    |row| Ok(row.get(0)?),
                )?;
                let cancelled: Vec<String> = rows(
                    conn,
                    shared::CANCEL_PENDING,
                    named_params! {":transaction_id": transaction_id, ":now": now},
                    |row| Ok(row.get(0)?),
                )?;
                history(
                    conn,
                    &transaction_id,
                    None,
                    "voided",
                    &kernel::voided_line(&cancelled),
                )?;
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
                let Some(source) = kernel::Source::of(&query) else {
                    return Ok(Vec::new());
                };
                let window = kernel::Window::of(&query);
                let (search, email) = kernel::search_of(&query);
                let found = rows(
                    conn,
                    shared::dispatches(source),
                    named_params! {
                        ":channel": query.channel,
                        ":state": query.delivery_state.map(|s| s.as_str()),
                        ":retried": i64::from(query.retried),
                        ":troubled": i64::from(query.troubled),
                        ":search": search,
                        ":email": email,
                        ":created_from": window.from,
                        ":until": window.until,
                        ":after_at": window.after_at,
                        ":after_id": window.after_id,
                        ":limit": query.limit,
                    },
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

    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let entry = entry.clone();
        self.db
            .write(move |conn| {
                exec(
                    conn,
                    shared::RECORD_AUDIT,
                    named_params! {
                        ":at": entry.at,
                        ":user_name": kernel::storable(&entry.user),
                        ":action": kernel::storable(&entry.action),
                        ":target": kernel::storable(&entry.target),
                        ":result": kernel::storable(&entry.result),
                    },
                )
                .map(drop)
            })
            .await
    }

    async fn audit_log(
        &self,
        before: Option<Millis>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let Some(skip) = limit.checked_sub(1) else {
            return Ok(Vec::new());
        };
        self.db
            .read(move |conn| {
                rows(
                    conn,
                    shared::AUDIT_LOG,
                    named_params! {":before": before, ":skip": skip},
                    |r| kernel::audit_from(r),
                )
            })
            .await
    }

    async fn prune(&self, before: Millis) -> Result<u64, StoreError> {
        let pruned = self
            .db
            .write(move |conn| {
                let ids = rows(
                    conn,
                    shared::PRUNABLE,
                    named_params! {":before": before},
                    |row| Ok(row.get::<_, String>(0)?),
                )?;
                let now = now_ms();
                for id in &ids {
                    for statement in shared::PRUNE {
                        if statement.contains(":now") {
                            exec(
                                conn,
                                statement,
                                named_params! {":transaction_id": id, ":now": now},
                            )?;
                        } else {
                            exec(conn, statement, named_params! {":transaction_id": id})?;
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
                    shared::SET_META,
                    named_params! {":key": key, ":value": value},
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
                    shared::META_INIT,
                    named_params! {":key": key, ":value": value},
                )?;
                Ok(meta(conn, &key)?.unwrap_or(value))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database of schema 8 (before the console) gets the search's keys of the invoices it
    /// routed from their snapshots, and an audit log; a pruned invoice gets none.
    #[tokio::test]
    async fn a_schema_8_database_gets_the_search_keys_of_what_it_holds() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("postbud.db");
        {
            let conn = Connection::open(&path).expect("open");
            for migration in &migrations(Dialect::Sqlite)[..8] {
                conn.execute_batch(migration).expect("schema 8");
            }
            conn.execute_batch(crate::schema::SCHEMA_8_ROWS)
                .expect("rows");
            conn.execute_batch("PRAGMA user_version = 8")
                .expect("version");
        }
        let store = SqliteStore::open(&format!("sqlite://{}", path.display()))
            .await
            .expect("migrated");
        crate::schema::assert_schema_8_migrated(&store).await;
    }

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
