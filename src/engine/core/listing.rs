//! Listing queues a page at a time, for the console and the HTTP API: a
//! server with a million queues answers one page, never all of them, and
//! never holds the engine for long to do it.
//!
//! A listing ([`QueueLister`]) walks the name-ordered index (`Core::names`)
//! in *steps*: a step visits at most a given number of names and runs for
//! at most [`STEP_TIME`], and the caller runs each step as an engine round
//! of its own, so other clients' commands run between two steps (the engine
//! is one lock, and with the default single I/O thread, one thread). What a
//! listing walks:
//! - `sort=name` without a glob: only `offset + limit + 1` names, from the
//!   start or from the cursor (`after`); the total is the index's size;
//! - `sort=name` with a glob: every name with the glob's literal prefix
//!   (`orders:*` walks only `orders:…`; `*x` walks all), to count the total;
//! - the count sorts: the same names, keeping the best `offset + limit`.
//!
//! Why steps rather than a snapshot taken under the lock: a snapshot copies
//! every name (a reference count and ~40 bytes each) in one hold, ~30–50 ms
//! at a million queues and that much memory per concurrent request; a step
//! holds the engine for at most about half a millisecond and the listing
//! keeps only its page. The price: each step resumes past the last name it
//! saw, so a queue created behind the walk or deleted after it passed is
//! missed or counted, and a count read in one step may have changed by the
//! last: a page may be slightly inconsistent. The rows' figures are read in
//! the last step, and a row whose queue was deleted meanwhile is left out.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::ops::Bound;
use std::time::{Duration, Instant};

use crate::engine::storage::prefix_end;

use super::*;

/// The most names one step visits when the caller sets no smaller budget:
/// a few hundred microseconds of glob matching or count reading.
pub(crate) const STEP_VISITS: usize = 16_384;
/// The longest one step runs (checked every [`CLOCK_EVERY`] names), so that
/// slow visits (long names, long globs) still give the engine back soon.
pub(crate) const STEP_TIME: Duration = Duration::from_micros(500);
/// Names visited between two reads of the clock.
const CLOCK_EVERY: usize = 256;

/// What a queue list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueSort {
    Name,
    Pending,
    Ready,
    Leased,
    DeadLettered,
    /// How long the oldest ready member has waited.
    OldestReadyAge,
}

/// One page of queues: how many matched in all, the page's queues with
/// their DELAYINFO figures, and (sorted by name) the cursor of the next
/// page: the name to list after, if there are more.
#[derive(Debug, Clone, Default)]
pub struct QueuePage {
    pub total: u64,
    pub rows: Vec<(Bytes, QueueInfo)>,
    pub next: Option<Bytes>,
}

