//! A hierarchical hashed timing wheel with 1 ms resolution.
//!
//! Eleven levels of 64 slots cover the whole `u64` millisecond range: level 0
//! holds deadlines within the current 64 ms window, level 1 within the current
//! 4 s window, and so on. A deadline lives at the level of the highest bit in
//! which it differs from the wheel's current time, so lower levels always
//! expire first and [`Wheel::next_deadline`] only looks at the lowest occupied
//! level: finding the next non-empty slot is a bitmap rotate and a
//! trailing-zeros count, which lets the engine sleep exactly until then
//! instead of ticking every millisecond.
//!
//! Entries live in one slab and are chained per slot in doubly linked lists
//! of slab indices, so insert and cancel are O(1) and an entry costs
//! 24 bytes plus its payload. When time reaches a slot of a higher level, its
//! entries cascade down to finer levels; at level 0 they fire.

const LEVELS: usize = 11;
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;
const NIL: u32 = u32::MAX;

/// Handle to a scheduled entry, used to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerKey(u32);

#[derive(Debug)]
struct Entry<T> {
    deadline: u64,
    prev: u32,
    next: u32,
    level: u8,
    payload: Option<T>,
}

/// The timing wheel. `T` is what fires (the engine uses a member handle).
#[derive(Debug)]
pub struct Wheel<T> {
    /// Time (ms) up to which the wheel has been advanced.
    elapsed: u64,
    occupied: [u64; LEVELS],
    heads: Vec<[u32; SLOTS]>,
    entries: Vec<Entry<T>>,
    free_head: u32,
    len: usize,
}

fn level_for(elapsed: u64, deadline: u64) -> usize {
    let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (level as u32 * SLOT_BITS)) & (SLOTS as u64 - 1)) as usize
}

impl<T> Wheel<T> {
    /// An empty wheel whose current time is `now` (ms).
    pub fn new(now: u64) -> Self {
        Wheel {
            elapsed: now,
            occupied: [0; LEVELS],
            heads: vec![[NIL; SLOTS]; LEVELS],
            entries: Vec::new(),
            free_head: NIL,
            len: 0,
        }
    }

    /// Number of scheduled entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The time the wheel has been advanced to.
    pub fn elapsed(&self) -> u64 {
        self.elapsed
    }

