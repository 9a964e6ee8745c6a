//! A property test of the engine's state machine: random sequences of
//! commands, clock steps, timer steps, commits, journal writes, crashes and
//! power losses, run against [`Core`] over [`MemStorage`] and against a
//! model simple enough to be the spec. They must agree after every step.
//!
//! The model is a map per queue of member → (due, insertion order,
//! deliveries, leased): a member is poppable when its due time has come by
//! the clock, earliest due first, ties in insertion order; a lease moves
//! the due time to the lease's end. Durability is three snapshots of it:
//! the state at the last commit, at the last journal write (what a crash of
//! the process keeps) and at the last sync (what a power loss keeps).
//!
//! Commands go through the real parser and `EngineCmd::apply`, as the
//! engine runs them, and their replies are compared whole. [`Op`] is plain
//! data over small alphabets (so that operations collide: names that
//! prefix each other, a member too long to be a store key), and [`run`]
//! takes any sequence of them, so a fuzzer could drive it too.
//!
//! Runs `PROPTEST_CASES` cases (default [`DEFAULT_CASES`]); for a long run:
//! `PROPTEST_CASES=100000 cargo test --release --lib model`.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;

use crate::cmd::{self, Command};
use crate::engine::clock::{Clock, ManualClock};
use crate::engine::core::{Core, MAX_DUE_MS};
use crate::engine::storage::memory::MemStorage;
use crate::engine::store::Store;
use crate::protocol::Reply;

/// Cases per run when `PROPTEST_CASES` is not set: about 30 s of CPU in a
/// debug build, most of it hashing the long member (SHA-256 and SipHash,
/// unoptimized) in every step's point lookups.
const DEFAULT_CASES: u32 = 128;

/// The clock's start (Unix ms).
const T0: u64 = 1_700_000_000_000;

/// A small horizon, so that delays of a few seconds land on disk.
const HORIZON: u64 = 1_000;

/// `hot-max-members` in the model tests.
const HOT_MAX: usize = 3;

/// Queue names: two that prefix each other, one apart.
const QUEUES: [&str; 3] = ["q", "qq", "r"];

/// Members: four short ones and one too long to be a store key (looked up
/// by its digest).
const MEMBERS: u8 = 5;

fn queue(i: u8) -> Bytes {
    Bytes::from_static(QUEUES[usize::from(i) % QUEUES.len()].as_bytes())
}

fn member(i: u8) -> Bytes {
    static LONG: std::sync::LazyLock<Bytes> =
        std::sync::LazyLock::new(|| Bytes::from(vec![b'L'; 65_536]));
    match i % MEMBERS {
        4 => LONG.clone(),
        i => Bytes::from(format!("m{i}")),
    }
}

/// One step of a sequence.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// `DELAYADD q [NX] [XX] [CH] [AT] v m ...`: `v` is a delay, or with
    /// `at` an offset from `T0 - 3000` (so some are in the past).
    Add {
        q: u8,
        nx: bool,
        xx: bool,
        ch: bool,
        at: bool,
        items: Vec<(u32, u8)>,
    },
    /// `DELAYPOP q COUNT n [LEASE ms [RETRIES r DEADLETTER dlq]] [WITHCOUNTS]`.
    Pop {
        q: u8,
        count: u8,
        lease: Option<u16>,
        retries: Option<(u8, u8)>,
        with_counts: bool,
    },
    Ack {
        q: u8,
        members: Vec<u8>,
    },
    Rem {
        q: u8,
        members: Vec<u8>,
    },
    Del(Vec<u8>),
    FlushAll,
    Score {
        q: u8,
        m: u8,
    },
    Card(u8),
    Range {
        q: u8,
        start: i8,
        stop: i8,
        with_scores: bool,
    },
    /// Moves the clock forward.
    Advance(u16),
    /// Steps the wall clock back.
    StepBack(u16),
    /// What the timer thread does once: fire, commit, one pager step over
    /// at most `budget` queues, commit.
    Timer {
        budget: u8,
    },
    /// Commits the round's batch (the end of a command's round).
    Commit,
    /// Writes the journal to the OS (what every acknowledgement waits for).
    Write,
    /// Fsyncs the journal.
    Sync,
    /// `kill -9` and restart: what was written survives.
    Crash,
    /// Power loss and restart: what was synced survives.
    PowerLoss,
}

