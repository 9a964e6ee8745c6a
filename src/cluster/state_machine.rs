//! The group's state machine: the committed state in fjall, the same on
//! every replica at the same applied index.
//!
//! Applying is idempotent by log index: the last applied log id is written
//! in the same fjall batch as the entries' effects, so a restart re-applies
//! exactly the committed entries fjall lacks (fjall's journal is persisted
//! only at snapshots: the Raft log is the durable record, and its entries
//! are purged only up to a snapshot, taken after fjall is fsynced).

// openraft's traits fix the error type (`StorageError`, large).
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogIdOptionExt, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageIOError,
    StoredMembership,
};

use super::types::{Entry, LogId, StorageError, TypeConfig, storage_error};
use crate::engine::storage::fjall::FjallStorage;
use crate::engine::storage::replicated::LeaderLink;
use crate::engine::storage::{Op, Space};

/// Meta keys written with every applied batch.
const APPLIED: &[u8] = b"raft-applied";
const MEMBERSHIP: &[u8] = b"raft-membership";

type Membership = StoredMembership<u64, openraft::BasicNode>;
type Meta = SnapshotMeta<u64, openraft::BasicNode>;

/// Every key and value of the three spaces, as a snapshot carries them.
#[derive(serde::Serialize, serde::Deserialize)]
struct SnapshotFile {
    meta: Meta,
    entries: Vec<(Space, Vec<u8>, Vec<u8>)>,
}

/// The state machine of a node's group.
pub(crate) struct StateMachine {
    data: Arc<FjallStorage>,
    link: Arc<LeaderLink>,
    applied: Option<LogId>,
    membership: Membership,
    /// Where the current snapshot is kept.
    snapshot_path: PathBuf,
}

fn read_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    storage_error(StorageIOError::read_state_machine, e)
}

fn write_err(e: &(impl std::error::Error + 'static)) -> StorageError {
    storage_error(StorageIOError::write_state_machine, e)
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StorageError> {
    postcard::to_allocvec(v).map_err(|e| write_err(&e))
}

impl StateMachine {
    /// The state machine over the group's fjall store.
    ///
    /// # Errors
    ///
    /// The applied log id or membership stored is unreadable.
    pub(crate) fn open(
        data: Arc<FjallStorage>,
        link: Arc<LeaderLink>,
        snapshot_path: PathBuf,
    ) -> crate::Result<StateMachine> {
        let read = |k: &[u8]| -> crate::Result<Option<Vec<u8>>> { data.get(Space::Meta, k) };
        let corrupt = |_| crate::Error::storage("corrupt raft state in the store");
        let applied = match read(APPLIED)? {
            Some(v) => postcard::from_bytes(&v).map_err(corrupt)?,
            None => None,
        };
        let membership = match read(MEMBERSHIP)? {
            Some(v) => postcard::from_bytes(&v).map_err(corrupt)?,
            None => Membership::default(),
        };
        Ok(StateMachine {
            data,
            link,
            applied,
            membership,
            snapshot_path,
        })
    }

    /// The applied log id and membership, as ops for the batch that applies
    /// them.
    fn marks(&self) -> Result<[Op; 2], StorageError> {
        Ok([
            Op::Put(Space::Meta, APPLIED.to_vec(), encode(&self.applied)?),
            Op::Put(Space::Meta, MEMBERSHIP.to_vec(), encode(&self.membership)?),
        ])
    }

    fn dump(&self, meta: Meta) -> Result<SnapshotFile, StorageError> {
        let mut entries = Vec::new();
        for space in [Space::Schedule, Space::Members, Space::Meta] {
            for kv in self.data.scan(space, &[], None, false) {
                let (k, v) = kv.map_err(|e| read_err(&e))?;
                entries.push((space, k, v));
            }
        }
        Ok(SnapshotFile { meta, entries })
    }
}

/// Writes a snapshot file atomically (temp file, fsync, rename) and
/// returns its bytes.
fn save_snapshot(path: &std::path::Path, file: &SnapshotFile) -> Result<Vec<u8>, StorageError> {
    let bytes = encode(file)?;
    super::write_atomically(path, &bytes).map_err(|e| storage_error(StorageIOError::write, &e))?;
    Ok(bytes)
}

/// Builds a snapshot from a consistent dump taken when it was asked for.
pub(crate) struct Builder {
    file: Option<SnapshotFile>,
    machine_path: PathBuf,
}

impl RaftSnapshotBuilder<TypeConfig> for Builder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let Some(file) = self.file.take() else {
            return Err(write_err(&std::io::Error::other("snapshot already built")));
        };
        let bytes = save_snapshot(&self.machine_path, &file)?;
        Ok(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, Membership), StorageError> {
        Ok((self.applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError>
    where
        I: IntoIterator<Item = Entry> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let mut ops = Vec::new();
        let mut proposals = Vec::new();
        let mut replies = Vec::new();
        for entry in entries {
            replies.push(());
            if self.applied.index() >= Some(entry.log_id.index) {
                continue;
            }
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    for p in batch.0 {
                        ops.extend(p.ops.iter().cloned());
                        proposals.push(p);
                    }
                }
                EntryPayload::Membership(m) => {
                    self.membership = Membership::new(Some(entry.log_id), m);
                }
            }
            self.applied = Some(entry.log_id);
        }
        ops.extend(self.marks()?);
        self.data.apply(&ops).map_err(|e| write_err(&e))?;
        for p in &proposals {
            self.link.applied(p);
        }
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Builder {
        // Dumped now, while nothing is applied, so the snapshot is exactly
        // the state at `applied`; fjall is fsynced first, since the log is
        // purged up to a snapshot.
        let meta = Meta {
            last_log_id: self.applied,
            last_membership: self.membership.clone(),
            snapshot_id: format!(
                "{}-{}",
                self.applied.map_or(0, |l| l.leader_id.term),
                self.applied.index().unwrap_or(0)
            ),
        };
        let file = match self.data.persist() {
            Ok(()) => self.dump(meta).ok(),
            Err(e) => {
                tracing::error!("fsyncing the store before a snapshot failed: {e}");
                None
            }
        };
        Builder {
            file,
            machine_path: self.snapshot_path.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &Meta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let file: SnapshotFile = postcard::from_bytes(&bytes).map_err(|e| read_err(&e))?;
        let mut ops = vec![
            Op::Clear(Space::Schedule),
            Op::Clear(Space::Members),
            Op::Clear(Space::Meta),
        ];
        ops.extend(
            file.entries
                .iter()
                .map(|(s, k, v)| Op::Put(*s, k.clone(), v.clone())),
        );
        self.applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        ops.extend(self.marks()?);
        self.data.apply(&ops).map_err(|e| write_err(&e))?;
        self.data.persist().map_err(|e| write_err(&e))?;
        save_snapshot(
            &self.snapshot_path,
            &SnapshotFile {
                meta: meta.clone(),
                entries: file.entries,
            },
        )?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let bytes = match std::fs::read(&self.snapshot_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(read_err(&e)),
        };
        let file: SnapshotFile = postcard::from_bytes(&bytes).map_err(|e| read_err(&e))?;
        Ok(Some(Snapshot {
            meta: file.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
