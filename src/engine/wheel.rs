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
//! Entries are chained per slot in doubly linked lists of `u32` ids, so
//! insert and cancel are O(1). The links (9 bytes) live inside the entries
//! themselves ([`Entries`]): the engine keeps them in its member records, so
//! a scheduled member costs the wheel no separate allocation. When time
//! reaches a slot of a higher level, its entries cascade down to finer
//! levels; at level 0 they fire. [`Wheel`] wraps the same wheel with its own
//! storage, for tests and benchmarks.

const LEVELS: usize = 11;
const SLOTS: usize = 64;
const SLOT_BITS: u32 = 6;

/// "No entry" in links and slot heads.
pub const NIL: u32 = u32::MAX;

/// The wheel's links inside an entry: 9 bytes, stored by the owner of the
/// entries (intrusively) so the wheel itself holds no per-entry memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    pub prev: u32,
    pub next: u32,
    pub level: u8,
}

impl Default for Link {
    fn default() -> Self {
        Link {
            prev: NIL,
            next: NIL,
            level: 0,
        }
    }
}

/// Storage of the entries a [`TimerWheel`] schedules, addressed by `u32` id.
pub trait Entries {
    /// The entry's deadline (ms); must not change while it is scheduled.
    fn deadline(&self, id: u32) -> u64;
    /// The entry's links.
    fn link(&self, id: u32) -> Link;
    /// Sets the entry's links.
    fn set_link(&mut self, id: u32, link: Link);
}

fn level_for(elapsed: u64, deadline: u64) -> usize {
    let masked = (elapsed ^ deadline) | (SLOTS as u64 - 1);
    let significant = 63 - masked.leading_zeros();
    (significant / SLOT_BITS) as usize
}

fn slot_for(deadline: u64, level: usize) -> usize {
    ((deadline >> (level as u32 * SLOT_BITS)) & (SLOTS as u64 - 1)) as usize
}

/// The timing wheel over entries stored elsewhere (see [`Entries`]).
#[derive(Debug)]
pub struct TimerWheel {
    /// Time (ms) up to which the wheel has been advanced.
    elapsed: u64,
    occupied: [u64; LEVELS],
    heads: [[u32; SLOTS]; LEVELS],
    len: usize,
}

