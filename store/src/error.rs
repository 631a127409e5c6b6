//! [`StoreError`]: what went wrong in the store, apart from whether to try again.
//!
//! The shape is the SDK's: private fields, a [`StoreErrorKind`] that says what happened, a retry
//! class derived from it ([`StoreError::is_temporary`]) and the driver's error kept as the
//! [`source`](std::error::Error::source). Each backend classifies its driver's errors at the
//! edge, in one function per backend (`classify` in `sqlite/db.rs` and in `postgres.rs`).

use std::{error::Error as StdError, fmt, sync::Arc};

/// What happened in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreErrorKind {
    /// The lease lapsed and the job was claimed again (or cancelled): the write was refused.
    LeaseLost,
    /// There is no store where the configuration says, or this build cannot open its kind, and
    /// this command does not create one.
    Missing,
    /// The store URL or the file it names cannot be used as a store.
    Misconfigured,
    /// The database refused this user or process (a password, a privilege, a read-only file).
    Denied,
    /// The database cannot be reached or read now (connection refused or lost, an I/O error, a
    /// pool exhausted).
    Unavailable,
    /// The database is busy: a lock held too long, a serialization failure, a deadlock.
    Busy,
    /// A write conflicts with what is stored (a constraint violation).
    Conflict,
    /// What is stored does not read back (an unknown name, a NULL the schema forbids, a snapshot
    /// that is not JSON, a damaged file).
    Corrupt,
    /// The store sent the database a statement or value it rejects: a bug in this crate.
    Invalid,
    /// The disk or the database's quota is full.
    DiskFull,
    /// Anything else the database reported.
    Other,
}

impl StoreErrorKind {
    /// Whether an error of this kind may pass if the same work is tried again later.
    pub fn is_temporary(self) -> bool {
        matches!(
            self,
            Self::Unavailable | Self::Busy | Self::DiskFull | Self::Other
        )
    }
}

/// An error of the store: its [kind](StoreErrorKind), a message for the operator and, where a
/// driver reported it, the driver's error as its source.
#[derive(Debug, Clone)]
pub struct StoreError {
    kind: StoreErrorKind,
    message: String,
    source: Option<Arc<dyn StdError + Send + Sync>>,
}

impl StoreError {
    /// An error of `kind`, saying `message`.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// The same error, caused by `source`.
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// A write under the lease on job `job_id` was refused: another worker took the job over,
    /// or it was cancelled.
    pub fn lease_lost(job_id: &str) -> Self {
        Self::new(
            StoreErrorKind::LeaseLost,
            format!(
                "lease on job {job_id} was lost: another worker took it over or it was cancelled; this write was refused"
            ),
        )
    }

    /// There is no store where the configuration says; `message` says where and what to do.
    pub fn missing(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Missing, message)
    }

    /// What is stored does not read back as it was written.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::Corrupt, message)
    }

    /// What happened.
    pub fn kind(&self) -> StoreErrorKind {
        self.kind
    }

    /// Whether trying the same work again later may succeed (the retry class).
    pub fn is_temporary(&self) -> bool {
        self.kind.is_temporary()
    }

    /// Whether this is a write refused because the lease on its job was lost.
    pub fn is_lease_lost(&self) -> bool {
        self.kind == StoreErrorKind::LeaseLost
    }

    /// The message, without the `store:` prefix the display adds to database errors.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            // Said as they are: each names what to do.
            StoreErrorKind::LeaseLost | StoreErrorKind::Missing => f.write_str(&self.message),
            _ => write!(f, "store: {}", self.message),
        }
    }
}

impl StdError for StoreError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_retry_class_follows_what_happened() {
        for kind in [
            StoreErrorKind::Unavailable,
            StoreErrorKind::Busy,
            StoreErrorKind::DiskFull,
        ] {
            assert!(StoreError::new(kind, "x").is_temporary(), "{kind:?}");
        }
        for kind in [
            StoreErrorKind::LeaseLost,
            StoreErrorKind::Missing,
            StoreErrorKind::Conflict,
            StoreErrorKind::Corrupt,
            StoreErrorKind::Invalid,
            StoreErrorKind::Denied,
        ] {
            assert!(!StoreError::new(kind, "x").is_temporary(), "{kind:?}");
        }
    }

    #[test]
    fn the_cause_is_kept_as_the_source() {
        let io = std::io::Error::other("disk on fire");
        let e = StoreError::new(StoreErrorKind::Unavailable, "reading").with_source(io);
        assert_eq!(e.to_string(), "store: reading");
        assert_eq!(e.source().expect("a source").to_string(), "disk on fire");
        let lost = StoreError::lease_lost("dsp-1");
        assert!(lost.is_lease_lost() && lost.source().is_none());
        assert!(lost.to_string().starts_with("lease on job dsp-1 was lost"));
    }
}
