//! Request framing: RESP multibulk arrays and inline (telnet) commands.
//!
//! A Redis server accepts only two request shapes, an array of bulk strings or
//! a line of space-separated words, and answers malformed input with fixed
//! texts that clients and tests match on (see Redis's `networking.c`). This
//! decoder implements exactly that, incrementally: the state of a partly
//! received array is kept between reads, so a large pipeline that arrives in
//! pieces is scanned once, and nothing is ever allocated for a length a client
//! merely declared (buffers grow only with bytes that actually arrive).
//!
//! `redis-protocol`'s general frame decoder is used for replies in the tests;
//! for requests it would accept nested arrays and integers (which Redis
//! rejects), recurse on hostile nesting and re-parse partial frames from the
//! start, so requests are framed here.

use bytes::{Buf, Bytes, BytesMut};

use crate::{Error, Result};

/// Longest inline request or length line accepted before a newline (Redis's
/// `PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX: usize = 64 * 1024;

/// Limits that apply while framing one connection's requests.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest bulk string accepted (`proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most arguments accepted in one command.
    pub max_args: usize,
    /// Whether the client has authenticated. Until then, as in Redis, arrays
    /// are limited to 10 elements and bulk strings to 16 KiB, so an anonymous
    /// client cannot make the server buffer much.
    pub authenticated: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_args: 1024 * 1024,
            authenticated: true,
        }
    }
}

/// Incremental request decoder for one connection.
#[derive(Debug, Default)]
pub struct Decoder {
    /// The array being received: how many bulks are still expected and those
    /// already complete.
    pending: Option<Multibulk>,
}

#[derive(Debug)]
struct Multibulk {
    remaining: usize,
    args: Vec<Bytes>,
    /// Length of the bulk whose header has been read but whose data has not
    /// fully arrived.
    bulk_len: Option<usize>,
}

fn protocol(msg: impl Into<String>) -> Error {
    Error::Protocol(msg.into())
}

