//! The engine's state machine: queues in memory over the store.
//!
//! [`Core`] is used by one thread at a time and does no socket I/O: the
//! engine runs commands and timer ticks on it under a mutex, tests call it
//! directly with a manual clock.
//! Every mutation is applied to memory and added to the store's batch in the
//! same call, so memory and store never disagree once the round commits.
//!
//! # Two tiers
//! A member whose due time is at or before `hot_until` (about `now + horizon`)
//! is *hot*: it is in memory, in the timing wheel (or in its queue's ready
//! list once due). Members further out are *cold*: only in the store's time
//! index. The pager raises `hot_until` as time passes and pages cold members
//! in, in due order, well before they are due. Each queue counts its cold
//! members, so commands only read the store when a queue has some.
//!
//! The horizon follows a memory budget (`hot-max-members`): it grows up to
//! `--horizon-ms` while the hot members fit, and when they do not, the
//! farthest half of the hot window is moved to disk ([`Core::demote_after`])
//! and the horizon shrinks to what is left, so the nearest future is in
//! memory whatever the backlog.
//!
//! # Files
//! - this file: the state, loading it from the store, and where each member
//!   lives (hot in the wheel and ready lists, or cold on disk);
//! - `commands.rs`: what each queue command does to that state;
//! - `pager.rs`: time passing: firing the wheel and paging the near future in
//!   from disk;
//! - `waiters.rs`: blocked consumers, served first come, first served.
//!
//! Each command and the pager also tell the [`Tracer`] what happened to
//! each member (`trace-queues`); with tracing off that is one branch per
//! event site.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::hash::BuildHasher;

use crate::engine::FastMap;
use std::sync::Arc;

use bytes::Bytes;

use super::clock::Clock;
use super::lateness::Lateness;
use super::members::{MemberIndex, Members, Place};
use super::store::{FLAG_LEASED, MemberMeta, Scheduled, Store};
use super::trace::{Event, Kind, TraceRecord, Tracer};
use crate::{Error, Result};

mod commands;
mod listing;
mod pager;
mod waiters;
mod watch;

pub use self::commands::Popped;
pub use self::listing::QueueSort;
pub(crate) use self::listing::{QueueLister, STEP_VISITS};
use self::pager::{MIN_HORIZON_MS, PAGE_STEP_MS};
pub use self::waiters::{Delivery, Waiter, WaiterReply};

/// Latest due time accepted: the last millisecond of year 9999.
pub const MAX_DUE_MS: u64 = 253_402_300_799_999;

/// Index of a queue in the engine's slab.
pub type QueueId = u32;

/// Identifies a blocked client.
pub type WaiterId = u64;

/// Where a member was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// In memory, with this record id.
    Hot(u32),
    /// Only on disk.
    Cold,
}

/// Counters kept per queue since start (reported by DELAYINFO). They are
/// kept while the queue is empty, and dropped by DEL and FLUSHALL.
#[derive(Debug, Default, Clone, Copy)]
pub struct QueueCounters {
    pub added: u64,
    pub popped: u64,
    pub acked: u64,
    pub expired_leases: u64,
    pub dead_lettered: u64,
}

/// Options of a pop.
#[derive(Debug, Clone, Default)]
pub struct PopOptions {
    /// Most members to pop.
    pub count: usize,
    /// Hide popped members for this many ms instead of removing them.
    pub lease: Option<u64>,
    /// With a lease: a member already delivered this many times is moved
    /// to `dead_letter` instead of being delivered again.
    pub retries: Option<u32>,
    pub dead_letter: Option<Bytes>,
    /// Reply with `[member, deliveries]` pairs.
    pub with_counts: bool,
}

impl PopOptions {
    /// Pop `count` members, nothing else.
    pub fn count(count: usize) -> PopOptions {
        PopOptions {
            count,
            ..PopOptions::default()
        }
    }
}

/// One delay queue in memory.
#[derive(Debug)]
pub struct Queue {
    name: Bytes,
    /// All members, hot and cold, leased included.
    card: u64,
    /// Members only on disk.
    cold: u64,
    /// Lower bound of the earliest cold due time (may be stale-low).
    next_cold_due: Option<u64>,
    /// No member of the queue is due before this: everything below it in
    /// the time index is popped (tombstones), so scans start here.
    floor: u64,
    /// The members in memory.
    members: MemberIndex,
    leased: u64,
}

/// A snapshot of one queue for DELAYINFO.
#[derive(Debug, Clone, Default)]
pub struct QueueInfo {
    pub pending: u64,
    pub ready: u64,
    pub leased: u64,
    pub next_due: Option<u64>,
    pub oldest_ready_due: Option<u64>,
    pub counters: QueueCounters,
}

