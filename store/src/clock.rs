//! The store's clock. Leases, claims, rescues and due times are judged by one clock for every
//! instance sharing a database: on PostgreSQL the database server's, reached by correcting this
//! process's clock by its offset from the server's, measured at open and every
//! [`MEASURE_EVERY`] after. Without it a host whose clock runs ahead would take over jobs other
//! instances still run (a lease looks lapsed to it), and a capture under way could be sent a
//! second time. On SQLite the one host's clock is the only clock.
// Only the PostgreSQL store measures; a build without it keeps the type for its callers.
#![cfg_attr(not(feature = "postgres"), allow(dead_code))]

use std::{
    fmt,
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::Duration,
};

use super::Millis;

/// How often an instance measures its clock against the database's.
pub const MEASURE_EVERY: Duration = Duration::from_secs(5);

/// An offset beyond which `check`, `serve` at start and `/metrics` say this host's clock
/// differs from the database's.
pub const TOLERATED_OFFSET: Duration = Duration::from_secs(2);

/// What an offset means for an operator: within [`TOLERATED_OFFSET`] a plain statement,
/// beyond it a warning that starts with `!`.
pub fn describe(offset: Millis) -> String {
    let (seconds, way) = (
        offset.unsigned_abs() as f64 / 1000.0,
        if offset > 0 { "behind" } else { "ahead of" },
    );
    if offset.unsigned_abs() as u128 > TOLERATED_OFFSET.as_millis() {
        format!(
            "! this host's clock is {seconds:.1} s {way} the database's: leases and due times are judged by the database's clock, so work is safe, but fix this host's time (NTP)"
        )
    } else {
        format!(
            "this host's clock is within {:.1} s of the database's",
            seconds.max(0.1)
        )
    }
}

/// A process's own clock, in milliseconds since the Unix epoch. Tests give a store a clock
/// that runs ahead to play a host whose clock is wrong.
pub type LocalClock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// The system clock.
pub fn system() -> LocalClock {
    Arc::new(|| jiff::Timestamp::now().as_millisecond())
}

/// This process's clock corrected to the reference clock (the database's).
#[derive(Clone)]
pub struct StoreClock {
    local: LocalClock,
    /// Reference minus local, in milliseconds; [`i64::MIN`] until first measured.
    offset: Arc<AtomicI64>,
}

impl fmt::Debug for StoreClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreClock")
            .field("offset_ms", &self.offset())
            .finish()
    }
}

impl StoreClock {
    /// `local`, not yet measured against any reference.
    pub fn new(local: LocalClock) -> Self {
        Self {
            local,
            offset: Arc::new(AtomicI64::new(i64::MIN)),
        }
    }

    /// The local clock's reading, uncorrected.
    pub fn local(&self) -> Millis {
        (self.local)()
    }

    /// Now, by the reference clock (the local clock until the first measurement).
    pub fn now(&self) -> Millis {
        self.local().saturating_add(self.offset().unwrap_or(0))
    }

    /// Reference minus local, once measured.
    pub fn offset(&self) -> Option<Millis> {
        Some(self.offset.load(Ordering::Relaxed)).filter(|o| *o != i64::MIN)
    }

    /// Records a measurement: the reference read `reference` between the local readings
    /// `before` and `after` (the middle is the best guess of when it was read).
    pub fn measured(&self, before: Millis, reference: Millis, after: Millis) {
        let local = before + (after - before) / 2;
        self.offset
            .store(reference.saturating_sub(local), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_ahead_is_corrected_to_the_reference() {
        let ahead: LocalClock = Arc::new(|| 1_090_000);
        let clock = StoreClock::new(ahead);
        assert_eq!(
            (clock.now(), clock.offset()),
            (1_090_000, None),
            "unmeasured: local"
        );
        // The reference said 1,000,010 while the local clock read 1,090,000 .. 1,090,020.
        clock.measured(1_090_000, 1_000_010, 1_090_020);
        assert_eq!(clock.offset(), Some(-90_000));
        assert_eq!(clock.now(), 1_000_000);
    }
}
