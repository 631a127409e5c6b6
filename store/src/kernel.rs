//! What both stores do the same way, written once: reading a row into a [`Job`] or a
//! [`Dispatch`], what a [`Finish`] does to a job and the history line it writes. Each backend
//! keeps only its execution (SQLite's writer thread, PostgreSQL's pool) and the statements
//! where the dialects really differ.

use super::{
    AuditEntry, CensusRow, Completion, Counts, Dispatch, DispatchQuery, EvidenceEntry, Finish, Job,
    JobKind, JobState, Lease, Millis, NewEvidence, NewJob, Pdf, Role, Stage, StoreError,
    StoreErrorKind, Totals, fmt_ms,
};
use postbud_channel::{EvidenceState, Invoice};

/// A stored name read back as its enum; a name no version wrote is a database error.
pub(super) fn parse<T>(
    what: &str,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    parse(name).ok_or_else(|| StoreError::corrupt(format!("unknown {what} {name}")))
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
    /// Adds a row of `sql/shared/counts.sql`.
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
                return Err(StoreError::corrupt(format!(
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

/// Where a listing of dispatches ([`super::Store::dispatches`]) reads them from: the index of
/// its narrowest filter, or every dispatch newest first. Whichever it is, every filter of the
/// query still applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    /// Every dispatch, newest first (`dispatches_created`): a filter most invoices pass.
    All,
    /// Those with a job failed for good (`jobs_troubled`).
    Troubled,
    /// Those with a delivery or notice in this state, one of the few a store holds at once
    /// (`jobs_due` on SQLite; PostgreSQL's partial indexes of each state).
    State(&'static str),
    /// Those a search names (the dispatches' own indexes of each key).
    Search,
}

impl Source {
    /// Every source, each one statement.
    pub(crate) const ALL: [Source; 8] = [
        Self::All,
        Self::Troubled,
        Self::State("queued"),
        Self::State("running"),
        Self::State("failed"),
        Self::State("dead"),
        Self::State("cancelled"),
        Self::Search,
    ];

    /// The source of `query`: its narrowest filter's index; `None` when nothing can match (a
    /// delivery is never `skipped`: that state is a dispatch job's).
    pub(crate) fn of(query: &DispatchQuery) -> Option<Self> {
        if search_of(query).0.is_some() {
            return Some(Self::Search);
        }
        if query.troubled {
            return Some(Self::Troubled);
        }
        match query.delivery_state {
            Some(JobState::Skipped) => return None,
            Some(JobState::Done) | None => {}
            Some(state) => return Some(Self::State(state.as_str())),
        }
        // Invoices tried more than once are walked newest first, each looked up in
        // `jobs_retried`: a retry is common (greylisting, a 503), and at 1 % of a million
        // the walk read a page in 8 ms where sorting the 10,000 from the index took 40 to 90.
        Some(Self::All)
    }
}

/// A search as the listing binds it: trimmed, and lowercased as the customer's emails are kept
/// ([`email_key`]); `None` for nothing to search.
pub(crate) fn search_of(query: &DispatchQuery) -> (Option<String>, Option<String>) {
    match query.search.as_deref().map(str::trim) {
        // As the keys were kept ([`storable`]): a NUL, which PostgreSQL refuses to bind as
        // text, matches nothing instead of failing the page.
        Some(text) if !text.is_empty() => (Some(storable(text)), Some(email_key(&storable(text)))),
        _ => (None, None),
    }
}

/// The window and cursor of a listing as bound: the whole range where the query sets none.
pub(crate) struct Window {
    /// The earliest `created_at` listed.
    pub(crate) from: Millis,
    /// The latest `created_at` listed: the window's end, or the cursor's, whichever is first.
    pub(crate) until: Millis,
    pub(crate) after_at: Millis,
    pub(crate) after_id: String,
}

impl Window {
    pub(crate) fn of(query: &DispatchQuery) -> Self {
        let (after_at, after_id) = query.after.clone().unwrap_or((Millis::MAX, String::new()));
        let end = query
            .created_before
            .map_or(Millis::MAX, |b| b.saturating_sub(1));
        Self {
            from: query.created_from.unwrap_or(Millis::MIN),
            until: end.min(after_at),
            after_at,
            after_id,
        }
    }
}

/// How a customer's email is kept for the search: ASCII lowercase, as the migration that filled
/// the column for invoices routed before it did with SQL's `lower`.
pub(crate) fn email_key(email: &str) -> String {
    email.trim().to_ascii_lowercase()
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

/// The history line of a job queued.
pub(super) fn queued_line(job: &NewJob) -> String {
    format!(
        "[{}] {} ({}) due {}",
        job.channel,
        job.kind,
        job.role,
        fmt_ms(job.next_at)
    )
}

/// The history line of a void Dintero accepted with 202.
pub(super) fn void_accepted_line(request_id: Option<&str>) -> String {
    format!(
        "Dintero accepted the void (202, event-request-id {}); waiting for its VOID event",
        request_id.unwrap_or("not given")
    )
}

/// The history line of a void recorded.
pub(super) fn voided_line(cancelled: &[String]) -> String {
    format!("{} pending job(s) stopped", cancelled.len())
}

/// What a completed dispatch keeps ([`super::Store::complete_dispatch`]), ready to bind.
pub(super) struct Snapshot {
    /// The invoice snapshot as JSON (its PDF is kept apart).
    pub(super) json: String,
    pub(super) invoice_number: String,
    /// The merchant's reference, as the search looks it up.
    pub(super) merchant_reference: Option<String>,
    /// The customer's email as the search looks it up ([`email_key`]).
    pub(super) customer_email: Option<String>,
    pub(super) route: i64,
    pub(super) route_snapshot: String,
    /// The PDF after the capture.
    pub(super) pdf: Pdf,
    /// The dispatch job's receipt.
    pub(super) receipt: String,
    /// The dispatch job's last history line.
    pub(super) done_line: String,
}

impl Snapshot {
    pub(super) fn of(lease: &Lease, completion: &Completion<'_>) -> Result<Self, StoreError> {
        let invoice = completion.invoice;
        let json = serde_json::to_string(invoice).map_err(|e| {
            StoreError::new(StoreErrorKind::Invalid, format!("invoice snapshot: {e}"))
                .with_source(e)
        })?;
        Ok(Self {
            json,
            invoice_number: invoice.invoice_number.clone(),
            merchant_reference: invoice.merchant_reference.as_deref().map(storable),
            customer_email: (invoice.customer.email.as_deref())
                .map(|email| email_key(&storable(email))),
            route: completion.route.index as i64,
            route_snapshot: completion.route.snapshot.clone(),
            pdf: invoice.pdf.clone(),
            receipt: storable(completion.detail),
            done_line: format!(
                "attempt {}: {}",
                lease.job.attempts,
                storable(completion.detail)
            ),
        })
    }
}

/// `text` as every backend can keep it: a NUL (which a receiver may put in the answer quoted
/// in a receipt or an error) is refused by PostgreSQL's text columns, and an end that cannot be
/// written would be attempted, and delivered, again. It is kept as U+2400 (␀), visibly.
pub(super) fn storable(text: &str) -> String {
    text.replace('\0', "\u{2400}")
}

/// The invoice kept for `transaction_id`: its snapshot (`json`) with its PDF.
pub(super) fn invoice_from(
    transaction_id: &str,
    json: &str,
    pdf: Option<Pdf>,
) -> Result<Invoice, StoreError> {
    let mut invoice: Invoice = serde_json::from_str(json)
        .map_err(|e| StoreError::corrupt(format!("invoice snapshot: {e}")).with_source(e))?;
    invoice.pdf = pdf.ok_or_else(|| {
        StoreError::corrupt(format!("invoice {transaction_id} has no stored PDF"))
    })?;
    Ok(invoice)
}

/// A result row, whichever driver read it: a column is text or an integer, or NULL.
pub(super) trait Columns {
    fn text_opt(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int_opt(&self, column: &str) -> Result<Option<i64>, StoreError>;
    fn blob_opt(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError>;

    fn text(&self, column: &str) -> Result<String, StoreError> {
        self.text_opt(column)?.ok_or_else(|| null(column))
    }

    fn int(&self, column: &str) -> Result<i64, StoreError> {
        self.int_opt(column)?.ok_or_else(|| null(column))
    }
}

fn null(column: &str) -> StoreError {
    StoreError::corrupt(format!(
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
        fn blob_opt(&self, column: &str) -> Result<Option<Vec<u8>>, StoreError> {
            self.0.blob_opt(&format!("dispatch_{column}"))
        }
    }
    match row.text_opt("dispatch_transaction_id")? {
        Some(_) => dispatch_from(&Prefixed(row)).map(Some),
        None => Ok(None),
    }
}

/// Whether evidence about a job in `state` must wait for its attempt to end ("not yet"): while
/// it runs, and while it waits for another attempt, unless its last one may have reached the
/// sink unknown to Postbud, which the sink's report settles at once.
pub(super) fn evidence_waits(state: &str, outcome_unknown: bool) -> bool {
    state == "running" || (state == "queued" && !outcome_unknown)
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
        reference: row.text_opt("reference")?,
        evidence: row.text_opt("evidence")?,
        outcome_unknown: row.int("outcome_unknown")? != 0,
        resends: row.int("resends")? as u32,
        created_at: row.int("created_at")?,
        updated_at: row.int("updated_at")?,
    })
}

pub(super) fn audit_from(row: &impl Columns) -> Result<AuditEntry, StoreError> {
    Ok(AuditEntry {
        at: row.int("at")?,
        user: row.text("user_name")?,
        action: row.text("action")?,
        target: row.text("target")?,
        result: row.text("result")?,
    })
}

pub(super) fn evidence_from(row: &impl Columns) -> Result<EvidenceEntry, StoreError> {
    Ok(EvidenceEntry {
        job_id: row.text("job_id")?,
        event_id: row.text("event_id")?,
        state: row.text("state")?,
        reporter: row.text("reporter")?,
        reason: row.text("reason")?,
        payload: row.blob_opt("payload")?,
        reported_at: row.int_opt("reported_at")?,
        recorded_at: row.int("recorded_at")?,
    })
}

/// [`NewEvidence`] owned, for a write that runs on another thread (SQLite's writer), with its
/// history event.
#[derive(Debug, Clone)]
pub(super) struct OwnedEvidence {
    pub job_id: String,
    pub transaction_id: String,
    pub event_id: String,
    pub state: EvidenceState,
    pub reporter: String,
    pub reason: String,
    pub payload: Vec<u8>,
    pub reported_at: Option<Millis>,
    pub fails: Option<OwnedFailure>,
    /// `evidence: <state>`.
    pub event: String,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub(super) struct OwnedFailure {
    pub error: String,
    pub then: Vec<NewJob>,
    pub then_detail: String,
}

impl OwnedEvidence {
    pub(super) fn of(e: &NewEvidence<'_>) -> Self {
        Self {
            job_id: e.job_id.to_owned(),
            transaction_id: e.transaction_id.to_owned(),
            event_id: storable(e.event_id),
            state: e.state,
            reporter: storable(e.reporter),
            reason: storable(e.reason),
            payload: e.payload.to_vec(),
            reported_at: e.reported_at,
            fails: e.fails.as_ref().map(|f| OwnedFailure {
                error: storable(f.error),
                then: f.then.to_vec(),
                then_detail: storable(f.then_detail),
            }),
            event: format!("evidence: {}", e.state),
            detail: storable(e.detail),
        }
    }
}

/// The rank of an evidence state in `shared/evidence_advances_job.sql`: the job keeps the
/// highest reported.
pub(super) fn evidence_rank(state: EvidenceState) -> i64 {
    match state {
        EvidenceState::Accepted => 1,
        EvidenceState::Delayed => 2,
        EvidenceState::Delivered => 3,
        EvidenceState::Opened => 4,
        _ => 5,
    }
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
    StoreError::lease_lost(&lease.job.id)
}

/// `Ok` when a statement guarded by `lease` (its job, fence and `running` state) changed its
/// one row; a lost lease otherwise.
pub(super) fn held(changed: u64, lease: &Lease) -> Result<(), StoreError> {
    match changed {
        1 => Ok(()),
        _ => Err(lease_lost(lease)),
    }
}

/// What finishing an attempt writes: the job's new state and due time, the error or receipt it
/// keeps, the correction to its attempt count, and the history line.
#[derive(Debug)]
pub(super) struct FinishPlan {
    pub state: JobState,
    pub next_at: Millis,
    pub error: Option<String>,
    pub receipt: Option<String>,
    /// The sink's own id for what it accepted, or may have.
    pub reference: Option<String>,
    /// 1 when the sink may have what this attempt sent without Postbud knowing, else 0.
    pub outcome_unknown: i64,
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
            Finish::Done(_) | Finish::DoneWith { .. } => (JobState::Done, now, "done"),
            Finish::Retry { at, .. } => (JobState::Queued, *at, "retry"),
            Finish::Postpone(at) => (JobState::Queued, *at, "postponed"),
            Finish::Failed(_) => (JobState::Failed, now, "failed"),
            Finish::Dead(_) | Finish::Unknown { .. } => (JobState::Dead, now, "dead"),
            Finish::Skipped(_) => (JobState::Skipped, now, "skipped"),
            Finish::Recorded => return None,
        };
        let (error, receipt) = match finish {
            Finish::Done(receipt) | Finish::DoneWith { receipt, .. } => {
                (None, Some(storable(receipt)))
            }
            Finish::Retry { error, .. }
            | Finish::Failed(error)
            | Finish::Dead(error)
            | Finish::Unknown { error, .. }
            | Finish::Skipped(error) => (Some(storable(error)), None),
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
            reference: match finish {
                Finish::DoneWith { reference, .. }
                | Finish::Unknown {
                    reference: Some(reference),
                    ..
                }
                | Finish::Retry {
                    reference: Some(reference),
                    ..
                } => Some(storable(reference)),
                _ => None,
            },
            // Once the sink may have it, only a success clears the mark: a later attempt that
            // never reached the sink (a closed window, a refused connection) knows no more.
            outcome_unknown: i64::from(
                matches!(
                    finish,
                    Finish::Unknown { .. }
                        | Finish::Retry {
                            reference: Some(_),
                            ..
                        }
                ) || (lease.job.outcome_unknown
                    && !matches!(finish, Finish::Done(_) | Finish::DoneWith { .. })),
            ),
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

#[cfg(test)]
mod tests {
    use super::storable;

    #[test]
    fn a_nul_is_kept_visibly_not_refused() {
        assert_eq!(storable("HTTP 200: ok\0tail"), "HTTP 200: ok\u{2400}tail");
        assert_eq!(storable("plain"), "plain");
    }
}