/// Redis's `string2ll` for protocol lengths: optional `-`, digits, no leading
/// zeros, no sign `+`, no spaces.
fn parse_len(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 || (digits[0] == b'0' && digits.len() > 1) {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?;
    }
    if neg && v == 0 {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// Finds a complete `...\r\n` line starting at `from`; returns the index of `\r`.
fn find_line(buf: &[u8], from: usize) -> Option<usize> {
    let cr = from + buf.get(from..)?.iter().position(|&c| c == b'\r')?;
    (cr + 1 < buf.len()).then_some(cr)
}

impl Decoder {
    /// A fresh decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes held in the decoder for a request not yet complete; counted
    /// against the query buffer limit.
    pub fn pending_bytes(&self) -> usize {
        self.pending
            .as_ref()
            .map_or(0, |m| m.args.iter().map(Bytes::len).sum())
    }

    /// Decodes the next complete request from `buf`, consuming its bytes.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Empty requests (a blank
    /// inline line, `*0`) are skipped, as Redis does.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] with Redis's text when the input is malformed; the
    /// caller replies with it and closes the connection.
    pub fn decode(&mut self, buf: &mut BytesMut, limits: &Limits) -> Result<Option<Vec<Bytes>>> {
        loop {
            if self.pending.is_none() {
                match buf.first() {
                    None => return Ok(None),
                    Some(b'*') => {
                        let Some(cr) = find_line(buf, 1) else {
                            if buf.len() > INLINE_MAX {
                                return Err(protocol("too big mbulk count string"));
                            }
                            return Ok(None);
                        };
                        let max = if limits.authenticated {
                            limits.max_args
                        } else {
                            10
                        };
                        let n = match parse_len(&buf[1..cr]) {
                            Some(n) if n <= max as i64 => n,
                            Some(_) if !limits.authenticated => {
                                return Err(protocol("unauthenticated multibulk length"));
                            }
                            _ => return Err(protocol("invalid multibulk length")),
                        };
                        buf.advance(cr + 2);
                        if n <= 0 {
                            continue;
                        }
                        let n = n as usize;
                        self.pending = Some(Multibulk {
                            remaining: n,
                            // Capped: the count is only what the client declared.
                            args: Vec::with_capacity(n.min(64)),
                            bulk_len: None,
                        });
                    }
                    Some(_) => match decode_inline(buf)? {
                        Some(args) if args.is_empty() => continue,
                        Some(args) => return Ok(Some(args)),
                        None => return Ok(None),
                    },
                }
            }
            if let Some(done) = self.continue_multibulk(buf, limits)? {
                return Ok(Some(done));
            }
            if self.pending.is_some() {
                return Ok(None);
            }
        }
    }

    fn continue_multibulk(
        &mut self,
        buf: &mut BytesMut,
        limits: &Limits,
    ) -> Result<Option<Vec<Bytes>>> {
        let Some(mb) = self.pending.as_mut() else {
            return Ok(None);
        };
        while mb.remaining > 0 {
            let len = match mb.bulk_len {
                Some(len) => len,
                None => {
                    let Some(&first) = buf.first() else {
                        return Ok(None);
                    };
                    if first != b'$' {
                        return Err(protocol(format!(
                            "expected '$', got '{}'",
                            char::from(first)
                        )));
                    }
                    let Some(cr) = find_line(buf, 1) else {
                        if buf.len() > INLINE_MAX {
                            return Err(protocol("too big bulk count string"));
                        }
                        return Ok(None);
                    };
                    let max = if limits.authenticated {
                        limits.max_bulk_len
                    } else {
                        16 * 1024
                    };
                    let len = match parse_len(&buf[1..cr]) {
                        Some(n) if n >= 0 && n as u64 <= max as u64 => n as usize,
                        Some(n) if n >= 0 && !limits.authenticated => {
                            return Err(protocol("unauthenticated bulk length"));
                        }
                        _ => return Err(protocol("invalid bulk length")),
                    };
                    buf.advance(cr + 2);
                    mb.bulk_len = Some(len);
                    len
                }
            };
            if buf.len() < len + 2 {
                return Ok(None);
            }
            let arg = buf.split_to(len).freeze();
            // Like Redis, the two bytes after the data are skipped unchecked.
            buf.advance(2);
            mb.args.push(arg);
            mb.bulk_len = None;
            mb.remaining -= 1;
        }
        Ok(self.pending.take().map(|mb| mb.args))
    }
}

/// Decodes one inline line; `Ok(None)` until a newline arrives.
fn decode_inline(buf: &mut BytesMut) -> Result<Option<Vec<Bytes>>> {
    let Some(nl) = buf.iter().position(|&c| c == b'\n') else {
        if buf.len() > INLINE_MAX {
            return Err(protocol("too big inline request"));
        }
        return Ok(None);
    };
    if nl > INLINE_MAX {
        return Err(protocol("too big inline request"));
    }
    let line = buf.split_to(nl + 1);
    let mut end = nl;
    if end > 0 && line[end - 1] == b'\r' {
        end -= 1;
    }
    split_args(&line[..end])
        .map(|args| Some(args.into_iter().map(Bytes::from).collect()))
        .ok_or_else(|| protocol("unbalanced quotes in request"))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Splits a line into arguments the way Redis's `sdssplitargs` does: words
/// separated by spaces, `"double quoted"` with C escapes and `\xHH`, and
/// `'single quoted'` with only `\'`. A closing quote must be followed by a
/// space or the end of the line. `None` means unbalanced quotes.
pub fn split_args(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut args = Vec::new();
    let mut i = 0;
    loop {
        while i < line.len() && is_space(line[i]) {
            i += 1;
        }
        if i >= line.len() {
            return Some(args);
        }
        let mut cur = Vec::new();
        let (mut in_dq, mut in_sq) = (false, false);
        loop {
            let c = line.get(i).copied();
            if in_dq {
                let c = c?;
                if c == b'\\'
                    && line.get(i + 1) == Some(&b'x')
                    && let (Some(h), Some(l)) = (
                        line.get(i + 2).copied().and_then(hex_val),
                        line.get(i + 3).copied().and_then(hex_val),
                    )
                {
                    cur.push(h * 16 + l);
                    i += 4;
                    continue;
                }
                if c == b'\\' && i + 1 < line.len() {
                    i += 1;
                    cur.push(match line[i] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                } else if c == b'"' {
                    if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                        return None;
                    }
                    in_dq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else if in_sq {
                let c = c?;
                if c == b'\\' && line.get(i + 1) == Some(&b'\'') {
                    i += 1;
                    cur.push(b'\'');
                } else if c == b'\'' {
                    if line.get(i + 1).is_some_and(|&n| !is_space(n)) {
                        return None;
                    }
                    in_sq = false;
                    i += 1;
                    break;
                } else {
                    cur.push(c);
                }
            } else {
                match c {
                    None => break,
                    Some(c) if is_space(c) => break,
                    Some(b'"') => in_dq = true,
                    Some(b'\'') => in_sq = true,
                    Some(c) => cur.push(c),
                }
            }
            i += 1;
        }
        debug_assert!(!in_dq && !in_sq);
        args.push(cur);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(input: &[u8]) -> (Vec<Vec<Bytes>>, Option<String>) {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match d.decode(&mut buf, &Limits::default()) {
                Ok(Some(r)) => out.push(r),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.reply_text())),
            }
        }
    }

    fn strs(v: &[Bytes]) -> Vec<&[u8]> {
        v.iter().map(|b| b.as_ref()).collect()
    }

    #[test]
    fn multibulk_and_pipelining() {
        let (reqs, err) = decode_all(b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$3\r\na\0b\r\n");
        assert!(err.is_none());
        assert_eq!(reqs.len(), 2);
        assert_eq!(strs(&reqs[1]), vec![&b"ECHO"[..], &b"a\0b"[..]]);
    }

    #[test]
    fn byte_by_byte_arrival_gives_the_same_request() {
        let input = b"*3\r\n$8\r\nDELAYADD\r\n$1\r\nq\r\n$5\r\nhello\r\n";
        let mut d = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = None;
        for &b in input.iter() {
            buf.extend_from_slice(&[b]);
            if let Some(r) = d.decode(&mut buf, &Limits::default()).unwrap() {
                got = Some(r);
            }
        }
        assert_eq!(strs(&got.unwrap())[2], b"hello");
        assert!(buf.is_empty());
    }

    #[test]
    fn inline_with_quotes() {
        let (reqs, err) = decode_all(b"SET \"a b\" 'c\\'d' \"\\x41\\n\"\r\nPING\n\r\n");
        assert!(err.is_none());
        assert_eq!(reqs.len(), 2);
        assert_eq!(strs(&reqs[0]), vec![&b"SET"[..], b"a b", b"c'd", b"A\n"]);
        assert_eq!(strs(&reqs[1]), vec![&b"PING"[..]]);
    }

    #[test]
    fn protocol_errors_use_redis_texts() {
        let cases: &[(&[u8], &str)] = &[
            (b"*abc\r\n", "invalid multibulk length"),
            (b"*-5\r\n*1\r\nx", "expected '$', got 'x'"),
            (b"*1\r\n$-1\r\n", "invalid bulk length"),
            (b"*1\r\n$9999999999999\r\n", "invalid bulk length"),
            (b"*1\r\n:5\r\n", "expected '$', got ':'"),
            (b"*1\r\n*1\r\n", "expected '$', got '*'"),
            (b"PING \"unclosed\r\n", "unbalanced quotes in request"),
            (b"PING \"a\"b\r\n", "unbalanced quotes in request"),
            (b"*01\r\n", "invalid multibulk length"),
        ];
        for (input, want) in cases {
            let (_, err) = decode_all(input);
            assert_eq!(
                err.as_deref(),
                Some(format!("ERR Protocol error: {want}").as_str()),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn huge_declared_lengths_allocate_nothing_and_wait() {
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"*1048576\r\n$536870912\r\nabc"[..]);
        assert!(d.decode(&mut buf, &Limits::default()).unwrap().is_none());
        assert!(buf.capacity() < 1024);
        assert_eq!(d.pending_bytes(), 0);
    }

    #[test]
    fn unauthenticated_clients_get_small_limits() {
        let limits = Limits {
            authenticated: false,
            ..Limits::default()
        };
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"*11\r\n"[..]);
        let e = d.decode(&mut buf, &limits).unwrap_err().reply_text();
        assert_eq!(e, "ERR Protocol error: unauthenticated multibulk length");
        let mut d = Decoder::new();
        let mut buf = BytesMut::from(&b"*1\r\n$16385\r\n"[..]);
        let e = d.decode(&mut buf, &limits).unwrap_err().reply_text();
        assert_eq!(e, "ERR Protocol error: unauthenticated bulk length");
    }

    #[test]
    fn too_big_inline_request() {
        let big = vec![b'a'; INLINE_MAX + 10];
        let (_, err) = decode_all(&big);
        assert_eq!(
            err.as_deref(),
            Some("ERR Protocol error: too big inline request")
        );
    }

    #[test]
    fn empty_requests_are_skipped() {
        let (reqs, err) = decode_all(b"\r\n*0\r\n   \nPING\r\n");
        assert!(err.is_none());
        assert_eq!(reqs.len(), 1);
    }
}
