//! The configured channel instances, by name: what the delivery and void jobs send through,
//! what `check` probes and what the server hands a provider's delivery report to.

use std::{collections::BTreeMap, fmt, sync::Arc};

use postbud_channel::{Channel, ChannelError, Directory, Evidence, InboundReport};

/// The channel instances built from `[channels.*]`, looked up by their name.
#[derive(Clone, Default)]
pub struct Channels {
    by_name: BTreeMap<String, Arc<dyn Channel>>,
}

impl Channels {
    /// The channel instances `by_name` (as [`postbud_channel::Registry::build_all`] builds
    /// them).
    pub fn new(by_name: BTreeMap<String, Arc<dyn Channel>>) -> Self {
        Self { by_name }
    }

    /// The instance called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Channel>> {
        self.by_name.get(name)
    }

    /// The names of every instance, in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// Whether the instance `name` is configured and can send a cancellation notice.
    pub fn can_cancel(&self, name: &str) -> bool {
        self.get(name).is_some_and(|c| c.supports_cancel())
    }

    /// Why a job for `name` cannot run: the instance is not configured (any more).
    pub fn not_configured(&self, name: &str) -> String {
        format!(
            "channel `{name}` is not configured any more (configured: [{}]); `postbud retry` once it is back",
            self.names().collect::<Vec<_>>().join(", ")
        )
    }

    /// The first instance (in name order) whose directory answers for `network` (`peppol`).
    pub fn directory(&self, network: &str) -> Option<Arc<dyn Directory>> {
        self.by_name
            .values()
            .filter_map(|c| c.directory())
            .find(|d| d.network() == network)
    }

    /// Probes every instance, in order: what `postbud check` shows.
    pub async fn check(&self) -> Vec<(String, Result<String, ChannelError>)> {
        let mut results = Vec::with_capacity(self.by_name.len());
        for (name, channel) in &self.by_name {
            results.push((name.clone(), channel.check().await));
        }
        results
    }

    /// The instance `name`'s reading of a provider's status callback; `None` when no instance
    /// has that name.
    pub async fn report(
        &self,
        name: &str,
        report: &InboundReport,
    ) -> Option<Result<Vec<Evidence>, ChannelError>> {
        Some(self.get(name)?.report(report).await)
    }
}

impl From<BTreeMap<String, Arc<dyn Channel>>> for Channels {
    fn from(by_name: BTreeMap<String, Arc<dyn Channel>>) -> Self {
        Self::new(by_name)
    }
}

impl fmt::Debug for Channels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}
