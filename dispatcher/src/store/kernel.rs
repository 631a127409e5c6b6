//! What both stores do the same way, written once: reading a row into a [`Job`] or a
//! [`Dispatch`], what a [`Finish`] does to a job and the history line it writes. Each backend
//! keeps only its execution (SQLite's writer thread, PostgreSQL's pool) and the statements
//! where the dialects really differ.

use super::{
    CensusRow, Counts, Dispatch, Finish, Job, JobKind, JobState, Lease, Millis, Pdf, Role, Stage,
    StoreError, Totals, fmt_ms,
};

/// A stored name read back as its enum; a name no version wrote is a database error.
pub(super) fn parse<T>(
    what: &str,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parse(name).ok_or_else(|| StoreError::Database(format!("unknown {what} {name}")))
}

/// Requeues a transaction's failed, dead-lettered or waiting jobs (of one channel, or all) to
/// run now, except deliveries of a voided invoice. Parameters: now, transaction, channel or
/// NULL. Numbered placeholders read the same in SQLite and PostgreSQL.
pub(super) const RETRY: &str = "UPDATE jobs SET state = 'queued', next_at = $1, attempts = 0, updated_at = $1
     WHERE transaction_id = $2 AND state IN ('failed', 'dead', 'queued')
       AND (CAST($3 AS TEXT) IS NULL OR channel = $3)
       AND (kind = 'cancel' OR NOT EXISTS (SELECT 1 FROM dispatches d WHERE d.transaction_id = jobs.transaction_id AND d.stage = 'voided'))";

/// Adopts a capture made elsewhere (see [`super::Store::adopt_capture`]). Parameters: now,
/// transaction.
/// Only a dispatch the engine stopped for that reason (the reason begins with
/// `engine::COLLECTION_STARTED_ELSEWHERE`, checked by a test) is adopted.
pub(super) const ADOPT_CAPTURE: &str =
    "UPDATE dispatches SET captured_at = $1, stage = 'captured', reason = NULL, updated_at = $1
     WHERE transaction_id = $2 AND stage = 'failed' AND captured_at IS NULL
       AND reason LIKE 'collection was started elsewhere%'";

#[cfg(test)]
#[test]
fn adopting_looks_for_the_reason_the_engine_writes() {
    assert!(ADOPT_CAPTURE.contains(&format!(
        "'{}%'",
        crate::engine::COLLECTION_STARTED_ELSEWHERE
    )));
}

/// Queues a stopped dispatch job again, as new. Parameters: now, the job's id.
pub(super) const REQUEUE_DISPATCH: &str = "UPDATE jobs SET state = 'queued', next_at = $1, attempts = 0, last_error = NULL, fence = fence + 1, lease_owner = NULL, lease_until = NULL, updated_at = $1
     WHERE id = $2 AND state IN ('failed', 'dead', 'skipped')";

/// One history line. Parameters: transaction, job or NULL, time, event, detail.
pub(super) const HISTORY: &str =
    "INSERT INTO history (transaction_id, job_id, at, event, detail) VALUES ($1, $2, $3, $4, $5)";

/// Takes the turn `name` for `owner` until a time, unless another holds it past now.
/// Parameters: name, owner, until, now.
pub(super) const TAKE_TURN: &str = "INSERT INTO turns (name, owner, until) VALUES ($1, $2, $3)
     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until
     WHERE turns.until <= $4";

