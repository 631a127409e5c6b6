//! The pages: the invoice list with its filters, one invoice, the audit log.

use std::{collections::HashMap, sync::Arc};

use axum::{
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, Uri},
    response::Response,
};
use minijinja::Value;
use serde::Serialize;

use super::{Console, Current};
use crate::{
    store::{Job, JobKind, JobState, Millis, fmt_ms},
    triage::{Filter, Listed, Verdict},
};

/// Invoices a page lists.
pub(super) const PAGE: usize = 50;
/// Most invoices one page of the list reads (a rare verdict judged one by one stops there, with a
/// link to go on): about 25 ms at the benchmark's rate of judging.
pub(super) const EXAMINE: usize = 2_000;

/// The delivery states the filter offers.
const STATES: [JobState; 6] = [
    JobState::Queued,
    JobState::Running,
    JobState::Done,
    JobState::Failed,
    JobState::Dead,
    JobState::Cancelled,
];

/// The list's filter as the form and the links carry it.
#[derive(Debug, Default, Serialize)]
pub(super) struct FilterForm {
    verdict: String,
    channel: String,
    state: String,
    from: String,
    to: String,
    retried: bool,
    q: String,
}

impl FilterForm {
    pub(super) fn read(query: &HashMap<String, String>) -> Self {
        let get = |k: &str| {
            query
                .get(k)
                .map(|v| v.trim().chars().take(200).collect())
                .unwrap_or_default()
        };
        Self {
            verdict: get("verdict"),
            channel: get("channel"),
            state: get("state"),
            from: get("from"),
            to: get("to"),
            retried: query.get("retried").is_some_and(|v| !v.is_empty()),
            q: get("q"),
        }
    }

    /// The fields as `(name, value)` pairs, empty ones left out: the hidden fields of the bulk
    /// form and the query of the next page.
    pub(super) fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        for (name, value) in [
            ("verdict", &self.verdict),
            ("channel", &self.channel),
            ("state", &self.state),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
        ] {
            if !value.is_empty() {
                pairs.push((name, value.clone()));
            }
        }
        if self.retried {
            pairs.push(("retried", "on".into()));
        }
        pairs
    }

    /// The store's filter, or what in the form cannot be one.
    pub(super) fn filter(&self, channels: &[String]) -> Result<Filter, String> {
        let mut filter = Filter::default();
        if !self.verdict.is_empty() {
            let verdict = Verdict::parse(&self.verdict)
                .ok_or_else(|| format!("no verdict `{}`", self.verdict))?;
            filter.verdicts = vec![verdict];
        }
        if !self.channel.is_empty() {
            if !channels.contains(&self.channel) {
                return Err(format!("no channel `{}`", self.channel));
            }
            filter.channel = Some(self.channel.clone());
        }
        if !self.state.is_empty() {
            let state = JobState::parse(&self.state)
                .filter(|s| STATES.contains(s))
                .ok_or_else(|| format!("no delivery state `{}`", self.state))?;
            apply_delivery_state(&mut filter, state);
        }
        if !self.from.is_empty() {
            filter.created_from = Some(day_start(&self.from, "from")?);
        }
        if !self.to.is_empty() {
            // `to` is a whole day, included.
            filter.created_before = Some(day_start(&self.to, "to")? + 24 * 3600 * 1000);
        }
        if self.retried {
            apply_retried(&mut filter);
        }
        if !self.q.is_empty() {
            apply_search(&mut filter, &self.q);
        }
        Ok(filter)
    }
}

// Where the data lane's `Filter` fields plug in. Each is a no-op until `Filter` has the field;
// then its body becomes the one line in its comment.

/// Only invoices with a delivery or notice job in `state`.
fn apply_delivery_state(filter: &mut Filter, state: JobState) {
    filter.delivery_state = Some(state);
}

/// Only invoices with a job of more than one attempt.
fn apply_retried(filter: &mut Filter) {
    filter.retried = true;
}

/// Transaction id, invoice number, merchant reference or customer email.
fn apply_search(filter: &mut Filter, q: &str) {
    filter.search = Some(q.to_owned());
}

/// Continues after the invoice created at `at` with id `transaction_id` (newest first).
fn apply_after(filter: &mut Filter, at: Millis, transaction_id: &str) {
    filter.after = Some((at, transaction_id.to_owned()));
}

