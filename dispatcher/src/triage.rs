//! What a dispatch needs from a person: the verdict `postbud status` shows beside each
//! invoice, that exit codes are made of, and that `/metrics` counts.
//!
//! The verdicts are about the invoice, not about jobs: a primary delivery that failed while its
//! fallback delivered is an invoice *delivered*, not a failure, and nothing to alert on.

use std::{collections::BTreeMap, fmt};

use serde::Serialize;

use crate::store::{
    CensusRow, Dispatch, DispatchJobs, DispatchQuery, Job, JobKind, JobState, Millis, Store,
    StoreError, fmt_ms,
};
use crate::store::{Role, Stage};

/// Where an invoice stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Verdict {
    /// The customer has the invoice: every primary channel delivered it, or the route's
    /// fallbacks did.
    Delivered,
    /// Work is queued or running: a retry, a send window, a 202 awaiting its event.
    Pending,
    /// A person must act: the invoice reached nobody (collection started or not: no route, a
    /// capture Dintero refused, a PDF that is not one), retries ran out (a dead letter),
    /// Dintero refused the void, or a cancellation notice could not be sent.
    NeedsAttention,
    /// The invoice reached the customer, and one routed copy (an ERP's, say) was refused for
    /// good. The reason says which and why.
    Failed,
    /// Voided at Dintero; its notices, if any, were sent.
    Voided,
    /// Not ours to deliver (another invoice channel, not Kravia, not authorized).
    Skipped,
}

impl Verdict {
    /// Every verdict, in the order `status` lists them.
    pub const ALL: [Verdict; 6] = [
        Self::NeedsAttention,
        Self::Failed,
        Self::Pending,
        Self::Delivered,
        Self::Voided,
        Self::Skipped,
    ];

    /// The name `status` prints and `--verdict` takes: `needs-attention`, `delivered`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::Pending => "pending",
            Self::NeedsAttention => "needs-attention",
            Self::Failed => "failed",
            Self::Voided => "voided",
            Self::Skipped => "skipped",
        }
    }

    /// Parses [`Verdict::as_str`]'s names (`needs_attention` and `needs attention` too).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.trim().to_ascii_lowercase().replace(['_', ' '], "-");
        Self::ALL.into_iter().find(|v| v.as_str() == name)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A verdict with the reason a person reads first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Assessment {
    /// Where the invoice stands.
    pub verdict: Verdict,
    /// Why, in one line.
    pub reason: String,
}

impl Assessment {
    fn new(verdict: Verdict, reason: impl Into<String>) -> Self {
        Self {
            verdict,
            reason: reason.into(),
        }
    }
}

/// The verdict of a dispatch from its census row alone, when no job of it failed for good
/// ([`CensusRow::troubled`] rows need [`assess`]). Agrees with [`assess`] on every state the
/// engine leaves behind.
fn untroubled(row: &CensusRow) -> Verdict {
    match (row.stage, row.active) {
        (_, true) => Verdict::Pending,
        (Stage::Voided, false) => Verdict::Voided,
        (Stage::Skipped, false) => Verdict::Skipped,
        (Stage::Routed, false) => Verdict::Delivered,
        // Not a state the engine leaves; [`assess`] says the invoice reached nobody.
        _ => Verdict::NeedsAttention,
    }
}

/// How many invoices the store holds under each verdict: the `census` of
/// [`Store::counts`], and [`assess`] for those with a job that failed for good (a fallback's
/// rescue among them).
pub async fn count(
    store: &dyn Store,
    census: &[CensusRow],
) -> Result<BTreeMap<Verdict, u64>, StoreError> {
    let mut counts: BTreeMap<Verdict, u64> = Verdict::ALL.iter().map(|v| (*v, 0)).collect();
    for row in census {
        if !row.troubled {
            *counts.entry(untroubled(row)).or_default() += row.count;
        }
    }
    let query = DispatchQuery {
        troubled: true,
        ..DispatchQuery::default()
    };
    // Every troubled invoice is read: in large pages, each query reading the troubled jobs'
    // index once.
    let mut pages = Pages::new(store, query, Pages::COUNTING);
    while let Some(listed) = pages.next().await? {
        *counts
            .entry(assess(Some(&listed.dispatch), &listed.jobs).verdict)
            .or_default() += 1;
    }
    Ok(counts)
}

