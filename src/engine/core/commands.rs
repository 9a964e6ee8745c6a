//! The queue commands, as operations on the state: each applies to memory
//! and adds its writes to the store's batch in the same call.

use super::*;

/// A member handed out by a pop, with what is needed to put it back if the
/// client that should receive it has gone.
#[derive(Debug, Clone)]
pub struct Popped {
    pub queue: Bytes,
    pub member: Bytes,
    /// The record before the pop.
    pub before: MemberMeta,
    /// The record after a leased pop (`None`: the member was removed).
    pub after: Option<MemberMeta>,
    /// Deliveries of the member, this one included.
    pub deliveries: u32,
}

impl Core {
    /// `DELAYADD`: schedules each `(due, member)`. Returns the reply count:
    /// members added, plus members rescheduled with `ch`.
    ///
    /// # Errors
    ///
    /// A storage error (then nothing of the round is acknowledged).
    pub fn add(&mut self, key: &Bytes, items: &[(u64, Bytes)], flags: AddFlags) -> Result<i64> {
        self.check_writable()?;
        let id = self.queue_or_create(key);
        let mut count = 0;
        for (due, member) in items {
            let due = *due;
            match self.lookup(id, member)? {
                None if flags.xx => {}
                None => {
                    let meta = MemberMeta {
                        due,
                        seq: self.store.next_seq(),
                        deliveries: 0,
                        flags: 0,
                    };
                    self.queue_mut(id).card += 1;
                    self.lower_floor(id, due);
                    self.counters_mut(key).added += 1;
                    self.members_total += 1;
                    let cold = self.is_cold(due);
                    self.store.put(key, member, meta, cold, None);
                    self.save_queue(id);
                    self.place(id, member, meta);
                    if self.traced() {
                        self.record(key, member, &Event::due(Kind::Added, due));
                    }
                    count += 1;
                }
                Some(_) if flags.nx => {}
                Some((old, found)) => {
                    if old.due == due && !old.leased() {
                        continue;
                    }
                    let new = MemberMeta {
                        due,
                        seq: self.store.next_seq(),
                        deliveries: old.deliveries,
                        flags: old.flags & !FLAG_LEASED,
                    };
                    let lease_ended = self.traced() && self.lease_running(old, found);
                    self.reschedule(id, member, old, found, new);
                    if self.traced() {
                        let ev = Event {
                            lease_ended,
                            ..Event::due(Kind::Rescheduled, due)
                        };
                        self.record(key, member, &ev);
                    }
                    if flags.ch {
                        count += 1;
                    }
                }
            }
        }
        self.drop_if_empty(id);
        self.enforce_hot_budget();
        Ok(count)
    }

    pub(super) fn counters_mut(&mut self, name: &Bytes) -> &mut QueueCounters {
        self.counters.entry(name.clone()).or_default()
    }

