//! `LATENCY`: the latency monitor of Redis 7.0's latency.c. With
//! `latency-monitor-threshold` set to N milliseconds (0, the default, is
//! off), every event that takes N ms or more is sampled into a series of
//! that event's name: one sample per second (the worst of that second), the
//! latest 160 kept, and the worst ever.
//!
//! Events: `command` (a command slower than the threshold) and
//! `fast-command` (the same, for a command flagged `fast`), as Redis names
//! them, timed where INFO commandstats and the slow log time them.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Args, ClientCommand, Command};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Samples kept per event (Redis's `LATENCY_TS_LEN`).
const SERIES_LEN: usize = 160;

/// One event's samples: a ring of (unix seconds, ms), time 0 meaning empty.
#[derive(Debug, Clone)]
struct Series {
    /// Where the next sample goes.
    idx: usize,
    /// The worst latency ever seen.
    max: u64,
    samples: [(i64, u64); SERIES_LEN],
}

impl Series {
    fn new() -> Series {
        Series {
            idx: 0,
            max: 0,
            samples: [(0, 0); SERIES_LEN],
        }
    }

    /// Redis's `latencyAddSample`: a sample in the same second as the
    /// previous one only raises it.
    fn add(&mut self, now: i64, ms: u64) {
        self.max = self.max.max(ms);
        let prev = (self.idx + SERIES_LEN - 1) % SERIES_LEN;
        if self.samples[prev].0 == now {
            self.samples[prev].1 = self.samples[prev].1.max(ms);
            return;
        }
        self.samples[self.idx] = (now, ms);
        self.idx = (self.idx + 1) % SERIES_LEN;
    }

    /// The samples, oldest first.
    fn history(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        (0..SERIES_LEN)
            .map(|j| self.samples[(self.idx + j) % SERIES_LEN])
            .filter(|(t, _)| *t != 0)
    }

    fn latest(&self) -> (i64, u64) {
        self.samples[(self.idx + SERIES_LEN - 1) % SERIES_LEN]
    }
}

/// The latency monitor: its threshold and the series of every event seen.
#[derive(Debug, Default)]
pub(crate) struct LatencyMonitor {
    /// Milliseconds; 0: off.
    threshold: AtomicU64,
    /// By event name (sorted, so LATENCY LATEST answers in a stable order).
    events: Mutex<BTreeMap<&'static str, Series>>,
}