/// The literal prefix of every name `pattern` (a glob as KEYS takes it)
/// matches: its bytes up to the first `*`, `?` or `[` (a `\` escapes the
/// byte after it, as the matcher reads it).
fn literal_prefix(pattern: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            b'*' | b'?' | b'[' => break,
            b'\\' if i + 1 < pattern.len() => {
                out.push(pattern[i + 1]);
                i += 2;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Whether `(lo, hi)` is a range `BTreeMap::range` takes (it panics on a
/// start after the end, or on equal bounds both excluded).
fn well_formed(lo: Bound<&[u8]>, hi: Bound<&[u8]>) -> bool {
    match (lo, hi) {
        (Bound::Included(a), Bound::Included(b)) => a <= b,
        (Bound::Included(a) | Bound::Excluded(a), Bound::Included(b) | Bound::Excluded(b)) => a < b,
        _ => true,
    }
}

/// The order of a page: by key then name, all reversed when descending.
fn page_order(a: (u64, &[u8]), b: (u64, &[u8]), desc: bool) -> Ordering {
    let ord = a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1));
    if desc { ord.reverse() } else { ord }
}

/// A queue kept for a page sorted by a count: ordered as the page is, so a
/// max-heap of them has the worst kept at its top.
#[derive(Debug)]
struct Ranked {
    key: u64,
    name: Bytes,
    desc: bool,
}

impl Ord for Ranked {
    fn cmp(&self, other: &Ranked) -> Ordering {
        page_order((self.key, &self.name), (other.key, &other.name), self.desc)
    }
}

impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Ranked) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked {
    fn eq(&self, other: &Ranked) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked {}

/// A listing in progress: what it looks for, and how far it got. It holds
/// no reference into the engine, so it lives outside the lock between
/// steps.
#[derive(Debug)]
pub(crate) struct QueueLister {
    pattern: Option<Bytes>,
    sort: QueueSort,
    desc: bool,
    offset: usize,
    limit: usize,
    /// Sorted by name: list the names after this one (in the page's order).
    after: Option<Bytes>,
    /// The names the walk covers, in ascending name order.
    lo: Bound<Bytes>,
    hi: Bound<Bytes>,
    /// The last name visited: the next step resumes past it.
    resume: Option<Bytes>,
    /// The engine's time at the first step: every age is taken against
    /// it, so ages read in different steps compare.
    now: Option<u64>,
    /// Names that matched the glob so far (the total, with a glob).
    matched: u64,
    /// Sorted by name: matching names past the cursor skipped for `offset`.
    skipped: usize,
    /// Sorted by name: the page's names so far, and one more (which tells
    /// that there is a next page).
    picked: Vec<Bytes>,
    /// Sorted by a count: the best `offset + limit` so far.
    best: BinaryHeap<Ranked>,
    page: Option<QueuePage>,
    /// Names visited in all (for the tests of what a listing walks).
    #[cfg(test)]
    visited: usize,
}

impl QueueLister {
    /// A listing of the queues whose names match `pattern` (a glob as KEYS
    /// takes it; `None`: all), sorted by `sort` (ties by name; `desc`
    /// reverses both), skipping `offset` and taking at most `limit` (at
    /// least 1). Sorted by name, `after` starts the page after that name
    /// (in the page's order; `offset` then counts from there); the other
    /// sorts ignore it.
    pub(crate) fn new(
        pattern: Option<&[u8]>,
        sort: QueueSort,
        desc: bool,
        offset: usize,
        limit: usize,
        after: Option<Bytes>,
    ) -> QueueLister {
        let after = after.filter(|_| sort == QueueSort::Name);
        let prefix = pattern.map(literal_prefix).unwrap_or_default();
        let (mut lo, mut hi) = (Bound::Unbounded, Bound::Unbounded);
        if !prefix.is_empty() {
            lo = Bound::Included(Bytes::from(prefix.clone()));
        }
        if let Some(end) = prefix_end(&prefix) {
            hi = Bound::Excluded(Bytes::from(end));
        }
        // Without a glob nothing before the cursor counts: the total is the
        // index's size. With one, the walk counts the names before it too.
        if pattern.is_none()
            && let Some(a) = &after
        {
            if desc {
                hi = Bound::Excluded(a.clone());
            } else {
                lo = Bound::Excluded(a.clone());
            }
        }
        QueueLister {
            pattern: pattern.map(Bytes::copy_from_slice),
            sort,
            desc,
            offset,
            limit: limit.max(1),
            after,
            lo,
            hi,
            resume: None,
            now: None,
            matched: 0,
            skipped: 0,
            picked: Vec::new(),
            best: BinaryHeap::new(),
            page: None,
            #[cfg(test)]
            visited: 0,
        }
    }

    /// Runs one step: visits at most `max_visits` names (at least one) for
    /// at most [`STEP_TIME`], and once the walk is over, reads the page's
    /// figures. Returns whether the page is ready ([`Self::take_page`]).
    pub(crate) fn step(&mut self, core: &Core, max_visits: usize) -> bool {
        if self.page.is_some() {
            return true;
        }
        let now = match self.now {
            Some(now) => now,
            None => {
                // Room for every queue the page may need, at once: growing a
                // heap of many (a deep offset) would copy it all under the
                // lock. Reserved, not touched: the pages come as it fills.
                if self.sort != QueueSort::Name {
                    let keep = self.offset.saturating_add(self.limit);
                    self.best.reserve_exact(keep.min(core.names.len()));
                }
                *self.now.insert(core.now)
            }
        };
        let lo = match (&self.resume, self.desc) {
            (Some(r), false) => Bound::Excluded(&r[..]),
            _ => self.lo.as_ref().map(|b| &b[..]),
        };
        let hi = match (&self.resume, self.desc) {
            (Some(r), true) => Bound::Excluded(&r[..]),
            _ => self.hi.as_ref().map(|b| &b[..]),
        };
        let paused = if !well_formed(lo, hi) {
            None
        } else {
            let names = core.names.range::<[u8], _>((lo, hi));
            if self.desc {
                self.walk(core, now, names.rev(), max_visits)
            } else {
                self.walk(core, now, names, max_visits)
            }
        };
        match paused {
            Some(last) => {
                self.resume = Some(last);
                false
            }
            None => {
                self.finish(core);
                true
            }
        }
    }

    /// The page, once [`Self::step`] said it is ready.
    pub(crate) fn take_page(&mut self) -> Option<QueuePage> {
        self.page.take()
    }

    /// Visits `names` until the step's budget is spent (returns the last
    /// name visited, to resume past it) or the walk is over (`None`).
    fn walk<'a>(
        &mut self,
        core: &'a Core,
        now: u64,
        names: impl Iterator<Item = (&'a Bytes, &'a QueueId)>,
        max_visits: usize,
    ) -> Option<Bytes> {
        let started = Instant::now();
        let max_visits = max_visits.max(1);
        let mut last: Option<&Bytes> = None;
        for (visits, (name, &id)) in names.enumerate() {
            if visits >= max_visits
                || (visits > 0 && visits % CLOCK_EVERY == 0 && started.elapsed() >= STEP_TIME)
            {
                return last.cloned();
            }
            last = Some(name);
            if !self.visit(core, now, name, id) {
                return None;
            }
        }
        None
    }

    /// Takes one visited name into account. Returns whether the walk must
    /// go on.
    fn visit(&mut self, core: &Core, now: u64, name: &Bytes, id: QueueId) -> bool {
        #[cfg(test)]
        {
            self.visited += 1;
        }
        if let Some(p) = &self.pattern
            && !crate::glob::matches(p, name, false)
        {
            return true;
        }
        self.matched += 1;
        if self.sort == QueueSort::Name {
            if let Some(a) = &self.after {
                let past = if self.desc { name < a } else { name > a };
                if !past {
                    return true;
                }
            }
            if self.skipped < self.offset {
                self.skipped += 1;
                return true;
            }
            if self.picked.len() <= self.limit {
                self.picked.push(name.clone());
            }
            // Without a glob, the total is known: stop at a full page.
            return self.pattern.is_some() || self.picked.len() <= self.limit;
        }
        let key = sort_key(core, self.sort, now, id);
        let keep = self.offset.saturating_add(self.limit);
        let better = match self.best.peek() {
            _ if self.best.len() < keep => true,
            Some(worst) => {
                page_order((key, name), (worst.key, &worst.name), self.desc) == Ordering::Less
            }
            None => false,
        };
        if better {
            if self.best.len() >= keep {
                self.best.pop();
            }
            self.best.push(Ranked {
                key,
                name: name.clone(),
                desc: self.desc,
            });
        }
        true
    }

    /// The walk is over: the page, with its figures read now. A row whose
    /// queue was deleted since it was picked is left out.
    fn finish(&mut self, core: &Core) {
        let total = match self.pattern {
            None => core.names.len() as u64,
            Some(_) => self.matched,
        };
        let (names, next) = if self.sort == QueueSort::Name {
            let mut picked = std::mem::take(&mut self.picked);
            // One more than the page was seen: there is a next page, after
            // the page's last name.
            let next = picked
                .get(self.limit)
                .and(picked.get(self.limit - 1))
                .cloned();
            picked.truncate(self.limit);
            (picked, next)
        } else {
            // The page is the worst of the kept ones (they are the best
            // `offset + limit`): popped from the heap's top, O(limit log),
            // not a sort of them all under the lock. The rest is dropped
            // with the lister, after the engine is released.
            let n = self.best.len().saturating_sub(self.offset).min(self.limit);
            let mut page: Vec<Bytes> = (0..n)
                .filter_map(|_| self.best.pop().map(|r| r.name))
                .collect();
            page.reverse();
            (page, None)
        };
        let rows = names
            .into_iter()
            .filter(|n| core.exists(n))
            .map(|n| {
                let info = core.info(&n);
                (n, info)
            })
            .collect();
        self.page = Some(QueuePage { total, rows, next });
    }
}

