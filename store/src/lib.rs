//! Postbud's durable outbox and history.
//!
//! Every unit of work is a *job*: one `dispatch` per transaction (eligibility, PDF, capture,
//! routing), one `deliver` per (transaction, channel instance), one `cancel` per delivered
//! instance after a void. Jobs are claimed with a lease; each claim bumps the job's *fence*, and
//! every write made under a claim checks it, so a worker whose lease lapsed cannot overwrite
//! the work of the one that rescued the job.
//!
//! [`Store`] is the outbox's contract; [`open`] opens the store a URL names:
//! `sqlite://FILE` (`SqliteStore`, feature `sqlite`, a default: one file, one writer thread
//! that batches the writes, a checkpointer) or `postgres://…` (`PgStore`, feature
//! `postgres`: several instances on one database, woken by `LISTEN`). Both run the statements
//! in this crate's `sql/` folder, shared where the dialects agree.
//!
//! Errors are [`StoreError`]s: what happened ([`StoreErrorKind`]), whether trying again may
//! help ([`StoreError::is_temporary`]), and the driver's error as the source.
//!
//! A backend of another database keeps the same contract: the feature `testkit` brings
//! `testkit::check`, which runs every case of it on stores the backend makes.
#![warn(missing_docs)]

pub mod clock;
mod error;
// What the backends share; a build with neither (a third backend's, using the types and the
// test kit alone) leaves it unused.
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod kernel;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod schema;
#[cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::{fmt, sync::Arc, time::Duration};

use serde::Serialize;

pub use self::error::{StoreError, StoreErrorKind};
#[cfg(feature = "postgres")]
pub use self::postgres::PgStore;
#[cfg(feature = "sqlite")]
pub use self::sqlite::SqliteStore;

/// A store time as RFC 3339.
pub fn fmt_ms(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

/// The error for a store URL whose backend this build of `postbud` left out.
#[cfg_attr(all(feature = "sqlite", feature = "postgres"), allow(dead_code))]
fn not_built(url: &str, feature: &str) -> StoreError {
    StoreError::missing(format!(
        "store.url `{}` needs the `{feature}` feature of postbud, which this build leaves out: \
         `postbud = {{ version = \"…\", features = [\"{feature}\"] }}` in Cargo.toml",
        postbud_channel::http::redact_url(url)
    ))
}

fn is_postgres(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// A URL of a scheme no backend has (a typo such as `postgre://user:password@db/x`): refused,
/// and named without its password, instead of being taken for a SQLite file's path and quoted
/// whole in the errors that follow.
fn unknown_scheme(url: &str) -> Option<StoreError> {
    let (scheme, _) = url.split_once("://")?;
    (!matches!(scheme, "sqlite" | "postgres" | "postgresql")).then(|| {
        StoreError::new(
            StoreErrorKind::Misconfigured,
            format!(
                "store.url `{}` names no store: expected sqlite://FILE or postgres://…",
                postbud_channel::http::redact_url(url)
            ),
        )
    })
}

/// The file a `sqlite://FILE[?options]` (or `sqlite:FILE`) URL names; `None` for other URLs.
fn sqlite_file(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    rest.split('?').next()
}

/// Opens the store `url` names, but never creates one: for commands that only read or act on
/// what is there (`status`, `retry`, `void`), where a new empty store would only hide a
/// configuration that points at the wrong place.
pub async fn open_existing(
    url: &str,
    local: clock::LocalClock,
) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(file) = sqlite_file(url)
        && !file.is_empty()
        && !std::path::Path::new(file).exists()
    {
        return Err(StoreError::missing(format!(
            "there is no store at `{file}` (`postbud serve`, `deliver` and `migrate` create it): is this the configuration, and the store.url, you meant?"
        )));
    }
    open_with_clock(url, local).await
}

/// What `postbud check` says of the store `url` names, without creating, migrating or
/// otherwise changing it: a SQLite file's presence and header, PostgreSQL's reachability and
/// schema version.
pub async fn probe(url: &str) -> Result<String, StoreError> {
    if let Some(refused) = unknown_scheme(url) {
        return Err(refused);
    }
    if is_postgres(url) {
        #[cfg(feature = "postgres")]
        return postgres::probe(url).await;
        #[cfg(not(feature = "postgres"))]
        return Err(not_built(url, "postgres"));
    }
    let file = sqlite_file(url).unwrap_or(url);
    let path = std::path::Path::new(file);
    if !path.exists() {
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."));
        if !parent.is_dir() {
            return Err(StoreError::missing(format!(
                "`{file}` cannot be created: its directory `{}` does not exist",
                parent.display()
            )));
        }
        return Ok(format!(
            "`{file}` does not exist yet: `postbud serve`, `deliver` or `migrate` creates it"
        ));
    }
    let mut header = [0u8; 16];
    let read = std::fs::File::open(path).and_then(|mut f| {
        use std::io::Read as _;
        f.read_exact(&mut header)
    });
    match read {
        Ok(()) if &header == b"SQLite format 3\0" => Ok(format!("`{file}` is a SQLite database")),
        Ok(()) => Err(StoreError::new(
            StoreErrorKind::Misconfigured,
            format!("`{file}` is not a SQLite database"),
        )),
        Err(e) => Err(
            StoreError::new(StoreErrorKind::Unavailable, format!("`{file}`: {e}")).with_source(e),
        ),
    }
}

/// Opens the store `url` names: `sqlite://FILE` or `postgres://...`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_with_clock(url, clock::system()).await
}

