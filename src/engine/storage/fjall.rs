//! [`Storage`] on fjall, an LSM tree: one keyspace per [`Space`], each
//! batch applied as one fjall write batch (atomic across keyspaces), and
//! fjall's journal as the log that makes batches durable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Batch, Journal, Op, Scan, Space, Storage};
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
    journal: Arc<FjallJournal>,
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
        // Applying a batch appends to the journal's buffer only; the engine
        // writes it to the OS once for all the batches of a moment
        // (Journal::write), as Redis writes its AOF once per event-loop pass.
        let db = Database::builder(dir)
            .max_journaling_size(JOURNAL_BYTES)
            .manual_journal_persist(true)
            .max_cached_files(Some(CACHED_FILES))
            .open()?;
        let opts = || KeyspaceCreateOptions::default().max_memtable_size(MEMTABLE_BYTES);
        let spaces = [
            db.keyspace("schedule", opts)?,
            db.keyspace("members", opts)?,
            db.keyspace("meta", opts)?,
        ];
        let journal = Arc::new(FjallJournal {
            db: db.clone(),
            dir: dir.to_path_buf(),
            handle: Mutex::default(),
        });
        Ok(FjallStorage {
            db,
            spaces,
            journal,
        })
    }

    fn space(&self, s: Space) -> &Keyspace {
        &self.spaces[s.index()]
    }
}

impl Storage for FjallStorage {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.space(space).get(key)?.map(|v| v.to_vec()))
    }

    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>, reverse: bool) -> Scan<'_> {
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

    fn apply(&mut self, batch: Batch) -> Result<()> {
        let mut writes = self.db.batch();
        for op in batch.ops {
            match op {
                Op::Put(s, k, v) => writes.insert(self.space(s), k, v),
                Op::Delete(s, k) => writes.remove(self.space(s), k),
                Op::Clear(s) => {
                    // fjall journals a clear as an entry of its own: commit
                    // what came before it so the order is kept.
                    if !writes.is_empty() {
                        std::mem::replace(&mut writes, self.db.batch()).commit()?;
                    }
                    self.space(s).clear()?;
                }
            }
        }
        if !writes.is_empty() {
            writes.commit()?;
        }
        Ok(())
    }

    fn journal(&self) -> Arc<dyn Journal> {
        self.journal.clone()
    }

    fn flush(&self) -> Result<()> {
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

    fn disk_space(&self) -> u64 {
        self.db.disk_space().unwrap_or(0)
    }
}

/// Writes and fsyncs fjall's journal; shared by the engine and the writer.
pub(crate) struct FjallJournal {
    db: Database,
    dir: PathBuf,
    /// Our handle on the active journal.
    handle: Mutex<JournalHandle>,
}

/// The active journal as we have it open. fjall names journals `<id>.jnl`
/// and rotates from one to the next id, so telling whether it rotated takes
/// a `stat` of the next name, not a descriptor.
#[derive(Default)]
struct JournalHandle {
    open: Option<(u64, File)>,
    /// Set while fsyncs go through fjall's own handle because ours could not
    /// be opened (logged once per episode).
    falling_back: bool,
}

impl Journal for FjallJournal {
    fn write(&self) -> Result<()> {
        self.db.persist(PersistMode::Buffer)?;
        Ok(())
    }

    /// fjall's own `persist(SyncData)` holds the journal lock for the whole
    /// fsync, so every commit would wait behind it and group commit would
    /// collapse. Instead the buffer goes to the OS (the lock is held only for
    /// that `write`), then the active journal file is fsynced through a
    /// handle of our own, with no lock held. Journals sealed meanwhile were
    /// fsynced by fjall when it sealed them.
    ///
    /// Our handle is opened once and again only after a rotation. If it
    /// cannot be (no descriptor or memory left, say), that is no fault of
    /// the journal: the fsync goes through fjall's handle instead, which
    /// needs no new descriptor (commits wait meanwhile), and the next fsync
    /// tries to open ours again. So only a failed write or fsync of the
    /// journal itself is an error.
    fn sync(&self) -> Result<()> {
        self.write()?;
        let mut handle = self.handle();
        match self.follow_locked(&mut handle) {
            Ok(()) => {
                if std::mem::take(&mut handle.falling_back) {
                    tracing::info!("the journal is open for fsync again");
                }
            }
            Err(e) => {
                if !std::mem::replace(&mut handle.falling_back, true) {
                    tracing::warn!(
                        "cannot open the journal for fsync ({e}); fsyncing through the store's \
                         own handle until it can be"
                    );
                }
                drop(handle);
                self.db.persist(PersistMode::SyncData)?;
                return Ok(());
            }
        }
        if let Some((_, file)) = &handle.open {
            file.sync_data()
                .map_err(|e| crate::Error::storage_caused(e.to_string(), e))?;
        }
        Ok(())
    }

