//! The real storage: batches made durable in delayd's own log ([`Wal`]) and
//! applied to fjall behind it by a thread of their own.
//!
//! The engine's round appends its batch to the log and to an overlay of
//! batches not yet applied, and returns at once; fjall's commit (memtable
//! inserts, its journal lock, write stalls, the fsyncs its workers make
//! under that lock) happens on the applier thread, so neither a reply nor
//! the timer firing due members waits for LSM maintenance. Reads see the
//! overlay first, then fjall.
//!
//! Why reads stay exact while the applier runs: an overlay entry is removed
//! only after its batch is in fjall, and only if no later batch wrote the
//! same key; a read looks at the overlay first and at fjall after (a scan
//! takes its part of the overlay before opening fjall's iterator), so a
//! write is always in at least one of the two places it looks.
//!
//! Restart: fjall records, in each batch it applies, the log number of that
//! batch (`wal-applied` in the meta space, atomically with the batch). At
//! open the log is read and every batch after that number is applied again,
//! before anything is served. The log's old segments are deleted once
//! fjall's own journal has been fsynced past them (a checkpoint every
//! [`CHECKPOINT_BYTES`] of log).
//!
//! A restart reads fjall's journal (fjall replays it at open: up to ~64 MB,
//! fjall seals it only past that) and every log segment on disk (the batches
//! after `wal-applied` are applied again). A closed segment is deleted as
//! soon as fjall holds its last batch, not one checkpoint later, so the log
//! on disk stays under about [`CHECKPOINT_BYTES`].

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fjall::FjallStorage;
use super::overlay::Overlay;
use super::wal::{Wal, lock};
use super::{Batch, Journal, Op, Scan, Space, Storage};
use crate::{Error, Result};

/// The meta key holding the log number of the last batch fjall applied.
const APPLIED_KEY: &[u8] = b"wal-applied";

/// Log bytes after which the applier checkpoints: closes the log's
/// segment, then, once fjall holds its last batch, fsyncs fjall's journal
/// and deletes the segment (bounds the log on disk, all of which is read at
/// restart; reading 64 MiB of it did not show in the restart's CPU time,
/// BENCHMARKS.md, session 5).
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

/// Batches queued for the applier before a round waits for it (a round
/// waits only if fjall stalls for longer than these take to come).
const QUEUED_BATCHES: usize = 4096;

/// Writes held in the overlay before a round waits for the applier: bounds
/// the memory a burst (`redis-cli --pipe`, whose rounds are thousands of
/// commands) can take while fjall is behind.
const MAX_UNAPPLIED: usize = 128 * 1024;

/// How long the applier sleeps when it finds nothing queued. A round never
/// wakes it (a wake-up per round would cost a context switch per command
/// at pipeline 1); what comes meanwhile is applied as one fjall batch.
const APPLY_INTERVAL: Duration = Duration::from_millis(1);

/// Longest a clean shutdown waits for the applier to catch up.
const DRAIN_WAIT: Duration = Duration::from_secs(10);

/// What the engine and the applier share.
struct Shared {
    overlay: Mutex<Overlay>,
    /// Log number of the last batch in fjall.
    applied: AtomicU64,
    /// Why applying failed: nothing more is applied or taken.
    failed: Mutex<Option<String>>,
    /// Signalled when `applied` moves.
    progress: Condvar,
    progress_lock: Mutex<()>,
    /// Batches for the applier, in log order.
    queue: Mutex<Queue>,
    /// Signalled when the queue has room again.
    room: Condvar,
}

#[derive(Default)]
struct Queue {
    batches: Vec<Applying>,
    /// Set when the storage is dropped: the applier drains and stops.
    closing: bool,
}

impl Shared {
    fn failure(&self) -> Option<String> {
        lock(&self.failed).clone()
    }

    fn fail(&self, why: String) {
        tracing::error!("{why}");
        lock(&self.failed).get_or_insert(why);
        self.progress.notify_all();
    }
}

/// A batch on its way to fjall.
struct Applying {
    seq: u64,
    ops: Vec<Op>,
}

/// fjall behind delayd's log.
pub(crate) struct LoggedStorage {
    fjall: Arc<FjallStorage>,
    wal: Arc<Wal>,
    shared: Arc<Shared>,
    applier: Option<JoinHandle<()>>,
}

