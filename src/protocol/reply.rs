//! Replies, independent of the wire protocol, and their RESP2/RESP3 encoding.
//!
//! Commands build a [`Reply`]; the connection encodes it for the protocol the
//! client chose with `HELLO`. The encoder is written here rather than taken
//! from a frame library because RESP2 has two nulls that must stay apart at
//! every depth: the null bulk string (`$-1`, a missing value) and the null
//! array (`*-1`, a blocking pop that timed out, also inside `EXEC`'s reply,
//! where clients such as phpredis read `$-1` as `false`). RESP3 has one null
//! (`_`) for both. Maps and pairs are flattened into arrays in RESP2.

use bytes::{BufMut, Bytes, BytesMut};

/// The protocol a connection speaks, switched by `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Resp2,
    Resp3,
}

impl Protocol {
    /// The number `HELLO` uses for this protocol.
    pub fn version(self) -> i64 {
        match self {
            Protocol::Resp2 => 2,
            Protocol::Resp3 => 3,
        }
    }
}

/// A reply to one command.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+text`.
    Simple(&'static str),
    /// `-text` (the text includes the code, e.g. `ERR ...`).
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n bytes`.
    Bulk(Bytes),
    /// The null bulk string (`$-1` / `_`): a missing value.
    Null,
    /// The null array (`*-1` / `_`): a blocking command that timed out. Kept
    /// apart from [`Reply::Null`] at every depth of a reply.
    NullArray,
    /// `*n ...`.
    Array(Vec<Reply>),
    /// A map in RESP3; a flat array of key, value, ... in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// A double in RESP3; a bulk string in RESP2.
    Double(f64),
    /// Pairs (ZRANGE WITHSCORES): nested 2-element arrays in RESP3, one flat
    /// array in RESP2.
    Pairs(Vec<(Reply, Reply)>),
}

/// What is left to write while walking a reply: a reply, or the `*2` header
/// of one RESP3 pair (which has no `Reply` of its own).
enum Pending<'a> {
    Reply(&'a Reply),
    PairHeader,
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// A bulk string copied from anything byte-like.
    pub fn bulk(data: impl AsRef<[u8]>) -> Reply {
        Reply::Bulk(Bytes::copy_from_slice(data.as_ref()))
    }

    /// A bulk string from a `&'static str`, without copying.
    pub fn bulk_static(s: &'static str) -> Reply {
        Reply::Bulk(Bytes::from_static(s.as_bytes()))
    }

    /// Whether this reply is an error.
    pub fn is_error(&self) -> bool {
        matches!(self, Reply::Error(_))
    }

    /// Appends the encoding of this reply to `out`.
    ///
    /// The tree is walked with an explicit stack, not recursion: elements are
    /// written in order as they are popped, so nesting depth costs no call
    /// stack and the walk could stop between elements to write a large reply
    /// in pieces. A scalar reply allocates nothing.
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        let resp3 = proto == Protocol::Resp3;
        let mut todo: Vec<Pending<'_>> = Vec::new();
        let mut next = Some(Pending::Reply(self));
        while let Some(item) = next.take().or_else(|| todo.pop()) {
            let r = match item {
                Pending::Reply(r) => r,
                Pending::PairHeader => {
                    out.extend_from_slice(b"*2\r\n");
                    continue;
                }
            };
            match r {
                Reply::Simple(s) => {
                    out.put_u8(b'+');
                    out.extend_from_slice(s.as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Reply::Error(e) => {
                    // The text must stay on one line: a CR or LF inside would
                    // end the error early and desynchronise the client.
                    out.put_u8(b'-');
                    out.extend(
                        e.bytes()
                            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
                    );
                    out.extend_from_slice(b"\r\n");
                }
                Reply::Int(i) => header(out, b':', *i),
                Reply::Bulk(b) => bulk(out, b),
                Reply::Null | Reply::NullArray if resp3 => out.extend_from_slice(b"_\r\n"),
                Reply::Null => out.extend_from_slice(b"$-1\r\n"),
                Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
                Reply::Double(d) if resp3 => {
                    out.put_u8(b',');
                    out.extend_from_slice(format_double(*d).as_bytes());
                    out.extend_from_slice(b"\r\n");
                }
                Reply::Double(d) => bulk(out, format_double(*d).as_bytes()),
                Reply::Array(items) => {
                    header(out, b'*', len_i64(items.len()));
                    todo.extend(items.iter().rev().map(Pending::Reply));
                }
                Reply::Map(pairs) => {
                    if resp3 {
                        header(out, b'%', len_i64(pairs.len()));
                    } else {
                        header(out, b'*', len_i64(pairs.len()).saturating_mul(2));
                    }
                    for (k, v) in pairs.iter().rev() {
                        todo.push(Pending::Reply(v));
                        todo.push(Pending::Reply(k));
                    }
                }
                Reply::Pairs(pairs) => {
                    if resp3 {
                        header(out, b'*', len_i64(pairs.len()));
                    } else {
                        header(out, b'*', len_i64(pairs.len()).saturating_mul(2));
                    }
                    for (k, v) in pairs.iter().rev() {
                        todo.push(Pending::Reply(v));
                        todo.push(Pending::Reply(k));
                        if resp3 {
                            todo.push(Pending::PairHeader);
                        }
                    }
                }
            }
        }
    }
}

impl From<crate::Error> for Reply {
    fn from(e: crate::Error) -> Self {
        Reply::Error(e.reply_text())
    }
}

/// A length as RESP writes it (lengths of in-memory collections fit).
fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `<marker><n>\r\n`: an integer reply or an aggregate's or bulk's length.
fn header(out: &mut BytesMut, marker: u8, n: i64) {
    out.put_u8(marker);
    if n < 0 {
        out.put_u8(b'-');
    }
    // Digits are produced from the right; u64::MAX has 20 of them.
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut v = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
    out.extend_from_slice(b"\r\n");
}

/// `$<len>\r\n<data>\r\n`.
fn bulk(out: &mut BytesMut, data: &[u8]) {
    header(out, b'$', len_i64(data.len()));
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// A double as Redis writes it: `inf`, `-inf`, `nan`, else the shortest
/// decimal that reads back as the same value.
fn format_double(d: f64) -> String {
    if d.is_nan() {
        "nan".into()
    } else if d.is_infinite() {
        if d > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{d}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: &Reply, p: Protocol) -> Vec<u8> {
        let mut out = BytesMut::new();
        r.encode(p, &mut out);
        out.to_vec()
    }

    #[test]
    fn resp2_shapes() {
        assert_eq!(enc(&Reply::OK, Protocol::Resp2), b"+OK\r\n");
        assert_eq!(enc(&Reply::Int(-3), Protocol::Resp2), b":-3\r\n");
        assert_eq!(enc(&Reply::bulk("ab"), Protocol::Resp2), b"$2\r\nab\r\n");
        assert_eq!(enc(&Reply::Null, Protocol::Resp2), b"$-1\r\n");
        assert_eq!(enc(&Reply::NullArray, Protocol::Resp2), b"*-1\r\n");
        let m = Reply::Map(vec![(Reply::bulk("k"), Reply::Int(1))]);
        assert_eq!(enc(&m, Protocol::Resp2), b"*2\r\n$1\r\nk\r\n:1\r\n");
        assert_eq!(enc(&Reply::Double(1.5), Protocol::Resp2), b"$3\r\n1.5\r\n");
    }

    #[test]
    fn resp3_shapes() {
        assert_eq!(enc(&Reply::Null, Protocol::Resp3), b"_\r\n");
        assert_eq!(enc(&Reply::NullArray, Protocol::Resp3), b"_\r\n");
        let m = Reply::Map(vec![
            (Reply::bulk("a"), Reply::Int(1)),
            (Reply::bulk("b"), Reply::Int(2)),
        ]);
        // Order is kept: clients print maps in the order the server sent.
        assert_eq!(
            enc(&m, Protocol::Resp3),
            b"%2\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n"
        );
        assert_eq!(enc(&Reply::Double(2.5), Protocol::Resp3), b",2.5\r\n");
    }

    #[test]
    fn nested_nulls_keep_their_kind() {
        // EXEC's reply to MULTI, a timed-out DELAYPOP BLOCK, a missing
        // DELAYSCORE: Redis 7 sends `*-1` for the pop and `$-1` for the score.
        let exec = Reply::Array(vec![Reply::OK, Reply::NullArray, Reply::Null]);
        assert_eq!(enc(&exec, Protocol::Resp2), b"*3\r\n+OK\r\n*-1\r\n$-1\r\n");
        assert_eq!(enc(&exec, Protocol::Resp3), b"*3\r\n+OK\r\n_\r\n_\r\n");
        let deep = Reply::Array(vec![Reply::Map(vec![(
            Reply::bulk("k"),
            Reply::Array(vec![Reply::NullArray]),
        )])]);
        assert_eq!(
            enc(&deep, Protocol::Resp2),
            b"*1\r\n*2\r\n$1\r\nk\r\n*1\r\n*-1\r\n"
        );
        assert_eq!(
            enc(&deep, Protocol::Resp3),
            b"*1\r\n%1\r\n$1\r\nk\r\n*1\r\n_\r\n"
        );
    }

    #[test]
    fn pairs_are_flat_in_resp2_and_nested_in_resp3() {
        let p = Reply::Pairs(vec![
            (Reply::bulk("a"), Reply::Int(1)),
            (Reply::bulk("b"), Reply::Double(2.5)),
        ]);
        assert_eq!(
            enc(&p, Protocol::Resp2),
            b"*4\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n$3\r\n2.5\r\n"
        );
        assert_eq!(
            enc(&p, Protocol::Resp3),
            b"*2\r\n*2\r\n$1\r\na\r\n:1\r\n*2\r\n$1\r\nb\r\n,2.5\r\n"
        );
        assert_eq!(enc(&Reply::Pairs(vec![]), Protocol::Resp2), b"*0\r\n");
        assert_eq!(enc(&Reply::Pairs(vec![]), Protocol::Resp3), b"*0\r\n");
        assert_eq!(enc(&Reply::Map(vec![]), Protocol::Resp3), b"%0\r\n");
        assert_eq!(enc(&Reply::Array(vec![]), Protocol::Resp2), b"*0\r\n");
    }

    #[test]
    fn scalars_at_the_edges() {
        assert_eq!(enc(&Reply::Int(0), Protocol::Resp2), b":0\r\n");
        assert_eq!(
            enc(&Reply::Int(i64::MIN), Protocol::Resp3),
            b":-9223372036854775808\r\n"
        );
        assert_eq!(
            enc(&Reply::Int(i64::MAX), Protocol::Resp2),
            b":9223372036854775807\r\n"
        );
        // Bulk payloads are length-prefixed, so CR, LF and NUL pass unchanged.
        assert_eq!(
            enc(&Reply::bulk(b"a\r\n\0"), Protocol::Resp2),
            b"$4\r\na\r\n\0\r\n"
        );
        assert_eq!(enc(&Reply::bulk(""), Protocol::Resp3), b"$0\r\n\r\n");
        assert_eq!(
            enc(&Reply::Double(f64::INFINITY), Protocol::Resp3),
            b",inf\r\n"
        );
        assert_eq!(
            enc(&Reply::Double(f64::NEG_INFINITY), Protocol::Resp2),
            b"$4\r\n-inf\r\n"
        );
        assert_eq!(enc(&Reply::Double(f64::NAN), Protocol::Resp3), b",nan\r\n");
        assert_eq!(enc(&Reply::Double(2.0), Protocol::Resp3), b",2\r\n");
        let e = Reply::Error("ERR x".into());
        assert_eq!(enc(&e, Protocol::Resp3), b"-ERR x\r\n");
        assert_eq!(
            enc(&Reply::Array(vec![e, Reply::Int(7)]), Protocol::Resp2),
            b"*2\r\n-ERR x\r\n:7\r\n"
        );
    }

    #[test]
    fn error_text_is_kept_on_one_line() {
        let e = Reply::Error("ERR bad\r\nthing".into());
        assert_eq!(enc(&e, Protocol::Resp2), b"-ERR bad  thing\r\n");
    }
}