impl Op {
    /// The same op with every index within its alphabet (any bytes make a
    /// valid op).
    fn normalized(&self) -> Op {
        let q = |i: &u8| i % QUEUES.len() as u8;
        let m = |i: &u8| i % MEMBERS;
        match self {
            Op::Add {
                q: qi,
                nx,
                xx,
                ch,
                at,
                items,
            } => Op::Add {
                q: q(qi),
                nx: *nx,
                xx: *xx,
                ch: *ch,
                at: *at,
                items: items.iter().map(|(v, mi)| (*v, m(mi))).collect(),
            },
            Op::Pop {
                q: qi,
                count,
                lease,
                retries,
                with_counts,
            } => Op::Pop {
                q: q(qi),
                count: (*count).max(1),
                lease: lease.map(|ms| ms.max(1)),
                retries: retries
                    .filter(|_| lease.is_some())
                    .map(|(n, dlq)| (n.max(1), q(&dlq))),
                with_counts: *with_counts,
            },
            Op::Ack { q: qi, members } => Op::Ack {
                q: q(qi),
                members: members.iter().map(m).collect(),
            },
            Op::Rem { q: qi, members } => Op::Rem {
                q: q(qi),
                members: members.iter().map(m).collect(),
            },
            Op::Del(qs) => Op::Del(qs.iter().map(q).collect()),
            Op::Score { q: qi, m: mi } => Op::Score { q: q(qi), m: m(mi) },
            Op::Card(qi) => Op::Card(q(qi)),
            Op::Range {
                q: qi,
                start,
                stop,
                with_scores,
            } => Op::Range {
                q: q(qi),
                start: *start,
                stop: *stop,
                with_scores: *with_scores,
            },
            other => other.clone(),
        }
    }
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let q = 0..QUEUES.len() as u8;
    let m = 0..MEMBERS;
    let delay = prop_oneof![
        4 => 0u32..5_000,
        1 => Just(0u32),
        1 => Just(HORIZON as u32),
        1 => 0u32..25_000,
    ];
    let add = (
        q.clone(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((delay, m.clone()), 1..4),
    )
        .prop_map(|(q, nx, xx, ch, at, items)| Op::Add {
            q,
            // NX and XX together are refused: rarely.
            nx: nx && !xx,
            xx,
            ch,
            at,
            items,
        });
    let add_nx_xx = (q.clone(), m.clone()).prop_map(|(q, m)| Op::Add {
        q,
        nx: true,
        xx: true,
        ch: false,
        at: false,
        items: vec![(0, m)],
    });
    let pop = (
        q.clone(),
        1u8..4,
        prop::option::weighted(0.5, 1u16..3_000),
        prop::option::weighted(0.3, (1u8..4, q.clone())),
        any::<bool>(),
    )
        .prop_map(|(q, count, lease, retries, with_counts)| Op::Pop {
            q,
            count,
            lease,
            retries: retries.filter(|_| lease.is_some()),
            with_counts,
        });
    let members = prop::collection::vec(m.clone(), 1..4);
    prop_oneof![
        12 => add,
        1 => add_nx_xx,
        8 => pop,
        2 => (q.clone(), members.clone()).prop_map(|(q, members)| Op::Ack { q, members }),
        2 => (q.clone(), members).prop_map(|(q, members)| Op::Rem { q, members }),
        1 => prop::collection::vec(q.clone(), 1..3).prop_map(Op::Del),
        1 => Just(Op::FlushAll),
        2 => (q.clone(), m).prop_map(|(q, m)| Op::Score { q, m }),
        1 => q.clone().prop_map(Op::Card),
        2 => (q, -4i8..4, -4i8..4, any::<bool>())
            .prop_map(|(q, start, stop, with_scores)| Op::Range { q, start, stop, with_scores }),
        6 => (0u16..60).prop_map(Op::Advance),
        2 => (60u16..1_500).prop_map(Op::Advance),
        1 => (1_500u16..6_000).prop_map(Op::Advance),
        1 => (1u16..3_000).prop_map(Op::StepBack),
        5 => (1u8..4).prop_map(|budget| Op::Timer { budget }),
        8 => Just(Op::Commit),
        3 => Just(Op::Write),
        1 => Just(Op::Sync),
        1 => Just(Op::Crash),
        1 => Just(Op::PowerLoss),
    ]
}

/// A member as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rec {
    due: u64,
    /// Insertion order: only its order matters.
    seq: u64,
    deliveries: u32,
    leased: bool,
}

/// Queues by index, members by index; an empty queue does not exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct State(BTreeMap<u8, BTreeMap<u8, Rec>>);

