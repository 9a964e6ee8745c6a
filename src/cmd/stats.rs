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

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use bytes::Bytes;

use super::ClientCommand;
use super::table::{COMMANDS, CommandSpec};
use crate::client::{ClientInfo, ClientState};
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

/// Where a call is counted: a row of the command table (every call but a
/// container's), or a name such as `config|get`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StatKey {
    Row(usize),
    Named(String),
}

impl StatKey {
    /// The key of a call of `spec` with `args`: container commands by
    /// subcommand, as Redis 7 counts `config|get`.
    pub(crate) fn of(spec: &'static CommandSpec, args: &[Bytes]) -> StatKey {
        const CONTAINERS: &[&str] = &["client", "config", "command", "slowlog", "latency"];
        match (args.get(1), spec.row()) {
            (Some(sub), _) if args.len() > 1 && CONTAINERS.contains(&spec.name) => {
                StatKey::Named(format!(
                    "{}|{}",
                    spec.name,
                    String::from_utf8_lossy(sub).to_ascii_lowercase()
                ))
            }
            (_, Some(row)) => StatKey::Row(row),
            (_, None) => StatKey::Named(spec.name.to_string()),
        }
    }
}

#[derive(Debug, Default)]
struct Errors {
    by_code: BTreeMap<String, u64>,
    replies: u64,
}

/// Statistics of every command since start (or `CONFIG RESETSTAT`).
///
/// One lock per command table row, taken once per call and never held
/// while another is: counting a call is a few instructions, not a search.
#[derive(Debug)]
pub struct CommandStats {
    rows: Vec<Mutex<CmdStat>>,
    /// Container subcommands (`config|get`), few and rarely called.
    named: Mutex<BTreeMap<String, CmdStat>>,
    errors: Mutex<Errors>,
}

impl Default for CommandStats {
    fn default() -> CommandStats {
        CommandStats {
            rows: COMMANDS.iter().map(|_| Mutex::default()).collect(),
            named: Mutex::default(),
            errors: Mutex::default(),
        }
    }
}

/// Runs `f` on what `m` guards. Statistics stay usable after a panic
/// elsewhere held the lock: a count cannot be left half-written.
fn with<S, T>(m: &Mutex<S>, f: impl FnOnce(&mut S) -> T) -> T {
    match m.lock() {
        Ok(mut g) => f(&mut g),
        Err(p) => f(&mut p.into_inner()),
    }
}

impl CommandStats {
    fn with_stat<T>(&self, key: &StatKey, f: impl FnOnce(&mut CmdStat) -> T) -> T {
        match key {
            StatKey::Row(i) => match self.rows.get(*i) {
                Some(m) => with(m, f),
                None => f(&mut CmdStat::default()),
            },
            StatKey::Named(name) => with(&self.named, |m| {
                if let Some(c) = m.get_mut(name) {
                    f(c)
                } else {
                    f(m.entry(name.clone()).or_default())
                }
            }),
        }
    }

