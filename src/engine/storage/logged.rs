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
//! Restart: the log is what a restart reads, not fjall's journal. The
//! applier checkpoints every [`CHECKPOINT_BYTES`] of log: it closes the
//! log's segment, and once fjall's memtables are sealed past the segment's
//! batches (by fjall's next rotation of full memtables, or by the applier
//! when it is idle) and fjall's workers have written them to tables
//! (fsynced), it records the last batch sealed in [`CHECKPOINT_FILE`] and
//! deletes the log segments up to it. At open, fjall's journal is emptied
//! (everything not in its tables is in the log) and every batch of the log
//! after the checkpoint is applied again, before anything is served.
//! Applying a batch again is harmless: each op sets, deletes or clears
//! whole keys, so applying the batches after any earlier point, in order,
//! ends in the same state, whatever part of them the tables already hold.
//!
//! fjall replays its whole active journal at open (up to 64 MB: it seals
//! one only past that, one lookup in its meta keyspace per entry), which
//! took 2.1 s after a burst of 2 million members (BENCHMARKS.md,
//! session 9); what the log keeps is at most about [`CHECKPOINT_BYTES`].
//!
//! A store written before the checkpoint file existed (fjall's journal
//! then held writes the log had dropped) is opened as before, with fjall's
//! journal, and then flushed whole before the first checkpoint is
//! recorded.

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

/// Log bytes after which the applier checkpoints (see the module's
/// comment): bounds the log on disk, whose batches after the checkpoint
/// are applied again at restart. A checkpoint waits for fjall's next
/// rotation of full memtables (every ~6 MiB of memtable, about as much
/// log), so the log at a crash is up to about this plus that.
const CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;

/// How long the applier finds nothing to apply before it seals fjall's
/// memtables itself for a checkpoint under way: under load it waits for
/// fjall's rotation of full memtables instead, since sealing half-full ones
/// doubles the small tables fjall's workers must flush and compact.
const IDLE_SEAL: Duration = Duration::from_millis(200);

/// The file, in the store's directory, holding the log number through
/// which fjall's tables hold every batch (decimal text). Its presence also
/// says that fjall's journal is never needed at open.
const CHECKPOINT_FILE: &str = "checkpoint";

/// Longest the first open of a store written before [`CHECKPOINT_FILE`]
/// existed waits for fjall to flush what its journal held; past it, the
/// store opens with fjall's journal again next time.
const UPGRADE_FLUSH_WAIT: Duration = Duration::from_secs(120);

/// Batches queued for the applier before a round waits for it (a round
/// waits only if fjall stalls for longer than these take to come).
const QUEUED_BATCHES: usize = 4096;