impl State {
    fn get(&self, q: u8, m: u8) -> Option<Rec> {
        self.0.get(&q).and_then(|members| members.get(&m)).copied()
    }

    fn put(&mut self, q: u8, m: u8, rec: Rec) {
        self.0.entry(q).or_default().insert(m, rec);
    }

    fn remove(&mut self, q: u8, m: u8) -> Option<Rec> {
        let members = self.0.get_mut(&q)?;
        let rec = members.remove(&m);
        if members.is_empty() {
            self.0.remove(&q);
        }
        rec
    }

    fn card(&self, q: u8) -> usize {
        self.0.get(&q).map_or(0, BTreeMap::len)
    }

    /// A queue's members in due order, ties in insertion order.
    fn order(&self, q: u8) -> Vec<(u8, Rec)> {
        let mut all: Vec<(u8, Rec)> = self
            .0
            .get(&q)
            .map(|members| members.iter().map(|(&m, &r)| (m, r)).collect())
            .unwrap_or_default();
        all.sort_by_key(|(_, r)| (r.due, r.seq));
        all
    }
}

/// The spec.
#[derive(Debug, Default)]
struct Model {
    /// Everything done, committed or not.
    state: State,
    /// As of the last commit.
    committed: State,
    /// As of the last journal write: what a crash keeps.
    written: State,
    /// As of the last sync: what a power loss keeps.
    synced: State,
    next_seq: u64,
}

impl Model {
    fn seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    /// `DELAYADD`: the reply's count.
    fn add(&mut self, q: u8, nx: bool, xx: bool, ch: bool, items: &[(u64, u8)]) -> i64 {
        let mut count = 0;
        for &(due, m) in items {
            match self.state.get(q, m) {
                None if xx => {}
                None => {
                    let seq = self.seq();
                    self.state.put(
                        q,
                        m,
                        Rec {
                            due,
                            seq,
                            deliveries: 0,
                            leased: false,
                        },
                    );
                    count += 1;
                }
                Some(_) if nx => {}
                // Same due time and no lease to end: nothing changes.
                Some(old) if old.due == due && !old.leased => {}
                Some(old) => {
                    let seq = self.seq();
                    self.state.put(
                        q,
                        m,
                        Rec {
                            due,
                            seq,
                            deliveries: old.deliveries,
                            leased: false,
                        },
                    );
                    if ch {
                        count += 1;
                    }
                }
            }
        }
        count
    }

    /// `DELAYPOP` at `now`: the members handed out, with their deliveries.
    fn pop(
        &mut self,
        q: u8,
        count: usize,
        lease: Option<u64>,
        retries: Option<(u32, u8)>,
        now: u64,
    ) -> Vec<(u8, u32)> {
        let mut out = Vec::new();
        // A lease moves the due time past `now` and the dead-letter queue is
        // another queue, so what is due now is known up front.
        let due: Vec<(u8, Rec)> = self
            .state
            .order(q)
            .into_iter()
            .filter(|(_, r)| r.due <= now)
            .collect();
        for (m, rec) in due {
            if out.len() >= count {
                break;
            }
            if let Some((max, dlq)) = retries
                && rec.deliveries >= max
            {
                self.state.remove(q, m);
                self.add(dlq, false, false, false, &[(now, m)]);
                continue;
            }
            match lease {
                Some(ms) => {
                    let seq = self.seq();
                    self.state.put(
                        q,
                        m,
                        Rec {
                            due: now.saturating_add(ms).min(MAX_DUE_MS),
                            seq,
                            deliveries: rec.deliveries + 1,
                            leased: true,
                        },
                    );
                }
                None => {
                    self.state.remove(q, m);
                }
            }
            out.push((m, rec.deliveries + 1));
        }
        out
    }

    /// `DELAYREM`, or `DELAYACK` with `only_leased`.
    fn remove(&mut self, q: u8, members: &[u8], only_leased: bool) -> i64 {
        let mut n = 0;
        for &m in members {
            match self.state.get(q, m) {
                Some(r) if r.leased || !only_leased => {
                    self.state.remove(q, m);
                    n += 1;
                }
                _ => {}
            }
        }
        n
    }

    fn del(&mut self, qs: &[u8]) -> i64 {
        let mut n = 0;
        for &q in qs {
            if self.state.0.remove(&q).is_some() {
                n += 1;
            }
        }
        n
    }
}