/// Engine-wide totals (for INFO and metrics).
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Firing lateness since start.
    pub lateness: Lateness,
    /// Members added, popped, acked, dead-lettered since start (all queues).
    pub added: u64,
    pub popped: u64,
    pub acked: u64,
    /// Bytes the store takes on disk.
    pub disk_bytes: u64,
    pub queues: u64,
    pub members: u64,
    pub hot: u64,
    pub ready: u64,
    pub leased: u64,
    pub blocked: u64,
    pub wheel: u64,
    pub dead_lettered: u64,
    pub hot_until: u64,
    /// The horizon in force (ms) and `hot-max-members`.
    pub horizon_ms: u64,
    pub hot_max: u64,
    pub expired_leases: u64,
}

/// Options of `DELAYADD`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddFlags {
    pub nx: bool,
    pub xx: bool,
    pub ch: bool,
}

/// The engine state.
pub struct Core {
    store: Store,
    clock: Arc<dyn Clock>,
    members: Members,
    queues: Vec<Option<Queue>>,
    free_ids: Vec<QueueId>,
    /// Queues by (stable hash of name, name): the order SCAN cursors walk.
    index: BTreeMap<(u64, Bytes), QueueId>,
    /// The same queues by name (sharing the name's bytes), so a page of the
    /// queue list by name walks only that page, and a glob with a literal
    /// prefix only the names with that prefix (see `listing.rs`). Lookups
    /// by name stay on `index`: its keys compare by the hash first, with
    /// no pointer to follow.
    names: BTreeMap<Bytes, QueueId>,
    /// The horizon in force: at most `horizon_max_ms`, less while the
    /// members in memory would not fit `hot_max`.
    horizon_ms: u64,
    /// `--horizon-ms`.
    horizon_max_ms: u64,
    /// `hot-max-members`: the most members kept in memory.
    hot_max: usize,
    hot_until: u64,
    /// Queues with cold members, by a lower bound of their next cold due time.
    cold_heap: BinaryHeap<Reverse<(u64, QueueId)>>,
    waiters: FastMap<Bytes, VecDeque<WaiterId>>,
    blocked: FastMap<WaiterId, Waiter>,
    signaled: Vec<QueueId>,
    outgoing: Vec<WaiterReply>,
    counters: FastMap<Bytes, QueueCounters>,
    now: u64,
    failed: Option<String>,
    members_total: u64,
    expired_leases: u64,
    leased_total: u64,
    fired: Vec<u32>,
    lateness: Lateness,
    /// The pager's target while it pages in (raising `hot_until` to it).
    paging: Option<u64>,
    /// How far members were paged in beyond `hot_until` (recorded in the
    /// store, for a restart).
    paged_until: u64,
    /// The message trace: settings, the actor, each traced queue's bounds.
    tracer: Tracer,
    /// The actor of each blocked client (while tracing), so that a member
    /// handed to it later is recorded as taken by it, not by whichever
    /// client's command made the member due.
    waiter_actors: FastMap<WaiterId, Arc<str>>,
    /// Versions of the queues clients WATCH (see `watch.rs`).
    watched: watch::WatchMap,
}

/// The live queue `id` names.
///
/// # Panics
///
/// If `id` names no live queue: ids come from the name index, the wheel and
/// the cold heap, which only hold live queues' ids, so this is a bug; the
/// engine catches the panic and fails (refuses writes) instead of serving
/// state that may disagree with the store.
#[expect(clippy::expect_used, reason = "an invariant of the slab, see # Panics")]
fn live(queues: &[Option<Queue>], id: QueueId) -> &Queue {
    queues[id as usize]
        .as_ref()
        .expect("queue id names a live queue")
}

/// [`live`], mutably.
///
/// # Panics
///
/// As [`live`].
#[expect(clippy::expect_used, reason = "an invariant of the slab, see # Panics")]
fn live_mut(queues: &mut [Option<Queue>], id: QueueId) -> &mut Queue {
    queues[id as usize]
        .as_mut()
        .expect("queue id names a live queue")
}

/// A hash of a queue name that is the same in every process, so SCAN
/// cursors stay meaningful; 0 is reserved for "start" and "done".
fn name_hash(name: &[u8]) -> u64 {
    // A fixed seed: the same order in every process (and no need to resist
    // collisions, the index being ordered, not hashed).
    (foldhash::fast::FixedState::with_seed(0x6465_6c61_7964).hash_one(name) >> 1).max(1)
}