/// Midnight UTC of `day` (`2025-03-01`), in store time.
fn day_start(day: &str, field: &str) -> Result<Millis, String> {
    let date: jiff::civil::Date = day
        .parse()
        .map_err(|_| format!("`{field}` is not a date (YYYY-MM-DD)"))?;
    date.to_zoned(jiff::tz::TimeZone::UTC)
        .map(|z| z.timestamp().as_millisecond())
        .map_err(|e| format!("`{field}`: {e}"))
}

/// A cursor `<created_at>:<transaction id>`.
fn parse_after(after: &str) -> Option<(Millis, &str)> {
    let (at, id) = after.split_once(':')?;
    Some((at.parse().ok()?, id))
}

#[derive(Debug, Serialize)]
struct VerdictCount {
    name: &'static str,
    count: u64,
    selected: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    id: String,
    href: String,
    number: String,
    verdict: &'static str,
    channels: String,
    attempts: u32,
    updated: String,
    reason: String,
}

/// The console path of an invoice's page.
pub(super) fn invoice_path(console: &Console, id: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("{}/invoices/{id}", console.root)
}

fn row(console: &Console, listed: &Listed) -> Row {
    let mut channels: Vec<&str> = listed
        .jobs
        .iter()
        .filter_map(|j| j.channel.as_deref())
        .collect();
    channels.dedup();
    channels.sort_unstable();
    channels.dedup();
    let id = &listed.dispatch.transaction_id;
    Row {
        id: id.clone(),
        href: invoice_path(console, id),
        number: listed.dispatch.invoice_number.clone().unwrap_or_default(),
        verdict: listed.assessment.verdict.as_str(),
        channels: channels.join(", "),
        attempts: listed
            .jobs
            .iter()
            .filter(|j| j.kind == JobKind::Deliver)
            .map(|j| j.attempts)
            .sum(),
        updated: fmt_ms(listed.dispatch.updated_at),
        reason: listed.assessment.reason.clone(),
    }
}

/// `GET /console` and `/console/invoices`.
pub(super) async fn list(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let current = match console.authorize_get(&headers, &uri).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let channels: Vec<String> = console.app.settings().channels.keys().cloned().collect();
    let form = FilterForm::read(&query);
    let (mut filter, problem) = match form.filter(&channels) {
        Ok(filter) => (filter, None),
        Err(problem) => (Filter::default(), Some(problem)),
    };
    if let Some((at, id)) = query.get("after").and_then(|a| parse_after(a)) {
        apply_after(&mut filter, at, id);
    }
    let records = console.app.records();
    let counts = match records.verdicts().await {
        Ok(counts) => counts,
        Err(e) => return console.unavailable(&current, &e),
    };
    // A filter the form could not read lists nothing rather than everything.
    // Each page reads a bounded number of invoices: a verdict the store cannot select (pending,
    // voided) is judged one by one, and a rare one must not read the whole store for a page;
    // such a page may hold fewer than `PAGE`, with a link to go on.
    let (listed, next_after) = match problem {
        Some(_) => (Vec::new(), None),
        None => match records.invoices_bounded(&filter, PAGE, EXAMINE).await {
            Ok(found) => found,
            Err(e) => return console.unavailable(&current, &e),
        },
    };
    let verdicts: Vec<VerdictCount> = Verdict::ALL
        .iter()
        .map(|v| VerdictCount {
            name: v.as_str(),
            count: counts.get(v).copied().unwrap_or(0),
            selected: Verdict::parse(&form.verdict) == Some(*v),
        })
        .collect();
    let next = next_after.map(|(at, id)| {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in form.pairs() {
            query.append_pair(name, &value);
        }
        query.append_pair("after", &format!("{at}:{id}"));
        query.finish()
    });
    let rows: Vec<Row> = listed.iter().map(|l| row(&console, l)).collect();
    let states: Vec<&str> = STATES.iter().map(|s| s.as_str()).collect();
    console.render(
        StatusCode::OK,
        "list.html",
        Some(&current),
        None,
        minijinja::context! {
            verdicts => Value::from(minijinja::value::Serde(&verdicts)),
            channels,
            states,
            filter => Value::from(minijinja::value::Serde(&form)),
            hidden => Value::from(minijinja::value::Serde(form.pairs())),
            invoices => Value::from(minijinja::value::Serde(&rows)),
            next,
            problem,
        },
    )
}

