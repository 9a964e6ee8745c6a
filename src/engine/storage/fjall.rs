//! [`Storage`] on fjall, an LSM tree: one keyspace per [`Space`], each
//! batch applied as one fjall write batch (atomic across keyspaces), and
//! fjall's journal as the log that makes batches durable.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{Batch, Journal, Op, Scan, Space, Storage};
use crate::Result;

/// Memtable size per keyspace. fjall's default (64 MiB) makes the memtable
/// skiplist deep and cache-cold: with it, memtable inserts took half the
/// engine thread under `redis-benchmark -P 16`; 8 MiB doubled DELAYADD
/// throughput (4 and 16 MiB were no better).
const MEMTABLE_BYTES: u64 = 8 * 1024 * 1024;

/// Most journal bytes kept before fjall flushes the keyspaces pinning the
/// oldest journal (64 MiB is fjall's minimum).
const JOURNAL_BYTES: u64 = 64 * 1024 * 1024;

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
            file: Mutex::default(),
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

    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>) -> Scan<'_> {
        let ks = self.space(space);
        let entry = |g: fjall::Guard| -> Result<super::Entry> {
            let (k, v) = g.into_inner()?;
            Ok((k.to_vec(), v.to_vec()))
        };
        match to {
            Some(to) => Box::new(ks.range(from.to_vec()..to.to_vec()).map(entry)),
            None => Box::new(ks.range(from.to_vec()..).map(entry)),
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
        for ks in &self.spaces {
            ks.rotate_memtable_and_wait()?;
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
    /// The active journal file, opened once, for fsyncing it ourselves.
    file: Mutex<Option<(PathBuf, File)>>,
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
    fn sync(&self) -> Result<()> {
        self.write()?;
        let newest = self.newest_journal()?;
        let mut cached = self
            .file
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
}

impl FjallJournal {
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
