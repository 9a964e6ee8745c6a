//! `WATCH`: versions of the queues some client watches.
//!
//! Only watched queues are tracked, each with the number of clients that
//! watch it, so a queue nobody watches costs one `is_empty` check per
//! write. A queue is *touched* (its version moves) by every command that
//! changes its members or their states: adds and reschedules, pops and
//! leases, acks, removals, dead-lettering into it, members put back after
//! a pop that reached no client, `DEL` and `FLUSHALL` of a queue that
//! exists. Time passing alone (a member coming due, a lease running out)
//! touches nothing: those are not commands, and the member set and records
//! do not change.

use bytes::Bytes;

use super::Core;

/// A watched queue.
#[derive(Debug, Default)]
pub(crate) struct Watched {
    /// Clients watching it (the entry goes when the last one stops).
    watchers: u64,
    /// Moves at every touch.
    version: u64,
}

/// The watched queues by name.
pub(crate) type WatchMap = crate::engine::FastMap<Bytes, Watched>;

impl Core {
    /// `WATCH`: starts watching `keys` (one more watcher each) and returns
    /// their current versions, in order.
    pub fn watch(&mut self, keys: &[Bytes]) -> Vec<u64> {
        keys.iter()
            .map(|k| {
                let w = self.watched.entry(k.clone()).or_default();
                w.watchers += 1;
                w.version
            })
            .collect()
    }

    /// Stops watching `keys` (one watcher less each, as many times as a
    /// key is listed).
    pub fn unwatch(&mut self, keys: &[Bytes]) {
        for k in keys {
            if let Some(w) = self.watched.get_mut(k) {
                w.watchers = w.watchers.saturating_sub(1);
                if w.watchers == 0 {
                    self.watched.remove(k);
                }
            }
        }
    }

    /// Whether none of the queues has been touched since it was watched at
    /// the given version.
    pub fn watch_intact(&self, watched: &[(Bytes, u64)]) -> bool {
        watched
            .iter()
            .all(|(k, v)| self.watched.get(k).is_none_or(|w| w.version == *v))
    }

    /// Marks a queue modified.
    pub(super) fn touch(&mut self, key: &[u8]) {
        if self.watched.is_empty() {
            return;
        }
        if let Some(w) = self.watched.get_mut(key) {
            w.version += 1;
        }
    }

    /// Marks every watched queue that exists modified (`FLUSHALL`, and a
    /// reload that replaced memory), as Redis touches the keys a flush
    /// removes.
    pub(super) fn touch_existing(&mut self) {
        let names: Vec<Bytes> = self
            .watched
            .keys()
            .filter(|k| self.queue_id(k).is_some())
            .cloned()
            .collect();
        for k in names {
            self.touch(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use crate::cmd::testing::{core_at, exec};

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn watched_after(cmd: &[&str], setup: &[&[&str]]) -> bool {
        let (mut core, _clock, _dir) = core_at(1_000);
        for s in setup {
            exec(&mut core, s);
        }
        let v = core.watch(&[b("q")]);
        exec(&mut core, cmd);
        core.watch_intact(&[(b("q"), v[0])])
    }

    #[test]
    fn writes_touch_and_reads_do_not() {
        let with_member: &[&[&str]] = &[&["DELAYADD", "q", "AT", "500", "a"]];
        // Writes that change the queue.
        for cmd in [
            &["DELAYADD", "q", "10", "b"][..],
            &["DELAYADD", "q", "AT", "600", "a"],
            &["DELAYPOP", "q"],
            &["DELAYPOP", "q", "LEASE", "1000"],
            &["DELAYREM", "q", "a"],
            &["DEL", "q"],
            &["FLUSHALL"],
        ] {
            assert!(!watched_after(cmd, with_member), "{cmd:?} should touch");
        }
        // Reads and writes that change nothing.
        for cmd in [
            &["DELAYCARD", "q"][..],
            &["DELAYSCORE", "q", "a"],
            &["DELAYRANGE", "q", "0", "-1"],
            &["DELAYADD", "q", "AT", "500", "a"],
            &["DELAYADD", "q", "NX", "AT", "700", "a"],
            &["DELAYREM", "q", "zz"],
            &["DELAYACK", "q", "a"],
            &["DELAYPOP", "other"],
            &["DEL", "other"],
        ] {
            assert!(watched_after(cmd, with_member), "{cmd:?} should not touch");
        }
        // DEL and FLUSHALL of a queue that does not exist touch nothing.
        assert!(watched_after(&["DEL", "q"], &[]));
        assert!(watched_after(&["FLUSHALL"], &[]));
    }

    #[test]
    fn the_last_unwatch_forgets_the_queue() {
        let (mut core, _clock, _dir) = core_at(1_000);
        let k = [b("q")];
        core.watch(&k);
        core.watch(&k);
        core.unwatch(&k);
        assert!(!core.watched.is_empty());
        core.unwatch(&k);
        assert!(core.watched.is_empty());
    }
}
