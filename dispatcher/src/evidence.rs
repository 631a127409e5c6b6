//! Delivery evidence as the engine records it: a provider's report or a bounce read from a
//! mailbox, tied to the delivery it is about, recorded once, and acted on: a bounce or a
//! rejection of a delivered invoice fails that delivery and runs its route's fallback.

use std::{future::Future, pin::Pin, sync::Arc};

use postbud_channel::{ChannelError, Correlation, Evidence, EvidenceSink, Recorded};

use crate::{
    App,
    store::{EvidenceFailure, EvidenceWritten, Job, JobKind, NewEvidence, StoreError},
};

/// The most of a raw event kept with its evidence: enough to read a DSN's status block or a
/// provider's event again, not an attachment.
pub const PAYLOAD_LIMIT: usize = 16 * 1024;
/// The most of a reporter's reason kept, in characters.
const REASON_LIMIT: usize = 1024;
/// The most of a reporter's name kept, in characters.
const REPORTER_LIMIT: usize = 200;
/// The longest event id kept as given, in bytes; a longer one is kept as its digest.
const EVENT_ID_LIMIT: usize = 200;
/// The longest delivery id or reference looked up; a longer one names no delivery.
const ID_LIMIT: usize = 512;

impl App {
    /// Records `evidence` the channel instance `channel` read (from a webhook, or its own
    /// mailbox) about one of its deliveries, once per event. `signed_for` is the delivery whose
    /// Postbud-signed report URL carried it, if any: such a report is taken about that delivery
    /// only.
    ///
    /// A bounce or a rejection of a delivery that ended well fails it, with the reason, and
    /// queues its route's fallback (once, however many reports say so, and however late); an
    /// invoice voided meanwhile is only recorded. Evidence about a delivery whose attempt has
    /// not ended yet is [`Recorded::NotYet`]: nothing is recorded, and the reporter is to send it
    /// again.
    pub async fn record_evidence(
        &self,
        channel: &str,
        signed_for: Option<&str>,
        evidence: &Evidence,
    ) -> Result<Recorded, StoreError> {
        let recorded = self.record_checked(channel, signed_for, evidence).await;
        let outcome = match &recorded {
            Ok(Recorded::New) => "recorded",
            Ok(Recorded::Duplicate) => "duplicate",
            Ok(Recorded::NotYet) => "not_yet",
            Ok(Recorded::Unknown(_)) => "unknown",
            Ok(_) | Err(_) => "error",
        };
        self.metrics().evidence(channel, evidence.state, outcome);
        recorded
    }

    async fn record_checked(
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
        // What a reporter says is written to the history and printed by `status`: no control
        // characters (a remote server's diagnostic may carry terminal escapes), bounded.
        let (reporter, reason) = (
            clean(&evidence.reporter, REPORTER_LIMIT),
            clean(&evidence.reason, REASON_LIMIT),
        );
        // The event id is a key: a long or odd one is kept as its digest.
        let event_id = match evidence.event_id.len() <= EVENT_ID_LIMIT
            && !evidence.event_id.chars().any(char::is_control)
        {
            true => evidence.event_id.clone(),
            false => Evidence::digest_id(evidence.event_id.as_bytes()),
        };
        let said = match reason.is_empty() {
            true => reporter.clone(),
            false => format!("{reporter}: {reason}"),
        };
        let detail = format!("[{channel}] {said}");
        let error = format!("{}: {said}", evidence.state);
        // A bounce of a voided invoice is history: the store checks that in the transaction
        // that would fail the delivery (`shared/evidence_fails_job.sql`), where a void cannot
        // slip in between.
        let fails = evidence.state.is_failure();
        let fallback = match fails {
            true => {
                self.engine()
                    .fallback_of(&job, evidence.state.as_str())
                    .await?
            }
            false => None,
        };
        let (then, then_detail) = fallback.unwrap_or_default();
        let payload = &evidence.payload[..evidence.payload.len().min(PAYLOAD_LIMIT)];
        let written = self
            .store()
            .record_evidence(&NewEvidence {
                job_id: &job.id,
                transaction_id: &job.transaction_id,
                event_id: &event_id,
                state: evidence.state,
                reporter: &reporter,
                reason: &reason,
                payload,
                reported_at: evidence.at.map(|at| at.as_millisecond()),
                fails: fails.then_some(EvidenceFailure {
                    error: &error,
                    then: &then,
                    then_detail: &then_detail,
                }),
                detail: &detail,
            })
            .await?;
        Ok(match written {
            EvidenceWritten::New { failed } => {
                if failed {
                    tracing::warn!(
                        channel,
                        delivery = %job.id,
                        state = %evidence.state,
                        fallback = !then.is_empty(),
                        "a delivered invoice {}: the delivery failed",
                        evidence.state
                    );
                    self.metrics().evidence(channel, evidence.state, "failed");
                }
                Recorded::New
            }
            EvidenceWritten::Duplicate => Recorded::Duplicate,
            EvidenceWritten::NotYet => Recorded::NotYet,
            _ => Recorded::Unknown(format!("{} is no longer in the store", job.id)),
        })
    }

