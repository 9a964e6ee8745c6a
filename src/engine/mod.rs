//! The engine: queue state, the timing wheel and the store.
//!
//! # Threads
//!
//! - Commands run inline, on the connection's I/O thread, under one mutex
//!   around [`Core`]: the in-memory work plus, per round, one numbered batch
//!   applied to storage (appended to its journal, no fsync). Every command
//!   is atomic, and a request costs no thread hand-off: measured, the hand-off to a separate engine thread cost
//!   half of DELAYADD's throughput at pipeline 1 on a 2-core machine.
//! - The *timer thread* sleeps until the wheel's next deadline (to the
//!   microsecond, not on a tick) and is unparked when a command schedules
//!   something earlier. It fires the wheel, hands due members to blocked
//!   consumers and pages the near future in from disk, so a consumer is woken
//!   at its due time, never by polling.
//! - The [writer] thread makes commits durable: with `appendfsync always`,
//!   replies wait until it has fsynced past their commit, and it fsyncs once
//!   for all commits that arrived meanwhile (group commit); with `everysec`
//!   it fsyncs once a second.
//!
//! Each round that wrote something commits one batch with the next number
//! (its *lsn*, kept by the [`Store`]); a reply waits until the batch holding
//! its effects is durable, and the writer publishes the highest lsn known
//! durable. Reads never commit, so what was acknowledged and what is durable
//! are the same numbers.

pub(crate) mod clock;
pub(crate) mod core;
pub(crate) mod lateness;
pub(crate) mod members;
pub mod stats;
pub(crate) mod storage;
pub mod store;
pub(crate) mod trace;
pub mod wheel;
pub(crate) mod writer;

/// The engine's hash maps, keyed by what clients name (queues, members):
/// foldhash, seeded at random per map as std's SipHash is, at a fraction of
/// its cost on every command's path.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use self::clock::{Clock, SystemClock};
use self::core::{Core, Delivery, Totals, WaiterId};
use self::stats::SharedStats;
use self::storage::Journal;
use self::store::Store;
use self::writer::Durability;
use crate::{Error, Result};

pub use self::core::{PopOptions, Popped, Waiter};
pub use self::writer::Fsync;

/// The state behind the mutex: the core and the bookkeeping of commits.
struct Locked {
    core: Core,
    /// When the timer thread plans to wake next (Unix ms; `u64::MAX`: idle).
    timer_wakeup: u64,
    stopped: bool,
    /// Whether commands run: always on a single node; in cluster mode only
    /// while this node leads its group (see [`Engine::lead`]).
    serving: bool,
}

struct Inner {
    locked: Mutex<Locked>,
    /// Writes the journal buffer to the OS.
    journal: Arc<dyn Journal>,
    /// Every commit up to this lsn has been written to the OS.
    written: AtomicU64,
    /// Held by the one round writing the journal for everyone: the others
    /// wait here, then find their commit written, rather than queueing on
    /// the journal's own lock (which the next commit needs too).
    write_gate: tokio::sync::Mutex<()>,
    timer: Mutex<Option<std::thread::Thread>>,
    durability: Durability,
    next_waiter: AtomicU64,
    fsync: Arc<AtomicU8>,
    stats: Arc<SharedStats>,
    /// What a new leadership loads its core with.
    horizon_ms: u64,
    clock: Arc<dyn Clock>,
}

/// What the engine is started with.
#[derive(Debug, Clone)]
pub struct Options {
    /// The data directory.
    pub dir: std::path::PathBuf,
    /// How far ahead members are kept in memory (ms), at most.
    pub horizon_ms: u64,
    /// The most members kept in memory (`hot-max-members`).
    pub hot_max_members: usize,
    /// When writes are fsynced.
    pub appendfsync: Fsync,
    /// The glob of traced queues (empty: tracing off).
    pub trace_queues: String,
    /// Trace events kept per queue.
    pub trace_max_events: u64,
}

impl Options {
    /// Defaults (as the server's flags have them) for a data directory.
    pub fn for_dir(dir: impl Into<std::path::PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            horizon_ms: 172_800_000,
            hot_max_members: 1_000_000,
            appendfsync: Fsync::EverySec,
            trace_queues: String::new(),
            trace_max_events: trace::DEFAULT_MAX_EVENTS,
        }
    }
}

