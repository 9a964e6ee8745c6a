//! Writes not yet in the store underneath, by space and key, and the reads
//! that see them first.
//!
//! Two storages keep batches somewhere before their store has them: the
//! [`logged`](super::logged) storage while its applier thread is behind the
//! log, and a replicated group's leader while its batches wait for the
//! group to commit them. Both read through an [`Overlay`]: a write is in
//! the overlay until its batch is in the store, and only removed from it if
//! no later batch wrote the same key, so a read that looks at the overlay
//! first and at the store after (a scan takes its part of the overlay
//! before opening the store's iterator) always finds the newest write.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::wal::lock;
use super::{Entry, Op, Result, Scan, Space};

/// A write not yet in the store: the number of the batch that made it
/// last, and the value (`None`: a delete).
type Unapplied = (u64, Option<Vec<u8>>);

/// An overlay entry as a scan yields it: key and value (`None`: deleted).
type Written = (Vec<u8>, Option<Vec<u8>>);

/// Writes of batches not yet in the store, by space and key.
#[derive(Default)]
pub(crate) struct Overlay {
    spaces: [BTreeMap<Vec<u8>, Unapplied>; 3],
    /// A `Clear` not yet applied, by its batch number: the store's entries
    /// of the space are hidden until it is.
    cleared: [Option<u64>; 3],
}

impl Overlay {
    /// Keys held.
    pub(crate) fn len(&self) -> usize {
        self.spaces.iter().map(BTreeMap::len).sum()
    }

    /// Records what batch `seq` writes.
    pub(crate) fn insert(&mut self, seq: u64, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Put(s, k, v) => {
                    self.spaces[s.index()].insert(k.clone(), (seq, Some(v.clone())));
                }
                Op::Delete(s, k) => {
                    self.spaces[s.index()].insert(k.clone(), (seq, None));
                }
                Op::Clear(s) => {
                    self.spaces[s.index()].clear();
                    self.cleared[s.index()] = Some(seq);
                }
            }
        }
    }

    /// Forgets what batch `seq` wrote, now that the store has it.
    pub(crate) fn retire(&mut self, seq: u64, ops: &[Op]) {
        for op in ops {
            match op {
                Op::Put(s, k, _) | Op::Delete(s, k) => {
                    let space = &mut self.spaces[s.index()];
                    if space.get(k).is_some_and(|(w, _)| *w == seq) {
                        space.remove(k);
                    }
                }
                Op::Clear(s) => {
                    if self.cleared[s.index()] == Some(seq) {
                        self.cleared[s.index()] = None;
                    }
                }
            }
        }
    }

    /// The value of `key`: the overlay's if it has one, else `stored()`.
    ///
    /// # Errors
    ///
    /// `stored`'s error.
    pub(crate) fn get_over(
        overlay: &Mutex<Overlay>,
        space: Space,
        key: &[u8],
        stored: impl FnOnce() -> Result<Option<Vec<u8>>>,
    ) -> Result<Option<Vec<u8>>> {
        {
            let o = lock(overlay);
            if let Some((_, v)) = o.spaces[space.index()].get(key) {
                return Ok(v.clone());
            }
            if o.cleared[space.index()].is_some() {
                return Ok(None);
            }
        }
        stored()
    }

    /// A scan of the store (`stored()`, opened after the overlay's part is
    /// taken) with the overlay's entries merged in.
    pub(crate) fn scan_over<'a>(
        overlay: &Mutex<Overlay>,
        space: Space,
        from: &[u8],
        to: Option<&[u8]>,
        reverse: bool,
        stored: impl FnOnce() -> Scan<'a>,
    ) -> Scan<'a> {
        let (mut part, cleared) = {
            let o = lock(overlay);
            let map = &o.spaces[space.index()];
            let range: Vec<Written> = match to {
                Some(to) if to <= from => Vec::new(),
                Some(to) => map
                    .range::<[u8], _>((
                        std::ops::Bound::Included(from),
                        std::ops::Bound::Excluded(to),
                    ))
                    .map(|(k, (_, v))| (k.clone(), v.clone()))
                    .collect(),
                None => map
                    .range::<[u8], _>((std::ops::Bound::Included(from), std::ops::Bound::Unbounded))
                    .map(|(k, (_, v))| (k.clone(), v.clone()))
                    .collect(),
            };
            (range, o.cleared[space.index()].is_some())
        };
        if reverse {
            part.reverse();
        }
        let inner: Scan<'a> = if cleared {
            Box::new(std::iter::empty())
        } else {
            stored()
        };
        Box::new(Merged {
            overlay: part.into_iter().peekable(),
            inner: inner.peekable(),
            reverse,
        })
    }
}

/// A scan of fjall with the overlay's entries merged in, the overlay
/// winning, its deletes hiding.
struct Merged<'a> {
    overlay: std::iter::Peekable<std::vec::IntoIter<Written>>,
    inner: std::iter::Peekable<Scan<'a>>,
    reverse: bool,
}

impl Iterator for Merged<'_> {
    type Item = Result<Entry>;

    fn next(&mut self) -> Option<Result<Entry>> {
        loop {
            let inner_key = match self.inner.peek() {
                Some(Ok((k, _))) => Some(k.as_slice()),
                Some(Err(_)) => return self.inner.next(),
                None => None,
            };
            let take_overlay = match (self.overlay.peek(), inner_key) {
                (None, None) => return None,
                (None, Some(_)) => false,
                (Some(_), None) => true,
                (Some((ok, _)), Some(ik)) => {
                    let ord = ok.as_slice().cmp(ik);
                    let ord = if self.reverse { ord.reverse() } else { ord };
                    if ord == std::cmp::Ordering::Equal {
                        // The overlay's write is the newer one.
                        self.inner.next();
                    }
                    ord != std::cmp::Ordering::Greater
                }
            };
            if !take_overlay {
                return self.inner.next();
            }
            if let Some((k, Some(v))) = self.overlay.next() {
                return Some(Ok((k, v)));
            }
        }
    }
}