/// Redis's ZRANGE index rules over a list of `len`.
fn rank_window(len: usize, start: i64, stop: i64) -> std::ops::Range<usize> {
    let len = len as i64;
    let start = if start < 0 {
        (len + start).max(0)
    } else {
        start
    };
    let stop = if stop < 0 {
        len + stop
    } else {
        stop.min(len - 1)
    };
    if start > stop || start >= len {
        return 0..0;
    }
    start as usize..(stop + 1) as usize
}

/// A reply, with long bulks shortened, for failure messages.
fn show(r: &Reply) -> String {
    match r {
        Reply::Bulk(b) if b.len() > 16 => format!("Bulk({}×{:?})", b.len(), b[0] as char),
        Reply::Bulk(b) => format!("Bulk({:?})", String::from_utf8_lossy(b)),
        Reply::Array(items) => {
            let items: Vec<String> = items.iter().map(show).collect();
            format!("[{}]", items.join(", "))
        }
        Reply::Pairs(items) => {
            let items: Vec<String> = items
                .iter()
                .map(|(a, b)| format!("({}, {})", show(a), show(b)))
                .collect();
            format!("Pairs[{}]", items.join(", "))
        }
        other => format!("{other:?}"),
    }
}

fn members_reply(items: impl IntoIterator<Item = (u8, i64)>, pairs: bool) -> Reply {
    let items = items.into_iter();
    if pairs {
        Reply::Pairs(
            items
                .map(|(m, n)| (Reply::Bulk(member(m)), Reply::Int(n)))
                .collect(),
        )
    } else {
        Reply::Array(items.map(|(m, _)| Reply::Bulk(member(m))).collect())
    }
}

/// The engine under test and the model beside it.
struct Harness {
    clock: Arc<ManualClock>,
    /// The storage the core runs over (a handle to simulate crashes with).
    mem: MemStorage,
    core: Core,
    model: Model,
}

type Outcome = std::result::Result<(), String>;

fn load(mem: &MemStorage, clock: &Arc<ManualClock>) -> std::result::Result<Core, String> {
    let store = Store::over(Box::new(mem.clone_handle())).map_err(|e| format!("open: {e}"))?;
    let mut core = Core::load(store, clock.clone(), HORIZON).map_err(|e| format!("load: {e}"))?;
    // A budget far below the members the sequences add, so that the horizon
    // shrinks and grows and members move to disk and back all the time.
    core.set_hot_max(HOT_MAX);
    Ok(core)
}

impl Harness {
    fn new() -> std::result::Result<Harness, String> {
        let clock = Arc::new(ManualClock::new(T0));
        let mem = MemStorage::default();
        let core = load(&mem, &clock)?;
        Ok(Harness {
            clock,
            mem,
            core,
            model: Model::default(),
        })
    }

    /// Runs one command as the engine does (fire, apply, serve blocked
    /// clients) and returns its reply; the round stays uncommitted.
    fn command(&mut self, args: Vec<Bytes>) -> Reply {
        self.core.fire();
        let reply = match cmd::parse(args) {
            Ok(Command::Engine(c)) => c.apply(&mut self.core).unwrap_or_else(Reply::from),
            Ok(other) => Reply::Error(format!("not an engine command: {other:?}")),
            Err(e) => Reply::from(e),
        };
        self.core.serve_waiters();
        reply
    }

    fn expect(&mut self, args: Vec<Bytes>, want: Reply) -> Outcome {
        let got = self.command(args);
        if got == want {
            Ok(())
        } else {
            Err(format!("reply {}, model says {}", show(&got), show(&want)))
        }
    }