/// How a round of commands ended.
#[derive(Debug)]
pub enum Round<T> {
    /// It ran and its writes are as durable as `appendfsync` requires.
    Durable(T),
    /// It ran, but its writes are not durable: nothing of it may be
    /// acknowledged as a success.
    NotDurable(T, Error),
    /// It did not run, or its commit failed (the engine stopped, the store
    /// failed).
    Failed(Error),
}

/// A handle to the engine, cloned into every connection.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    /// Figures for INFO.
    pub stats: Arc<SharedStats>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens the store, recovers the state and starts the timer and writer
    /// threads.
    ///
    /// # Errors
    ///
    /// Fails if the store cannot be opened or recovered.
    pub fn start(config: &Options) -> Result<Engine> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// [`Engine::start`] with a given clock.
    ///
    /// # Errors
    ///
    /// Fails if the store cannot be opened or recovered.
    pub fn start_with_clock(config: &Options, clock: Arc<dyn Clock>) -> Result<Engine> {
        let started = Instant::now();
        let store = Store::open(&config.dir)?;
        tracing::info!(
            "store opened (journal replayed) in {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        Self::start_over(store, config, clock, started, true)
    }

    /// An engine over a replicated store (cluster mode) that serves nothing
    /// until this node leads the group ([`Engine::lead`]).
    ///
    /// # Errors
    ///
    /// Fails if the engine's threads cannot be started.
    pub(crate) fn start_standby(
        standby: Store,
        config: &Options,
        clock: Arc<dyn Clock>,
    ) -> Result<Engine> {
        Self::start_over(standby, config, clock, Instant::now(), false)
    }

    fn start_over(
        store: Store,
        config: &Options,
        clock: Arc<dyn Clock>,
        started: Instant,
        serving: bool,
    ) -> Result<Engine> {
        let journal = store.journal();
        let mut core = Core::load(store, clock.clone(), config.horizon_ms)?;
        core.set_trace_queues(config.trace_queues.as_bytes());
        core.set_trace_max_events(config.trace_max_events);
        core.set_hot_max(config.hot_max_members);
        let stats = Arc::new(SharedStats::new());
        let totals = core.totals();
        let recovery = started.elapsed();
        stats
            .recovery_ms
            .store(recovery.as_millis() as u64, Ordering::Relaxed);
        stats
            .recovered_members
            .store(totals.members, Ordering::Relaxed);
        tracing::info!(
            "recovered {} members in {} queues ({} in memory) in {:.1} ms",
            totals.members,
            totals.queues,
            totals.hot,
            recovery.as_secs_f64() * 1000.0
        );
        let fsync = Arc::new(AtomicU8::new(config.appendfsync.to_u8()));
        let durability = writer::start(journal.clone(), fsync.clone(), stats.clone())?;
        let inner = Arc::new(Inner {
            locked: Mutex::new(Locked {
                core,
                timer_wakeup: 0,
                stopped: false,
                serving,
            }),
            timer: Mutex::new(None),
            journal,
            written: AtomicU64::new(0),
            write_gate: tokio::sync::Mutex::new(()),
            durability,
            next_waiter: AtomicU64::new(1),
            fsync,
            stats: stats.clone(),
            horizon_ms: config.horizon_ms,
            clock,
        });
        let timer_inner = inner.clone();
        let handle = std::thread::Builder::new()
            .name("delayd-timer".into())
            .spawn(move || timer_loop(&timer_inner))?;
        if let Ok(mut t) = inner.timer.lock() {
            *t = Some(handle.thread().clone());
        }
        Ok(Engine { inner, stats })
    }

    fn lock(&self) -> MutexGuard<'_, Locked> {
        self.inner.lock()
    }

    /// Runs `f` on the core, then commits, hands due members to blocked
    /// consumers and wakes the timer if the next deadline moved earlier.
    /// Returns `f`'s result and the lsn the caller must wait for to be
    /// durable, or the storage error that lost the commit.
    fn with_core<T>(&self, f: impl FnOnce(&mut Core) -> T) -> Result<(T, u64)> {
        let mut guard = self.lock();
        if guard.stopped {
            return Err(Error::ShuttingDown);
        }
        if !guard.serving {
            return Err(Error::not_leader());
        }
        let locked = &mut *guard;
        let before = locked.core.store_mut().lsn();
        let ran = guarded(locked, |locked| {
            locked.core.fire();
            let out = f(&mut locked.core);
            locked.core.serve_waiters();
            out
        });
        let commit = match ran {
            Some(out) => guarded(locked, |locked| commit_and_deliver(locked, &self.inner))
                .unwrap_or_else(|| Err(internal_failure(locked, &self.inner.stats)))
                .map(|lsn| (out, lsn)),
            None => Err(internal_failure(locked, &self.inner.stats)),
        };
        let wake = locked
            .core
            .next_wakeup_ms()
            .is_some_and(|n| n < locked.timer_wakeup);
        // After a storage failure, a call that wrote nothing is served from
        // memory at once: what it reads can never become durable, and
        // refusing reads too would help no one.
        let failed = locked.core.failure().is_some();
        drop(guard);
        if wake {
            self.wake_timer();
        }
        commit.map(|(out, lsn)| (out, if failed && lsn == before { 0 } else { lsn }))
    }

    fn wake_timer(&self) {
        if let Ok(Some(t)) = self.inner.timer.lock().as_deref() {
            t.unpark();
        }
    }

    /// Waits until commit `lsn` is as durable as the fsync policy requires:
    /// written to the OS in every mode, and fsynced under `always`.
    async fn durable(&self, lsn: u64) -> Result<()> {
        if let Some(committed) = self.inner.journal.committed() {
            return committed.wait(lsn).await;
        }
        if self.fsync() != Fsync::Always {
            return self.written(lsn).await;
        }
        let r = self.inner.durability.wait(lsn).await;
        if let Err(Error::Storage(e)) = &r {
            let mut guard = self.lock();
            if guard.core.failure().is_none() {
                guard.core.fail(e.to_string());
            }
        }
        r
    }

    /// Waits until commit `lsn` is written to the OS. The first caller yields
    /// once so that the other connections ready at the same moment commit
    /// too, then writes the journal once for all of them; those that came
    /// meanwhile wait for that write and most find theirs in it.
    async fn written(&self, lsn: u64) -> Result<()> {
        if self.inner.written.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        tokio::task::yield_now().await;
        if self.inner.written.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let _writing = self.inner.write_gate.lock().await;
        if self.inner.written.load(Ordering::Acquire) >= lsn {
            return Ok(());
        }
        let upto = self.inner.stats.committed_lsn.load(Ordering::Acquire);
        if let Err(e) = self.inner.journal.write() {
            let why = format!("write failed: {}", e.detail());
            self.inner.stats.set_failure(why.clone());
            let mut guard = self.lock();
            if guard.core.failure().is_none() {
                guard.core.fail(why.clone());
            }
            return Err(Error::storage(why));
        }
        self.inner.written.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// Runs `f` on the core as one round (atomic: no other client's
    /// command runs in between), commits the round's batch, and waits until
    /// it is as durable as `appendfsync` requires.
    pub async fn run<T>(&self, f: impl FnOnce(&mut Core) -> T) -> Round<T> {
        match self.with_core(f) {
            Ok((out, lsn)) => match self.durable(lsn).await {
                Ok(()) => Round::Durable(out),
                Err(e) => Round::NotDurable(out, e),
            },
            Err(e) => Round::Failed(e),
        }
    }

    /// Registers a blocked client; the delivery arrives on the returned
    /// channel (at once if a member is already due).
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] once the engine has stopped.
    pub fn block(
        &self,
        keys: Vec<Bytes>,
        opts: PopOptions,
        actor: impl FnOnce() -> Arc<str>,
    ) -> Result<(WaiterId, oneshot::Receiver<Delivery>)> {
        let id = self.inner.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter { keys, opts, tx };
        let blocked = self.with_core(|core| {
            // The waiter keeps the actor in force now, for the trace of the
            // members handed to it later.
            if core.tracing() {
                core.set_actor(Some(actor()));
            }
            core.block(id, waiter);
            core.set_actor(None);
        });
        match blocked {
            Ok(_) | Err(Error::Storage(_)) => Ok((id, rx)),
            Err(e) => Err(e),
        }
    }

    /// Waits until a delivery to a blocked client is durable (it was written
    /// to the OS before it was sent; `always` also waits for the fsync).
    ///
    /// # Errors
    ///
    /// A storage error: the delivery must not be acknowledged.
    pub async fn delivery_durable(&self, d: &Delivery) -> Result<()> {
        if self.fsync() == Fsync::Always || self.inner.journal.committed().is_some() {
            self.durable(d.lsn).await
        } else {
            Ok(())
        }
    }

    /// Forgets a blocked client.
    pub fn unblock(&self, id: WaiterId) {
        let _ = self.with_core(|core| core.unblock(id));
    }

    /// `WATCH`: starts watching `keys` and returns their versions (see
    /// [`Core::watch`]). Writes nothing, so it commits nothing.
    pub fn watch(&self, keys: &[Bytes]) -> Vec<u64> {
        self.lock().core.watch(keys)
    }

    /// Stops watching `keys` (a client that unwatches or goes away).
    pub fn unwatch(&self, keys: &[Bytes]) {
        self.lock().core.unwatch(keys);
    }

    /// Engine totals for INFO.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] once the engine has stopped.
    pub fn totals(&self) -> Result<Totals> {
        let guard = self.lock();
        if guard.stopped {
            return Err(Error::ShuttingDown);
        }
        Ok(guard.core.totals())
    }

    /// The `n` queues with the largest backlog: `(name, pending, ready)`.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] once the engine has stopped.
    pub fn top_queues(&self, n: usize) -> Result<Vec<(Bytes, u64, u64)>> {
        let guard = self.lock();
        if guard.stopped {
            return Err(Error::ShuttingDown);
        }
        Ok(guard.core.top_queues(n))
    }

    /// Up to `max` names of the queues `keep` takes (`CLUSTER
    /// GETKEYSINSLOT`).
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] once the engine has stopped.
    pub fn queue_names(&self, keep: impl Fn(&[u8]) -> bool, max: usize) -> Result<Vec<Bytes>> {
        let guard = self.lock();
        if guard.stopped {
            return Err(Error::ShuttingDown);
        }
        Ok(guard.core.queue_names(keep, max))
    }

    /// The fsync policy in force.
    pub fn fsync(&self) -> Fsync {
        Fsync::from_u8(self.inner.fsync.load(Ordering::Relaxed))
    }

    /// Changes the fsync policy (CONFIG SET appendfsync).
    pub fn set_fsync(&self, f: Fsync) {
        self.inner.fsync.store(f.to_u8(), Ordering::Relaxed);
    }

    /// The trace settings in force: the glob of traced queues (empty: off)
    /// and the events kept per queue (CONFIG GET).
    pub fn trace_settings(&self) -> (Bytes, u64) {
        self.lock().core.trace_settings()
    }

    /// Changes the glob of traced queues (CONFIG SET trace-queues; empty:
    /// off). Events already recorded stay readable.
    pub fn set_trace_queues(&self, pattern: &[u8]) {
        self.lock().core.set_trace_queues(pattern);
    }

    /// `hot-max-members` in force.
    pub fn hot_max(&self) -> usize {
        self.lock().core.hot_max()
    }

    /// Changes `hot-max-members` (CONFIG SET); members past it move to disk
    /// at once, written with the next round.
    pub fn set_hot_max(&self, n: usize) {
        self.lock().core.set_hot_max(n);
    }

    /// Changes how many trace events each queue keeps (CONFIG SET
    /// trace-max-events).
    pub fn set_trace_max_events(&self, n: u64) {
        self.lock().core.set_trace_max_events(n);
    }

    /// Starts serving over `store` (cluster mode: this node now leads its
    /// group and `store` holds everything the group committed): memory is
    /// rebuilt from it as at a restart, settings kept.
    ///
    /// # Errors
    ///
    /// Loading the state from the store failed; the engine keeps not serving.
    pub(crate) fn lead(&self, store: Store) -> Result<()> {
        let mut core = Core::load(store, self.inner.clock.clone(), self.inner.horizon_ms)?;
        let mut guard = self.lock();
        carry_settings(&guard.core, &mut core);
        guard.core = core;
        guard.serving = true;
        guard.timer_wakeup = 0;
        drop(guard);
        self.wake_timer();
        Ok(())
    }

    /// Stops serving (cluster mode: this node no longer leads its group):
    /// blocked clients are told the cluster moved, and memory is dropped in
    /// favour of `standby` until the next [`Engine::lead`].
    ///
    /// # Errors
    ///
    /// Loading the (empty) standby store failed.
    pub(crate) fn step_down(&self, standby: Store) -> Result<()> {
        let mut core = Core::load(standby, self.inner.clock.clone(), self.inner.horizon_ms)?;
        let mut guard = self.lock();
        guard.serving = false;
        guard.core.wake_all_blocked_with(Error::not_leader);
        carry_settings(&guard.core, &mut core);
        let mut old = std::mem::replace(&mut guard.core, core);
        drop(guard);
        old.store_mut().discard();
        Ok(())
    }

    /// Commits and fsyncs everything, wakes blocked clients with an error and
    /// stops the engine.
    ///
    /// # Errors
    ///
    /// A storage error from the final commit or fsync.
    pub async fn shutdown(&self) -> Result<()> {
        let lsn = {
            let mut guard = self.lock();
            guard.stopped = true;
            guard.core.wake_all_blocked();
            guard.core.store_mut().commit()?;
            // Flush the memtables so the next start has no journal to replay
            // (not after a storage failure: that flush cannot succeed).
            if guard.core.failure().is_none()
                && let Err(e) = guard.core.store_mut().flush_memtables()
            {
                tracing::warn!("flushing memtables at shutdown failed: {e}");
            }
            guard.core.store_mut().lsn()
        };
        self.wake_timer();
        self.inner.durability.flush(lsn).await
    }
}

