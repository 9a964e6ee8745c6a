//! Message trace (`trace-queues`, `DELAYTRACE`): what happened to member X?
//!
//! Opt-in: with a `trace-queues` glob set, every event of a member of a
//! queue whose name matches is recorded with its time — added,
//! rescheduled, made due by the timing wheel, popped, leased, lease
//! expired, acked, dead-lettered, removed, put back — and, for what a
//! client did, which client (the *actor* the session sets on the core).
//!
//! Events are numbered per queue and written through the round's batch like
//! every other write (see [`super::store`] for the keys), so they are as
//! durable as the commands they describe and survive a restart. Each queue
//! keeps at most `trace-max-events` events: recording one more deletes the
//! oldest in the same batch. DEL keeps a queue's trace (it is read after
//! the fact); FLUSHALL clears it.
//!
//! With tracing off, an event site costs one branch on an `Option` and
//! allocates nothing: the [`Event`] is plain data on the stack, looked at
//! only when tracing is on.

use std::sync::Arc;

use bytes::Bytes;

use super::store::Store;

/// Events kept per queue unless configured (`trace-max-events`).
pub(crate) const DEFAULT_MAX_EVENTS: u64 = 10_000;

/// Members longer than this are recorded by their SHA-256 digest: a trace
/// must not copy a large member into every event. Digests do not collide,
/// so a lookup by digest finds exactly that member's events.
const INLINE_MEMBER: usize = 256;

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Scheduled by `DELAYADD` (`due`).
    Added = 1,
    /// Moved to a new due time by `DELAYADD` (`due`; `lease_ended` if it
    /// ended a running lease).
    Rescheduled = 2,
    /// Made ready by the timing wheel (`due`).
    Due = 3,
    /// Removed and handed to a consumer (`delivery`).
    Popped = 4,
    /// Handed to a consumer under a lease (`due` is the lease's end,
    /// `delivery`).
    Leased = 5,
    /// The lease ran out without an ack: due again (`delivery` so far).
    LeaseExpired = 6,
    /// Removed by `DELAYACK` (`delivery` so far).
    Acked = 7,
    /// Moved to the dead-letter queue `to` (`delivery` so far).
    DeadLettered = 8,
    /// Cancelled by `DELAYREM` (`due`).
    Removed = 9,
    /// A pop whose reply never reached its client was undone (`due`).
    PutBack = 10,
}

impl Kind {
    /// The event's name in `DELAYTRACE`'s reply.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Added => "added",
            Kind::Rescheduled => "rescheduled",
            Kind::Due => "due",
            Kind::Popped => "popped",
            Kind::Leased => "leased",
            Kind::LeaseExpired => "lease-expired",
            Kind::Acked => "acked",
            Kind::DeadLettered => "dead-lettered",
            Kind::Removed => "removed",
            Kind::PutBack => "put-back",
        }
    }

    fn from_u8(v: u8) -> Option<Kind> {
        Some(match v {
            1 => Kind::Added,
            2 => Kind::Rescheduled,
            3 => Kind::Due,
            4 => Kind::Popped,
            5 => Kind::Leased,
            6 => Kind::LeaseExpired,
            7 => Kind::Acked,
            8 => Kind::DeadLettered,
            9 => Kind::Removed,
            10 => Kind::PutBack,
            _ => return None,
        })
    }

    /// Whether a client did it, so the actor is recorded. The timing wheel
    /// and the put-back of a lost reply run on behalf of no client (or of
    /// whichever client's round they happen in), so they name none rather
    /// than the wrong one.
    fn has_actor(self) -> bool {
        !matches!(self, Kind::Due | Kind::LeaseExpired | Kind::PutBack)
    }

    /// Which fields the detail text shows: (`due`, its label), `delivery`.
    fn fields(self) -> (Option<&'static str>, bool) {
        match self {
            Kind::Added | Kind::Rescheduled | Kind::Due | Kind::Removed | Kind::PutBack => {
                (Some("due"), false)
            }
            Kind::Leased => (Some("until"), true),
            Kind::Popped | Kind::LeaseExpired | Kind::Acked | Kind::DeadLettered => (None, true),
        }
    }
}