impl Core {
    /// Loads the engine state from `store`: each queue's cardinality and
    /// the members due within the horizon. The backlog beyond it stays on
    /// disk, so this costs one seek per queue plus the near-term members.
    ///
    /// # Errors
    ///
    /// A storage error while reading.
    pub fn load(store: Store, clock: Arc<dyn Clock>, horizon_ms: u64) -> Result<Core> {
        let now = clock.now_ms();
        let horizon_ms = horizon_ms.max(1);
        let mut core = Core {
            store,
            clock,
            members: Members::new(now),
            queues: Vec::new(),
            free_ids: Vec::new(),
            index: BTreeMap::new(),
            names: BTreeMap::new(),
            horizon_ms,
            horizon_max_ms: horizon_ms,
            hot_max: usize::MAX,
            hot_until: now,
            cold_heap: BinaryHeap::new(),
            waiters: FastMap::default(),
            blocked: FastMap::default(),
            signaled: Vec::new(),
            outgoing: Vec::new(),
            counters: FastMap::default(),
            now,
            failed: None,
            members_total: 0,
            expired_leases: 0,
            leased_total: 0,
            fired: Vec::new(),
            lateness: Lateness::default(),
            paging: None,
            paged_until: 0,
            tracer: Tracer::default(),
            waiter_actors: FastMap::default(),
            watched: watch::WatchMap::default(),
        };
        core.load_from_store()?;
        core.store.set_hot_until(core.hot_until);
        Ok(core)
    }

    /// Forgets every queue in memory (the members' slab is the caller's).
    fn forget_queues(&mut self) {
        self.queues.clear();
        self.free_ids.clear();
        self.index.clear();
        self.names.clear();
        self.cold_heap.clear();
        self.members_total = 0;
        self.leased_total = 0;
    }

    /// Clears the in-memory queues and rebuilds them from the store.
    fn load_from_store(&mut self) -> Result<()> {
        self.now = self.clock.now_ms();
        self.members = Members::new(self.now);
        self.forget_queues();
        // At least as far as before the restart: members up to the recorded
        // horizon have no point-lookup entry and must be in memory.
        let recorded = self.store.hot_until()?;
        // Members paged in beyond it have no entry either: load them too,
        // even if the wall clock stepped back since.
        self.paged_until = self.store.paged_until()?;
        // A new store starts with the whole horizon. A restart starts with
        // what was in memory before (which `hot-max-members` may have held
        // below `--horizon-ms`), so it loads no more than that; the pager
        // widens it again in the background.
        let ahead = if recorded == 0 {
            self.horizon_max_ms
        } else {
            self.horizon_ms.min(PAGE_STEP_MS)
        };
        self.hot_until = self
            .now
            .saturating_add(ahead)
            .max(recorded)
            .max(self.paged_until);
        self.horizon_ms = (self.hot_until - self.now)
            .clamp(MIN_HORIZON_MS.min(self.horizon_max_ms), self.horizon_max_ms);
        self.tracer.load(&mut self.store)?;
        for (name, card, floor) in self.store.queues()? {
            let id = self.queue_or_create(&name);
            self.queue_mut(id).floor = floor;
            // One scan: the members due within the horizon, and the due time
            // of the first one beyond it.
            let (hot, next) = self.store.page_in(&name, floor, self.hot_until)?;
            let hot_count = hot.len() as u64;
            for s in hot {
                // Cold before the restart: drop its point-lookup entry, as
                // the pager does, or a lookup would find it after its pop.
                if s.meta.due > recorded {
                    self.store.warm(&name, &s.member);
                }
                // A lease still running (a due lease has run out).
                self.set_leased(id, false, s.meta.leased() && s.meta.due > self.now);
                self.place_hot(id, &s.member, s.meta);
            }
            let q = self.queue_mut(id);
            q.card = card;
            q.cold = card.saturating_sub(hot_count);
            self.members_total += card;
            if card > hot_count {
                self.set_next_cold(id, next);
            }
        }
        Ok(())
    }

    /// The round's current time (Unix ms).
    pub fn now(&self) -> u64 {
        self.now
    }

    /// The clock the engine reads.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The store (for commit and sync by the engine loop).
    pub fn store_mut(&mut self) -> &mut Store {
        &mut self.store
    }

    /// Why writes are refused, if the store has failed.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Records a storage failure: from now on writes are refused.
    pub fn fail(&mut self, why: String) {
        tracing::error!("storage failed, refusing writes from now on: {why}");
        self.failed = Some(why);
    }

    /// Refuses writes after a storage failure.
    ///
    /// # Errors
    ///
    /// [`Error::Storage`] once the store has failed.
    pub fn check_writable(&self) -> Result<()> {
        match &self.failed {
            Some(why) => Err(Error::storage(format!(
                "{why}; writes are refused until restart"
            ))),
            None => Ok(()),
        }
    }