/// [`open`], with this process's clock given: a store corrects it to the clock it judges
/// leases by (see [`clock`]).
pub async fn open_with_clock(
    url: &str,
    local: clock::LocalClock,
) -> Result<Arc<dyn Store>, StoreError> {
    if let Some(refused) = unknown_scheme(url) {
        return Err(refused);
    }
    if is_postgres(url) {
        #[cfg(feature = "postgres")]
        return Ok(Arc::new(PgStore::open_with_clock(url, local).await?));
        #[cfg(not(feature = "postgres"))]
        return Err(not_built(url, "postgres"));
    }
    // One host's clock is the only clock of a SQLite store.
    let _ = local;
    #[cfg(feature = "sqlite")]
    return Ok(Arc::new(SqliteStore::open(url).await?));
    #[cfg(not(feature = "sqlite"))]
    Err(not_built(url, "sqlite"))
}
use postbud_channel::{Invoice, Pdf};

/// Milliseconds since the Unix epoch; the store's clock unit.
pub type Millis = i64;

/// Now, in store time.
pub fn now_ms() -> Millis {
    jiff::Timestamp::now().as_millisecond()
}

/// What a job does.
///
/// Exhaustive on purpose: the engine runs one job per kind, and a kind it did not know would be
/// work nobody does, so adding one must fail to compile where the engine hands kinds to jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Eligibility, PDF, capture, routing.
    Dispatch,
    /// One channel instance delivers the invoice.
    Deliver,
    /// One channel instance sends a cancellation notice.
    Cancel,
    /// Waits for Dintero to confirm a void it accepted with 202, then stops the pending
    /// deliveries and queues the cancellation notices.
    Void,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum JobState {
    /// Waiting for `next_at`.
    Queued,
    /// Claimed by a worker.
    Running,
    /// Finished successfully.
    Done,
    /// Failed permanently.
    Failed,
    /// Gave up after the maximum attempts.
    Dead,
    /// Stopped by a void.
    Cancelled,
    /// Not ours to deliver (dispatch only).
    Skipped,
}

macro_rules! text_enum {
    ($ty:ident { $($v:ident = $s:literal),+ }) => {
        impl $ty {
            /// The stored name.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s,)+ }
            }
            /// Parses a stored name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)+ _ => None }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
    };
}
text_enum!(JobKind { Dispatch = "dispatch", Deliver = "deliver", Cancel = "cancel", Void = "void" });
text_enum!(JobState {
    Queued = "queued",
    Running = "running",
    Done = "done",
    Failed = "failed",
    Dead = "dead",
    Cancelled = "cancelled",
    Skipped = "skipped"
});

/// Where a dispatch stands: what was decided and done for the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Stage {
    /// Submitted; nothing decided yet.
    New,
    /// Not ours to deliver (Kravia sends it, not AUTHORIZED, ...).
    Skipped,
    /// Stopped for good before the capture (no route, a PDF that is not a PDF).
    Failed,
    /// The capture was sent; its answer is not recorded yet.
    Capturing,
    /// Dintero confirmed the capture.
    Captured,
    /// Captured and routed: the deliveries are queued.
    Routed,
    /// A void was accepted (202) and awaits Dintero's confirmation.
    Voiding,
    /// Voided at Dintero.
    Voided,
}
text_enum!(Stage {
    New = "new",
    Skipped = "skipped",
    Failed = "failed",
    Capturing = "capturing",
    Captured = "captured",
    Routed = "routed",
    Voiding = "voiding",
    Voided = "voided"
});

/// Why a job exists beside its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Role {
    /// A delivery the route names first.
    Primary,
    /// A delivery the route names for when the primaries failed for good.
    Fallback,
    /// A cancellation notice after a void.
    Cancel,
    /// The job that waits for Dintero to confirm a void.
    Confirm,
    /// A delivery an operator asked for again, through one channel, after the invoice was
    /// routed: it sets off no fallback, and the verdict reads the route's own deliveries.
    Redelivery,
}
text_enum!(Role {
    Primary = "primary",
    Fallback = "fallback",
    Cancel = "cancel",
    Confirm = "confirm",
    Redelivery = "redelivery"
});

impl JobState {
    /// No more attempts will be made.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Queued | Self::Running)
    }
}

