//! The group-committing writer: makes commits durable.
//!
//! Commands commit their writes to fjall's journal and memtables as they run
//! (the bytes reach the OS before the reply, so a crash of the process loses
//! nothing acknowledged). What differs between fsync policies is when the
//! journal is fsynced:
//!
//! - `always`: a reply waits until this thread has fsynced past its commit.
//!   The thread takes every request waiting, reads the newest commit number,
//!   fsyncs once and publishes that number, so one fsync covers every commit
//!   that arrived while the previous one ran (group commit).
//! - `everysec`: it fsyncs once a second if anything was committed.
//! - `no`: the OS decides; only a clean shutdown fsyncs.
//!
//! A failed fsync is published as an error: the replies waiting on it become
//! errors (nothing is acknowledged that is not durable) and the engine stops
//! taking writes. Only a failed write or fsync of the journal itself gets
//! here: the fsync needs no new file descriptor (see [`Journal::follow`]),
//! so running out of descriptors, say after a burst of connections, cannot
//! poison the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::stats::SharedStats;
use super::storage::Journal;
use crate::{Error, Result};

/// When the journal is fsynced (`--appendfsync`, as in Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Before every reply to a write (group commit: one fsync per batch).
    Always,
    /// Once a second; a crash of the machine loses at most the last second.
    EverySec,
    /// Left to the operating system.
    No,
}

impl Fsync {
    /// The name used in flags, CONFIG and INFO.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }

    /// Parses a CONFIG SET value.
    pub fn parse(s: &str) -> Option<Fsync> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(Fsync::Always),
            "everysec" => Some(Fsync::EverySec),
            "no" => Some(Fsync::No),
            _ => None,
        }
    }

    /// Encodes for an atomic.
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    /// Decodes from an atomic.
    pub fn from_u8(v: u8) -> Fsync {
        match v {
            0 => Fsync::Always,
            1 => Fsync::EverySec,
            _ => Fsync::No,
        }
    }
}

/// What the writer has made durable.
#[derive(Debug, Clone, Default)]
struct Synced {
    /// Every commit up to this number is fsynced.
    lsn: u64,
    /// Set once an fsync has failed; sticky.
    failed: Option<String>,
}

/// Handle to the writer thread.
pub struct Durability {
    tx: mpsc::Sender<u64>,
    synced: watch::Receiver<Synced>,
}

/// Starts the writer thread.
///
/// # Errors
///
/// The thread cannot be spawned.
pub(crate) fn start(
    journal: Arc<dyn Journal>,
    policy: Arc<AtomicU8>,
    stats: Arc<SharedStats>,
) -> Result<Durability> {
    // While descriptors are plentiful.
    journal.follow();
    let (tx, rx) = mpsc::channel();
    let (synced_tx, synced) = watch::channel(Synced::default());
    std::thread::Builder::new()
        .name("delayd-writer".into())
        .spawn(move || run(&rx, journal.as_ref(), &policy, &stats, &synced_tx))?;
    Ok(Durability { tx, synced })
}

impl Durability {
    /// Waits until commit `lsn` is fsynced.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if an fsync failed.
    pub async fn wait(&self, lsn: u64) -> Result<()> {
        let mut rx = self.synced.clone();
        {
            let s = rx.borrow();
            if s.lsn >= lsn {
                return Ok(());
            }
            if let Some(f) = &s.failed {
                return Err(Error::storage(f.clone()));
            }
        }
        self.tx.send(lsn).map_err(|_| Error::ShuttingDown)?;
        let s = rx
            .wait_for(|s| s.lsn >= lsn || s.failed.is_some())
            .await
            .map_err(|_| Error::ShuttingDown)?;
        match &s.failed {
            Some(f) => Err(Error::storage(f.clone())),
            None => Ok(()),
        }
    }

    /// Fsyncs everything up to `lsn` whatever the policy (clean shutdown).
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] if the fsync failed.
    pub async fn flush(&self, lsn: u64) -> Result<()> {
        self.wait(lsn).await
    }
}

fn run(
    rx: &mpsc::Receiver<u64>,
    journal: &dyn Journal,
    policy: &AtomicU8,
    stats: &SharedStats,
    synced: &watch::Sender<Synced>,
) {
    let mut last_sync = Instant::now();
    loop {
        let requested = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(lsn) => Some(lsn),
            Err(RecvTimeoutError::Timeout) => {
                journal.follow();
                None
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut want = requested.unwrap_or(0);
        while let Ok(lsn) = rx.try_recv() {
            want = want.max(lsn);
        }
        let committed = stats.committed_lsn.load(Ordering::Acquire);
        let done = synced.borrow().lsn;
        let everysec = Fsync::from_u8(policy.load(Ordering::Relaxed)) == Fsync::EverySec
            && last_sync.elapsed() >= Duration::from_secs(1)
            && committed > done;
        if requested.is_none() && !everysec {
            continue;
        }
        if requested.is_some() && want <= done {
            // Already covered by an fsync that finished meanwhile.
            continue;
        }
        last_sync = Instant::now();
        let result = journal.sync();
        stats.record_fsync(
            result
                .as_ref()
                .err()
                .map(|e| format!("fsync failed: {}", e.detail())),
        );
        synced.send_modify(|s| match result {
            Ok(()) => s.lsn = s.lsn.max(committed),
            Err(e) => {
                tracing::error!("fsync failed: {e}");
                s.failed
                    .get_or_insert(format!("fsync failed: {}", e.detail()));
            }
        });
    }
}
