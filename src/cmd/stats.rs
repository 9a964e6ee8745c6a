//! Per-command statistics: INFO `commandstats`, `errorstats` and
//! `latencystats`, in Redis 7.0's field formats (redis_exporter parses
//! them), reset by `CONFIG RESETSTAT`.
//!
//! A command's time is its own execution: for a queue command, its `apply`
//! inside the engine round (not the commit or fsync the round then waits
//! for, as Redis's figure leaves out the AOF fsync); for other commands,
//! their `apply`; for `EXEC`, the whole transaction. A blocking pop counts
//! its calls but not its time (waiting is not executing, and Redis too
//! counts only the execution).
//!
//! The same measurement feeds the slow log ([`super::slowlog`]) and the
//! latency monitor ([`super::latency`]): a call is timed once.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use super::table::CommandSpec;
use super::{ClientCommand, Command, EngineCommand};
use crate::Result;
use crate::client::{ClientInfo, ClientState};
use crate::engine::core::{Core, Popped};
use crate::protocol::Reply;
use crate::shared::Shared;

/// Redis stops tracking new error codes past this many (its
/// `ERROR_STATS_NUMBER`), so a client cannot grow the table without end.
const MAX_ERROR_CODES: usize = 128;

/// The percentiles `latencystats` reports (Redis's default
/// `latency-tracking-info-percentiles`).
const PERCENTILES: [(&str, f64); 3] = [("p50", 50.0), ("p99", 99.0), ("p99.9", 99.9)];

/// A command's figures.
#[derive(Debug, Default, Clone)]
struct CmdStat {
    calls: u64,
    nanos: u64,
    rejected: u64,
    failed: u64,
    hist: Histogram,
}

/// A log-linear latency histogram in nanoseconds: 16 sub-buckets per power
/// of two (about 6 % resolution, as coarse as Redis's 2 significant digits).
#[derive(Debug, Default, Clone)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < 32 {
            return v as usize;
        }
        let e = 63 - u64::from(v.leading_zeros());
        let m = (v >> (e - 4)) & 15;
        32 + ((e - 5) * 16 + m) as usize
    }

    /// The highest value that falls in bucket `i`.
    fn upper(i: usize) -> u64 {
        if i < 32 {
            return i as u64;
        }
        let e = (i - 32) / 16 + 5;
        let m = ((i - 32) % 16) as u64;
        let lower = (16 + m) << (e - 4);
        lower.saturating_add((1u64 << (e - 4)) - 1)
    }

    fn record(&mut self, ns: u64) {
        let i = Self::index(ns.max(1));
        if self.buckets.len() <= i {
            self.buckets.resize(i + 1, 0);
        }
        self.buckets[i] += 1;
        self.count += 1;
    }

    /// The value at percentile `p` (0..=100), as hdr_histogram reports it:
    /// the highest value of the bucket holding that rank.
    fn percentile(&self, p: f64) -> u64 {
        let rank = ((p / 100.0) * self.count as f64 + 0.5) as u64;
        let rank = rank.max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Self::upper(i);
            }
        }
        0
    }
}

#[derive(Debug, Default)]
struct Inner {
    cmds: BTreeMap<Cow<'static, str>, CmdStat>,
    errors: BTreeMap<String, u64>,
    error_replies: u64,
}

/// Statistics of every command since start (or `CONFIG RESETSTAT`).
#[derive(Debug, Default)]
pub struct CommandStats(Mutex<Inner>);