/// Gives a core loaded anew (a leadership begins or ends) the settings
/// CONFIG SET gave the one it replaces.
fn carry_settings(from: &Core, to: &mut Core) {
    let (pattern, events) = from.trace_settings();
    to.set_trace_queues(&pattern);
    to.set_trace_max_events(events);
    to.set_hot_max(from.hot_max());
}

/// Commits the core's pending writes and sends the deliveries to blocked
/// consumers. Returns the lsn to wait for.
fn commit_and_deliver(locked: &mut Locked, inner: &Inner) -> Result<u64> {
    let stats = &inner.stats;
    let deliveries = locked.core.take_waiter_replies();
    if locked.core.failure().is_some() {
        // Writes are refused after a storage failure; what is left in the
        // batch is bookkeeping (paging) that the failed store cannot take.
        locked.core.store_mut().discard();
    }
    let store = locked.core.store_mut();
    // A pop reaches its consumer only once its removal is in the OS.
    let written = |dirty: bool| {
        if dirty && !deliveries.is_empty() {
            inner.journal.write().map(|()| true)
        } else {
            Ok(false)
        }
    };
    let commit = match store
        .commit()
        .and_then(|lsn| Ok((lsn, written(lsn.is_some())?)))
    {
        Ok((committed, written)) => {
            let lsn = store.lsn();
            if committed.is_some() {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.committed_lsn.store(lsn, Ordering::Release);
            }
            if written {
                inner.written.fetch_max(lsn, Ordering::AcqRel);
            }
            Ok(lsn)
        }
        Err(e) => {
            let why = format!("write failed: {}", e.detail());
            stats.set_failure(why.clone());
            locked.core.fail(why.clone());
            // Memory is ahead of the store: rebuild it from what is stored.
            if let Err(e) = locked.core.reload() {
                tracing::error!("reloading state from the store failed: {e}");
            }
            Err(Error::storage(why))
        }
    };
    let mut lost = Vec::new();
    for d in deliveries {
        let delivery = match &commit {
            Ok(lsn) => Delivery {
                popped: d.popped,
                lsn: *lsn,
            },
            Err(e) => Delivery {
                popped: Err(Error::storage(e.detail())),
                lsn: 0,
            },
        };
        if let Err(mut back) = d.tx.send(delivery) {
            lost.extend(back.take_popped());
        }
    }
    if !lost.is_empty() {
        // The client left between blocking and delivery: put the members back.
        let put_back = locked
            .core
            .restore(&lost)
            .and_then(|()| locked.core.store_mut().commit().map(|_| ()));
        if let Err(e) = put_back {
            tracing::warn!("could not put back {} popped members: {e}", lost.len());
        }
    }
    commit
}

