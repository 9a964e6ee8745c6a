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

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;

use super::clock::Clock;
use super::lateness::Lateness;
use super::members::{MemberIndex, Members, Place};
use super::store::{FLAG_LEASED, MemberMeta, Scheduled, Store};
use crate::protocol::Reply;
use crate::{Error, Result};

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

/// How a popped member is reported to a blocked client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopShape {
    /// `DELAYPOP ... BLOCK`: an array of members.
    Members,
    /// `BDELAYPOP`: `[key, member, due-ms]`.
    KeyMemberDue,
}

/// A client blocked in `DELAYPOP ... BLOCK` or `BDELAYPOP`.
#[derive(Debug)]
pub struct Waiter {
    pub keys: Vec<Bytes>,
    pub opts: PopOptions,
    pub shape: PopShape,
    pub tx: tokio::sync::oneshot::Sender<Delivery>,
}

/// What a blocked client receives.
#[derive(Debug)]
pub struct Delivery {
    pub reply: Reply,
    /// The members it carries, to put back if the client is gone by the time
    /// it arrives.
    pub popped: Vec<Popped>,
    /// The commit that removed or leased them; the reply waits until it is
    /// durable.
    pub lsn: u64,
}

/// A member handed out by a pop, with what is needed to put it back if the
/// client that should receive it has gone.
#[derive(Debug, Clone)]
pub struct Popped {
    pub queue: Bytes,
    pub member: Bytes,
    /// The record before the pop.
    pub before: MemberMeta,
    /// The record after a leased pop (`None`: the member was removed).
    pub after: Option<MemberMeta>,
    /// Deliveries of the member, this one included.
    pub deliveries: u32,
}

/// A reply to a blocked client, sent once its pop is committed.
#[derive(Debug)]
pub struct WaiterReply {
    pub tx: tokio::sync::oneshot::Sender<Delivery>,
    pub reply: Reply,
    pub popped: Vec<Popped>,
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
    horizon_ms: u64,
    hot_until: u64,
    /// Queues with cold members, by a lower bound of their next cold due time.
    cold_heap: BinaryHeap<Reverse<(u64, QueueId)>>,
    waiters: HashMap<Bytes, VecDeque<WaiterId>>,
    blocked: HashMap<WaiterId, Waiter>,
    signaled: Vec<QueueId>,
    outgoing: Vec<WaiterReply>,
    counters: HashMap<Bytes, QueueCounters>,
    now: u64,
    failed: Option<String>,
    members_total: u64,
    expired_leases: u64,
    leased_total: u64,
    fired: Vec<u32>,
    lateness: Lateness,
    /// The pager's target while it pages in (raising `hot_until` to it).
    paging: Option<u64>,
}

