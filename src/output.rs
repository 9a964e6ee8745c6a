//! A client's pending output: its replies, in order, until the kernel takes
//! them, counted against `client-output-buffer-limit`.
//!
//! Small replies are encoded at once into a buffer. A large one (a
//! DELAYRANGE over a big queue) is kept as the [`Reply`] it already is and
//! encoded in pieces of [`CHUNK`] bytes as the socket takes them, so it is
//! never held twice (as a reply and as its whole encoding).
//!
//! What counts against the limits: encoded bytes not yet written, plus the
//! whole encoded size of every large reply until its last byte is written
//! (its memory is released only then). A reply that reaches the hard limit
//! closes the client at once, as in Redis; pending output that stays at or
//! over the soft limit for `soft_secs` closes it when that time is up, even
//! while the server waits for the socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::config::ObufLimit;
use crate::protocol::{Protocol, Reply};
use crate::{Error, Result};

/// A reply whose encoding takes at least this many bytes is encoded while
/// it is written, this many bytes at a time.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Which limit closed a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    Hard,
    Soft,
}

/// The replies of one client not yet handed to the kernel.
pub(crate) struct Output {
    /// Large replies, each after the small ones encoded before it.
    queue: VecDeque<Segment>,
    /// Small replies, encoded, after everything in `queue`.
    tail: BytesMut,
    account: Account,
    /// Position in the output stream after the last reply pushed.
    produced: u64,
    /// Position up to which the output was handed to the kernel.
    written: u64,
}

enum Segment {
    Encoded(BytesMut),
    Large {
        reply: Reply,
        proto: Protocol,
        len: u64,
    },
}

/// What counts against the limits, and what the limits decided.
#[derive(Debug, Default)]
struct Account {
    /// Bytes counted against the limits (see the module docs).
    pending: u64,
    /// Since when `pending` has been at or over the soft limit.
    over_soft_since: Option<Instant>,
    exceeded: Option<Exceeded>,
}

impl Account {
    /// Records a limit reached, and starts or stops the soft limit's clock.
    fn check(&mut self, limit: &ObufLimit) {
        self.check_at(limit, Instant::now);
    }

    /// [`Account::check`] with a clock, read only when over the soft limit.
    fn check_at(&mut self, limit: &ObufLimit, clock: impl FnOnce() -> Instant) {
        if self.exceeded.is_some() {
            return;
        }
        if limit.hard > 0 && self.pending >= limit.hard {
            self.exceeded = Some(Exceeded::Hard);
        } else if limit.soft > 0 && self.pending >= limit.soft {
            let now = clock();
            let since = *self.over_soft_since.get_or_insert(now);
            if now.duration_since(since) >= Duration::from_secs(limit.soft_secs) {
                self.exceeded = Some(Exceeded::Soft);
            }
        } else {
            self.over_soft_since = None;
        }
    }

    fn fail_if_exceeded(&self) -> Result<()> {
        match self.exceeded {
            Some(_) => Err(Error::msg("client output buffer limit reached")),
            None => Ok(()),
        }
    }

    /// `n` bytes were handed to the kernel.
    fn sent(&mut self, n: u64, limit: &ObufLimit) {
        self.pending -= n;
        self.check(limit);
    }
}

impl Output {
    pub(crate) fn new() -> Output {
        Output {
            queue: VecDeque::new(),
            tail: BytesMut::with_capacity(16 * 1024),
            account: Account::default(),
            produced: 0,
            written: 0,
        }
    }

    /// Appends a reply and checks the limits; a limit reached makes the
    /// next [`Output::flush`] fail.
    pub(crate) fn push(&mut self, reply: Reply, proto: Protocol, limit: &ObufLimit) {
        let n = match large_len(&reply, proto) {
            Some(len) => {
                if !self.tail.is_empty() {
                    let small = self.tail.split();
                    self.queue.push_back(Segment::Encoded(small));
                }
                self.queue.push_back(Segment::Large { reply, proto, len });
                len
            }
            None => {
                let before = self.tail.len();
                reply.encode(proto, &mut self.tail);
                (self.tail.len() - before) as u64
            }
        };
        self.account.pending += n;
        self.produced += n;
        self.account.check(limit);
    }

