//! Storecove's pull queue as an [`EvidenceSource`]: `GET /webhook_instances/` gives the oldest
//! status event (`{guid, body}`, the body a JSON string) or 204 when none waits; the event is
//! turned into [`Evidence`] about the delivery whose receipt reference is the submission's
//! `idempotencyGuid`, handed to the engine, and acknowledged (`DELETE
//! /webhook_instances/{guid}`) only once the engine took it. An event the engine cannot take
//! yet stays at the head of the queue and is offered again after `poll_interval`.
//!
//! A `succeeded` event (the receiving access point's receipt) carries the sending evidence
//! (`GET /document_submissions/{guid}/evidence/sending`, kept in the evidence's payload); that
//! evidence may lag the event (404), so the event waits for it, a bounded number of times.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
};

use postbud_channel::{
    ChannelError, Correlation, Evidence, EvidenceSink, EvidenceSource, EvidenceState, Recorded,
    http::{self, reqwest::StatusCode},
};
use serde_json::{Value, json};

use super::Api;

/// The reporter evidence names.
const REPORTER: &str = "storecove";
/// Most of one queued instance that is read.
const INSTANCE_LIMIT: usize = 1024 * 1024;
/// Most of a sending evidence that is kept.
const EVIDENCE_LIMIT: usize = 64 * 1024;
/// Reads of a `succeeded` event whose evidence is not there yet before it is recorded without.
pub(crate) const EVIDENCE_TRIES: u32 = 5;

/// What one read of the queue calls for next.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Read again now: an event was handled.
    Again,
    /// Wait `poll_interval`: the queue is empty, or its head must wait.
    Wait,
}

