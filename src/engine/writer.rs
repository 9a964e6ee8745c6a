//! The group-committing writer: makes rounds durable, then releases replies.
//!
//! The engine thread applies each round of commands to memory and commits
//! it as one fjall batch (journal append plus memtable insert, no fsync), so
//! the store always agrees with memory. What differs between fsync policies
//! is when replies may go out:
//!
//! - `always`: every round is handed to this thread. It takes all rounds
//!   waiting, fsyncs once for all of them (group commit), then sends their
//!   replies in order. While it fsyncs, the engine keeps building the next
//!   rounds, so one fsync covers everything that arrived meanwhile.
//! - `everysec`: the engine sends replies as soon as the batch is in the OS
//!   (it survives a crash of the process); this thread fsyncs once a second.
//! - `no`: the OS decides when to write back.
//!
//! A failed fsync turns the replies it covered into errors (nothing is
//! acknowledged that is not durable) and tells the engine to refuse writes.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use super::stats::SharedStats;
use super::store::Syncer;
use super::{Request, Round};
use crate::config::Fsync;

/// Messages to the writer thread.
pub enum WriterMsg {
    /// A round whose replies wait for durability (`always`), or for rounds
    /// before it to become durable.
    Round(Round),
    /// Fsync now and answer (used at shutdown).
    Flush(std::sync::mpsc::Sender<crate::Result<()>>),
}

/// Runs the writer loop until every sender is gone.
pub fn run(
    rx: Receiver<WriterMsg>,
    syncer: Syncer,
    policy: Arc<std::sync::atomic::AtomicU8>,
    engine: Sender<Request>,
    stats: Arc<SharedStats>,
) {
    let mut last_sync = Instant::now();
    let mut rounds: Vec<Round> = Vec::new();
    loop {
        let msg = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut flushes = Vec::new();
        let mut take = |m: WriterMsg| match m {
            WriterMsg::Round(r) => rounds.push(r),
            WriterMsg::Flush(tx) => flushes.push(tx),
        };
        if let Some(m) = msg {
            take(m);
        }
        while let Ok(m) = rx.try_recv() {
            take(m);
        }
        let everysec_due = Fsync::from_u8(policy.load(Ordering::Relaxed)) == Fsync::EverySec
            && last_sync.elapsed() >= Duration::from_secs(1)
            && stats.unsynced.load(Ordering::Relaxed);
        let must_sync = rounds.iter().any(|r| r.dirty) || !flushes.is_empty() || everysec_due;
        let result = if must_sync {
            last_sync = Instant::now();
            stats.unsynced.store(false, Ordering::Relaxed);
            let r = syncer.sync();
            stats.record_fsync(r.as_ref().err().map(ToString::to_string));
            r
        } else {
            Ok(())
        };
        if let Err(e) = &result {
            let _ = engine.send(Request::StorageFailed(format!("fsync failed: {e}")));
        }
        for mut round in rounds.drain(..) {
            if let Err(e) = &result
                && round.dirty
            {
                round.fail(&format!("fsync failed: {e}"));
            }
            let lost = round.release();
            if !lost.is_empty() {
                let _ = engine.send(Request::Restore(lost));
            }
        }
        for tx in flushes {
            let _ = tx.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(crate::Error::Storage(e.to_string())),
            });
        }
    }
}
