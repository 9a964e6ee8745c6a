//! The members kept in memory (those due within the horizon), laid out to
//! cost little: one slab of fixed-size records, the timing wheel's links
//! inside the records, and per queue a hash table of record ids.
//!
//! Per in-memory member:
//!
//! | what | bytes |
//! |---|---|
//! | [`Rec`]: member pointer+length, due, seq, wheel links, queue id, deliveries, flags, place | 56 |
//! | its id in the queue's hash table (4 bytes + 1 control byte, at most 7/8 full) | ~6 |
//! | the member's bytes, allocated exactly (rounded up by the allocator) | len |
//!
//! so about 62 bytes of index plus the member. A due member also has an
//! entry in its queue's ready list (ordered by due time, then insertion)
//! until it is popped.
//!
//! Nothing here grows by copying everything at once: the slab grows a
//! chunk at a time and a large queue's table is split into shards that
//! grow one by one. A single `Vec` doubling, or a whole table rehashing,
//! under the engine lock held up the timer for tens of milliseconds at a
//! few hundred thousand members (and would for seconds at millions).

use std::collections::BTreeMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;

use hashbrown::HashTable;

use super::store::MemberMeta;
use super::wheel::{Entries, Link, TimerWheel};

/// Where an in-memory member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Slot not in use.
    Free,
    /// In the timing wheel, not yet due.
    Wheel,
    /// Due: in its queue's ready list.
    Ready,
    /// Due by the monotonic wheel but not by the wall clock (it stepped
    /// back): held until the wall clock catches up.
    Parked,
}

/// One in-memory member.
#[derive(Debug)]
struct Rec {
    member: Box<[u8]>,
    due: u64,
    seq: u64,
    link: Link,
    queue: u32,
    deliveries: u32,
    flags: u8,
    place: Place,
}

impl Rec {
    fn meta(&self) -> MemberMeta {
        MemberMeta {
            due: self.due,
            seq: self.seq,
            deliveries: self.deliveries,
            flags: self.flags,
        }
    }
}

/// Records per chunk of the slab.
const CHUNK: usize = 1 << 14;

/// The records, indexed by id, in chunks of [`CHUNK`] that never move.
#[derive(Default)]
struct RecSlab {
    chunks: Vec<Vec<Rec>>,
    len: usize,
}

impl RecSlab {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, rec: Rec) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        if let Some(last) = self.chunks.last_mut() {
            last.push(rec);
            self.len += 1;
        }
    }
}