    /// Appends bytes already encoded (MONITOR's lines, the same in RESP2
    /// and RESP3), counted like replies.
    pub(crate) fn push_raw(&mut self, bytes: &[u8], limit: &ObufLimit) {
        self.tail.extend_from_slice(bytes);
        let n = bytes.len() as u64;
        self.account.pending += n;
        self.produced += n;
        self.account.check(limit);
    }

    /// Bytes counted against the limits.
    pub(crate) fn pending(&self) -> u64 {
        self.account.pending
    }

    /// Position in the output stream after the last reply pushed.
    pub(crate) fn produced(&self) -> u64 {
        self.produced
    }

    /// Position up to which the output was handed to the kernel.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// The limit that closed the client, if one did.
    pub(crate) fn exceeded(&self) -> Option<Exceeded> {
        self.account.exceeded
    }

    /// Writes everything to the socket, large replies piece by piece.
    ///
    /// # Errors
    ///
    /// A socket error, or a limit reached (before or while waiting for the
    /// socket); the connection must then be dropped.
    pub(crate) async fn flush<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        limit: &ObufLimit,
    ) -> Result<()> {
        self.account.fail_if_exceeded()?;
        while let Some(segment) = self.queue.pop_front() {
            match segment {
                Segment::Encoded(mut data) => {
                    while !data.is_empty() {
                        let n = write_some(stream, &data, &mut self.account, limit).await?;
                        data.advance(n);
                        self.written += n as u64;
                        self.account.sent(n as u64, limit);
                    }
                }
                Segment::Large { reply, proto, len } => {
                    // Not kept between replies: idle connections hold no
                    // piece buffer.
                    let mut piece = BytesMut::with_capacity(2 * CHUNK);
                    let mut pieces = Pieces::new(&reply, proto);
                    loop {
                        piece.clear();
                        let done = pieces.fill(&mut piece, CHUNK);
                        let mut at = 0;
                        while at < piece.len() {
                            at +=
                                write_some(stream, &piece[at..], &mut self.account, limit).await?;
                        }
                        if done {
                            break;
                        }
                    }
                    self.written += len;
                    self.account.sent(len, limit);
                }
            }
        }
        // Give back memory after an unusually large batch of small replies.
        let grown = self.tail.capacity() > 1024 * 1024;
        while !self.tail.is_empty() {
            let n = write_some(stream, &self.tail, &mut self.account, limit).await?;
            self.tail.advance(n);
            self.written += n as u64;
            self.account.sent(n as u64, limit);
        }
        if grown {
            self.tail = BytesMut::with_capacity(16 * 1024);
        }
        Ok(())
    }
}

/// One write; while the socket takes nothing, the soft limit's clock keeps
/// running and closes the client when it runs out.
///
/// The bytes counted as written must be in the kernel, as the session puts
/// back popped members by that count: a TLS stream keeps what it encrypted
/// in a buffer of its own, so each write is followed by a flush, which
/// returns once that buffer is in the kernel (for a TCP socket it does
/// nothing).
async fn write_some<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    account: &mut Account,
    limit: &ObufLimit,
) -> Result<usize> {
    let deadline = account
        .over_soft_since
        .map(|since| since + Duration::from_secs(limit.soft_secs));
    let n = match deadline {
        None => write_through(stream, data).await?,
        Some(at) => {
            // The write is not restarted after the deadline: what it has
            // handed to a TLS stream is taken and must be flushed.
            let write = write_through(stream, data);
            tokio::pin!(write);
            tokio::select! {
                r = &mut write => r?,
                () = tokio::time::sleep_until(at.into()) => {
                    account.check(limit);
                    account.fail_if_exceeded()?;
                    // Under the limit after all (it was turned off meanwhile):
                    // wait for the socket alone rather than spin.
                    write.await?
                }
            }
        }
    };
    if n == 0 {
        return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into());
    }
    Ok(n)
}