#[derive(Debug, Serialize)]
struct JobRow {
    id: String,
    kind: &'static str,
    channel: String,
    role: &'static str,
    state: &'static str,
    attempts: u32,
    reference: String,
    evidence: String,
    error: String,
}

#[derive(Debug, Serialize)]
struct Event {
    #[serde(skip)]
    millis: Millis,
    at: String,
    kind: String,
    channel: String,
    text: String,
    reference: String,
}

/// `GET /console/invoices/{id}`.
pub(super) async fn invoice(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let current = match console.authorize_get(&headers, &uri).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let Ok(id) = console.app.transaction_id(&id).map(str::to_owned) else {
        return not_found(&console, &current).await;
    };
    let records = console.app.records();
    let outcome = match records.outcome(&id).await {
        Ok(Some(outcome)) => outcome,
        Ok(None) => return not_found(&console, &current).await,
        Err(e) => return console.unavailable(&current, &e),
    };
    let read = async {
        Ok::<_, crate::StoreError>((
            records.history(&id).await?,
            records.evidence(&id).await?,
            records.invoice(&id).await?,
        ))
    };
    let (history, evidence, invoice) = match read.await {
        Ok(read) => read,
        Err(e) => return console.unavailable(&current, &e),
    };
    let dispatch = outcome
        .dispatch
        .clone()
        .expect("outcome of a stored dispatch");
    let assessment = outcome.assessment();
    let jobs = &outcome.jobs;
    let channel_of = |job_id: &Option<String>| {
        job_id
            .as_deref()
            .and_then(|j| jobs.iter().find(|job| job.id == j))
            .and_then(|job| job.channel.clone())
            .unwrap_or_default()
    };
    // The provider's id (or receipt) goes beside the last history line of its job: the line
    // of the attempt that ended it.
    let last_of_job: HashMap<&str, usize> = history
        .iter()
        .enumerate()
        .filter_map(|(i, h)| Some((h.job_id.as_deref()?, i)))
        .collect();
    let mut timeline: Vec<Event> = history
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let job = h
                .job_id
                .as_deref()
                .filter(|j| last_of_job.get(j) == Some(&i))
                .and_then(|j| jobs.iter().find(|job| job.id == j));
            Event {
                millis: h.at,
                at: fmt_ms(h.at),
                kind: h.event.clone(),
                channel: channel_of(&h.job_id),
                text: h.detail.clone(),
                reference: job.map(sink_reference).unwrap_or_default(),
            }
        })
        .collect();
    timeline.extend(evidence.iter().map(|e| {
        let at = e.reported_at.unwrap_or(e.recorded_at);
        Event {
            millis: at,
            at: fmt_ms(at),
            kind: "evidence".into(),
            channel: channel_of(&Some(e.job_id.clone())),
            text: format!("{} reported by {}: {}", e.state, e.reporter, e.reason)
                .trim_end_matches([':', ' '])
                .to_owned(),
            reference: e.event_id.clone(),
        }
    }));
    // Stable: lines of one moment keep the order the store wrote them in.
    timeline.sort_by_key(|e| e.millis);
    let job_rows: Vec<JobRow> = jobs
        .iter()
        .map(|j| JobRow {
            id: j.id.clone(),
            kind: j.kind.as_str(),
            channel: j.channel.clone().unwrap_or_default(),
            role: j.role.map(|r| r.as_str()).unwrap_or_default(),
            state: j.state.as_str(),
            attempts: j.attempts,
            reference: sink_reference(j),
            evidence: j.evidence.clone().unwrap_or_default(),
            error: j.last_error.clone().unwrap_or_default(),
        })
        .collect();
    let sha256 = match &invoice {
        Some(invoice) => Some(invoice.pdf.sha256.clone()),
        None => dispatch.pdf_sha256.clone(),
    };
    let pdf_link = match (&sha256, dispatch.pruned_at, console.app.links()) {
        (Some(_), None, Some(links)) => Some(links.link(&id)),
        _ => None,
    };
    let pdf_missing = if dispatch.pruned_at.is_some() {
        "The PDF was deleted by retention; its hash is kept."
    } else {
        "Set server.public_url to open the PDF from here (it is served by a signed link)."
    };
    let next_steps = next_steps(&id, &assessment.verdict, jobs);
    let number = dispatch
        .invoice_number
        .clone()
        .unwrap_or_else(|| id.clone());
    let (amount, customer, merchant_reference) = match &invoice {
        Some(i) => (
            format!(
                "{}.{:02} {}",
                i.amount / 100,
                (i.amount % 100).abs(),
                i.currency
            ),
            [
                Some(i.customer.name.clone()),
                i.customer.business_name.clone(),
                i.customer.email.clone(),
            ]
            .into_iter()
            .flatten()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(", "),
            i.merchant_reference.clone(),
        ),
        None => ("—".into(), "—".into(), None),
    };
    let channels: Vec<String> = console.app.settings().channels.keys().cloned().collect();
    let notice = console.notice(&query).await;
    console.render(
        StatusCode::OK,
        "invoice.html",
        Some(&current),
        notice,
        minijinja::context! {
            id => &id,
            // Safe: the root and a percent-encoded id.
            base => Value::from_safe_string(invoice_path(&console, &id)),
            number,
            verdict => assessment.verdict.as_str(),
            reason => &assessment.reason,
            stage => dispatch.stage.as_str(),
            amount,
            customer,
            merchant_reference,
            next_steps,
            jobs => Value::from(minijinja::value::Serde(&job_rows)),
            timeline => Value::from(minijinja::value::Serde(&timeline)),
            sha256,
            pdf_link,
            pdf_missing,
            channels,
        },
    )
}

