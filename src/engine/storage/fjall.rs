//! fjall, an LSM tree, as the state behind delayd's log: one keyspace per
//! [`Space`], each batch applied as one fjall write batch (atomic across
//! keyspaces). Durability is the log's ([`super::logged`]), which empties
//! fjall's journal at open rather than have fjall replay it; the cluster's
//! state machine persists fjall's journal itself.

use std::path::Path;

use fjall::config::{BlockSizePolicy, CompressionPolicy, FilterPolicy, PartitioningPolicy};
use fjall::{
    AbstractTree, CompressionType, Database, Keyspace, KeyspaceCreateOptions, PersistMode,
};

use super::{Op, Scan, Space};
use crate::{Error, Result};

/// The memtable size at which delayd rotates a keyspace's memtable itself
/// (see [`FjallStorage::rotate_full_memtables`]). fjall's default (64 MiB)
/// makes the memtable skiplist deep and cache-cold: with it, memtable
/// inserts took half the engine thread under `redis-benchmark -P 16`; 8 MiB
/// doubled DELAYADD throughput (4 and 16 MiB were no better). It is below
/// the 8 MiB at which stores created before delayd rotated for itself have
/// fjall rotate, so that fjall never has to.
const ROTATE_AT: u64 = 6 * 1024 * 1024;

/// The memtable size at which fjall itself would ask its workers to rotate
/// (in keyspaces created from now on): a backstop far above [`ROTATE_AT`].
const FJALL_MEMTABLE_BYTES: u64 = 64 * 1024 * 1024;

/// Most journal bytes kept before fjall asks its workers to flush the
/// keyspaces pinning the oldest journal. delayd flushes them itself (every
/// rotation rotates every keyspace holding writes), so this is a backstop
/// too; what a restart replays is what the memtables held.
const JOURNAL_BYTES: u64 = 256 * 1024 * 1024;

/// Most table files fjall keeps open (its descriptor cache; fjall's default
/// is 900). Tables past it are opened per read. It is counted in the
/// descriptors kept from clients (the server reserves them, see `fdlimit.rs`), so a
/// burst of connections cannot take the store's descriptors. 256 tables of
/// fjall's 64 MiB hold 16 GiB, far beyond a delay queue's usual backlog.
pub(crate) const CACHED_FILES: usize = 256;

/// fjall's block cache (its default is 32 MiB). With filters and indexes
/// partitioned (see `open`), what a lookup reads is a few 4 KiB blocks, and
/// the data blocks of a large backlog are read at random, so a big cache
/// holds little that is read again. 8 MiB kept the peak RSS of a 10-million
/// member bulk load at 139.9 and 148.6 MB against 169.9 MB with 32 MiB, with
/// the same load rate and `DELAYSCORE` speed (BENCHMARKS.md, session 7).
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

/// Longest a flush of the memtables (at shutdown) is waited for.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

// fjall's background threads (flush and compaction) stay at fjall's
// default (one per core, at most four). One was tried: under callgrind,
// which runs one thread at a time, worker 0 of two seemed to spin handing
// compaction requests back to the shared queue (fjall 3.1 worker_pool.rs),
// but on the machine the two workers together use less CPU than one, and
// with one, a memtable rotation waits in the queue behind a long compaction
// while the active memtable keeps growing: 1.8 GB of RSS and a 106 s
// restart after a 10-million-member bulk load (BENCHMARKS.md, session 3).

/// The fjall database and its keyspaces.
pub(crate) struct FjallStorage {
    db: Database,
    /// Indexed by [`Space::index`].
    spaces: [Keyspace; 3],
    /// How many times [`FjallStorage::seal`] ran: when it moves, every
    /// write applied before is sealed.
    seals: std::sync::atomic::AtomicU64,
}

