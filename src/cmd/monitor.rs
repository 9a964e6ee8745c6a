//! `MONITOR`: the client receives every command the server runs, as Redis
//! prints it:
//!
//! ```text
//! +1700000000.123456 [0 127.0.0.1:5555] "DELAYADD" "q" "10" "m"
//! ```
//!
//! Sessions format a line only while someone monitors ([`Shared::monitors`]
//! is read once per command) and send it on a broadcast channel; each
//! monitoring session writes what it receives. As in Redis, administrative
//! commands (CONFIG, SHUTDOWN, MONITOR itself) are not shown, AUTH's and
//! HELLO's passwords are redacted, and commands inside MULTI are shown when
//! EXEC runs them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use tokio::sync::broadcast;

use super::{Args, ClientCommand, Command, is};
use crate::Result;
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;

/// `MONITOR`.
///
/// # Format
///
/// ```text
/// MONITOR
/// ```
#[derive(Debug)]
pub(crate) struct MonitorCmd;

/// The table's parser.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub(crate) fn parse(_: &mut Args) -> Result<Command> {
    Ok(Command::client(MonitorCmd))
}

impl ClientCommand for MonitorCmd {
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        if client.monitor.is_some() {
            // Redis ignores a second MONITOR, without a reply.
            return None;
        }
        client.monitor = Some(Monitor::new(shared, client));
        Some(Reply::OK)
    }
}

/// A client's subscription to the feed; counted in [`Shared::monitors`]
/// while it lives.
pub(crate) struct Monitor {
    rx: broadcast::Receiver<Bytes>,
    /// [`Shared::monitors`], decremented on drop.
    count: Arc<AtomicUsize>,
    info: Arc<crate::client::ClientInfo>,
}

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Monitor")
    }
}

impl Monitor {
    fn new(shared: &Shared, client: &ClientState) -> Monitor {
        // Subscribe first: lines sent from here on are received.
        let rx = shared.monitor_feed.subscribe();
        shared.monitors.fetch_add(1, Ordering::Relaxed);
        client.info.monitor.store(true, Ordering::Relaxed);
        Monitor {
            rx,
            count: shared.monitors.clone(),
            info: client.info.clone(),
        }
    }

    /// The next line of the feed. A monitor that fell more than the
    /// backlog behind skips what it missed.
    pub(crate) async fn next(&mut self) -> Option<Bytes> {
        loop {
            match self.rx.recv().await {
                Ok(line) => return Some(line),
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// A line already received, without waiting.
    pub(crate) fn try_next(&mut self) -> Option<Bytes> {
        loop {
            match self.rx.try_recv() {
                Ok(line) => return Some(line),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.info.monitor.store(false, Ordering::Relaxed);
    }
}

/// Whether a command with these table flags is shown (Redis hides `admin`
/// and `skip_monitor` commands).
pub(crate) fn shown(flags: &[&str]) -> bool {
    !flags.iter().any(|f| *f == "admin" || *f == "skip_monitor")
}

/// The MONITOR line for a command run by the client at `addr`.
pub(crate) fn line(addr: &str, args: &[Bytes]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut out = format!("+{}.{:06} [0 {addr}]", now.as_secs(), now.subsec_micros()).into_bytes();
    let redact_from = redacted_from(args);
    for (i, a) in args.iter().enumerate() {
        out.push(b' ');
        if i >= redact_from.0 && i < redact_from.1 {
            out.extend_from_slice(b"\"(redacted)\"");
        } else {
            quote(a, &mut out);
        }
    }
    out.extend_from_slice(b"\r\n");
    Bytes::from(out)
}

/// The range of arguments Redis redacts: AUTH's, and HELLO's after `AUTH`.
pub(crate) fn redacted_from(args: &[Bytes]) -> (usize, usize) {
    let Some(name) = args.first() else {
        return (0, 0);
    };
    if is(name, "auth") {
        return (1, args.len());
    }
    if is(name, "hello")
        && let Some(at) = args.iter().position(|a| is(a, "auth"))
    {
        return (at + 1, (at + 3).min(args.len()));
    }
    (0, 0)
}

/// Redis's `sdscatrepr`: the argument in double quotes, with `\\`, `\"`,
/// `\n`, `\r`, `\t`, `\a`, `\b` and `\xHH` for other unprintable bytes.
fn quote(a: &[u8], out: &mut Vec<u8>) {
    out.push(b'"');
    for &c in a {
        match c {
            b'\\' | b'"' => out.extend_from_slice(&[b'\\', c]),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x07 => out.extend_from_slice(b"\\a"),
            0x08 => out.extend_from_slice(b"\\b"),
            b' '..=b'~' => out.push(c),
            _ => out.extend_from_slice(format!("\\x{c:02x}").as_bytes()),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&[u8]]) -> Vec<Bytes> {
        a.iter().map(|s| Bytes::copy_from_slice(s)).collect()
    }

    #[test]
    fn lines_quote_as_redis_does() {
        let l = line(
            "127.0.0.1:5555",
            &args(&[b"DELAYADD", b"q", b"a \"b\"\\\n\x01\xff"]),
        );
        let text = String::from_utf8_lossy(&l);
        assert!(text.starts_with('+'), "{text}");
        assert!(
            text.ends_with(
                " [0 127.0.0.1:5555] \"DELAYADD\" \"q\" \"a \\\"b\\\"\\\\\\n\\x01\\xff\"\r\n"
            ),
            "{text}"
        );
        let l = line(
            "a:1",
            &args(&[b"HELLO", b"3", b"AUTH", b"u", b"p", b"SETNAME", b"n"]),
        );
        assert!(String::from_utf8_lossy(&l).ends_with(
            "\"HELLO\" \"3\" \"AUTH\" \"(redacted)\" \"(redacted)\" \"SETNAME\" \"n\"\r\n"
        ));
        let l = line("a:1", &args(&[b"auth", b"secret"]));
        assert!(String::from_utf8_lossy(&l).ends_with("\"auth\" \"(redacted)\"\r\n"));
    }
}