impl LoggedStorage {
    /// Opens fjall and the log in `dir` and applies to fjall the batches of
    /// the log it does not have yet.
    ///
    /// # Errors
    ///
    /// fjall or the log cannot be opened, or the log is corrupt.
    pub(crate) fn open(dir: &Path) -> Result<LoggedStorage> {
        let fjall = Arc::new(FjallStorage::open(dir)?);
        let applied = applied_seq(&fjall)?;
        let (wal, records) = Wal::open(&dir.join("wal"), applied)?;
        let replayed = records.len();
        let mut last = applied;
        for r in records {
            apply_numbered(&fjall, r.seq, r.ops)?;
            last = r.seq;
        }
        if replayed > 0 {
            tracing::info!("applied {replayed} batches from the write-ahead log");
        }
        let shared = Arc::new(Shared {
            overlay: Mutex::default(),
            applied: AtomicU64::new(last),
            failed: Mutex::new(None),
            progress: Condvar::new(),
            progress_lock: Mutex::new(()),
            queue: Mutex::default(),
            room: Condvar::new(),
        });
        let wal = Arc::new(wal);
        let applier = {
            let (fjall, wal, shared) = (fjall.clone(), wal.clone(), shared.clone());
            std::thread::Builder::new()
                .name("delayd-applier".into())
                .spawn(move || run_applier(&fjall, &wal, &shared))?
        };
        Ok(LoggedStorage {
            fjall,
            wal,
            shared,
            applier: Some(applier),
        })
    }

    /// Waits until fjall has every batch the log has (bounded).
    fn drain(&self) -> Result<()> {
        let target = self.wal.last_seq();
        let deadline = Instant::now() + DRAIN_WAIT;
        let mut g = lock(&self.shared.progress_lock);
        loop {
            if let Some(f) = self.shared.failure() {
                return Err(Error::storage(f));
            }
            if self.shared.applied.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::storage(
                    "fjall did not catch up with the write-ahead log in time; the log keeps the rest",
                ));
            }
            g = match self
                .shared
                .progress
                .wait_timeout(g, left.min(Duration::from_millis(50)))
            {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

/// The log number of the last batch fjall holds.
fn applied_seq(fjall: &FjallStorage) -> Result<u64> {
    match fjall.get(Space::Meta, APPLIED_KEY)? {
        Some(v) => v
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| Error::storage("corrupt wal-applied record")),
        None => Ok(0),
    }
}

/// Applies batch `seq` to fjall with its number, atomically.
fn apply_numbered(fjall: &FjallStorage, seq: u64, mut ops: Vec<Op>) -> Result<Vec<Op>> {
    ops.push(Op::Put(
        Space::Meta,
        APPLIED_KEY.to_vec(),
        seq.to_be_bytes().to_vec(),
    ));
    fjall.apply(&ops)?;
    ops.pop();
    Ok(ops)
}

fn run_applier(fjall: &FjallStorage, wal: &Wal, shared: &Shared) {
    let mut upkeep = Upkeep::default();
    loop {
        let (batches, closing) = {
            let mut q = lock(&shared.queue);
            (std::mem::take(&mut q.batches), q.closing)
        };
        shared.room.notify_all();
        if batches.is_empty() {
            if closing {
                return;
            }
            if shared.failure().is_none() {
                upkeep.run(fjall, wal, shared.applied.load(Ordering::Acquire));
            }
            std::thread::park_timeout(APPLY_INTERVAL);
            continue;
        }
        if shared.failure().is_some() {
            // Keep the overlay: it holds acknowledged writes, which the log
            // gives back at the next start.
            continue;
        }
        // Every batch found is applied as one fjall batch, numbered by the
        // last: fjall holds all of them or, after a crash, none.
        let Some(last) = batches.last().map(|b| b.seq) else {
            continue;
        };
        let bounds: Vec<(u64, usize)> = batches.iter().map(|b| (b.seq, b.ops.len())).collect();
        let ops: Vec<Op> = batches.into_iter().flat_map(|b| b.ops).collect();
        match apply_numbered(fjall, last, ops) {
            Ok(ops) => {
                {
                    let mut overlay = lock(&shared.overlay);
                    let mut at = 0;
                    for (seq, n) in bounds {
                        overlay.retire(seq, &ops[at..at + n]);
                        at += n;
                    }
                }
                shared.applied.store(last, Ordering::Release);
                shared.room.notify_all();
                let _g = lock(&shared.progress_lock);
                shared.progress.notify_all();
            }
            Err(e) => {
                shared.fail(format!(
                    "applying the write-ahead log to the store failed: {}",
                    e.detail()
                ));
                continue;
            }
        }
        upkeep.run(fjall, wal, last);
    }
}

/// The applier's checkpoints, done between batches: the less of the log is
/// on disk at a crash, the less is read before serving.
struct Upkeep {
    /// The log was rotated for a checkpoint and its closed segments end at
    /// or before this batch: they are deleted once fjall holds it.
    closed_through: Option<u64>,
    /// Log bytes in the current segment before the next checkpoint is
    /// tried (moved on after a failure, so it is not retried per batch).
    checkpoint_at: u64,
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep {
            closed_through: None,
            checkpoint_at: CHECKPOINT_BYTES,
        }
    }
}

