//! The console's audit log: who did what to which invoice, when, and how it ended. The one place
//! the console writes and reads it; the store keeps it (`App::record_audit`,
//! `Records::audit_log`), beyond retention, across restarts and for every instance.

use crate::{App, store::AuditEntry};

/// The audit log, as the console writes and reads it.
#[derive(Debug, Default)]
pub(super) struct Audit;

impl Audit {
    /// Records that `user` did `action` to `target`, with `result`. The action has happened
    /// whatever becomes of this record: a store that cannot keep it is logged as an error,
    /// with the entry, so nothing is lost silently.
    pub(super) async fn record(
        &self,
        app: &App,
        user: &str,
        action: &str,
        target: &str,
        result: &str,
    ) {
        tracing::info!(target: "postbud::console::audit", user, action, target, result, "console action");
        if let Err(e) = app.record_audit(user, action, target, result).await {
            tracing::error!(target: "postbud::console::audit", user, action, target, result, error = %e, "the audit log could not keep this console action");
        }
    }

    /// Up to `limit` entries, newest first; none (and an error logged) when the store fails.
    pub(super) async fn recent(&self, app: &App, limit: u32) -> Vec<AuditEntry> {
        app.records().audit_log(None, limit).await.unwrap_or_else(|e| {
            tracing::error!(target: "postbud::console::audit", error = %e, "the audit log could not be read");
            Vec::new()
        })
    }
}