    /// Commits the round. A round that wrote nothing must have changed
    /// nothing.
    fn commit(&mut self) -> Outcome {
        let lsn = self
            .core
            .store_mut()
            .commit()
            .map_err(|e| format!("commit: {e}"))?;
        if lsn.is_none() && self.model.state != self.model.committed {
            return Err("the round changed state but committed nothing".into());
        }
        self.model.committed = self.model.state.clone();
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Outcome {
        let now = self.clock.now_ms();
        match &op.normalized() {
            Op::Add {
                q,
                nx,
                xx,
                ch,
                at,
                items,
            } => {
                let mut args = vec![Bytes::from_static(b"DELAYADD"), queue(*q)];
                for (on, flag) in [(*nx, "NX"), (*xx, "XX"), (*ch, "CH"), (*at, "AT")] {
                    if on {
                        args.push(Bytes::from_static(flag.as_bytes()));
                    }
                }
                let mut due = Vec::new();
                for &(v, m) in items {
                    let v = u64::from(v);
                    let (arg, d) = if *at {
                        let t = T0 - 3_000 + v;
                        (t, t)
                    } else {
                        (v, now + v)
                    };
                    args.push(Bytes::from(arg.to_string()));
                    args.push(member(m));
                    due.push((d, m));
                }
                let want = if *nx && *xx {
                    Reply::Error("ERR XX and NX options at the same time are not compatible".into())
                } else {
                    Reply::Int(self.model.add(*q, *nx, *xx, *ch, &due))
                };
                self.expect(args, want)
            }
            Op::Pop {
                q,
                count,
                lease,
                retries,
                with_counts,
            } => {
                let mut args = vec![
                    Bytes::from_static(b"DELAYPOP"),
                    queue(*q),
                    Bytes::from_static(b"COUNT"),
                    Bytes::from(count.to_string()),
                ];
                if let Some(ms) = lease {
                    args.push(Bytes::from_static(b"LEASE"));
                    args.push(Bytes::from(ms.to_string()));
                }
                if let Some((n, dlq)) = retries {
                    args.push(Bytes::from_static(b"RETRIES"));
                    args.push(Bytes::from(n.to_string()));
                    args.push(Bytes::from_static(b"DEADLETTER"));
                    args.push(queue(*dlq));
                }
                if *with_counts {
                    args.push(Bytes::from_static(b"WITHCOUNTS"));
                }
                let want = if retries.is_some_and(|(_, dlq)| queue(dlq) == queue(*q)) {
                    Reply::Error("ERR DEADLETTER must name another queue".into())
                } else {
                    let popped = self.model.pop(
                        *q,
                        usize::from(*count),
                        lease.map(u64::from),
                        retries.map(|(n, dlq)| (u32::from(n), dlq)),
                        now,
                    );
                    members_reply(
                        popped.into_iter().map(|(m, n)| (m, i64::from(n))),
                        *with_counts,
                    )
                };
                self.expect(args, want)
            }
            Op::Ack { q, members } | Op::Rem { q, members } => {
                let ack = matches!(op, Op::Ack { .. });
                let name: &'static [u8] = if ack { b"DELAYACK" } else { b"DELAYREM" };
                let mut args = vec![Bytes::from_static(name), queue(*q)];
                args.extend(members.iter().map(|&m| member(m)));
                let want = Reply::Int(self.model.remove(*q, members, ack));
                self.expect(args, want)
            }
            Op::Del(qs) => {
                let mut args = vec![Bytes::from_static(b"DEL")];
                args.extend(qs.iter().map(|&q| queue(q)));
                let want = Reply::Int(self.model.del(qs));
                self.expect(args, want)
            }
            Op::FlushAll => {
                self.model.state = State::default();
                self.expect(vec![Bytes::from_static(b"FLUSHALL")], Reply::OK)
            }
            Op::Score { q, m } => {
                let want = match self.model.state.get(*q, *m) {
                    Some(r) => Reply::Int(r.due as i64),
                    None => Reply::Null,
                };
                self.expect(
                    vec![Bytes::from_static(b"DELAYSCORE"), queue(*q), member(*m)],
                    want,
                )
            }
            Op::Card(q) => {
                let want = Reply::Int(self.model.state.card(*q) as i64);
                self.expect(vec![Bytes::from_static(b"DELAYCARD"), queue(*q)], want)
            }
            Op::Range {
                q,
                start,
                stop,
                with_scores,
            } => {
                let order = self.model.state.order(*q);
                let window = rank_window(order.len(), i64::from(*start), i64::from(*stop));
                let want = members_reply(
                    order[window].iter().map(|(m, r)| (*m, r.due as i64)),
                    *with_scores,
                );
                let mut args = vec![
                    Bytes::from_static(b"DELAYRANGE"),
                    queue(*q),
                    Bytes::from(start.to_string()),
                    Bytes::from(stop.to_string()),
                ];
                if *with_scores {
                    args.push(Bytes::from_static(b"WITHSCORES"));
                }
                self.expect(args, want)
            }
            Op::Advance(ms) => {
                self.clock.advance_ms(u64::from(*ms));
                Ok(())
            }
            Op::StepBack(ms) => {
                self.clock.set_ms(now - u64::from(*ms));
                Ok(())
            }
            Op::Timer { budget } => {
                self.core.fire();
                self.core.serve_waiters();
                self.commit()?;
                let more = self
                    .core
                    .page_step(usize::from(*budget))
                    .map_err(|e| format!("page_step: {e}"))?;
                self.core.serve_waiters();
                self.commit()?;
                if more || self.core.next_wakeup_ms().is_some_and(|t| t <= now) {
                    // The timer thread would go round again at once.
                    return Ok(());
                }
                // The timer thread goes to sleep: by itself (no pop) it has
                // made every due member ready, which wakes blocked consumers.
                for q in 0..QUEUES.len() as u8 {
                    let ready = self.core.info(&queue(q)).ready;
                    let due = self.model.state.order(q);
                    let due = due.iter().filter(|(_, r)| r.due <= now).count();
                    if ready != due as u64 {
                        return Err(format!(
                            "{:?}: {ready} ready after a timer step, model says {due} due",
                            QUEUES[usize::from(q)]
                        ));
                    }
                }
                Ok(())
            }
            Op::Commit => self.commit(),
            Op::Write => {
                self.core
                    .store_mut()
                    .journal()
                    .write()
                    .map_err(|e| format!("write: {e}"))?;
                self.model.written = self.model.committed.clone();
                Ok(())
            }
            Op::Sync => {
                self.core
                    .store_mut()
                    .journal()
                    .sync()
                    .map_err(|e| format!("sync: {e}"))?;
                self.model.written = self.model.committed.clone();
                self.model.synced = self.model.written.clone();
                Ok(())
            }
            Op::Crash => {
                self.mem = self.mem.after_crash();
                self.core = load(&self.mem, &self.clock)?;
                let m = &mut self.model;
                m.state = m.written.clone();
                m.committed = m.written.clone();
                Ok(())
            }
            Op::PowerLoss => {
                self.mem = self.mem.after_power_loss();
                self.core = load(&self.mem, &self.clock)?;
                let m = &mut self.model;
                m.state = m.synced.clone();
                m.committed = m.synced.clone();
                m.written = m.synced.clone();
                Ok(())
            }
        }
    }

    /// The whole state, through the core's own reads: every queue's
    /// cardinality and members in order with their records, every member's
    /// record by point lookup, and the keyspace.
    fn check_state(&mut self) -> Outcome {
        let state = &self.model.state;
        let mut total = 0;
        for qi in 0..QUEUES.len() as u8 {
            let name = queue(qi);
            let want = state.order(qi);
            total += want.len() as u64;
            let card = self.core.card(&name);
            if card != want.len() as u64 {
                return Err(format!(
                    "{:?}: card {card}, model says {}",
                    QUEUES[qi as usize],
                    want.len()
                ));
            }
            if self.core.exists(&name) == want.is_empty() {
                return Err(format!("{:?}: exists disagrees", QUEUES[qi as usize]));
            }
            let got: Vec<_> = self
                .core
                .range(&name, 0, -1, false)
                .map_err(|e| format!("range: {e}"))?
                .into_iter()
                .map(|s| {
                    let m = (0..MEMBERS).find(|&m| member(m) == s.member);
                    (m, s.meta.due, s.meta.deliveries, s.meta.leased())
                })
                .collect();
            let want_order: Vec<_> = want
                .iter()
                .map(|(m, r)| (Some(*m), r.due, r.deliveries, r.leased))
                .collect();
            if got != want_order {
                return Err(format!(
                    "{:?}: range (member, due, deliveries, leased) {got:?}, model says {want_order:?}",
                    QUEUES[qi as usize]
                ));
            }
            for m in 0..MEMBERS {
                let got = self
                    .core
                    .score(&name, &member(m))
                    .map_err(|e| format!("score: {e}"))?
                    .map(|s| (s.due, s.deliveries, s.leased()));
                let want = state.get(qi, m).map(|r| (r.due, r.deliveries, r.leased));
                if got != want {
                    return Err(format!(
                        "{:?} m{m}: record (due, deliveries, leased) {got:?}, model says {want:?}",
                        QUEUES[qi as usize]
                    ));
                }
            }
        }
        if self.core.queue_count() != state.0.len() {
            return Err(format!(
                "{} queues, model says {}",
                self.core.queue_count(),
                state.0.len()
            ));
        }
        let members = self.core.totals().members;
        if members != total {
            return Err(format!("{members} members in total, model says {total}"));
        }
        Ok(())
    }
}

/// Runs a sequence against the core and the model; the first disagreement,
/// with the step it happened at.
pub(crate) fn run(ops: &[Op]) -> Outcome {
    let mut h = Harness::new()?;
    for (i, op) in ops.iter().enumerate() {
        let at = h.clock.now_ms().wrapping_sub(T0) as i64;
        h.step(op)
            .and_then(|()| h.check_state())
            .map_err(|e| format!("step {i} ({op:?}, clock T0{at:+}): {e}"))?;
    }
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Shrunk failures become named regression tests below, not files.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn core_agrees_with_the_model(ops in prop::collection::vec(op_strategy(), 1..120)) {
        run(&ops).map_err(TestCaseError::fail)?;
    }
}

/// Shrunk failures the property test found, kept as regression tests.
mod regressions {
    use super::Op::{self, *};
    use super::run;

