//! The operator's actions. Each POST is checked (session, CSRF token, operator role: 403
//! otherwise, nothing done), then confirmed (the first POST without `confirm=yes` only shows
//! what would be done), then done, written to the audit log, and answered with a redirect to
//! the page it came from, carrying a notice.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    extract::{Form, Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
};

use super::{Console, Current, pages};
use crate::{App, AppError, StoreError, triage::Filter};

/// Most invoices one "retry everything matching" touches.
pub(super) const BULK_CAP: u64 = 1000;

/// How long a void waits for Dintero to confirm a 202 before a job takes over; below the
/// server's request timeout.
const VOID_WAIT: Duration = Duration::from_secs(10);

/// `POST /console/invoices/{id}/{action}`: `retry`, `redeliver` (with `channel`), `void`.
pub(super) async fn invoice(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let current = match console.authorize_operator(&headers, &form).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let (what, question) = match action.as_str() {
        "retry" => (
            "retry now",
            "Requeue this invoice's failed and dead-lettered jobs for another attempt now?",
        ),
        "redeliver" => (
            "deliver again",
            "Deliver this invoice once more through the chosen channel?",
        ),
        "void" => (
            "void",
            "Void this invoice at Dintero? Only Dintero's confirmation stops the deliveries and sends cancellation notices; this cannot be undone.",
        ),
        _ => return not_found(&console, &current, "No such action.").await,
    };
    let Ok(id) = console.app.transaction_id(&id).map(str::to_owned) else {
        return not_found(&console, &current, "No such invoice in this store.").await;
    };
    match console.app.dispatch(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => return not_found(&console, &current, "No such invoice in this store.").await,
        Err(e) => return console.unavailable(&current, &e),
    }
    let channel = form.get("channel").cloned().unwrap_or_default();
    if action == "redeliver" && !console.app.settings().channels.contains_key(&channel) {
        return console
            .message(
                StatusCode::BAD_REQUEST,
                Some(&current),
                "Bad request",
                &format!("`{channel}` is not a configured channel; nothing was done"),
            )
            .await;
    }
    let back = pages::invoice_path(&console, &id);
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let mut fields = vec![("csrf", current.csrf.clone())];
        if action == "redeliver" {
            fields.push(("channel", channel.clone()));
        }
        let question = match action.as_str() {
            "redeliver" => format!("{question} ({channel})"),
            _ => question.to_owned(),
        };
        return confirm(
            &console,
            &current,
            what,
            &question,
            None,
            &format!("{back}/{action}"),
            &back,
            fields,
        );
    }
    let target = match action.as_str() {
        "redeliver" => format!("{id} via {channel}"),
        _ => id.clone(),
    };
    // The action and its audit entry run as a task of their own: a request cut off (the
    // server's timeout, a closed browser) must not cut off a void half-way or leave an action
    // done and unaudited.
    let result = {
        let console = Arc::clone(&console);
        let user = current.session.user.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let result = match action.as_str() {
                "retry" => retry(&console.app, &id).await,
                "redeliver" => redeliver(&console.app, &id, &channel).await,
                _ => void(&console.app, &id).await,
            };
            console
                .audit
                .record(&console.app, &user, &action, &target, &result)
                .await;
            result
        })
        .await
        .unwrap_or_else(|e| format!("the action stopped unexpectedly: {e}"))
    };
    let flash = console.flash(&format!("{what}: {result}")).await;
    super::see_other(&format!("{back}?{flash}"))
}

/// Requeues the invoice's failed and dead-lettered jobs; the workers of `postbud serve` run them.
async fn retry(app: &App, id: &str) -> String {
    match app.retry(id, None).await {
        Ok(0) => "nothing to retry".into(),
        Ok(n) => format!("{n} job(s) requeued"),
        Err(e) => failed(&e),
    }
}

/// A new delivery through one channel of the deployment (a double click queues one).
async fn redeliver(app: &App, id: &str, channel: &str) -> String {
    match app.redeliver(id, channel).await {
        Ok(done) if done.queued => format!("a new delivery through {channel} is queued"),
        Ok(_) => format!(
            "a delivery through {channel} was asked for moments ago or is still pending: nothing new was queued"
        ),
        Err(e) => format!("refused: {e}"),
    }
}

/// Voids at Dintero as `postbud void` does.
async fn void(app: &App, id: &str) -> String {
    match app.void(id, VOID_WAIT).await {
        Ok(report) if report.pending => format!(
            "Dintero accepted the void but has not confirmed it yet; nothing is cancelled until it does (status {})",
            report.status
        ),
        Ok(report) if report.already_voided => {
            format!("already voided at Dintero (status {})", report.status)
        }
        Ok(report) => format!("voided at Dintero (status {})", report.status),
        Err(e @ AppError::VoidRefused(_)) => format!("refused: {e}"),
        Err(e) => {
            tracing::error!(error = %e, "a console void failed");
            format!("failed: {e}")
        }
    }
}

