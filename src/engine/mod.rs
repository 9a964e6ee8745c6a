//! The engine: queue state, the timing wheel and the store, driven by one
//! thread.
//!
//! Connections send [`Request`]s over a channel. The engine thread takes
//! everything waiting (a *round*), advances the wheel, applies the commands
//! to [`Core`], commits the round's writes as one fjall batch and releases
//! the replies, directly or through the [writer] once durable. Running
//! all of this on one thread makes every command atomic without locks,
//! keeps fjall's blocking calls off the async reactor, and batches the writes
//! of all connections together. The thread sleeps until the wheel's next
//! deadline or the next request, so a blocked consumer is woken when its
//! member is due, never by polling.

pub mod clock;
pub mod core;
pub mod stats;
pub mod store;
pub mod wheel;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use self::clock::{Clock, SystemClock};
use self::core::{Core, Delivery, Popped, Totals, WaiterId, WaiterReply};
use self::stats::SharedStats;
use self::store::Store;
use self::writer::WriterMsg;
use crate::cmd::EngineCmd;
use crate::config::{Config, Fsync};
use crate::protocol::Reply;
use crate::{Error, Result};

pub use self::core::{PopShape, Waiter};

/// The most requests taken into one round, so one round's latency stays
/// bounded under a flood.
const MAX_ROUND: usize = 1024;

/// A message to the engine thread.
pub enum Request {
    /// Run commands in order, atomically, and send their replies.
    Exec {
        cmds: Vec<EngineCmd>,
        tx: oneshot::Sender<Vec<Reply>>,
    },
    /// Block a client until a member of one of its keys is due.
    Block { id: WaiterId, waiter: Waiter },
    /// A blocked client timed out or went away.
    Unblock { id: WaiterId },
    /// Put back members whose pop reached no client.
    Restore(Vec<Popped>),
    /// Figures for INFO.
    Stats(oneshot::Sender<Totals>),
    /// The writer saw the store fail.
    StorageFailed(String),
    /// Commit, fsync, wake blocked clients with an error and stop.
    Shutdown(oneshot::Sender<Result<()>>),
}

/// One round's replies, waiting to be released.
#[derive(Default)]
pub struct Round {
    batches: Vec<(oneshot::Sender<Vec<Reply>>, Vec<Reply>)>,
    waiters: Vec<WaiterReply>,
    /// Whether the round wrote to the store.
    dirty: bool,
}

impl Round {
    /// Turns every reply into the storage error.
    fn fail(&mut self, why: &str) {
        let err = Reply::from(Error::Storage(why.to_string()));
        for (_, replies) in &mut self.batches {
            for r in replies.iter_mut() {
                *r = err.clone();
            }
        }
        for w in &mut self.waiters {
            w.reply = err.clone();
            w.popped.clear();
        }
    }

    /// Sends every reply. Returns members popped for clients that are gone,
    /// which must be put back.
    fn release(self) -> Vec<Popped> {
        for (tx, replies) in self.batches {
            let _ = tx.send(replies);
        }
        let mut lost = Vec::new();
        for w in self.waiters {
            if let Err((_, popped)) = w.tx.send((w.reply, w.popped)) {
                lost.extend(popped);
            }
        }
        lost
    }
}

/// A handle to the engine, cloned into every connection.
#[derive(Clone)]
pub struct Engine {
    tx: mpsc::Sender<Request>,
    next_waiter: Arc<AtomicU64>,
    /// Figures for INFO.
    pub stats: Arc<SharedStats>,
    fsync: Arc<AtomicU8>,
}

impl Engine {
    /// Opens the store, recovers the state and starts the engine and writer
    /// threads.
    ///
    /// # Errors
    ///
    /// Fails if the store cannot be opened or recovered.
    pub fn start(config: &Config) -> Result<Engine> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// [`Engine::start`] with a given clock.
    ///
    /// # Errors
    ///
    /// Fails if the store cannot be opened or recovered.
    pub fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<Engine> {
        let started = Instant::now();
        let store = Store::open(&config.dir)?;
        let syncer = store.syncer();
        let core = Core::load(store, clock, config.horizon_ms)?;
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
        let (tx, rx) = mpsc::channel();
        let (wtx, wrx) = mpsc::channel();
        {
            let (fsync, engine, stats) = (fsync.clone(), tx.clone(), stats.clone());
            std::thread::Builder::new()
                .name("delayd-writer".into())
                .spawn(move || writer::run(wrx, syncer, fsync, engine, stats))?;
        }
        {
            let (fsync, stats) = (fsync.clone(), stats.clone());
            std::thread::Builder::new()
                .name("delayd-engine".into())
                .spawn(move || run(core, rx, wtx, fsync, stats))?;
        }
        Ok(Engine {
            tx,
            next_waiter: Arc::new(AtomicU64::new(1)),
            stats,
            fsync,
        })
    }

    fn send(&self, req: Request) -> Result<()> {
        self.tx.send(req).map_err(|_| Error::ShuttingDown)
    }

