//! Wall-clock time for due times, injectable for tests.
//!
//! Due times are Unix milliseconds (what producers send with `AT`), so the
//! engine reads the wall clock to decide what is due; it only *sleeps* on the
//! monotonic clock. Tests swap in a [`ManualClock`] to step time (including
//! backwards) deterministically.

#[cfg(test)]
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_us(&self) -> u64;

    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64 {
        self.now_us() / 1000
    }
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> u64 {
        // A clock before 1970 reads as 0: nothing becomes due early because of it.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64)
    }
}

/// A clock that moves only when told to (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

#[cfg(test)]
impl ManualClock {
    /// A clock reading `ms` milliseconds.
    pub fn new(ms: u64) -> Self {
        ManualClock(AtomicU64::new(ms * 1000))
    }

    /// Sets the time to `ms` (may go backwards, like a stepped wall clock).
    pub fn set_ms(&self, ms: u64) {
        self.0.store(ms * 1000, Ordering::SeqCst);
    }

    /// Moves the time forward by `ms`.
    pub fn advance_ms(&self, ms: u64) {
        self.0.fetch_add(ms * 1000, Ordering::SeqCst);
    }
}

#[cfg(test)]
impl Clock for ManualClock {
    fn now_us(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}