/// A job as stored.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Job {
    /// `dsp-<hash>` for dispatches, the delivery id otherwise.
    pub id: String,
    /// Dintero transaction id.
    pub transaction_id: String,
    /// What it does.
    pub kind: JobKind,
    /// Channel instance (deliver/cancel).
    pub channel: Option<String>,
    /// Primary or fallback (deliver), cancel, confirm (void).
    pub role: Option<Role>,
    /// Where it stands.
    pub state: JobState,
    /// Attempts started so far.
    pub attempts: u32,
    /// When it is due (queued) or was last touched.
    pub next_at: Millis,
    /// Claim counter; see the module docs.
    pub fence: i64,
    /// The last failure.
    pub last_error: Option<String>,
    /// The receipt of the successful attempt.
    pub receipt: Option<String>,
    /// The sink's own id for the delivery it accepted ([`Finish::DoneWith`]).
    pub reference: Option<String>,
    /// The furthest state evidence reported of this delivery (`delivered`, `bounced`, ...; see
    /// [`postbud_channel::EvidenceState`]); `None` before any.
    pub evidence: Option<String>,
    /// Whether an attempt may have reached the sink without Postbud knowing
    /// ([`Finish::Unknown`], a [`Finish::Retry`] with a reference), until one succeeds or the
    /// sink reports: the sink's report of its `reference` settles it.
    pub outcome_unknown: bool,
    /// How often an operator sent it again after it failed for good ([`Store::retry`]); a send
    /// after such a retry starts without the earlier send's receipt and reference.
    pub resends: u32,
    /// Created.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

impl Job {
    /// A job `id` of `transaction_id` doing `kind`, in `state`, with nothing else known yet
    /// (for tests and tools that build one).
    pub fn new(
        id: impl Into<String>,
        transaction_id: impl Into<String>,
        kind: JobKind,
        state: JobState,
    ) -> Self {
        Self {
            id: id.into(),
            transaction_id: transaction_id.into(),
            kind,
            channel: None,
            role: None,
            state,
            attempts: 0,
            next_at: 0,
            fence: 0,
            last_error: None,
            receipt: None,
            reference: None,
            evidence: None,
            outcome_unknown: false,
            resends: 0,
            created_at: 0,
            updated_at: 0,
        }
    }
}

/// A claim on a job: present it with every write made while working on it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Lease {
    /// The job.
    pub job: Job,
    /// Who holds it.
    pub owner: String,
    /// For a dispatch job, its dispatch record as the claim found it, read in the claim's own
    /// transaction so the attempt need not read it again; `None` for other jobs, or where the
    /// store did not read it. It is as fresh as a read right after the claim: a writer of a
    /// dispatch under way (a void, `mark_origin`) moves its fence, so the attempt's next write
    /// is refused.
    pub dispatch: Option<Dispatch>,
}

/// The dispatch record: what was decided and done for one transaction.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Dispatch {
    /// Dintero transaction id.
    pub transaction_id: String,
    /// Where it stands.
    pub stage: Stage,
    /// Why it was skipped or failed.
    pub reason: Option<String>,
    /// The `capture_reference` of Postbud's capture request (empty when it carried none),
    /// recorded before the request is sent: present means Postbud asked Dintero to capture, so
    /// a capture Dintero shows is Postbud's own even when the answer was lost.
    pub capture_reference: Option<String>,
    /// `event-request-id` of a 202 capture awaiting its event.
    pub capture_request_id: Option<String>,
    /// When collection was confirmed to have started.
    pub captured_at: Option<Millis>,
    /// Invoice number, once known.
    pub invoice_number: Option<String>,
    /// Index of the route chosen, once routed.
    pub route: Option<usize>,
    /// How Postbud learnt of the transaction when that decides who sends it:
    /// `"sessions/pay"` for an invoice Postbud created with `invoice_channel: "merchant"`.
    pub origin: Option<String>,
    /// `event-request-id` of a void Dintero accepted (202) and has not confirmed yet.
    pub void_request_id: Option<String>,
    /// When pruning deleted its PDF and personal data (the record stays).
    pub pruned_at: Option<Millis>,
    /// The PDF's SHA-256, kept when the PDF itself was pruned.
    pub pdf_sha256: Option<String>,
    /// The route chosen, as it was configured then (JSON); deliveries follow it.
    pub route_snapshot: Option<String>,
    /// Created.
    pub created_at: Millis,
    /// Last change.
    pub updated_at: Millis,
}

impl Dispatch {
    /// A record of `transaction_id` at `stage` with nothing else known yet, as a store would
    /// read it back before any other field is written (for tests and tools that build one).
    pub fn new(transaction_id: impl Into<String>, stage: Stage) -> Self {
        Self {
            transaction_id: transaction_id.into(),
            stage,
            reason: None,
            capture_reference: None,
            capture_request_id: None,
            captured_at: None,
            invoice_number: None,
            route: None,
            origin: None,
            void_request_id: None,
            pruned_at: None,
            pdf_sha256: None,
            route_snapshot: None,
            created_at: 0,
            updated_at: 0,
        }
    }
}

