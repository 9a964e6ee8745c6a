//! `SLOWLOG`: the latest commands that took longer than
//! `slowlog-log-slower-than` microseconds to execute, as Redis 7.0's
//! slowlog.c keeps them.
//!
//! A call is timed once, where INFO commandstats times it
//! ([`super::stats`]): a queue command's `apply` inside its engine round
//! (not the commit or fsync the round then waits for), a client command's
//! `apply`, a transaction control's run. As in Redis, `EXEC` itself is not
//! logged (its flag `skip_slowlog`) but each command it runs is; a blocking
//! pop is logged when it is served (with the time of its attempt to pop, not
//! the time it waited) and not when it times out; a command refused before
//! it runs (unknown, wrong arity, NOAUTH) is not logged; AUTH's and HELLO's
//! credentials and CONFIG SET requirepass's value show as `(redacted)`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;

use super::{Args, ClientCommand, Command, is};
use crate::client::{ClientInfo, ClientState};
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Arguments kept per entry; the last one kept tells how many more there
/// were (Redis's `SLOWLOG_ENTRY_MAX_ARGC`).
const MAX_ARGC: usize = 32;

/// Bytes kept per argument (Redis's `SLOWLOG_ENTRY_MAX_STRING`).
const MAX_STRING: usize = 128;

/// Entries `SLOWLOG GET` returns without a count.
const DEFAULT_GET: usize = 10;

/// Default `slowlog-log-slower-than`, in microseconds.
pub(crate) const DEFAULT_SLOWER_THAN: i64 = 10_000;

/// Default `slowlog-max-len`.
pub(crate) const DEFAULT_MAX_LEN: u64 = 128;

/// One logged call.
#[derive(Debug)]
struct Entry {
    id: u64,
    /// Unix time in seconds when it was logged.
    time: i64,
    /// Execution time in microseconds.
    duration: u64,
    /// The arguments, redacted and cut as Redis cuts them.
    args: Vec<Bytes>,
    addr: String,
    name: String,
}

#[derive(Debug, Default)]
struct Log {
    /// Newest first.
    entries: VecDeque<Entry>,
    next_id: u64,
}

/// The slow log and its two settings.
#[derive(Debug)]
pub(crate) struct SlowLog {
    /// Microseconds; negative: off (CONFIG SET accepts -1 as the only one).
    slower_than: AtomicI64,
    max_len: AtomicU64,
    /// Entries held: lets a call that is not logged see without the lock
    /// whether a lowered `slowlog-max-len` leaves entries to drop.
    len: AtomicUsize,
    log: Mutex<Log>,
}

impl Default for SlowLog {
    fn default() -> Self {
        SlowLog::new(DEFAULT_SLOWER_THAN, DEFAULT_MAX_LEN)
    }
}

