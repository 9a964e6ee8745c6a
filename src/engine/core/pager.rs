//! Time passing: the wheel fires what came due, leases run out, and the
//! pager raises the in-memory horizon, paging cold members in from the
//! store's time index well before they are due.

use std::cmp::Reverse;

use super::*;

impl Core {
    /// When the engine next has timed work: the wheel's next slot, a parked
    /// member, or the pager. `None` when idle.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if self.paging.is_some() {
            return Some(self.now);
        }
        let pager = self.hot_until.saturating_sub(self.horizon_ms / 2);
        let next = self.members.next_deadline();
        if self.cold_heap.is_empty() {
            next
        } else {
            Some(next.map_or(pager, |n| n.min(pager)))
        }
    }

    /// Advances time and runs the pager to completion (tests and start-up).
    ///
    /// # Errors
    ///
    /// A storage error while paging in.
    pub fn tick(&mut self) -> Result<()> {
        self.fire();
        while self.page_step(usize::MAX)? {}
        Ok(())
    }

    /// Advances time: fires the wheel and releases parked members. Cheap
    /// when nothing is due; every command starts with it.
    pub fn fire(&mut self) {
        let now = self.clock.now_ms();
        self.now = now;
        let mut fired = std::mem::take(&mut self.fired);
        // The wheel never runs backwards; if the wall clock stepped back,
        // members it fires early are parked until the wall clock catches up.
        self.members.advance(now, &mut fired);
        if !fired.is_empty() {
            let now_us = self.clock.now_us();
            for &mid in &fired {
                let due = self.members.meta(mid).due;
                if due <= now {
                    self.lateness.record(now_us.saturating_sub(due * 1000));
                }
                self.on_fire(mid);
            }
            fired.clear();
        }
        self.fired = fired;
    }

    /// A member came due by the wheel: make it ready, or park it if the
    /// wall clock says it is not due yet.
    pub(super) fn on_fire(&mut self, mid: u32) {
        let qid = self.members.queue(mid);
        let meta = self.members.meta(mid);
        let Some(q) = self.queues.get_mut(qid as usize).and_then(Option::as_mut) else {
            return;
        };
        if meta.due > self.now {
            self.members.park(mid);
        } else {
            if meta.leased() {
                // The lease ran out: the member is due again.
                self.expired_leases += 1;
                self.counters
                    .entry(q.name.clone())
                    .or_default()
                    .expired_leases += 1;
                q.leased = q.leased.saturating_sub(1);
                self.leased_total = self.leased_total.saturating_sub(1);
            }
            self.members.make_ready(&mut q.members, mid);
            self.signaled.push(qid);
        }
    }

    /// One step of the pager: once `now` is within half a horizon of
    /// `hot_until`, raises it to `now + horizon`, paging in the cold members
    /// due by then, at most `budget` queues per step so that firing is never
    /// held up for long. Returns whether work is left for another step.
    ///
    /// # Errors
    ///
    /// A storage error while paging in.
    pub fn page_step(&mut self, budget: usize) -> Result<bool> {
        let target = match self.paging {
            Some(t) => t,
            None if self.now.saturating_add(self.horizon_ms / 2) >= self.hot_until => {
                let t = self.now.saturating_add(self.horizon_ms);
                self.paging = Some(t);
                t
            }
            None => return Ok(false),
        };
        // Members due up to `hot_until` are in memory; cold ones are later.
        let from = self.hot_until.saturating_add(1);
        let mut done = 0;
        while let Some(&Reverse((due, id))) = self.cold_heap.peek() {
            if due > target {
                break;
            }
            if done >= budget {
                return Ok(true);
            }
            self.cold_heap.pop();
            let Some(q) = self.queues.get(id as usize).and_then(Option::as_ref) else {
                continue;
            };
            if q.next_cold_due != Some(due) || q.cold == 0 {
                continue;
            }
            done += 1;
            let name = q.name.clone();
            let (batch, next) = self.store.page_in(&name, from.min(due), target)?;
            let q = self.queue_mut(id);
            q.cold = q.cold.saturating_sub(batch.len() as u64);
            for s in batch {
                self.store.warm(&name, &s.member);
                self.place_hot(id, &s.member, s.meta);
            }
            let cold = self.queue_mut(id).cold;
            self.set_next_cold(id, next.filter(|_| cold > 0));
        }
        self.hot_until = target;
        self.store.set_hot_until(target);
        self.paging = None;
        Ok(false)
    }

    /// Records the earliest cold due time of a queue.
    pub(super) fn set_next_cold(&mut self, id: QueueId, next: Option<u64>) {
        self.queue_mut(id).next_cold_due = next;
        if let Some(due) = next {
            self.cold_heap.push(Reverse((due, id)));
        }
    }
}
