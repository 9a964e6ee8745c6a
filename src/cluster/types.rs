//! The Raft types of a delayd group (openraft's type configuration).

use std::io::Cursor;

use crate::engine::storage::replicated::Proposal;

/// One log entry: the rounds of every client that arrived while the
/// previous entries were being committed (group commit across the
/// network: one entry, one fsync and one replication message for all).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Proposals(pub Vec<Proposal>);

openraft::declare_raft_types!(
    /// A group's log carries [`Proposals`] (engine rounds); nodes
    /// are named by number and reached at their cluster-bus address.
    pub(crate) TypeConfig:
        D = Proposals,
        R = (),
        NodeId = u64,
        Node = openraft::BasicNode,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type LogId = openraft::LogId<u64>;
pub(crate) type StorageError = openraft::StorageError<u64>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;

/// A storage error for openraft, keeping its cause.
pub(crate) fn storage_error(
    make: fn(openraft::AnyError) -> openraft::StorageIOError<u64>,
    e: &(impl std::error::Error + 'static),
) -> StorageError {
    StorageError::IO {
        source: make(openraft::AnyError::new(e)),
    }
}