    /// One call counted under `key` that took `ns` (`None`: time not
    /// counted).
    pub(crate) fn record(&self, key: &StatKey, ns: Option<u64>, failed: bool) {
        self.with_stat(key, |c| {
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

    /// A call of `spec` refused before it ran (arity, authentication, not
    /// allowed in a transaction).
    pub fn reject(&self, spec: &'static CommandSpec) {
        let key = spec
            .row()
            .map_or_else(|| StatKey::Named(spec.name.to_string()), StatKey::Row);
        self.with_stat(&key, |c| c.rejected += 1);
    }

    /// Every command's figures by name, in name order.
    fn snapshot(&self) -> Vec<(String, CmdStat)> {
        let mut all: Vec<(String, CmdStat)> = COMMANDS
            .iter()
            .zip(&self.rows)
            .map(|(spec, m)| (spec.name.to_string(), with(m, |c| c.clone())))
            .filter(|(_, c)| c.calls > 0 || c.failed > 0 || c.rejected > 0)
            .collect();
        with(&self.named, |m| {
            all.extend(m.iter().map(|(n, c)| (n.clone(), c.clone())));
        });
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
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
        with(&self.errors, |s| {
            for text in codes {
                s.replies += 1;
                let code = text.split(' ').next().unwrap_or_default();
                if let Some(n) = s.by_code.get_mut(code) {
                    *n += 1;
                } else if s.by_code.len() < MAX_ERROR_CODES {
                    s.by_code.insert(code.to_string(), 1);
                }
            }
        });
    }

    /// `CONFIG RESETSTAT`.
    pub fn reset(&self) {
        for m in &self.rows {
            with(m, |c| *c = CmdStat::default());
        }
        with(&self.named, BTreeMap::clear);
        with(&self.errors, |e| *e = Errors::default());
    }

    /// `total_error_replies` of INFO stats.
    pub fn error_replies(&self) -> u64 {
        with(&self.errors, |e| e.replies)
    }

    /// The lines of INFO `commandstats`.
    pub fn commandstats(&self) -> String {
        let mut out = String::new();
        for (name, c) in self.snapshot() {
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
    }

    /// The lines of INFO `errorstats`.
    pub fn errorstats(&self) -> String {
        with(&self.errors, |e| {
            e.by_code
                .iter()
                .map(|(code, n)| format!("errorstat_{code}:count={n}\r\n"))
                .collect()
        })
    }

    /// The lines of INFO `latencystats`.
    pub fn latencystats(&self) -> String {
        let mut out = String::new();
        for (name, c) in self.snapshot() {
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
    }
}

/// What is known of a call before it runs, for wherever it is observed:
/// INFO commandstats (its key), the slow log (its arguments and client)
/// and the latency monitor (whether it is `fast`).
#[derive(Debug, Clone)]
pub(crate) struct Call {
    /// Where it is counted.
    pub(crate) key: StatKey,
    /// Its arguments, name included; empty while the slow log is off.
    args: Vec<Bytes>,
    /// Table flag `fast`: sampled as the `fast-command` latency event.
    fast: bool,
    /// Table flag `skip_slowlog` (`EXEC`, whose commands are logged instead).
    skip_slowlog: bool,
}

impl Call {
    /// The call of `spec` with `args`, kept while it runs if the slow
    /// log may want them.
    pub(crate) fn new(shared: &Shared, spec: &'static CommandSpec, args: Vec<Bytes>) -> Call {
        let skip_slowlog = spec.flags.contains(&"skip_slowlog");
        Call {
            key: StatKey::of(spec, &args),
            args: if shared.slowlog.enabled() && !skip_slowlog {
                args
            } else {
                Vec::new()
            },
            fast: spec.flags.contains(&"fast"),
            skip_slowlog,
        }
    }
}

/// Records a call by `client` that ran in `ns`: its figures, its latency
/// sample and its slow log entry.
pub(crate) fn observe(shared: &Shared, call: &Call, client: &ClientInfo, ns: u64, failed: bool) {
    shared.cmdstats.record(&call.key, Some(ns), failed);
    observe_time(shared, call, client, ns);
}

/// The latency monitor and the slow log only: a blocking pop's attempt to
/// pop, whose waiting commandstats leave out.
pub(crate) fn observe_time(shared: &Shared, call: &Call, client: &ClientInfo, ns: u64) {
    let event = if call.fast { "fast-command" } else { "command" };
    shared.latency.add_if_needed(event, ns / 1_000_000);
    if !call.skip_slowlog {
        shared.slowlog.push_if_needed(&call.args, client, ns / 1000);
    }
}

/// Runs a client command and observes it. `start`: when the call began
/// (one clock read serves the session and this).
pub(crate) fn apply_client(
    c: &dyn ClientCommand,
    call: &Call,
    shared: &Shared,
    client: &mut ClientState,
    start: Instant,
) -> Option<Reply> {
    let r = c.apply(shared, client);
    let failed = r.as_ref().is_some_and(Reply::is_error);
    observe(shared, call, &client.info, elapsed_ns(start), failed);
    r
}

/// Nanoseconds since `start`.
pub fn elapsed_ns(start: Instant) -> u64 {
    let d = Instant::now().saturating_duration_since(start);
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
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
        let spec = super::super::table::lookup("delayadd").expect("in the table");
        let n = StatKey::of(spec, &[]);
        s.record(&n, Some(3_000), false);
        s.record(&n, Some(1_000), true);
        s.reject(spec);
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