impl FjallStorage {
    /// Opens (or creates) the database in `dir`, replaying its journal.
    ///
    /// # Errors
    ///
    /// Fails if the directory cannot be created or the store cannot be
    /// recovered.
    pub(crate) fn open(dir: &Path) -> Result<FjallStorage> {
        std::fs::create_dir_all(dir)?;
        // Applying a batch appends to fjall's journal buffer only: the batch
        // is durable in delayd's log already (see `discard_journal`).
        let db = Database::builder(dir)
            .cache_size(CACHE_BYTES)
            .max_journaling_size(JOURNAL_BYTES)
            .manual_journal_persist(true)
            .max_cached_files(Some(CACHED_FILES))
            .open()?;
        // Filters and indexes are split into 4 KiB partitions at every level
        // (fjall partitions only from level 3 by default). Unpartitioned,
        // a point lookup loads a table's whole filter block (about a
        // megabyte per million keys) and, once those outgrow the block
        // cache, reads and checksums it from the file every time: by ~12
        // million members a bulk load had fallen from 32k to 16k adds/s and
        // at 16 million the engine thread spent 88 % of its time there
        // (BENCHMARKS.md, session 7). Partitioned, a lookup reads one small
        // partition.
        // Data blocks are LZ4-compressed at every level (fjall's default
        // leaves level 0 uncompressed). `schedule` is only ever scanned
        // (no point reads), so it has no filters, and 16 KiB blocks, which
        // compress better. Together: 2 million members took 84 MB on disk
        // in the two keyspaces against 149 MB (BENCHMARKS.md, session 9).
        // fjall keeps a keyspace's options from its creation: stores
        // created before this keep the old layout.
        let opts = || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(FJALL_MEMTABLE_BYTES)
                .filter_block_partitioning_policy(PartitioningPolicy::all(true))
                .index_block_partitioning_policy(PartitioningPolicy::all(true))
                .data_block_compression_policy(CompressionPolicy::all(CompressionType::Lz4))
        };
        let scanned = || {
            opts()
                .filter_policy(FilterPolicy::disabled())
                .data_block_size_policy(BlockSizePolicy::all(16 * 1024))
        };
        let spaces = [
            db.keyspace("schedule", scanned)?,
            db.keyspace("members", opts)?,
            db.keyspace("meta", opts)?,
        ];
        Ok(FjallStorage {
            db,
            spaces,
            seals: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn space(&self, s: Space) -> &Keyspace {
        &self.spaces[s.index()]
    }
}

impl FjallStorage {
    /// The value of `key`, if any.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.space(space).get(key)?.map(|v| v.to_vec()))
    }

    /// Entries with `from <= key < to`, in key order (descending with
    /// `reverse`).
    pub(crate) fn scan(
        &self,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
    ) -> Scan<'_> {
        let ks = self.space(space);
        let entry = |g: fjall::Guard| -> Result<super::Entry> {
            let (k, v) = g.into_inner()?;
            Ok((k.to_vec(), v.to_vec()))
        };
        let range = match to {
            Some(to) => ks.range(from.to_vec()..to.to_vec()),
            None => ks.range(from.to_vec()..),
        };
        if reverse {
            Box::new(range.rev().map(entry))
        } else {
            Box::new(range.map(entry))
        }
    }