/// One line of a transaction's history.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct HistoryEntry {
    /// When.
    pub at: Millis,
    /// The job it concerns, if any.
    pub job_id: Option<String>,
    /// `submitted`, `captured`, `delivered`, `retry`, ...
    pub event: String,
    /// Details.
    pub detail: String,
}

/// Evidence about a delivery, to record once ([`Store::record_evidence`]).
#[derive(Debug, Clone)]
pub struct NewEvidence<'a> {
    /// The delivery.
    pub job_id: &'a str,
    /// Its transaction.
    pub transaction_id: &'a str,
    /// The reporter's id of the event: the same event is recorded once.
    pub event_id: &'a str,
    /// What it reports.
    pub state: postbud_channel::EvidenceState,
    /// Who reports it.
    pub reporter: &'a str,
    /// Why, in the reporter's words.
    pub reason: &'a str,
    /// The raw event (already bounded by the caller).
    pub payload: &'a [u8],
    /// When the reporter says it happened.
    pub reported_at: Option<Millis>,
    /// For a failure ([`EvidenceState::is_failure`](postbud_channel::EvidenceState::is_failure))
    /// of a delivery that ended well: the error it now ends with and the jobs to queue (the
    /// route's fallback). `None` records the failure without failing the delivery (it was
    /// voided, or it is not a failure).
    pub fails: Option<EvidenceFailure<'a>>,
    /// The history line recorded with it.
    pub detail: &'a str,
}

/// What a reported failure does to a delivery that ended well ([`NewEvidence::fails`]).
#[derive(Debug, Clone)]
pub struct EvidenceFailure<'a> {
    /// The delivery's error from now on.
    pub error: &'a str,
    /// The jobs queued (once: ids are deterministic) when the delivery is failed by it.
    pub then: &'a [NewJob],
    /// The history line of what was queued.
    pub then_detail: &'a str,
}

/// What [`Store::record_evidence`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EvidenceWritten {
    /// Recorded; `failed` when it failed a delivery that had ended well (and queued what
    /// [`EvidenceFailure::then`] named).
    New {
        /// Whether the delivery was failed by it.
        failed: bool,
    },
    /// This event of this delivery was recorded before: nothing changed.
    Duplicate,
    /// The delivery's attempt has not ended (queued or running): nothing recorded.
    NotYet,
    /// There is no such job (any more): nothing recorded.
    NoJob,
}

/// One piece of evidence as recorded ([`Store::evidence`]).
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct EvidenceEntry {
    /// The delivery.
    pub job_id: String,
    /// The reporter's id of the event.
    pub event_id: String,
    /// `delivered`, `bounced`, ... ([`postbud_channel::EvidenceState::as_str`]).
    pub state: String,
    /// Who reported it.
    pub reporter: String,
    /// Why; empty once retention pruned it.
    pub reason: String,
    /// The raw event; `None` once retention pruned it.
    #[serde(skip)]
    pub payload: Option<Vec<u8>>,
    /// When the reporter says it happened.
    pub reported_at: Option<Millis>,
    /// When Postbud recorded it.
    pub recorded_at: Millis,
}

/// What the store holds, counted in one snapshot; each part is kept or read through an index,
/// so reading it costs the same at any size of history.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Counts {
    /// Every dispatch counted by what decides its verdict without reading its jobs.
    pub census: Vec<CensusRow>,
    /// The counts `/healthz` and `/metrics` show.
    pub totals: Totals,
}

/// Counts per state, for `status` and `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
#[non_exhaustive]
pub struct Totals {
    /// Dispatches known.
    pub dispatches: u64,
    /// Jobs waiting.
    pub queued: u64,
    /// Jobs claimed.
    pub in_flight: u64,
    /// Deliveries done.
    pub delivered: u64,
    /// Jobs failed permanently.
    pub failed: u64,
    /// Jobs dead-lettered.
    pub dead: u64,
    /// Dispatches skipped as not ours.
    pub skipped: u64,
}

/// Which dispatches [`Store::dispatches`] returns; every condition set must hold.
#[derive(Debug, Clone, Default)]
pub struct DispatchQuery {
    /// Only those with a job that failed for good or was dead-lettered: every invoice that
    /// needs attention or failed has one (a fallback's rescue keeps its failed primary, so not
    /// every one of them is in trouble).
    pub troubled: bool,
    /// Only those with a job on this channel instance.
    pub channel: Option<String>,
    /// Only those created at or after this time.
    pub created_from: Option<Millis>,
    /// Only those created before this time.
    pub created_before: Option<Millis>,
    /// Only those after this one in the order returned: `(created_at, transaction_id)` of the
    /// last one seen, to read the next page.
    pub after: Option<(Millis, String)>,
    /// Only those this names exactly: the transaction id, the invoice number, the merchant's
    /// reference, or the customer's email (ASCII case-insensitively). Surrounding blanks are
    /// ignored; an empty search is none. The email is dropped by a prune (personal data), so a
    /// pruned invoice is found by the others only.
    pub search: Option<String>,
    /// Only those with a delivery or cancellation notice in this state (`skipped` matches
    /// none: only a dispatch job is skipped).
    pub delivery_state: Option<JobState>,
    /// Only those with a job tried more than once.
    pub retried: bool,
    /// At most this many.
    pub limit: u32,
}