/// A hash of a queue name that is the same in every process, so SCAN
/// cursors stay meaningful; 0 is reserved for "start" and "done".
fn name_hash(name: &[u8]) -> u64 {
    (std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(name)
        >> 1)
        .max(1)
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
            horizon_ms,
            hot_until: now,
            cold_heap: BinaryHeap::new(),
            waiters: HashMap::new(),
            blocked: HashMap::new(),
            signaled: Vec::new(),
            outgoing: Vec::new(),
            counters: HashMap::new(),
            now,
            failed: None,
            members_total: 0,
            expired_leases: 0,
            leased_total: 0,
            fired: Vec::new(),
            lateness: Lateness::default(),
            paging: None,
        };
        core.load_from_store()?;
        core.store.set_hot_until(core.hot_until);
        Ok(core)
    }

    /// Clears the in-memory queues and rebuilds them from the store.
    fn load_from_store(&mut self) -> Result<()> {
        self.now = self.clock.now_ms();
        self.members = Members::new(self.now);
        self.queues.clear();
        self.free_ids.clear();
        self.index.clear();
        self.cold_heap.clear();
        self.members_total = 0;
        self.leased_total = 0;
        // At least as far as before the restart: members up to the recorded
        // horizon have no point-lookup entry and must be in memory.
        let recorded = self.store.hot_until()?;
        self.hot_until = self.now.saturating_add(self.horizon_ms).max(recorded);
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
            Some(why) => Err(Error::Storage(format!(
                "{why}; writes are refused until restart"
            ))),
            None => Ok(()),
        }
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

    /// When the engine next has timed work: the wheel's next slot, a parked
    /// member, or the pager. `None` when idle.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if self.paging.is_some() {
            return Some(self.now);
        }
        let pager = self.hot_until.saturating_sub(self.horizon_ms / 2);
        let next = self.members.next_deadline();
        if self.cold_heap.is_empty() {
            next
        } else {
            Some(next.map_or(pager, |n| n.min(pager)))
        }
    }

    /// Advances time and runs the pager to completion (tests and start-up).
    ///
    /// # Errors
    ///
    /// A storage error while paging in.
    pub fn tick(&mut self) -> Result<()> {
        self.fire();
        while self.page_step(usize::MAX)? {}
        Ok(())
    }

    /// Advances time: fires the wheel and releases parked members. Cheap
    /// when nothing is due; every command starts with it.
    pub fn fire(&mut self) {
        let now = self.clock.now_ms();
        if now < self.now {
            self.unready_after(now);
        }
        self.now = now;
        let mut fired = std::mem::take(&mut self.fired);
        // The wheel never runs backwards; if the wall clock stepped back,
        // members it fires early are parked until the wall clock catches up.
        self.members.advance(now, &mut fired);
        if !fired.is_empty() {
            let now_us = self.clock.now_us();
            for &mid in &fired {
                let due = self.members.meta(mid).due;
                if due <= now {
                    self.lateness.record(now_us.saturating_sub(due * 1000));
                }
                self.on_fire(mid);
            }
            fired.clear();
        }
        self.fired = fired;
    }

    /// The wall clock stepped back to `now`: ready members due after it are
    /// not due by it any more and wait for it again (in the wheel, or
    /// parked), so that none is delivered before its due time by the wall
    /// clock; a lease on one is running again. Costs a pass over the
    /// in-memory members of queues with ready ones, on a step back only.
    fn unready_after(&mut self, now: u64) {
        let members = &mut self.members;
        for q in self.queues.iter_mut().flatten() {
            if q.members.ready_len() == 0 {
                continue;
            }
            let early: Vec<u32> = q
                .members
                .ids()
                .filter(|&mid| members.place(mid) == Place::Ready && members.meta(mid).due > now)
                .collect();
            for mid in early {
                let meta = members.meta(mid);
                members.update(&mut q.members, mid, meta, now);
                if meta.leased() {
                    q.leased += 1;
                    self.leased_total += 1;
                }
            }
        }
    }

    /// A member came due by the wheel: make it ready, or park it if the
    /// wall clock says it is not due yet.
    fn on_fire(&mut self, mid: u32) {
        let qid = self.members.queue(mid);
        let meta = self.members.meta(mid);
        let Some(q) = self.queues.get_mut(qid as usize).and_then(Option::as_mut) else {
            return;
        };
        if meta.due > self.now {
            self.members.park(mid);
        } else {
            if meta.leased() {
                // The lease ran out: the member is due again.
                self.expired_leases += 1;
                self.counters
                    .entry(q.name.clone())
                    .or_default()
                    .expired_leases += 1;
                q.leased = q.leased.saturating_sub(1);
                self.leased_total = self.leased_total.saturating_sub(1);
            }
            self.members.make_ready(&mut q.members, mid);
            self.signaled.push(qid);
        }
    }

    /// One step of the pager: once `now` is within half a horizon of
    /// `hot_until`, raises it to `now + horizon`, paging in the cold members
    /// due by then, at most `budget` queues per step so that firing is never
    /// held up for long. Returns whether work is left for another step.
    ///
    /// # Errors
    ///
    /// A storage error while paging in.
    pub fn page_step(&mut self, budget: usize) -> Result<bool> {
        let target = match self.paging {
            Some(t) => t,
            None if self.now.saturating_add(self.horizon_ms / 2) >= self.hot_until => {
                let t = self.now.saturating_add(self.horizon_ms);
                self.paging = Some(t);
                t
            }
            None => return Ok(false),
        };
        // Members due up to `hot_until` are in memory; cold ones are later.
        let from = self.hot_until.saturating_add(1);
        let mut done = 0;
        while let Some(&Reverse((due, id))) = self.cold_heap.peek() {
            if due > target {
                break;
            }
            if done >= budget {
                return Ok(true);
            }
            self.cold_heap.pop();
            let Some(q) = self.queues.get(id as usize).and_then(Option::as_ref) else {
                continue;
            };
            if q.next_cold_due != Some(due) || q.cold == 0 {
                continue;
            }
            done += 1;
            self.page_queue(id, from.min(due), target)?;
        }
        self.hot_until = target;
        self.store.set_hot_until(target);
        self.paging = None;
        Ok(false)
    }

    /// Pages in the members of queue `id` due in `from..=until` that are
    /// only on disk, and records the queue's next cold due time.
    fn page_queue(&mut self, id: QueueId, from: u64, until: u64) -> Result<()> {
        let name = self.queue_mut(id).name.clone();
        let (batch, next) = self.store.page_in(&name, from, until)?;
        for s in batch {
            // Already in memory: a pager step cut short by its budget paged
            // this queue in, then a member added beyond the old horizon
            // brought it back into the heap. Placed twice, it would also be
            // counted off the cold members twice.
            let hot = self
                .queues
                .get(id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|q| self.members.find(&q.members, &s.member).is_some());
            if hot {
                continue;
            }
            let q = self.queue_mut(id);
            q.cold = q.cold.saturating_sub(1);
            self.store.warm(&name, &s.member);
            self.place_hot(id, &s.member, s.meta);
        }
        let cold = self.queue_mut(id).cold;
        self.set_next_cold(id, next.filter(|_| cold > 0));
        Ok(())
    }

    /// Pages in a queue's members that are due by now but still only on
    /// disk. The pager runs well ahead of due times, but falls behind when
    /// the wall clock jumps forward or the process is stopped for more than
    /// half a horizon; until the timer thread catches up, a pop would miss
    /// those members, or overtake them and raise the floor above them.
    fn page_due(&mut self, id: QueueId) -> Result<()> {
        let Some(q) = self.queues.get(id as usize).and_then(Option::as_ref) else {
            return Ok(());
        };
        match q.next_cold_due {
            Some(due) if q.cold > 0 && due <= self.now => {
                let from = self.hot_until.saturating_add(1).min(due);
                self.page_queue(id, from, self.now)
            }
            _ => Ok(()),
        }
    }

    /// Records the earliest cold due time of a queue.
    fn set_next_cold(&mut self, id: QueueId, next: Option<u64>) {
        self.queue_mut(id).next_cold_due = next;
        if let Some(due) = next {
            self.cold_heap.push(Reverse((due, id)));
        }
    }

    fn queue_mut(&mut self, id: QueueId) -> &mut Queue {
        // Ids come from the index or the wheel, which only name live queues.
        self.queues[id as usize]
            .as_mut()
            .expect("queue id names a live queue")
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
        self.index.remove(&(name_hash(&name), name));
        self.queues[id as usize] = None;
        self.free_ids.push(id);
    }

    /// Puts a member in memory at its due time.
    fn place_hot(&mut self, id: QueueId, member: &[u8], meta: MemberMeta) {
        let now = self.now;
        let q = self.queues[id as usize]
            .as_mut()
            .expect("queue id names a live queue");
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
        if q.next_cold_due.is_none_or(|n| due < n) {
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
        let q = self.queues[id as usize]
            .as_mut()
            .expect("queue id names a live queue");
        match found {
            Found::Hot(mid) => {
                self.members.remove(&mut q.members, mid);
            }
            Found::Cold => q.cold = q.cold.saturating_sub(1),
        }
    }

    /// Finds a member on either tier.
    fn lookup(&mut self, id: QueueId, member: &[u8]) -> Result<Option<(MemberMeta, Found)>> {
        let q = self.queues[id as usize]
            .as_ref()
            .expect("queue id names a live queue");
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
    fn save_queue(&mut self, id: QueueId) {
        let q = self.queue_mut(id);
        let (name, card, floor) = (q.name.clone(), q.card, q.floor);
        self.store.set_queue(&name, card, floor);
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
                let q = self.queues[id as usize]
                    .as_mut()
                    .expect("queue id names a live queue");
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

    /// `DELAYADD`: schedules each `(due, member)`. Returns the reply count:
    /// members added, plus members rescheduled with `ch`.
    ///
    /// # Errors
    ///
    /// A storage error (then nothing of the round is acknowledged).
    pub fn add(&mut self, key: &Bytes, items: &[(u64, Bytes)], flags: AddFlags) -> Result<i64> {
        self.check_writable()?;
        let id = self.queue_or_create(key);
        let mut count = 0;
        for (due, member) in items {
            let due = *due;
            match self.lookup(id, member)? {
                None if flags.xx => {}
                None => {
                    let meta = MemberMeta {
                        due,
                        seq: self.store.next_seq(),
                        deliveries: 0,
                        flags: 0,
                    };
                    self.queue_mut(id).card += 1;
                    self.lower_floor(id, due);
                    self.counters_mut(key).added += 1;
                    self.members_total += 1;
                    let cold = self.is_cold(due);
                    self.store.put(key, member, meta, cold, None);
                    self.save_queue(id);
                    self.place(id, member, meta);
                    count += 1;
                }
                Some(_) if flags.nx => {}
                Some((old, found)) => {
                    if old.due == due && !old.leased() {
                        continue;
                    }
                    let new = MemberMeta {
                        due,
                        seq: self.store.next_seq(),
                        deliveries: old.deliveries,
                        flags: old.flags & !FLAG_LEASED,
                    };
                    self.reschedule(id, member, old, found, new);
                    if flags.ch {
                        count += 1;
                    }
                }
            }
        }
        self.drop_if_empty(id);
        Ok(count)
    }

    fn counters_mut(&mut self, name: &Bytes) -> &mut QueueCounters {
        self.counters.entry(name.clone()).or_default()
    }

    /// Pops up to `opts.count` due members of `key`, earliest first. With a
    /// lease the members stay, invisible until `now + lease`; with retries, a
    /// member delivered that many times goes to the dead-letter queue instead.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn pop(&mut self, key: &[u8], opts: &PopOptions) -> Result<Vec<Popped>> {
        self.check_writable()?;
        let Some(id) = self.queue_id(key) else {
            return Ok(Vec::new());
        };
        self.page_due(id)?;
        let mut out = Vec::new();
        while out.len() < opts.count {
            let Some(q) = self.queues.get_mut(id as usize).and_then(Option::as_mut) else {
                break;
            };
            let Some(mid) = q.members.first_ready() else {
                break;
            };
            let before = self.members.meta(mid);
            let queue = q.name.clone();
            // Popping the earliest due member: nothing left is due before it.
            q.floor = q.floor.max(before.due);
            let dead = match (opts.retries, &opts.dead_letter) {
                (Some(max), Some(dlq)) if before.deliveries >= max => Some(dlq.clone()),
                _ => None,
            };
            if dead.is_some() || opts.lease.is_none() {
                let (bytes, _) = self.members.remove(&mut q.members, mid);
                let member = Bytes::from(Vec::from(bytes));
                // Popped members are due: any lease on them has run out.
                self.queue_mut(id).card -= 1;
                self.members_total -= 1;
                self.store.delete(&queue, &member, before, false);
                self.save_queue(id);
                if let Some(dlq) = dead {
                    self.counters_mut(&queue).dead_lettered += 1;
                    self.add(&dlq, &[(self.now, member)], AddFlags::default())?;
                    continue;
                }
                self.counters_mut(&queue).popped += 1;
                out.push(Popped {
                    queue,
                    member,
                    before,
                    after: None,
                    deliveries: before.deliveries.saturating_add(1),
                });
                continue;
            }
            let ms = opts.lease.unwrap_or(0);
            let member = Bytes::copy_from_slice(self.members.member(mid));
            let new = MemberMeta {
                due: self.now.saturating_add(ms).min(MAX_DUE_MS),
                seq: self.store.next_seq(),
                deliveries: before.deliveries.saturating_add(1),
                flags: before.flags | FLAG_LEASED,
            };
            self.reschedule(id, &member, before, Found::Hot(mid), new);
            self.save_queue(id);
            self.counters_mut(&queue).popped += 1;
            out.push(Popped {
                queue,
                member,
                before,
                after: Some(new),
                deliveries: new.deliveries,
            });
        }
        self.drop_if_empty(id);
        Ok(out)
    }

    /// `DELAYREM` (any member) and `DELAYACK` (`only_leased`): removes
    /// members, returning how many were removed.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn remove(&mut self, key: &[u8], members: &[Bytes], only_leased: bool) -> Result<i64> {
        self.check_writable()?;
        let Some(id) = self.queue_id(key) else {
            return Ok(0);
        };
        let mut n = 0;
        for m in members {
            if self.queues.get(id as usize).is_none_or(Option::is_none) {
                break;
            }
            if let Some((meta, found)) = self.lookup(id, m)? {
                if only_leased && !meta.leased() {
                    continue;
                }
                if only_leased {
                    let name = self.queue_mut(id).name.clone();
                    self.counters_mut(&name).acked += 1;
                }
                self.remove_member(id, m, meta, found);
                n += 1;
            }
        }
        Ok(n)
    }

    /// `DELAYSCORE`: a member's due time.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn score(&mut self, key: &[u8], member: &[u8]) -> Result<Option<MemberMeta>> {
        let Some(id) = self.queue_id(key) else {
            return Ok(None);
        };
        Ok(self.lookup(id, member)?.map(|(m, _)| m))
    }

    /// `DELAYCARD`: number of members, O(1).
    pub fn card(&self, key: &[u8]) -> u64 {
        self.queue_id(key)
            .and_then(|id| self.queues[id as usize].as_ref())
            .map_or(0, |q| q.card)
    }

    /// `DELAYRANGE`: members by rank in due order (ZRANGE's index rules).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn range(&mut self, key: &[u8], start: i64, stop: i64) -> Result<Vec<Scheduled>> {
        let card = self.card(key) as i64;
        let start = if start < 0 {
            (card + start).max(0)
        } else {
            start
        };
        let stop = if stop < 0 {
            card + stop
        } else {
            stop.min(card - 1)
        };
        if card == 0 || start > stop || start >= card {
            return Ok(Vec::new());
        }
        let floor = self
            .queue_id(key)
            .and_then(|id| self.queues[id as usize].as_ref())
            .map_or(0, |q| q.floor);
        self.store
            .rank_range(key, floor, start as usize, (stop - start + 1) as usize)
    }

    /// `DELAYINFO`: a queue's figures.
    pub fn info(&self, key: &[u8]) -> QueueInfo {
        let counters = self.counters.get(key).copied().unwrap_or_default();
        let Some(q) = self
            .queue_id(key)
            .and_then(|id| self.queues[id as usize].as_ref())
        else {
            return QueueInfo {
                counters,
                ..QueueInfo::default()
            };
        };
        let next_due = q
            .members
            .ids()
            .filter(|&mid| self.members.place(mid) != Place::Ready)
            .map(|mid| self.members.meta(mid).due)
            .min()
            .or(q.next_cold_due);
        QueueInfo {
            pending: q.card,
            ready: q.members.ready_len() as u64,
            leased: q.leased,
            next_due,
            oldest_ready_due: q.members.oldest_ready_due(),
            counters,
        }
    }

    /// `DEL`: deletes whole queues, returning how many existed.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn delete_queues(&mut self, keys: &[Bytes]) -> Result<i64> {
        self.check_writable()?;
        let mut n = 0;
        for key in keys {
            self.counters.remove(key);
            let Some(id) = self.queue_id(key) else {
                continue;
            };
            let ids: Vec<u32> = self.queue_mut(id).members.ids().collect();
            for mid in ids {
                self.unplace(id, Found::Hot(mid));
            }
            let q = self.queue_mut(id);
            let (name, card, leased) = (q.name.clone(), q.card, q.leased);
            self.store.delete_queue(&name)?;
            self.members_total -= card;
            self.leased_total = self.leased_total.saturating_sub(leased);
            let q = self.queue_mut(id);
            q.card = 0;
            q.cold = 0;
            self.drop_if_empty(id);
            n += 1;
        }
        Ok(n)
    }

    /// `FLUSHALL` / `FLUSHDB`: removes every queue.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn flush(&mut self) -> Result<()> {
        self.check_writable()?;
        self.store.clear();
        self.queues.clear();
        self.free_ids.clear();
        self.index.clear();
        self.cold_heap.clear();
        self.counters.clear();
        self.members.clear();
        self.members_total = 0;
        self.leased_total = 0;
        Ok(())
    }

    /// Whether a queue exists.
    pub fn exists(&self, key: &[u8]) -> bool {
        self.queue_id(key).is_some()
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.index.len()
    }

    /// Queue names in SCAN order from `cursor`, at most about `count`
    /// (all names sharing a hash are returned together). Returns the next
    /// cursor (0 when done) and the names.
    pub fn scan(&self, cursor: u64, count: usize) -> (u64, Vec<Bytes>) {
        let mut out = Vec::new();
        let mut last = None;
        for ((h, name), _) in self.index.range((cursor, Bytes::new())..) {
            if out.len() >= count.max(1) && last != Some(*h) {
                return (*h, out);
            }
            last = Some(*h);
            out.push(name.clone());
        }
        (0, out)
    }

    /// Registers a blocked client, or serves it at once if a member is due.
    pub fn block(&mut self, id: WaiterId, waiter: Waiter) {
        for key in &waiter.keys {
            self.waiters.entry(key.clone()).or_default().push_back(id);
        }
        let keys = waiter.keys.clone();
        self.blocked.insert(id, waiter);
        for key in keys {
            if let Some(qid) = self.queue_id(&key) {
                self.signaled.push(qid);
            }
        }
        self.serve_waiters();
    }

    /// Forgets a blocked client (timed out or disconnected).
    pub fn unblock(&mut self, id: WaiterId) {
        if let Some(w) = self.blocked.remove(&id) {
            self.forget_waiter(id, &w.keys);
        }
    }

    fn forget_waiter(&mut self, id: WaiterId, keys: &[Bytes]) {
        for key in keys {
            if let Some(list) = self.waiters.get_mut(key) {
                list.retain(|&w| w != id);
                if list.is_empty() {
                    self.waiters.remove(key);
                }
            }
        }
    }

    /// Hands due members to blocked clients, first come first served.
    pub fn serve_waiters(&mut self) {
        while let Some(qid) = self.signaled.pop() {
            let Some(q) = self.queues.get(qid as usize).and_then(Option::as_ref) else {
                continue;
            };
            let name = q.name.clone();
            loop {
                let has_ready = self
                    .queues
                    .get(qid as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|q| q.members.ready_len() > 0);
                if !has_ready {
                    break;
                }
                let Some(wid) = self.waiters.get_mut(&name).and_then(VecDeque::pop_front) else {
                    break;
                };
                let Some(w) = self.blocked.remove(&wid) else {
                    continue;
                };
                self.forget_waiter(wid, &w.keys);
                if w.tx.is_closed() {
                    continue;
                }
                match self.pop(&name, &w.opts) {
                    // Everything due was dead-lettered: keep waiting, first in line.
                    Ok(popped) if popped.is_empty() => {
                        for key in &w.keys {
                            let list = self.waiters.entry(key.clone()).or_default();
                            if key == &name {
                                list.push_front(wid);
                            } else {
                                list.push_back(wid);
                            }
                        }
                        self.blocked.insert(wid, w);
                        break;
                    }
                    Ok(popped) => {
                        let reply = pop_reply(&popped, w.shape, w.opts.with_counts);
                        self.outgoing.push(WaiterReply {
                            tx: w.tx,
                            reply,
                            popped,
                        });
                    }
                    Err(e) => {
                        self.outgoing.push(WaiterReply {
                            tx: w.tx,
                            reply: e.into(),
                            popped: Vec::new(),
                        });
                    }
                }
            }
        }
        self.waiters.retain(|_, l| !l.is_empty());
    }

    /// Answers every blocked client with `reply` (at shutdown).
    pub fn wake_all_blocked(&mut self, reply: Reply) {
        for (_, w) in self.blocked.drain() {
            let _ = w.tx.send(Delivery {
                reply: reply.clone(),
                popped: Vec::new(),
                lsn: 0,
            });
        }
        self.waiters.clear();
    }

    /// Replies for blocked clients produced since the last call.
    pub fn take_waiter_replies(&mut self) -> Vec<WaiterReply> {
        std::mem::take(&mut self.outgoing)
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
                }
                (Some((cur, found)), Some(after)) if cur == after => {
                    self.reschedule(id, &p.member, cur, found, p.before);
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
        self.store.discard();
        let r = self.load_from_store();
        // Loading only reads; drop the bookkeeping a failed store cannot take.
        self.store.discard();
        r
    }
}