/// A queue's sort key: its count, or the age of its oldest ready member
/// at `now`.
fn sort_key(core: &Core, sort: QueueSort, now: u64, id: QueueId) -> u64 {
    let q = live(&core.queues, id);
    match sort {
        QueueSort::Name => 0,
        QueueSort::Pending => q.card,
        QueueSort::Ready => q.members.ready_len() as u64,
        QueueSort::Leased => q.leased,
        QueueSort::DeadLettered => core.counters.get(&q.name).map_or(0, |c| c.dead_lettered),
        QueueSort::OldestReadyAge => q
            .members
            .oldest_ready_due()
            .map_or(0, |d| now.saturating_sub(d)),
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::*;

    use super::*;

    /// A page's names, pending counts and next cursor, comparable.
    type Seen = (u64, Vec<String>, Vec<u64>, Option<String>);

    fn seen(p: &QueuePage) -> Seen {
        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            p.total,
            p.rows.iter().map(|(n, _)| s(n)).collect(),
            p.rows.iter().map(|(_, i)| i.pending).collect(),
            p.next.as_deref().map(s),
        )
    }

    /// Runs a listing to its end with steps of `budget` names; returns the
    /// page and the names visited.
    fn run(
        core: &Core,
        (pattern, sort, desc, offset, limit, after): Req<'_>,
        budget: usize,
    ) -> (QueuePage, usize) {
        let after = after.map(|a| Bytes::copy_from_slice(a.as_bytes()));
        let mut l = QueueLister::new(pattern.map(str::as_bytes), sort, desc, offset, limit, after);
        let mut steps = 0;
        while !l.step(core, budget) {
            steps += 1;
            assert!(steps < 1_000_000, "the listing never ends");
        }
        let visited = l.visited;
        (l.take_page().unwrap(), visited)
    }

    type Req<'a> = (
        Option<&'a str>,
        QueueSort,
        bool,
        usize,
        usize,
        Option<&'a str>,
    );

    /// The page of `req` in one step, checked to be the same page as a
    /// name at a time.
    fn list(core: &Core, req: Req<'_>) -> Seen {
        let (whole, _) = run(core, req, usize::MAX);
        let (stepped, _) = run(core, req, 1);
        assert_eq!(seen(&whole), seen(&stepped), "{req:?}");
        seen(&whole)
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn add(core: &mut Core, q: &str, n: usize) {
        for i in 0..n {
            exec(core, &["DELAYADD", q, "100", &format!("m{i}")]);
        }
    }

    #[test]
    fn pages_filter_and_sort() {
        let (mut core, _clock, _dir) = core_at(1_000);
        for (q, n) in [("a:1", 3), ("a:2", 1), ("b:1", 2), ("a:3", 2)] {
            add(&mut core, q, n);
        }
        let p = list(&core, (None, QueueSort::Name, false, 0, 10, None));
        assert_eq!(p.0, 4);
        assert_eq!(p.1, strings(&["a:1", "a:2", "a:3", "b:1"]));
        assert_eq!(p.3, None);
        let p = list(&core, (Some("a:*"), QueueSort::Pending, true, 0, 2, None));
        assert_eq!((p.0, p.1, p.2), (3, strings(&["a:1", "a:3"]), vec![3, 2]));
        let p = list(&core, (Some("a:*"), QueueSort::Pending, true, 2, 2, None));
        assert_eq!(p.1, strings(&["a:2"]));
        let p = list(&core, (Some("a:*"), QueueSort::Pending, true, 5, 2, None));
        assert_eq!((p.0, p.1.len()), (3, 0));
        let p = list(&core, (Some("zz*"), QueueSort::Name, false, 0, 2, None));
        assert_eq!((p.0, p.1.len()), (0, 0));
        // A glob without a literal prefix, and one that is all literal.
        let p = list(&core, (Some("*:1"), QueueSort::Name, true, 0, 5, None));
        assert_eq!((p.0, p.1), (2, strings(&["b:1", "a:1"])));
        let p = list(&core, (Some("a:2"), QueueSort::Ready, false, 0, 5, None));
        assert_eq!((p.0, p.1), (1, strings(&["a:2"])));
        let p = list(&core, (None, QueueSort::Name, false, 3, 10, None));
        assert_eq!((p.0, p.1), (4, strings(&["b:1"])));
    }

    #[test]
    fn ties_are_broken_by_name_and_desc_reverses_both() {
        let (mut core, _clock, _dir) = core_at(1_000);
        for (q, n) in [("c", 2), ("a", 2), ("d", 1), ("b", 2), ("e", 3)] {
            add(&mut core, q, n);
        }
        let p = list(&core, (None, QueueSort::Pending, false, 0, 10, None));
        assert_eq!(p.1, strings(&["d", "a", "b", "c", "e"]));
        let p = list(&core, (None, QueueSort::Pending, true, 0, 10, None));
        assert_eq!(p.1, strings(&["e", "c", "b", "a", "d"]));
        // Pages of a sort with ties: every queue once.
        let mut all = Vec::new();
        for offset in (0..5).step_by(2) {
            all.extend(list(&core, (None, QueueSort::Pending, false, offset, 2, None)).1);
        }
        assert_eq!(all, strings(&["d", "a", "b", "c", "e"]));
        // The cursor is for sort=name only: the others ignore it.
        let p = list(&core, (None, QueueSort::Pending, false, 0, 2, Some("c")));
        assert_eq!((p.1, p.3), (strings(&["d", "a"]), None));
    }

    #[test]
    fn a_cursor_walks_every_page_in_order() {
        let (mut core, _clock, _dir) = core_at(1_000);
        let mut names: Vec<String> = (0..23).map(|i| format!("q:{i:02}")).collect();
        names.extend(["p:1", "r:1", "q", "q:"].map(String::from));
        for n in &names {
            add(&mut core, n, 1);
        }
        names.sort();
        for (pattern, desc) in [
            (None, false),
            (None, true),
            (Some("q:*"), false),
            (Some("q:*"), true),
        ] {
            let mut want: Vec<String> = names
                .iter()
                .filter(|n| pattern.is_none() || n.starts_with("q:"))
                .cloned()
                .collect();
            if desc {
                want.reverse();
            }
            let mut got = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let p = list(
                    &core,
                    (pattern, QueueSort::Name, desc, 0, 5, after.as_deref()),
                );
                assert_eq!(p.0, want.len() as u64, "total, whatever the cursor");
                got.extend(p.1.iter().cloned());
                match p.3 {
                    Some(next) => {
                        assert_eq!(
                            Some(&next),
                            p.1.last(),
                            "the cursor is the page's last name"
                        );
                        after = Some(next);
                    }
                    None => break,
                }
            }
            assert_eq!(got, want, "{pattern:?} desc={desc}");
        }
        // A cursor that names no queue, and an offset counted from it.
        let p = list(&core, (None, QueueSort::Name, false, 1, 2, Some("q:055")));
        assert_eq!(p.1, strings(&["q:07", "q:08"]));
        let p = list(
            &core,
            (Some("q:1*"), QueueSort::Name, true, 0, 3, Some("q:15")),
        );
        assert_eq!((p.0, p.1), (10, strings(&["q:14", "q:13", "q:12"])));
        let p = list(&core, (None, QueueSort::Name, false, 0, 5, Some("zzz")));
        assert_eq!((p.0, p.1.len(), p.3), (names.len() as u64, 0, None));
    }

    /// What a listing walks: a page by name only the page (from the start
    /// or the cursor), a prefix glob only the prefix's names.
    #[test]
    fn a_page_by_name_walks_only_the_page_and_a_prefix_only_its_names() {
        let (mut core, _clock, _dir) = core_at(1_000);
        for i in 0..2_000 {
            add(&mut core, &format!("q:{i:04}"), 1);
        }
        for i in 0..30 {
            add(&mut core, &format!("orders:{i:02}"), 1);
        }
        let visits = |req: Req<'_>| run(&core, req, usize::MAX).1;
        assert_eq!(visits((None, QueueSort::Name, false, 0, 50, None)), 51);
        assert_eq!(visits((None, QueueSort::Name, true, 0, 50, None)), 51);
        assert_eq!(
            visits((None, QueueSort::Name, false, 0, 50, Some("q:1500"))),
            51
        );
        assert_eq!(
            visits((None, QueueSort::Name, true, 0, 50, Some("q:1500"))),
            51
        );
        assert_eq!(visits((None, QueueSort::Name, false, 100, 50, None)), 151);
        assert_eq!(
            visits((Some("orders:*"), QueueSort::Name, false, 0, 10, None)),
            30
        );
        assert_eq!(
            visits((Some("orders:1?"), QueueSort::Pending, true, 0, 10, None)),
            10
        );
        assert_eq!(
            visits((Some("nothing*"), QueueSort::Name, false, 0, 10, None)),
            0
        );
        // No literal prefix: every name, to count the total.
        assert_eq!(
            visits((Some("*:1*"), QueueSort::Name, false, 0, 10, None)),
            2_030
        );
        let (p, _) = run(
            &core,
            (None, QueueSort::Name, false, 0, 50, None),
            usize::MAX,
        );
        assert_eq!(p.total, 2_030);
    }

    #[test]
    fn queues_created_and_deleted_between_steps() {
        let (mut core, _clock, _dir) = core_at(1_000);
        for q in ["b", "d", "f", "h", "j"] {
            add(&mut core, q, 1);
        }
        let page = |l: &mut QueueLister, core: &mut Core| {
            while !l.step(core, 2) {}
            seen(&l.take_page().unwrap())
        };
        // By name: a step visits b, d; then d is deleted (picked: left out),
        // a (behind the walk: missed) and g (ahead: listed) are created.
        let mut l = QueueLister::new(None, QueueSort::Name, false, 0, 10, None);
        assert!(!l.step(&core, 2));
        exec(&mut core, &["DEL", "d"]);
        add(&mut core, "a", 1);
        add(&mut core, "g", 1);
        let p = page(&mut l, &mut core);
        assert_eq!(p.1, strings(&["b", "f", "g", "h", "j"]));
        assert_eq!(p.0, 6, "the total is the queues that exist at the end");
        // By a count with a glob: f is deleted after it was counted and
        // kept; h is deleted before it was seen.
        let mut l = QueueLister::new(Some(b"*"), QueueSort::Pending, false, 0, 10, None);
        assert!(!l.step(&core, 2));
        assert!(!l.step(&core, 2));
        exec(&mut core, &["DEL", "f", "h"]);
        let p = page(&mut l, &mut core);
        assert_eq!(p.1, strings(&["a", "b", "g", "j"]));
        assert_eq!(p.0, 5, "counted as walked: f was seen, h was not");
        // The cursor's queue deleted between pages: the next page still
        // starts after its name.
        let first = list(&core, (None, QueueSort::Name, false, 0, 2, None));
        assert_eq!(
            (first.1.clone(), first.3.clone()),
            (strings(&["a", "b"]), Some("b".into()))
        );
        exec(&mut core, &["DEL", "b"]);
        let p = list(&core, (None, QueueSort::Name, false, 0, 2, Some("b")));
        assert_eq!((p.1, p.3), (strings(&["g", "j"]), None));
    }

    #[test]
    fn literal_prefixes_and_their_ends() {
        assert_eq!(literal_prefix(b"orders:*"), b"orders:");
        assert_eq!(literal_prefix(b"a?c"), b"a");
        assert_eq!(literal_prefix(b"ab[cd]"), b"ab");
        assert_eq!(literal_prefix(b"a\\*b*"), b"a*b");
        assert_eq!(literal_prefix(b"ab\\"), b"ab\\");
        assert_eq!(literal_prefix(b"*"), b"");
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(b"\xff"), None);
        assert_eq!(prefix_end(b""), None);
        // Escapes and 0xff bytes: the walk finds what the glob matches.
        let (mut core, _clock, _dir) = core_at(1_000);
        for q in ["a*b1", "a*b2", "a*c", "ab", "a\\", "a\\b"] {
            add(&mut core, q, 1);
        }
        let p = list(&core, (Some("a\\*b*"), QueueSort::Name, false, 0, 10, None));
        assert_eq!(p.1, strings(&["a*b1", "a*b2"]));
        let p = list(&core, (Some("a\\"), QueueSort::Name, false, 0, 10, None));
        assert_eq!(p.1, strings(&["a\\"]));
        // Names with 0xff bytes: a prefix ending in 0xff ends at the next
        // byte up.
        for n in [&b"a\xff"[..], b"a\xff\xff", b"a\xffb", b"b"] {
            let due = core.now() + 100;
            core.add(
                &Bytes::copy_from_slice(n),
                &[(due, Bytes::from_static(b"m"))],
                AddFlags::default(),
            )
            .unwrap();
        }
        let mut l = QueueLister::new(Some(b"a\xff*"), QueueSort::Name, true, 0, 10, None);
        while !l.step(&core, 1) {}
        let p = l.take_page().unwrap();
        let got: Vec<&[u8]> = p.rows.iter().map(|(n, _)| &n[..]).collect();
        assert_eq!(got, [&b"a\xff\xff"[..], b"a\xffb", b"a\xff"]);
        assert_eq!((p.total, l.visited), (3, 3));
    }
}