impl DispatchQuery {
    /// The `limit` newest dispatches.
    pub fn latest(limit: u32) -> Self {
        Self {
            limit,
            ..Self::default()
        }
    }
}

/// One entry of the audit log: who did what to which target, when, and how it ended
/// ([`Store::record_audit`]). Retention leaves it alone: it is the record of who acted on
/// invoices, and outlives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AuditEntry {
    /// When.
    pub at: Millis,
    /// Who: the console user's name.
    pub user: String,
    /// What: `retry`, `redeliver`, `void`, `retry-matching`, `login`, ...
    pub action: String,
    /// On what: a transaction id, a filter, ...
    pub target: String,
    /// How it ended, in a line.
    pub result: String,
}

impl AuditEntry {
    /// An entry of `user` doing `action` on `target` at `at`, ending with `result`.
    pub fn new(
        at: Millis,
        user: impl Into<String>,
        action: impl Into<String>,
        target: impl Into<String>,
        result: impl Into<String>,
    ) -> Self {
        Self {
            at,
            user: user.into(),
            action: action.into(),
            target: target.into(),
            result: result.into(),
        }
    }
}

/// A dispatch record with every job of its transaction.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct DispatchJobs {
    /// The record.
    pub dispatch: Dispatch,
    /// Its jobs, dispatch first.
    pub jobs: Vec<Job>,
}

/// How many dispatches are at `stage` with (or without) active and troubled jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CensusRow {
    /// [`Dispatch::stage`].
    pub stage: Stage,
    /// A job is queued or running.
    pub active: bool,
    /// A job failed for good or was dead-lettered.
    pub troubled: bool,
    /// How many.
    pub count: u64,
}

/// The route a dispatch chose: its place in `[[routes]]` then, and the route itself (JSON),
/// which the invoice's deliveries follow whatever the configuration says later.
#[derive(Debug, Clone)]
pub struct ChosenRoute {
    /// Index in `[[routes]]` when it was chosen.
    pub index: usize,
    /// The route as JSON (`postbud::config::Route`).
    pub snapshot: String,
}

/// A delivery job to create under a dispatch's lease.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Deterministic id.
    pub id: String,
    /// Deliver or cancel.
    pub kind: JobKind,
    /// Channel instance.
    pub channel: String,
    /// Primary or fallback (deliver), cancel, confirm (void).
    pub role: Role,
    /// First due time.
    pub next_at: Millis,
}

/// What a worker asks [`Store::claim`] for.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    /// Who claims (written with the lease).
    pub owner: &'a str,
    /// How long the lease lasts.
    pub lease: Duration,
    /// At most this many jobs.
    pub limit: u32,
    /// Only jobs of this transaction.
    pub only: Option<&'a str>,
}

/// One history line to append.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLine<'a> {
    /// The transaction it concerns.
    pub transaction_id: &'a str,
    /// The job it concerns, if one.
    pub job_id: Option<&'a str>,
    /// What happened, in a few words.
    pub event: &'a str,
    /// The details.
    pub detail: &'a str,
}

/// What a routed dispatch leaves ([`Store::complete_dispatch`]).
#[derive(Debug, Clone, Copy)]
pub struct Completion<'a> {
    /// The invoice snapshot, with the PDF after capture.
    pub invoice: &'a Invoice,
    /// The route chosen.
    pub route: &'a ChosenRoute,
    /// The deliveries it queues.
    pub jobs: &'a [NewJob],
    /// The dispatch's last history line.
    pub detail: &'a str,
    /// Lease the first delivery, when it is due now, to the completing worker for this long,
    /// as a claim would: it runs next in the same worker, without another claim.
    pub lease_first_due: Option<Duration>,
    /// The record after the capture, when this attempt saw collection start and has not
    /// written it yet: kept first, in the same transaction.
    pub confirmation: Option<&'a Confirmation>,
}

/// The record after a capture: collection seen started, with the `captured` history line.
///
/// An attempt that captures reads the invoice back before it routes it; the record goes with
/// the routing ([`Completion::confirmation`]) or, when the attempt stops before that, on its own
/// ([`Confirmation::patch`]). Nothing but reads comes between the capture and either write, and
/// an attempt that dies before them leaves the `capturing` record, from which the next attempt
/// finds the capture among Dintero's events and never sends another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confirmation {
    /// When collection was seen started.
    pub captured_at: Millis,
    /// The `captured` history line.
    pub detail: String,
}

impl Confirmation {
    /// The same record as a patch of its own.
    pub fn patch(&self) -> DispatchPatch {
        DispatchPatch {
            stage: Some(Stage::Captured),
            captured_at: Some(self.captured_at),
            capture_request_id: Some(None),
            note: Some(("captured", self.detail.clone())),
            ..DispatchPatch::default()
        }
    }
}