    fn add(q: u8, delay: u32, m: u8) -> Op {
        Add {
            q,
            nx: false,
            xx: false,
            ch: false,
            at: false,
            items: vec![(delay, m)],
        }
    }

    fn check(ops: &[Op]) {
        if let Err(e) = run(ops) {
            panic!("{e}");
        }
    }

    /// FLUSHALL then DELAYADD in one round (a pipeline, MULTI): the add
    /// found a cold member that FLUSHALL had removed, in storage under the
    /// uncommitted clear, and took it for a reschedule (reply 0, and the
    /// queue's cardinality missed the member).
    #[test]
    fn an_add_after_flushall_in_the_same_round_does_not_see_flushed_cold_members() {
        let add_two = Add {
            q: 1,
            nx: false,
            xx: false,
            ch: false,
            at: false,
            // A cold member first, so that the queue has one on disk and
            // the next add looks there.
            items: vec![(1001, 2), (0, 1)],
        };
        check(&[add(1, 1001, 1), Commit, FlushAll, add_two]);
    }

    /// A queue paged in by a pager step cut short by its budget, then given
    /// a member beyond the old horizon (cold, though within the step's
    /// target), was paged in again by the next step: the scan started at
    /// the old horizon, placed the members already in memory a second time
    /// and counted them off the queue's cold members, so a member still on
    /// disk no longer answered DELAYSCORE.
    #[test]
    fn a_queue_is_not_paged_in_twice_when_paging_is_cut_short() {
        check(&[
            add(0, 1500, 0),
            add(0, 5000, 2),
            add(2, 1500, 0),
            Commit,
            Advance(600),
            Timer { budget: 1 },
            add(0, 900, 1),
            Commit,
            Timer { budget: 1 },
            Timer { budget: 1 },
            Advance(900),
            Pop {
                q: 0,
                count: 3,
                lease: None,
                retries: None,
                with_counts: false,
            },
        ]);
    }

