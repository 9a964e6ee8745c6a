//! The store of a replicated group (cluster mode): the group's Raft log is
//! the durable record, and fjall holds what the group committed.
//!
//! On the leader, a round's batch is not applied to fjall: it becomes a
//! [`Proposal`] to the group and waits in an [`Overlay`] (reads see it
//! there) until the group commits it and the state machine applies it to
//! fjall, on every replica alike. Applying only committed batches is what
//! keeps replicas identical: a leader that applied its own rounds before
//! the group committed them, then lost leadership, would hold batches the
//! new leader never had.
//!
//! A reply waits until its batch is committed and applied here
//! ([`Commits::wait`]): by then a majority of the group holds it as
//! durably as `appendfsync` requires.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, watch};

use super::fjall::FjallStorage;
use super::overlay::Overlay;
use super::wal::lock;
use super::{Batch, Journal, Op, Scan, Space, Storage};
use crate::{Error, Result};

/// One engine round as the group's log carries it: its effects, never the
/// commands, so every replica applies the same bytes whatever its clock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Proposal {
    /// The node that proposed it, and that node's process (a restarted
    /// node numbers its rounds anew).
    pub origin: u64,
    pub incarnation: u64,
    /// The round's number on its node.
    pub lsn: u64,
    pub ops: Vec<Op>,
}

/// How far the group committed this node's batches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CommitState {
    /// Every batch of this process up to here is committed and applied.
    pub upto: u64,
    /// Batches up to here not committed by then may never be: their
    /// proposer lost leadership.
    pub lost_through: u64,
}

/// A waiter on [`CommitState`].
#[derive(Clone)]
pub(crate) struct Commits(watch::Receiver<CommitState>);

impl Commits {
    /// Waits until batch `lsn` is committed and applied.
    ///
    /// # Errors
    ///
    /// `CLUSTERDOWN`: its proposer lost leadership first, so whether it is
    /// committed is unknown (a client retries on the new leader).
    pub(crate) async fn wait(mut self, lsn: u64) -> Result<()> {
        loop {
            let s = *self.0.borrow_and_update();
            if s.upto >= lsn {
                return Ok(());
            }
            if s.lost_through >= lsn || self.0.changed().await.is_err() {
                return Err(Error::not_leader());
            }
        }
    }
}

/// What the engine's store, the group's state machine and the node's
/// proposer share, for the whole life of the process.
pub(crate) struct LeaderLink {
    origin: u64,
    incarnation: u64,
    overlay: Mutex<Overlay>,
    commits: watch::Sender<CommitState>,
    /// Where proposals go while this node leads.
    proposals: Mutex<Option<mpsc::UnboundedSender<Proposal>>>,
    last_proposed: AtomicU64,
}

impl LeaderLink {
    /// A link for node `origin` in this process (`incarnation` must differ
    /// between processes of one node).
    pub(crate) fn new(origin: u64, incarnation: u64) -> Arc<LeaderLink> {
        Arc::new(LeaderLink {
            origin,
            incarnation,
            overlay: Mutex::default(),
            commits: watch::channel(CommitState::default()).0,
            proposals: Mutex::new(None),
            last_proposed: AtomicU64::new(0),
        })
    }

    /// The number of the last batch proposed: a new leadership continues
    /// after it.
    pub(crate) fn last_proposed(&self) -> u64 {
        self.last_proposed.load(Ordering::Acquire)
    }

    /// Starts a leadership: proposals go to `to` from now on.
    pub(crate) fn lead(&self, to: mpsc::UnboundedSender<Proposal>) {
        *lock(&self.overlay) = Overlay::default();
        *lock(&self.proposals) = Some(to);
    }

    /// Ends a leadership: what was proposed and not applied yet is of
    /// unknown fate, and the overlay goes.
    pub(crate) fn lose(&self) {
        *lock(&self.proposals) = None;
        *lock(&self.overlay) = Overlay::default();
        let through = self.last_proposed();
        self.commits
            .send_modify(|s| s.lost_through = s.lost_through.max(through));
    }

    /// Called by the state machine once a committed proposal is in fjall.
    pub(crate) fn applied(&self, p: &Proposal) {
        if p.origin != self.origin || p.incarnation != self.incarnation {
            return;
        }
        lock(&self.overlay).retire(p.lsn, &p.ops);
        self.commits.send_modify(|s| s.upto = s.upto.max(p.lsn));
    }
}

/// The engine's storage in cluster mode.
pub(crate) struct ReplicatedStorage {
    /// The group's committed state; `None` for the empty standby store of a
    /// node that does not lead.
    data: Option<Arc<FjallStorage>>,
    link: Arc<LeaderLink>,
}

impl ReplicatedStorage {
    /// The leader's storage over the group's committed state.
    pub(crate) fn leading(data: Arc<FjallStorage>, link: Arc<LeaderLink>) -> ReplicatedStorage {
        ReplicatedStorage {
            data: Some(data),
            link,
        }
    }

    /// An empty storage that takes no writes, for an engine that does not
    /// serve.
    pub(crate) fn standby(link: Arc<LeaderLink>) -> ReplicatedStorage {
        ReplicatedStorage { data: None, link }
    }
}

impl Storage for ReplicatedStorage {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let Some(data) = &self.data else {
            return Ok(None);
        };
        Overlay::get_over(&self.link.overlay, space, key, || data.get(space, key))
    }

    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>, reverse: bool) -> Scan<'_> {
        let Some(data) = &self.data else {
            return Box::new(std::iter::empty());
        };
        Overlay::scan_over(&self.link.overlay, space, from, to, reverse, || {
            data.scan(space, from, to, reverse)
        })
    }

    fn apply(&mut self, batch: Batch) -> Result<()> {
        if self.data.is_none() {
            return Err(Error::not_leader());
        }
        let proposals = lock(&self.link.proposals);
        let Some(to) = proposals.as_ref() else {
            return Err(Error::not_leader());
        };
        lock(&self.link.overlay).insert(batch.lsn, &batch.ops);
        let proposal = Proposal {
            origin: self.link.origin,
            incarnation: self.link.incarnation,
            lsn: batch.lsn,
            ops: batch.ops,
        };
        if to.send(proposal).is_err() {
            return Err(Error::not_leader());
        }
        self.link
            .last_proposed
            .fetch_max(batch.lsn, Ordering::AcqRel);
        Ok(())
    }

    fn journal(&self) -> Arc<dyn Journal> {
        Arc::new(ReplicatedJournal(self.link.clone()))
    }

    fn flush(&self) -> Result<()> {
        match &self.data {
            Some(d) => d.flush(),
            None => Ok(()),
        }
    }

    fn disk_space(&self) -> u64 {
        self.data.as_ref().map_or(0, |d| d.disk_space())
    }
}

/// The group's log is the durable record: nothing to write or fsync here.
struct ReplicatedJournal(Arc<LeaderLink>);

impl Journal for ReplicatedJournal {
    fn write(&self) -> Result<()> {
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        Ok(())
    }

    fn committed(&self) -> Option<Commits> {
        Some(Commits(self.0.commits.subscribe()))
    }
}
