//! fjall, an LSM tree, as the state behind delayd's log: one keyspace per
//! [`Space`], each batch applied as one fjall write batch (atomic across
//! keyspaces). Durability is the log's ([`super::logged`]); fjall's own
//! journal is only persisted at checkpoints.

use std::path::Path;

use fjall::config::PartitioningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Op, Scan, Space};
use crate::{Error, Result};

/// Memtable size per keyspace. fjall's default (64 MiB) makes the memtable
/// skiplist deep and cache-cold: with it, memtable inserts took half the
/// engine thread under `redis-benchmark -P 16`; 8 MiB doubled DELAYADD
/// throughput (4 and 16 MiB were no better).
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// Most journal bytes kept before fjall flushes the keyspaces pinning the
/// oldest journal (64 MiB is fjall's minimum).
const JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

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
        // Journals are replayed on start-up until every keyspace has flushed
        // past them; the small `meta` keyspace rarely fills a memtable, so
        // without a cap up to 512 MiB of journal could be replayed after a
        // crash. The smallest cap fjall allows keeps restarts short.
        // Applying a batch appends to fjall's journal buffer only: the batch
        // is durable in delayd's log already, and fjall's journal is
        // persisted at checkpoints.
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
        // fjall keeps a keyspace's options from its creation: stores
        // created before this keep the old layout.
        let opts = || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(MEMTABLE_BYTES)
                .filter_block_partitioning_policy(PartitioningPolicy::all(true))
                .index_block_partitioning_policy(PartitioningPolicy::all(true))
        };
        let spaces = [
            db.keyspace("schedule", opts)?,
            db.keyspace("members", opts)?,
            db.keyspace("meta", opts)?,
        ];
        Ok(FjallStorage { db, spaces })
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

    /// Writes the memtables to disk and waits, bounded (clean shutdown).
    ///
    /// # Errors
    ///
    /// A storage error, or the flush did not finish in time.
    pub(crate) fn flush(&self) -> Result<()> {
        // While running, fjall flushes a memtable when it is full and the
        // keyspaces pinning the oldest journal once journals pass 64 MiB;
        // rotating more often only piles up small flushes, and fjall halts
        // writers (100 ms) behind four sealed memtables.
        // Waits a bounded time: a flush that fails (the directory is gone,
        // the disk is full) never empties the sealed memtables, and a
        // shutdown must not wait for it forever. What is not flushed is in
        // the journal, replayed at the next start.
        let deadline = std::time::Instant::now() + FLUSH_WAIT;
        for ks in &self.spaces {
            if ks.rotate_memtable()? {
                while ks.sealed_memtable_count() > 0 {
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::storage(
                            "memtables not flushed in time; the journal keeps them",
                        ));
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
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