/// What `status` and the console list: verdicts (any, when empty) and the store's own
/// conditions, every one set holding.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Filter {
    /// Only these verdicts; every one when empty.
    pub verdicts: Vec<Verdict>,
    /// Only transactions with a job on this channel instance.
    pub channel: Option<String>,
    /// Only transactions first seen at or after this time.
    pub created_from: Option<Millis>,
    /// Only transactions first seen before this time.
    pub created_before: Option<Millis>,
    /// Only the invoice this names exactly: its transaction id, invoice number or merchant
    /// reference, or its customer's email (ASCII case-insensitively; dropped by retention's
    /// prune). Blanks around it are ignored; empty is no search.
    pub search: Option<String>,
    /// Only invoices with a delivery or cancellation notice in this state.
    pub delivery_state: Option<JobState>,
    /// Only invoices with a job tried more than once.
    pub retried: bool,
    /// Only invoices after this one in the listing's order (newest first): the `created_at`
    /// and transaction id of the last one listed, to read the next page.
    pub after: Option<(Millis, String)>,
}

impl Filter {
    /// The store's query for this filter, `size` dispatches a page.
    fn query(&self, size: u32) -> DispatchQuery {
        // Every invoice that failed or needs attention has a job that failed for good: the
        // store can leave out the rest.
        let troubled = !self.verdicts.is_empty()
            && self
                .verdicts
                .iter()
                .all(|v| matches!(v, Verdict::NeedsAttention | Verdict::Failed));
        DispatchQuery {
            troubled,
            channel: self.channel.clone(),
            created_from: self.created_from,
            created_before: self.created_before,
            after: self.after.clone(),
            search: self.search.clone(),
            delivery_state: self.delivery_state,
            retried: self.retried,
            limit: size.max(1),
        }
    }
}

/// An invoice as `status` lists it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Listed {
    /// The dispatch record.
    pub dispatch: Dispatch,
    /// Its jobs.
    pub jobs: Vec<Job>,
    /// Its verdict and why.
    pub assessment: Assessment,
}

impl Listed {
    /// Where the next page begins after this invoice ([`Filter::after`]).
    pub fn cursor(&self) -> (Millis, String) {
        (
            self.dispatch.created_at,
            self.dispatch.transaction_id.clone(),
        )
    }
}

/// Up to `limit` invoices matching `filter`, newest first, and whether more match.
pub async fn list(
    store: &dyn Store,
    filter: &Filter,
    limit: usize,
) -> Result<(Vec<Listed>, bool), StoreError> {
    // Unfiltered by verdict, every invoice read is listed: read no more than that.
    let size = match filter.verdicts.is_empty() {
        true => u32::try_from(limit.saturating_add(1)).map_or(Pages::SIZE, |n| n.min(Pages::SIZE)),
        false => Pages::SIZE,
    };
    let mut matching = Matching::new(store, filter, size);
    let mut found = Vec::new();
    while let Some(listed) = matching.next().await? {
        if found.len() == limit {
            return Ok((found, true));
        }
        found.push(listed);
    }
    Ok((found, false))
}

/// Up to `limit` invoices matching `filter`, newest first, reading at most about `examine`
/// dispatches (a verdict the store cannot select, `pending` say, is judged invoice by invoice:
/// a rare one would otherwise read the whole store for one page), and where the next page
/// begins when more may match: after the last one listed, or after the last one read when the
/// page stopped at `examine`.
pub async fn list_bounded(
    store: &dyn Store,
    filter: &Filter,
    limit: usize,
    examine: usize,
) -> Result<(Vec<Listed>, Option<(Millis, String)>), StoreError> {
    let examine = examine.max(1);
    let size = u32::try_from(limit.saturating_add(1).min(examine))
        .map_or(Pages::SIZE, |n| n.min(Pages::SIZE));
    let mut matching = Matching::new(store, filter, size);
    matching.examine = examine;
    let mut found: Vec<Listed> = Vec::new();
    while let Some(listed) = matching.next().await? {
        if found.len() == limit {
            let next = found.last().map(Listed::cursor);
            return Ok((found, next));
        }
        found.push(listed);
    }
    if matching.examined >= examine {
        return Ok((found, matching.last_read.clone()));
    }
    Ok((found, None))
}

