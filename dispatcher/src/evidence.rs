//! Delivery evidence as the engine records it: a provider's report, a bounce read from a
//! mailbox, tied to the delivery it is about and recorded once.

use postbud_channel::{Correlation, Evidence, Recorded};

use crate::{
    App,
    store::{HistoryLine, Job, JobKind, StoreError},
};

impl App {
    /// Records `evidence` a channel instance `channel` read (from a webhook, or its own
    /// mailbox). `signed_for` is the delivery whose Postbud-signed report URL carried it, if
    /// any: such a report is taken about that delivery only.
    pub async fn record_evidence(
        &self,
        channel: &str,
        signed_for: Option<&str>,
        evidence: &Evidence,
    ) -> Result<Recorded, StoreError> {
        let job = match self.delivery_of(channel, &evidence.about).await? {
            Ok(job) => job,
            Err(why) => return Ok(Recorded::Unknown(why)),
        };
        if let Some(signed) = signed_for
            && signed != job.id
        {
            return Ok(Recorded::Unknown(format!(
                "the report URL was signed for {signed}, not for {}",
                job.id
            )));
        }
        let detail = if evidence.reason.is_empty() {
            format!("[{channel}] {}", evidence.reporter)
        } else {
            format!("[{channel}] {}: {}", evidence.reporter, evidence.reason)
        };
        let event = format!("evidence: {}", evidence.state);
        self.store()
            .record(&HistoryLine {
                transaction_id: &job.transaction_id,
                job_id: Some(&job.id),
                event: &event,
                detail: &detail,
            })
            .await?;
        Ok(Recorded::New)
    }

    /// The delivery of `channel` that `about` names, or why there is none.
    async fn delivery_of(
        &self,
        channel: &str,
        about: &Correlation,
    ) -> Result<Result<Job, String>, StoreError> {
        let job = match about {
            Correlation::Delivery(id) => self.store().job(id).await?,
            Correlation::Reference(_) => None,
            _ => None,
        };
        Ok(match job {
            Some(job)
                if job.kind == JobKind::Deliver && job.channel.as_deref() == Some(channel) =>
            {
                Ok(job)
            }
            Some(job) => Err(format!(
                "{} is not a delivery of channel `{channel}`",
                job.id
            )),
            None => Err(format!("no delivery of channel `{channel}` is {about:?}")),
        })
    }
}
