//! One client's session: reads requests, runs them in order, writes replies.
//!
//! Consecutive queue commands of a pipeline go to the engine as one round,
//! so a pipeline of N writes takes the engine lock once and makes one
//! commit; a command of another kind first flushes that round, so replies
//! leave in request order and each command sees the effects of those
//! before it. Inside `MULTI` commands are queued by the transaction
//! ([`multi`]) instead of run.
//!
//! Output is bounded: replies are written once they pass 64 KB, and a
//! command whose reply may be large runs in a round of its own, so a client
//! that does not read is held back by TCP after at most one large reply,
//! and `client-output-buffer-limit` closes it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use crate::client::{ClientInfo, ClientState};
use crate::cmd::delaypop::pop_reply;
use crate::cmd::{self, Blocking, Command, Queued, multi};
use crate::connection::Connection;
use crate::engine::core::Delivery;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Output is written once it passes this size, even mid-pipeline.
const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;

/// A connection and its client's state.
pub struct Session {
    conn: Connection,
    shared: Arc<Shared>,
    client: ClientState,
    /// Commands queued since `MULTI`.
    transaction: Option<multi::Transaction>,
}

impl Session {
    /// A session over an accepted connection.
    pub fn new(
        conn: Connection,
        shared: Arc<Shared>,
        info: Arc<ClientInfo>,
        authenticated: bool,
    ) -> Session {
        Session {
            conn,
            shared,
            client: ClientState::new(info, authenticated),
            transaction: None,
        }
    }

    /// Serves the client until it quits, disconnects, or the server stops.
    ///
    /// # Errors
    ///
    /// A socket error or a broken limit; the connection is dropped.
    pub async fn run(&mut self) -> Result<()> {
        let r = self.serve().await;
        if let Some(limit) = self.conn.obuf_exceeded() {
            self.shared
                .stats
                .obuf_limit_disconnections
                .fetch_add(1, Ordering::Relaxed);
            // Redis's words, which log watchers know.
            tracing::warn!(
                "Client {} scheduled to be closed ASAP for overcoming of output buffer limits. ({limit:?} limit)",
                self.client.info.line()
            );
        }
        r
    }

    async fn serve(&mut self) -> Result<()> {
        let mut reqs = Vec::new();
        let mut batch = Vec::new();
        loop {
            reqs.clear();
            let shared = self.shared.clone();
            let alive = tokio::select! {
                r = self.conn.read_requests(&mut reqs) => r?,
                () = shared.shutdown.wait() => return Ok(()),
            };
            if !alive {
                return Ok(());
            }
            // CONFIG SET client-output-buffer-limit applies from here on.
            self.conn.obuf_limit = self.shared.obuf_limit();
            for req in reqs.drain(..) {
                match req {
                    Ok(args) => self.dispatch(args, &mut batch).await?,
                    Err(e) => {
                        // Malformed input: answer, then close, as Redis does.
                        self.flush_engine(&mut batch).await?;
                        self.reply(Reply::from(e));
                        self.client.quit = true;
                    }
                }
                if self.client.quit {
                    break;
                }
                if self.conn.obuf_exceeded().is_some() {
                    // Closed: run nothing more.
                    self.flush().await?;
                }
                if self.conn.pending_output() > OUTPUT_FLUSH_BYTES {
                    // Write what is ready before running more: a client that
                    // pipelines much and reads slowly is held back by TCP
                    // instead of growing this buffer.
                    self.flush_engine(&mut batch).await?;
                    self.flush().await?;
                }
            }
            self.flush_engine(&mut batch).await?;
            self.flush().await?;
            if self.client.quit {
                return Ok(());
            }
        }
    }

    /// Hands all output to the kernel.
    async fn flush(&mut self) -> Result<()> {
        self.conn.flush().await
    }

    fn reply(&mut self, r: Reply) {
        self.conn.push(r, self.client.proto);
    }

    /// Replies without the engine, after the queue commands pending in
    /// `batch`: a reply is never sent ahead of an earlier command's.
    fn reply_in_order(&mut self, r: Reply, batch: &mut Vec<Queued>) {
        if batch.is_empty() {
            self.reply(r);
        } else {
            batch.push(Queued::Ready(r));
        }
    }

    /// Sends the pending queue commands to the engine and writes their replies.
    async fn flush_engine(&mut self, batch: &mut Vec<Queued>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let cmds = std::mem::take(batch);
        for r in cmd::execute(&self.shared.engine, cmds).await {
            self.reply(r);
        }
        Ok(())
    }

