//! Time passing: the wheel fires what came due, leases run out, and the
//! pager raises the in-memory horizon, paging cold members in from the
//! store's time index well before they are due.

use std::cmp::Reverse;

use super::*;

/// Most of the horizon paged in by one pager step (see [`Core::page_lead`]).
pub(super) const PAGE_STEP_MS: u64 = 60_000;

/// The hot window is never shrunk below this for `hot-max-members`: the
/// pager needs some lead to page members in before they are due.
pub(super) const MIN_HORIZON_MS: u64 = 100;

impl Core {
    /// When the engine next has timed work: the wheel's next slot, a parked
    /// member, or the pager. `None` when idle.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        if self.paging.is_some() {
            return Some(self.now);
        }
        let pager = self.hot_until.saturating_sub(self.page_lead());
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
        if now < self.now {
            self.unready_after(now);
        }
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

    /// The wall clock stepped back to `now`: ready members due after it are
    /// not due by it any more and wait for it again (in the wheel, or
    /// parked), so that none is delivered before its due time by the wall
    /// clock; a lease on one is running again. Costs a pass over the
    /// in-memory members of queues with ready ones, on a step back only.
    fn unready_after(&mut self, now: u64) {
        let members = &mut self.members;
        for q in self.queues.iter_mut().flatten() {
            if q.members.ready_len() == 0 {
                continue;
            }
            let early: Vec<u32> = q
                .members
                .ids()
                .filter(|&mid| members.place(mid) == Place::Ready && members.meta(mid).due > now)
                .collect();
            for mid in early {
                let meta = members.meta(mid);
                members.update(&mut q.members, mid, meta, now);
                if meta.leased() {
                    q.leased += 1;
                    self.leased_total += 1;
                }
            }
        }
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
            if self.traced() {
                let ev = if meta.leased() {
                    Event::delivery(Kind::LeaseExpired, meta.deliveries)
                } else {
                    Event::due(Kind::Due, meta.due)
                };
                if let Some(q) = self.queues.get(qid as usize).and_then(Option::as_ref) {
                    let member = self.members.member(mid);
                    self.tracer
                        .record(&mut self.store, self.now, &q.name, member, &ev);
                }
            }
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
            None if self.now.saturating_add(self.page_lead()) >= self.hot_until => {
                self.grow_horizon();
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
            self.page_queue(id, from.min(due), target)?;
        }
        self.hot_until = target;
        self.store.set_hot_until(target);
        self.paging = None;
        self.enforce_hot_budget();
        Ok(false)
    }

    /// How far ahead of `hot_until` the pager starts its next step: half the
    /// horizon, but at most [`PAGE_STEP_MS`] behind the full horizon, so a
    /// long horizon is paged in small steps (each pages what comes into it
    /// since the last) instead of half of it at once.
    fn page_lead(&self) -> u64 {
        let step = (self.horizon_ms / 2).min(PAGE_STEP_MS);
        self.horizon_ms - step
    }

    /// Lets the horizon grow back towards `--horizon-ms` while the members
    /// in memory take less than half the budget.
    fn grow_horizon(&mut self) {
        if self.horizon_ms < self.horizon_max_ms && self.members.len() < self.hot_max / 2 {
            self.horizon_ms = self.horizon_ms.saturating_mul(2).min(self.horizon_max_ms);
        }
    }

    /// Sets `hot-max-members` and moves members to disk at once if more
    /// are in memory.
    pub fn set_hot_max(&mut self, n: usize) {
        self.hot_max = n.max(1);
        self.enforce_hot_budget();
    }

    /// The most members kept in memory (`hot-max-members`).
    pub fn hot_max(&self) -> usize {
        self.hot_max
    }

    /// The horizon in force (ms): `--horizon-ms`, or less while the budget
    /// holds it back.
    pub fn horizon_ms(&self) -> u64 {
        self.horizon_ms
    }

    /// Keeps the members in memory within `hot-max-members`: while there
    /// are more, halves the hot window, moving the members due in its far
    /// half to disk, down to [`MIN_HORIZON_MS`] (members due sooner stay,
    /// whatever their number). Goes an eighth below the budget so that a
    /// steady stream of adds does not demote on every round. One check when
    /// within budget; a pass over the members in memory per halving.
    pub(super) fn enforce_hot_budget(&mut self) {
        if self.members.len() <= self.hot_max {
            return;
        }
        let goal = self.hot_max - self.hot_max / 8;
        while self.members.len() > goal {
            let window = self.hot_until.saturating_sub(self.now);
            if window <= MIN_HORIZON_MS {
                break;
            }
            let until = self.now + (window / 2).max(MIN_HORIZON_MS);
            self.demote_after(until);
        }
    }

    /// Lowers `hot_until` to `until`: every member in memory due after it
    /// (leases included: a lease's due time is its end) is moved to disk,
    /// with a point-lookup entry, as if it had been added beyond the
    /// horizon. Ready members are due by now and stay.
    fn demote_after(&mut self, until: u64) {
        let mut out = Vec::new();
        for (qid, q) in self.queues.iter().enumerate() {
            let Some(q) = q else { continue };
            out.extend(q.members.ids().filter_map(|mid| {
                let due = self.members.meta(mid).due;
                (due > until && self.members.place(mid) != Place::Ready)
                    .then_some((qid as QueueId, mid))
            }));
        }
        for &(qid, mid) in &out {
            let meta = self.members.meta(mid);
            let q = live_mut(&mut self.queues, qid);
            let (member, _) = self.members.remove(&mut q.members, mid);
            let name = q.name.clone();
            self.store.cool(&name, &member, meta);
            self.place_cold(qid, meta.due);
        }
        tracing::debug!(
            "hot-max-members: moved {} members due after {until} to disk",
            out.len()
        );
        self.hot_until = until;
        self.store.set_hot_until(until);
        if self.paged_until > until {
            self.paged_until = until;
            self.store.set_paged_until(until);
        }
        // A pager step under way aimed beyond the new horizon.
        self.paging = None;
        self.horizon_ms = until.saturating_sub(self.now).max(MIN_HORIZON_MS);
    }

    /// Pages in the members of queue `id` due in `from..=until` that are
    /// only on disk, and records the queue's next cold due time.
    fn page_queue(&mut self, id: QueueId, from: u64, until: u64) -> Result<()> {
        let name = self.queue_mut(id).name.clone();
        let (batch, next) = self.store.page_in(&name, from, until)?;
        for s in batch {
            // Already in memory: a pager step cut short by its budget paged
            // this queue in, then a member added beyond the old horizon
            // brought it back into the heap. Placed twice, it would also be
            // counted off the cold members twice.
            let hot = self
                .queues
                .get(id as usize)
                .and_then(Option::as_ref)
                .is_some_and(|q| self.members.find(&q.members, &s.member).is_some());
            if hot {
                continue;
            }
            let q = self.queue_mut(id);
            q.cold = q.cold.saturating_sub(1);
            self.store.warm(&name, &s.member);
            self.place_hot(id, &s.member, s.meta);
        }
        let cold = self.queue_mut(id).cold;
        self.set_next_cold(id, next.filter(|_| cold > 0));
        // Members up to `until` may have lost their point-lookup entry
        // before `hot_until` covers them: a restart must load that far.
        if until > self.hot_until.max(self.paged_until) {
            self.paged_until = until;
            self.store.set_paged_until(until);
        }
        Ok(())
    }

    /// Pages in a queue's members that are due by now but still only on
    /// disk. The pager runs well ahead of due times, but falls behind when
    /// the wall clock jumps forward or the process is stopped for more than
    /// half a horizon; until the timer thread catches up, a pop would miss
    /// those members, or overtake them and raise the floor above them.
    pub(super) fn page_due(&mut self, id: QueueId) -> Result<()> {
        let Some(q) = self.queues.get(id as usize).and_then(Option::as_ref) else {
            return Ok(());
        };
        match q.next_cold_due {
            Some(due) if q.cold > 0 && due <= self.now => {
                let from = self.hot_until.saturating_add(1).min(due);
                self.page_queue(id, from, self.now)
            }
            _ => Ok(()),
        }
    }

    /// Records the earliest cold due time of a queue.
    pub(super) fn set_next_cold(&mut self, id: QueueId, next: Option<u64>) {
        self.queue_mut(id).next_cold_due = next;
        if let Some(due) = next {
            self.cold_heap.push(Reverse((due, id)));
        }
    }
}