/// The reply for a pop, in the shape the command asked for.
pub fn pop_reply(popped: &[Popped], shape: PopShape, with_counts: bool) -> Reply {
    match shape {
        PopShape::Members if with_counts => Reply::Pairs(
            popped
                .iter()
                .map(|p| {
                    (
                        Reply::Bulk(p.member.clone()),
                        Reply::Int(i64::from(p.deliveries)),
                    )
                })
                .collect(),
        ),
        PopShape::Members => Reply::Array(
            popped
                .iter()
                .map(|p| Reply::Bulk(p.member.clone()))
                .collect(),
        ),
        PopShape::KeyMemberDue => match popped.first() {
            Some(p) => Reply::Array(vec![
                Reply::Bulk(p.queue.clone()),
                Reply::Bulk(p.member.clone()),
                Reply::Int(p.before.due as i64),
            ]),
            None => Reply::NullArray,
        },
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
            .range(b"q", 0, -1)
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
            shape: PopShape::KeyMemberDue,
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
            reply: r.reply,
            popped: r.popped,
            lsn: 1,
        })
        .unwrap();
        let reply = rx1.try_recv().unwrap().reply;
        assert_eq!(
            reply,
            Reply::Array(vec![Reply::bulk("q"), Reply::bulk("a"), Reply::Int(100)])
        );
        assert!(rx2.try_recv().is_err(), "second waiter still waiting");
    }
}
