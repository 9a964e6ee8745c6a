//! The layout of queues in storage, and the batch of the current round.
//!
//! Three key spaces ([`Space`]), all written through one numbered [`Batch`]
//! per round of commands (atomic across spaces):
//!
//! | space      | key                                   | value                                     |
//! |------------|---------------------------------------|-------------------------------------------|
//! | `schedule` | `qlen:u16 q due:u64 seq:u64`          | `deliveries:u32 flags:u8 m`               |
//! | `schedule` | `0xFFFF 'Q' q` (queue records)        | `card:u64 floor:u64`                      |
//! | `schedule` | `0xFFFF 'T' qlen:u16 q seq:u64`       | one trace event (see [`super::trace`])    |
//! | `schedule` | `0xFFFF 'B' q` (trace bounds)         | `first:u64 next:u64` trace sequences      |
//! | `members`  | `qlen:u16 q m` (cold members only)    | `due:u64 seq:u64 deliveries:u32 flags:u8` |
//! | `members`  | `0xFFFF 'H' qlen:u16 q sha256(m)`      | the same, for members too long for a key  |
//! | `meta`     | `"seq"`, `"hot_until"`, `"paged_until"` | sequence reservation, horizon, paging mark (`u64`) |
//!
//! All integers are big-endian so byte order is numeric order: `schedule` is
//! each queue's time-ordered index (due time, then insertion sequence), read
//! in order for paging the near future into memory, for ZRANGE-style rank
//! queries and on recovery. A queue's *floor* is a due time below which it
//! has no member: scans of its time index start there, so the tombstones
//! that popped members leave at the head of the index are never read.
//! `members` answers "is this member scheduled, and when" in one point read,
//! for cold members only (due beyond the in-memory horizon): hot members are
//! answered from memory, so the common short-delay path costs one time-index
//! insert per add and one per pop. Queue records keep each queue's
//! cardinality so a restart does not count the backlog, and `meta` keeps the
//! sequence counter so insertion order survives restarts. The queue name is
//! length-prefixed so a prefix scan of one queue never strays into another
//! whose name extends it. Trace events (opt-in, `trace-queues`) are numbered
//! per queue; each traced queue's bounds record says which numbers are kept,
//! so retention deletes the oldest by key and reads start at the first kept
//! one, never at the tombstones retention leaves below it.

//!
//! # The round's batch
//!
//! Commands write into the round's [`Batch`], which is delayd's own data:
//! nothing reaches storage until the engine commits the round, which gives
//! the batch the next number (its lsn) and applies it. Reads — point
//! lookups and scans — see what storage holds with the uncommitted batch laid
//! over it, so a read never commits anything: the lsn a reply waits for is
//! always the one of the batch holding its effects.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use super::FastMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use super::storage::logged::LoggedStorage;
use super::storage::{Batch, Entry, Journal, Op, Scan, Space, Storage, prefix_end};
use crate::Result;

/// Sequence numbers reserved per write of the counter.
const SEQ_BLOCK: u64 = 1 << 16;

/// Set while a member is handed out under a lease and not yet acknowledged
/// or rescheduled.
pub const FLAG_LEASED: u8 = 1;

/// What the store keeps about a scheduled member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberMeta {
    /// Due time, Unix ms.
    pub due: u64,
    /// Insertion sequence: orders members with the same due time.
    pub seq: u64,
    /// How many times the member was handed out under a lease.
    pub deliveries: u32,
    /// [`FLAG_LEASED`] and future flags.
    pub flags: u8,
}

impl MemberMeta {
    /// A record with no deliveries and no flags (tests).
    #[cfg(test)]
    pub fn at(due: u64, seq: u64) -> MemberMeta {
        MemberMeta {
            due,
            seq,
            deliveries: 0,
            flags: 0,
        }
    }

    /// Whether the member is currently leased.
    pub fn leased(&self) -> bool {
        self.flags & FLAG_LEASED != 0
    }

    fn encode(&self) -> [u8; 21] {
        let mut v = [0u8; 21];
        v[..8].copy_from_slice(&self.due.to_be_bytes());
        v[8..16].copy_from_slice(&self.seq.to_be_bytes());
        v[16..20].copy_from_slice(&self.deliveries.to_be_bytes());
        v[20] = self.flags;
        v
    }

    fn decode(v: &[u8]) -> Option<MemberMeta> {
        Some(MemberMeta {
            due: u64::from_be_bytes(v.get(..8)?.try_into().ok()?),
            seq: u64::from_be_bytes(v.get(8..16)?.try_into().ok()?),
            deliveries: u32::from_be_bytes(v.get(16..20)?.try_into().ok()?),
            flags: *v.get(20)?,
        })
    }
}

