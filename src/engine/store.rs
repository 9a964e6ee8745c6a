//! The on-disk layout in fjall, the source of truth.
//!
//! Three keyspaces, all written through one [`fjall::OwnedWriteBatch`] per
//! commit (atomic across keyspaces):
//!
//! | keyspace   | key                                   | value                                     |
//! |------------|---------------------------------------|-------------------------------------------|
//! | `schedule` | `qlen:u16 q due:u64 seq:u64`          | `deliveries:u32 flags:u8 m`               |
//! | `schedule` | `0xFFFF 'Q' q` (queue records)        | `card:u64 floor:u64`                      |
//! | `members`  | `qlen:u16 q m` (cold members only)    | `due:u64 seq:u64 deliveries:u32 flags:u8` |
//! | `meta`     | `"seq"`, `"hot_until"`                | sequence reservation, horizon (`u64`)     |
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
//! whose name extends it.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch, PersistMode};

use crate::Result;

/// Memtable size per keyspace. fjall's default (64 MiB) makes the memtable
/// skiplist deep and cache-cold: with it, memtable inserts took half the
/// engine thread under `redis-benchmark -P 16`; 8 MiB doubled DELAYADD
/// throughput (4 and 16 MiB were no better).
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// Most journal bytes kept before fjall flushes the keyspaces pinning the
/// oldest journal (64 MiB is fjall's minimum).
const JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

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
    crate::Error::Storage(format!("corrupt {what} record"))
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