    /// Bytes held by the wheel's slab (for INFO).
    pub fn memory_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<Entry<T>>()
    }

    /// Schedules `payload` at `deadline` (ms). O(1).
    ///
    /// # Errors
    ///
    /// Gives the payload back if the deadline is not after the wheel's
    /// current time: it is already due and the caller handles it directly.
    pub fn insert(&mut self, deadline: u64, payload: T) -> Result<TimerKey, T> {
        if deadline <= self.elapsed {
            return Err(payload);
        }
        let idx = if self.free_head != NIL {
            let idx = self.free_head;
            let e = &mut self.entries[idx as usize];
            self.free_head = e.next;
            e.deadline = deadline;
            e.payload = Some(payload);
            idx
        } else {
            let idx = self.entries.len() as u32;
            assert!(idx != NIL, "timing wheel is full");
            self.entries.push(Entry {
                deadline,
                prev: NIL,
                next: NIL,
                level: 0,
                payload: Some(payload),
            });
            idx
        };
        self.link(idx);
        self.len += 1;
        Ok(TimerKey(idx))
    }

    /// Cancels an entry, returning its payload. O(1).
    ///
    /// Returns `None` if the key does not name a scheduled entry.
    pub fn remove(&mut self, key: TimerKey) -> Option<T> {
        let idx = key.0;
        self.entries.get(idx as usize)?.payload.as_ref()?;
        self.unlink(idx);
        self.len -= 1;
        self.release(idx)
    }

    /// The deadline of an entry.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        let e = self.entries.get(key.0 as usize)?;
        e.payload.as_ref().map(|_| e.deadline)
    }

    /// The earliest time at which [`Wheel::advance`] may have work: the start
    /// of the next occupied slot. It is never later than the earliest
    /// deadline; for a coarse slot it may be earlier (the entries then
    /// cascade to a finer level and a later time is reported).
    pub fn next_deadline(&self) -> Option<u64> {
        self.next_expiration().map(|(_, _, at)| at)
    }

    fn next_expiration(&self) -> Option<(usize, usize, u64)> {
        let level = self.occupied.iter().position(|&o| o != 0)?;
        let shift = level as u32 * SLOT_BITS;
        let units = self.elapsed >> shift;
        let current = (units & (SLOTS as u64 - 1)) as u32;
        let distance = self.occupied[level].rotate_right(current).trailing_zeros();
        let slot = ((current + distance) as usize) & (SLOTS - 1);
        let at = ((u128::from(units) + u128::from(distance)) << shift).min(u128::from(u64::MAX));
        Some((level, slot, at as u64))
    }

    /// Advances the wheel to `now`, pushing every entry whose deadline is at
    /// or before `now` into `fired` as `(deadline, payload)`.
    pub fn advance(&mut self, now: u64, fired: &mut Vec<(u64, T)>) {
        while let Some((level, slot, at)) = self.next_expiration() {
            if at > now {
                break;
            }
            self.elapsed = self.elapsed.max(at);
            let mut idx = std::mem::replace(&mut self.heads[level][slot], NIL);
            self.occupied[level] &= !(1u64 << slot);
            while idx != NIL {
                let next = self.entries[idx as usize].next;
                let deadline = self.entries[idx as usize].deadline;
                if deadline <= self.elapsed {
                    self.len -= 1;
                    if let Some(p) = self.release(idx) {
                        fired.push((deadline, p));
                    }
                } else {
                    // Cascade to the finer level that now fits the deadline.
                    self.link(idx);
                }
                idx = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    fn link(&mut self, idx: u32) {
        let deadline = self.entries[idx as usize].deadline;
        let level = level_for(self.elapsed, deadline);
        let slot = slot_for(deadline, level);
        let head = self.heads[level][slot];
        {
            let e = &mut self.entries[idx as usize];
            e.level = level as u8;
            e.prev = NIL;
            e.next = head;
        }
        if head != NIL {
            self.entries[head as usize].prev = idx;
        }
        self.heads[level][slot] = idx;
        self.occupied[level] |= 1u64 << slot;
    }

    fn unlink(&mut self, idx: u32) {
        let (prev, next, level, deadline) = {
            let e = &self.entries[idx as usize];
            (e.prev, e.next, e.level as usize, e.deadline)
        };
        let slot = slot_for(deadline, level);
        if prev != NIL {
            self.entries[prev as usize].next = next;
        } else {
            self.heads[level][slot] = next;
            if next == NIL {
                self.occupied[level] &= !(1u64 << slot);
            }
        }
        if next != NIL {
            self.entries[next as usize].prev = prev;
        }
    }

    fn release(&mut self, idx: u32) -> Option<T> {
        let e = &mut self.entries[idx as usize];
        let payload = e.payload.take();
        e.prev = NIL;
        e.next = self.free_head;
        self.free_head = idx;
        payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(w: &mut Wheel<u32>, now: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        w.advance(now, &mut out);
        out.sort();
        out
    }

    #[test]
    fn fires_at_deadline_never_before() {
        let mut w = Wheel::new(1000);
        w.insert(1005, 1).unwrap();
        w.insert(1005, 2).unwrap();
        w.insert(1070, 3).unwrap();
        assert!(drain(&mut w, 1004).is_empty());
        assert_eq!(drain(&mut w, 1005), vec![(1005, 1), (1005, 2)]);
        assert!(drain(&mut w, 1069).is_empty());
        assert_eq!(drain(&mut w, 1070), vec![(1070, 3)]);
        assert!(w.is_empty());
    }

    #[test]
    fn past_deadline_is_refused() {
        let mut w = Wheel::new(50);
        assert_eq!(w.insert(50, 7), Err(7));
        assert_eq!(w.insert(10, 8), Err(8));
    }

    #[test]
    fn next_deadline_reaches_far_levels() {
        let mut w = Wheel::new(0);
        let far = 3 * 365 * 24 * 3600 * 1000u64; // three years
        w.insert(far, 1).unwrap();
        // Walk the wheel as the engine does: jump to each next deadline.
        let mut hops = 0;
        let mut fired = Vec::new();
        while fired.is_empty() {
            let at = w.next_deadline().unwrap();
            assert!(at <= far);
            w.advance(at, &mut fired);
            hops += 1;
            assert!(hops < 100, "cascade must take few hops");
        }
        assert_eq!(fired, vec![(far, 1)]);
    }

    #[test]
    fn cancel_is_exact() {
        let mut w = Wheel::new(0);
        let a = w.insert(10, 1).unwrap();
        let b = w.insert(10, 2).unwrap();
        let c = w.insert(10, 3).unwrap();
        assert_eq!(w.remove(b), Some(2));
        assert_eq!(w.remove(b), None);
        assert_eq!(w.len(), 2);
        assert_eq!(drain(&mut w, 10), vec![(10, 1), (10, 3)]);
        assert_eq!(w.remove(a), None);
        assert_eq!(w.remove(c), None);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn matches_a_sorted_model_on_random_input() {
        // A small deterministic LCG keeps the test reproducible without a dependency.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let mut w = Wheel::new(0);
        let mut model: std::collections::BTreeSet<(u64, u32)> = Default::default();
        let mut keys = Vec::new();
        let mut now = 0u64;
        for i in 0..20_000u32 {
            match rnd() % 4 {
                0 | 1 => {
                    let d = now + 1 + rnd() % 200_000;
                    keys.push((w.insert(d, i).unwrap(), d, i));
                    model.insert((d, i));
                }
                2 if !keys.is_empty() => {
                    let (k, d, p) = keys.swap_remove((rnd() as usize) % keys.len());
                    if model.remove(&(d, p)) {
                        assert_eq!(w.remove(k), Some(p));
                    }
                }
                _ => {
                    now += rnd() % 3000;
                    let got = drain(&mut w, now);
                    let rest = model.split_off(&(now + 1, 0));
                    let want: Vec<_> = std::mem::replace(&mut model, rest).into_iter().collect();
                    assert_eq!(got, want);
                    if let Some(next) = w.next_deadline() {
                        assert!(next <= model.first().unwrap().0);
                    }
                    keys.retain(|(_, d, _)| *d > now);
                }
            }
        }
        assert_eq!(w.len(), model.len());
    }
}