    /// The delivery of `channel` that `about` names, or why there is none.
    async fn delivery_of(
        &self,
        channel: &str,
        about: &Correlation,
    ) -> Result<Result<Job, String>, StoreError> {
        let named = match about {
            Correlation::Delivery(id) | Correlation::Reference(id) => Some(id.as_str()),
            _ => None,
        };
        // A NUL is not text PostgreSQL stores, and no id Postbud made is that long: such an id
        // names no delivery, whatever the store.
        if named.is_some_and(|id| id.len() > ID_LIMIT || id.contains('\0')) {
            return Ok(Err(format!(
                "no delivery of channel `{channel}` is {}",
                printable(named.unwrap_or_default())
            )));
        }
        let job = match about {
            Correlation::Delivery(id) => self.store().job(id).await?,
            Correlation::Reference(reference) => {
                self.store().job_by_reference(channel, reference).await?
            }
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
            None => Err(match about {
                Correlation::Delivery(id) => {
                    format!("no delivery {} of channel `{channel}`", printable(id))
                }
                Correlation::Reference(reference) => format!(
                    "no delivery of channel `{channel}` has the reference {}",
                    printable(reference)
                ),
                _ => format!("no delivery of channel `{channel}` is named"),
            }),
        })
    }

    /// The sink the channels' own evidence sources ([`postbud_channel::EvidenceSource`]) hand
    /// what they read to: this app.
    pub fn evidence_sink(self: &Arc<Self>) -> Arc<dyn EvidenceSink> {
        Arc::new(AppSink(Arc::clone(self)))
    }
}

/// An id as a reporter gave it, short and without control characters, for a reason that is
/// logged and answered.
fn printable(id: &str) -> String {
    let mut shown: String = id
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if id.chars().count() > 80 {
        shown.push('…');
    }
    format!("`{shown}`")
}

/// `text` without control characters (each a space), at most `limit` characters.
fn clean(text: &str, limit: usize) -> String {
    let mut kept: String = text
        .chars()
        .take(limit)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > limit {
        kept.push('…');
    }
    kept.trim().to_owned()
}

/// [`App::evidence_sink`].
struct AppSink(Arc<App>);

#[async_trait::async_trait]
impl EvidenceSink for AppSink {
    async fn record(&self, channel: &str, evidence: Evidence) -> Result<Recorded, ChannelError> {
        self.0
            .record_evidence(channel, None, &evidence)
            .await
            .map_err(|e| ChannelError::temporary(format!("recording the evidence: {e}")))
    }
}

impl App {
    /// Runs every channel's evidence source ([`postbud_channel::Channel::evidence_source`]:
    /// a bounce mailbox) until `stop`, each on a task of its own, and again after a pause
    /// when one fails (from 1 s, doubling, to 5 minutes).
    pub async fn run_evidence_sources(self: &Arc<Self>, stop: tokio::sync::watch::Receiver<bool>) {
        let channels = self.engine().channels();
        let mut tasks = Vec::new();
        for name in channels.names() {
            let Some(source) = channels.get(name).and_then(|c| c.evidence_source()) else {
                continue;
            };
            let (name, sink, stop) = (name.to_owned(), self.evidence_sink(), stop.clone());
            tasks.push(tokio::spawn(async move {
                run_source(&name, source, sink, stop).await;
            }));
        }
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "an evidence source ended abnormally");
            }
        }
    }
}

/// Runs `source` of the channel `name` until `stop`, again after a pause when it fails.
async fn run_source(
    name: &str,
    source: Arc<dyn postbud_channel::EvidenceSource>,
    sink: Arc<dyn EvidenceSink>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    const FIRST_PAUSE: std::time::Duration = std::time::Duration::from_secs(1);
    const LONGEST_PAUSE: std::time::Duration = std::time::Duration::from_secs(300);
    let mut pause = FIRST_PAUSE;
    while !*stop.borrow() {
        let started = std::time::Instant::now();
        // Each run on a task of its own: a panic in a channel's source ends that run, not the
        // source.
        let run = tokio::spawn({
            let (name, source, sink) = (name.to_owned(), Arc::clone(&source), Arc::clone(&sink));
            let stopped = stop_signal(stop.clone());
            async move { source.run(&name, sink, stopped).await }
        });
        match run.await {
            Ok(Ok(())) if *stop.borrow() => return,
            Ok(Ok(())) => {
                tracing::warn!(channel = name, pause = ?pause, "the evidence source ended before the shutdown; reading it again after a pause");
            }
            Ok(Err(e)) => {
                tracing::warn!(channel = name, error = %e, pause = ?pause, "the evidence source failed; reading it again after a pause");
            }
            Err(e) => {
                tracing::error!(channel = name, error = %e, pause = ?pause, "the evidence source panicked; reading it again after a pause");
            }
        }
        // A source that ran a good while before failing starts over from the first pause.
        if started.elapsed() > LONGEST_PAUSE {
            pause = FIRST_PAUSE;
        }
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// A stop signal for an evidence source: resolves when `stop` says so.
fn stop_signal(
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    })
}