    /// Runs commands atomically and returns their replies in order.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] if the engine has stopped.
    pub async fn exec(&self, cmds: Vec<EngineCmd>) -> Result<Vec<Reply>> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Exec { cmds, tx })?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    /// Registers a blocked client; the reply arrives on the returned channel.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] if the engine has stopped.
    pub fn block(
        &self,
        keys: Vec<bytes::Bytes>,
        count: usize,
        lease: Option<u64>,
        shape: PopShape,
    ) -> Result<(WaiterId, oneshot::Receiver<Delivery>)> {
        let id = self.next_waiter.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        let waiter = Waiter {
            keys,
            count,
            lease,
            shape,
            tx,
        };
        self.send(Request::Block { id, waiter })?;
        Ok((id, rx))
    }

    /// Forgets a blocked client.
    pub fn unblock(&self, id: WaiterId) {
        let _ = self.send(Request::Unblock { id });
    }

    /// Puts back members that were popped for a client that went away.
    pub fn restore(&self, popped: Vec<Popped>) {
        if !popped.is_empty() {
            let _ = self.send(Request::Restore(popped));
        }
    }

    /// Engine totals for INFO.
    ///
    /// # Errors
    ///
    /// [`Error::ShuttingDown`] if the engine has stopped.
    pub async fn totals(&self) -> Result<Totals> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Stats(tx))?;
        rx.await.map_err(|_| Error::ShuttingDown)
    }

    /// The fsync policy in force.
    pub fn fsync(&self) -> Fsync {
        Fsync::from_u8(self.fsync.load(Ordering::Relaxed))
    }

    /// Changes the fsync policy (CONFIG SET appendfsync).
    pub fn set_fsync(&self, f: Fsync) {
        self.fsync.store(f.to_u8(), Ordering::Relaxed);
    }

    /// Commits and fsyncs everything, wakes blocked clients with an error and
    /// stops the engine.
    ///
    /// # Errors
    ///
    /// A storage error from the final fsync.
    pub async fn shutdown(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Shutdown(tx))?;
        rx.await.map_err(|_| Error::ShuttingDown)?
    }
}

/// How long to sleep until `due_ms` by `clock`, capped so that a stepped wall
/// clock is noticed within a second.
fn sleep_until(clock: &dyn Clock, due_ms: Option<u64>) -> Duration {
    let cap = Duration::from_secs(1);
    match due_ms {
        Some(due) => {
            let now_us = clock.now_us();
            Duration::from_micros((due.saturating_mul(1000)).saturating_sub(now_us)).min(cap)
        }
        None => cap,
    }
}

fn run(
    mut core: Core,
    rx: mpsc::Receiver<Request>,
    writer: mpsc::Sender<WriterMsg>,
    fsync: Arc<AtomicU8>,
    stats: Arc<SharedStats>,
) {
    let mut msgs = Vec::with_capacity(MAX_ROUND);
    let mut shutdown = None;
    while shutdown.is_none() {
        let timeout = sleep_until(core.clock().as_ref(), core.next_wakeup_ms());
        match rx.recv_timeout(timeout) {
            Ok(m) => msgs.push(m),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        while msgs.len() < MAX_ROUND {
            match rx.try_recv() {
                Ok(m) => msgs.push(m),
                Err(_) => break,
            }
        }
        let mut round = Round::default();
        if let Err(e) = core.tick() {
            tracing::error!("paging in from the store failed: {e}");
        }
        for msg in msgs.drain(..) {
            match msg {
                Request::Exec { cmds, tx } => {
                    let replies = cmds.iter().map(|c| c.apply(&mut core)).collect();
                    round.batches.push((tx, replies));
                }
                Request::Block { id, waiter } => core.block(id, waiter),
                Request::Unblock { id } => core.unblock(id),
                Request::Restore(popped) => {
                    if let Err(e) = core.restore(&popped) {
                        tracing::warn!("could not put back {} popped members: {e}", popped.len());
                    }
                }
                Request::Stats(tx) => {
                    let _ = tx.send(core.totals());
                }
                Request::StorageFailed(why) => {
                    stats.set_failure(why.clone());
                    core.fail(why);
                }
                Request::Shutdown(tx) => shutdown = Some(tx),
            }
        }
        core.serve_waiters();
        round.waiters = core.take_waiter_replies();
        match core.store_mut().commit() {
            Ok(dirty) => {
                round.dirty = dirty;
                if dirty {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    stats.unsynced.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => {
                let why = format!("write failed: {e}");
                stats.set_failure(why.clone());
                round.fail(&why);
                core.fail(why);
                if let Err(e) = core.reload() {
                    tracing::error!("reloading state from the store failed: {e}");
                }
            }
        }
        if Fsync::from_u8(fsync.load(Ordering::Relaxed)) == Fsync::Always {
            // Through the writer, in order: replies wait for the fsync that
            // covers their round, or for the rounds before them.
            if let Err(mpsc::SendError(WriterMsg::Round(r))) = writer.send(WriterMsg::Round(round))
            {
                let _ = r.release();
            }
        } else {
            let lost = round.release();
            if !lost.is_empty() {
                let put_back = core.restore(&lost).and_then(|()| core.store_mut().commit());
                if let Err(e) = put_back {
                    tracing::warn!("could not put back {} popped members: {e}", lost.len());
                }
            }
        }
    }
    // Shutting down: wake blocked clients, make everything durable.
    core.wake_all_blocked(Reply::from(Error::ShuttingDown));
    let result = core.store_mut().commit().map(|_| ()).and_then(|()| {
        let (tx, rx) = mpsc::channel();
        writer
            .send(WriterMsg::Flush(tx))
            .map_err(|_| Error::ShuttingDown)?;
        rx.recv().map_err(|_| Error::ShuttingDown)?
    });
    if let Some(tx) = shutdown {
        let _ = tx.send(result);
    }
}