    /// Opens the active journal if it is not open yet or fjall has rotated
    /// to a new one (a `stat`, and a descriptor only then): at start-up,
    /// while descriptors are plentiful, so that fsyncs need none, and when
    /// idle, so that a sealed journal that fjall deletes is not kept on disk
    /// by our handle.
    fn follow(&self) {
        let _ = self.follow_locked(&mut self.handle());
    }
}

impl FjallJournal {
    fn handle(&self) -> std::sync::MutexGuard<'_, JournalHandle> {
        self.handle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn follow_locked(&self, handle: &mut JournalHandle) -> std::io::Result<()> {
        let known = handle.open.as_ref().map(|(id, _)| *id);
        if let Some(newer) = follow_journal(&self.dir, known)? {
            handle.open = Some(newer);
        }
        Ok(())
    }
}

/// Opens the active journal in `dir` if it is newer than journal `known`
/// (`None`: none known yet). Only a rotation costs a descriptor (and a
/// directory listing the first time).
fn follow_journal(dir: &Path, known: Option<u64>) -> std::io::Result<Option<(u64, File)>> {
    let name = |id: u64| dir.join(format!("{id}.jnl"));
    let newest = match known {
        Some(id) => {
            let mut n = id;
            while name(n + 1).try_exists()? {
                n += 1;
            }
            if n == id {
                return Ok(None);
            }
            n
        }
        None => newest_journal(dir)?,
    };
    Ok(Some((newest, File::open(name(newest))?)))
}

/// The id of the highest-numbered `*.jnl` in `dir`.
fn newest_journal(dir: &Path) -> std::io::Result<u64> {
    let mut best = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "jnl") {
            continue;
        }
        if let Some(n) = path
            .file_stem()
            .and_then(|s| s.to_str()?.parse::<u64>().ok())
        {
            best = best.max(Some(n));
        }
    }
    best.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "no journal file found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_journal_is_followed_across_rotations_by_name() {
        let dir = tempfile::tempdir().unwrap();
        assert!(follow_journal(dir.path(), None).is_err(), "no journal yet");
        for f in ["2.jnl", "3.jnl", "10.txt", "x.jnl"] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let id = |j: Option<(u64, File)>| j.map(|(id, _)| id);
        assert_eq!(id(follow_journal(dir.path(), None).unwrap()), Some(3));
        assert_eq!(id(follow_journal(dir.path(), Some(3)).unwrap()), None);
        // Two rotations since the last fsync.
        std::fs::write(dir.path().join("4.jnl"), b"").unwrap();
        std::fs::write(dir.path().join("5.jnl"), b"").unwrap();
        assert_eq!(id(follow_journal(dir.path(), Some(3)).unwrap()), Some(5));
    }

    #[test]
    fn sync_without_its_own_handle_goes_through_fjall() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        {
            let mut storage = FjallStorage::open(dir.path()).unwrap();
            storage
                .apply(Batch {
                    lsn: 1,
                    ops: vec![Op::Put(Space::Meta, b"k".to_vec(), b"v".to_vec())],
                })
                .unwrap();
            // A journal handle that cannot find the journal to open.
            let journal = FjallJournal {
                db: storage.db.clone(),
                dir: elsewhere.path().to_path_buf(),
                handle: Mutex::default(),
            };
            journal.sync().unwrap();
            assert!(journal.handle().falling_back);
            journal.sync().unwrap();
        }
        let storage = FjallStorage::open(dir.path()).unwrap();
        assert_eq!(storage.get(Space::Meta, b"k").unwrap(), Some(b"v".to_vec()));
    }
}