    /// Applies `ops` atomically.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn apply(&self, ops: &[Op]) -> Result<()> {
        let mut writes = self.db.batch();
        for op in ops {
            match op {
                Op::Put(s, k, v) => writes.insert(self.space(*s), k.as_slice(), v.as_slice()),
                Op::Delete(s, k) => writes.remove(self.space(*s), k.as_slice()),
                Op::Clear(s) => {
                    // fjall journals a clear as an entry of its own: commit
                    // what came before it so the order is kept.
                    if !writes.is_empty() {
                        std::mem::replace(&mut writes, self.db.batch()).commit()?;
                    }
                    self.space(*s).clear()?;
                }
            }
        }
        if !writes.is_empty() {
            writes.commit()?;
        }
        self.rotate_full_memtables()
    }

    /// Rotates the memtables on this (the writer's) thread once one is
    /// full, every keyspace holding writes at once.
    ///
    /// fjall 3.1.13 would have a worker thread rotate a full memtable, and
    /// that worker then waits to queue the flush on the workers' own
    /// bounded queue (1,000 messages). At scale the queue fills with
    /// compaction requests during long compactions, and once every worker
    /// waits there nothing drains it: no memtable is flushed again, and the
    /// active one grows without bound (7.9 GB of RSS and a 3.3 GB journal
    /// at 67 million members, BENCHMARKS.md session 8). Before that, while
    /// the queue is merely full, fjall drops rotation requests and the
    /// memtable grows past its size. Rotated here, the flush is queued by
    /// this thread, which waits while the queue is full and so holds writes
    /// back, while the workers keep draining it. Rotating every keyspace
    /// holding writes lets each journal be dropped as soon as the flushes
    /// finish, so fjall never needs to ask its workers to rotate the
    /// keyspaces pinning an old journal either.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn rotate_full_memtables(&self) -> Result<()> {
        let full = self
            .spaces
            .iter()
            .any(|ks| ks.tree.active_memtable().size() >= ROTATE_AT);
        if full { self.seal() } else { Ok(()) }
    }

    /// Rotates the memtable of every keyspace holding writes: everything
    /// applied so far is then in sealed memtables or tables, and fjall's
    /// workers write the sealed ones to tables. Call it on the writer's
    /// thread (see [`FjallStorage::rotate_full_memtables`]).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn seal(&self) -> Result<()> {
        for ks in &self.spaces {
            if ks.tree.active_memtable().size() > 0 {
                ks.rotate_memtable()?;
            }
        }
        self.seals
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    /// How many times the memtables were sealed (see
    /// [`FjallStorage::seal`]), whether by [`FjallStorage::apply`] once one
    /// was full or by a caller.
    pub(crate) fn seals(&self) -> u64 {
        self.seals.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Whether every sealed memtable is written to a table. fjall writes a
    /// table and the version naming it with fsync before it drops the
    /// memtable, so what was sealed before this answers `true` survives a
    /// crash without fjall's journal.
    pub(crate) fn sealed_flushed(&self) -> bool {
        self.spaces.iter().all(|ks| ks.sealed_memtable_count() == 0)
    }

    /// Empties fjall's journal in `dir`, before fjall is opened there: for
    /// a store whose every write not yet in a table is in delayd's log,
    /// which a restart reads anyway. fjall replays its whole active journal
    /// at open (up to 64 MB; 2.1 s after a 2-million-member burst,
    /// BENCHMARKS.md session 9), one meta-keyspace lookup per entry.
    ///
    /// The sealed journals are deleted and the active one (the newest) is
    /// kept, empty: fjall recovers its sequence number from its tables only
    /// when it opens an existing active journal. This is the state fjall
    /// itself leaves once every journal is flushed and a new one is started.
    ///
    /// # Errors
    ///
    /// An I/O error listing, deleting or truncating them.
    pub(crate) fn discard_journal(dir: &Path) -> Result<()> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let mut journals = Vec::new();
        for entry in entries {
            let path = entry?.path();
            let id = path
                .extension()
                .filter(|e| *e == "jnl")
                .and_then(|_| path.file_stem())
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok());
            if let Some(id) = id {
                journals.push((id, path));
            }
        }
        journals.sort();
        let Some((_, active)) = journals.pop() else {
            return Ok(());
        };
        for (_, sealed) in journals {
            std::fs::remove_file(sealed)?;
        }
        let file = std::fs::OpenOptions::new().write(true).open(&active)?;
        file.set_len(0)?;
        file.sync_all()?;
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    }

    /// Makes everything applied so far durable (fjall's journal, fsynced).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn persist(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    /// Writes the memtables to tables and waits, bounded (clean shutdown,
    /// checkpoints).
    ///
    /// # Errors
    ///
    /// A storage error, or the flush did not finish in time.
    pub(crate) fn flush(&self) -> Result<()> {
        self.flush_within(FLUSH_WAIT)
    }

    /// [`FjallStorage::flush`], waiting at most `wait`.
    ///
    /// # Errors
    ///
    /// A storage error, or the flush did not finish in time.
    pub(crate) fn flush_within(&self, wait: std::time::Duration) -> Result<()> {
        // Waits a bounded time: a flush that fails (the directory is gone,
        // the disk is full) never empties the sealed memtables, and a
        // shutdown must not wait for it forever.
        self.seal()?;
        let deadline = std::time::Instant::now() + wait;
        while !self.sealed_flushed() {
            if std::time::Instant::now() >= deadline {
                return Err(Error::storage("memtables not flushed in time"));
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Ok(())
    }

    /// Bytes on disk.
    pub(crate) fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memtables_are_rotated_by_the_writer_before_fjall_would() {
        let dir = tempfile::tempdir().unwrap();
        let storage = FjallStorage::open(dir.path()).unwrap();
        // ~40 MiB of writes in 64 KiB batches, most to one keyspace.
        let value = vec![7u8; 1000];
        for batch in 0..640u32 {
            let ops: Vec<Op> = (0..64u32)
                .map(|i| {
                    let key = (batch * 64 + i).to_be_bytes().to_vec();
                    Op::Put(Space::Schedule, key, value.clone())
                })
                .chain([Op::Put(
                    Space::Meta,
                    b"m".to_vec(),
                    batch.to_be_bytes().to_vec(),
                )])
                .collect();
            storage.apply(&ops).unwrap();
            for ks in &storage.spaces {
                let size = ks.tree.active_memtable().size();
                assert!(
                    size < ROTATE_AT,
                    "batch {batch}: a memtable of {size} bytes was left for fjall to rotate"
                );
            }
        }
        // The small keyspace was flushed along with the big one.
        assert!(storage.space(Space::Meta).table_count() > 0);
        assert!(
            storage.space(Space::Schedule).table_count() > 0 || {
                storage.space(Space::Schedule).sealed_memtable_count() > 0
            }
        );
    }

    #[test]
    fn batches_survive_a_reopen_once_persisted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let storage = FjallStorage::open(dir.path()).unwrap();
            storage
                .apply(&[Op::Put(Space::Meta, b"k".to_vec(), b"v".to_vec())])
                .unwrap();
            storage.persist().unwrap();
        }
        let storage = FjallStorage::open(dir.path()).unwrap();
        assert_eq!(storage.get(Space::Meta, b"k").unwrap(), Some(b"v".to_vec()));
    }
}