impl Upkeep {
    /// `applied`: the last batch in fjall. Failures are logged, not fatal:
    /// the log keeps everything meanwhile.
    fn run(&mut self, fjall: &FjallStorage, wal: &Wal, applied: u64) {
        let bytes = wal.current_bytes();
        if let Some(end) = self.closed_through {
            if applied >= end {
                // fsync fjall's journal (fjall holds every batch of the
                // closed segments), then delete them.
                match fjall.persist() {
                    Ok(()) => {
                        wal.drop_through(applied);
                        self.closed_through = None;
                        self.checkpoint_at = CHECKPOINT_BYTES;
                    }
                    Err(e) => {
                        tracing::warn!("fsyncing fjall's journal failed (the log keeps all): {e}");
                        self.closed_through = None;
                        self.checkpoint_at = bytes.saturating_add(CHECKPOINT_BYTES);
                    }
                }
            }
        } else if bytes >= self.checkpoint_at {
            match wal.rotate() {
                // Every batch of the closed segment is numbered at most the
                // log's last now (records may have come since: then this
                // waits a little longer than needed).
                Ok(()) => self.closed_through = Some(wal.last_seq()),
                Err(e) => {
                    tracing::warn!(
                        "rotating the write-ahead log failed (it goes on in one segment): {e}"
                    );
                    self.checkpoint_at = bytes.saturating_add(CHECKPOINT_BYTES);
                }
            }
        }
    }
}

/// Makes fjall durable up to batch `applied` and deletes the log segments
/// it covers. A failure is not fatal: the log keeps everything meanwhile.
fn checkpoint(fjall: &FjallStorage, wal: &Wal, applied: u64) -> Result<()> {
    if let Err(e) = wal.rotate() {
        tracing::warn!("rotating the write-ahead log failed (it goes on in one segment): {e}");
        return Err(e);
    }
    fjall.persist()?;
    wal.drop_through(applied);
    Ok(())
}

impl Storage for LoggedStorage {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Overlay::get_over(&self.shared.overlay, space, key, || {
            self.fjall.get(space, key)
        })
    }

    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>, reverse: bool) -> Scan<'_> {
        Overlay::scan_over(&self.shared.overlay, space, from, to, reverse, || {
            self.fjall.scan(space, from, to, reverse)
        })
    }

    fn apply(&mut self, batch: Batch) -> Result<()> {
        if let Some(f) = self.shared.failure() {
            return Err(Error::storage(f));
        }
        let seq = self.wal.append(&batch.ops)?;
        let unapplied = {
            let mut overlay = lock(&self.shared.overlay);
            overlay.insert(seq, &batch.ops);
            overlay.len()
        };
        let mut q = lock(&self.shared.queue);
        let mut full = unapplied >= MAX_UNAPPLIED || q.batches.len() >= QUEUED_BATCHES;
        while full && self.shared.failure().is_none() {
            // fjall is stalled: wait for the applier rather than grow.
            if let Some(t) = &self.applier {
                t.thread().unpark();
            }
            q = match self.shared.room.wait_timeout(q, APPLY_INTERVAL) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            // What this round queued is not counted: it is applied next.
            full = q.batches.len() >= QUEUED_BATCHES
                || lock(&self.shared.overlay).len() >= MAX_UNAPPLIED + batch.ops.len();
        }
        q.batches.push(Applying {
            seq,
            ops: batch.ops,
        });
        Ok(())
    }

    fn journal(&self) -> Arc<dyn Journal> {
        Arc::new(WalJournal(self.wal.clone()))
    }

    fn flush(&self) -> Result<()> {
        self.wal.write()?;
        self.drain()?;
        self.fjall.flush()?;
        checkpoint(
            &self.fjall,
            &self.wal,
            self.shared.applied.load(Ordering::Acquire),
        )
    }

    fn disk_space(&self) -> u64 {
        self.fjall.disk_space() + self.wal.disk_space()
    }
}

impl Drop for LoggedStorage {
    fn drop(&mut self) {
        // The applier finishes what is queued, then stops.
        lock(&self.shared.queue).closing = true;
        if let Some(t) = self.applier.take() {
            t.thread().unpark();
            if t.join().is_err() {
                tracing::error!("the store's applier thread panicked");
            }
        }
    }
}

/// The log as the engine's journal.
struct WalJournal(Arc<Wal>);

impl Journal for WalJournal {
    fn write(&self) -> Result<()> {
        self.0.write()
    }