/// The invoices matching a filter, newest first, read from the store a page at a time (one
/// query each) and judged one by one.
pub(crate) struct Matching<'a> {
    pages: Pages<'a>,
    verdicts: Vec<Verdict>,
    /// Dispatches read so far.
    examined: usize,
    /// The cursor of the last dispatch read.
    last_read: Option<(Millis, String)>,
    /// Read no more dispatches than this (no bound unless set).
    examine: usize,
}

impl<'a> Matching<'a> {
    /// Reads `size` dispatches a page.
    pub(crate) fn new(store: &'a dyn Store, filter: &Filter, size: u32) -> Self {
        Self {
            pages: Pages::new(store, filter.query(size), size),
            verdicts: filter.verdicts.clone(),
            examined: 0,
            last_read: None,
            examine: usize::MAX,
        }
    }

    /// The next invoice matching, if any.
    pub(crate) async fn next(&mut self) -> Result<Option<Listed>, StoreError> {
        while self.examined < self.examine
            && let Some(DispatchJobs { dispatch, jobs, .. }) = self.pages.next().await?
        {
            self.examined += 1;
            self.last_read = Some((dispatch.created_at, dispatch.transaction_id.clone()));
            let assessment = assess(Some(&dispatch), &jobs);
            if self.verdicts.is_empty() || self.verdicts.contains(&assessment.verdict) {
                return Ok(Some(Listed {
                    dispatch,
                    jobs,
                    assessment,
                }));
            }
        }
        Ok(None)
    }
}

/// [`Store::dispatches`] a page at a time, so a large store is never held in memory at once.
struct Pages<'a> {
    store: &'a dyn Store,
    query: DispatchQuery,
    page: std::vec::IntoIter<DispatchJobs>,
    done: bool,
}

impl<'a> Pages<'a> {
    const SIZE: u32 = 200;
    /// The page size when every page is read to count it.
    const COUNTING: u32 = 2_000;

    /// Reads `size` dispatches a page.
    fn new(store: &'a dyn Store, query: DispatchQuery, size: u32) -> Self {
        Self {
            store,
            query: DispatchQuery {
                limit: size.max(1),
                ..query
            },
            page: Vec::new().into_iter(),
            done: false,
        }
    }

    async fn next(&mut self) -> Result<Option<DispatchJobs>, StoreError> {
        if let Some(next) = self.page.next() {
            return Ok(Some(next));
        }
        if self.done {
            return Ok(None);
        }
        let page = self.store.dispatches(&self.query).await?;
        self.done = page.len() < self.query.limit as usize;
        if let Some(last) = page.last() {
            self.query.after = Some((
                last.dispatch.created_at,
                last.dispatch.transaction_id.clone(),
            ));
        }
        self.page = page.into_iter();
        Ok(self.page.next())
    }
}