    /// A member rescheduled below its queue's floor (the floor rose with a
    /// pop; DELAYADD AT a past time moved the member under it) lowered the
    /// floor in memory only: after a restart, scans started at the recorded
    /// floor and the member was gone from DELAYRANGE and never paged in.
    #[test]
    fn a_reschedule_below_the_floor_survives_a_restart() {
        let add_at = |xx, t| Add {
            q: 0,
            nx: false,
            xx,
            ch: false,
            at: true,
            items: vec![(t, 1)],
        };
        check(&[
            add_at(false, 521),
            Pop {
                q: 0,
                count: 1,
                lease: Some(1),
                retries: None,
                with_counts: false,
            },
            add_at(true, 0),
            Commit,
            Write,
            Crash,
        ]);
    }

    /// A restart loads members up to the new horizon, further than the
    /// recorded one: members that were cold kept their point-lookup entry,
    /// so once popped they still answered DELAYSCORE (and DELAYADD took a
    /// new add of them for a reschedule).
    #[test]
    fn members_paged_in_by_a_restart_are_gone_once_popped() {
        check(&[
            Add {
                q: 2,
                nx: false,
                xx: false,
                ch: false,
                at: false,
                items: vec![(1001, 0), (0, 2), (5693, 1)],
            },
            Commit,
            Write,
            Advance(1500),
            Crash,
            Pop {
                q: 2,
                count: 2,
                lease: None,
                retries: None,
                with_counts: false,
            },
        ]);
    }

    /// The clock moved past the pager (a jump forward, or the process
    /// stopped for more than half a horizon) and no timer step ran yet:
    /// members due by the clock but still on disk were not popped, even one
    /// added a moment ago with no delay.
    #[test]
    fn a_pop_sees_due_members_the_pager_has_not_reached() {
        let pop = Pop {
            q: 2,
            count: 3,
            lease: None,
            retries: None,
            with_counts: false,
        };
        check(&[Advance(1001), add(2, 0, 0), pop.clone()]);
        check(&[add(2, 1001, 0), add(2, 0, 1), Advance(1001), pop]);
    }