/// Writes some of `data` and flushes it into the kernel (see [`write_some`]).
async fn write_through<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
) -> std::io::Result<usize> {
    let n = stream.write(data).await?;
    stream.flush().await?;
    Ok(n)
}

/// The encoded size of `reply` if it is large enough to be encoded while
/// it is written.
fn large_len(reply: &Reply, proto: Protocol) -> Option<u64> {
    let len = match reply {
        Reply::Bulk(b) if b.len() < CHUNK => return None,
        Reply::Array(_) | Reply::Map(_) | Reply::Pairs(_) | Reply::Bulk(_) => {
            encoded_len(reply, proto)
        }
        _ => return None,
    };
    (len >= CHUNK as u64).then_some(len)
}

fn digits(n: u64) -> u64 {
    u64::from(n.checked_ilog10().unwrap_or(0) + 1)
}

/// `<type><n>\r\n`: the header of an aggregate or a bulk string.
fn header_len(n: usize) -> u64 {
    1 + digits(n as u64) + 2
}

/// The number of bytes [`Reply::encode`] writes for `reply`, without
/// encoding it (but for doubles, which are rare and small).
pub(crate) fn encoded_len(reply: &Reply, proto: Protocol) -> u64 {
    match reply {
        Reply::Simple(s) => 1 + s.len() as u64 + 2,
        // CR and LF inside an error become spaces: the length is the same.
        Reply::Error(e) => 1 + e.len() as u64 + 2,
        Reply::Int(i) => 1 + u64::from(*i < 0) + digits(i.unsigned_abs()) + 2,
        Reply::Bulk(b) => header_len(b.len()) + b.len() as u64 + 2,
        Reply::Null | Reply::NullArray => match proto {
            Protocol::Resp2 => 5,
            Protocol::Resp3 => 3,
        },
        Reply::Double(_) => {
            let mut scratch = BytesMut::new();
            reply.encode(proto, &mut scratch);
            scratch.len() as u64
        }
        Reply::Array(items) => {
            header_len(items.len()) + items.iter().map(|r| encoded_len(r, proto)).sum::<u64>()
        }
        Reply::Map(pairs) | Reply::Pairs(pairs) => {
            let header = match (proto, reply) {
                (Protocol::Resp2, _) => header_len(pairs.len() * 2),
                (Protocol::Resp3, Reply::Pairs(_)) => {
                    header_len(pairs.len()) + pairs.len() as u64 * header_len(2)
                }
                (Protocol::Resp3, _) => header_len(pairs.len()),
            };
            header
                + pairs
                    .iter()
                    .map(|(k, v)| encoded_len(k, proto) + encoded_len(v, proto))
                    .sum::<u64>()
        }
    }
}

/// Encodes one reply in pieces: each [`Pieces::fill`] adds about `max`
/// bytes, walking the reply with an explicit stack.
pub(crate) struct Pieces<'a> {
    proto: Protocol,
    stack: Vec<Step<'a>>,
}