/// A void Dintero accepted with 202 ([`Store::void_accepted`]).
#[derive(Debug, Clone, Copy)]
pub struct AcceptedVoid<'a> {
    /// The voided transaction.
    pub transaction_id: &'a str,
    /// Dintero's `event-request-id`, when it gave one.
    pub request_id: Option<&'a str>,
    /// The job that waits for the `VOID` event.
    pub confirm: &'a NewJob,
}

/// How a claimed job ends this attempt.
#[derive(Debug, Clone)]
pub enum Finish {
    /// Success, with the receipt.
    Done(String),
    /// Success, with the receipt and the sink's own id for what it accepted (a provider's
    /// message id, a `Message-ID`), kept so that evidence naming only that id finds the
    /// delivery ([`Store::job_by_reference`]).
    DoneWith {
        /// The receipt.
        receipt: String,
        /// The sink's id.
        reference: String,
    },
    /// Try again at this time.
    Retry {
        /// When.
        at: Millis,
        /// Why.
        error: String,
        /// The sink's id for what this attempt sent, when the attempt may have reached it
        /// though its answer did not (a lost answer to a request under an idempotency key): kept
        /// as the delivery's reference, so that the sink's report of it settles the delivery
        /// while it waits ([`Store::record_evidence`]).
        reference: Option<String>,
    },
    /// Move the due time without counting an attempt (a closed send window).
    Postpone(Millis),
    /// Give up: failed permanently.
    Failed(String),
    /// Give up: retries exhausted.
    Dead(String),
    /// Give up for a person: the sink's answer left unknown whether it has what was sent, so
    /// neither another attempt nor the fallback may follow (state `dead`). The sink's id the
    /// attempt was made under, when known, is kept as the delivery's reference: the sink's
    /// evidence naming it settles the delivery ([`Store::record_evidence`]).
    Unknown {
        /// Why, and what to look at.
        error: String,
        /// The sink's id for what was sent.
        reference: Option<String>,
    },
    /// Not ours (dispatch only).
    Skipped(String),
    /// The attempt already recorded its end itself ([`Store::complete_dispatch`]).
    Recorded,
}

/// Deliveries changed by a void.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VoidEffect {
    /// Pending deliveries that were stopped.
    pub cancelled: Vec<String>,
    /// Channels whose delivery had completed (candidates for a cancellation notice).
    pub delivered_channels: Vec<String>,
}

