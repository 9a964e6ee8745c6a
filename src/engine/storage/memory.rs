//! [`Storage`] in memory, for tests: it remembers which batches were
//! written to the OS and which were synced, so a test can simulate a crash
//! of the process (keeping what was written) or a power loss (keeping what
//! was synced) and reopen.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Batch, Journal, Op, Scan, Space, Storage};
use crate::Result;

type Maps = [BTreeMap<Vec<u8>, Vec<u8>>; 3];

#[derive(Default)]
struct State {
    /// What reads see: every batch applied.
    live: Maps,
    /// What a crash of the process keeps.
    written: Maps,
    /// What a power loss keeps.
    synced: Maps,
    /// Applied, not yet written.
    unwritten: Vec<Batch>,
    /// Written, not yet synced.
    unsynced: Vec<Batch>,
}

fn apply_to(maps: &mut Maps, batch: &Batch) {
    for op in &batch.ops {
        match op {
            Op::Put(s, k, v) => {
                maps[s.index()].insert(k.clone(), v.clone());
            }
            Op::Delete(s, k) => {
                maps[s.index()].remove(k);
            }
            Op::Clear(s) => maps[s.index()].clear(),
        }
    }
}

/// The in-memory store; clones share it, so a test can keep a handle to
/// simulate a crash of the store it handed to the engine.
#[derive(Default, Clone)]
pub(crate) struct MemStorage(Arc<Mutex<State>>);

impl MemStorage {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new handle to the same store (what `Box<dyn Storage>` takes).
    pub(crate) fn clone_handle(&self) -> MemStorage {
        self.clone()
    }

    /// The store as a restart after a crash of the process finds it: what
    /// was written to the OS. What was not yet synced still is not (the OS
    /// holds it in its page cache): a power loss after the restart loses it.
    pub(crate) fn after_crash(&self) -> MemStorage {
        let state = self.state();
        MemStorage(Arc::new(Mutex::new(State {
            live: state.written.clone(),
            written: state.written.clone(),
            synced: state.synced.clone(),
            unwritten: Vec::new(),
            unsynced: state.unsynced.clone(),
        })))
    }

    /// The store as a restart after a power loss finds it: what was synced.
    pub(crate) fn after_power_loss(&self) -> MemStorage {
        Self::reopen(self.state().synced.clone())
    }

    fn reopen(maps: Maps) -> MemStorage {
        MemStorage(Arc::new(Mutex::new(State {
            live: maps.clone(),
            written: maps.clone(),
            synced: maps,
            ..State::default()
        })))
    }
}

impl Storage for MemStorage {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.state().live[space.index()].get(key).cloned())
    }

    fn scan(&self, space: Space, from: &[u8], to: Option<&[u8]>, reverse: bool) -> Scan<'_> {
        let state = self.state();
        let mut entries: Vec<_> = state.live[space.index()]
            .range(from.to_vec()..)
            .take_while(|(k, _)| to.is_none_or(|e| k.as_slice() < e))
            .map(|(k, v)| Ok((k.clone(), v.clone())))
            .collect();
        if reverse {
            entries.reverse();
        }
        Box::new(entries.into_iter())
    }

    fn apply(&mut self, batch: Batch) -> Result<()> {
        let mut state = self.state();
        apply_to(&mut state.live, &batch);
        state.unwritten.push(batch);
        Ok(())
    }

    fn journal(&self) -> Arc<dyn Journal> {
        Arc::new(self.clone())
    }

    fn flush(&self) -> Result<()> {
        Ok(())
    }

    fn disk_space(&self) -> u64 {
        0
    }
}

impl Journal for MemStorage {
    fn write(&self) -> Result<()> {
        let mut state = self.state();
        let batches = std::mem::take(&mut state.unwritten);
        for b in &batches {
            apply_to(&mut state.written, b);
        }
        state.unsynced.extend(batches);
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.write()?;
        let mut state = self.state();
        let batches = std::mem::take(&mut state.unsynced);
        for b in &batches {
            apply_to(&mut state.synced, b);
        }
        Ok(())
    }
}