/// Everything the store's counts are made of, in one statement and so one snapshot. Rows
/// `(part, name, active, troubled, n)`:
/// - `tally`: the kept counts (see [`super::schema`]), one row per name;
/// - `unsettled`: the census of the dispatches the tallies leave out, those at an unsettled
///   stage or with a job queued, running, failed or dead, by stage and whether a job is active
///   or troubled (1 or 0);
/// - `open`: the jobs in the states the tallies leave out, by state.
///
/// Each part is read through its own index; how many rows it reads grows with the queue and
/// the failures, never with the history.
pub(super) fn count_parts() -> String {
    format!(
        "WITH counted AS (
        SELECT transaction_id FROM dispatches WHERE stage IN {unsettled}
        UNION SELECT transaction_id FROM jobs WHERE state = 'queued'
        UNION SELECT transaction_id FROM jobs WHERE state = 'running'
        UNION SELECT transaction_id FROM jobs WHERE state IN ('failed', 'dead'))
     SELECT 'tally' AS part, name, CAST(NULL AS BIGINT) AS active, CAST(NULL AS BIGINT) AS troubled,
       CAST(SUM(count) AS BIGINT) AS n
     FROM tallies GROUP BY name
     UNION ALL
     SELECT 'unsettled', d.stage,
       CAST(CASE WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id AND j.state IN ('queued', 'running')) THEN 1 ELSE 0 END AS BIGINT),
       CAST(CASE WHEN EXISTS (SELECT 1 FROM jobs j WHERE j.transaction_id = d.transaction_id AND j.state IN ('failed', 'dead')) THEN 1 ELSE 0 END AS BIGINT),
       CAST(COUNT(*) AS BIGINT)
     FROM counted JOIN dispatches d ON d.transaction_id = counted.transaction_id
     GROUP BY 2, 3, 4
     UNION ALL SELECT 'open', 'queued', NULL, NULL, CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state = 'queued'
     UNION ALL SELECT 'open', 'running', NULL, NULL, CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state = 'running'
     UNION ALL SELECT 'open', state, NULL, NULL, CAST(COUNT(*) AS BIGINT) FROM jobs WHERE state IN ('failed', 'dead') GROUP BY state",
        // The same list the partial index `dispatches_unsettled` is written with, so the
        // planner can use it.
        unsettled = super::schema::UNSETTLED
    )
}

/// Everything the store's counts are made of, read in one snapshot: the tallies, the census
/// of what they leave out, and the open jobs by state.
#[derive(Debug, Default)]
pub(super) struct CountParts {
    tallies: Vec<(String, i64)>,
    unsettled: Vec<CensusRow>,
    open_jobs: Vec<(String, i64)>,
}

impl CountParts {
    /// Adds a row [`count_parts`] returned.
    pub(super) fn add(&mut self, row: &impl Columns) -> Result<(), StoreError> {
        let (name, n) = (row.text("name")?, row.int("n")?);
        match row.text("part")?.as_str() {
            "tally" => self.tallies.push((name, n)),
            "open" => self.open_jobs.push((name, n)),
            "unsettled" => self.unsettled.push(CensusRow {
                stage: parse("dispatch stage", &name, Stage::parse)?,
                active: row.int("active")? != 0,
                troubled: row.int("troubled")? != 0,
                count: n.max(0) as u64,
            }),
            other => {
                return Err(StoreError::Database(format!(
                    "unknown part {other} of the counts"
                )));
            }
        }
        Ok(())
    }

    fn tally(&self, name: &str) -> u64 {
        let found = self.tallies.iter().find(|(n, _)| n == name);
        found.map_or(0, |(_, count)| (*count).max(0) as u64)
    }

    /// The counts these parts make.
    pub(super) fn counts(&self) -> Result<Counts, StoreError> {
        let census = self.census()?;
        let totals = self.totals(&census);
        Ok(Counts { census, totals })
    }

    /// Dispatches by stage, with or without active and troubled jobs: the unsettled census,
    /// and for each settled stage its tally less the dispatches the census already counted.
    fn census(&self) -> Result<Vec<CensusRow>, StoreError> {
        let mut census = self.unsettled.clone();
        for (name, tallied) in &self.tallies {
            let Some(stage) = name.strip_prefix("stage:") else {
                continue;
            };
            let stage = parse("dispatch stage", stage, Stage::parse)?;
            let counted: u64 = (self.unsettled.iter())
                .filter(|row| row.stage == stage)
                .map(|row| row.count)
                .sum();
            // Only settled stages are tallied, and a dispatch at one with an open job is in
            // the census already.
            let rest = ((*tallied).max(0) as u64).saturating_sub(counted);
            if rest > 0 {
                census.push(CensusRow {
                    stage,
                    active: false,
                    troubled: false,
                    count: rest,
                });
            }
        }
        Ok(census)
    }

