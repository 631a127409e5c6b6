//! The console's audit log: who did what to which invoice, when, and how it ended. The one place
//! the console writes and reads it.
//!
//! Kept in memory (the newest [`KEPT`] entries) and logged at `info` with target
//! `postbud::console::audit` until the store has an audit table; then [`Audit::record`] and
//! [`Audit::recent`] call `App::record_audit` / `Records::audit_log` instead, and nothing else
//! in the console changes.

use std::{collections::VecDeque, sync::Mutex};

use serde::Serialize;

use crate::{App, store::Millis};

/// Entries kept in memory.
const KEPT: usize = 10_000;

/// One action, as the audit page shows it.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Entry {
    pub(super) at: Millis,
    pub(super) user: String,
    pub(super) action: String,
    pub(super) target: String,
    pub(super) result: String,
}

/// The audit log.
#[derive(Debug, Default)]
pub(super) struct Audit {
    entries: Mutex<VecDeque<Entry>>,
}

impl Audit {
    /// Records that `user` did `action` to `target`, with `result`.
    pub(super) async fn record(
        &self,
        _app: &App,
        user: &str,
        action: &str,
        target: &str,
        result: &str,
    ) {
        tracing::info!(target: "postbud::console::audit", user, action, target, result, "console action");
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() == KEPT {
            entries.pop_front();
        }
        entries.push_back(Entry {
            at: crate::store::now_ms(),
            user: user.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            result: result.to_owned(),
        });
    }

    /// Up to `limit` entries, newest first.
    pub(super) async fn recent(&self, _app: &App, limit: usize) -> Vec<Entry> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.iter().rev().take(limit).cloned().collect()
    }
}
