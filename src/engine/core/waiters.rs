//! Blocked consumers: registered per queue in arrival order, served first
//! come, first served as members come due; each due member goes to exactly
//! one of them.

use super::*;

/// A client blocked in `DELAYPOP ... BLOCK` or `BDELAYPOP`.
#[derive(Debug)]
pub struct Waiter {
    pub keys: Vec<Bytes>,
    pub opts: PopOptions,
    pub tx: tokio::sync::oneshot::Sender<Delivery>,
}

/// What a blocked client receives: the members popped for it, or why it
/// was woken without any (a storage failure, the server stopping).
#[derive(Debug)]
pub struct Delivery {
    /// The members, to put back if the client is gone by the time they
    /// arrive.
    pub popped: Result<Vec<Popped>>,
    /// The commit that removed or leased them; the reply waits until it is
    /// durable.
    pub lsn: u64,
}

impl Delivery {
    /// The members it carries (none for a failure).
    pub fn take_popped(&mut self) -> Vec<Popped> {
        match &mut self.popped {
            Ok(p) => std::mem::take(p),
            Err(_) => Vec::new(),
        }
    }
}

/// A pop for a blocked client, sent once it is committed.
#[derive(Debug)]
pub struct WaiterReply {
    pub tx: tokio::sync::oneshot::Sender<Delivery>,
    pub popped: Result<Vec<Popped>>,
}

impl Core {
    /// Registers a blocked client, or serves it at once if a member is due.
    pub fn block(&mut self, id: WaiterId, waiter: Waiter) {
        for key in &waiter.keys {
            self.waiters.entry(key.clone()).or_default().push_back(id);
        }
        let keys = waiter.keys.clone();
        self.blocked.insert(id, waiter);
        if self.tracer.on()
            && let Some(actor) = self.tracer.actor()
        {
            self.waiter_actors.insert(id, actor.clone());
        }
        for key in keys {
            if let Some(qid) = self.queue_id(&key) {
                self.signaled.push(qid);
            }
        }
        self.serve_waiters();
    }

    /// Forgets a blocked client (timed out or disconnected).
    pub fn unblock(&mut self, id: WaiterId) {
        if let Some(w) = self.blocked.remove(&id) {
            self.forget_waiter(id, &w.keys);
        }
        self.waiter_actors.remove(&id);
    }

    pub(super) fn forget_waiter(&mut self, id: WaiterId, keys: &[Bytes]) {
        for key in keys {
            if let Some(list) = self.waiters.get_mut(key) {
                list.retain(|&w| w != id);
                if list.is_empty() {
                    self.waiters.remove(key);
                }
            }
        }
    }

    /// Hands due members to blocked clients, first come first served.
    pub fn serve_waiters(&mut self) {
        while let Some(qid) = self.signaled.pop() {
            let Some(q) = self.queues.get(qid as usize).and_then(Option::as_ref) else {
                continue;
            };
            let name = q.name.clone();
            loop {
                let has_ready = self
                    .queues
                    .get(qid as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|q| q.members.ready_len() > 0);
                if !has_ready {
                    break;
                }
                let Some(wid) = self.waiters.get_mut(&name).and_then(VecDeque::pop_front) else {
                    break;
                };
                let Some(w) = self.blocked.remove(&wid) else {
                    continue;
                };
                self.forget_waiter(wid, &w.keys);
                let actor = self.waiter_actors.remove(&wid);
                if w.tx.is_closed() {
                    continue;
                }
                // The pop is the blocked client's doing, whoever's round
                // this is: record it under its own actor (or none).
                let traced = self.tracer.on();
                let current = if traced {
                    self.tracer.replace_actor(actor.clone())
                } else {
                    None
                };
                let popped = self.pop(&name, &w.opts);
                if traced {
                    self.tracer.replace_actor(current);
                }
                match popped {
                    // Everything due was dead-lettered: keep waiting, first in line.
                    Ok(popped) if popped.is_empty() => {
                        for key in &w.keys {
                            let list = self.waiters.entry(key.clone()).or_default();
                            if key == &name {
                                list.push_front(wid);
                            } else {
                                list.push_back(wid);
                            }
                        }
                        self.blocked.insert(wid, w);
                        if let Some(actor) = actor {
                            self.waiter_actors.insert(wid, actor);
                        }
                        break;
                    }
                    popped => self.outgoing.push(WaiterReply { tx: w.tx, popped }),
                }
            }
        }
        self.waiters.retain(|_, l| !l.is_empty());
    }

    /// Wakes every blocked client with [`Error::ShuttingDown`].
    pub fn wake_all_blocked(&mut self) {
        self.wake_all_blocked_with(|| Error::ShuttingDown);
    }

    /// Answers every blocked client with `error()` and forgets them.
    pub fn wake_all_blocked_with(&mut self, error: impl Fn() -> Error) {
        for (_, w) in self.blocked.drain() {
            let _ = w.tx.send(Delivery {
                popped: Err(error()),
                lsn: 0,
            });
        }
        self.waiters.clear();
        self.waiter_actors.clear();
    }

    /// Replies for blocked clients produced since the last call.
    pub fn take_waiter_replies(&mut self) -> Vec<WaiterReply> {
        std::mem::take(&mut self.outgoing)
    }
}