/// One entry of a queue's time index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduled {
    pub member: Bytes,
    pub meta: MemberMeta,
}

fn queue_prefix(q: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + q.len() + 16);
    // Names are at most MAX_QUEUE_NAME bytes (checked by the command layer),
    // so the length fits 16 bits and never reaches 0xFFFF.
    let len = u16::try_from(q.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(q);
    k
}

/// Prefix of the queue records inside `schedule`: a length prefix no queue
/// name has (names are at most [`MAX_QUEUE_NAME`] bytes), so time-index scans never meet
/// them. They live there rather than in a keyspace of their own so that
/// they are flushed with the time index: a small keyspace rewritten on every
/// commit would never fill a memtable, and a restart would replay its whole
/// history from the journal.
const QUEUE_RECORDS: &[u8] = &[0xFF, 0xFF, b'Q'];

fn queue_record_key(q: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(QUEUE_RECORDS.len() + q.len());
    k.extend_from_slice(QUEUE_RECORDS);
    k.extend_from_slice(q);
    k
}

/// Longest key fjall accepts (it panics on longer ones).
const MAX_STORE_KEY: usize = u16::MAX as usize;

/// Prefix of the point-lookup keys of members too long to be a key
/// themselves: no queue name is long enough to start with `0xFFFF`.
const HASHED_MEMBERS: &[u8] = &[0xFF, 0xFF, b'H'];

/// Length of a SHA-256 digest.
const DIGEST_LEN: usize = 32;

/// Longest queue name. Every key that holds a name must fit fjall's
/// 65,535-byte limit: the longest is a hashed member key
/// (`0xFFFF 'H' qlen q sha256(m)`, 37 bytes around the name); the rest of
/// the 65,535 is kept for future key layouts.
pub const MAX_QUEUE_NAME: usize = 65_000;

const _: () = assert!(HASHED_MEMBERS.len() + 2 + MAX_QUEUE_NAME + DIGEST_LEN <= MAX_STORE_KEY);
const _: () = assert!(2 + MAX_QUEUE_NAME + 16 <= MAX_STORE_KEY);
const _: () = assert!(QUEUE_RECORDS.len() + MAX_QUEUE_NAME <= MAX_STORE_KEY);
const _: () = assert!(TRACE_EVENTS.len() + 2 + MAX_QUEUE_NAME + 8 <= MAX_STORE_KEY);

/// Prefix of the trace events inside `schedule`: like [`QUEUE_RECORDS`], a
/// length prefix no queue name has, so time-index scans never meet them.
/// They live in `schedule` so that FLUSHALL (which clears the space) clears
/// them, and DEL (which deletes one queue's time index) keeps them.
const TRACE_EVENTS: &[u8] = &[0xFF, 0xFF, b'T'];

/// Prefix of the trace bounds records (one per traced queue).
const TRACE_BOUNDS: &[u8] = &[0xFF, 0xFF, b'B'];