impl Inner {
    /// Locks the engine state. A lock poisoned by a panic elsewhere is a bug
    /// that may have left memory half-updated: the engine is failed (writes
    /// refused, INFO and the log say why) and memory is rebuilt from the
    /// store, rather than serving state that may disagree with it.
    fn lock(&self) -> MutexGuard<'_, Locked> {
        match self.locked.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                let mut g = poisoned.into_inner();
                self.locked.clear_poison();
                let _ = internal_failure(&mut g, &self.stats);
                g
            }
        }
    }
}

/// Runs `f` on the locked state, catching a panic inside it. `None`: it
/// panicked; the caller must treat the state as failed ([`internal_failure`]).
fn guarded<T>(locked: &mut Locked, f: impl FnOnce(&mut Locked) -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(locked))).ok()
}

/// A panic inside the engine (a bug): memory may disagree with the store, so
/// nothing of the round is committed, writes are refused from now on (as
/// after a storage failure) and memory is rebuilt from what the store holds.
fn internal_failure(locked: &mut Locked, stats: &SharedStats) -> Error {
    let why = "internal error (a bug; see the log): writes are refused until a restart".to_string();
    stats.set_failure(why.clone());
    if locked.core.failure().is_none() {
        tracing::error!("a panic inside the engine: {why}");
        locked.core.fail(why.clone());
    }
    let reloaded = guarded(locked, |locked| {
        locked.core.store_mut().discard();
        locked.core.reload()
    });
    match reloaded {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::error!("reloading state from the store failed: {e}"),
        None => tracing::error!("reloading state from the store panicked"),
    }
    Error::storage(why)
}