enum Step<'a> {
    /// A reply not started yet.
    One(&'a Reply),
    /// The elements of an array left.
    Items(std::slice::Iter<'a, Reply>),
    /// The pairs of a map left; `nested`: each pair is a 2-element array
    /// (RESP3 `Pairs`).
    Pairs {
        pairs: std::slice::Iter<'a, (Reply, Reply)>,
        nested: bool,
    },
    /// Raw bytes left (a bulk string's payload or its CRLF).
    Raw(&'a [u8]),
}

impl<'a> Pieces<'a> {
    pub(crate) fn new(reply: &'a Reply, proto: Protocol) -> Pieces<'a> {
        Pieces {
            proto,
            stack: vec![Step::One(reply)],
        }
    }

    /// Appends the next piece of the encoding to `out`, stopping once `out`
    /// holds `max` bytes or more (an element smaller than [`CHUNK`] is
    /// never split). Returns whether the reply is complete.
    pub(crate) fn fill(&mut self, out: &mut BytesMut, max: usize) -> bool {
        while out.len() < max {
            let Some(step) = self.stack.last_mut() else {
                return true;
            };
            let next: &'a Reply = match step {
                Step::One(r) => {
                    let r = *r;
                    self.stack.pop();
                    r
                }
                Step::Items(items) => match items.next() {
                    Some(r) => r,
                    None => {
                        self.stack.pop();
                        continue;
                    }
                },
                Step::Pairs { pairs, nested } => match pairs.next() {
                    Some((k, v)) => {
                        if *nested {
                            out.extend_from_slice(b"*2\r\n");
                        }
                        // The key is encoded first: the value waits below it.
                        self.stack.push(Step::One(v));
                        k
                    }
                    None => {
                        self.stack.pop();
                        continue;
                    }
                },
                Step::Raw(rest) => {
                    let n = rest.len().min(max - out.len());
                    out.extend_from_slice(&rest[..n]);
                    *rest = &rest[n..];
                    if rest.is_empty() {
                        self.stack.pop();
                    }
                    continue;
                }
            };
            self.start(next, out);
        }
        self.stack.is_empty()
    }

    /// Writes `r`'s header, or all of it if it is small, and pushes what is
    /// left of it.
    fn start(&mut self, r: &'a Reply, out: &mut BytesMut) {
        let header = |out: &mut BytesMut, kind: u8, n: usize| {
            out.extend_from_slice(&[kind]);
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        };
        match (self.proto, r) {
            (_, Reply::Bulk(b)) if b.len() >= CHUNK => {
                header(out, b'$', b.len());
                self.stack.push(Step::Raw(b"\r\n"));
                self.stack.push(Step::Raw(b));
            }
            (_, Reply::Array(items)) => {
                header(out, b'*', items.len());
                self.stack.push(Step::Items(items.iter()));
            }
            (Protocol::Resp2, Reply::Map(pairs) | Reply::Pairs(pairs)) => {
                header(out, b'*', pairs.len() * 2);
                self.stack.push(Step::Pairs {
                    pairs: pairs.iter(),
                    nested: false,
                });
            }
            (Protocol::Resp3, Reply::Map(pairs)) => {
                header(out, b'%', pairs.len());
                self.stack.push(Step::Pairs {
                    pairs: pairs.iter(),
                    nested: false,
                });
            }
            (Protocol::Resp3, Reply::Pairs(pairs)) => {
                header(out, b'*', pairs.len());
                self.stack.push(Step::Pairs {
                    pairs: pairs.iter(),
                    nested: true,
                });
            }
            (_, leaf) => leaf.encode(self.proto, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes() -> Vec<Reply> {
        let big = Reply::bulk(vec![b'x'; 3 * CHUNK + 17]);
        let members: Vec<Reply> = (0..20_000)
            .map(|i| Reply::bulk(format!("member:{i}")))
            .collect();
        vec![
            Reply::OK,
            Reply::Int(0),
            Reply::Int(-1234),
            Reply::Int(i64::MIN),
            Reply::Int(i64::MAX),
            Reply::bulk(""),
            Reply::bulk("abc"),
            Reply::Null,
            Reply::NullArray,
            Reply::Error("ERR a\r\nb".into()),
            Reply::Double(1.5),
            Reply::Double(f64::INFINITY),
            big.clone(),
            Reply::Array(vec![]),
            Reply::Array(members.clone()),
            Reply::Array(vec![
                Reply::Int(1),
                big.clone(),
                Reply::Null,
                Reply::Array(members.clone()),
                Reply::Pairs(vec![(Reply::bulk("m"), Reply::Int(3))]),
            ]),
            Reply::Pairs(
                members
                    .iter()
                    .map(|m| (m.clone(), Reply::Int(1_700_000_000_000)))
                    .collect(),
            ),
            Reply::Map(vec![
                (Reply::bulk("k"), Reply::Array(members.clone())),
                (Reply::bulk("d"), Reply::Double(0.25)),
                (Reply::bulk("b"), big),
            ]),
        ]
    }

    #[test]
    fn encoded_len_is_exact() {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            for r in shapes() {
                let mut out = BytesMut::new();
                r.encode(proto, &mut out);
                assert_eq!(encoded_len(&r, proto), out.len() as u64, "{proto:?}");
            }
        }
    }

    #[test]
    fn pieces_join_up_to_the_whole_encoding_in_bounded_pieces() {
        for proto in [Protocol::Resp2, Protocol::Resp3] {
            for r in shapes() {
                let mut whole = BytesMut::new();
                r.encode(proto, &mut whole);
                let mut joined = Vec::new();
                let mut pieces = Pieces::new(&r, proto);
                let mut piece = BytesMut::new();
                let mut n = 0;
                loop {
                    piece.clear();
                    let done = pieces.fill(&mut piece, CHUNK);
                    // A piece stops at the first element that passes CHUNK;
                    // elements that large are split themselves.
                    assert!(piece.len() < 2 * CHUNK, "piece of {}", piece.len());
                    joined.extend_from_slice(&piece);
                    n += 1;
                    if done {
                        break;
                    }
                }
                assert_eq!(joined, whole.to_vec(), "{proto:?}");
                assert!(n >= whole.len() / (2 * CHUNK));
            }
        }
    }

    #[test]
    fn small_replies_are_encoded_at_once_and_large_ones_kept() {
        let limit = ObufLimit {
            hard: 0,
            soft: 0,
            soft_secs: 0,
        };
        let mut out = Output::new();
        out.push(Reply::OK, Protocol::Resp2, &limit);
        assert_eq!((out.pending(), out.produced(), out.queue.len()), (5, 5, 0));
        let members = Reply::Array(
            (0..10_000)
                .map(|i| Reply::bulk(format!("{i:08}")))
                .collect(),
        );
        let len = encoded_len(&members, Protocol::Resp2);
        out.push(members, Protocol::Resp2, &limit);
        assert_eq!(out.queue.len(), 2, "the small reply before it, then it");
        assert_eq!(out.pending(), 5 + len);
        assert_eq!(out.written(), 0);
    }

    #[test]
    fn limits_as_redis_checks_them() {
        let limit = ObufLimit {
            hard: 100,
            soft: 50,
            soft_secs: 2,
        };
        let t0 = Instant::now();
        let mut a = Account {
            pending: 60,
            ..Account::default()
        };
        a.check_at(&limit, || t0);
        assert_eq!((a.exceeded, a.over_soft_since), (None, Some(t0)));
        a.check_at(&limit, || t0 + Duration::from_millis(1999));
        assert_eq!(a.exceeded, None);
        a.pending = 40;
        a.check_at(&limit, || t0 + Duration::from_millis(2500));
        assert_eq!((a.exceeded, a.over_soft_since), (None, None));
        a.pending = 60;
        a.check_at(&limit, || t0 + Duration::from_secs(3));
        a.check_at(&limit, || t0 + Duration::from_secs(5));
        assert_eq!(a.exceeded, Some(Exceeded::Soft));
        assert!(a.fail_if_exceeded().is_err());
        let mut a = Account {
            pending: 100,
            ..Account::default()
        };
        a.check_at(&limit, || t0);
        assert_eq!(a.exceeded, Some(Exceeded::Hard));
        let off = ObufLimit {
            hard: 0,
            soft: 0,
            soft_secs: 0,
        };
        let mut a = Account {
            pending: u64::MAX / 2,
            ..Account::default()
        };
        a.check_at(&off, || t0);
        assert_eq!(a.exceeded, None);
    }
}