/// The key of trace event `seq` of queue `q`: the name is length-prefixed,
/// so a prefix scan of one queue's events never strays into another's.
fn trace_key(q: &[u8], seq: u64) -> Vec<u8> {
    let mut k = trace_prefix(q);
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

/// The prefix of every trace event of queue `q`.
fn trace_prefix(q: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(TRACE_EVENTS.len() + 2 + q.len() + 8);
    k.extend_from_slice(TRACE_EVENTS);
    // As in `queue_prefix`: names are at most MAX_QUEUE_NAME bytes.
    let len = u16::try_from(q.len()).unwrap_or(u16::MAX);
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(q);
    k
}

fn trace_bounds_key(q: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(TRACE_BOUNDS.len() + q.len());
    k.extend_from_slice(TRACE_BOUNDS);
    k.extend_from_slice(q);
    k
}

/// The point-lookup key of member `m` of queue `q`: the member itself when
/// the key fits fjall's limit, else a SHA-256 digest of it under
/// [`HASHED_MEMBERS`] (a collision-resistant digest: two members never
/// share a key). The member's bytes are kept whole in the time index's
/// value, whose limit is 4 GiB.
fn member_key(q: &[u8], m: &[u8]) -> Vec<u8> {
    if 2 + q.len() + m.len() <= MAX_STORE_KEY {
        let mut k = queue_prefix(q);
        k.extend_from_slice(m);
        return k;
    }
    use sha2::Digest;
    let mut k = Vec::with_capacity(HASHED_MEMBERS.len() + 2 + q.len() + DIGEST_LEN);
    k.extend_from_slice(HASHED_MEMBERS);
    k.extend_from_slice(&queue_prefix(q));
    k.extend_from_slice(&sha2::Sha256::digest(m));
    k
}

fn schedule_key(q: &[u8], due: u64, seq: u64) -> Vec<u8> {
    let mut k = queue_prefix(q);
    k.extend_from_slice(&due.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn corrupt(what: &str) -> crate::Error {
    crate::Error::storage(format!("corrupt {what} record"))
}

fn decode_scheduled(prefix_len: usize, key: &[u8], value: &[u8]) -> Result<Scheduled> {
    let tail = key.get(prefix_len..).ok_or_else(|| corrupt("schedule"))?;
    if tail.len() != 16 || value.len() < 5 {
        return Err(corrupt("schedule"));
    }
    Ok(Scheduled {
        member: Bytes::copy_from_slice(&value[5..]),
        meta: MemberMeta {
            due: u64::from_be_bytes(tail[..8].try_into().map_err(|_| corrupt("schedule"))?),
            seq: u64::from_be_bytes(tail[8..].try_into().map_err(|_| corrupt("schedule"))?),
            deliveries: u32::from_be_bytes(value[..4].try_into().map_err(|_| corrupt("schedule"))?),
            flags: value[4],
        },
    })
}

/// The round's uncommitted writes, and what reads need to see them.
#[derive(Default)]
struct Pending {
    ops: Vec<Op>,
    /// Point-lookup entries written in the batch (`None`: removed), kept as
    /// they are written: [`Store::get`] is on the path of every add.
    members: FastMap<Vec<u8>, Option<MemberMeta>>,
    /// The batch's writes per space (`None`: removed), for scans; brought
    /// up to date from `ops[overlaid..]` only when a scan needs it.
    overlay: [BTreeMap<Vec<u8>, Option<Vec<u8>>>; 3],
    overlaid: usize,
    /// Spaces cleared by the batch: storage's entries are hidden.
    cleared: [bool; 3],
    /// Queue records (cardinality, floor) changed in the batch, written at
    /// commit.
    queues: FastMap<Bytes, (u64, u64)>,
    /// Trace bounds (first, next) changed in the batch, written at commit:
    /// once per queue per round, however many events it recorded.
    traces: FastMap<Bytes, (u64, u64)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.queues.is_empty() && self.traces.is_empty()
    }

    /// Lays the ops written since the last scan over storage's view.
    fn catch_up(&mut self) {
        for op in &self.ops[self.overlaid..] {
            match op {
                Op::Put(s, k, v) => {
                    self.overlay[s.index()].insert(k.clone(), Some(v.clone()));
                }
                Op::Delete(s, k) => {
                    self.overlay[s.index()].insert(k.clone(), None);
                }
                Op::Clear(s) => {
                    self.overlay[s.index()].clear();
                    self.cleared[s.index()] = true;
                }
            }
        }
        self.overlaid = self.ops.len();
    }
}

/// Queues laid out over a [`Storage`], with the round's batch.
pub struct Store {
    storage: Box<dyn Storage>,
    pending: Pending,
    /// Number of the last batch applied.
    lsn: u64,
    next_seq: u64,
    /// Sequence numbers below this are reserved in storage: the counter is
    /// written once per block of numbers, not in every batch.
    seq_reserved: u64,
}

impl Store {
    /// Opens (or creates) the fjall store in `dir`.
    ///
    /// # Errors
    ///
    /// Fails if the directory cannot be created or the store cannot be
    /// recovered.
    pub fn open(dir: &Path) -> Result<Store> {
        Store::over(Box::new(LoggedStorage::open(dir)?))
    }

    /// A store over any storage.
    ///
    /// # Errors
    ///
    /// A storage error reading the sequence counter.
    pub(crate) fn over(storage: Box<dyn Storage>) -> Result<Store> {
        let next_seq = match storage.get(Space::Meta, b"seq")? {
            Some(v) => decode_u64(&v).ok_or_else(|| corrupt("meta"))?,
            None => 1,
        };
        Ok(Store {
            storage,
            pending: Pending::default(),
            lsn: 0,
            next_seq,
            seq_reserved: next_seq,
        })
    }

    /// Allocates the next insertion sequence number.
    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// The number of the last batch applied: a reply waits until the batch
    /// holding its effects is durable.
    pub fn lsn(&self) -> u64 {
        self.lsn
    }

    /// Numbers the next batches after `lsn` (a new leadership of a
    /// replicated group continues its node's numbering).
    pub(crate) fn continue_after(&mut self, lsn: u64) {
        self.lsn = self.lsn.max(lsn);
    }

    /// Whether the current round has uncommitted writes.
    pub fn is_dirty(&self) -> bool {
        !self.pending.is_empty()
    }

    fn put_raw(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.pending.ops.push(Op::Put(space, key, value));
    }

    fn delete_raw(&mut self, space: Space, key: Vec<u8>) {
        self.pending.ops.push(Op::Delete(space, key));
    }

    fn set_member_entry(&mut self, key: Vec<u8>, meta: Option<MemberMeta>) {
        match meta {
            Some(m) => self.put_raw(Space::Members, key.clone(), m.encode().to_vec()),
            None => self.delete_raw(Space::Members, key.clone()),
        }
        self.pending.members.insert(key, meta);
    }

    /// Writes (or rewrites) a member. `cold` says whether it is beyond the
    /// in-memory horizon: only cold members get a `members` entry, since
    /// hot ones are found in memory. `old` is the previous record and
    /// whether it was cold; its entries are removed.
    pub fn put(
        &mut self,
        q: &[u8],
        m: &[u8],
        meta: MemberMeta,
        cold: bool,
        old: Option<(MemberMeta, bool)>,
    ) {
        if let Some((old, old_cold)) = old {
            if (old.due, old.seq) != (meta.due, meta.seq) {
                self.delete_raw(Space::Schedule, schedule_key(q, old.due, old.seq));
            }
            if old_cold && !cold {
                self.set_member_entry(member_key(q, m), None);
            }
        }
        if cold {
            self.set_member_entry(member_key(q, m), Some(meta));
        }
        let mut v = Vec::with_capacity(5 + m.len());
        v.extend_from_slice(&meta.deliveries.to_be_bytes());
        v.push(meta.flags);
        v.extend_from_slice(m);
        self.put_raw(Space::Schedule, schedule_key(q, meta.due, meta.seq), v);
    }

    /// Deletes a member whose record is `meta`.
    pub fn delete(&mut self, q: &[u8], m: &[u8], meta: MemberMeta, cold: bool) {
        if cold {
            self.set_member_entry(member_key(q, m), None);
        }
        self.delete_raw(Space::Schedule, schedule_key(q, meta.due, meta.seq));
    }

    /// A cold member was paged into memory: drop its point-lookup entry.
    pub fn warm(&mut self, q: &[u8], m: &[u8]) {
        self.set_member_entry(member_key(q, m), None);
    }

    /// Gives a member leaving memory its point-lookup entry (the inverse of
    /// [`Store::warm`]): it is on disk only from now on.
    pub fn cool(&mut self, q: &[u8], m: &[u8], meta: MemberMeta) {
        self.set_member_entry(member_key(q, m), Some(meta));
    }

    /// Records how far ahead members are in memory, so a restart loads at
    /// least as far (members up to it have no `members` entry).
    pub fn set_hot_until(&mut self, ms: u64) {
        self.put_raw(
            Space::Meta,
            b"hot_until".to_vec(),
            ms.to_be_bytes().to_vec(),
        );
    }

    /// The recorded horizon (0 if none).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn hot_until(&mut self) -> Result<u64> {
        self.meta_u64(b"hot_until")
    }

    /// Records how far members were paged into memory beyond the recorded
    /// horizon (by a pager step not finished yet, or by a pop that paged in
    /// what was due): they have no `members` entry either, so a restart
    /// loads at least as far, whatever the wall clock says then.
    pub fn set_paged_until(&mut self, ms: u64) {
        self.put_raw(
            Space::Meta,
            b"paged_until".to_vec(),
            ms.to_be_bytes().to_vec(),
        );
    }

    /// The recorded paging mark (0 if none).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn paged_until(&mut self) -> Result<u64> {
        self.meta_u64(b"paged_until")
    }

    fn meta_u64(&mut self, key: &[u8]) -> Result<u64> {
        match self.read(Space::Meta, key)? {
            Some(v) => decode_u64(&v).ok_or_else(|| corrupt("meta")),
            None => Ok(0),
        }
    }

    /// Records a queue's cardinality and floor (cardinality 0 removes the
    /// queue's record).
    pub fn set_queue(&mut self, q: &Bytes, card: u64, floor: u64) {
        self.pending.queues.insert(q.clone(), (card, floor));
    }

    /// Commits the round: the batch gets the next lsn and is applied to
    /// storage (not yet durable: see [`Journal`]). Returns the lsn, or
    /// `None` if the round wrote nothing.
    ///
    /// # Errors
    ///
    /// A storage error; the batch is lost and must not be acknowledged.
    pub fn commit(&mut self) -> Result<Option<u64>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let mut pending = std::mem::take(&mut self.pending);
        for (q, (card, floor)) in pending.queues.drain() {
            if card == 0 {
                pending
                    .ops
                    .push(Op::Delete(Space::Schedule, queue_record_key(&q)));
            } else {
                let mut v = Vec::with_capacity(16);
                v.extend_from_slice(&card.to_be_bytes());
                v.extend_from_slice(&floor.to_be_bytes());
                pending
                    .ops
                    .push(Op::Put(Space::Schedule, queue_record_key(&q), v));
            }
        }
        for (q, (first, next)) in pending.traces.drain() {
            let mut v = Vec::with_capacity(16);
            v.extend_from_slice(&first.to_be_bytes());
            v.extend_from_slice(&next.to_be_bytes());
            pending
                .ops
                .push(Op::Put(Space::Schedule, trace_bounds_key(&q), v));
        }
        // Reserve a block of sequence numbers ahead; a restart continues
        // after the block, so numbers stay unique without a write per batch.
        if self.next_seq >= self.seq_reserved {
            self.seq_reserved = self.next_seq + SEQ_BLOCK;
            pending.ops.push(Op::Put(
                Space::Meta,
                b"seq".to_vec(),
                self.seq_reserved.to_be_bytes().to_vec(),
            ));
        }
        let lsn = self.lsn + 1;
        self.storage.apply(Batch {
            lsn,
            ops: pending.ops,
        })?;
        self.lsn = lsn;
        Ok(Some(lsn))
    }

    /// Writes in-memory tables to disk and waits (clean shutdown), so the
    /// next start has little to replay.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn flush_memtables(&self) -> Result<()> {
        self.storage.flush()
    }

    /// Drops the uncommitted batch (after a failure).
    pub fn discard(&mut self) {
        self.pending = Pending::default();
    }

    /// The handle that makes committed batches durable, for the engine and
    /// the writer thread.
    pub(crate) fn journal(&self) -> Arc<dyn Journal> {
        self.storage.journal()
    }

    /// A point read seeing the batch's writes.
    fn read(&mut self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.pending.catch_up();
        if let Some(v) = self.pending.overlay[space.index()].get(key) {
            return Ok(v.clone());
        }
        if self.pending.cleared[space.index()] {
            return Ok(None);
        }
        self.storage.get(space, key)
    }

    /// A scan seeing the batch's writes: storage's entries merged with the
    /// batch's, the batch winning.
    fn scan(&mut self, space: Space, from: &[u8], to: Option<&[u8]>) -> Overlaid<'_> {
        self.scan_dir(space, from, to, false)
    }

    /// [`Store::scan`] in either direction.
    fn scan_dir(
        &mut self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
    ) -> Overlaid<'_> {
        self.pending.catch_up();
        let i = space.index();
        let overlay = &self.pending.overlay[i];
        let ours = match to {
            Some(to) => overlay.range::<[u8], _>((Bound::Included(from), Bound::Excluded(to))),
            None => overlay.range::<[u8], _>((Bound::Included(from), Bound::Unbounded)),
        };
        let ours: OverlayScan<'_> = if reverse {
            Box::new(ours.rev())
        } else {
            Box::new(ours)
        };
        let theirs: Scan<'_> = if self.pending.cleared[i] {
            Box::new(std::iter::empty())
        } else {
            self.storage.scan(space, from, to, reverse)
        };
        Overlaid {
            theirs: theirs.peekable(),
            ours: ours.peekable(),
            reverse,
        }
    }

    /// Reads a cold member's record, seeing this batch's writes.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn get(&mut self, q: &[u8], m: &[u8]) -> Result<Option<MemberMeta>> {
        let key = member_key(q, m);
        if let Some(p) = self.pending.members.get(&key) {
            return Ok(*p);
        }
        if self.pending.cleared[Space::Members.index()] {
            return Ok(None);
        }
        match self.storage.get(Space::Members, &key)? {
            Some(v) => Ok(Some(
                MemberMeta::decode(&v).ok_or_else(|| corrupt("member"))?,
            )),
            None => Ok(None),
        }
    }

    /// Pages in: members of `q` with `from <= due <= until`, in time order,
    /// and the due time of the first one after `until`, in one scan.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn page_in(
        &mut self,
        q: &[u8],
        from: u64,
        until: u64,
    ) -> Result<(Vec<Scheduled>, Option<u64>)> {
        let start = schedule_key(q, from, 0);
        let end = prefix_end(&queue_prefix(q));
        let mut out = Vec::new();
        for entry in self.scan(Space::Schedule, &start, end.as_deref()) {
            let (k, v) = entry?;
            let s = decode_scheduled(2 + q.len(), &k, &v)?;
            if s.meta.due > until {
                return Ok((out, Some(s.meta.due)));
            }
            out.push(s);
        }
        Ok((out, None))
    }

    /// Members of `q` due at `floor` or later, by rank in time order: skip
    /// `skip`, take `take`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn rank_range(
        &mut self,
        q: &[u8],
        floor: u64,
        skip: usize,
        take: usize,
    ) -> Result<Vec<Scheduled>> {
        self.due_range(q, (floor, u64::MAX), false, skip, take)
    }

    /// Members of `q` with `min <= due <= max` (`due` as `(min, max)`), in
    /// time order (latest first with `reverse`): skip `skip`, take `take`.
    /// One range scan of the time index: O(log n + skip + take), whether the
    /// members are in memory or only on disk.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn due_range(
        &mut self,
        q: &[u8],
        (min, max): (u64, u64),
        reverse: bool,
        skip: usize,
        take: usize,
    ) -> Result<Vec<Scheduled>> {
        let mut out = Vec::with_capacity(take.min(1024));
        if min > max {
            return Ok(out);
        }
        let (start, end) = due_keys(q, min, max);
        for entry in self
            .scan_dir(Space::Schedule, &start, end.as_deref(), reverse)
            .skip(skip)
            .take(take)
        {
            let (k, v) = entry?;
            out.push(decode_scheduled(2 + q.len(), &k, &v)?);
        }
        Ok(out)
    }

    /// How many members of `q` have `min <= due <= max`: a scan of that
    /// window of the time index (keys only are decoded).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn due_count(&mut self, q: &[u8], (min, max): (u64, u64)) -> Result<u64> {
        if min > max {
            return Ok(0);
        }
        let (start, end) = due_keys(q, min, max);
        let mut n = 0;
        for entry in self.scan(Space::Schedule, &start, end.as_deref()) {
            entry?;
            n += 1;
        }
        Ok(n)
    }

    /// Deletes every member of `q`, returning how many there were.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn delete_queue(&mut self, q: &Bytes) -> Result<u64> {
        let prefix = queue_prefix(q);
        let end = prefix_end(&prefix);
        let mut all = Vec::new();
        for entry in self.scan(Space::Schedule, &prefix, end.as_deref()) {
            let (k, v) = entry?;
            all.push(decode_scheduled(prefix.len(), &k, &v)?);
        }
        for s in &all {
            self.delete(q, &s.member, s.meta, true);
        }
        self.set_queue(q, 0, 0);
        Ok(all.len() as u64)
    }

    /// Removes every queue (the sequence counter and horizon stay).
    pub fn clear(&mut self) {
        self.pending.queues.clear();
        self.pending.traces.clear();
        self.pending.members.clear();
        for space in [Space::Schedule, Space::Members] {
            self.pending.ops.push(Op::Clear(space));
            // At once, not at the next scan: point lookups (`get`) do not
            // catch up with the ops and must not see storage's entries.
            self.pending.cleared[space.index()] = true;
        }
    }

    /// Every queue with its cardinality and floor, as recorded.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn queues(&mut self) -> Result<Vec<(Bytes, u64, u64)>> {
        let mut out = Vec::new();
        let end = prefix_end(QUEUE_RECORDS);
        for entry in self.scan(Space::Schedule, QUEUE_RECORDS, end.as_deref()) {
            let (k, v) = entry?;
            let k = &k[QUEUE_RECORDS.len()..];
            let field = |r: std::ops::Range<usize>| -> Result<u64> {
                v.get(r)
                    .and_then(decode_u64)
                    .ok_or_else(|| corrupt("queue"))
            };
            out.push((Bytes::copy_from_slice(k), field(0..8)?, field(8..16)?));
        }
        Ok(out)
    }

    /// Writes trace event `seq` of queue `q` (its value is laid out by
    /// [`super::trace`]).
    pub(crate) fn put_trace(&mut self, q: &[u8], seq: u64, value: Vec<u8>) {
        self.put_raw(Space::Schedule, trace_key(q, seq), value);
    }

    /// Deletes trace event `seq` of queue `q` (retention).
    pub(crate) fn delete_trace(&mut self, q: &[u8], seq: u64) {
        self.delete_raw(Space::Schedule, trace_key(q, seq));
    }

    /// Records which trace events of `q` are kept: `first..next`.
    pub(crate) fn set_trace_bounds(&mut self, q: &Bytes, first: u64, next: u64) {
        self.pending.traces.insert(q.clone(), (first, next));
    }

    /// Every traced queue with its trace bounds `(first, next)`, as recorded.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn trace_bounds(&mut self) -> Result<Vec<(Bytes, u64, u64)>> {
        let mut out = Vec::new();
        let end = prefix_end(TRACE_BOUNDS);
        for entry in self.scan(Space::Schedule, TRACE_BOUNDS, end.as_deref()) {
            let (k, v) = entry?;
            let k = &k[TRACE_BOUNDS.len()..];
            let field = |r: std::ops::Range<usize>| -> Result<u64> {
                v.get(r)
                    .and_then(decode_u64)
                    .ok_or_else(|| corrupt("trace bounds"))
            };
            out.push((Bytes::copy_from_slice(k), field(0..8)?, field(8..16)?));
        }
        Ok(out)
    }

    /// The values of the trace events of `q` numbered `from` or more, oldest
    /// first, that `keep` accepts: one range scan of the queue's events.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn trace_events(
        &mut self,
        q: &[u8],
        from: u64,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> Result<Vec<Vec<u8>>> {
        let start = trace_key(q, from);
        let end = prefix_end(&trace_prefix(q));
        let mut out = Vec::new();
        for entry in self.scan(Space::Schedule, &start, end.as_deref()) {
            let (_, v) = entry?;
            if keep(&v) {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Bytes the store takes on disk.
    pub fn disk_space(&self) -> u64 {
        self.storage.disk_space()
    }
}

/// The time-index keys of queue `q` with `min <= due <= max`: the first,
/// and the end (exclusive; `None`: the end of the space).
fn due_keys(q: &[u8], min: u64, max: u64) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut upto = queue_prefix(q);
    upto.extend_from_slice(&max.to_be_bytes());
    (schedule_key(q, min, 0), prefix_end(&upto))
}

fn decode_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(b.try_into().ok()?))
}