/// The pull queue of one Storecove account.
pub(crate) struct PullQueue {
    api: Arc<Api>,
    /// Per queued instance, how often its evidence was missing.
    evidence_missing: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for PullQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PullQueue")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

/// One status event, as far as Postbud reads it.
#[derive(Debug)]
struct Event {
    /// The whole event, kept in the payload.
    raw: Value,
    idempotency_guid: Option<String>,
    submission_guid: Option<String>,
    status: String,
    details: String,
    at: Option<jiff::Timestamp>,
}

/// The first of `keys` that `value` has as a non-empty string.
fn text(value: &Value, keys: &[&str]) -> Option<String> {
    keys.iter()
        .find_map(|k| value[*k].as_str())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl Event {
    /// The event in an instance's `body`: a JSON string holding an object (or, tolerated, the
    /// object itself). Storecove does not publish its fields; both the camel-case names the
    /// submission uses and snake-case ones are read.
    fn parse(body: &Value) -> Result<Self, String> {
        let raw = match body {
            Value::String(s) => serde_json::from_str::<Value>(s)
                .map_err(|e| format!("the body is not JSON: {e}"))?,
            other => other.clone(),
        };
        if !raw.is_object() {
            return Err("the body is not a JSON object".into());
        }
        let status = text(&raw, &["status", "event"])
            .ok_or("the event has no status")?
            .to_ascii_lowercase();
        let details = match &raw["details"] {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            other => http::excerpt(other.to_string().as_bytes()),
        };
        Ok(Self {
            idempotency_guid: text(&raw, &["idempotencyGuid", "idempotency_guid"]),
            submission_guid: text(
                &raw,
                &["guid", "document_submission_guid", "documentSubmissionGuid"],
            ),
            at: text(&raw, &["timestamp", "created_at"]).and_then(|t| t.parse().ok()),
            status,
            details,
            raw,
        })
    }

    /// What the status says about the delivery: `succeeded` is the receiving access point's
    /// receipt; `failed` and `no_action_taken` end it as refused (the route's fallback runs).
    fn state(&self) -> EvidenceState {
        match self.status.as_str() {
            "succeeded" => EvidenceState::Delivered,
            "failed" | "no_action_taken" => EvidenceState::Rejected,
            "retrying" | "delayed" | "pending" => EvidenceState::Delayed,
            _ => EvidenceState::Accepted,
        }
    }
}

impl PullQueue {
    pub(crate) fn new(api: Arc<Api>) -> Self {
        Self {
            api,
            evidence_missing: Mutex::new(HashMap::new()),
        }
    }

    fn missing(&self) -> std::sync::MutexGuard<'_, HashMap<String, u32>> {
        self.evidence_missing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the head of the queue and handles it.
    async fn step(&self, channel: &str, sink: &dyn EvidenceSink) -> Result<Next, ChannelError> {
        let api = &self.api;
        let what = "status queue (GET /webhook_instances/)";
        let response = api.send(what, api.get("/webhook_instances/")).await?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(Next::Wait);
        }
        if !status.is_success() {
            let retry_after = http::retry_after(response.headers());
            let answer = http::read_prefix(response, http::ANSWER_LIMIT).await;
            return Err(api.refusal(what, status, retry_after, &answer));
        }
        let answer = http::read_limited(response, INSTANCE_LIMIT)
            .await
            .map_err(|e| ChannelError::from(e).map_message(|m| format!("Storecove {what}: {m}")))?;
        let instance: Value = serde_json::from_slice(&answer).unwrap_or(Value::Null);
        // Without its guid an instance cannot be acknowledged: the queue is stuck, which only
        // the operator (or Storecove) can fix.
        let Some(instance_guid) = text(&instance, &["guid"]).filter(|g| is_path_safe(g)) else {
            return Err(ChannelError::unavailable(format!(
                "Storecove {what}: HTTP {status} without an instance guid: {}",
                http::excerpt(&answer)
            )));
        };
        let event = match Event::parse(&instance["body"]) {
            Ok(event) => event,
            Err(why) => {
                tracing::warn!(channel, instance = %instance_guid, %why, body = %http::excerpt(instance["body"].to_string().as_bytes()), "storecove: an event Postbud cannot read; acknowledged");
                self.acknowledge(&instance_guid).await?;
                return Ok(Next::Again);
            }
        };
        let Some(key) = event.idempotency_guid.clone() else {
            tracing::info!(channel, instance = %instance_guid, status = %event.status, "storecove: an event without an idempotencyGuid (not a submission of Postbud's); acknowledged");
            self.acknowledge(&instance_guid).await?;
            return Ok(Next::Again);
        };
        let state = event.state();
        let mut kept = Value::Null;
        let mut reason = if event.details.is_empty() {
            format!("Storecove: {}", event.status)
        } else {
            format!("Storecove: {}: {}", event.status, event.details)
        };
        if state == EvidenceState::Delivered
            && let Some(submission) = event.submission_guid.as_deref().filter(|g| is_path_safe(g))
        {
            match self.sending_evidence(submission).await? {
                Some(evidence) => kept = evidence,
                None => {
                    let tries = {
                        let mut missing = self.missing();
                        if missing.len() > 1000 {
                            missing.clear();
                        }
                        let tries = missing.entry(instance_guid.clone()).or_default();
                        *tries += 1;
                        *tries
                    };
                    if tries < EVIDENCE_TRIES {
                        tracing::info!(channel, instance = %instance_guid, submission, tries, "storecove: succeeded, its evidence not there yet; read again later");
                        return Ok(Next::Wait);
                    }
                    reason.push_str(" (Storecove had no sending evidence for it)");
                }
            }
        }
        let payload = json!({"instance": instance_guid, "event": event.raw, "evidence": kept});
        let mut evidence = Evidence::new(
            Correlation::Reference(key),
            state,
            REPORTER,
            format!("storecove:{instance_guid}"),
        )
        .with_reason(reason)
        .with_payload(serde_json::to_vec(&payload).unwrap_or_default());
        if let Some(at) = event.at {
            evidence = evidence.at(at);
        }
        match sink.record(channel, evidence).await {
            Ok(Recorded::New) => {
                tracing::info!(channel, instance = %instance_guid, %state, "storecove: recorded");
            }
            Ok(Recorded::Duplicate) => {}
            Ok(Recorded::Unknown(why)) => {
                tracing::info!(channel, instance = %instance_guid, %why, "storecove: an event about no delivery Postbud knows; acknowledged");
            }
            Ok(Recorded::NotYet) => {
                tracing::info!(channel, instance = %instance_guid, "storecove: the engine cannot take it yet; left in the queue");
                return Ok(Next::Wait);
            }
            Ok(other) => {
                tracing::warn!(channel, instance = %instance_guid, ?other, "storecove: left in the queue");
                return Ok(Next::Wait);
            }
            Err(error) => {
                tracing::warn!(channel, instance = %instance_guid, %error, "storecove: not recorded now; left in the queue");
                return Ok(Next::Wait);
            }
        }
        self.acknowledge(&instance_guid).await?;
        Ok(Next::Again)
    }

    /// The sending evidence of `submission`, bounded; `None` while Storecove has none (404).
    async fn sending_evidence(&self, submission: &str) -> Result<Option<Value>, ChannelError> {
        let api = &self.api;
        let what = format!("evidence of submission {submission}");
        let path = format!("/document_submissions/{submission}/evidence/sending");
        let response = api.send(&what, api.get(&path)).await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let retry_after = http::retry_after(response.headers());
            let answer = http::read_prefix(response, http::ANSWER_LIMIT).await;
            return Err(api.refusal(&what, status, retry_after, &answer));
        }
        Ok(Some(
            match http::read_limited(response, EVIDENCE_LIMIT).await {
                Ok(body) => serde_json::from_slice(&body)
                    .unwrap_or_else(|_| Value::String(http::excerpt(&body))),
                Err(http::ReadError::TooLarge { limit }) => {
                    Value::String(format!("(the evidence is over {limit} bytes; not kept)"))
                }
                Err(error) => return Err(error.into()),
            },
        ))
    }