/// Queues paged in per step of the timer thread: each is one range scan,
/// so a step holds the engine lock for about a millisecond at most.
const PAGE_BUDGET: usize = 32;

/// How long to sleep until `due_ms` by `clock`, capped so that a stepped
/// wall clock is noticed within a second.
fn sleep_for(clock: &dyn Clock, due_ms: Option<u64>) -> Duration {
    let cap = Duration::from_secs(1);
    match due_ms {
        Some(due) => {
            let now_us = clock.now_us();
            Duration::from_micros(due.saturating_mul(1000).saturating_sub(now_us)).min(cap)
        }
        None => cap,
    }
}

fn timer_loop(inner: &Inner) {
    loop {
        let sleep = {
            let mut guard = inner.lock();
            if guard.stopped {
                return;
            }
            if !guard.serving {
                // A follower fires nothing: its group's leader decides what
                // is due, and its effects arrive through the log.
                drop(guard);
                std::thread::park_timeout(Duration::from_millis(100));
                continue;
            }
            let locked = &mut *guard;
            // A panic here must not kill the thread silently: the engine is
            // failed and the thread goes on firing what memory holds.
            let stepped = guarded(locked, |locked| {
                // Fire first: paging must never delay what is due now.
                locked.core.fire();
                locked.core.serve_waiters();
                let _ = commit_and_deliver(locked, inner);
                if let Err(e) = locked.core.page_step(PAGE_BUDGET) {
                    tracing::error!("paging in from the store failed: {e}");
                }
                locked.core.serve_waiters();
                let _ = commit_and_deliver(locked, inner);
            });
            if stepped.is_none() {
                let _ = internal_failure(locked, &inner.stats);
            }
            let next = locked.core.next_wakeup_ms();
            locked.timer_wakeup = next.unwrap_or(u64::MAX);
            sleep_for(locked.core.clock().as_ref(), next)
        };
        if sleep.is_zero() {
            // More paging to do: let commands take the lock in between.
            std::thread::yield_now();
        } else {
            std::thread::park_timeout(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `f` as a round and returns its output once durable.
    fn run<T: std::fmt::Debug>(engine: &Engine, f: impl FnOnce(&mut Core) -> T) -> Result<T> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        match rt.block_on(engine.run(f)) {
            Round::Durable(out) => Ok(out),
            Round::NotDurable(_, e) | Round::Failed(e) => Err(e),
        }
    }

    fn add(engine: &Engine, m: &'static str) -> Result<i64> {
        run(engine, |core| {
            core.add(
                &Bytes::from_static(b"q"),
                &[(0, Bytes::from_static(m.as_bytes()))],
                core::AddFlags::default(),
            )
        })?
    }

    /// A panic inside a command is a fatal failure: nothing of its round is
    /// committed, writes are refused, the failure is visible, reads still
    /// answer from what the store holds, and the timer thread lives on.
    #[test]
    fn a_panic_in_the_engine_fails_it_instead_of_serving_half_updated_state() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::start(&Options::for_dir(dir.path())).unwrap();
        assert_eq!(add(&engine, "kept").unwrap(), 1);
        let r = engine.with_core(|core| {
            let _ = core.add(
                &Bytes::from_static(b"q"),
                &[(0, Bytes::from_static(b"half"))],
                core::AddFlags::default(),
            );
            panic!("injected");
        });
        assert!(matches!(r, Err(Error::Storage(_))), "{:?}", r.err());
        assert!(engine.stats.failure().is_some());
        assert!(add(&engine, "x").is_err(), "writes are refused");
        // Memory was rebuilt from the store: the half-done add is gone.
        assert_eq!(run(&engine, |core| core.card(b"q")).unwrap(), 1);
        let all = run(&engine, |core| core.range(b"q", 0, -1, false))
            .unwrap()
            .unwrap();
        let members: Vec<_> = all.into_iter().map(|s| s.member).collect();
        assert_eq!(members, vec![Bytes::from_static(b"kept")]);
        assert!(!engine.inner.locked.is_poisoned());
    }
}
