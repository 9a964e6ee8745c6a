//! Replies, independent of the wire protocol, and their RESP2/RESP3 encoding.
//!
//! Commands build a [`Reply`]; the connection encodes it for the protocol the
//! client chose with `HELLO`. Encoding goes through `redis-protocol`'s frame
//! encoders, with two shapes it cannot express handled here: the RESP2 null
//! array (`*-1`, what Redis sends for a blocking-pop timeout) and maps, which
//! RESP2 flattens into arrays.

use bytes::{Bytes, BytesMut};
use redis_protocol::bytes_utils::Str;
use redis_protocol::resp2::types::BytesFrame as Frame2;
use redis_protocol::resp3::types::BytesFrame as Frame3;

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
    /// The null bulk string (`$-1` / `_`).
    Null,
    /// The null array (`*-1` / `_`): a blocking command that timed out.
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
    pub fn encode(&self, proto: Protocol, out: &mut BytesMut) {
        match (proto, self) {
            (Protocol::Resp2, Reply::NullArray) => out.extend_from_slice(b"*-1\r\n"),
            (Protocol::Resp2, _) => {
                // The frame only holds references to `Bytes` already owned by the
                // reply, so building it costs no copy of the payload.
                let frame = to_resp2(self);
                // Encoding into a growable buffer cannot fail for frames built here.
                let _ = redis_protocol::resp2::encode::extend_encode(out, &frame, false);
            }
            (Protocol::Resp3, _) => {
                let frame = to_resp3(self);
                let _ = redis_protocol::resp3::encode::complete::extend_encode(out, &frame, false);
            }
        }
    }
}

impl From<crate::Error> for Reply {
    fn from(e: crate::Error) -> Self {
        Reply::Error(e.reply_text())
    }
}

fn format_double(d: f64) -> String {
    if d.is_infinite() {
        if d > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{d}")
    }
}

/// Error texts must stay on one line: a CR or LF inside would break framing.
fn one_line(s: &str) -> Str {
    if s.contains(['\r', '\n']) {
        Str::from(s.replace(['\r', '\n'], " "))
    } else {
        Str::from(s.to_owned())
    }
}

fn to_resp2(r: &Reply) -> Frame2 {
    match r {
        Reply::Simple(s) => Frame2::SimpleString(Bytes::from_static(s.as_bytes())),
        Reply::Error(e) => Frame2::Error(one_line(e)),
        Reply::Int(i) => Frame2::Integer(*i),
        Reply::Bulk(b) => Frame2::BulkString(b.clone()),
        Reply::Null | Reply::NullArray => Frame2::Null,
        Reply::Array(items) => Frame2::Array(items.iter().map(to_resp2).collect()),
        Reply::Double(d) => Frame2::BulkString(Bytes::from(format_double(*d))),
        Reply::Map(pairs) | Reply::Pairs(pairs) => Frame2::Array(
            pairs
                .iter()
                .flat_map(|(k, v)| [to_resp2(k), to_resp2(v)])
                .collect(),
        ),
    }
}

fn to_resp3(r: &Reply) -> Frame3 {
    match r {
        Reply::Simple(s) => Frame3::SimpleString {
            data: Bytes::from_static(s.as_bytes()),
            attributes: None,
        },
        Reply::Error(e) => Frame3::SimpleError {
            data: one_line(e),
            attributes: None,
        },
        Reply::Int(i) => Frame3::Number {
            data: *i,
            attributes: None,
        },
        Reply::Bulk(b) => Frame3::BlobString {
            data: b.clone(),
            attributes: None,
        },
        Reply::Null | Reply::NullArray => Frame3::Null,
        Reply::Array(items) => Frame3::Array {
            data: items.iter().map(to_resp3).collect(),
            attributes: None,
        },
        Reply::Map(pairs) => Frame3::Map {
            data: pairs
                .iter()
                .map(|(k, v)| (to_resp3(k), to_resp3(v)))
                .collect(),
            attributes: None,
        },
        Reply::Double(d) => Frame3::Double {
            data: *d,
            attributes: None,
        },
        Reply::Pairs(pairs) => Frame3::Array {
            data: pairs
                .iter()
                .map(|(k, v)| Frame3::Array {
                    data: vec![to_resp3(k), to_resp3(v)],
                    attributes: None,
                })
                .collect(),
            attributes: None,
        },
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
    fn error_text_is_kept_on_one_line() {
        let e = Reply::Error("ERR bad\r\nthing".into());
        assert_eq!(enc(&e, Protocol::Resp2), b"-ERR bad  thing\r\n");
    }
}