impl TimerWheel {
    /// An empty wheel whose current time is `now` (ms).
    pub fn new(now: u64) -> Self {
        TimerWheel {
            elapsed: now,
            occupied: [0; LEVELS],
            heads: [[NIL; SLOTS]; LEVELS],
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

    /// Schedules entry `id` at its deadline. O(1). Returns false (and
    /// schedules nothing) if the deadline is not after the wheel's current
    /// time: the entry is already due and the caller handles it directly.
    pub fn insert(&mut self, e: &mut impl Entries, id: u32) -> bool {
        if e.deadline(id) <= self.elapsed {
            return false;
        }
        self.link_in(e, id);
        self.len += 1;
        true
    }

    /// Cancels a scheduled entry. O(1).
    pub fn remove(&mut self, e: &mut impl Entries, id: u32) {
        let link = e.link(id);
        let slot = slot_for(e.deadline(id), link.level as usize);
        let level = link.level as usize;
        if link.prev != NIL {
            let mut p = e.link(link.prev);
            p.next = link.next;
            e.set_link(link.prev, p);
        } else {
            self.heads[level][slot] = link.next;
            if link.next == NIL {
                self.occupied[level] &= !(1u64 << slot);
            }
        }
        if link.next != NIL {
            let mut n = e.link(link.next);
            n.prev = link.prev;
            e.set_link(link.next, n);
        }
        e.set_link(id, Link::default());
        self.len -= 1;
    }

    /// The earliest time at which [`TimerWheel::advance`] may have work:
    /// the start of the next occupied slot. It is never later than the
    /// earliest deadline; for a coarse slot it may be earlier (the entries
    /// then cascade to a finer level and a later time is reported).
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

    /// Advances the wheel to `now`, pushing the id of every entry whose
    /// deadline is at or before `now` into `fired` (they are unscheduled).
    pub fn advance(&mut self, e: &mut impl Entries, now: u64, fired: &mut Vec<u32>) {
        while let Some((level, slot, at)) = self.next_expiration() {
            if at > now {
                break;
            }
            self.elapsed = self.elapsed.max(at);
            let mut id = std::mem::replace(&mut self.heads[level][slot], NIL);
            self.occupied[level] &= !(1u64 << slot);
            while id != NIL {
                let next = e.link(id).next;
                if e.deadline(id) <= self.elapsed {
                    e.set_link(id, Link::default());
                    self.len -= 1;
                    fired.push(id);
                } else {
                    // Cascade to the finer level that now fits the deadline.
                    self.link_in(e, id);
                }
                id = next;
            }
        }
        self.elapsed = self.elapsed.max(now);
    }

    fn link_in(&mut self, e: &mut impl Entries, id: u32) {
        let deadline = e.deadline(id);
        let level = level_for(self.elapsed, deadline);
        let slot = slot_for(deadline, level);
        let head = self.heads[level][slot];
        e.set_link(
            id,
            Link {
                prev: NIL,
                next: head,
                level: level as u8,
            },
        );
        if head != NIL {
            let mut h = e.link(head);
            h.prev = id;
            e.set_link(head, h);
        }
        self.heads[level][slot] = id;
        self.occupied[level] |= 1u64 << slot;
    }
}

/// Handle to an entry of a [`Wheel`], used to cancel it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerKey(u32);

/// A self-contained wheel that stores its own entries and payloads: the
/// [`TimerWheel`] over a slab. The engine keeps its links inside its member
/// records instead; this form serves tests and benchmarks.
#[derive(Debug)]
pub struct Wheel<T> {
    timers: TimerWheel,
    slab: Slab<T>,
}

#[derive(Debug)]
struct Slab<T> {
    deadlines: Vec<u64>,
    links: Vec<Link>,
    payloads: Vec<Option<T>>,
    free: Vec<u32>,
}

impl<T> Entries for Slab<T> {
    fn deadline(&self, id: u32) -> u64 {
        self.deadlines[id as usize]
    }
    fn link(&self, id: u32) -> Link {
        self.links[id as usize]
    }
    fn set_link(&mut self, id: u32, link: Link) {
        self.links[id as usize] = link;
    }
}

impl<T> Wheel<T> {
    /// An empty wheel whose current time is `now` (ms).
    pub fn new(now: u64) -> Self {
        Wheel {
            timers: TimerWheel::new(now),
            slab: Slab {
                deadlines: Vec::new(),
                links: Vec::new(),
                payloads: Vec::new(),
                free: Vec::new(),
            },
        }
    }

    /// Number of scheduled entries.
    pub fn len(&self) -> usize {
        self.timers.len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.timers.is_empty()
    }

    /// The time the wheel has been advanced to.
    pub fn elapsed(&self) -> u64 {
        self.timers.elapsed()
    }

    /// Schedules `payload` at `deadline` (ms). O(1).
    ///
    /// # Errors
    ///
    /// Gives the payload back if the deadline is not after the wheel's
    /// current time.
    ///
    /// # Panics
    ///
    /// With 2^32 - 1 entries already in the wheel (the ids are 32-bit; the
    /// engine holds far fewer members in memory).
    #[expect(clippy::expect_used, reason = "32-bit ids, see # Panics")]
    pub fn insert(&mut self, deadline: u64, payload: T) -> Result<TimerKey, T> {
        if deadline <= self.timers.elapsed() {
            return Err(payload);
        }
        let id = match self.slab.free.pop() {
            Some(id) => {
                self.slab.deadlines[id as usize] = deadline;
                self.slab.payloads[id as usize] = Some(payload);
                id
            }
            None => {
                let id = u32::try_from(self.slab.deadlines.len())
                    .ok()
                    .filter(|&id| id != NIL)
                    .expect("fewer than 2^32 - 1 timers");
                self.slab.deadlines.push(deadline);
                self.slab.links.push(Link::default());
                self.slab.payloads.push(Some(payload));
                id
            }
        };
        self.timers.insert(&mut self.slab, id);
        Ok(TimerKey(id))
    }

    /// Cancels an entry, returning its payload. O(1).
    pub fn remove(&mut self, key: TimerKey) -> Option<T> {
        self.slab.payloads.get(key.0 as usize)?.as_ref()?;
        self.timers.remove(&mut self.slab, key.0);
        self.slab.free.push(key.0);
        self.slab.payloads[key.0 as usize].take()
    }

    /// The deadline of a scheduled entry.
    pub fn deadline(&self, key: TimerKey) -> Option<u64> {
        self.slab.payloads.get(key.0 as usize)?.as_ref()?;
        Some(self.slab.deadlines[key.0 as usize])
    }

    /// See [`TimerWheel::next_deadline`].
    pub fn next_deadline(&self) -> Option<u64> {
        self.timers.next_deadline()
    }

    /// Advances to `now`, pushing `(deadline, payload)` of every entry due.
    pub fn advance(&mut self, now: u64, fired: &mut Vec<(u64, T)>) {
        let mut ids = Vec::new();
        self.timers.advance(&mut self.slab, now, &mut ids);
        for id in ids {
            self.slab.free.push(id);
            if let Some(p) = self.slab.payloads[id as usize].take() {
                fired.push((self.slab.deadlines[id as usize], p));
            }
        }
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