/// What a person does about an invoice in this state, in `postbud status`'s words.
fn next_steps(id: &str, verdict: &Verdict, jobs: &[crate::Job]) -> Vec<String> {
    let mut steps = Vec::new();
    match verdict {
        Verdict::NeedsAttention | Verdict::Failed => {
            for job in jobs
                .iter()
                .filter(|j| matches!(j.state, JobState::Failed | JobState::Dead))
            {
                steps.push(format!(
                    "{} {} on {}: {}",
                    job.kind,
                    job.state,
                    job.channel.as_deref().unwrap_or("Dintero"),
                    job.last_error.as_deref().unwrap_or("no error recorded")
                ));
            }
            // A sink that may already have the invoice is looked at before anything is sent.
            let unknown = jobs
                .iter()
                .filter(|j| j.state == JobState::Dead && j.outcome_unknown)
                .filter_map(|j| j.channel.as_deref())
                .collect::<Vec<_>>();
            steps.push(if unknown.is_empty() {
                format!("Fix the cause, then retry (Retry now below, or `postbud retry {id}`).")
            } else {
                format!(
                    "Look at {} first: it may already have the invoice, and its own report settles the delivery. Retry if it does not have it; if it failed there, deliver through that channel again (a new send).",
                    unknown.join(", ")
                )
            });
        }
        Verdict::Pending => steps.push(
            "Work is queued; `postbud serve` finishes it. Nothing to do unless it stays pending."
                .into(),
        ),
        _ => {}
    }
    steps
}

async fn not_found(console: &Console, current: &Current) -> Response {
    console
        .message(
            StatusCode::NOT_FOUND,
            Some(current),
            "Not found",
            "No such invoice in this store.",
        )
        .await
}

/// `GET /console/audit`.
pub(super) async fn audit(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let current = match console.authorize_get(&headers, &uri).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    #[derive(Debug, Serialize)]
    struct Shown {
        at: String,
        user: String,
        action: String,
        target: String,
        result: String,
    }
    let entries: Vec<Shown> = console
        .audit
        .recent(&console.app, 200)
        .await
        .into_iter()
        .map(|e| Shown {
            at: fmt_ms(e.at),
            user: e.user,
            action: e.action,
            target: e.target,
            result: e.result,
        })
        .collect();
    console.render(
        StatusCode::OK,
        "audit.html",
        Some(&current),
        None,
        minijinja::context! { entries => Value::from(minijinja::value::Serde(&entries)) },
    )
}

/// What a job's sink answered, for the reference column: its own id when it gave one, else the
/// receipt ("wrote /srv/…"); nothing for the dispatch, whose receipt is the history's summary.
fn sink_reference(job: &Job) -> String {
    if job.kind == JobKind::Dispatch {
        return String::new();
    }
    job.reference
        .clone()
        .or_else(|| job.receipt.clone())
        .unwrap_or_default()
}