    /// The counts `/healthz` and `/metrics` show.
    fn totals(&self, census: &[CensusRow]) -> Totals {
        let open = |state: &str| {
            let found = self.open_jobs.iter().find(|(s, _)| s == state);
            found.map_or(0, |(_, count)| (*count).max(0) as u64)
        };
        let skipped = (self.tallies.iter())
            .filter(|(name, _)| name.starts_with("job:") && name.ends_with(":skipped"))
            .map(|(_, count)| (*count).max(0) as u64)
            .sum();
        Totals {
            dispatches: census.iter().map(|row| row.count).sum(),
            queued: open("queued"),
            in_flight: open("running"),
            delivered: self.tally("job:deliver:done"),
            failed: open("failed"),
            dead: open("dead"),
            skipped,
        }
    }
}

/// The history line of a PDF kept before the capture.
pub(super) fn pdf_note(pdf: &Pdf) -> String {
    format!(
        "{} ({} bytes, sha256 {})",
        pdf.file_name,
        pdf.bytes.len(),
        pdf.sha256
    )
}

/// The history line of an operator's retry that requeued `count` jobs.
pub(super) fn retry_note(count: u64) -> String {
    format!("{count} job(s) requeued by an operator")
}

/// A result row, whichever driver read it: a column is text or an integer, or NULL.
pub(super) trait Columns {
    fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError>;

    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.text_opt(column)?.ok_or_else(|| null(column))
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.int_opt(column)?.ok_or_else(|| null(column))
    }
}

fn null(column: &str) -> StoreError {
    StoreError::Database(format!(
        "column {column} is NULL where the schema forbids it"
    ))
}

/// The dispatch columns a claim returns beside a dispatch job's own, each named
/// `dispatch_<column>` ([`dispatch_of_claim`] reads them back).
#[cfg(feature = "postgres")]
pub(super) fn dispatch_columns(table: &str) -> String {
    const COLUMNS: [&str; 15] = [
        "transaction_id",
        "stage",
        "reason",
        "capture_reference",
        "capture_request_id",
        "captured_at",
        "invoice_number",
        "route",
        "origin",
        "void_request_id",
        "pruned_at",
        "pdf_sha256",
        "route_snapshot",
        "created_at",
        "updated_at",
    ];
    let named: Vec<String> = COLUMNS
        .iter()
        .map(|c| format!("{table}.{c} AS dispatch_{c}"))
        .collect();
    named.join(", ")
}

/// The dispatch a claim returned with a dispatch job ([`dispatch_columns`]); `None` for any
/// other job.
#[cfg(feature = "postgres")]
pub(super) fn dispatch_of_claim(row: &impl Columns) -> Result<Option<Dispatch>, StoreError> {
    /// A row's `dispatch_`-named columns under their own names.
    struct Prefixed<'a, C>(&'a C);
    impl<C: Columns> Columns for Prefixed<'_, C> {
        fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError> {
            self.0.text_opt(&format!("dispatch_{column}"))
        }
        fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError> {
            self.0.int_opt(&format!("dispatch_{column}"))
        }
    }
    match row.text_opt("dispatch_transaction_id")? {
        Some(_) => dispatch_from(&Prefixed(row)).map(Some),
        None => Ok(None),
    }
}

