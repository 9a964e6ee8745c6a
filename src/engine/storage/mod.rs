//! The seam between the engine and what stores its state.
//!
//! The engine never calls a storage library directly: [`Store`](super::store)
//! lays queues out as keys and values and speaks to a [`Storage`], which
//! knows three ordered key spaces and applies numbered batches of
//! mutations. A [`Batch`] is delayd's own data (not calls into a library),
//! so the same unit can be made durable, applied, and — for a replicated
//! log — shipped elsewhere.
//!
//! Durability is explicit and separate from applying: [`Storage::apply`]
//! makes a batch visible to reads; the [`Journal`] makes what was applied
//! survive a crash of the process ([`Journal::write`]) or of the machine
//! ([`Journal::sync`]).
//!
//! Two implementations: [`logged`] (the real one: delayd's own log, with
//! [`fjall`] applied behind it) and, for tests, [`memory`], which can
//! simulate a crash that keeps only what was made durable.

pub(crate) mod fjall;
pub(crate) mod logged;
#[cfg(test)]
pub(crate) mod memory;
pub(crate) mod overlay;
pub(crate) mod replicated;
pub(crate) mod wal;

use std::sync::Arc;

use crate::Result;

/// Replaces the file at `path` with `bytes` all at once (a temporary file,
/// fsynced, renamed over it, and the directory fsynced): a crash leaves
/// the old file or the new one.
///
/// # Errors
///
/// Any step failed.
pub(crate) fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&tmp, bytes)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The key spaces of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub(crate) enum Space {
    /// Each queue's time index, and the queue records.
    Schedule,
    /// Point lookups of members beyond the in-memory horizon.
    Members,
    /// Counters and settings: the sequence reservation, the horizon.
    Meta,
}

impl Space {
    /// This space's position in arrays indexed by space.
    pub(crate) fn index(self) -> usize {
        match self {
            Space::Schedule => 0,
            Space::Members => 1,
            Space::Meta => 2,
        }
    }
}

/// One mutation of the store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Op {
    /// Sets `key` to `value`.
    Put(Space, Vec<u8>, Vec<u8>),
    /// Removes `key`.
    Delete(Space, Vec<u8>),
    /// Removes every key of the space.
    Clear(Space),
}

/// The mutations of one round of commands, numbered: batch `lsn` is
/// applied after every batch before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Batch {
    /// The batch's number (log sequence number), from 1.
    pub lsn: u64,
    pub ops: Vec<Op>,
}

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// Entries of a scan, in key order.
pub(crate) type Scan<'a> = Box<dyn Iterator<Item = Result<Entry>> + 'a>;

/// What the engine needs of storage.
pub(crate) trait Storage: Send {
    /// The value of `key`, if any.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Entries with `from <= key`, and `key < to` when `to` is given, in
    /// key order (descending with `reverse`).
    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>, reverse: bool) -> Scan<'_>;

    /// Applies a batch atomically (all of its operations or, after a crash
    /// before the batch was made durable, none).
    ///
    /// # Errors
    ///
    /// A storage error: the batch may be lost and must not be acknowledged.
    fn apply(&mut self, batch: Batch) -> Result<()>;

    /// The handle that makes applied batches durable.
    fn journal(&self) -> Arc<dyn Journal>;

    /// Writes in-memory tables to disk so that a restart has little to
    /// replay (clean shutdown).
    ///
    /// # Errors
    ///
    /// A storage error.
    fn flush(&self) -> Result<()>;

    /// Bytes taken on disk.
    fn disk_space(&self) -> u64;
}

/// Makes applied batches durable; shared with the writer thread.
pub(crate) trait Journal: Send + Sync {
    /// Hands everything applied so far to the OS: it survives a crash of
    /// the process, not of the machine.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn write(&self) -> Result<()>;

    /// Makes everything applied so far durable on disk (`fdatasync`).
    ///
    /// # Errors
    ///
    /// A storage error: the batches may not be durable.
    fn sync(&self) -> Result<()>;

    /// Gets ready for the next [`Journal::sync`] ahead of time, so that it
    /// needs no new file descriptor (the writer calls it at start-up and
    /// when idle). A failure is met again, and handled, by that sync.
    fn follow(&self) {}

    /// Where a replicated store (cluster mode) publishes which of this
    /// node's batches its group committed; `None` on a single node, whose
    /// batches are durable once written or fsynced here.
    fn committed(&self) -> Option<replicated::Commits> {
        None
    }
}

/// The first key after every key that starts with `prefix`, if any.
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix_range() {
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[1, 0xFF]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
    }
}
