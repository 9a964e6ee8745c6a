//! Framing over one client stream (TCP, or TLS over TCP): requests in,
//! encoded replies out.
//!
//! Reads go into one growing buffer and are framed by the protocol
//! [`Decoder`]; everything complete in the buffer is returned at once so a
//! pipeline is answered with one write. Replies wait in the [`Output`]
//! until the session flushes them, which is bounded by
//! `client-output-buffer-limit`.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;

use crate::config::ObufLimit;
use crate::output::{Exceeded, Output};
use crate::protocol::{Decoder, Limits, Protocol, Reply};
use crate::{Error, Result};

/// Most requests taken from the buffer before they are executed and their
/// replies written, so one huge pipeline cannot make the output unbounded.
const MAX_BATCH: usize = 1024;

/// One client connection. Generic over the stream rather than boxed, so
/// the plain TCP path stays free of dynamic dispatch.
pub struct Connection<S = TcpStream> {
    stream: S,
    rbuf: BytesMut,
    out: Output,
    decoder: Decoder,
    /// Framing limits (tightened until the client authenticates).
    pub limits: Limits,
    /// The output buffer limit in force (the session refreshes it).
    pub(crate) obuf_limit: ObufLimit,
    max_query: usize,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<S> {
    /// Wraps an accepted stream (the server has set TCP_NODELAY on its socket).
    pub fn new(
        stream: S,
        limits: Limits,
        max_query: usize,
        obuf_limit: ObufLimit,
    ) -> Connection<S> {
        Connection {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            out: Output::new(),
            decoder: Decoder::new(),
            limits,
            obuf_limit,
            max_query,
        }
    }

    /// Reads until at least one request is complete, then returns every
    /// complete request in the buffer (up to a batch limit). A protocol error
    /// ends the batch as its last element. Returns `false` at end of stream.
    ///
    /// # Errors
    ///
    /// A socket error, or the query buffer limit being exceeded.
    pub async fn read_requests(&mut self, out: &mut Vec<Result<Vec<Bytes>>>) -> Result<bool> {
        // Until the client authenticates, frame one request at a time: an AUTH
        // in a pipeline lifts the limits for the requests after it.
        let max = if self.limits.authenticated {
            MAX_BATCH
        } else {
            1
        };
        loop {
            while out.len() < max {
                match self.decoder.decode(&mut self.rbuf, &self.limits) {
                    Ok(Some(req)) => out.push(Ok(req)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(Err(e));
                        return Ok(true);
                    }
                }
            }
            if !out.is_empty() {
                return Ok(true);
            }
            if self.rbuf.len() + self.decoder.pending_bytes() > self.max_query {
                return Err(Error::msg("client query buffer limit exceeded"));
            }
            if self.read_more().await? == 0 {
                return Ok(false);
            }
        }
    }

    /// Reads whatever arrives into the input buffer (used while a client is
    /// blocked, to notice that it went away). Returns 0 at end of stream.
    ///
    /// # Errors
    ///
    /// A socket error.
    pub async fn read_more(&mut self) -> Result<usize> {
        if self.rbuf.capacity() - self.rbuf.len() < 4096 {
            self.rbuf.reserve(16 * 1024);
        }
        Ok(self.stream.read_buf(&mut self.rbuf).await?)
    }

    /// Bytes of input buffered but not yet executed.
    pub fn buffered(&self) -> usize {
        self.rbuf.len() + self.decoder.pending_bytes()
    }

    /// Appends a reply to the output.
    pub fn push(&mut self, reply: Reply, proto: Protocol) {
        self.out.push(reply, proto, &self.obuf_limit);
    }

    /// Appends bytes already encoded (MONITOR's lines).
    pub fn push_raw(&mut self, bytes: &[u8]) {
        self.out.push_raw(bytes, &self.obuf_limit);
    }

    /// Bytes of output waiting, as counted against the output buffer limit.
    pub fn pending_output(&self) -> usize {
        usize::try_from(self.out.pending()).unwrap_or(usize::MAX)
    }

    /// Position in the output stream after the last reply pushed.
    pub(crate) fn produced(&self) -> u64 {
        self.out.produced()
    }

    /// Position up to which the output was handed to the kernel.
    pub(crate) fn written(&self) -> u64 {
        self.out.written()
    }

    /// The output buffer limit that closed this client, if one did.
    pub(crate) fn obuf_exceeded(&self) -> Option<Exceeded> {
        self.out.exceeded()
    }

    /// Writes the output to the socket; returns once the kernel has taken
    /// all of it.
    ///
    /// # Errors
    ///
    /// A socket error, or the output buffer limit reached.
    pub async fn flush(&mut self) -> Result<()> {
        self.out.flush(&mut self.stream, &self.obuf_limit).await
    }
}