impl CommandStats {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        match self.0.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// One call of `name` that took `ns` (`None`: time not counted).
    #[expect(
        clippy::ptr_arg,
        reason = "a Cow clones a static name without allocating"
    )]
    pub fn record(&self, name: &Cow<'static, str>, ns: Option<u64>, failed: bool) {
        self.with(|s| {
            let c = stat(s, name);
            c.calls += 1;
            if failed {
                c.failed += 1;
            }
            if let Some(ns) = ns {
                c.nanos = c.nanos.saturating_add(ns);
                c.hist.record(ns);
            }
        });
    }

    /// A call of `name` refused before it ran (arity, authentication, not
    /// allowed in a transaction).
    pub fn reject(&self, name: &'static str) {
        self.with(|s| stat(s, &Cow::Borrowed(name)).rejected += 1);
    }

    /// Counts the errors in a reply sent to a client, by code (the first
    /// word), including those inside an `EXEC` reply.
    pub fn count_errors(&self, reply: &Reply) {
        let mut codes = Vec::new();
        match reply {
            Reply::Error(e) => codes.push(e.as_str()),
            Reply::Array(items) => {
                codes.extend(items.iter().filter_map(|r| match r {
                    Reply::Error(e) => Some(e.as_str()),
                    _ => None,
                }));
            }
            _ => {}
        }
        if codes.is_empty() {
            return;
        }
        self.with(|s| {
            for text in codes {
                s.error_replies += 1;
                let code = text.split(' ').next().unwrap_or_default();
                if let Some(n) = s.errors.get_mut(code) {
                    *n += 1;
                } else if s.errors.len() < MAX_ERROR_CODES {
                    s.errors.insert(code.to_string(), 1);
                }
            }
        });
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        self.with(|s| *s = Inner::default());
    }

    /// `total_error_replies` of INFO stats.
    pub fn error_replies(&self) -> u64 {
        self.with(|s| s.error_replies)
    }

    /// The lines of INFO `commandstats`.
    pub fn commandstats(&self) -> String {
        self.with(|s| {
            let mut out = String::new();
            for (name, c) in &s.cmds {
                if c.calls == 0 && c.failed == 0 && c.rejected == 0 {
                    continue;
                }
                let usec = c.nanos / 1000;
                let per_call = if c.calls == 0 {
                    0.0
                } else {
                    usec as f64 / c.calls as f64
                };
                let _ = write!(
                    out,
                    "cmdstat_{name}:calls={},usec={usec},usec_per_call={per_call:.2},rejected_calls={},failed_calls={}\r\n",
                    c.calls, c.rejected, c.failed
                );
            }
            out
        })
    }

    /// The lines of INFO `errorstats`.
    pub fn errorstats(&self) -> String {
        self.with(|s| {
            s.errors
                .iter()
                .map(|(code, n)| format!("errorstat_{code}:count={n}\r\n"))
                .collect()
        })
    }

    /// The lines of INFO `latencystats`.
    pub fn latencystats(&self) -> String {
        self.with(|s| {
            let mut out = String::new();
            for (name, c) in &s.cmds {
                if c.hist.count == 0 {
                    continue;
                }
                let _ = write!(out, "latency_percentiles_usec_{name}:");
                for (i, (label, p)) in PERCENTILES.iter().enumerate() {
                    let sep = if i == 0 { "" } else { "," };
                    let us = c.hist.percentile(*p) as f64 / 1000.0;
                    let _ = write!(out, "{sep}{label}={us:.3}");
                }
                out.push_str("\r\n");
            }
            out
        })
    }
}

#[expect(
    clippy::ptr_arg,
    reason = "a Cow clones a static name without allocating"
)]
fn stat<'a>(s: &'a mut Inner, name: &Cow<'static, str>) -> &'a mut CmdStat {
    s.cmds.entry(name.clone()).or_default()
}

/// The name a call is counted under: container commands by subcommand, as
/// Redis 7 counts `config|get`.
pub fn stat_name(name: &'static str, args: &[Bytes]) -> Cow<'static, str> {
    const CONTAINERS: &[&str] = &["client", "config", "command", "slowlog", "latency"];
    match args.get(1) {
        Some(sub) if CONTAINERS.contains(&name) => Cow::Owned(format!(
            "{name}|{}",
            String::from_utf8_lossy(sub).to_ascii_lowercase()
        )),
        _ => Cow::Borrowed(name),
    }
}

/// What is known of a call before it runs, for wherever it is observed:
/// INFO commandstats (its name), the slow log (its arguments and client)
/// and the latency monitor (whether it is `fast`).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// The name it is counted under ([`stat_name`]).
    pub(crate) name: Cow<'static, str>,
    /// Its arguments, name included; empty while the slow log is off.
    args: Vec<Bytes>,
    client: Arc<ClientInfo>,
    /// Table flag `fast`: sampled as the `fast-command` latency event.
    fast: bool,
    /// Table flag `skip_slowlog` (`EXEC`, whose commands are logged instead).
    skip_slowlog: bool,
}

impl Call {
    /// The call of `spec` with `args` by `client`.
    pub(crate) fn new(
        shared: &Shared,
        spec: &CommandSpec,
        args: &[Bytes],
        client: &Arc<ClientInfo>,
    ) -> Call {
        let skip_slowlog = spec.flags.contains(&"skip_slowlog");
        Call {
            name: stat_name(spec.name, args),
            // The only copy the slow log needs: kept while the call runs.
            args: if shared.slowlog.enabled() && !skip_slowlog {
                args.to_vec()
            } else {
                Vec::new()
            },
            client: client.clone(),
            fast: spec.flags.contains(&"fast"),
            skip_slowlog,
        }
    }
}

/// Records a call that ran in `ns`: its figures, its latency sample and
/// its slow log entry.
pub(crate) fn observe(shared: &Shared, call: &Call, ns: u64, failed: bool) {
    shared.cmdstats.record(&call.name, Some(ns), failed);
    observe_time(shared, call, ns);
}