impl SlowLog {
    /// A log with these settings.
    pub(crate) fn new(slower_than: i64, max_len: u64) -> SlowLog {
        SlowLog {
            slower_than: AtomicI64::new(slower_than),
            max_len: AtomicU64::new(max_len),
            len: AtomicUsize::new(0),
            log: Mutex::default(),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Log) -> T) -> T {
        match self.log.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Whether calls are logged at all (their arguments are then kept
    /// until they have run).
    pub(crate) fn enabled(&self) -> bool {
        self.slower_than.load(Ordering::Relaxed) >= 0
    }

    /// `slowlog-log-slower-than`.
    pub(crate) fn slower_than(&self) -> i64 {
        self.slower_than.load(Ordering::Relaxed)
    }

    /// `slowlog-max-len`.
    pub(crate) fn max_len(&self) -> u64 {
        self.max_len.load(Ordering::Relaxed)
    }

    /// CONFIG SET slowlog-log-slower-than.
    pub(crate) fn set_slower_than(&self, us: i64) {
        self.slower_than.store(us, Ordering::Relaxed);
    }

    /// CONFIG SET slowlog-max-len: as in Redis, the log is cut to it at the
    /// next call observed (the CONFIG SET itself).
    pub(crate) fn set_max_len(&self, n: u64) {
        self.max_len.store(n, Ordering::Relaxed);
    }

    /// Logs a call that took `us` microseconds if it reaches the threshold,
    /// then drops the oldest entries past `slowlog-max-len` (Redis's
    /// `slowlogPushEntryIfNeeded`).
    pub(crate) fn push_if_needed(&self, args: &[Bytes], client: &ClientInfo, us: u64) {
        let slower_than = self.slower_than.load(Ordering::Relaxed);
        if slower_than < 0 {
            return;
        }
        let max_len = usize::try_from(self.max_len.load(Ordering::Relaxed)).unwrap_or(usize::MAX);
        let log = i64::try_from(us).unwrap_or(i64::MAX) >= slower_than;
        if !log && self.len.load(Ordering::Relaxed) <= max_len {
            return;
        }
        // Built outside the lock: the engine may be waiting on this call.
        let entry = log.then(|| Entry {
            id: 0,
            time: unix_secs(),
            duration: us,
            args: shown_args(args),
            addr: client.addr.clone(),
            name: client.name.lock().map(|n| n.clone()).unwrap_or_default(),
        });
        self.with(|l| {
            if let Some(mut e) = entry {
                e.id = l.next_id;
                l.next_id += 1;
                l.entries.push_front(e);
            }
            l.entries.truncate(max_len);
            self.len.store(l.entries.len(), Ordering::Relaxed);
        });
    }

    /// SLOWLOG LEN.
    fn len(&self) -> usize {
        self.with(|l| l.entries.len())
    }

    /// SLOWLOG RESET (the ids go on counting, as in Redis).
    fn reset(&self) {
        self.with(|l| {
            l.entries.clear();
            self.len.store(0, Ordering::Relaxed);
        });
    }

    /// SLOWLOG GET: the newest `count` entries, newest first.
    fn get(&self, count: usize) -> Reply {
        self.with(|l| {
            Reply::Array(
                l.entries
                    .iter()
                    .take(count)
                    .map(|e| {
                        Reply::Array(vec![
                            Reply::Int(i64::try_from(e.id).unwrap_or(i64::MAX)),
                            Reply::Int(e.time),
                            Reply::Int(i64::try_from(e.duration).unwrap_or(i64::MAX)),
                            Reply::Array(e.args.iter().cloned().map(Reply::Bulk).collect()),
                            Reply::bulk(&e.addr),
                            Reply::bulk(&e.name),
                        ])
                    })
                    .collect(),
            )
        })
    }
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The arguments as an entry shows them: credentials redacted, at most
/// [`MAX_ARGC`] of them (the last telling how many more there were), each
/// cut at [`MAX_STRING`] bytes (telling how many more there were). Each is
/// copied, so an entry never holds on to a connection's read buffer.
fn shown_args(args: &[Bytes]) -> Vec<Bytes> {
    let redacted = redacted(args);
    let kept = args.len().min(MAX_ARGC);
    (0..kept)
        .map(|j| {
            if kept != args.len() && j == kept - 1 {
                return Bytes::from(format!("... ({} more arguments)", args.len() - kept + 1));
            }
            if redacted(j) {
                return Bytes::from_static(b"(redacted)");
            }
            let a = &args[j];
            if a.len() > MAX_STRING {
                let mut s = a[..MAX_STRING].to_vec();
                s.extend_from_slice(
                    format!("... ({} more bytes)", a.len() - MAX_STRING).as_bytes(),
                );
                Bytes::from(s)
            } else {
                Bytes::copy_from_slice(a)
            }
        })
        .collect()
}

/// Which arguments hold secrets: AUTH's and HELLO's credentials (as MONITOR
/// hides them), the value of CONFIG SET requirepass and, as in Redis, every
/// argument of ACL SETUSER after the command (its rules hold passwords). Redis leaves a few
/// malformed calls unredacted (`AUTH a b c`, `HELLO 4 AUTH u p`); delayd
/// redacts them too, a password being a password even in a bad call.
fn redacted(args: &[Bytes]) -> impl Fn(usize) -> bool + use<> {
    let (from, to) = super::monitor::redacted_from(args);
    let config_set =
        args.first().is_some_and(|a| is(a, "config")) && args.get(1).is_some_and(|a| is(a, "set"));
    let secret_values: Vec<usize> = if config_set {
        (2..args.len())
            .step_by(2)
            .filter(|&i| is(&args[i], "requirepass"))
            .map(|i| i + 1)
            .collect()
    } else {
        Vec::new()
    };
    let setuser = args.len() >= 3
        && args.first().is_some_and(|a| is(a, "acl"))
        && args.get(1).is_some_and(|a| is(a, "setuser"));
    move |j| (from..to).contains(&j) || secret_values.contains(&j) || (setuser && j >= 2)
}

/// `SLOWLOG`.
///
/// # Format
///
/// ```text
/// SLOWLOG GET [count]
/// SLOWLOG LEN
/// SLOWLOG RESET
/// SLOWLOG HELP
/// ```
///
/// GET returns the newest `count` entries (10 by default, -1 for all),
/// each `[id, unix time, microseconds, [args...], "ip:port", client name]`.
#[derive(Debug)]
pub(crate) enum SlowlogCmd {
    Get(Option<usize>),
    Len,
    Reset,
    Help,
}

/// The table's parser.
///
/// # Errors
///
/// As Redis: an unknown subcommand, a wrong number of arguments, a bad count.
pub(crate) fn parse(args: &mut Args) -> Result<Command> {
    let s = super::Subcommand::read(args, "slowlog")?;
    let (sub, name, rest) = (s.raw.clone(), s.name.clone(), s.rest);
    let exact = |n: usize| s.exact(n);
    let cmd = match name.as_str() {
        "get" => {
            if rest > 1 {
                return Err(Error::msg(format!(
                    "unknown subcommand or wrong number of arguments for '{}'. Try SLOWLOG HELP.",
                    String::from_utf8_lossy(&sub)
                )));
            }
            match args.try_next() {
                None => SlowlogCmd::Get(Some(DEFAULT_GET)),
                Some(c) => {
                    let bad = || Error::msg("count should be greater than or equal to -1");
                    match super::parse_int(&c).map_err(|_| bad())? {
                        -1 => SlowlogCmd::Get(None),
                        n => SlowlogCmd::Get(Some(usize::try_from(n).map_err(|_| bad())?)),
                    }
                }
            }
        }
        "len" => {
            exact(0)?;
            SlowlogCmd::Len
        }
        "reset" => {
            exact(0)?;
            SlowlogCmd::Reset
        }
        "help" => {
            exact(0)?;
            SlowlogCmd::Help
        }
        _ => return Err(s.unknown()),
    };
    Ok(Command::client(cmd))
}

impl ClientCommand for SlowlogCmd {
    fn apply(&self, shared: &Shared, _: &mut ClientState) -> Option<Reply> {
        let log = &shared.slowlog;
        Some(match self {
            SlowlogCmd::Get(count) => log.get(count.unwrap_or(usize::MAX)),
            SlowlogCmd::Len => Reply::Int(i64::try_from(log.len()).unwrap_or(i64::MAX)),
            SlowlogCmd::Reset => {
                log.reset();
                Reply::OK
            }
            SlowlogCmd::Help => Reply::Array(
                [
                    "SLOWLOG <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "GET [<count>]",
                    "    Return top <count> entries from the slowlog (default: 10, -1 mean all).",
                    "    Entries are made of:",
                    "    id, timestamp, time in microseconds, arguments array, client IP and port,",
                    "    client name",
                    "LEN",
                    "    Return the length of the slowlog.",
                    "RESET",
                    "    Reset the slowlog.",
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

    fn b(items: &[&[u8]]) -> Vec<Bytes> {
        items.iter().map(|s| Bytes::copy_from_slice(s)).collect()
    }

    #[test]
    fn arguments_are_cut_as_redis_cuts_them() {
        let long = vec![b'x'; 130];
        let shown = shown_args(&b(&[b"delayadd", &long]));
        assert_eq!(shown[1].len(), 128 + "... (2 more bytes)".len());
        assert!(shown[1].ends_with(b"x... (2 more bytes)"));
        let many: Vec<Bytes> = (0..40).map(|i| Bytes::from(i.to_string())).collect();
        let shown = shown_args(&many);
        assert_eq!(shown.len(), 32);
        assert_eq!(shown[30], "30");
        assert_eq!(shown[31], "... (9 more arguments)");
        let exact: Vec<Bytes> = (0..32).map(|i| Bytes::from(i.to_string())).collect();
        assert_eq!(shown_args(&exact), exact);
    }

    #[test]
    fn secrets_are_redacted() {
        let r = shown_args(&b(&[b"AUTH", b"u", b"p"]));
        assert_eq!(r, b(&[b"AUTH", b"(redacted)", b"(redacted)"]));
        let r = shown_args(&b(&[b"hello", b"3", b"auth", b"u", b"p", b"setname", b"n"]));
        assert_eq!(
            r,
            b(&[
                b"hello",
                b"3",
                b"auth",
                b"(redacted)",
                b"(redacted)",
                b"setname",
                b"n"
            ])
        );
        let r = shown_args(&b(&[
            b"config",
            b"SET",
            b"maxclients",
            b"5",
            b"RequirePass",
            b"s",
        ]));
        assert_eq!(
            r,
            b(&[
                b"config",
                b"SET",
                b"maxclients",
                b"5",
                b"RequirePass",
                b"(redacted)"
            ])
        );
        let r = shown_args(&b(&[b"ACL", b"setuser", b"u", b"on", b">pw"]));
        assert_eq!(
            r,
            b(&[
                b"ACL",
                b"setuser",
                b"(redacted)",
                b"(redacted)",
                b"(redacted)"
            ])
        );
        let r = shown_args(&b(&[b"config", b"get", b"requirepass"]));
        assert_eq!(r, b(&[b"config", b"get", b"requirepass"]));
    }

    #[test]
    fn entries_are_kept_newest_first_up_to_the_limit() {
        let log = SlowLog::new(0, 2);
        let c = ClientInfo::new(1, "127.0.0.1:1".into(), "127.0.0.1:2".into());
        for i in 0..3 {
            log.push_if_needed(&b(&[b"ping", i.to_string().as_bytes()]), &c, 5);
        }
        assert_eq!(log.len(), 2);
        let Reply::Array(entries) = log.get(usize::MAX) else {
            panic!()
        };
        let Reply::Array(first) = &entries[0] else {
            panic!()
        };
        assert_eq!(first[0], Reply::Int(2));
        assert_eq!(first[2], Reply::Int(5));
        // Lowered, the log is cut at the next call, logged or not.
        log.set_slower_than(10);
        log.set_max_len(1);
        log.push_if_needed(&b(&[b"ping"]), &c, 5);
        assert_eq!(log.len(), 1);
        log.set_slower_than(-1);
        log.push_if_needed(&b(&[b"ping"]), &c, 50);
        assert_eq!(log.len(), 1);
        log.reset();
        assert_eq!(log.len(), 0);
    }
}
