//! Listing queues a page at a time, for the console and the HTTP API: a
//! server with a million queues answers one page, never all of them.

use super::*;

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

/// One page of queues: how many matched in all, and the page's queues with
/// their DELAYINFO figures.
#[derive(Debug, Clone, Default)]
pub struct QueuePage {
    pub total: u64,
    pub rows: Vec<(Bytes, QueueInfo)>,
}

impl Core {
    /// The queues whose names match `pattern` (a glob as KEYS takes it;
    /// `None`: all), sorted by `sort` (ties by name), skipping `offset` and
    /// taking at most `limit`. One pass over the queues to filter and keep
    /// the page (O(queues), a few machine words each, never their members);
    /// the figures are read only for the rows of the page.
    pub fn list_queues(
        &self,
        pattern: Option<&[u8]>,
        sort: QueueSort,
        desc: bool,
        offset: usize,
        limit: usize,
    ) -> QueuePage {
        let now = self.now;
        let key = |q: &Queue| -> u64 {
            match sort {
                QueueSort::Name => 0,
                QueueSort::Pending => q.card,
                QueueSort::Ready => q.members.ready_len() as u64,
                QueueSort::Leased => q.leased,
                QueueSort::DeadLettered => {
                    self.counters.get(&q.name).map_or(0, |c| c.dead_lettered)
                }
                QueueSort::OldestReadyAge => q
                    .members
                    .oldest_ready_due()
                    .map_or(0, |d| now.saturating_sub(d)),
            }
        };
        let mut matched: Vec<(u64, &Bytes, QueueId)> = self
            .index
            .iter()
            .filter(|((_, name), _)| pattern.is_none_or(|p| crate::glob::matches(p, name, false)))
            .map(|((_, name), &id)| (key(live(&self.queues, id)), name, id))
            .collect();
        let total = matched.len() as u64;
        let cmp = |a: &(u64, &Bytes, QueueId), b: &(u64, &Bytes, QueueId)| {
            let ord = a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1));
            if desc { ord.reverse() } else { ord }
        };
        let end = offset.saturating_add(limit).min(matched.len());
        if offset >= end {
            return QueuePage {
                total,
                rows: Vec::new(),
            };
        }
        // Only the first `end` need to be in order.
        if end < matched.len() {
            matched.select_nth_unstable_by(end - 1, cmp);
            matched.truncate(end);
        }
        matched.sort_unstable_by(cmp);
        let rows = matched[offset..]
            .iter()
            .map(|(_, name, _)| ((*name).clone(), self.info(name)))
            .collect();
        QueuePage { total, rows }
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::*;

    use super::*;

    #[test]
    fn pages_filter_and_sort() {
        let (mut core, _clock, _dir) = core_at(1_000);
        for (q, n) in [("a:1", 3), ("a:2", 1), ("b:1", 2), ("a:3", 2)] {
            for i in 0..n {
                exec(&mut core, &["DELAYADD", q, "100", &format!("m{i}")]);
            }
        }
        let names = |p: &QueuePage| -> Vec<String> {
            p.rows
                .iter()
                .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                .collect()
        };
        let p = core.list_queues(None, QueueSort::Name, false, 0, 10);
        assert_eq!(
            (p.total, names(&p)),
            (
                4,
                vec!["a:1", "a:2", "a:3", "b:1"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            )
        );
        let p = core.list_queues(Some(b"a:*"), QueueSort::Pending, true, 0, 2);
        assert_eq!(p.total, 3);
        assert_eq!(names(&p), vec!["a:1", "a:3"]);
        assert_eq!(p.rows[0].1.pending, 3);
        let p = core.list_queues(Some(b"a:*"), QueueSort::Pending, true, 2, 2);
        assert_eq!(names(&p), vec!["a:2"]);
        let p = core.list_queues(Some(b"a:*"), QueueSort::Pending, true, 5, 2);
        assert_eq!((p.total, p.rows.len()), (3, 0));
        let p = core.list_queues(Some(b"zz*"), QueueSort::Name, false, 0, 2);
        assert_eq!((p.total, p.rows.len()), (0, 0));
    }
}