    // ---- message trace ----

    /// Sets who runs the commands that follow (client id, name, address),
    /// recorded in the trace with the events a client causes (added,
    /// rescheduled, popped, leased, acked, dead-lettered, removed). A
    /// client that blocks keeps the actor in force when it blocked.
    pub fn set_actor(&mut self, actor: Option<Arc<str>>) {
        self.tracer.replace_actor(actor);
    }

    /// Whether any queue is traced (so a caller builds an actor text only
    /// then).
    pub fn tracing(&self) -> bool {
        self.tracer.on()
    }

    /// Sets the glob of traced queues (`trace-queues`; empty: off).
    pub fn set_trace_queues(&mut self, pattern: &[u8]) {
        self.tracer.set_pattern(pattern);
    }

    /// Sets how many trace events each queue keeps (`trace-max-events`).
    pub fn set_trace_max_events(&mut self, n: u64) {
        self.tracer.set_max_events(n);
    }

    /// The trace settings in force: the glob (empty when off) and the
    /// events kept per queue.
    pub fn trace_settings(&self) -> (Bytes, u64) {
        (
            Bytes::copy_from_slice(self.tracer.pattern()),
            self.tracer.max_events(),
        )
    }

    /// `DELAYTRACE`: the kept events of a member, oldest first. One scan of
    /// the queue's kept events (at most `trace-max-events`).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn trace(&mut self, key: &[u8], member: &[u8]) -> Result<Vec<TraceRecord>> {
        self.tracer.events(&mut self.store, key, member)
    }

    /// Whether events are recorded now: tracing is on and the store takes
    /// writes (after a failure the round's batch is dropped, and the
    /// bounds in memory must not run ahead of the store).
    #[inline]
    fn traced(&self) -> bool {
        self.tracer.on() && self.failed.is_none()
    }

    /// Records an event of `member` of queue `key` now, if it is traced.
    fn record(&mut self, key: &[u8], member: &[u8], ev: &Event<'_>) {
        self.tracer
            .record(&mut self.store, self.now, key, member, ev);
    }

    /// Engine-wide totals.
    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            queues: self.index.len() as u64,
            members: self.members_total,
            leased: self.leased_total,
            blocked: self.blocked.len() as u64,
            wheel: self.members.wheel_len() as u64,
            hot: self.members.len() as u64,
            hot_until: self.hot_until,
            horizon_ms: self.horizon_ms,
            hot_max: self.hot_max as u64,
            expired_leases: self.expired_leases,
            ..Totals::default()
        };
        for q in self.queues.iter().flatten() {
            t.ready += q.members.ready_len() as u64;
        }
        for c in self.counters.values() {
            t.added += c.added;
            t.popped += c.popped;
            t.acked += c.acked;
            t.dead_lettered += c.dead_lettered;
        }
        t.lateness = self.lateness.clone();
        t.disk_bytes = self.store.disk_space();
        t
    }

    /// The `n` queues with the largest backlog (ready, then pending), for
    /// per-queue metrics that stay bounded however many queues exist:
    /// `(name, pending, ready)`.
    pub fn top_queues(&self, n: usize) -> Vec<(Bytes, u64, u64)> {
        let mut all: Vec<(Bytes, u64, u64)> = self
            .queues
            .iter()
            .flatten()
            .map(|q| (q.name.clone(), q.card, q.members.ready_len() as u64))
            .collect();
        let key = |x: &(Bytes, u64, u64)| std::cmp::Reverse((x.2, x.1));
        if all.len() > n && n > 0 {
            all.select_nth_unstable_by_key(n - 1, key);
            all.truncate(n);
        }
        all.truncate(n);
        all.sort_by_key(key);
        all
    }

    /// Up to `max` names of the queues `keep` takes, in no set order.
    pub fn queue_names(&self, keep: impl Fn(&[u8]) -> bool, max: usize) -> Vec<Bytes> {
        self.queues
            .iter()
            .flatten()
            .filter(|q| keep(&q.name))
            .take(max)
            .map(|q| q.name.clone())
            .collect()
    }

    // ---- queues and members: where each member lives ----

    fn queue_mut(&mut self, id: QueueId) -> &mut Queue {
        live_mut(&mut self.queues, id)
    }

    fn queue_id(&self, name: &[u8]) -> Option<QueueId> {
        self.index
            .get(&(name_hash(name), Bytes::copy_from_slice(name)))
            .copied()
    }

    fn queue_or_create(&mut self, name: &Bytes) -> QueueId {
        if let Some(id) = self.queue_id(name) {
            return id;
        }
        let q = Queue {
            name: name.clone(),
            card: 0,
            cold: 0,
            next_cold_due: None,
            floor: 0,
            members: MemberIndex::default(),
            leased: 0,
        };
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.queues[id as usize] = Some(q);
                id
            }
            None => {
                self.queues.push(Some(q));
                (self.queues.len() - 1) as QueueId
            }
        };
        self.index.insert((name_hash(name), name.clone()), id);
        self.names.insert(name.clone(), id);
        id
    }

    /// Drops a queue that has no members left (an empty queue does not
    /// exist, as an empty sorted set does not in Redis).
    fn drop_if_empty(&mut self, id: QueueId) {
        let Some(q) = self.queues.get(id as usize).and_then(Option::as_ref) else {
            return;
        };
        if q.card > 0 {
            return;
        }
        let name = q.name.clone();
        self.names.remove(&name);
        self.index.remove(&(name_hash(&name), name));
        self.queues[id as usize] = None;
        self.free_ids.push(id);
    }

    /// Puts a member in memory at its due time.
    fn place_hot(&mut self, id: QueueId, member: &[u8], meta: MemberMeta) {
        let now = self.now;
        let q = live_mut(&mut self.queues, id);
        let (_, ready) = self
            .members
            .insert(&mut q.members, id, member.into(), meta, now);
        if ready {
            self.signaled.push(id);
        }
    }

    /// Whether a due time is beyond the in-memory horizon.
    fn is_cold(&self, due: u64) -> bool {
        due > self.hot_until
    }

    /// Counts a member on disk only, remembering the earliest such due time.
    fn place_cold(&mut self, id: QueueId, due: u64) {
        let q = self.queue_mut(id);
        q.cold += 1;
        // The first cold member: a due time kept from earlier cold members
        // may have lost its heap entry (the pager drops entries of queues
        // with none left), so this one schedules itself.
        if q.cold == 1 || q.next_cold_due.is_none_or(|n| due < n) {
            q.next_cold_due = Some(due);
            self.cold_heap.push(Reverse((due, id)));
        }
    }

    /// Places a member on the tier its due time belongs to.
    fn place(&mut self, id: QueueId, member: &[u8], meta: MemberMeta) {
        if self.is_cold(meta.due) {
            self.place_cold(id, meta.due);
        } else {
            self.place_hot(id, member, meta);
        }
    }

    /// Takes a member out of memory (or out of the cold count).
    fn unplace(&mut self, id: QueueId, found: Found) {
        let q = live_mut(&mut self.queues, id);
        match found {
            Found::Hot(mid) => {
                self.members.remove(&mut q.members, mid);
            }
            Found::Cold => q.cold = q.cold.saturating_sub(1),
        }
    }

    /// Finds a member on either tier.
    fn lookup(&mut self, id: QueueId, member: &[u8]) -> Result<Option<(MemberMeta, Found)>> {
        let q = live(&self.queues, id);
        if let Some(mid) = self.members.find(&q.members, member) {
            return Ok(Some((self.members.meta(mid), Found::Hot(mid))));
        }
        if q.cold == 0 {
            return Ok(None);
        }
        let name = q.name.clone();
        Ok(self.store.get(&name, member)?.map(|m| (m, Found::Cold)))
    }

    /// Lowers a queue's floor to cover a member due at `due`.
    fn lower_floor(&mut self, id: QueueId, due: u64) {
        let q = self.queue_mut(id);
        q.floor = q.floor.min(due);
    }

    /// Persists a queue's cardinality and floor.
    /// Every change of a queue's members or their records comes here, so
    /// this is also where the queue is touched for WATCH.
    fn save_queue(&mut self, id: QueueId) {
        let q = self.queue_mut(id);
        let (name, card, floor) = (q.name.clone(), q.card, q.floor);
        self.store.set_queue(&name, card, floor);
        self.touch(&name);
    }

    fn set_leased(&mut self, id: QueueId, was: bool, is: bool) {
        if was != is {
            let q = self.queue_mut(id);
            if is {
                q.leased += 1;
                self.leased_total += 1;
            } else {
                q.leased = q.leased.saturating_sub(1);
                self.leased_total = self.leased_total.saturating_sub(1);
            }
        }
    }

    /// Whether a member is under a lease that has not run out: leased and
    /// not yet come due (a cold member has not).
    fn lease_running(&self, meta: MemberMeta, found: Found) -> bool {
        meta.leased()
            && match found {
                Found::Cold => true,
                Found::Hot(mid) => self.members.place(mid) != Place::Ready,
            }
    }

    fn remove_member(&mut self, id: QueueId, member: &[u8], meta: MemberMeta, found: Found) {
        let running = self.lease_running(meta, found);
        self.unplace(id, found);
        self.set_leased(id, running, false);
        let q = self.queue_mut(id);
        q.card -= 1;
        let name = q.name.clone();
        self.members_total -= 1;
        self.store.delete(&name, member, meta, found == Found::Cold);
        self.save_queue(id);
        self.drop_if_empty(id);
    }

    /// Writes a member's new record and moves it to its new place.
    fn reschedule(
        &mut self,
        id: QueueId,
        member: &[u8],
        old: MemberMeta,
        found: Found,
        new: MemberMeta,
    ) {
        let running = self.lease_running(old, found);
        self.set_leased(id, running, new.leased());
        self.lower_floor(id, new.due);
        // The floor may have moved: a restart scans from the recorded one.
        self.save_queue(id);
        let cold = self.is_cold(new.due);
        let name = self.queue_mut(id).name.clone();
        self.store
            .put(&name, member, new, cold, Some((old, found == Found::Cold)));
        match (found, cold) {
            (Found::Hot(mid), false) => {
                let now = self.now;
                let q = live_mut(&mut self.queues, id);
                if self.members.update(&mut q.members, mid, new, now) {
                    self.signaled.push(id);
                }
            }
            _ => {
                self.unplace(id, found);
                self.place(id, member, new);
            }
        }
    }

    /// Puts back members whose pop reached no client (it disconnected).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn restore(&mut self, popped: &[Popped]) -> Result<()> {
        self.check_writable()?;
        for p in popped {
            let id = self.queue_or_create(&p.queue);
            match (self.lookup(id, &p.member)?, p.after) {
                (None, None) => {
                    self.queue_mut(id).card += 1;
                    self.lower_floor(id, p.before.due);
                    self.members_total += 1;
                    let cold = self.is_cold(p.before.due);
                    self.store.put(&p.queue, &p.member, p.before, cold, None);
                    self.save_queue(id);
                    self.place(id, &p.member, p.before);
                    if self.traced() {
                        self.record(
                            &p.queue,
                            &p.member,
                            &Event::due(Kind::PutBack, p.before.due),
                        );
                    }
                }
                (Some((cur, found)), Some(after)) if cur == after => {
                    self.reschedule(id, &p.member, cur, found, p.before);
                    if self.traced() {
                        self.record(
                            &p.queue,
                            &p.member,
                            &Event::due(Kind::PutBack, p.before.due),
                        );
                    }
                }
                _ => {}
            }
            self.drop_if_empty(id);
        }
        Ok(())
    }

    /// Replaces the in-memory state with what the store holds (after a
    /// failed commit left memory ahead of it). Blocked clients stay blocked.
    ///
    /// # Errors
    ///
    /// A storage error while reading.
    pub fn reload(&mut self) -> Result<()> {
        // What a watcher saw in memory may not survive the reload.
        self.touch_existing();
        self.store.discard();
        let r = self.load_from_store();
        // Loading only reads; drop the bookkeeping a failed store cannot take.
        self.store.discard();
        r
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::engine::clock::ManualClock;

    const HORIZON: u64 = 10_000;

    fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Core {
        let store = Store::open(dir).unwrap();
        let mut core = Core::load(store, clock.clone(), HORIZON).unwrap();
        core.tick().unwrap();
        core
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn add(core: &mut Core, q: &str, due: u64, m: &str) -> i64 {
        let r = core
            .add(&b(q), &[(due, b(m))], AddFlags::default())
            .unwrap();
        core.store_mut().commit().unwrap();
        r
    }

    fn pop_all(core: &mut Core, q: &str) -> Vec<String> {
        let out = core
            .pop(q.as_bytes(), &PopOptions::count(1000))
            .unwrap()
            .into_iter()
            .map(|p| String::from_utf8(p.member.to_vec()).unwrap())
            .collect();
        core.store_mut().commit().unwrap();
        out
    }

    #[test]
    fn the_hot_budget_moves_the_farthest_members_to_disk_and_loses_none() {
        let dir = tempfile::tempdir().unwrap();
        let t0 = 1_000_000;
        let clock = Arc::new(ManualClock::new(t0));
        {
            let mut core = open(dir.path(), &clock);
            core.set_hot_max(10);
            // 100 members due over the whole horizon (10 s), 100 ms apart.
            for i in 0..100u64 {
                add(&mut core, "q", t0 + 100 + i * 99, &format!("m{i:03}"));
            }
            let t = core.totals();
            assert!(t.hot <= 10, "{} members in memory, budget 10", t.hot);
            assert!(
                t.horizon_ms < HORIZON,
                "the horizon shrank: {}",
                t.horizon_ms
            );
            assert_eq!(t.members, 100);
            // Every member is still found, on whichever tier.
            for i in 0..100u64 {
                let m = format!("m{i:03}");
                let meta = core.score(b"q", m.as_bytes()).unwrap().unwrap();
                assert_eq!(meta.due, t0 + 100 + i * 99, "{m}");
            }
            // A re-add of a member moved to disk reschedules it: no duplicate.
            assert_eq!(add(&mut core, "q", t0 + 9_990, "m050"), 0);
            core.store_mut().commit().unwrap();
        }
        // Killed and restarted: nothing lost, the budget still holds.
        let mut core = open(dir.path(), &clock);
        core.set_hot_max(10);
        core.store_mut().commit().unwrap();
        assert_eq!(core.card(b"q"), 100);
        let mut got = Vec::new();
        for step in 0..=120u64 {
            clock.set_ms(t0 + step * 100);
            core.tick().unwrap();
            core.store_mut().commit().unwrap();
            assert!(core.totals().hot <= 12, "over budget at step {step}");
            got.extend(pop_all(&mut core, "q"));
        }
        let mut want: Vec<String> = (0..100u64)
            .filter(|&i| i != 50)
            .map(|i| format!("m{i:03}"))
            .collect();
        want.push("m050".into());
        assert_eq!(got, want, "all delivered once, in due order");
        assert!(core.totals().horizon_ms > 0);
    }

    #[test]
    fn state_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        {
            let mut core = open(dir.path(), &clock);
            add(&mut core, "q", 1_000_100, "a");
            add(&mut core, "q", 1_000_050, "b");
            add(&mut core, "q", 9_000_000, "far");
            add(&mut core, "other", 1_000_010, "x");
            let lease = PopOptions {
                count: 1,
                lease: Some(500),
                ..PopOptions::default()
            };
            core.pop(b"q", &lease).unwrap(); // nothing due yet
            core.store_mut().commit().unwrap();
        }
        let mut core = open(dir.path(), &clock);
        assert_eq!(core.card(b"q"), 3);
        assert_eq!(core.card(b"other"), 1);
        assert_eq!(core.score(b"q", b"far").unwrap().unwrap().due, 9_000_000);
        clock.set_ms(1_000_100);
        core.tick().unwrap();
        assert_eq!(pop_all(&mut core, "q"), vec!["b", "a"]);
        assert_eq!(core.totals().members, 2);
    }

    #[test]
    fn leases_and_delivery_counts_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(5_000));
        {
            let mut core = open(dir.path(), &clock);
            add(&mut core, "q", 5_000, "job");
            core.tick().unwrap();
            let lease = PopOptions {
                count: 1,
                lease: Some(1_000),
                ..PopOptions::default()
            };
            let popped = core.pop(b"q", &lease).unwrap();
            assert_eq!(popped.len(), 1);
            core.store_mut().commit().unwrap();
        }
        let mut core = open(dir.path(), &clock);
        let meta = core.score(b"q", b"job").unwrap().unwrap();
        assert!(meta.leased());
        assert_eq!((meta.due, meta.deliveries), (6_000, 1));
        assert!(pop_all(&mut core, "q").is_empty(), "still under lease");
        clock.set_ms(6_000);
        core.tick().unwrap();
        assert_eq!(
            core.remove(b"q", &[b("job")], true).unwrap(),
            1,
            "ack after expiry"
        );
    }

    #[test]
    fn far_members_stay_on_disk_and_page_in_before_due() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let mut core = open(dir.path(), &clock);
        for i in 0..100u64 {
            // 0..99 s ahead: only the first ~10 s are within the horizon.
            add(&mut core, "q", i * 1_000 + 1, &format!("m{i}"));
        }
        let t = core.totals();
        assert_eq!(t.members, 100);
        assert!(t.hot <= 11, "only the horizon is in memory, got {}", t.hot);
        // Walk time forward; every member must come due exactly at its time.
        let mut got = Vec::new();
        for now in (0..=100_000u64).step_by(250) {
            clock.set_ms(now);
            core.tick().unwrap();
            for m in pop_all(&mut core, "q") {
                let i: u64 = m[1..].parse().unwrap();
                let due = i * 1_000 + 1;
                assert!(
                    due <= now && now - due < 250,
                    "{m} due {due} popped at {now}"
                );
                got.push(i);
            }
        }
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn cold_members_can_be_cancelled_rescheduled_and_scored() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let mut core = open(dir.path(), &clock);
        add(&mut core, "q", 500_000, "cold1");
        add(&mut core, "q", 600_000, "cold2");
        add(&mut core, "q", 700_000, "cold3");
        assert_eq!(core.totals().hot, 0);
        assert_eq!(core.score(b"q", b"cold1").unwrap().unwrap().due, 500_000);
        // NX on a cold member sees it exists.
        let nx = AddFlags {
            nx: true,
            ..AddFlags::default()
        };
        assert_eq!(core.add(&b("q"), &[(1, b("cold1"))], nx).unwrap(), 0);
        // Reschedule a cold member into the near future: it becomes hot.
        assert_eq!(add(&mut core, "q", 100, "cold2"), 0);
        assert_eq!(core.totals().hot, 1);
        assert_eq!(core.remove(b"q", &[b("cold3")], false).unwrap(), 1);
        core.store_mut().commit().unwrap();
        assert_eq!(core.card(b"q"), 2);
        clock.set_ms(100);
        core.tick().unwrap();
        assert_eq!(pop_all(&mut core, "q"), vec!["cold2"]);
        // Reschedule a hot member far out: it leaves memory but keeps counting.
        add(&mut core, "q", 150, "h");
        add(&mut core, "q", 800_000, "h");
        assert_eq!(core.totals().hot, 0);
        assert_eq!(core.card(b"q"), 2);
        let order: Vec<_> = core
            .range(b"q", 0, -1, false)
            .unwrap()
            .into_iter()
            .map(|s| s.member)
            .collect();
        assert_eq!(order, vec![b("cold1"), b("h")]);
    }

    #[test]
    fn restart_with_backlog_loads_only_the_horizon() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        {
            let mut core = open(dir.path(), &clock);
            let items: Vec<_> = (0..5_000u64)
                .map(|i| (1_000_000 + i, b(&format!("m{i}"))))
                .collect();
            core.add(&b("q"), &items, AddFlags::default()).unwrap();
            add(&mut core, "q", 50, "soon");
            core.store_mut().commit().unwrap();
        }
        let mut core = open(dir.path(), &clock);
        let t = core.totals();
        assert_eq!((t.members, t.hot), (5_001, 1));
        clock.set_ms(1_000_000 + 4_999);
        core.tick().unwrap();
        let popped = pop_all(&mut core, "q");
        assert_eq!(popped.len(), 1000, "COUNT caps the pop");
        assert_eq!(popped[0], "soon");
        assert_eq!(popped[1], "m0");
    }

    #[test]
    fn stepped_back_wall_clock_never_delivers_early() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(10_000));
        let mut core = open(dir.path(), &clock);
        add(&mut core, "q", 10_500, "a");
        clock.set_ms(10_400);
        core.tick().unwrap();
        // The wall clock jumps back 5 s (NTP step): a member due at 10_450 is
        // not due by the wall clock, though the wheel has run past it.
        clock.set_ms(5_400);
        core.tick().unwrap();
        add(&mut core, "q", 10_450, "b");
        add(&mut core, "q", 5_000, "c");
        assert_eq!(pop_all(&mut core, "q"), vec!["c"]);
        clock.set_ms(10_449);
        core.tick().unwrap();
        assert!(pop_all(&mut core, "q").is_empty());
        clock.set_ms(10_500);
        core.tick().unwrap();
        assert_eq!(pop_all(&mut core, "q"), vec!["b", "a"]);
    }

    #[test]
    fn blocked_clients_are_served_first_come_first_served() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(0));
        let mut core = open(dir.path(), &clock);
        let (tx1, mut rx1) = tokio::sync::oneshot::channel();
        let (tx2, mut rx2) = tokio::sync::oneshot::channel();
        let waiter = |tx| Waiter {
            keys: vec![b("q")],
            opts: PopOptions::count(1),
            tx,
        };
        core.block(1, waiter(tx1));
        core.block(2, waiter(tx2));
        add(&mut core, "q", 100, "a");
        core.serve_waiters();
        assert!(core.take_waiter_replies().is_empty(), "not due yet");
        clock.set_ms(100);
        core.tick().unwrap();
        core.serve_waiters();
        let replies = core.take_waiter_replies();
        assert_eq!(replies.len(), 1);
        let r = replies.into_iter().next().unwrap();
        r.tx.send(Delivery {
            popped: r.popped,
            lsn: 1,
        })
        .unwrap();
        let popped = rx1.try_recv().unwrap().popped.unwrap();
        assert_eq!(popped.len(), 1);
        assert_eq!(
            (&popped[0].queue[..], &popped[0].member[..]),
            (&b"q"[..], &b"a"[..])
        );
        assert_eq!(popped[0].before.due, 100);
        assert!(rx2.try_recv().is_err(), "second waiter still waiting");
    }
}