impl std::ops::Index<usize> for RecSlab {
    type Output = Rec;
    fn index(&self, i: usize) -> &Rec {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl std::ops::IndexMut<usize> for RecSlab {
    fn index_mut(&mut self, i: usize) -> &mut Rec {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

/// The slab, as the wheel sees it.
struct Slab<'a>(&'a mut RecSlab);

impl Entries for Slab<'_> {
    fn deadline(&self, id: u32) -> u64 {
        self.0[id as usize].due
    }
    fn link(&self, id: u32) -> Link {
        self.0[id as usize].link
    }
    fn set_link(&mut self, id: u32, link: Link) {
        self.0[id as usize].link = link;
    }
}

/// One queue's in-memory members: ids by member bytes, and the due ones
/// in pop order.
#[derive(Debug, Default)]
pub struct MemberIndex {
    table: IdTable,
    ready: BTreeMap<(u64, u64), u32>,
}

/// Members a queue's table holds before it is split into shards.
const SPLIT_AT: usize = 4096;

/// Shards of a split table: a queue of ten million members grows a shard
/// of ~40,000 at a time.
const SHARDS: usize = 256;

/// A queue's member ids by member bytes: one hash table while the queue
/// is small, [`SHARDS`] once it reached [`SPLIT_AT`], picked by hash bits
/// that hashbrown itself does not use (it takes the low bits for the
/// bucket and the top 7 for its control bytes).
#[derive(Debug)]
enum IdTable {
    One(HashTable<u32>),
    Sharded(Box<[HashTable<u32>]>),
}

impl Default for IdTable {
    fn default() -> Self {
        IdTable::One(HashTable::new())
    }
}

impl IdTable {
    fn shard(hash: u64) -> usize {
        (hash >> 32) as usize % SHARDS
    }

    fn tables(&self) -> &[HashTable<u32>] {
        match self {
            IdTable::One(t) => std::slice::from_ref(t),
            IdTable::Sharded(s) => s,
        }
    }

    fn table(&self, hash: u64) -> &HashTable<u32> {
        match self {
            IdTable::One(t) => t,
            IdTable::Sharded(s) => &s[Self::shard(hash)],
        }
    }

    fn table_mut(&mut self, hash: u64) -> &mut HashTable<u32> {
        match self {
            IdTable::One(t) => t,
            IdTable::Sharded(s) => &mut s[Self::shard(hash)],
        }
    }

    /// Adds `id` (its member hashes to `hash`; `rehash` gives any id's).
    fn insert(&mut self, hash: u64, id: u32, rehash: impl Fn(&u32) -> u64) {
        if let IdTable::One(t) = self
            && t.len() >= SPLIT_AT
        {
            let mut shards: Box<[HashTable<u32>]> = (0..SHARDS).map(|_| HashTable::new()).collect();
            for old in t.drain() {
                let h = rehash(&old);
                shards[Self::shard(h)].insert_unique(h, old, &rehash);
            }
            *self = IdTable::Sharded(shards);
        }
        self.table_mut(hash).insert_unique(hash, id, rehash);
    }
}

impl MemberIndex {
    /// Members of the queue in memory (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.tables().iter().map(HashTable::len).sum()
    }

    /// Due members not yet popped.
    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// The due time of the earliest ready member.
    pub fn oldest_ready_due(&self) -> Option<u64> {
        self.ready.first_key_value().map(|((due, _), _)| *due)
    }

    /// The earliest ready member, without removing it.
    pub fn first_ready(&self) -> Option<u32> {
        self.ready.first_key_value().map(|(_, id)| *id)
    }

    /// Ids of every in-memory member.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.table
            .tables()
            .iter()
            .flat_map(HashTable::iter)
            .copied()
    }
}

/// The in-memory members of every queue, and the wheel that times them.
pub struct Members {
    recs: RecSlab,
    free: Vec<u32>,
    hasher: RandomState,
    wheel: TimerWheel,
    parked: BTreeMap<(u64, u64), u32>,
}

impl Members {
    /// No members; the wheel's time is `now` (ms).
    pub fn new(now: u64) -> Members {
        Members {
            recs: RecSlab::default(),
            free: Vec::new(),
            hasher: RandomState::default(),
            wheel: TimerWheel::new(now),
            parked: BTreeMap::new(),
        }
    }

    /// Members in memory.
    pub fn len(&self) -> usize {
        self.recs.len() - self.free.len()
    }

    /// Members in the wheel.
    pub fn wheel_len(&self) -> usize {
        self.wheel.len()
    }

    /// The next time something may come due: the wheel's next slot or the
    /// earliest parked member.
    pub fn next_deadline(&self) -> Option<u64> {
        let parked = self.parked.first_key_value().map(|((due, _), _)| *due);
        match (self.wheel.next_deadline(), parked) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn hash(&self, member: &[u8]) -> u64 {
        self.hasher.hash_one(member)
    }

    /// Finds a member of a queue.
    pub fn find(&self, idx: &MemberIndex, member: &[u8]) -> Option<u32> {
        let recs = &self.recs;
        let hash = self.hash(member);
        idx.table
            .table(hash)
            .find(hash, |&id| &*recs[id as usize].member == member)
            .copied()
    }

    /// A member's record.
    pub fn meta(&self, id: u32) -> MemberMeta {
        self.recs[id as usize].meta()
    }

    /// A member's bytes.
    pub fn member(&self, id: u32) -> &[u8] {
        &self.recs[id as usize].member
    }

    /// The queue a member belongs to.
    pub fn queue(&self, id: u32) -> u32 {
        self.recs[id as usize].queue
    }

    /// Where a member is.
    pub fn place(&self, id: u32) -> Place {
        self.recs[id as usize].place
    }

    /// Adds a member to a queue and places it by its due time: the wheel,
    /// or the ready list when due by `now`. Returns its id and whether it is
    /// ready.
    pub fn insert(
        &mut self,
        idx: &mut MemberIndex,
        queue: u32,
        member: Box<[u8]>,
        meta: MemberMeta,
        now: u64,
    ) -> (u32, bool) {
        let hash = self.hash(&member);
        let rec = Rec {
            member,
            due: meta.due,
            seq: meta.seq,
            link: Link::default(),
            queue,
            deliveries: meta.deliveries,
            flags: meta.flags,
            place: Place::Free,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.recs[id as usize] = rec;
                id
            }
            None => {
                let id = next_id(self.recs.len());
                self.recs.push(rec);
                id
            }
        };
        let recs = &self.recs;
        let hasher = &self.hasher;
        idx.table
            .insert(hash, id, |&i| hasher.hash_one(&recs[i as usize].member));
        let ready = self.schedule(idx, id, now);
        (id, ready)
    }