    /// Deletes the instance from the queue. One already gone (404) is as good.
    async fn acknowledge(&self, instance: &str) -> Result<(), ChannelError> {
        self.missing().remove(instance);
        let api = &self.api;
        let what = format!("acknowledgement of event {instance}");
        let response = api
            .send(&what, api.delete(&format!("/webhook_instances/{instance}")))
            .await?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let retry_after = http::retry_after(response.headers());
        let answer = http::read_prefix(response, http::ANSWER_LIMIT).await;
        Err(api.refusal(&what, status, retry_after, &answer))
    }
}

/// A guid that can go in a path as it is: letters, digits and `-`, not too long. Anything else
/// from the queue is not put in a URL.
fn is_path_safe(guid: &str) -> bool {
    (1..=64).contains(&guid.len()) && guid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[async_trait::async_trait]
impl EvidenceSource for PullQueue {
    async fn run(
        &self,
        channel: &str,
        sink: Arc<dyn EvidenceSink>,
        mut stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Result<(), ChannelError> {
        loop {
            let next = tokio::select! {
                () = &mut stop => return Ok(()),
                next = self.step(channel, sink.as_ref()) => next?,
            };
            if next == Next::Wait {
                tokio::select! {
                    () = &mut stop => return Ok(()),
                    () = tokio::time::sleep(self.api.poll_interval) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_read_from_a_json_string_and_mapped() {
        let body = Value::String(
            r#"{"guid":"s-1","idempotencyGuid":"k","status":"Succeeded","timestamp":"2026-12-01T10:00:00Z"}"#
                .into(),
        );
        let event = Event::parse(&body).expect("event");
        assert_eq!(event.state(), EvidenceState::Delivered);
        assert_eq!(event.idempotency_guid.as_deref(), Some("k"));
        assert_eq!(event.submission_guid.as_deref(), Some("s-1"));
        assert!(event.at.is_some());
        for (status, state) in [
            ("failed", EvidenceState::Rejected),
            ("no_action_taken", EvidenceState::Rejected),
            ("retrying", EvidenceState::Delayed),
            ("transmitted", EvidenceState::Accepted),
        ] {
            let event = Event::parse(&json!({"status": status})).expect("event");
            assert_eq!(event.state(), state, "{status}");
        }
        for garbled in [
            Value::String("not json".into()),
            Value::String("[1,2]".into()),
            json!({"guid": "x"}),
            Value::Null,
        ] {
            assert!(Event::parse(&garbled).is_err(), "{garbled}");
        }
    }

    #[test]
    fn only_plain_guids_go_into_paths() {
        assert!(is_path_safe("0f1e2d3c-aaaa-8bbb-9ccc-000000000000"));
        assert!(!is_path_safe("../legal_entities/1"));
        assert!(!is_path_safe("a?b"));
        assert!(!is_path_safe(""));
        assert!(!is_path_safe(&"a".repeat(65)));
    }
}