/// One event as an event site describes it: plain data, no allocation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Event<'a> {
    pub kind: Kind,
    /// A due time, or a lease's end (Unix ms), per [`Kind`].
    pub due: u64,
    /// Deliveries, per [`Kind`].
    pub delivery: u32,
    /// The dead-letter queue (empty otherwise).
    pub to: &'a [u8],
    /// A rescheduling ended a running lease.
    pub lease_ended: bool,
}

impl Event<'_> {
    /// An event with only a kind and a due time.
    pub(crate) fn due(kind: Kind, due: u64) -> Event<'static> {
        Event {
            kind,
            due,
            delivery: 0,
            to: &[],
            lease_ended: false,
        }
    }

    /// An event with only a kind and a delivery count.
    pub(crate) fn delivery(kind: Kind, delivery: u32) -> Event<'static> {
        Event {
            kind,
            due: 0,
            delivery,
            to: &[],
            lease_ended: false,
        }
    }
}

/// One recorded event, as `DELAYTRACE` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceRecord {
    /// When it happened (Unix ms).
    pub time: u64,
    pub kind: Kind,
    /// `key=value` words: `due=…`, `until=…`, `delivery=…`, `to=…`,
    /// `lease=ended`, `by=…` (the actor, last).
    pub detail: Vec<u8>,
}

/// Flag bits of a stored event.
const HASHED: u8 = 1;
const LEASE_ENDED: u8 = 2;

/// Fixed part of a stored event:
/// `time:u64 kind:u8 flags:u8 due:u64 delivery:u32 mlen:u32`, then the
/// member (or its digest), `tolen:u16 to`, and the actor to the end.
const HEAD: usize = 8 + 1 + 1 + 8 + 4 + 4;

/// How a member is identified in stored events: itself, or its digest when
/// long. The flag says which.
fn member_id(m: &[u8]) -> (std::borrow::Cow<'_, [u8]>, u8) {
    if m.len() <= INLINE_MEMBER {
        (std::borrow::Cow::Borrowed(m), 0)
    } else {
        use sha2::Digest;
        (
            std::borrow::Cow::Owned(sha2::Sha256::digest(m).to_vec()),
            HASHED,
        )
    }
}

