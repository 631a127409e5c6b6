//! The reconciliation sweeps' reports as the store keeps them, for `status`, `/metrics` and the
//! next sweep (the `reconcile` module runs them).

use serde::{Deserialize, Serialize};

use crate::store::{Millis, Store, StoreError};

/// Where the last sweep's report is kept, for `status` and `/metrics`.
pub const LAST_SWEEP_KEY: &str = "reconcile:last";

/// What one sweep saw and did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sweep {
    /// When it ran (store milliseconds).
    pub at: Millis,
    /// Authorized Kravia transactions listed.
    pub found: u64,
    /// Of those, transactions the store did not know.
    pub new: u64,
    /// Of those, transactions queued for dispatch.
    pub submitted: u64,
    /// Unknown here but captured already (by another deployment, a store restored from an old
    /// backup): left alone, since whoever captured them delivers them; count them to look.
    pub captured_elsewhere: u64,
    /// Skipped transactions looked at again (a status that moved on, Dintero's default).
    #[serde(default)]
    pub looked_again: u64,
    /// Listed transactions Postbud could not read, set aside (each is logged with its id).
    #[serde(default)]
    pub unreadable: u64,
    /// Voided transactions whose pending deliveries were stopped.
    pub voided: u64,
    /// Pages read.
    pub pages: u64,
    /// Why the sweep stopped early, if it did.
    pub error: Option<String>,
}

/// The last sweep's report kept in `store`.
pub async fn last_sweep(store: &dyn Store) -> Result<Option<Sweep>, StoreError> {
    Ok(store
        .meta(LAST_SWEEP_KEY)
        .await?
        .and_then(|json| serde_json::from_str(&json).ok()))
}