    fn sync(&self) -> Result<()> {
        self.0.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> Op {
        Op::Put(Space::Members, k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    fn all(s: &LoggedStorage, reverse: bool) -> Vec<(String, String)> {
        s.scan(Space::Members, b"", None, reverse)
            .map(|e| {
                let (k, v) = e.unwrap();
                (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap())
            })
            .collect()
    }

    fn batch(ops: Vec<Op>) -> Batch {
        Batch { lsn: 0, ops }
    }

    #[test]
    fn reads_see_every_batch_whether_applied_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LoggedStorage::open(dir.path()).unwrap();
        for i in 0..200 {
            s.apply(batch(vec![put(&format!("k{i:03}"), &format!("v{i}"))]))
                .unwrap();
            if i % 3 == 0 {
                s.apply(batch(vec![Op::Delete(
                    Space::Members,
                    format!("k{i:03}").into_bytes(),
                )]))
                .unwrap();
            }
            // Whatever the applier has done so far, reads are exact.
            let got = s
                .get(Space::Members, format!("k{i:03}").as_bytes())
                .unwrap();
            let want = (i % 3 != 0).then(|| format!("v{i}").into_bytes());
            assert_eq!(got, want, "{i}");
        }
        let fwd = all(&s, false);
        assert_eq!(fwd.len(), 133);
        let mut rev = all(&s, true);
        rev.reverse();
        assert_eq!(fwd, rev);
        s.apply(batch(vec![Op::Clear(Space::Members), put("after", "x")]))
            .unwrap();
        assert_eq!(all(&s, false), vec![("after".into(), "x".into())]);
        s.drain().unwrap();
        assert_eq!(lock(&s.shared.overlay).len(), 0);
        assert_eq!(all(&s, false), vec![("after".into(), "x".into())]);
    }

    #[test]
    fn a_burst_larger_than_the_overlay_bound_waits_and_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = LoggedStorage::open(dir.path()).unwrap();
        let per = MAX_UNAPPLIED / 2 + 1;
        for b in 0..3 {
            let ops = (0..per).map(|i| put(&format!("{b}:{i:07}"), "v")).collect();
            s.apply(batch(ops)).unwrap();
            assert!(lock(&s.shared.overlay).len() <= MAX_UNAPPLIED + per);
        }
        assert_eq!(s.scan(Space::Members, b"", None, false).count(), 3 * per);
        s.drain().unwrap();
        assert_eq!(lock(&s.shared.overlay).len(), 0);
        assert_eq!(s.scan(Space::Members, b"", None, true).count(), 3 * per);
    }

    #[test]
    fn a_closed_log_segment_goes_once_fjall_holds_its_batches() {
        // Everything on disk is read at restart: once fjall has caught up,
        // the log must not keep a closed segment until the next checkpoint.
        let dir = tempfile::tempdir().unwrap();
        let mut s = LoggedStorage::open(dir.path()).unwrap();
        let value = "v".repeat(256 * 1024);
        let n = 5 * CHECKPOINT_BYTES / 2 / (256 * 1024);
        for i in 0..n {
            s.apply(batch(vec![put(&format!("k{i:05}"), &value)]))
                .unwrap();
        }
        s.drain().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while s.wal.disk_space() >= CHECKPOINT_BYTES {
            assert!(
                Instant::now() < deadline,
                "the log keeps {} bytes after fjall caught up",
                s.wal.disk_space()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(s);
        let s = LoggedStorage::open(dir.path()).unwrap();
        assert_eq!(all(&s, false).len() as u64, n);
    }

    #[test]
    fn batches_fjall_never_got_come_back_from_the_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A log written by hand past what fjall holds: as after a crash
            // that lost fjall's unflushed tail.
            let mut s = LoggedStorage::open(dir.path()).unwrap();
            s.apply(batch(vec![put("a", "1")])).unwrap();
            s.flush().unwrap();
        }
        {
            let (wal, _) = Wal::open(&dir.path().join("wal"), 1).unwrap();
            wal.append(&[put("b", "2"), Op::Delete(Space::Members, b"a".to_vec())])
                .unwrap();
            wal.append(&[put("c", "3")]).unwrap();
            wal.write().unwrap();
        }
        let s = LoggedStorage::open(dir.path()).unwrap();
        assert_eq!(
            all(&s, false),
            vec![("b".into(), "2".into()), ("c".into(), "3".into())]
        );
        // Numbering goes on after the log.
        drop(s);
        let mut s = LoggedStorage::open(dir.path()).unwrap();
        s.apply(batch(vec![put("d", "4")])).unwrap();
        s.flush().unwrap();
        drop(s);
        let s = LoggedStorage::open(dir.path()).unwrap();
        assert_eq!(all(&s, false).len(), 3);
    }
}