/// The durable outbox. [`SqliteStore`] is the embedded implementation.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Records the transaction for dispatch, once. Re-submitting a skipped dispatch looks again
    /// (its transaction may have become eligible); anything else is left as it is.
    /// Returns true when work was queued.
    async fn submit(&self, transaction_id: &str) -> Result<bool, StoreError>;
    /// Now, by the clock this store judges leases and due times by (see [`clock`]): what the
    /// engine stamps retries and due times with.
    fn now(&self) -> Millis {
        now_ms()
    }
    /// This process's clock's offset from that clock (reference minus local, milliseconds),
    /// when the store measures one.
    fn clock_offset(&self) -> Option<Millis> {
        None
    }
    /// Records, before it is submitted, that this transaction is a merchant-delivered invoice
    /// made with `POST /v1/sessions/pay` (`origin`: [`ORIGIN_CREATED`] when Postbud made it,
    /// [`ORIGIN_DECLARED`] when the merchant's own system did), with a history line. Dintero
    /// does not echo the payment level back, so this record is the only place it is kept.
    async fn mark_origin(
        &self,
        transaction_id: &str,
        origin: &str,
        detail: &str,
    ) -> Result<(), StoreError>;
    /// An operator's word that the capture Dintero shows for a dispatch stopped because
    /// collection was started elsewhere is to be delivered anyway: records the capture as
    /// known, and queues the dispatch job again. False, and nothing changed, when the dispatch
    /// is not stopped before a capture of Postbud's own.
    async fn adopt_capture(&self, transaction_id: &str, detail: &str) -> Result<bool, StoreError>;
    /// Records a void Dintero accepted with 202 (its `event-request-id`, when given) and queues
    /// `job`, the one that waits for its `VOID` event; a job left from an earlier void that
    /// ended is queued again.
    async fn void_accepted(&self, void: &AcceptedVoid<'_>) -> Result<(), StoreError>;
    /// Takes the turn called `name` until `until` if nobody holds it now: how one instance of a
    /// fleet sharing the database does a periodic task (the reconciliation sweep) per interval.
    async fn take_turn(&self, name: &str, owner: &str, until: Millis) -> Result<bool, StoreError>;
    /// Claims up to `limit` due jobs (queued and due, or running with a lapsed lease), of one
    /// transaction when `only` names it.
    async fn claim(&self, claim: &Claim<'_>) -> Result<Vec<Lease>, StoreError>;
    /// Extends a lease.
    async fn renew(&self, lease: &Lease, duration: Duration) -> Result<(), StoreError>;
    /// Ends an attempt.
    async fn finish(&self, lease: &Lease, finish: Finish) -> Result<(), StoreError>;
    /// Ends an attempt and, once that is written, claims as [`Store::claim`] would: a busy
    /// worker goes from one job to the next in one write. An error means nothing was claimed
    /// and, unless the answer alone was lost, the end was not recorded either; a claim that
    /// fails after the end is recorded claims nothing, and the worker claims again on its own.
    async fn finish_then_claim(
        &self,
        lease: &Lease,
        finish: Finish,
        next: &Claim<'_>,
    ) -> Result<Vec<Lease>, StoreError> {
        self.finish(lease, finish).await?;
        Ok(self.claim(next).await.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "claiming the next job failed");
            Vec::new()
        }))
    }
    /// Updates the dispatch record under the dispatch job's lease.
    async fn update_dispatch(&self, lease: &Lease, patch: DispatchPatch) -> Result<(), StoreError>;
    /// Keeps the fetched PDF (once) before capture, with a history line, and returns the copy
    /// kept: an earlier attempt's, if one was kept first, so every attempt sends the same bytes.
    async fn save_document(&self, lease: &Lease, pdf: &Pdf) -> Result<Pdf, StoreError>;
    /// Ends a dispatch in one transaction, all or nothing: keeps the invoice snapshot and its
    /// PDF (the post-capture copy, replacing the one kept before capture), records the route,
    /// creates the delivery jobs and marks the dispatch job done. Returns the lease on the first
    /// delivery when [`Completion::lease_first_due`] asked for it and it is due now.
    async fn complete_dispatch(
        &self,
        lease: &Lease,
        completion: &Completion<'_>,
    ) -> Result<Option<Lease>, StoreError>;
    /// The fetched PDF.
    async fn document(&self, transaction_id: &str) -> Result<Option<Pdf>, StoreError>;
    /// The invoice snapshot with its PDF.
    async fn invoice(&self, transaction_id: &str) -> Result<Option<Invoice>, StoreError>;
    /// Creates jobs (ignoring those that exist) under a lease.
    async fn enqueue(&self, lease: &Lease, jobs: &[NewJob]) -> Result<(), StoreError>;
    /// The dispatch record.
    async fn dispatch(&self, transaction_id: &str) -> Result<Option<Dispatch>, StoreError>;
    /// One job.
    async fn job(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// Every job of a transaction, dispatch first.
    async fn jobs(&self, transaction_id: &str) -> Result<Vec<Job>, StoreError>;
    /// Appends to the history.
    async fn record(&self, line: &HistoryLine<'_>) -> Result<(), StoreError>;
    /// The history, oldest first.
    async fn history(&self, transaction_id: &str) -> Result<Vec<HistoryEntry>, StoreError>;
    /// Records evidence about a delivery once per event, with its history line, and, for a
    /// failure of a delivery that ended well, fails it and queues what follows, all in one
    /// transaction (see [`EvidenceWritten`]).
    async fn record_evidence(
        &self,
        evidence: &NewEvidence<'_>,
    ) -> Result<EvidenceWritten, StoreError>;
    /// Keeps `reference`, the sink's id the attempt `lease` holds is about to send under, on its
    /// delivery before the request goes out ([`Job::reference`]); fails when the lease is lost.
    async fn keep_reference(&self, lease: &Lease, reference: &str) -> Result<(), StoreError>;
    /// The delivery of the channel instance `channel` whose sink gave it `reference`; `None`
    /// when none did, or more than one (a reference two deliveries share names neither).
    async fn job_by_reference(
        &self,
        channel: &str,
        reference: &str,
    ) -> Result<Option<Job>, StoreError>;
    /// The evidence recorded about a transaction's deliveries, oldest first.
    async fn evidence(&self, transaction_id: &str) -> Result<Vec<EvidenceEntry>, StoreError>;
    /// Requeues failed, dead or waiting jobs (of one channel, or all) for another try now; a
    /// delivery that failed for good unmarked ([`Job::outcome_unknown`]) is a new send
    /// ([`Job::resends`]), without its earlier receipt and reference.
    async fn retry(&self, transaction_id: &str, channel: Option<&str>) -> Result<u64, StoreError>;
    /// Marks the dispatch voided and stops its pending jobs.
    async fn void(&self, transaction_id: &str) -> Result<VoidEffect, StoreError>;
    /// Creates jobs outside any lease (cancellation notices after a void).
    async fn enqueue_free(&self, transaction_id: &str, jobs: &[NewJob]) -> Result<(), StoreError>;
    /// Dispatches with their jobs (dispatch first), newest first, as `status` and the console
    /// list them: one statement, read through the index of the query's narrowest filter.
    async fn dispatches(&self, query: &DispatchQuery) -> Result<Vec<DispatchJobs>, StoreError>;
    /// Appends an entry to the audit log (control characters other than line ends are kept;
    /// a NUL is kept as U+2400).
    async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The audit log, newest first: up to `limit` entries before `before` (the newest when
    /// `None`), and any more of the last one's millisecond, so that the next page, read before
    /// that millisecond, misses none.
    async fn audit_log(
        &self,
        before: Option<Millis>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError>;
    /// Deletes the PDF and the personal data (invoice snapshot, history details, receipts,
    /// errors, reasons) of every dispatch with no queued or running job and no change to it or
    /// its jobs since `before`, keeping an anonymised record: ids, stages, job states, dates
    /// and the PDF's SHA-256. SQLite overwrites what it deletes (`secure_delete`) and
    /// truncates its WAL; PostgreSQL vacuums the tables, which makes the dead rows' space
    /// reusable (their bytes go as it is reused; `VACUUM FULL` rewrites the files at once).
    /// Returns how many dispatches were pruned.
    async fn prune(&self, before: Millis) -> Result<u64, StoreError>;
    /// What the store holds, counted in one snapshot.
    async fn counts(&self) -> Result<Counts, StoreError>;
    /// A persistent value (the link-signing key).
    async fn meta(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Sets a persistent value, replacing what was there.
    async fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;
    /// Sets a persistent value if it is absent; returns the value now stored.
    async fn meta_init(&self, key: &str, value: &str) -> Result<String, StoreError>;
    /// Signalled when another process adds work (PostgreSQL `LISTEN`), if the store can tell.
    fn work_signal(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }
}

/// How the reason of a dispatch stopped by a capture Postbud did not make begins; only a
/// dispatch stopped for that reason is adopted ([`Store::adopt_capture`]).
pub const COLLECTION_STARTED_ELSEWHERE: &str = "collection was started elsewhere";

/// [`Dispatch::origin`] of an invoice Postbud created itself through `POST /v1/sessions/pay` with
/// `invoice_channel: "merchant"`: it is the merchant's to deliver, whatever Dintero echoes back.
pub const ORIGIN_CREATED: &str = "sessions/pay";

/// [`Dispatch::origin`] of an invoice the merchant's own system created through
/// `POST /v1/sessions/pay` with `invoice_channel: "merchant"`, as an operator or the merchant's
/// code declared it (`postbud deliver --merchant-initiated`, `postbud::App::declare_merchant_initiated`).
pub const ORIGIN_DECLARED: &str = "sessions/pay, declared";

/// Fields of the dispatch record to change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct DispatchPatch {
    /// New stage.
    pub stage: Option<Stage>,
    /// New reason (`Some(None)` clears it).
    pub reason: Option<Option<String>>,
    /// The capture request's reference, recorded before it is sent (`Some(None)` clears it: a
    /// request Dintero refused before applying it is no longer a request of Postbud's).
    pub capture_reference: Option<Option<String>>,
    /// 202 request id (`Some(None)` clears it).
    pub capture_request_id: Option<Option<String>>,
    /// Collection confirmed.
    pub captured_at: Option<Millis>,
    /// Invoice number.
    pub invoice_number: Option<String>,
    /// Route chosen.
    pub route: Option<usize>,
    /// The PDF fetched before the capture, kept in the same transaction unless one is kept
    /// already, as [`Store::save_document`] keeps it (its history line comes first).
    pub document: Option<Pdf>,
    /// A history line written in the same transaction: (event, detail).
    pub note: Option<(&'static str, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each backend this build leaves out is refused by name, with the feature that brings it
    /// (CI builds and runs this without `sqlite`, and the default set without `postgres`).
    #[tokio::test]
    async fn a_url_for_a_backend_left_out_names_the_feature_to_enable() {
        let message = not_built("postgres://app:hunter2@db/postbud", "postgres").to_string();
        assert!(message.contains("`postgres` feature"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
        #[cfg(not(feature = "postgres"))]
        {
            let e = open("postgres://app:hunter2@127.0.0.1:1/postbud").await;
            let e = e.expect_err("no PostgreSQL in this build").to_string();
            assert!(e.contains("features = [\"postgres\"]"), "{e}");
        }
        #[cfg(not(feature = "sqlite"))]
        {
            let dir = std::env::temp_dir().join(format!("postbud-nosqlite-{}", std::process::id()));
            let url = format!("sqlite://{}", dir.join("x.db").display());
            let e = open(&url)
                .await
                .expect_err("no SQLite in this build")
                .to_string();
            assert!(e.contains("features = [\"sqlite\"]"), "{e}");
            assert!(!dir.exists(), "nothing was created");
        }
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[tokio::test]
    async fn a_mistyped_scheme_is_refused_without_its_password() {
        for result in [
            probe("postgre://app:s3cret@db/x").await.map(drop),
            open("postgre://app:s3cret@db/x").await.map(drop),
        ] {
            let error = result.expect_err("refused");
            assert_eq!(error.kind(), StoreErrorKind::Misconfigured);
            let said = error.to_string();
            assert!(
                !said.contains("s3cret") && said.contains("postgre://app:***@db/x"),
                "{said}"
            );
        }
    }
}