    /// Pops up to `opts.count` due members of `key`, earliest first. With a
    /// lease the members stay, invisible until `now + lease`; with retries, a
    /// member delivered that many times goes to the dead-letter queue instead.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn pop(&mut self, key: &[u8], opts: &PopOptions) -> Result<Vec<Popped>> {
        self.check_writable()?;
        let Some(id) = self.queue_id(key) else {
            return Ok(Vec::new());
        };
        self.page_due(id)?;
        let mut out = Vec::new();
        while out.len() < opts.count {
            let Some(q) = self.queues.get_mut(id as usize).and_then(Option::as_mut) else {
                break;
            };
            let Some(mid) = q.members.first_ready() else {
                break;
            };
            let before = self.members.meta(mid);
            let queue = q.name.clone();
            // Popping the earliest due member: nothing left is due before it.
            q.floor = q.floor.max(before.due);
            let dead = match (opts.retries, &opts.dead_letter) {
                (Some(max), Some(dlq)) if before.deliveries >= max => Some(dlq.clone()),
                _ => None,
            };
            if dead.is_some() || opts.lease.is_none() {
                let (bytes, _) = self.members.remove(&mut q.members, mid);
                let member = Bytes::from(Vec::from(bytes));
                // Popped members are due: any lease on them has run out.
                self.queue_mut(id).card -= 1;
                self.members_total -= 1;
                self.store.delete(&queue, &member, before, false);
                self.save_queue(id);
                if let Some(dlq) = dead {
                    self.counters_mut(&queue).dead_lettered += 1;
                    if self.traced() {
                        let ev = Event {
                            to: &dlq,
                            ..Event::delivery(Kind::DeadLettered, before.deliveries)
                        };
                        self.record(&queue, &member, &ev);
                    }
                    self.add(&dlq, &[(self.now, member)], AddFlags::default())?;
                    continue;
                }
                self.counters_mut(&queue).popped += 1;
                let delivery = before.deliveries.saturating_add(1);
                if self.traced() {
                    self.record(&queue, &member, &Event::delivery(Kind::Popped, delivery));
                }
                out.push(Popped {
                    queue,
                    member,
                    before,
                    after: None,
                    deliveries: before.deliveries.saturating_add(1),
                });
                continue;
            }
            let ms = opts.lease.unwrap_or(0);
            let member = Bytes::copy_from_slice(self.members.member(mid));
            let new = MemberMeta {
                due: self.now.saturating_add(ms).min(MAX_DUE_MS),
                seq: self.store.next_seq(),
                deliveries: before.deliveries.saturating_add(1),
                flags: before.flags | FLAG_LEASED,
            };
            self.reschedule(id, &member, before, Found::Hot(mid), new);
            self.save_queue(id);
            self.counters_mut(&queue).popped += 1;
            if self.traced() {
                let ev = Event {
                    due: new.due,
                    ..Event::delivery(Kind::Leased, new.deliveries)
                };
                self.record(&queue, &member, &ev);
            }
            out.push(Popped {
                queue,
                member,
                before,
                after: Some(new),
                deliveries: new.deliveries,
            });
        }
        self.drop_if_empty(id);
        Ok(out)
    }

    /// `DELAYREM` (any member) and `DELAYACK` (`only_leased`): removes
    /// members, returning how many were removed.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn remove(&mut self, key: &[u8], members: &[Bytes], only_leased: bool) -> Result<i64> {
        self.check_writable()?;
        let Some(id) = self.queue_id(key) else {
            return Ok(0);
        };
        let mut n = 0;
        for m in members {
            if self.queues.get(id as usize).is_none_or(Option::is_none) {
                break;
            }
            if let Some((meta, found)) = self.lookup(id, m)? {
                if only_leased && !meta.leased() {
                    continue;
                }
                if only_leased {
                    let name = self.queue_mut(id).name.clone();
                    self.counters_mut(&name).acked += 1;
                }
                if self.traced() {
                    let ev = if only_leased {
                        Event::delivery(Kind::Acked, meta.deliveries)
                    } else {
                        Event::due(Kind::Removed, meta.due)
                    };
                    self.record(key, m, &ev);
                }
                self.remove_member(id, m, meta, found);
                n += 1;
            }
        }
        Ok(n)
    }

    /// `DELAYSCORE`: a member's due time.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn score(&mut self, key: &[u8], member: &[u8]) -> Result<Option<MemberMeta>> {
        let Some(id) = self.queue_id(key) else {
            return Ok(None);
        };
        Ok(self.lookup(id, member)?.map(|(m, _)| m))
    }

    /// `DELAYCARD`: number of members, O(1).
    pub fn card(&self, key: &[u8]) -> u64 {
        self.queue_id(key)
            .and_then(|id| self.queues[id as usize].as_ref())
            .map_or(0, |q| q.card)
    }

    /// `DELAYRANGE`: members by rank in due order (ZRANGE's index rules;
    /// with `rev`, ranks count from the latest due).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn range(
        &mut self,
        key: &[u8],
        start: i64,
        stop: i64,
        rev: bool,
    ) -> Result<Vec<Scheduled>> {
        let card = self.card(key) as i64;
        let start = if start < 0 {
            (card + start).max(0)
        } else {
            start
        };
        let stop = if stop < 0 {
            card + stop
        } else {
            stop.min(card - 1)
        };
        if card == 0 || start > stop || start >= card {
            return Ok(Vec::new());
        }
        let floor = self.floor(key);
        self.store.due_range(
            key,
            (floor, u64::MAX),
            rev,
            start as usize,
            (stop - start + 1) as usize,
        )
    }

    /// `DELAYRANGE ... BYSCORE`: members with `min <= due <= max`, in due
    /// order (latest first with `rev`), skipping `offset` and taking at most
    /// `count`. O(log n + offset + count) on either tier.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn range_by_due(
        &mut self,
        key: &[u8],
        (min, max): (u64, u64),
        rev: bool,
        offset: usize,
        count: usize,
    ) -> Result<Vec<Scheduled>> {
        if self.queue_id(key).is_none() {
            return Ok(Vec::new());
        }
        let min = min.max(self.floor(key));
        self.store.due_range(key, (min, max), rev, offset, count)
    }

    /// `DELAYCOUNT`: how many members have `min <= due <= max`.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn count_due(&mut self, key: &[u8], (min, max): (u64, u64)) -> Result<u64> {
        if self.queue_id(key).is_none() {
            return Ok(0);
        }
        let min = min.max(self.floor(key));
        self.store.due_count(key, (min, max))
    }

    /// No member of the queue is due before this (0 for no queue).
    fn floor(&self, key: &[u8]) -> u64 {
        self.queue_id(key)
            .and_then(|id| self.queues[id as usize].as_ref())
            .map_or(0, |q| q.floor)
    }

    /// `DELAYINFO`: a queue's figures.
    pub fn info(&self, key: &[u8]) -> QueueInfo {
        let counters = self.counters.get(key).copied().unwrap_or_default();
        let Some(q) = self
            .queue_id(key)
            .and_then(|id| self.queues[id as usize].as_ref())
        else {
            return QueueInfo {
                counters,
                ..QueueInfo::default()
            };
        };
        let next_due = q
            .members
            .ids()
            .filter(|&mid| self.members.place(mid) != Place::Ready)
            .map(|mid| self.members.meta(mid).due)
            .min()
            .or(q.next_cold_due);
        QueueInfo {
            pending: q.card,
            ready: q.members.ready_len() as u64,
            leased: q.leased,
            next_due,
            oldest_ready_due: q.members.oldest_ready_due(),
            counters,
        }
    }

    /// `DEL`: deletes whole queues, returning how many existed.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn delete_queues(&mut self, keys: &[Bytes]) -> Result<i64> {
        self.check_writable()?;
        let mut n = 0;
        for key in keys {
            self.counters.remove(key);
            let Some(id) = self.queue_id(key) else {
                continue;
            };
            let ids: Vec<u32> = self.queue_mut(id).members.ids().collect();
            for mid in ids {
                self.unplace(id, Found::Hot(mid));
            }
            let q = self.queue_mut(id);
            let (name, card, leased) = (q.name.clone(), q.card, q.leased);
            self.touch(&name);
            self.store.delete_queue(&name)?;
            self.members_total -= card;
            self.leased_total = self.leased_total.saturating_sub(leased);
            let q = self.queue_mut(id);
            q.card = 0;
            q.cold = 0;
            self.drop_if_empty(id);
            n += 1;
        }
        Ok(n)
    }

    /// `FLUSHALL` / `FLUSHDB`: removes every queue.
    ///
    /// # Errors
    ///
    /// A storage error.
    pub fn flush(&mut self) -> Result<()> {
        self.check_writable()?;
        self.touch_existing();
        self.store.clear();
        self.forget_queues();
        self.counters.clear();
        self.members.clear();
        // The events went with the space the store cleared.
        self.tracer.clear();
        Ok(())
    }

    /// Whether a queue exists.
    pub fn exists(&self, key: &[u8]) -> bool {
        self.queue_id(key).is_some()
    }

    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.index.len()
    }

    /// Queue names in SCAN order from `cursor`, at most about `count`
    /// (all names sharing a hash are returned together). Returns the next
    /// cursor (0 when done) and the names.
    pub fn scan(&self, cursor: u64, count: usize) -> (u64, Vec<Bytes>) {
        let mut out = Vec::new();
        let mut last = None;
        for ((h, name), _) in self.index.range((cursor, Bytes::new())..) {
            if out.len() >= count.max(1) && last != Some(*h) {
                return (*h, out);
            }
            last = Some(*h);
            out.push(name.clone());
        }
        (0, out)
    }
}