impl LatencyMonitor {
    /// A monitor with this threshold.
    pub(crate) fn new(threshold_ms: u64) -> LatencyMonitor {
        LatencyMonitor {
            threshold: AtomicU64::new(threshold_ms),
            events: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, Series>) -> T) -> T {
        match self.events.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// `latency-monitor-threshold`.
    pub(crate) fn threshold(&self) -> u64 {
        self.threshold.load(Ordering::Relaxed)
    }

    /// CONFIG SET latency-monitor-threshold.
    pub(crate) fn set_threshold(&self, ms: u64) {
        self.threshold.store(ms, Ordering::Relaxed);
    }

    /// Samples `event` if it took at least the threshold (Redis's
    /// `latencyAddSampleIfNeeded`); one atomic load while the monitor is off.
    pub(crate) fn add_if_needed(&self, event: &'static str, ms: u64) {
        let t = self.threshold.load(Ordering::Relaxed);
        if t == 0 || ms < t {
            return;
        }
        let now = unix_secs();
        self.with(|ev| ev.entry(event).or_insert_with(Series::new).add(now, ms));
    }

    fn latest(&self) -> Reply {
        self.with(|ev| {
            Reply::Array(
                ev.iter()
                    .map(|(name, s)| {
                        let (time, ms) = s.latest();
                        Reply::Array(vec![
                            Reply::bulk(name),
                            Reply::Int(time),
                            int(ms),
                            int(s.max),
                        ])
                    })
                    .collect(),
            )
        })
    }

    fn history(&self, event: &[u8]) -> Reply {
        self.with(|ev| {
            let Some(s) = ev
                .iter()
                .find(|(n, _)| n.as_bytes() == event)
                .map(|(_, s)| s)
            else {
                return Reply::Array(Vec::new());
            };
            Reply::Array(
                s.history()
                    .map(|(t, ms)| Reply::Array(vec![Reply::Int(t), int(ms)]))
                    .collect(),
            )
        })
    }

    /// Forgets the events named (case-insensitively), or all; returns how
    /// many were forgotten.
    fn reset(&self, names: &[bytes::Bytes]) -> usize {
        self.with(|ev| {
            let before = ev.len();
            if names.is_empty() {
                ev.clear();
            } else {
                ev.retain(|n, _| !names.iter().any(|x| x.eq_ignore_ascii_case(n.as_bytes())));
            }
            before - ev.len()
        })
    }

    /// LATENCY DOCTOR: Redis's report, with the advice that applies to
    /// delayd's events.
    fn doctor(&self, slowlog_slower_than: i64) -> String {
        let threshold = self.threshold();
        let now = unix_secs();
        self.with(|ev| {
            let mut out = String::new();
            if ev.is_empty() && threshold == 0 {
                out.push_str("I'm sorry, Dave, I can't do that. Latency monitoring is disabled in this Redis instance. You may use \"CONFIG SET latency-monitor-threshold <milliseconds>.\" in order to enable it. If we weren't in a deep space mission I'd suggest to take a look at https://redis.io/topics/latency-monitor.\n");
                return out;
            }
            if ev.is_empty() {
                out.push_str("Dave, no latency spike was observed during the lifetime of this Redis instance, not in the slightest bit. I honestly think you ought to sit down calmly, take a stress pill, and think things over.\n");
                return out;
            }
            out.push_str("Dave, I have observed latency spikes in this Redis instance. You don't mind talking about it, do you Dave?\n\n");
            let (mut slowlog_off, mut slowlog_tuning, mut commands, mut scheduler) =
                (false, false, false, false);
            for (i, (name, s)) in ev.iter().enumerate() {
                let samples: Vec<u64> = s.history().map(|(_, ms)| ms).collect();
                let n = samples.len() as u64;
                let avg = samples.iter().sum::<u64>() / n.max(1);
                let mad = samples.iter().map(|&m| m.abs_diff(avg)).sum::<u64>() / n.max(1);
                let oldest = s.history().map(|(t, _)| t).min().unwrap_or(now);
                let period = (now - oldest).max(1);
                let _ = writeln!(
                    out,
                    "{}. {name}: {n} latency spikes (average {avg}ms, mean deviation {mad}ms, period {:.2} sec). Worst all time event {}ms.",
                    i + 1,
                    period as f64 / n.max(1) as f64,
                    s.max
                );
                if *name == "command" {
                    if slowlog_slower_than < 0 {
                        slowlog_off = true;
                    } else if slowlog_slower_than / 1000 > i64::try_from(threshold).unwrap_or(i64::MAX) {
                        slowlog_tuning = true;
                    }
                    commands = true;
                }
                if *name == "fast-command" {
                    scheduler = true;
                }
            }
            out.push_str("\nI have a few advices for you:\n\n");
            if slowlog_off {
                let _ = writeln!(out, "- There are latency issues with potentially slow commands you are using. Try to enable the Slow Log Redis feature using the command 'CONFIG SET slowlog-log-slower-than {}'. If the Slow log is disabled Redis is not able to log slow commands execution for you.", threshold.saturating_mul(1000));
            }
            if slowlog_tuning {
                let _ = writeln!(out, "- Your current Slow Log configuration only logs events that are slower than your configured latency monitor threshold. Please use 'CONFIG SET slowlog-log-slower-than {}'.", threshold.saturating_mul(1000));
            }
            if commands {
                out.push_str("- Check your Slow Log to understand what are the commands you are running which are too slow to execute. Please check https://redis.io/commands/slowlog for more information.\n");
            }
            if scheduler {
                out.push_str("- The system is slow to execute Redis code paths not containing system calls. This usually means the system does not provide Redis CPU time to run for long periods. You should try to:\n  1) Lower the system load.\n  2) Use a computer / VM just for Redis if you are running other software in the same system.\n  3) Check if you have a \"noisy neighbour\" problem.\n  4) Check with 'redis-cli --intrinsic-latency 100' what is the intrinsic latency in your system.\n");
            }
            out
        })
    }
}

fn int(v: u64) -> Reply {
    Reply::Int(i64::try_from(v).unwrap_or(i64::MAX))
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `LATENCY`.
///
/// # Format
///
/// ```text
/// LATENCY LATEST
/// LATENCY HISTORY event
/// LATENCY RESET [event ...]
/// LATENCY DOCTOR
/// LATENCY HELP
/// ```
///
/// LATEST: `[event, unix time, latest ms, worst ms]` per event; HISTORY:
/// `[unix time, ms]` pairs, oldest first; RESET: how many events were
/// forgotten. Redis's GRAPH and HISTOGRAM are not offered (INFO
/// latencystats has the per-command percentiles).
#[derive(Debug)]
pub(crate) enum LatencyCmd {
    Latest,
    History(bytes::Bytes),
    Reset(Vec<bytes::Bytes>),
    Doctor,
    Help,
}

/// The table's parser.
///
/// # Errors
///
/// As Redis: an unknown subcommand or a wrong number of arguments.
pub(crate) fn parse(args: &mut Args) -> Result<Command> {
    let s = super::Subcommand::read(args, "latency")?;
    let name = s.name.clone();
    let arity = |n: usize| s.exact(n);
    let cmd = match name.as_str() {
        "latest" => {
            arity(0)?;
            LatencyCmd::Latest
        }
        "history" => {
            arity(1)?;
            LatencyCmd::History(args.next_bytes()?)
        }
        "reset" => LatencyCmd::Reset(args.rest()),
        "doctor" => {
            arity(0)?;
            LatencyCmd::Doctor
        }
        "help" => {
            arity(0)?;
            LatencyCmd::Help
        }
        "graph" | "histogram" => {
            return Err(Error::msg(format!(
                "LATENCY {} is not supported by delayd (INFO latencystats has per-command percentiles)",
                name.to_ascii_uppercase()
            )));
        }
        _ => return Err(s.unknown()),
    };
    Ok(Command::client(cmd))
}

impl ClientCommand for LatencyCmd {
    fn apply(&self, shared: &Shared, _: &mut ClientState) -> Option<Reply> {
        let m = &shared.latency;
        Some(match self {
            LatencyCmd::Latest => m.latest(),
            LatencyCmd::History(event) => m.history(event),
            LatencyCmd::Reset(names) => {
                Reply::Int(i64::try_from(m.reset(names)).unwrap_or(i64::MAX))
            }
            LatencyCmd::Doctor => Reply::bulk(m.doctor(shared.slowlog.slower_than())),
            LatencyCmd::Help => Reply::Array(
                [
                    "LATENCY <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "DOCTOR",
                    "    Return a human readable latency analysis report.",
                    "HISTORY <event>",
                    "    Return time-latency samples for the <event> class.",
                    "LATEST",
                    "    Return the latest latency samples for all events.",
                    "RESET [<event> ...]",
                    "    Reset latency data of one or more <event> classes.",
                    "    (default: reset all data for all event classes)",
                    "HELP",
                    "    Prints this help.",
                ]
                .into_iter()
                .map(Reply::Simple)
                .collect(),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_per_second_the_worst_and_a_bounded_ring() {
        let mut s = Series::new();
        s.add(100, 5);
        s.add(100, 9);
        s.add(100, 3);
        s.add(101, 4);
        assert_eq!(s.history().collect::<Vec<_>>(), [(100, 9), (101, 4)]);
        assert_eq!(s.latest(), (101, 4));
        assert_eq!(s.max, 9);
        for t in 0..200 {
            s.add(1000 + t, 1);
        }
        let h: Vec<_> = s.history().collect();
        assert_eq!(h.len(), SERIES_LEN);
        assert_eq!(h[0], (1040, 1));
        assert_eq!(s.max, 9);
    }

    #[test]
    fn below_the_threshold_or_off_nothing_is_sampled() {
        let m = LatencyMonitor::new(0);
        m.add_if_needed("command", 1000);
        assert_eq!(m.latest(), Reply::Array(vec![]));
        m.set_threshold(10);
        m.add_if_needed("command", 9);
        assert_eq!(m.latest(), Reply::Array(vec![]));
        m.add_if_needed("command", 10);
        m.add_if_needed("fast-command", 12);
        assert_eq!(m.reset(&[bytes::Bytes::from("COMMAND")]), 1);
        assert_eq!(m.reset(&[]), 1);
    }
}