/// The fjall database and the write batch of the current round.
pub struct Store {
    db: Database,
    dir: PathBuf,
    members: Keyspace,
    schedule: Keyspace,
    meta: Keyspace,
    batch: Option<OwnedWriteBatch>,
    /// Queue records (cardinality, floor) changed in the current batch,
    /// written at commit.
    cards: std::collections::HashMap<Bytes, (u64, u64)>,
    next_seq: u64,
    /// Sequence numbers below this are reserved on disk: the counter is
    /// written once per block of numbers, not on every commit.
    seq_reserved: u64,
    /// Point-lookup entries written in the uncommitted batch (`None`:
    /// removed), so [`Store::get`] sees them without committing early.
    pending: std::collections::HashMap<Vec<u8>, Option<MemberMeta>>,
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    ///
    /// # Errors
    ///
    /// Fails if the directory cannot be created or the store cannot be
    /// recovered.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir)?;
        // Journals are replayed on start-up until every keyspace has flushed
        // past them; the small `meta` keyspace rarely fills a memtable, so
        // without a cap up to 512 MiB of journal could be replayed after a
        // crash. The smallest cap fjall allows keeps restarts short.
        // Commits append to the journal's buffer only; the engine writes it
        // to the OS once for all the commits of a moment (Syncer::write),
        // as Redis writes its AOF once per event-loop pass.
        let db = Database::builder(dir)
            .max_journaling_size(JOURNAL_BYTES)
            .manual_journal_persist(true)
            .open()?;
        let opts = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        let members = db.keyspace("members", opts)?;
        let schedule = db.keyspace("schedule", opts)?;
        let meta = db.keyspace("meta", opts)?;
        let next_seq = match meta.get("seq")? {
            Some(v) => u64::from_be_bytes(v.as_ref().try_into().map_err(|_| corrupt("meta"))?),
            None => 1,
        };
        Ok(Store {
            db,
            dir: dir.to_path_buf(),
            members,
            schedule,
            meta,
            batch: None,
            cards: std::collections::HashMap::new(),
            next_seq,
            seq_reserved: next_seq,
            pending: std::collections::HashMap::new(),
        })
    }

    /// Allocates the next insertion sequence number.
    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn batch(&mut self) -> &mut OwnedWriteBatch {
        self.batch.get_or_insert_with(|| self.db.batch())
    }

    /// Whether the current round has uncommitted writes.
    pub fn is_dirty(&self) -> bool {
        self.batch.as_ref().is_some_and(|b| !b.is_empty()) || !self.cards.is_empty()
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
        let batch = self.batch.get_or_insert_with(|| self.db.batch());
        let (members, schedule) = (&self.members, &self.schedule);
        if let Some((old, old_cold)) = old {
            if (old.due, old.seq) != (meta.due, meta.seq) {
                batch.remove(schedule, schedule_key(q, old.due, old.seq));
            }
            if old_cold && !cold {
                batch.remove(members, member_key(q, m));
                self.pending.insert(member_key(q, m), None);
            }
        }
        if cold {
            batch.insert(members, member_key(q, m), meta.encode().to_vec());
            self.pending.insert(member_key(q, m), Some(meta));
        }
        let mut v = Vec::with_capacity(5 + m.len());
        v.extend_from_slice(&meta.deliveries.to_be_bytes());
        v.push(meta.flags);
        v.extend_from_slice(m);
        batch.insert(schedule, schedule_key(q, meta.due, meta.seq), v);
    }

    /// Deletes a member whose record is `meta`.
    pub fn delete(&mut self, q: &[u8], m: &[u8], meta: MemberMeta, cold: bool) {
        let members = self.members.clone();
        let schedule = self.schedule.clone();
        let batch = self.batch();
        if cold {
            batch.remove(&members, member_key(q, m));
        }
        batch.remove(&schedule, schedule_key(q, meta.due, meta.seq));
        if cold {
            self.pending.insert(member_key(q, m), None);
        }
    }

    /// A cold member was paged into memory: drop its point-lookup entry.
    pub fn warm(&mut self, q: &[u8], m: &[u8]) {
        let members = self.members.clone();
        self.batch().remove(&members, member_key(q, m));
        self.pending.insert(member_key(q, m), None);
    }

    /// Records how far ahead members are in memory, so a restart loads at
    /// least as far (members up to it have no `members` entry).
    pub fn set_hot_until(&mut self, ms: u64) {
        let meta = self.meta.clone();
        self.batch()
            .insert(&meta, "hot_until", ms.to_be_bytes().to_vec());
    }

    /// The recorded horizon (0 if none).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn hot_until(&self) -> Result<u64> {
        match self.meta.get("hot_until")? {
            Some(v) => Ok(u64::from_be_bytes(
                v.as_ref().try_into().map_err(|_| corrupt("meta"))?,
            )),
            None => Ok(0),
        }
    }

    /// Records a queue's cardinality and floor (cardinality 0 removes the
    /// queue's record).
    pub fn set_queue(&mut self, q: &Bytes, card: u64, floor: u64) {
        self.cards.insert(q.clone(), (card, floor));
    }

    /// Commits the current batch to the journal and memtables (not fsynced:
    /// see [`Store::sync`]). Returns whether anything was written.
    ///
    /// # Errors
    ///
    /// A storage error; the batch is lost and must not be acknowledged.
    pub fn commit(&mut self) -> Result<bool> {
        if !self.is_dirty() {
            return Ok(false);
        }
        self.pending.clear();
        let cards = std::mem::take(&mut self.cards);
        let schedule = self.schedule.clone();
        let meta = self.meta.clone();
        // Reserve a block of sequence numbers ahead; a restart continues
        // after the block, so numbers stay unique without a write per commit.
        let reserve = (self.next_seq >= self.seq_reserved).then(|| {
            self.seq_reserved = self.next_seq + SEQ_BLOCK;
            self.seq_reserved
        });
        let batch = self.batch();
        for (q, (card, floor)) in cards {
            if card == 0 {
                batch.remove(&schedule, queue_record_key(&q));
            } else {
                let mut v = Vec::with_capacity(16);
                v.extend_from_slice(&card.to_be_bytes());
                v.extend_from_slice(&floor.to_be_bytes());
                batch.insert(&schedule, queue_record_key(&q), v);
            }
        }
        if let Some(reserved) = reserve {
            batch.insert(&meta, "seq", reserved.to_be_bytes().to_vec());
        }
        match self.batch.take() {
            Some(b) => b.commit()?,
            None => return Ok(false),
        }
        Ok(true)
    }

    /// Flushes every keyspace's memtable and waits (clean shutdown), so the
    /// next start has little to replay. While running, fjall flushes a
    /// memtable when it is full and the keyspaces pinning the oldest journal
    /// once journals pass 64 MiB; rotating more often only piles up small
    /// flushes, and fjall halts writers (100 ms) behind four sealed memtables.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn flush_memtables(&self) -> Result<()> {
        for ks in [&self.members, &self.schedule, &self.meta] {
            ks.rotate_memtable_and_wait()?;
        }
        Ok(())
    }

    /// Drops the uncommitted batch (after a failed commit).
    pub fn discard(&mut self) {
        self.batch = None;
        self.cards.clear();
        self.pending.clear();
    }

    /// A handle that can write and fsync the journal from another thread.
    pub fn syncer(&self) -> Syncer {
        Syncer {
            db: self.db.clone(),
            dir: self.dir.clone(),
            journal: Arc::default(),
        }
    }

    /// Reads a cold member's record, seeing this batch's writes.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn get(&mut self, q: &[u8], m: &[u8]) -> Result<Option<MemberMeta>> {
        let key = member_key(q, m);
        if let Some(p) = self.pending.get(&key) {
            return Ok(*p);
        }
        match self.members.get(key)? {
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
        self.commit()?;
        let start = schedule_key(q, from, 0);
        let end = schedule_key(q, u64::MAX, u64::MAX);
        let mut out = Vec::new();
        for guard in self.schedule.range(start..=end) {
            let (k, v) = guard.into_inner()?;
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
        self.commit()?;
        let start = schedule_key(q, floor, 0);
        let end = schedule_key(q, u64::MAX, u64::MAX);
        let mut out = Vec::with_capacity(take.min(1024));
        for guard in self.schedule.range(start..=end).skip(skip).take(take) {
            let (k, v) = guard.into_inner()?;
            out.push(decode_scheduled(2 + q.len(), &k, &v)?);
        }
        Ok(out)
    }

    /// Deletes every member of `q`, returning how many there were.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn delete_queue(&mut self, q: &Bytes) -> Result<u64> {
        self.commit()?;
        let prefix = queue_prefix(q);
        let mut all = Vec::new();
        for guard in self.schedule.prefix(&prefix) {
            let (k, v) = guard.into_inner()?;
            all.push(decode_scheduled(prefix.len(), &k, &v)?);
        }
        for s in &all {
            self.delete(q, &s.member, s.meta, true);
        }
        self.set_queue(q, 0, 0);
        Ok(all.len() as u64)
    }

    /// Removes everything.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn clear(&mut self) -> Result<()> {
        self.commit()?;
        self.members.clear()?;
        self.schedule.clear()?;
        Ok(())
    }

    /// Every queue with its cardinality and floor, as recorded.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn queues(&self) -> Result<Vec<(Bytes, u64, u64)>> {
        let mut out = Vec::new();
        for guard in self.schedule.prefix(QUEUE_RECORDS) {
            let (k, v) = guard.into_inner()?;
            let k = &k[QUEUE_RECORDS.len()..];
            let field = |r: std::ops::Range<usize>| -> Result<u64> {
                let b = v.get(r).ok_or_else(|| corrupt("queue"))?;
                Ok(u64::from_be_bytes(
                    b.try_into().map_err(|_| corrupt("queue"))?,
                ))
            };
            out.push((Bytes::copy_from_slice(k), field(0..8)?, field(8..16)?));
        }
        Ok(out)
    }

    /// Bytes the store takes on disk.
    pub fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