    async fn dispatch(&mut self, args: Vec<Bytes>, batch: &mut Vec<Queued>) -> Result<()> {
        self.shared
            .stats
            .commands_processed
            .fetch_add(1, Ordering::Relaxed);
        let spec = match cmd::lookup_checked(&args) {
            Ok(spec) => spec,
            Err(e) => {
                multi::fail(self.transaction.as_mut());
                self.reply_in_order(Reply::from(e), batch);
                return Ok(());
            }
        };
        if !self.client.authenticated && !spec.flags.contains(&"no_auth") {
            let e = Error::Coded("NOAUTH", "Authentication required.".into());
            self.reply_in_order(Reply::from(e), batch);
            return Ok(());
        }
        let info = &self.client.info;
        if let Ok(mut c) = info.last_cmd.lock() {
            c.clear();
            c.push_str(spec.name);
        }
        if let Ok(mut t) = info.last_active.lock() {
            *t = Instant::now();
        }
        if let Some(tx) = self.transaction.as_mut()
            && !multi::is_control(spec.name)
        {
            let r = if spec.flags.contains(&"no_multi") {
                multi::fail(Some(tx));
                Reply::from(Error::msg("Command not allowed inside a transaction"))
            } else {
                multi::queue(tx, cmd::parse_spec(spec, args))
            };
            self.reply_in_order(r, batch);
            return Ok(());
        }
        let command = match cmd::parse_spec(spec, args) {
            Ok(c) => c,
            Err(e) => {
                self.reply_in_order(Reply::from(e), batch);
                return Ok(());
            }
        };
        if let Command::Engine(c) = command {
            let alone = c.may_reply_large();
            if alone {
                self.flush_engine(batch).await?;
            }
            batch.push(Queued::Run(c));
            if alone {
                self.flush_engine(batch).await?;
            }
            return Ok(());
        }
        // Anything else runs after the queue commands before it.
        self.flush_engine(batch).await?;
        let was = self.client.authenticated;
        let reply = match command {
            Command::Engine(_) => None,
            Command::Client(c) => c.apply(&self.shared, &mut self.client),
            Command::Blocking(b) => Some(self.block(b).await?),
            Command::Transaction(control) => Some(
                multi::apply(
                    control,
                    &mut self.transaction,
                    &self.shared,
                    &mut self.client,
                )
                .await,
            ),
        };
        if self.client.authenticated != was {
            // Framing limits are tighter until a client authenticates.
            self.conn.limits = self.shared.limits(self.client.authenticated);
        }
        if let Some(r) = reply {
            self.reply(r);
        }
        Ok(())
    }

    /// Blocks until the engine hands over a due member, the timeout
    /// passes, the client disconnects or the server shuts down.
    async fn block(&mut self, b: Blocking) -> Result<Reply> {
        let Blocking {
            keys,
            opts,
            shape,
            timeout_ms,
            now: _,
        } = b;
        let shared = self.shared.clone();
        let engine = shared.engine.clone();
        let with_counts = opts.with_counts;
        let (id, mut rx) = engine.block(keys, opts)?;
        // The reply for a delivery, once it is durable.
        let deliver = |d: Delivery| async move {
            match engine.delivery_durable(&d).await {
                Ok(()) => match d.popped {
                    Ok(popped) => pop_reply(popped.as_slice(), shape, with_counts),
                    Err(e) => Reply::from(e),
                },
                Err(e) => Reply::from(e),
            }
        };
        let engine = &shared.engine;
        let info = self.client.info.clone();
        info.blocked.store(true, Ordering::Relaxed);
        let sleep = tokio::time::sleep(std::time::Duration::from_millis(timeout_ms));
        tokio::pin!(sleep);
        let max_query = shared.config.client_query_buffer_limit;
        let result = loop {
            tokio::select! {
                r = &mut rx => break match r {
                    Ok(d) => Ok(deliver(d).await),
                    Err(_) => Ok(Reply::from(Error::ShuttingDown)),
                },
                () = &mut sleep, if timeout_ms > 0 => {
                    rx.close();
                    // A member handed over at the same instant is delivered, not lost.
                    break match rx.try_recv() {
                        Ok(d) => Ok(deliver(d).await),
                        Err(_) => {
                            engine.unblock(id);
                            Ok(Reply::NullArray)
                        }
                    };
                }
                n = self.conn.read_more() => {
                    let gone = !matches!(n, Ok(k) if k > 0) || self.conn.buffered() > max_query;
                    if gone {
                        engine.unblock(id);
                        rx.close();
                        if let Ok(mut d) = rx.try_recv() {
                            engine.restore(d.take_popped());
                        }
                        break Err(Error::msg("client went away while blocked"));
                    }
                }
                () = shared.shutdown.wait() => {
                    rx.close();
                    break match rx.try_recv() {
                        Ok(d) => Ok(deliver(d).await),
                        Err(_) => {
                            engine.unblock(id);
                            Ok(Reply::from(Error::ShuttingDown))
                        }
                    };
                }
            }
        };
        info.blocked.store(false, Ordering::Relaxed);
        result
    }
}