    /// Places a member that is in no list by its due time.
    fn schedule(&mut self, idx: &mut MemberIndex, id: u32, now: u64) -> bool {
        let due = self.recs[id as usize].due;
        if due <= now {
            self.make_ready(idx, id);
            return true;
        }
        if self.wheel.insert(&mut Slab(&mut self.recs), id) {
            self.recs[id as usize].place = Place::Wheel;
        } else {
            // The wheel ran ahead of the wall clock (it stepped back).
            let r = &mut self.recs[id as usize];
            r.place = Place::Parked;
            self.parked.insert((r.due, r.seq), id);
        }
        false
    }

    /// Moves a member that came due into its queue's ready list.
    pub fn make_ready(&mut self, idx: &mut MemberIndex, id: u32) {
        let r = &mut self.recs[id as usize];
        r.place = Place::Ready;
        idx.ready.insert((r.due, r.seq), id);
    }

    /// Takes a member out of whatever list holds it.
    fn unschedule(&mut self, idx: &mut MemberIndex, id: u32) {
        let (due, seq, place) = {
            let r = &self.recs[id as usize];
            (r.due, r.seq, r.place)
        };
        match place {
            Place::Wheel => self.wheel.remove(&mut Slab(&mut self.recs), id),
            Place::Ready => {
                idx.ready.remove(&(due, seq));
            }
            Place::Parked => {
                self.parked.remove(&(due, seq));
            }
            Place::Free => {}
        }
        self.recs[id as usize].place = Place::Free;
    }

    /// Changes a member's record (a reschedule or a lease) and re-places it.
    /// Returns whether it is ready now.
    pub fn update(&mut self, idx: &mut MemberIndex, id: u32, meta: MemberMeta, now: u64) -> bool {
        self.unschedule(idx, id);
        let r = &mut self.recs[id as usize];
        r.due = meta.due;
        r.seq = meta.seq;
        r.deliveries = meta.deliveries;
        r.flags = meta.flags;
        self.schedule(idx, id, now)
    }

    /// Removes a member from memory, returning its bytes and record.
    pub fn remove(&mut self, idx: &mut MemberIndex, id: u32) -> (Box<[u8]>, MemberMeta) {
        self.unschedule(idx, id);
        let hash = self.hash(&self.recs[id as usize].member);
        if let Ok(entry) = idx.table.table_mut(hash).find_entry(hash, |&i| i == id) {
            entry.remove();
        }
        let r = &mut self.recs[id as usize];
        let meta = r.meta();
        let member = std::mem::take(&mut r.member);
        self.free.push(id);
        (member, meta)
    }

    /// Advances the wheel to `now` (never backwards), then releases parked
    /// members due by `now`. Pushes `(id, due)` of what came due.
    pub fn advance(&mut self, now: u64, fired: &mut Vec<u32>) {
        let to = now.max(self.wheel.elapsed());
        self.wheel.advance(&mut Slab(&mut self.recs), to, fired);
        for &id in fired.iter() {
            self.recs[id as usize].place = Place::Free;
        }
        while let Some(entry) = self.parked.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            self.recs[id as usize].place = Place::Free;
            fired.push(id);
        }
    }

    /// Drops every member (FLUSHALL), keeping the wheel's time.
    pub fn clear(&mut self) {
        *self = Members::new(self.wheel.elapsed());
    }

    /// Re-places a member that came due by the wheel but is not due by the
    /// wall clock (`due > now`): parked until it is.
    pub fn park(&mut self, id: u32) {
        let r = &mut self.recs[id as usize];
        r.place = Place::Parked;
        self.parked.insert((r.due, r.seq), id);
    }
}