/// The latency monitor and the slow log only: a blocking pop's attempt to
/// pop, whose waiting commandstats leave out.
pub(crate) fn observe_time(shared: &Shared, call: &Call, ns: u64) {
    let event = if call.fast { "fast-command" } else { "command" };
    shared.latency.add_if_needed(event, ns / 1_000_000);
    if !call.skip_slowlog {
        shared
            .slowlog
            .push_if_needed(&call.args, &call.client, ns / 1000);
    }
}

/// A queue command that counts its calls and time.
struct TimedEngine {
    inner: Box<dyn EngineCommand>,
    call: Call,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TimedEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedEngine")
            .field("name", &self.call.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl EngineCommand for TimedEngine {
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        self.apply_popped(core).map(|(r, _)| r)
    }

    // The wrapper is transparent: a pop still hands back its members for
    // the put-back, and a large reply still runs in a round of its own.
    fn may_reply_large(&self) -> bool {
        self.inner.may_reply_large()
    }

    fn apply_popped(&self, core: &mut Core) -> Result<(Reply, Vec<Popped>)> {
        let start = Instant::now();
        let r = self.inner.apply_popped(core);
        let failed = r.as_ref().map_or(true, |(reply, _)| reply.is_error());
        observe(&self.shared, &self.call, elapsed_ns(start), failed);
        r
    }
}

/// A client command that counts its calls and time.
struct TimedClient {
    inner: Box<dyn ClientCommand>,
    call: Call,
}

impl std::fmt::Debug for TimedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedClient")
            .field("name", &self.call.name)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl ClientCommand for TimedClient {
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        let start = Instant::now();
        let r = self.inner.apply(shared, client);
        let failed = r.as_ref().is_some_and(Reply::is_error);
        observe(shared, &self.call, elapsed_ns(start), failed);
        r
    }
}

/// Nanoseconds since `start`.
pub fn elapsed_ns(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Makes a parsed command observe its calls and time wherever it runs (in
/// a pipeline's engine round, inside `EXEC`). Blocking pops and transaction
/// controls are observed by the session: their call is handed back.
pub(crate) fn timed(shared: &Arc<Shared>, call: Call, c: Command) -> (Command, Option<Call>) {
    match c {
        Command::Engine(inner) => (
            Command::Engine(Box::new(TimedEngine {
                inner,
                call,
                shared: shared.clone(),
            })),
            None,
        ),
        Command::Client(inner) => (Command::Client(Box::new(TimedClient { inner, call })), None),
        Command::Blocking(mut b) => {
            // Inside EXEC a blocking pop runs at once, as this.
            b.now = Box::new(TimedEngine {
                inner: b.now,
                call: call.clone(),
                shared: shared.clone(),
            });
            (Command::Blocking(b), Some(call))
        }
        other => (other, Some(call)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_cover_values_and_percentiles_are_upper_bounds() {
        for v in [1u64, 31, 32, 33, 1000, 1_000_000, u64::MAX / 2] {
            let i = Histogram::index(v);
            assert!(Histogram::upper(i) >= v, "{v}");
            assert!(i == 0 || Histogram::upper(i - 1) < v, "{v}");
        }
        let mut h = Histogram::default();
        for _ in 0..99 {
            h.record(1000);
        }
        h.record(1_000_000);
        assert!((1000..1070).contains(&h.percentile(50.0)));
        assert!((1000..1070).contains(&h.percentile(99.0)));
        assert!(h.percentile(99.9) >= 1_000_000);
    }

    #[test]
    fn formats_match_redis() {
        let s = CommandStats::default();
        let n = Cow::Borrowed("delayadd");
        s.record(&n, Some(3_000), false);
        s.record(&n, Some(1_000), true);
        s.reject("delayadd");
        s.count_errors(&Reply::Error("ERR syntax error".into()));
        s.count_errors(&Reply::Array(vec![
            Reply::OK,
            Reply::Error("WRONGTYPE x".into()),
        ]));
        assert_eq!(
            s.commandstats(),
            "cmdstat_delayadd:calls=2,usec=4,usec_per_call=2.00,rejected_calls=1,failed_calls=1\r\n"
        );
        assert_eq!(
            s.errorstats(),
            "errorstat_ERR:count=1\r\nerrorstat_WRONGTYPE:count=1\r\n"
        );
        let lat = s.latencystats();
        assert!(
            lat.starts_with("latency_percentiles_usec_delayadd:p50=1.0")
                && lat.contains(",p99=3.")
                && lat.contains(",p99.9=3.")
                && lat.ends_with("\r\n"),
            "{lat}"
        );
        s.reset();
        assert_eq!(s.commandstats(), "");
        assert_eq!(s.error_replies(), 0);
    }
}