/// Storage's entries merged with the batch's, in key order; the batch's
/// entry wins over storage's for the same key, and its removals hide them.
struct Overlaid<'a> {
    theirs: std::iter::Peekable<Scan<'a>>,
    ours: std::iter::Peekable<OverlayScan<'a>>,
    /// Both run in descending key order.
    reverse: bool,
}

/// The batch's entries of a scan.
type OverlayScan<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;

impl Iterator for Overlaid<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            let order = match (self.theirs.peek(), self.ours.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.theirs.next(),
                (Some(Ok(_)), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(Ok((a, _))), Some((b, _))) => {
                    let order = a.as_slice().cmp(b.as_slice());
                    if self.reverse { order.reverse() } else { order }
                }
            };
            if order != Ordering::Greater {
                let theirs = self.theirs.next();
                if order == Ordering::Less {
                    return theirs;
                }
            }
            // Ours is next (or shadows theirs): a removal yields nothing.
            if let Some((k, Some(v))) = self.ours.next() {
                return Some(Ok((k.clone(), v.clone())));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::storage::memory::MemStorage;
    use super::*;

    fn meta(due: u64, seq: u64) -> MemberMeta {
        MemberMeta::at(due, seq)
    }

    #[test]
    fn writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut s = Store::open(dir.path()).unwrap();
            let q = Bytes::from_static(b"q");
            let s1 = s.next_seq();
            let s2 = s.next_seq();
            s.put(&q, b"a", meta(20, s1), true, None);
            s.put(&q, b"b", meta(10, s2), false, None);
            s.set_queue(&q, 2, 0);
            assert_eq!(s.commit().unwrap(), Some(1));
            s.journal().sync().unwrap();
        }
        let mut s = Store::open(dir.path()).unwrap();
        assert_eq!(s.queues().unwrap(), vec![(Bytes::from_static(b"q"), 2, 0)]);
        assert_eq!(s.get(b"q", b"a").unwrap(), Some(meta(20, 1)));
        let order: Vec<_> = s
            .rank_range(b"q", 0, 0, 10)
            .unwrap()
            .into_iter()
            .map(|x| x.member)
            .collect();
        assert_eq!(
            order,
            vec![Bytes::from_static(b"b"), Bytes::from_static(b"a")]
        );
        assert!(s.next_seq() > 2, "sequence continues after restart");
    }

    #[test]
    fn queue_prefixes_do_not_overlap() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.put(b"q", b"x", meta(1, 1), false, None);
        s.put(b"qq", b"y", meta(1, 2), false, None);
        assert_eq!(s.rank_range(b"q", 0, 0, 10).unwrap().len(), 1);
        assert_eq!(s.page_in(b"qq", 0, 5).unwrap().0.len(), 1);
    }

    #[test]
    fn reschedule_moves_the_index_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::open(dir.path()).unwrap();
        s.put(b"q", b"x", meta(5, 1), false, None);
        s.put(b"q", b"x", meta(50, 2), true, Some((meta(5, 1), false)));
        assert_eq!(s.get(b"q", b"x").unwrap(), Some(meta(50, 2)));
        let all = s.rank_range(b"q", 0, 0, 10).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].meta.due, 50);
        s.delete(b"q", b"x", meta(50, 2), true);
        assert!(s.rank_range(b"q", 0, 0, 10).unwrap().is_empty());
        assert_eq!(s.get(b"q", b"x").unwrap(), None);
    }

    fn mem() -> Store {
        Store::over(Box::new(MemStorage::default())).unwrap()
    }

    fn members(s: &mut Store, q: &[u8]) -> Vec<Bytes> {
        s.rank_range(q, 0, 0, 100)
            .unwrap()
            .into_iter()
            .map(|x| x.member)
            .collect()
    }

    /// Reads see the round's uncommitted writes laid over storage, and
    /// never commit: the lsn moves only when the engine commits the round.
    #[test]
    fn reads_see_the_batch_without_committing_it() {
        let mut s = mem();
        s.put(b"q", b"a", meta(10, 1), false, None);
        s.put(b"q", b"b", meta(20, 2), true, None);
        assert_eq!(s.commit().unwrap(), Some(1));
        s.delete(b"q", b"a", meta(10, 1), false);
        s.put(b"q", b"c", meta(15, 3), false, None);
        s.put(b"q", b"b", meta(5, 4), false, Some((meta(20, 2), true)));
        assert_eq!(
            members(&mut s, b"q"),
            vec![Bytes::from("b"), Bytes::from("c")]
        );
        assert_eq!(s.get(b"q", b"b").unwrap(), None, "b is hot now");
        let (page, next) = s.page_in(b"q", 0, 10).unwrap();
        assert_eq!(page.len(), 1);
        assert_eq!(next, Some(15));
        assert!(s.is_dirty());
        assert_eq!(s.lsn(), 1);
        assert_eq!(s.commit().unwrap(), Some(2));
        assert_eq!(
            members(&mut s, b"q"),
            vec![Bytes::from("b"), Bytes::from("c")]
        );
    }

    #[test]
    fn clear_hides_storage_until_committed_and_after() {
        let mut s = mem();
        s.put(b"q", b"a", meta(10, 1), true, None);
        s.set_queue(&Bytes::from_static(b"q"), 1, 0);
        s.commit().unwrap();
        s.clear();
        assert!(members(&mut s, b"q").is_empty());
        assert_eq!(s.get(b"q", b"a").unwrap(), None);
        s.put(b"r", b"x", meta(1, 2), false, None);
        s.set_queue(&Bytes::from_static(b"r"), 1, 0);
        assert_eq!(members(&mut s, b"r"), vec![Bytes::from("x")]);
        s.commit().unwrap();
        assert_eq!(s.queues().unwrap(), vec![(Bytes::from_static(b"r"), 1, 0)]);
        assert_eq!(s.get(b"q", b"a").unwrap(), None);
    }

    /// A crash keeps exactly the batches written to the OS.
    #[test]
    fn a_crash_keeps_what_was_written_and_drops_the_rest() {
        let storage = MemStorage::default();
        let mut s = Store::over(Box::new(storage.clone_handle())).unwrap();
        s.put(b"q", b"kept", meta(1, 1), true, None);
        s.commit().unwrap();
        s.journal().write().unwrap();
        s.put(b"q", b"lost", meta(2, 2), true, None);
        s.commit().unwrap();
        let mut after = Store::over(Box::new(storage.after_crash())).unwrap();
        assert_eq!(members(&mut after, b"q"), vec![Bytes::from("kept")]);
        assert!(after.get(b"q", b"lost").unwrap().is_none());
        assert!(after.next_seq() > 2, "sequence numbers are never reused");
        // Nothing was synced: a power loss keeps nothing.
        let mut after = Store::over(Box::new(storage.after_power_loss())).unwrap();
        assert!(members(&mut after, b"q").is_empty());
    }
}