/// The id of the record pushed at `len`.
///
/// # Panics
///
/// At 2^32 - 1 records: the id would alias the lists' `NIL` end marker (a
/// member slab that large — hundreds of GB — is never reached).
#[expect(clippy::expect_used, reason = "32-bit ids, see # Panics")]
fn next_id(len: usize) -> u32 {
    u32::try_from(len)
        .ok()
        .filter(|&id| id != super::wheel::NIL)
        .expect("fewer than 2^32 - 1 members in memory")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(due: u64, seq: u64) -> MemberMeta {
        MemberMeta::at(due, seq)
    }

    #[test]
    fn a_record_is_56_bytes() {
        assert_eq!(std::mem::size_of::<Rec>(), 56);
    }

    #[test]
    fn insert_find_fire_remove() {
        let mut m = Members::new(100);
        let mut q = MemberIndex::default();
        let (a, ready) = m.insert(&mut q, 0, b"a".to_vec().into(), meta(150, 1), 100);
        assert!(!ready);
        let (b, ready) = m.insert(&mut q, 0, b"b".to_vec().into(), meta(90, 2), 100);
        assert!(ready);
        assert_eq!(m.find(&q, b"a"), Some(a));
        assert_eq!(m.find(&q, b"zz"), None);
        assert_eq!(q.first_ready(), Some(b));
        let mut fired = Vec::new();
        m.advance(149, &mut fired);
        assert!(fired.is_empty());
        m.advance(150, &mut fired);
        assert_eq!(fired, vec![a]);
        m.make_ready(&mut q, a);
        assert_eq!(q.ready_len(), 2);
        let (bytes, meta_b) = m.remove(&mut q, b);
        assert_eq!((&*bytes, meta_b.due), (&b"b"[..], 90));
        assert_eq!(q.len(), 1);
        assert_eq!(q.first_ready(), Some(a));
        // The freed slot is reused.
        let (c, _) = m.insert(&mut q, 0, b"c".to_vec().into(), meta(500, 3), 150);
        assert_eq!(c, b);
        assert!(!m.update(&mut q, c, meta(600, 4), 150));
        assert_eq!(m.meta(c).due, 600);
        assert_eq!(m.wheel_len(), 1);
    }

    /// Past a chunk of the slab and past the split of the queue's table,
    /// every member is found, fires, and is removed as before.
    #[test]
    fn a_queue_past_the_split_and_the_first_chunk_keeps_every_member() {
        let n = CHUNK + SPLIT_AT;
        let mut m = Members::new(0);
        let mut q = MemberIndex::default();
        let mut small = MemberIndex::default();
        let (lone, _) = m.insert(&mut small, 1, b"lone".to_vec().into(), meta(5, 0), 0);
        let ids: Vec<u32> = (0..n)
            .map(|i| {
                let name = format!("m{i}").into_bytes().into_boxed_slice();
                m.insert(&mut q, 0, name, meta(10 + i as u64, i as u64), 0)
                    .0
            })
            .collect();
        assert!(matches!(q.table, IdTable::Sharded(_)));
        assert!(matches!(small.table, IdTable::One(_)));
        assert_eq!((q.len(), m.len()), (n, n + 1));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(m.find(&q, format!("m{i}").as_bytes()), Some(*id));
            assert_eq!(m.member(*id), format!("m{i}").as_bytes());
        }
        assert_eq!(m.find(&q, b"lone"), None);
        assert_eq!(m.find(&small, b"lone"), Some(lone));
        for id in ids.iter().step_by(2) {
            m.remove(&mut q, *id);
        }
        assert_eq!(q.len(), n - n.div_ceil(2));
        let mut left: Vec<u32> = q.ids().collect();
        left.sort_unstable();
        let odd: Vec<u32> = ids.iter().skip(1).step_by(2).copied().collect();
        assert_eq!(left, odd);
        let mut fired = Vec::new();
        m.advance(10 + n as u64, &mut fired);
        fired.sort_unstable();
        let mut want = odd.clone();
        want.push(lone);
        want.sort_unstable();
        assert_eq!(fired, want);
    }
}
