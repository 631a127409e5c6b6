//! Logs that never stop the work: a writer for `tracing-subscriber` that drops a line it cannot
//! write (a full disk, a log pipe or shipper gone) and counts it, instead of failing. The fmt
//! layer reports a failed write by writing to stderr with `eprintln!`, which panics when stderr
//! is what failed: in a worker that panic is outside any attempt's guard and stops the worker.
//!
//! With `tracing-subscriber`: `fmt().with_writer(|| postbud::log_sink::LossyStderr)`, and
//! `.log_internal_errors(false)` so the layer never writes a complaint of its own.

use std::{
    io::{self, Write},
    sync::atomic::{AtomicU64, Ordering},
};

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Log writes dropped since the process started (`/metrics`: `postbud_log_writes_dropped`).
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Standard error, where a write that fails is counted and dropped, never an error.
#[derive(Debug, Clone, Copy, Default)]
pub struct LossyStderr;

impl Write for LossyStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if io::stderr().lock().write_all(buf).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().lock().flush();
        Ok(())
    }
}
