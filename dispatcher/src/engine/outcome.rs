//! What `deliver` reports.

use std::fmt;

use serde::Serialize;

use crate::store::{Dispatch, Job, JobKind, JobState};

/// Where a transaction's work stands after [`super::Engine::deliver_now`].
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The transaction.
    pub transaction_id: String,
    /// False when the transaction had been submitted before (nothing new was started).
    pub newly_queued: bool,
    /// The dispatch record.
    pub dispatch: Option<Dispatch>,
    /// Every job, dispatch first.
    pub jobs: Vec<Job>,
}

/// The summary an exit code is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every routed delivery succeeded.
    Delivered,
    /// Work remains queued for a retry.
    Pending,
    /// Not ours to deliver.
    Skipped,
    /// Something failed for good (dispatch, or a delivery with no successful fallback).
    Failed,
    /// The invoice was voided.
    Voided,
}

impl Outcome {
    /// The overall verdict.
    pub fn verdict(&self) -> Verdict {
        let dispatch = self.jobs.iter().find(|j| j.kind == JobKind::Dispatch);
        if self.dispatch.as_ref().is_some_and(|d| d.stage == "voided") {
            return Verdict::Voided;
        }
        match dispatch.map(|d| d.state) {
            Some(JobState::Skipped) => return Verdict::Skipped,
            Some(JobState::Failed | JobState::Dead | JobState::Cancelled) => {
                return Verdict::Failed;
            }
            Some(JobState::Queued | JobState::Running) | None => return Verdict::Pending,
            Some(JobState::Done) => {}
        }
        let deliveries: Vec<&Job> = self
            .jobs
            .iter()
            .filter(|j| j.kind == JobKind::Deliver)
            .collect();
        if deliveries.iter().any(|j| !j.state.is_final()) {
            return Verdict::Pending;
        }
        let primaries_ok = deliveries
            .iter()
            .filter(|j| j.role.as_deref() == Some("primary"))
            .all(|j| j.state == JobState::Done);
        let fallbacks: Vec<&&Job> = deliveries
            .iter()
            .filter(|j| j.role.as_deref() == Some("fallback"))
            .collect();
        if primaries_ok
            || (!fallbacks.is_empty() && fallbacks.iter().all(|j| j.state == JobState::Done))
        {
            Verdict::Delivered
        } else {
            Verdict::Failed
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "transaction {}", self.transaction_id)?;
        if let Some(d) = &self.dispatch {
            write!(f, "  dispatch: {}", d.stage)?;
            if let Some(n) = &d.invoice_number {
                write!(f, ", invoice {n}")?;
            }
            if let Some(r) = &d.reason {
                write!(f, " ({r})")?;
            }
            writeln!(f)?;
        }
        if !self.newly_queued {
            writeln!(
                f,
                "  (known before this run: it went on with the work already queued, if any was due)"
            )?;
        }
        for job in self.jobs.iter().filter(|j| j.kind != JobKind::Dispatch) {
            let what = match (&job.kind, job.role.as_deref()) {
                (JobKind::Cancel, _) => "cancel",
                (_, Some("fallback")) => "fallback",
                _ => "deliver",
            };
            write!(
                f,
                "  {what:<8} {:<20} {:<9} attempts {}",
                job.channel.as_deref().unwrap_or(""),
                job.state,
                job.attempts
            )?;
            match job.state {
                JobState::Done => write!(f, "  {}", job.receipt.as_deref().unwrap_or(""))?,
                JobState::Queued => write!(
                    f,
                    "  next attempt {} — last error: {}",
                    crate::store::fmt_ms(job.next_at),
                    job.last_error.as_deref().unwrap_or("none")
                )?,
                _ => write!(f, "  {}", job.last_error.as_deref().unwrap_or(""))?,
            }
            writeln!(f)?;
        }
        write!(f, "  verdict: {:?}", self.verdict())
    }
}