/// Writes held in the overlay before a round waits for the applier: bounds
/// the memory a burst (`redis-cli --pipe`, whose rounds are thousands of
/// commands) can take while fjall is behind. The applier waits whenever
/// fjall's workers' queue is full as it rotates memtables (see
/// `FjallStorage::rotate_full_memtables`); with 128k, the overlay filled
/// meanwhile and a 10-million-member load peaked at 184.9 MB of RSS; with
/// 16k, 107.6 MB at the same load rate (22.7k/s, BENCHMARKS.md session 9).
const MAX_UNAPPLIED: usize = 16 * 1024;

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
    dir: std::path::PathBuf,
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
    /// fjall or the log cannot be opened, the log or the checkpoint file is
    /// corrupt, or fjall cannot apply the log.
    pub(crate) fn open(dir: &Path) -> Result<LoggedStorage> {
        std::fs::create_dir_all(dir)?;
        let checkpoint = read_checkpoint(dir)?;
        if checkpoint.is_some() {
            FjallStorage::discard_journal(dir)?;
        }
        let fjall = Arc::new(FjallStorage::open(dir)?);
        // With a checkpoint, fjall's tables may hold one keyspace further
        // than another (each is flushed on its own), so its `wal-applied`
        // says nothing about the rest: the log is applied from the
        // checkpoint on.
        let after = match checkpoint {
            Some(c) => c,
            None => applied_seq(&fjall)?,
        };
        let (wal, records) = Wal::open(&dir.join("wal"), after)?;
        let replayed = records.len();
        let mut last = after;
        for r in records {
            apply_numbered(&fjall, r.seq, r.ops)?;
            last = r.seq;
        }
        if replayed > 0 {
            tracing::info!("applied {replayed} batches from the write-ahead log");
        }
        if checkpoint.is_none() {
            // fjall's journal may hold writes the log no longer has: once
            // they are in tables, the checkpoint file can say so.
            match fjall.flush_within(UPGRADE_FLUSH_WAIT) {
                Ok(()) => write_checkpoint(dir, last)?,
                Err(e) => tracing::warn!(
                    "flushing the store failed ({}); it opens with fjall's journal again next time",
                    e.detail()
                ),
            }
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
            let dir = dir.to_path_buf();
            std::thread::Builder::new()
                .name("delayd-applier".into())
                .spawn(move || run_applier(&fjall, &wal, &shared, &dir))?
        };
        Ok(LoggedStorage {
            dir: dir.to_path_buf(),
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

/// The log number in the checkpoint file, if there is one.
fn read_checkpoint(dir: &Path) -> Result<Option<u64>> {
    match std::fs::read_to_string(dir.join(CHECKPOINT_FILE)) {
        Ok(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| Error::storage(format!("corrupt {CHECKPOINT_FILE} file in the store"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Records, durably, that fjall's tables hold every batch through `seq`.
fn write_checkpoint(dir: &Path, seq: u64) -> Result<()> {
    super::write_atomically(&dir.join(CHECKPOINT_FILE), format!("{seq}\n").as_bytes())?;
    Ok(())
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

fn run_applier(fjall: &FjallStorage, wal: &Wal, shared: &Shared, dir: &Path) {
    let mut upkeep = Upkeep::new(dir, fjall);
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
                upkeep.applied(fjall, last);
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

/// The applier's checkpoints, done between batches (see the module's
/// comment): the less of the log is on disk at a crash, the less is
/// applied again before serving.
struct Upkeep {
    dir: std::path::PathBuf,
    step: Step,
    /// Log bytes in the current segment before the next checkpoint is
    /// tried (moved on after a failure, so it is not retried per batch).
    checkpoint_at: u64,
    /// fjall's seal count when the applier last looked, and the last batch
    /// sealed by then.
    seals: u64,
    sealed_through: u64,
    /// When a batch was last applied.
    last_applied_at: Instant,
}

/// Where the checkpoint under way is.
enum Step {
    Idle,
    /// The log was rotated; its closed segments end at or before this
    /// batch. It waits until fjall's memtables are sealed past it.
    Closed(u64),
    /// fjall's memtables were sealed with every batch through this one.
    /// Once they are in tables, it is the checkpoint.
    Sealed(u64),
}

impl Upkeep {
    fn new(dir: &Path, fjall: &FjallStorage) -> Upkeep {
        Upkeep {
            dir: dir.to_path_buf(),
            step: Step::Idle,
            checkpoint_at: CHECKPOINT_BYTES,
            seals: fjall.seals(),
            sealed_through: 0,
            last_applied_at: Instant::now(),
        }
    }

    /// Notes that fjall holds every batch through `last`.
    fn applied(&mut self, fjall: &FjallStorage, last: u64) {
        self.last_applied_at = Instant::now();
        let seals = fjall.seals();
        if seals != self.seals {
            // fjall rotated its memtables while applying `last`.
            self.seals = seals;
            self.sealed_through = last;
        }
    }

    /// `applied`: the last batch in fjall. Failures are logged, not fatal:
    /// the log keeps everything meanwhile.
    fn run(&mut self, fjall: &FjallStorage, wal: &Wal, applied: u64) {
        let bytes = wal.current_bytes();
        match self.step {
            Step::Idle if bytes >= self.checkpoint_at => match wal.rotate() {
                // Every batch of the closed segment is numbered at most the
                // log's last now (records may have come since: then this
                // waits a little longer than needed).
                Ok(()) => self.step = Step::Closed(wal.last_seq()),
                Err(e) => {
                    tracing::warn!(
                        "rotating the write-ahead log failed (it goes on in one segment): {e}"
                    );
                    self.checkpoint_at = bytes.saturating_add(CHECKPOINT_BYTES);
                }
            },
            Step::Idle => {}
            Step::Closed(end) if self.sealed_through >= end => {
                self.step = Step::Sealed(self.sealed_through);
            }
            Step::Closed(end) if applied >= end && self.last_applied_at.elapsed() >= IDLE_SEAL => {
                match fjall.seal() {
                    Ok(()) => {
                        self.seals = fjall.seals();
                        self.sealed_through = applied;
                        self.step = Step::Sealed(applied);
                    }
                    Err(e) => {
                        self.give_up(bytes, &format!("sealing fjall's memtables failed: {e}"));
                    }
                }
            }
            Step::Closed(_) => {}
            Step::Sealed(through) if fjall.sealed_flushed() => {
                match write_checkpoint(&self.dir, through) {
                    Ok(()) => {
                        wal.drop_through(through);
                        self.step = Step::Idle;
                        self.checkpoint_at = CHECKPOINT_BYTES;
                    }
                    Err(e) => self.give_up(bytes, &format!("writing the checkpoint failed: {e}")),
                }
            }
            Step::Sealed(_) => {}
        }
    }

    fn give_up(&mut self, bytes: u64, why: &str) {
        tracing::warn!("{why} (the log keeps all)");
        self.step = Step::Idle;
        self.checkpoint_at = bytes.saturating_add(CHECKPOINT_BYTES);
    }
}

/// Makes fjall's tables hold every batch through `applied` and deletes the
/// log segments it covers (clean shutdown).
///
/// # Errors
///
/// fjall's flush, the checkpoint file, or rotating the log failed: the log
/// keeps everything.
fn checkpoint(dir: &Path, fjall: &FjallStorage, wal: &Wal, applied: u64) -> Result<()> {
    fjall.flush()?;
    write_checkpoint(dir, applied)?;
    if let Err(e) = wal.rotate() {
        tracing::warn!("rotating the write-ahead log failed (it goes on in one segment): {e}");
        return Err(e);
    }
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
        checkpoint(
            &self.dir,
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
        // What was applied is handed to the OS: the next open reads the
        // log, not fjall's journal (which fjall writes out as it closes).
        if let Err(e) = self.wal.write() {
            tracing::warn!("writing the write-ahead log at close failed: {e}");
        }
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
    fn writes_after_a_restart_without_fjalls_journal_win_over_older_ones() {
        // fjall numbers writes on from its tables' highest number only if
        // it opens an existing journal: emptied rather than deleted, later
        // versions of a key stay later than those in the tables.
        let dir = tempfile::tempdir().unwrap();
        for round in 0..4 {
            let mut s = LoggedStorage::open(dir.path()).unwrap();
            let want = (round > 0).then(|| format!("v{}", round - 1).into_bytes());
            assert_eq!(s.get(Space::Members, b"k").unwrap(), want, "round {round}");
            s.apply(batch(vec![put("k", &format!("v{round}"))]))
                .unwrap();
            s.flush().unwrap();
            assert!(read_checkpoint(dir.path()).unwrap().is_some());
        }
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