/// The verdict on one transaction's work: its dispatch record (none yet: pending) and every job.
///
/// ```
/// use postbud::triage::{Verdict, assess};
/// assert_eq!(assess(None, &[]).verdict, Verdict::Pending);
/// ```
pub fn assess(dispatch: Option<&Dispatch>, jobs: &[Job]) -> Assessment {
    let Some(dispatch) = dispatch else {
        return Assessment::new(Verdict::Pending, "submitted; not dispatched yet");
    };
    let given_up = |j: &&Job| matches!(j.state, JobState::Failed | JobState::Dead);
    let error = |j: &Job| {
        j.last_error
            .clone()
            .unwrap_or_else(|| "no error kept".into())
    };
    let channel = |j: &Job| j.channel.clone().unwrap_or_default();

    // Cancelling went wrong: the invoice may stand while the merchant believes it voided, or
    // the customer was not told.
    // A void job that gave up waiting for Dintero's confirmation is moot once the void is
    // confirmed some other way (a webhook, a callback, the sweep).
    if let Some(void) = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Void && dispatch.stage != Stage::Voided)
        .find(given_up)
    {
        return Assessment::new(
            Verdict::NeedsAttention,
            format!("the void did not go through: {}", error(void)),
        );
    }
    if let Some(cancel) = jobs
        .iter()
        .filter(|j| j.kind == JobKind::Cancel)
        .find(given_up)
    {
        return Assessment::new(
            Verdict::NeedsAttention,
            format!(
                "voided, but the cancellation notice via {} was not sent: {}",
                channel(cancel),
                error(cancel)
            ),
        );
    }
    if dispatch.stage == Stage::Voided {
        return match jobs.iter().find(|j| !j.state.is_final()) {
            Some(job) => Assessment::new(
                Verdict::Pending,
                format!("voided; notice via {} queued", channel(job)),
            ),
            None => Assessment::new(Verdict::Voided, "voided at Dintero"),
        };
    }
    if let Some(job) = jobs.iter().find(|j| !j.state.is_final()) {
        let what = match job.kind {
            JobKind::Dispatch => "capture and routing".to_owned(),
            JobKind::Void => "void awaiting Dintero's confirmation".to_owned(),
            _ => format!("delivery via {}", channel(job)),
        };
        let reason = match (&job.state, &job.last_error) {
            (JobState::Running, _) => format!("{what}: running"),
            (_, None) => format!("{what}: due {}", fmt_ms(job.next_at)),
            (_, Some(e)) => format!(
                "{what}: attempt {} due {}; last error: {e}",
                job.attempts + 1,
                fmt_ms(job.next_at)
            ),
        };
        return Assessment::new(Verdict::Pending, reason);
    }
    let dispatch_job = jobs.iter().find(|j| j.kind == JobKind::Dispatch);
    if dispatch.stage == Stage::Skipped
        || dispatch_job.is_some_and(|j| j.state == JobState::Skipped)
    {
        return Assessment::new(
            Verdict::Skipped,
            dispatch.reason.clone().unwrap_or_else(|| "not ours".into()),
        );
    }
    let collecting = dispatch.captured_at.is_some() || dispatch.capture_request_id.is_some();
    if let Some(job) = dispatch_job.filter(given_up) {
        let reason = dispatch.reason.clone().unwrap_or_else(|| error(job));
        return if collecting {
            Assessment::new(
                Verdict::NeedsAttention,
                format!("collection started, the invoice was not delivered: {reason}"),
            )
        } else if dispatch.capture_reference.is_some() {
            Assessment::new(
                Verdict::NeedsAttention,
                format!(
                    "capture requested, its outcome not recorded (Dintero's events for this transaction say whether collection started): {reason}"
                ),
            )
        } else if reason.starts_with(crate::store::COLLECTION_STARTED_ELSEWHERE) {
            // Collected, by someone else: the reason says what Dintero shows and what to do.
            Assessment::new(Verdict::NeedsAttention, reason)
        } else if job.state == JobState::Dead {
            Assessment::new(
                Verdict::NeedsAttention,
                format!("gave up after {} attempts: {reason}", job.attempts),
            )
        } else {
            // Nothing collected, but nobody was invoiced either, and the authorization ages:
            // a configuration mistake that fails every invoice must reach the alert.
            Assessment::new(
                Verdict::NeedsAttention,
                format!("nothing was captured or sent: {reason}"),
            )
        };
    }
    let deliveries: Vec<&Job> = jobs.iter().filter(|j| j.kind == JobKind::Deliver).collect();
    let role = |job: &&&Job, role: Role| job.role == Some(role);
    let primaries: Vec<&&Job> = deliveries
        .iter()
        .filter(|j| role(j, Role::Primary))
        .collect();
    let fallbacks: Vec<&&Job> = deliveries
        .iter()
        .filter(|j| role(j, Role::Fallback))
        .collect();
    let done = |jobs: &[&&Job]| {
        jobs.iter()
            .filter(|j| j.state == JobState::Done)
            .map(|j| channel(j))
            .collect::<Vec<_>>()
    };
    let primaries_done = done(&primaries);
    let fallbacks_done = done(&fallbacks);
    if primaries_done.len() == primaries.len() && !primaries.is_empty() {
        return Assessment::new(
            Verdict::Delivered,
            format!("via {}", primaries_done.join(", ")),
        );
    }
    if !fallbacks.is_empty() && fallbacks_done.len() == fallbacks.len() {
        let failed: Vec<String> = primaries
            .iter()
            .filter(|j| j.state != JobState::Done)
            .map(|j| channel(j))
            .collect();
        return Assessment::new(
            Verdict::Delivered,
            format!(
                "via fallback {} ({} failed)",
                fallbacks_done.join(", "),
                failed.join(", ")
            ),
        );
    }
    let lost = deliveries
        .iter()
        .copied()
        .find(|j| matches!(j.state, JobState::Failed | JobState::Dead));
    let lost_reason = lost
        .map(|j| format!("{}: {}", channel(j), error(j)))
        .unwrap_or_else(|| "no delivery was made".into());
    // Not "reached nobody": its sink may have it, unknown to Postbud, and its report settles it.
    if let Some(unknown) = deliveries
        .iter()
        .find(|j| j.state == JobState::Dead && j.outcome_unknown)
    {
        return Assessment::new(
            Verdict::NeedsAttention,
            format!(
                "outcome unknown: {} may already have the invoice; {}: {}",
                channel(unknown),
                match unknown.reference {
                    Some(_) => "its own report settles this, or look there before a retry",
                    None => "look there before a retry",
                },
                error(unknown)
            ),
        );
    }
    if primaries_done.is_empty() && fallbacks_done.is_empty() {
        let started = if collecting {
            "collection started and the invoice reached nobody"
        } else {
            "the invoice reached nobody"
        };
        return Assessment::new(Verdict::NeedsAttention, format!("{started}: {lost_reason}"));
    }
    let delivered: Vec<String> = primaries_done.into_iter().chain(fallbacks_done).collect();
    match deliveries.iter().find(|j| j.state == JobState::Dead) {
        Some(dead) => Assessment::new(
            Verdict::NeedsAttention,
            format!(
                "dead letter: the copy via {} gave up after {} attempts: {} (delivered via {})",
                channel(dead),
                dead.attempts,
                error(dead),
                delivered.join(", ")
            ),
        ),
        None => Assessment::new(
            Verdict::Failed,
            format!(
                "a copy was refused for good: {lost_reason} (delivered via {})",
                delivered.join(", ")
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch(stage: &str) -> Dispatch {
        let mut dispatch = Dispatch::new("T12345678.abc", Stage::parse(stage).expect("a stage"));
        dispatch.invoice_number = Some("1".into());
        dispatch
    }

    fn job(kind: JobKind, channel: Option<&str>, role: Option<&str>, state: JobState) -> Job {
        let id = format!("{kind}-{}", channel.unwrap_or(""));
        let mut job = Job::new(id, "T12345678.abc", kind, state);
        job.channel = channel.map(str::to_owned);
        job.role = role.map(|r| Role::parse(r).expect("a role"));
        (job.attempts, job.fence) = (3, 1);
        job.last_error = Some(format!("{state} error"));
        job
    }

    fn captured() -> Dispatch {
        let mut routed = dispatch("routed");
        routed.captured_at = Some(1);
        routed.capture_reference = Some("ref".into());
        routed
    }

    fn routed(deliveries: &[(&str, &str, JobState)]) -> Vec<Job> {
        let mut jobs = vec![job(JobKind::Dispatch, None, None, JobState::Done)];
        for (channel, role, state) in deliveries {
            jobs.push(job(JobKind::Deliver, Some(channel), Some(role), *state));
        }
        jobs
    }

    #[test]
    fn a_delivery_whose_sink_may_have_it_is_not_said_to_have_reached_nobody() {
        let mut jobs = routed(&[
            ("peppol", "primary", JobState::Dead),
            ("email", "primary", JobState::Done),
        ]);
        jobs[1].outcome_unknown = true;
        for jobs in [jobs.clone(), jobs[..2].to_vec()] {
            let a = assess(Some(&captured()), &jobs);
            assert_eq!(a.verdict, Verdict::NeedsAttention);
            assert!(
                a.reason
                    .starts_with("outcome unknown: peppol may already have the invoice"),
                "{}",
                a.reason
            );
        }
        jobs[1].outcome_unknown = false;
        let a = assess(Some(&captured()), &jobs[..2]);
        assert!(a.reason.contains("reached nobody"), "{}", a.reason);
    }

    #[test]
    fn a_fallback_rescue_is_delivered_and_a_lone_failure_needs_attention() {
        let rescued = routed(&[
            ("email", "primary", JobState::Failed),
            ("sms", "fallback", JobState::Done),
        ]);
        let a = assess(Some(&captured()), &rescued);
        assert_eq!(a.verdict, Verdict::Delivered, "{a:?}");
        assert!(a.reason.contains("fallback sms"), "{a:?}");

        let lost = routed(&[("email", "primary", JobState::Failed)]);
        let a = assess(Some(&captured()), &lost);
        assert_eq!(a.verdict, Verdict::NeedsAttention, "{a:?}");
        assert!(a.reason.contains("collection started"), "{a:?}");
        assert!(a.reason.contains("email: failed error"), "{a:?}");
    }

    #[test]
    fn a_dead_copy_needs_attention_and_a_refused_copy_is_failed() {
        let dead = routed(&[
            ("email", "primary", JobState::Done),
            ("erp", "primary", JobState::Dead),
        ]);
        assert_eq!(
            assess(Some(&captured()), &dead).verdict,
            Verdict::NeedsAttention
        );
        let refused = routed(&[
            ("email", "primary", JobState::Done),
            ("erp", "primary", JobState::Failed),
        ]);
        let a = assess(Some(&captured()), &refused);
        assert_eq!(a.verdict, Verdict::Failed, "{a:?}");
        assert!(a.reason.contains("delivered via email"), "{a:?}");
    }

    #[test]
    fn dispatch_failures_need_attention_once_a_capture_was_asked_for() {
        let failed = vec![job(JobKind::Dispatch, None, None, JobState::Failed)];
        let mut before = dispatch("failed");
        before.reason = Some("no route matches".into());
        let a = assess(Some(&before), &failed);
        assert_eq!(a.verdict, Verdict::NeedsAttention);
        assert!(a.reason.contains("nothing was captured"), "{a:?}");
        let mut refused = dispatch("failed");
        refused.capture_reference = Some("ref".into());
        refused.reason = Some("capture was refused by Dintero: no".into());
        let a = assess(Some(&refused), &failed);
        assert_eq!(a.verdict, Verdict::NeedsAttention);
        assert!(a.reason.contains("refused by Dintero"), "{a:?}");
        let dead = vec![job(JobKind::Dispatch, None, None, JobState::Dead)];
        assert_eq!(
            assess(Some(&dispatch("failed")), &dead).verdict,
            Verdict::NeedsAttention
        );
    }

    #[test]
    fn voids_and_queued_work() {
        let mut jobs = routed(&[("email", "primary", JobState::Cancelled)]);
        assert_eq!(
            assess(Some(&dispatch("voided")), &jobs).verdict,
            Verdict::Voided
        );
        jobs.push(job(JobKind::Cancel, Some("email"), None, JobState::Dead));
        assert_eq!(
            assess(Some(&dispatch("voided")), &jobs).verdict,
            Verdict::NeedsAttention
        );
        let refused = vec![job(JobKind::Void, None, None, JobState::Failed)];
        assert_eq!(
            assess(Some(&captured()), &refused).verdict,
            Verdict::NeedsAttention
        );
        // Timed out waiting, then confirmed through a webhook: voided, nothing to do.
        let confirmed_elsewhere = vec![job(JobKind::Void, None, None, JobState::Dead)];
        assert_eq!(
            assess(Some(&dispatch("voided")), &confirmed_elsewhere).verdict,
            Verdict::Voided
        );
        let queued = routed(&[("email", "primary", JobState::Queued)]);
        let a = assess(Some(&captured()), &queued);
        assert_eq!(a.verdict, Verdict::Pending);
        assert!(a.reason.contains("attempt 4"), "{a:?}");
    }

    #[test]
    fn names_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::parse(v.as_str()), Some(v));
        }
        assert_eq!(
            Verdict::parse("Needs attention"),
            Some(Verdict::NeedsAttention)
        );
        assert_eq!(Verdict::parse("done"), None);
    }
}