/// Writes and fsyncs the journal; cloned into the engine and the writer.
#[derive(Clone)]
pub struct Syncer {
    db: Database,
    dir: PathBuf,
    /// The active journal file, opened once, for fsyncing it ourselves.
    journal: Arc<Mutex<Option<(PathBuf, File)>>>,
}

impl Syncer {
    /// Writes everything committed so far to the OS (it survives a crash
    /// of the process, not of the machine).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn write(&self) -> Result<()> {
        self.db.persist(PersistMode::Buffer)?;
        Ok(())
    }

    /// Makes everything committed so far durable (`fdatasync`).
    ///
    /// fjall's own `persist(SyncData)` holds the journal lock for the whole
    /// fsync, so every commit would wait behind it and group commit would
    /// collapse. Instead the buffer goes to the OS (the lock is held only for
    /// that `write`), then the active journal file is fsynced through a
    /// handle of our own, with no lock held. Journals sealed meanwhile were
    /// fsynced by fjall when it sealed them.
    ///
    /// # Errors
    ///
    /// A storage error: the journal may not be durable.
    pub fn sync(&self) -> Result<()> {
        self.write()?;
        let newest = self.newest_journal()?;
        let mut cached = self
            .journal
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.as_ref().is_none_or(|(p, _)| *p != newest) {
            *cached = Some((newest.clone(), File::open(&newest)?));
        }
        if let Some((_, f)) = cached.as_ref() {
            f.sync_data()?;
        }
        Ok(())
    }

    /// The active journal: the highest-numbered `*.jnl` in the directory.
    fn newest_journal(&self) -> Result<PathBuf> {
        let mut best: Option<(u64, PathBuf)> = None;
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_none_or(|e| e != "jnl") {
                continue;
            }
            let Some(n) = path
                .file_stem()
                .and_then(|s| s.to_str()?.parse::<u64>().ok())
            else {
                continue;
            };
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, path));
            }
        }
        best.map(|(_, p)| p)
            .ok_or_else(|| crate::Error::Storage("no journal file found".into()))
    }
}

#[cfg(test)]
mod tests {
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
            assert!(s.commit().unwrap());
            s.syncer().sync().unwrap();
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
}