    /// A member that came due stayed in its ready list when the wall clock
    /// stepped back, and was delivered before its due time by the clock.
    #[test]
    fn a_step_back_makes_due_members_wait_for_the_clock_again() {
        let pop = |lease| Pop {
            q: 0,
            count: 2,
            lease,
            retries: None,
            with_counts: true,
        };
        check(&[add(0, 0, 0), StepBack(1), pop(None), Advance(1), pop(None)]);
        // A lease that ran out is running again after the step back.
        check(&[
            add(0, 0, 0),
            pop(Some(10)),
            Advance(10),
            Timer { budget: 1 },
            StepBack(5),
            pop(Some(10)),
            Advance(5),
            pop(Some(10)),
        ]);
    }

    /// The same for a blocked consumer: it is served when the wall clock
    /// reaches the member's due time again, not before (and not never).
    #[test]
    fn a_blocked_consumer_waits_for_the_clock_after_a_step_back() {
        use crate::engine::core::{PopOptions, Waiter};

        let mut h = super::Harness::new().unwrap();
        h.step(&add(0, 0, 0)).unwrap();
        h.step(&StepBack(100)).unwrap();
        h.core.fire();
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        h.core.block(
            1,
            Waiter {
                keys: vec![super::queue(0)],
                opts: PopOptions::count(1),
                tx,
            },
        );
        assert!(
            h.core.take_waiter_replies().is_empty(),
            "served before the due time"
        );
        h.step(&Advance(100)).unwrap();
        h.core.fire();
        h.core.serve_waiters();
        let replies = h.core.take_waiter_replies();
        assert_eq!(replies.len(), 1, "not served once due again");
        assert!(rx.try_recv().is_err());
    }

    /// A pager step cut short by its budget paged a queue in beyond the
    /// recorded horizon (dropping point-lookup entries), the wall clock
    /// stepped back, and the process restarted: the restart loaded only up
    /// to the recorded horizon, and the member, cold again but with no
    /// entry, was not found by DELAYSCORE (nor DELAYACK, nor DELAYADD).
    #[test]
    fn members_paged_in_before_a_step_back_and_a_restart_stay_found() {
        check(&[
            add(1, 0, 0),
            Advance(878),
            add(0, 1000, 0),
            Pop {
                q: 1,
                count: 1,
                lease: Some(123),
                retries: None,
                with_counts: false,
            },
            Timer { budget: 1 },
            StepBack(878),
            Write,
            Crash,
        ]);
        // The same through a pop that paged in what was due.
        check(&[
            add(0, 1500, 0),
            add(0, 1550, 1),
            Advance(1600),
            Pop {
                q: 0,
                count: 1,
                lease: None,
                retries: None,
                with_counts: false,
            },
            Commit,
            Write,
            StepBack(1500),
            Crash,
        ]);
    }

    /// A queue whose cold members all left (rescheduled into memory) kept
    /// its earliest cold due time after the pager dropped its heap entry;
    /// a member that later went cold beyond that time was never scheduled
    /// for paging: it was never paged in nor came due, and a restart left
    /// it with a stale point-lookup entry, found again after DELAYREM.
    #[test]
    fn a_queue_that_goes_cold_again_is_paged_in_again() {
        let lease_pop = Pop {
            q: 2,
            count: 1,
            lease: Some(1001),
            retries: None,
            with_counts: false,
        };
        let adds = |items| Add {
            q: 2,
            nx: false,
            xx: false,
            ch: false,
            at: false,
            items,
        };
        let first = [
            adds(vec![(0, 0), (0, 2)]),
            // m2 goes cold and comes back: the queue has no cold member.
            adds(vec![(1001, 2), (0, 2)]),
            Advance(1500),
            Timer { budget: 1 },
            // m0 goes cold (its lease ends beyond the horizon).
            lease_pop,
            Advance(500),
            Timer { budget: 1 },
        ];
        let mut ops = first.to_vec();
        ops.extend([
            Write,
            Crash,
            Advance(1),
            add(2, 1000, 1),
            Rem {
                q: 2,
                members: vec![0],
            },
        ]);
        check(&ops);

        // Without a restart: once due, m0 is ready by the timer alone.
        let mut h = super::Harness::new().unwrap();
        for op in first.iter().chain(&[Advance(501), Timer { budget: 1 }]) {
            h.step(op).unwrap();
        }
        assert_eq!(h.core.info(b"r").ready, 2, "m0 was never paged in");
    }
}