pub(super) fn job_from(row: &impl Columns) -> Result<Job, StoreError> {
    Ok(Job {
        id: row.text("id")?,
        transaction_id: row.text("transaction_id")?,
        kind: parse("job kind", &row.text("kind")?, JobKind::parse)?,
        channel: row.text_opt("channel")?,
        role: match row.text_opt("role")? {
            Some(role) => Some(parse("job role", &role, Role::parse)?),
            None => None,
        },
        state: parse("job state", &row.text("state")?, JobState::parse)?,
        attempts: row.int("attempts")? as u32,
        next_at: row.int("next_at")?,
        fence: row.int("fence")?,
        last_error: row.text_opt("last_error")?,
        receipt: row.text_opt("receipt")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(super) fn dispatch_from(row: &impl Columns) -> Result<Dispatch, StoreError> {
    Ok(Dispatch {
        transaction_id: row.text("transaction_id")?,
        stage: parse("dispatch stage", &row.text("stage")?, Stage::parse)?,
        reason: row.text_opt("reason")?,
        capture_reference: row.text_opt("capture_reference")?,
        capture_request_id: row.text_opt("capture_request_id")?,
        captured_at: row.int_opt("captured_at")?,
        invoice_number: row.text_opt("invoice_number")?,
        route: row.int_opt("route")?.map(|r| r as usize),
        origin: row.text_opt("origin")?,
        void_request_id: row.text_opt("void_request_id")?,
        pruned_at: row.int_opt("pruned_at")?,
        pdf_sha256: row.text_opt("pdf_sha256")?,
        route_snapshot: row.text_opt("route_snapshot")?,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

/// The refusal of a write made under a lease that is no longer held.
pub(super) fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost(lease.job.id.clone())
}

/// What finishing an attempt writes: the job's new state and due time, the error or receipt it
/// keeps, the correction to its attempt count, and the history line.
#[derive(Debug)]
pub(super) struct FinishPlan {
    pub state: JobState,
    pub next_at: Millis,
    pub error: Option<String>,
    pub receipt: Option<String>,
    /// Waiting for a send window is not an attempt, though the claim counted one.
    pub attempt_delta: i64,
    pub event: &'static str,
    pub detail: String,
}

impl FinishPlan {
    /// The plan for `finish` of the attempt `lease` holds, at `now`; `None` when the attempt
    /// recorded its end itself ([`Finish::Recorded`]).
    pub(super) fn of(lease: &Lease, finish: &Finish, now: Millis) -> Option<Self> {
        let (state, next_at, event) = match finish {
            Finish::Done(_) => (JobState::Done, now, "done"),
            Finish::Retry { at, .. } => (JobState::Queued, *at, "retry"),
            Finish::Postpone(at) => (JobState::Queued, *at, "postponed"),
            Finish::Failed(_) => (JobState::Failed, now, "failed"),
            Finish::Dead(_) => (JobState::Dead, now, "dead"),
            Finish::Skipped(_) => (JobState::Skipped, now, "skipped"),
            Finish::Recorded => return None,
        };
        let (error, receipt) = match finish {
            Finish::Done(receipt) => (None, Some(receipt.clone())),
            Finish::Retry { error, .. }
            | Finish::Failed(error)
            | Finish::Dead(error)
            | Finish::Skipped(error) => (Some(error.clone()), None),
            Finish::Postpone(_) | Finish::Recorded => (None, None),
        };
        let said = match finish {
            Finish::Postpone(at) => format!("until {}", fmt_ms(*at)),
            _ => error.clone().or(receipt.clone()).unwrap_or_default(),
        };
        let event = match (lease.job.kind, event) {
            (JobKind::Deliver, "done") => "delivered",
            (JobKind::Cancel, "done") => "cancellation sent",
            (_, e) => e,
        };
        let detail = match &lease.job.channel {
            Some(channel) => format!("[{channel}] attempt {}: {said}", lease.job.attempts),
            None => format!("attempt {}: {said}", lease.job.attempts),
        };
        Some(Self {
            state,
            next_at,
            error,
            receipt,
            attempt_delta: if matches!(finish, Finish::Postpone(_)) {
                -1
            } else {
                0
            },
            event,
            detail,
        })
    }
}
