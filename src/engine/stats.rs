//! Figures shared between the engine, the writer and INFO, without locks on
//! the hot path.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Engine-side counters read by INFO.
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Set when a batch was committed after the last fsync.
    pub unsynced: AtomicBool,
    /// Unix seconds of the last fsync.
    pub last_fsync_unix: AtomicU64,
    /// Number of fsyncs done.
    pub fsyncs: AtomicU64,
    /// Number of batches committed.
    pub commits: AtomicU64,
    /// Number (lsn) of the last commit that wrote something.
    pub committed_lsn: AtomicU64,
    /// Whether the last fsync succeeded.
    pub last_fsync_ok: AtomicBool,
    /// How long the start-up recovery took.
    pub recovery_ms: AtomicU64,
    /// Members found in the store at start-up.
    pub recovered_members: AtomicU64,
    /// The storage failure, if any.
    pub failure: Mutex<Option<String>>,
}

impl SharedStats {
    /// A fresh set of figures.
    pub fn new() -> Self {
        SharedStats {
            last_fsync_ok: AtomicBool::new(true),
            ..SharedStats::default()
        }
    }

    /// Records the outcome of an fsync.
    pub fn record_fsync(&self, error: Option<String>) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_fsync_unix.store(now, Ordering::Relaxed);
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        self.last_fsync_ok.store(error.is_none(), Ordering::Relaxed);
        if let Some(e) = error {
            self.set_failure(e);
        }
    }

    /// Records a storage failure for INFO.
    pub fn set_failure(&self, why: String) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(why);
        }
    }

    /// The storage failure, if any.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}
