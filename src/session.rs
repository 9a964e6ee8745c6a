//! One client's session: reads requests, runs them in order, writes replies.
//!
//! Consecutive queue commands of a pipeline go to the engine as one call,
//! so a pipeline of N writes takes the engine lock once and makes one
//! commit; commands about the connection itself are answered here. MULTI
//! queues commands and EXEC hands them to the engine as one call, which runs
//! without interleaving (atomically).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;

use crate::cmd::delaypop::{PopShape, pop_reply};
use crate::cmd::{self, Command, EngineCmd};
use crate::connection::Connection;
use crate::engine::PopOptions;
use crate::engine::core::Delivery;
use crate::protocol::{Protocol, Reply};
use crate::server::{ClientInfo, Shared};
use crate::{Error, Result};

/// Output is written once it passes this size, even mid-pipeline.
const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;

/// Per-connection state.
pub struct Session {
    conn: Connection,
    pub shared: Arc<Shared>,
    pub info: Arc<ClientInfo>,
    pub proto: Protocol,
    pub authenticated: bool,
    multi: Option<Vec<Command>>,
    multi_failed: bool,
    quit: bool,
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
            info,
            proto: Protocol::Resp2,
            authenticated,
            multi: None,
            multi_failed: false,
            quit: false,
        }
    }

    /// Serves the client until it quits, disconnects, or the server stops.
    ///
    /// # Errors
    ///
    /// A socket error or a broken limit; the connection is dropped.
    pub async fn run(&mut self) -> Result<()> {
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
            for req in reqs.drain(..) {
                match req {
                    Ok(args) => self.dispatch(args, &mut batch).await?,
                    Err(e) => {
                        // Malformed input: answer, then close, as Redis does.
                        self.flush_engine(&mut batch).await?;
                        self.reply(&Reply::from(e));
                        self.quit = true;
                    }
                }
                if self.quit {
                    break;
                }
                if self.conn.pending_output() > OUTPUT_FLUSH_BYTES {
                    // Write what is ready before running more: a client that
                    // pipelines much and reads slowly is held back by TCP
                    // instead of growing this buffer.
                    self.flush_engine(&mut batch).await?;
                    self.conn.flush().await?;
                }
            }
            self.flush_engine(&mut batch).await?;
            self.conn.flush().await?;
            if self.quit {
                return Ok(());
            }
        }
    }

    fn reply(&mut self, r: &Reply) {
        self.conn.push(r, self.proto);
    }

    /// Replies without the engine, after the queue commands pending in
    /// `batch`: a reply is never sent ahead of an earlier command's.
    fn reply_in_order(&mut self, r: Reply, batch: &mut Vec<EngineCmd>) {
        if batch.is_empty() {
            self.reply(&r);
        } else {
            batch.push(EngineCmd::Ready(r));
        }
    }

    /// Sends the pending queue commands to the engine and writes their replies.
    async fn flush_engine(&mut self, batch: &mut Vec<EngineCmd>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let cmds = std::mem::take(batch);
        for r in &cmd::execute(&self.shared.engine, cmds).await {
            self.reply(r);
        }
        Ok(())
    }

    async fn dispatch(&mut self, args: Vec<Bytes>, batch: &mut Vec<EngineCmd>) -> Result<()> {
        self.shared
            .stats
            .commands_processed
            .fetch_add(1, Ordering::Relaxed);
        let spec = match cmd::lookup_checked(&args) {
            Ok(spec) => spec,
            Err(e) => {
                if self.multi.is_some() {
                    self.multi_failed = true;
                }
                self.reply_in_order(Reply::from(e), batch);
                return Ok(());
            }
        };
        if !self.authenticated && !spec.flags.contains(&"no_auth") {
            let e = Error::Coded("NOAUTH", "Authentication required.".into());
            self.reply_in_order(Reply::from(e), batch);
            return Ok(());
        }
        if let Ok(mut c) = self.info.last_cmd.lock() {
            c.clear();
            c.push_str(spec.name);
        }
        if let Ok(mut t) = self.info.last_active.lock() {
            *t = Instant::now();
        }
        if self.multi.is_some()
            && !matches!(
                spec.name,
                "exec" | "discard" | "multi" | "watch" | "quit" | "reset"
            )
        {
            if spec.flags.contains(&"no_multi") {
                self.multi_failed = true;
                self.reply(&Reply::from(Error::msg(
                    "Command not allowed inside a transaction",
                )));
                return Ok(());
            }
            let queued = cmd::parse_spec(spec, args)
                .unwrap_or_else(|e| Command::Engine(EngineCmd::Error(e.reply_text())));
            if let Some(q) = self.multi.as_mut() {
                q.push(queued);
            }
            self.reply_in_order(Reply::Simple("QUEUED"), batch);
            return Ok(());
        }
        let command = match cmd::parse_spec(spec, args) {
            Ok(c) => c,
            Err(e) => {
                self.reply_in_order(Reply::from(e), batch);
                return Ok(());
            }
        };
        match command {
            Command::Engine(e) => batch.push(e),
            Command::Exec => {
                self.flush_engine(batch).await?;
                let r = self.exec_transaction().await;
                self.reply(&r);
            }
            other => {
                self.flush_engine(batch).await?;
                if let Some(r) = self.execute_local(other).await? {
                    self.reply(&r);
                }
            }
        }
        Ok(())
    }

    /// EXEC: runs the queued commands as one engine request.
    async fn exec_transaction(&mut self) -> Reply {
        let Some(queued) = self.multi.take() else {
            return Reply::from(Error::msg("EXEC without MULTI"));
        };
        self.info.in_multi.store(false, Ordering::Relaxed);
        if std::mem::take(&mut self.multi_failed) {
            return Reply::from(Error::Coded(
                "EXECABORT",
                "Transaction discarded because of previous errors.".into(),
            ));
        }
        let mut cmds = Vec::with_capacity(queued.len());
        for c in queued {
            cmds.push(match c {
                Command::Engine(e) => e,
                // Blocking commands do not block inside a transaction.
                Command::BlockingPop(p) => EngineCmd::DelayPop(p),
                Command::BDelayPop(p) => EngineCmd::BDelayPopNow(p),
                other => match self.execute_local(other).await {
                    Ok(Some(r)) => EngineCmd::Ready(r),
                    Ok(None) => EngineCmd::Ready(Reply::OK),
                    Err(e) => EngineCmd::Ready(Reply::from(e)),
                },
            });
        }
        Reply::Array(cmd::execute(&self.shared.engine, cmds).await)
    }

    /// Runs a command that is not a plain queue command. `None`: no reply.
    async fn execute_local(&mut self, command: Command) -> Result<Option<Reply>> {
        Ok(Some(match command {
            Command::Ping(c) => c.apply(self.proto, self.multi.is_some()),
            Command::Echo(c) => c.apply(),
            Command::Hello(c) => c.apply(self),
            Command::Auth(c) => c.apply(self),
            Command::Select(c) => c.apply(),
            Command::Quit => {
                self.quit = true;
                Reply::OK
            }
            Command::Reset => {
                self.multi = None;
                self.multi_failed = false;
                self.proto = Protocol::Resp2;
                self.info.resp.store(2, Ordering::Relaxed);
                self.info.in_multi.store(false, Ordering::Relaxed);
                if let Ok(mut n) = self.info.name.lock() {
                    n.clear();
                }
                let authenticated = self.shared.runtime().requirepass.is_none();
                self.set_authenticated(authenticated);
                Reply::Simple("RESET")
            }
            Command::Readonly | Command::Unwatch => Reply::OK,
            Command::Watch => {
                if self.multi.is_some() {
                    Reply::from(Error::msg("WATCH inside MULTI is not allowed"))
                } else {
                    Reply::from(Error::msg("WATCH is not supported by delayd"))
                }
            }
            Command::Client(c) => c.apply(self),
            Command::Command(c) => c.apply(),
            Command::Config(c) => c.apply(&self.shared),
            Command::Info(c) => c.apply(&self.shared),
            Command::Time => cmd::time::apply(),
            Command::Role => cmd::role::apply(),
            Command::Multi => {
                if self.multi.is_some() {
                    Reply::from(Error::msg("MULTI calls can not be nested"))
                } else {
                    self.multi = Some(Vec::new());
                    self.info.in_multi.store(true, Ordering::Relaxed);
                    Reply::OK
                }
            }
            Command::Discard => match self.multi.take() {
                Some(_) => {
                    self.multi_failed = false;
                    self.info.in_multi.store(false, Ordering::Relaxed);
                    Reply::OK
                }
                None => Reply::from(Error::msg("DISCARD without MULTI")),
            },
            // EXEC is handled by `dispatch`; it cannot be queued.
            Command::Exec => Reply::from(Error::msg("EXEC without MULTI")),
            Command::Shutdown(c) => {
                tracing::warn!("SHUTDOWN requested by client {}", self.info.id);
                c.apply(&self.shared);
                self.quit = true;
                return Ok(None);
            }
            Command::BlockingPop(c) => {
                let ms = c.block.unwrap_or(0);
                self.block(vec![c.key], c.opts, PopShape::Members, ms)
                    .await?
            }
            Command::BDelayPop(c) => {
                self.block(
                    c.keys,
                    PopOptions::count(1),
                    PopShape::KeyMemberDue,
                    c.timeout_ms,
                )
                .await?
            }
            Command::Engine(e) => {
                let mut r = cmd::execute(&self.shared.engine, vec![e]).await;
                r.pop().unwrap_or(Reply::NullArray)
            }
        }))
    }

    /// Marks the session (un)authenticated and adjusts framing limits.
    pub fn set_authenticated(&mut self, yes: bool) {
        self.authenticated = yes;
        self.conn.limits = self.shared.limits(yes);
    }

    /// Blocks until the engine hands over a due member, the timeout
    /// passes, the client disconnects or the server shuts down.
    async fn block(
        &mut self,
        keys: Vec<Bytes>,
        opts: PopOptions,
        shape: PopShape,
        timeout_ms: u64,
    ) -> Result<Reply> {
        let engine = self.shared.engine.clone();
        let shared = self.shared.clone();
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
        let engine = self.shared.engine.clone();
        self.info.blocked.store(true, Ordering::Relaxed);
        let sleep = tokio::time::sleep(std::time::Duration::from_millis(timeout_ms));
        tokio::pin!(sleep);
        let max_query = self.shared.config.client_query_buffer_limit;
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
        self.info.blocked.store(false, Ordering::Relaxed);
        result
    }
}