fn encode(time: u64, member: &[u8], ev: &Event<'_>, actor: Option<&str>) -> Vec<u8> {
    let (id, mut flags) = member_id(member);
    if ev.lease_ended {
        flags |= LEASE_ENDED;
    }
    // Queue names are at most 65,000 bytes (checked by the command layer).
    let to = &ev.to[..ev.to.len().min(usize::from(u16::MAX))];
    let actor = actor.unwrap_or_default().as_bytes();
    let mut v = Vec::with_capacity(HEAD + id.len() + 2 + to.len() + actor.len());
    v.extend_from_slice(&time.to_be_bytes());
    v.push(ev.kind as u8);
    v.push(flags);
    v.extend_from_slice(&ev.due.to_be_bytes());
    v.extend_from_slice(&ev.delivery.to_be_bytes());
    v.extend_from_slice(&u32::try_from(id.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(&id);
    v.extend_from_slice(&u16::try_from(to.len()).unwrap_or(u16::MAX).to_be_bytes());
    v.extend_from_slice(to);
    v.extend_from_slice(actor);
    v
}

/// Whether a stored event is about the member identified by `(id, flag)`.
fn is_about(v: &[u8], id: &[u8], flag: u8) -> bool {
    let Some(&flags) = v.get(9) else {
        return false;
    };
    let len = v
        .get(22..HEAD)
        .and_then(|b| b.try_into().ok())
        .map_or(0, |b| u32::from_be_bytes(b) as usize);
    flags & HASHED == flag && len == id.len() && v.get(HEAD..HEAD + len) == Some(id)
}

fn decode(v: &[u8]) -> Option<TraceRecord> {
    let u64_at = |at: usize| Some(u64::from_be_bytes(v.get(at..at + 8)?.try_into().ok()?));
    let time = u64_at(0)?;
    let kind = Kind::from_u8(*v.get(8)?)?;
    let flags = *v.get(9)?;
    let due = u64_at(10)?;
    let delivery = u32::from_be_bytes(v.get(18..22)?.try_into().ok()?);
    let mlen = u32::from_be_bytes(v.get(22..HEAD)?.try_into().ok()?) as usize;
    let at = HEAD.checked_add(mlen)?;
    let tolen = usize::from(u16::from_be_bytes(v.get(at..at + 2)?.try_into().ok()?));
    let to = v.get(at + 2..at + 2 + tolen)?;
    let actor = v.get(at + 2 + tolen..)?;
    let mut detail = Vec::new();
    let word = |d: &mut Vec<u8>, key: &str, value: &[u8]| {
        if !d.is_empty() {
            d.push(b' ');
        }
        d.extend_from_slice(key.as_bytes());
        d.push(b'=');
        d.extend_from_slice(value);
    };
    let (due_label, with_delivery) = kind.fields();
    if kind == Kind::DeadLettered {
        word(&mut detail, "to", to);
    }
    if let Some(label) = due_label {
        word(&mut detail, label, due.to_string().as_bytes());
    }
    if with_delivery {
        word(&mut detail, "delivery", delivery.to_string().as_bytes());
    }
    if flags & LEASE_ENDED != 0 {
        word(&mut detail, "lease", b"ended");
    }
    if !actor.is_empty() {
        word(&mut detail, "by", actor);
    }
    Some(TraceRecord { time, kind, detail })
}

/// The trace settings and each traced queue's bounds; owned by the core.
#[derive(Debug)]
pub(crate) struct Tracer {
    /// Queues whose names match are traced; `None`: tracing is off.
    pattern: Option<Bytes>,
    max_events: u64,
    /// Who runs the current command (client id, name, address), recorded
    /// with the events clients cause.
    actor: Option<Arc<str>>,
    /// Per traced queue, the numbers of its kept events: `first..next`.
    bounds: super::FastMap<Bytes, (u64, u64)>,
}

impl Default for Tracer {
    fn default() -> Tracer {
        Tracer {
            pattern: None,
            max_events: DEFAULT_MAX_EVENTS,
            actor: None,
            bounds: super::FastMap::default(),
        }
    }
}

impl Tracer {
    /// Whether any queue is traced: the one branch an event site costs
    /// when tracing is off.
    #[inline]
    pub(crate) fn on(&self) -> bool {
        self.pattern.is_some()
    }

    /// Sets the glob of traced queues (empty: tracing off).
    pub(crate) fn set_pattern(&mut self, pattern: &[u8]) {
        self.pattern = (!pattern.is_empty()).then(|| Bytes::copy_from_slice(pattern));
    }

    /// The glob of traced queues (empty when off).
    pub(crate) fn pattern(&self) -> &[u8] {
        self.pattern.as_deref().unwrap_or_default()
    }

    /// Sets how many events each queue keeps (at least one). A queue over
    /// the new bound drops its oldest events at its next event.
    pub(crate) fn set_max_events(&mut self, n: u64) {
        self.max_events = n.max(1);
    }

    pub(crate) fn max_events(&self) -> u64 {
        self.max_events
    }

    /// Sets the actor, returning the one it replaces.
    pub(crate) fn replace_actor(&mut self, actor: Option<Arc<str>>) -> Option<Arc<str>> {
        std::mem::replace(&mut self.actor, actor)
    }

    pub(crate) fn actor(&self) -> Option<&Arc<str>> {
        self.actor.as_ref()
    }

    /// Forgets every queue's bounds (FLUSHALL cleared the events).
    pub(crate) fn clear(&mut self) {
        self.bounds.clear();
    }

    /// Loads every traced queue's bounds from the store (at start, and when
    /// memory is rebuilt from it).
    ///
    /// # Errors
    ///
    /// A storage error.
    pub(crate) fn load(&mut self, store: &mut Store) -> crate::Result<()> {
        self.bounds = store
            .trace_bounds()?
            .into_iter()
            .map(|(q, first, next)| (q, (first, next)))
            .collect();
        Ok(())
    }

    /// Records an event of member `m` of queue `q` at `time` if `q` is
    /// traced, deleting the queue's oldest events past the bound, all in the
    /// round's batch.
    pub(crate) fn record(
        &mut self,
        store: &mut Store,
        time: u64,
        q: &[u8],
        m: &[u8],
        ev: &Event<'_>,
    ) {
        let Some(pattern) = &self.pattern else {
            return;
        };
        if !crate::glob::matches(pattern, q, false) {
            return;
        }
        let actor = if ev.kind.has_actor() {
            self.actor.as_deref()
        } else {
            None
        };
        let value = encode(time, m, ev, actor);
        // The name is copied once per traced queue, not per event.
        let key = match self.bounds.get_key_value(q) {
            Some((k, _)) => k.clone(),
            None => Bytes::copy_from_slice(q),
        };
        let bounds = self.bounds.entry(key.clone()).or_default();
        let seq = bounds.1;
        store.put_trace(q, seq, value);
        bounds.1 = seq.saturating_add(1);
        while bounds.1 - bounds.0 > self.max_events {
            store.delete_trace(q, bounds.0);
            bounds.0 += 1;
        }
        store.set_trace_bounds(&key, bounds.0, bounds.1);
    }

    /// The kept events of member `m` of queue `q`, oldest first (none if
    /// the queue was never traced). Events already recorded stay readable
    /// after tracing is turned off.
    ///
    /// # Errors
    ///
    /// A storage error, or a corrupt event.
    pub(crate) fn events(
        &self,
        store: &mut Store,
        q: &[u8],
        m: &[u8],
    ) -> crate::Result<Vec<TraceRecord>> {
        let Some(&(first, _)) = self.bounds.get(q) else {
            return Ok(Vec::new());
        };
        let (id, flag) = member_id(m);
        store
            .trace_events(q, first, |v| is_about(v, &id, flag))?
            .iter()
            .map(|v| decode(v).ok_or_else(|| crate::Error::storage("corrupt trace record")))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::exec;
    use crate::engine::clock::ManualClock;
    use crate::engine::core::{Core, Popped};
    use crate::protocol::Reply;

    const T: u64 = 1_700_000_000_000;

    fn open(dir: &std::path::Path, clock: &Arc<ManualClock>) -> Core {
        let mut core = Core::load(Store::open(dir).unwrap(), clock.clone(), 60_000).unwrap();
        core.tick().unwrap();
        core
    }

    /// Runs a command and commits its round, as the engine does.
    fn run(core: &mut Core, args: &[&str]) -> Reply {
        core.fire();
        let r = exec(core, args);
        core.serve_waiters();
        core.store_mut().commit().unwrap();
        r
    }

    fn tick_to(core: &mut Core, clock: &ManualClock, ms: u64) {
        clock.set_ms(ms);
        core.tick().unwrap();
        core.serve_waiters();
        core.store_mut().commit().unwrap();
    }

    /// `(time - T, event, detail)` of each event, oldest first.
    fn trace(core: &mut Core, q: &str, m: &[u8]) -> Vec<(u64, &'static str, String)> {
        core.trace(q.as_bytes(), m)
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.time - T,
                    e.kind.name(),
                    String::from_utf8(e.detail).unwrap(),
                )
            })
            .collect()
    }

    fn at(ms: u64) -> String {
        (T + ms).to_string()
    }

    #[test]
    fn every_kind_of_event_is_recorded_in_order_with_its_actor() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T));
        let mut core = open(dir.path(), &clock);
        core.set_trace_queues(b"*");
        let w: Arc<str> = Arc::from("id=7 name=w addr=127.0.0.1:5000");
        core.set_actor(Some(w.clone()));
        run(&mut core, &["DELAYADD", "q", "AT", &at(100), "m"]);
        run(&mut core, &["DELAYADD", "q", "AT", &at(200), "m"]);
        tick_to(&mut core, &clock, T + 200);
        run(&mut core, &["DELAYPOP", "q", "LEASE", "500"]);
        tick_to(&mut core, &clock, T + 700);
        run(&mut core, &["DELAYPOP", "q", "LEASE", "500"]);
        // A DELAYADD ends the running lease.
        run(&mut core, &["DELAYADD", "q", "AT", &at(700), "m"]);
        run(&mut core, &["DELAYPOP", "q", "LEASE", "100"]);
        run(&mut core, &["DELAYACK", "q", "m"]);
        let by = " by=id=7 name=w addr=127.0.0.1:5000";
        assert_eq!(
            trace(&mut core, "q", b"m"),
            vec![
                (0, "added", format!("due={}{by}", at(100))),
                (0, "rescheduled", format!("due={}{by}", at(200))),
                // The wheel and an expired lease name no client.
                (200, "due", format!("due={}", at(200))),
                (200, "leased", format!("until={} delivery=1{by}", at(700))),
                (700, "lease-expired", "delivery=1".to_string()),
                (700, "leased", format!("until={} delivery=2{by}", at(1_200))),
                (
                    700,
                    "rescheduled",
                    format!("due={} lease=ended{by}", at(700))
                ),
                (700, "leased", format!("until={} delivery=3{by}", at(800))),
                (700, "acked", format!("delivery=3{by}")),
            ]
        );

        // Popped, removed, dead-lettered (the dead-letter queue records its
        // own "added"), put back; without an actor, no `by=`.
        core.set_actor(None);
        run(&mut core, &["DELAYADD", "q", "0", "p", "0", "r", "0", "d"]);
        assert_eq!(
            run(&mut core, &["DELAYPOP", "q"]),
            Reply::Array(vec![Reply::bulk("p")])
        );
        run(&mut core, &["DELAYREM", "q", "r"]);
        run(&mut core, &["DELAYPOP", "q", "LEASE", "10"]);
        tick_to(&mut core, &clock, T + 710);
        let dead = [
            "DELAYPOP",
            "q",
            "LEASE",
            "10",
            "RETRIES",
            "1",
            "DEADLETTER",
            "dlq",
        ];
        assert_eq!(run(&mut core, &dead), Reply::Array(vec![]));
        assert_eq!(
            trace(&mut core, "q", b"p"),
            vec![
                (700, "added", format!("due={}", at(700))),
                (700, "popped", "delivery=1".to_string()),
            ]
        );
        assert_eq!(
            trace(&mut core, "q", b"r"),
            vec![
                (700, "added", format!("due={}", at(700))),
                (700, "removed", format!("due={}", at(700))),
            ]
        );
        assert_eq!(
            trace(&mut core, "q", b"d").last().unwrap(),
            &(710, "dead-lettered", "to=dlq delivery=1".to_string())
        );
        assert_eq!(
            trace(&mut core, "dlq", b"d"),
            vec![(710, "added", format!("due={}", at(710)))]
        );
        // A pop whose reply reached no client is put back.
        let popped: Vec<Popped> = core
            .pop(b"dlq", &crate::engine::core::PopOptions::count(1))
            .unwrap();
        core.restore(&popped).unwrap();
        core.store_mut().commit().unwrap();
        let names: Vec<_> = trace(&mut core, "dlq", b"d")
            .into_iter()
            .map(|e| e.1)
            .collect();
        assert_eq!(names, ["added", "popped", "put-back"]);
        assert_eq!(trace(&mut core, "q", b"never"), vec![]);
    }

    /// A member handed to a blocked client is recorded as taken by that
    /// client, not by the client whose add made it due.
    #[test]
    fn a_blocked_client_keeps_its_own_actor() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T));
        let mut core = open(dir.path(), &clock);
        core.set_trace_queues(b"q");
        core.set_actor(Some(Arc::from("id=1")));
        let (tx, _rx) = tokio::sync::oneshot::channel();
        core.block(
            1,
            crate::engine::core::Waiter {
                keys: vec![Bytes::from_static(b"q")],
                opts: crate::engine::core::PopOptions::count(1),
                tx,
            },
        );
        core.set_actor(Some(Arc::from("id=2")));
        run(&mut core, &["DELAYADD", "q", "0", "m"]);
        let got: Vec<_> = trace(&mut core, "q", b"m")
            .into_iter()
            .map(|e| e.2)
            .collect();
        assert_eq!(
            got,
            [format!("due={T} by=id=2"), "delivery=1 by=id=1".to_string()]
        );
    }

    #[test]
    fn retention_keeps_the_newest_events_and_deletes_the_rest_in_the_same_batch() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T));
        let mut core = open(dir.path(), &clock);
        core.set_trace_queues(b"q");
        core.set_trace_max_events(3);
        for i in 0..5u64 {
            // Each add of "m" is an event of its own (added, then rescheduled).
            core.fire();
            exec(&mut core, &["DELAYADD", "q", "AT", &at(1_000 + i), "m"]);
        }
        let stored = |core: &mut Core| {
            core.store_mut()
                .trace_events(b"q", 0, |_| true)
                .unwrap()
                .len()
        };
        // Before the commit (the batch), and after it.
        assert_eq!(stored(&mut core), 3);
        core.store_mut().commit().unwrap();
        assert_eq!(stored(&mut core), 3);
        let dues: Vec<_> = trace(&mut core, "q", b"m")
            .into_iter()
            .map(|e| e.2)
            .collect();
        assert_eq!(
            dues,
            [
                format!("due={}", at(1_002)),
                format!("due={}", at(1_003)),
                format!("due={}", at(1_004))
            ]
        );
        // A lower bound takes effect at the queue's next event.
        core.set_trace_max_events(1);
        run(&mut core, &["DELAYADD", "q", "AT", &at(2_000), "m"]);
        assert_eq!(stored(&mut core), 1);
        assert_eq!(trace(&mut core, "q", b"m").len(), 1);
    }

    #[test]
    fn traces_survive_a_restart_and_numbering_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T));
        {
            let mut core = open(dir.path(), &clock);
            core.set_trace_queues(b"q");
            core.set_trace_max_events(3);
            run(&mut core, &["DELAYADD", "q", "AT", &at(1), "m"]);
            run(&mut core, &["DELAYADD", "q", "AT", &at(2), "m"]);
            core.store_mut().journal().sync().unwrap();
        }
        let mut core = open(dir.path(), &clock);
        assert_eq!(
            trace(&mut core, "q", b"m").len(),
            2,
            "kept with tracing off"
        );
        core.set_trace_queues(b"q");
        core.set_trace_max_events(3);
        run(&mut core, &["DELAYADD", "q", "AT", &at(3), "m"]);
        run(&mut core, &["DELAYADD", "q", "AT", &at(4), "m"]);
        let dues: Vec<_> = trace(&mut core, "q", b"m")
            .into_iter()
            .map(|e| e.2)
            .collect();
        assert_eq!(
            dues,
            [
                format!("due={}", at(2)),
                format!("due={}", at(3)),
                format!("due={}", at(4))
            ]
        );
    }

    #[test]
    fn off_writes_nothing_and_turning_it_off_keeps_what_was_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T));
        let mut core = open(dir.path(), &clock);
        run(&mut core, &["DELAYADD", "q", "100", "m"]);
        // The member comes due: with tracing off that writes nothing at all.
        clock.set_ms(T + 100);
        core.tick().unwrap();
        assert_eq!(core.store_mut().commit().unwrap(), None);
        run(&mut core, &["DELAYPOP", "q", "LEASE", "10"]);
        assert!(core.store_mut().trace_bounds().unwrap().is_empty());
        assert!(
            core.store_mut()
                .trace_events(b"q", 0, |_| true)
                .unwrap()
                .is_empty()
        );
        assert_eq!(trace(&mut core, "q", b"m"), vec![]);

        // A queue that does not match records nothing either.
        core.set_trace_queues(b"orders:*");
        run(&mut core, &["DELAYADD", "q", "100", "n"]);
        run(&mut core, &["DELAYADD", "orders:1", "100", "n"]);
        assert_eq!(core.store_mut().trace_bounds().unwrap().len(), 1);
        assert_eq!(trace(&mut core, "q", b"n"), vec![]);
        assert_eq!(trace(&mut core, "orders:1", b"n").len(), 1);

        core.set_trace_queues(b"");
        run(&mut core, &["DELAYREM", "orders:1", "n"]);
        assert_eq!(
            trace(&mut core, "orders:1", b"n").len(),
            1,
            "still readable"
        );
    }

    #[test]
    fn del_keeps_a_trace_and_flushall_clears_every_trace() {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T));
        let mut core = open(dir.path(), &clock);
        core.set_trace_queues(b"*");
        run(&mut core, &["DELAYADD", "q", "100", "m"]);
        run(&mut core, &["DEL", "q"]);
        assert_eq!(trace(&mut core, "q", b"m").len(), 1);
        // FLUSHALL and an add in one round: only the add is left.
        core.fire();
        exec(&mut core, &["FLUSHALL"]);
        assert_eq!(trace(&mut core, "q", b"m"), vec![]);
        exec(&mut core, &["DELAYADD", "q", "100", "x"]);
        core.store_mut().commit().unwrap();
        assert_eq!(trace(&mut core, "q", b"m"), vec![]);
        assert_eq!(trace(&mut core, "q", b"x").len(), 1);
        drop(core);
        let mut core = open(dir.path(), &clock);
        assert_eq!(trace(&mut core, "q", b"m"), vec![]);
        assert_eq!(trace(&mut core, "q", b"x").len(), 1);
    }

    #[test]
    fn an_event_round_trips_with_its_detail() {
        let ev = Event {
            kind: Kind::DeadLettered,
            due: 0,
            delivery: 3,
            to: b"dlq",
            lease_ended: false,
        };
        let v = encode(42, b"m", &ev, Some("id=7 name=w"));
        assert!(is_about(&v, b"m", 0));
        assert!(!is_about(&v, b"mm", 0));
        let r = decode(&v).unwrap();
        assert_eq!((r.time, r.kind), (42, Kind::DeadLettered));
        assert_eq!(r.detail, b"to=dlq delivery=3 by=id=7 name=w");
        let ev = Event {
            lease_ended: true,
            ..Event::due(Kind::Rescheduled, 99)
        };
        let r = decode(&encode(1, b"m", &ev, None)).unwrap();
        assert_eq!(r.detail, b"due=99 lease=ended");
    }

    #[test]
    fn a_long_member_is_identified_by_its_digest() {
        let long = vec![b'x'; INLINE_MEMBER + 1];
        let v = encode(1, &long, &Event::due(Kind::Added, 5), None);
        assert!(v.len() < HEAD + 64, "the member is not copied");
        let (id, flag) = member_id(&long);
        assert!(is_about(&v, &id, flag));
        let mut other = long.clone();
        other[0] = b'y';
        let (id, flag) = member_id(&other);
        assert!(!is_about(&v, &id, flag));
        // A short member equal to the digest's bytes is not confused with it.
        let (id, _) = member_id(&long);
        assert!(!is_about(&v, &id, 0));
    }
}
