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

/// The slab, as the wheel sees it.
struct Slab<'a>(&'a mut Vec<Rec>);

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
    table: HashTable<u32>,
    ready: BTreeMap<(u64, u64), u32>,
}

impl MemberIndex {
    /// Members of the queue in memory (tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.table.len()
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
        self.table.iter().copied()
    }
}

/// The in-memory members of every queue, and the wheel that times them.
pub struct Members {
    recs: Vec<Rec>,
    free: Vec<u32>,
    hasher: RandomState,
    wheel: TimerWheel,
    parked: BTreeMap<(u64, u64), u32>,
}

impl Members {
    /// No members; the wheel's time is `now` (ms).
    pub fn new(now: u64) -> Members {
        Members {
            recs: Vec::new(),
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
        idx.table
            .find(self.hash(member), |&id| {
                &*recs[id as usize].member == member
            })
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
            .insert_unique(hash, id, |&i| hasher.hash_one(&recs[i as usize].member));
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
        if let Ok(entry) = idx.table.find_entry(hash, |&i| i == id) {
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
}