fn failed(e: &StoreError) -> String {
    tracing::error!(error = %e, "a console action failed");
    format!("failed: {e}")
}

/// `POST /console/retry-matching`: every invoice matching the list's filter, up to
/// [`BULK_CAP`], after a confirmation that shows how many match.
pub(super) async fn retry_matching(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let current = match console.authorize_operator(&headers, &form).await {
        Ok(c) => c,
        Err(response) => return response,
    };
    let channels: Vec<String> = console.app.settings().channels.keys().cloned().collect();
    let filter_form = pages::FilterForm::read(&form);
    let filter = match filter_form.filter(&channels) {
        Ok(filter) => filter,
        Err(problem) => {
            return console
                .message(
                    StatusCode::BAD_REQUEST,
                    Some(&current),
                    "Bad request",
                    &problem,
                )
                .await;
        }
    };
    let list = {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in filter_form.pairs() {
            query.append_pair(name, &value);
        }
        format!("{}/invoices?{}", console.root, query.finish())
    };
    if form.get("confirm").map(String::as_str) != Some("yes") {
        let count = match count_matching(&console.app, &filter, BULK_CAP).await {
            Ok(count) => count,
            Err(e) => return console.unavailable(&current, &e),
        };
        let mut fields = vec![("csrf", current.csrf.clone())];
        fields.extend(filter_form.pairs());
        let page = console.render(
            StatusCode::OK,
            "confirm.html",
            Some(&current),
            None,
            minijinja::context! {
                what => "retry everything matching",
                question => "Requeue the failed and dead-lettered jobs of every invoice matching this filter?",
                count,
                capped => count >= BULK_CAP,
                cap => BULK_CAP,
                action => format!("{}/retry-matching", console.root),
                back => list,
                fields => minijinja::Value::from(minijinja::value::Serde(&fields)),
            },
        );
        return page;
    }
    let target = match filter_form.pairs() {
        pairs if pairs.is_empty() => "every invoice".to_owned(),
        pairs => pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
    };
    // A task of its own, as the single actions: a request cut off does not cut the batches off
    // or leave them unaudited.
    let result = {
        let console = Arc::clone(&console);
        let user = current.session.user.clone();
        tokio::spawn(async move {
            let result = match retry_matching_now(&console.app, &filter, BULK_CAP).await {
                Ok((matched, requeued)) => {
                    format!("{matched} invoice(s) matched, {requeued} job(s) requeued")
                }
                Err(e) => failed(&e),
            };
            console
                .audit
                .record(&console.app, &user, "retry-matching", &target, &result)
                .await;
            result
        })
        .await
        .unwrap_or_else(|e| format!("the action stopped unexpectedly: {e}"))
    };
    let flash = console
        .flash(&format!("retry everything matching: {result}"))
        .await;
    let joiner = if list.ends_with('?') { "" } else { "&" };
    super::see_other(&format!("{list}{joiner}{flash}"))
}

/// How many invoices match the filter, counting up to `cap` (the store pages through them in
/// bounded batches).
async fn count_matching(app: &App, filter: &Filter, cap: u64) -> Result<u64, StoreError> {
    app.count_matching(filter, cap).await
}

/// Retries up to `cap` matching invoices (their failed and dead-lettered jobs, as `postbud
/// retry` does), in bounded batches: how many matched and how many jobs were requeued.
async fn retry_matching_now(
    app: &App,
    filter: &Filter,
    cap: u64,
) -> Result<(u64, u64), StoreError> {
    let done = app.retry_matching(filter, cap).await?;
    Ok((done.matched, done.requeued))
}

#[allow(clippy::too_many_arguments)]
fn confirm(
    console: &Console,
    current: &Current,
    what: &str,
    question: &str,
    count: Option<u64>,
    action: &str,
    back: &str,
    fields: Vec<(&'static str, String)>,
) -> Response {
    console.render(
        StatusCode::OK,
        "confirm.html",
        Some(current),
        None,
        minijinja::context! { what, question, count, capped => false, cap => BULK_CAP, action, back, fields => minijinja::Value::from(minijinja::value::Serde(&fields)) },
    )
}

async fn not_found(console: &Console, current: &Current, message: &str) -> Response {
    console
        .message(StatusCode::NOT_FOUND, Some(current), "Not found", message)
        .await
}
