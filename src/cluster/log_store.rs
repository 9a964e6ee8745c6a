//! The group's Raft log: a fjall database of its own (`<dir>/raft-log`),
//! apart from the state machine's, so that its fsyncs carry only the log.
//!
//! Durability is explicit: `append` reports entries flushed only once they
//! are where `appendfsync` says (`always`: fdatasynced; otherwise written to
//! the OS, and fsynced once a second by [`LogStore::sync`]); a vote is
//! always fdatasynced before `save_vote` returns, whatever the policy, since
//! a forgotten vote can elect two leaders in one term.

// openraft's traits fix the error type (`StorageError`, large).
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::types::{Entry, LogId, StorageError, TypeConfig, storage_error};
use crate::engine::{Engine, Fsync};

const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"purged";

/// The log store; clones share the database (openraft's log reader is one).
#[derive(Clone)]
pub(crate) struct LogStore {
    db: Database,
    log: Keyspace,
    meta: Keyspace,
    /// The fsync policy in force (CONFIG SET may change it).
    engine: Engine,
    /// The last index known committed (openraft saves it as it moves), for
    /// INFO and /metrics.
    committed: Arc<AtomicU64>,
}

impl LogStore {
    /// Opens (or creates) the log in `dir`.
    ///
    /// # Errors
    ///
    /// fjall cannot open it.
    pub(crate) fn open(dir: &Path, engine: Engine) -> crate::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let db = Database::builder(dir).manual_journal_persist(true).open()?;
        let log = db.keyspace("log", KeyspaceCreateOptions::default)?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        Ok(LogStore {
            db,
            log,
            meta,
            engine,
            committed: Arc::default(),
        })
    }

    /// The last log index this node knows to be committed (0: none yet).
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Fsyncs what was appended (`everysec`'s once a second).
    ///
    /// # Errors
    ///
    /// The fsync failed.
    pub(crate) fn sync(&self) -> crate::Result<()> {
        self.db.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
    ) -> Result<Option<T>, StorageError> {
        let Some(v) = self
            .meta
            .get(key)
            .map_err(|e| storage_error(StorageIOError::read, &e))?
        else {
            return Ok(None);
        };
        postcard::from_bytes(&v)
            .map(Some)
            .map_err(|e| storage_error(StorageIOError::read, &e))
    }

    fn write_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        mode: PersistMode,
    ) -> Result<(), StorageError> {
        let v =
            postcard::to_allocvec(value).map_err(|e| storage_error(StorageIOError::write, &e))?;
        self.meta
            .insert(key, v)
            .map_err(|e| storage_error(StorageIOError::write, &e))?;
        self.db
            .persist(mode)
            .map_err(|e| storage_error(StorageIOError::write, &e))
    }

    /// Removes the entries whose keys are in `range`, in one batch.
    fn remove_entries(
        &self,
        range: impl RangeBounds<[u8; 8]>,
        mode: PersistMode,
    ) -> Result<(), StorageError> {
        let mut batch = self.db.batch();
        for g in self.log.range(range) {
            let k = g
                .key()
                .map_err(|e| storage_error(StorageIOError::write_logs, &e))?;
            batch.remove(&self.log, k);
        }
        batch
            .commit()
            .map_err(|e| storage_error(StorageIOError::write_logs, &e))?;
        self.db
            .persist(mode)
            .map_err(|e| storage_error(StorageIOError::write_logs, &e))
    }

    fn last_entry(&self) -> Result<Option<LogId>, StorageError> {
        match self.log.iter().next_back() {
            None => Ok(None),
            Some(g) => {
                let (_, v) = g
                    .into_inner()
                    .map_err(|e| storage_error(StorageIOError::read_logs, &e))?;
                let e: Entry = postcard::from_bytes(&v)
                    .map_err(|e| storage_error(StorageIOError::read_logs, &e))?;
                Ok(Some(e.log_id))
            }
        }
    }
}

fn key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let from = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => i.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(i) => Some(i.saturating_add(1)),
            Bound::Excluded(i) => Some(*i),
            Bound::Unbounded => None,
        };
        let iter = match to {
            Some(to) if to <= from => return Ok(Vec::new()),
            Some(to) => self.log.range(key(from)..key(to)),
            None => self.log.range(key(from)..),
        };
        // One run of consecutive entries: openraft ships what is returned
        // as consecutive, so the entries after a gap (a purged stretch
        // behind a lone first entry) are never returned with those before.
        let mut out: Vec<Entry> = Vec::new();
        for g in iter {
            let (_, v) = g
                .into_inner()
                .map_err(|e| storage_error(StorageIOError::read_logs, &e))?;
            let entry: Entry = postcard::from_bytes(&v)
                .map_err(|e| storage_error(StorageIOError::read_logs, &e))?;
            if out
                .last()
                .is_some_and(|last| entry.log_id.index != last.log_id.index + 1)
            {
                break;
            }
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(PURGED)?;
        let last_log_id = self.last_entry()?.or(last_purged_log_id);
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> LogStore {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        self.write_meta(VOTE, vote, PersistMode::SyncData)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        self.read_meta(VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.write_meta(COMMITTED, &committed, PersistMode::Buffer)?;
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::AcqRel);
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let committed = self.read_meta::<Option<LogId>>(COMMITTED)?.flatten();
        if let Some(c) = committed {
            self.committed.fetch_max(c.index, Ordering::AcqRel);
        }
        Ok(committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = self.db.batch();
        for e in entries {
            let v = postcard::to_allocvec(&e)
                .map_err(|err| storage_error(StorageIOError::write_logs, &err))?;
            batch.insert(&self.log, key(e.log_id.index), v);
        }
        batch
            .commit()
            .map_err(|e| storage_error(StorageIOError::write_logs, &e))?;
        let mode = if self.engine.fsync() == Fsync::Always {
            PersistMode::SyncData
        } else {
            PersistMode::Buffer
        };
        // Reported flushed only once the entries are where the policy says.
        let persisted = self.db.persist(mode);
        let reported = persisted
            .as_ref()
            .map(|_| ())
            .map_err(|e| std::io::Error::other(e.to_string()));
        callback.log_io_completed(reported);
        persisted.map_err(|e| storage_error(StorageIOError::write_logs, &e))
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        // Fsynced whatever the policy: entries a new leader overwrote must
        // not come back after a crash.
        self.remove_entries(key(log_id.index).., PersistMode::SyncData)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.write_meta(PURGED, &log_id, PersistMode::Buffer)?;
        self.remove_entries(..=key(log_id.index), PersistMode::Buffer)
    }
}
