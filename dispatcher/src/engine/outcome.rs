//! What `deliver` reports.

use std::fmt;

use serde::Serialize;

use crate::store::Role;
use crate::{
    store::{Dispatch, Job, JobKind, JobState},
    triage::{Assessment, Verdict},
};

/// Where a transaction's work stands after it was submitted or delivered.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
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

impl Outcome {
    /// The overall verdict, as `status` shows it.
    pub fn verdict(&self) -> Verdict {
        self.assessment().verdict
    }

    /// The verdict with its reason.
    pub fn assessment(&self) -> Assessment {
        crate::triage::assess(self.dispatch.as_ref(), &self.jobs)
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
            let what = match (&job.kind, job.role.map(Role::as_str)) {
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
            if let Some(evidence) = &job.evidence {
                write!(f, "  [{evidence}]")?;
            }
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
        let assessment = self.assessment();
        write!(
            f,
            "  verdict: {} ({})",
            assessment.verdict, assessment.reason
        )
    }
}
