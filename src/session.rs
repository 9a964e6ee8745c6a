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
//! and `client-output-buffer-limit` closes it. Members popped for a reply
//! that never reached the kernel (the client left first, the write failed,
//! the limit closed it) are put back.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::client::{ClientInfo, ClientState, UNBLOCK_ERROR, UNBLOCK_NONE, UNBLOCK_TIMEOUT};
use crate::cmd::delaypop::pop_reply;
use crate::cmd::{self, Blocking, Command, Queued, monitor, multi};
use crate::connection::Connection;
use crate::engine::core::Delivery;
use crate::engine::{Engine, Popped, Round};
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Output is written once it passes this size, even mid-pipeline.
const OUTPUT_FLUSH_BYTES: usize = 64 * 1024;

/// A connection and its client's state.
pub struct Session<S = TcpStream> {
    conn: Connection<S>,
    shared: Arc<Shared>,
    client: ClientState,
    /// Commands queued since `MULTI`.
    transaction: Option<multi::Transaction>,
    /// Cluster mode: the group of the keys queued in the transaction.
    tx_group: Option<usize>,
    /// Members popped for replies not yet handed to the kernel, with the
    /// output position where each reply ends.
    unsent: Vec<(u64, Vec<Popped>)>,
    /// MONITOR lines of the commands queued since `MULTI`: sent when EXEC
    /// runs them, as Redis shows them.
    monitor_queued: Vec<Bytes>,
}

/// Why a killed session ends (logged at debug level).
fn killed() -> Error {
    Error::msg("killed by CLIENT KILL")
}

/// Whether a read while blocked means the client is gone: end of stream, a
/// socket error, or too much input.
fn went_away(read: &Result<usize>, buffered: usize, max_query: usize) -> bool {
    !matches!(read, Ok(k) if *k > 0) || buffered > max_query
}

/// Puts back members whose reply never reached their client, as durably as
/// `appendfsync` makes writes: under `always` it is fsynced before this
/// returns, so not even a power loss takes members no client received.
async fn put_back(engine: &Engine, popped: Vec<Popped>) {
    if popped.is_empty() {
        return;
    }
    let r = match engine.run(|core| core.restore(&popped)).await {
        Round::Durable(r) => r,
        Round::NotDurable(_, e) | Round::Failed(e) => Err(e),
    };
    if let Err(e) = r {
        tracing::warn!("could not put back {} popped members: {e}", popped.len());
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A session over an accepted connection.
    ///
    /// Whether the client must authenticate is decided here, from the ACL
    /// default user (on and nopass: no); `_authenticated`, what the
    /// caller saw in `requirepass`, is not enough once users exist.
    pub fn new(
        mut conn: Connection<S>,
        shared: Arc<Shared>,
        info: Arc<ClientInfo>,
        _authenticated: bool,
    ) -> Session<S> {
        conn.limits = shared.limits(!shared.acl.auth_required());
        let home = shared.cluster.as_ref().map_or(0, |c| c.home());
        let client = ClientState::new(info, &shared.acl, shared.engine.clone(), home);
        Session {
            conn,
            shared,
            client,
            transaction: None,
            tx_group: None,
            unsent: Vec::new(),
            monitor_queued: Vec::new(),
        }
    }

    /// Serves the client until it quits, disconnects, or the server stops.
    ///
    /// # Errors
    ///
    /// A socket error or a broken limit; the connection is dropped.
    pub async fn run(&mut self) -> Result<()> {
        let r = self.serve().await;
        self.put_back_unsent().await;
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
        let info = self.client.info.clone();
        loop {
            reqs.clear();
            if info.is_killed() {
                return Err(killed());
            }
            let shared = self.shared.clone();
            let alive = tokio::select! {
                r = self.conn.read_requests(&mut reqs) => r?,
                () = shared.shutdown.wait() => return Ok(()),
                // CLIENT KILL closes an idle client at once.
                () = info.wake.notified() => continue,
                Some(line) = next_monitor_line(&mut self.client.monitor) => {
                    self.conn.push_raw(&line);
                    while let Some(line) = self.client.monitor.as_mut().and_then(|m| m.try_next()) {
                        self.conn.push_raw(&line);
                    }
                    self.flush().await?;
                    continue;
                }
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
                if info.is_killed() {
                    // Killed by itself (answered, then closed) or by another.
                    self.client.quit = true;
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
        self.conn.flush().await?;
        // Every pop's reply has left: at most once from here on.
        self.unsent.clear();
        Ok(())
    }

    /// Puts back the members of pops whose replies never reached the kernel.
    async fn put_back_unsent(&mut self) {
        let written = self.conn.written();
        let lost: Vec<Popped> = self
            .unsent
            .drain(..)
            .filter(|(end, _)| *end > written)
            .flat_map(|(_, popped)| popped)
            .collect();
        if !lost.is_empty() {
            tracing::debug!(
                "client {}: putting back {} members whose reply was not written",
                self.client.info.id,
                lost.len()
            );
            put_back(&self.client.engine, lost).await;
        }
    }

    fn reply(&mut self, r: Reply) {
        self.shared.cmdstats.count_errors(&r);
        // CLIENT REPLY OFF / SKIP.
        if !self.client.reply_mode.silent() {
            self.conn.push(r, self.client.proto);
        }
    }

    /// Replies with members that were popped: they are put back if the
    /// reply never reaches the kernel.
    fn reply_popped(&mut self, r: Reply, popped: Vec<Popped>) {
        self.shared.cmdstats.count_errors(&r);
        if self.client.reply_mode.silent() {
            // CLIENT REPLY OFF: the client asked not to hear, as in Redis.
            return;
        }
        self.conn.push(r, self.client.proto);
        if !popped.is_empty() {
            self.unsent.push((self.conn.produced(), popped));
        }
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
        let replies =
            cmd::execute(&self.shared, &self.client.engine, &self.client.info, cmds).await;
        for (r, popped) in replies {
            self.reply_popped(r, popped);
        }
        Ok(())
    }

    /// Runs one command, honouring CLIENT REPLY: a silenced command's
    /// engine round runs at once, so its replies are dropped while the
    /// mode still says so (a command is silenced only after CLIENT REPLY,
    /// which runs outside the batch, so no earlier reply is pending).
    async fn dispatch(&mut self, args: Vec<Bytes>, batch: &mut Vec<Queued>) -> Result<()> {
        let silent = self.client.reply_mode.silent();
        if silent {
            self.flush_engine(batch).await?;
        }
        let r = self.dispatch_one(args, batch).await;
        if silent {
            self.flush_engine(batch).await?;
        }
        self.client.reply_mode = self.client.reply_mode.after_command();
        r
    }

    /// Waits while CLIENT PAUSE holds this command back (a write, or any
    /// command with ALL), until UNPAUSE, the deadline, CLIENT KILL or
    /// shutdown.
    async fn wait_pause(&mut self, write: bool) -> Result<()> {
        let shared = self.shared.clone();
        let info = self.client.info.clone();
        let mut rx = shared.pause.subscribe();
        loop {
            let st = *rx.borrow_and_update();
            if !st.holds(write) {
                shared.pause.clear_expired();
                return Ok(());
            }
            tokio::select! {
                r = rx.changed() => {
                    if r.is_err() {
                        return Ok(());
                    }
                }
                () = tokio::time::sleep_until(st.until.into()) => {}
                () = info.wake.notified() => {
                    if info.is_killed() {
                        return Err(killed());
                    }
                }
                () = shared.shutdown.wait() => return Err(Error::ShuttingDown),
            }
        }
    }

    /// Sends a MONITOR line to the monitors.
    fn feed(&self, line: Option<Bytes>) {
        if let Some(line) = line {
            // No receiver left: nobody to tell.
            let _ = self.shared.monitor_feed.send(line);
        }
    }

    /// Logs a denial in ACL LOG and returns Redis 7.0's NOPERM error.
    fn denied(
        &self,
        spec: &'static cmd::table::CommandSpec,
        args: &[Bytes],
        denied: crate::acl::Denied,
    ) -> Error {
        use crate::acl::{Denied, Reason};
        let name = crate::acl::call_name(spec, args);
        let (reason, object, text) = match denied {
            Denied::Command => (
                Reason::Command,
                Bytes::from(name.clone()),
                format!("this user has no permissions to run the '{name}' command"),
            ),
            Denied::Key(i) => (
                Reason::Key,
                args.get(i).cloned().unwrap_or_default(),
                "this user has no permissions to access one of the keys used as arguments".into(),
            ),
        };
        self.shared.acl.log(
            reason,
            self.transaction.is_some(),
            object,
            self.client.user.user.name.clone(),
            self.client.info.line(),
        );
        Error::Coded("NOPERM", text)
    }

    async fn dispatch_one(&mut self, args: Vec<Bytes>, batch: &mut Vec<Queued>) -> Result<()> {
        self.shared
            .stats
            .commands_processed
            .fetch_add(1, Ordering::Relaxed);
        let spec = match cmd::lookup_checked(&args) {
            Ok(spec) => spec,
            Err(e) => {
                if let Error::WrongArity(name) = &e
                    && let Some(spec) = cmd::table::lookup(name)
                {
                    self.shared.cmdstats.reject(spec);
                }
                multi::fail(self.transaction.as_mut());
                self.reply_in_order(Reply::from(e), batch);
                return Ok(());
            }
        };
        if !self.client.authenticated
            && self.shared.acl.auth_required()
            && !spec.flags.contains(&"no_auth")
        {
            self.shared.cmdstats.reject(spec);
            let e = Error::Coded("NOAUTH", "Authentication required.".into());
            self.reply_in_order(Reply::from(e), batch);
            return Ok(());
        }
        // ACL: one atomic load, and nothing more for a user allowed
        // everything; a denial changes nothing and is logged.
        let user = self.client.user.current(&self.shared.acl);
        if !user.unrestricted()
            && let Err(denied) = user.check(spec, &args)
        {
            let e = self.denied(spec, &args, denied);
            self.shared.cmdstats.reject(spec);
            multi::fail(self.transaction.as_mut());
            self.reply_in_order(Reply::from(e), batch);
            return Ok(());
        }
        // Cluster mode: a command whose keys this node does not serve is
        // redirected, as a Redis Cluster node does (inside MULTI too, which
        // then fails at EXEC).
        if let Some(cluster) = self.shared.cluster.clone() {
            if self.transaction.is_none() {
                self.tx_group = None;
            }
            let keys = spec.keys(&args);
            let routed = cluster
                .route_keys(keys.iter().map(|(i, _)| &args[*i][..]))
                .and_then(|g| match (g, self.tx_group) {
                    // A transaction runs as one round of one group's engine.
                    (Some(g), Some(t)) if g != t => Err(Error::Coded(
                        "CROSSSLOT",
                        "Keys in request don't hash to the same slot".into(),
                    )),
                    _ => Ok(g),
                });
            match routed {
                Err(e) => {
                    self.shared.cmdstats.reject(spec);
                    multi::fail(self.transaction.as_mut());
                    self.reply_in_order(Reply::from(e), batch);
                    return Ok(());
                }
                Ok(Some(g)) => {
                    if self.transaction.is_some() {
                        self.tx_group = Some(g);
                    }
                    if g != self.client.group {
                        // The commands before go to the engine they were for.
                        self.flush_engine(batch).await?;
                        self.client.group = g;
                        self.client.engine = cluster.engine(g).clone();
                    }
                }
                Ok(None) => {}
            }
        }
        if self.client.monitor.is_some()
            && spec.flags.iter().any(|f| *f == "write" || *f == "readonly")
        {
            // As Redis treats a monitor: like a replica.
            let e = Error::msg("Replica can't interact with the keyspace");
            self.reply_in_order(Reply::from(e), batch);
            return Ok(());
        }
        if self.shared.pause.maybe_active() {
            // Earlier replies reach the client before it waits.
            self.flush_engine(batch).await?;
            self.conn.flush().await?;
            self.wait_pause(spec.flags.contains(&"write")).await?;
        }
        // One atomic load when nobody monitors.
        let line = (self.shared.monitors.load(Ordering::Relaxed) > 0 && monitor::shown(spec.flags))
            .then(|| monitor::line(&self.client.info.addr, &args));
        let start = Instant::now();
        self.client.info.touch(spec.name, start);
        if let Some(tx) = self.transaction.as_mut()
            && !multi::is_control(spec.name)
        {
            let r = if spec.flags.contains(&"no_multi") {
                drop(args);
                self.shared.cmdstats.reject(spec);
                multi::fail(Some(tx));
                Reply::from(Error::msg("Command not allowed inside a transaction"))
            } else {
                self.monitor_queued.extend(line);
                let (parsed, args) = cmd::parse_spec(spec, args);
                let call = cmd::stats::Call::new(&self.shared, spec, args);
                if parsed.is_err() {
                    // Answered at EXEC; a failed call, counted now.
                    self.shared.cmdstats.record(&call.key, None, true);
                }
                multi::queue(tx, parsed.map(|c| (c, call)))
            };
            self.reply_in_order(r, batch);
            return Ok(());
        }
        let (parsed, args) = cmd::parse_spec(spec, args);
        let call = cmd::stats::Call::new(&self.shared, spec, args);
        let command = match parsed {
            Ok(c) => c,
            Err(e) => {
                self.feed(line);
                // An argument error is a failed call, as in Redis; an
                // unknown subcommand names no command. A subcommand's wrong
                // arity is refused before it runs: not in the slow log.
                let ns = cmd::stats::elapsed_ns(start);
                match e {
                    Error::UnknownSubcommand { .. } => {}
                    Error::WrongArity(_) => self.shared.cmdstats.record(&call.key, Some(ns), true),
                    _ => cmd::stats::observe(&self.shared, &call, &self.client.info, ns, true),
                }
                self.reply_in_order(Reply::from(e), batch);
                return Ok(());
            }
        };
        if let Command::Engine(c) = command {
            self.feed(line);
            let alone = c.may_reply_large();
            if alone {
                self.flush_engine(batch).await?;
            }
            batch.push(Queued::Run(c, call));
            if alone {
                self.flush_engine(batch).await?;
            }
            return Ok(());
        }
        // Anything else runs after the queue commands before it.
        self.flush_engine(batch).await?;
        let mut popped = Vec::new();
        let reply = match command {
            Command::Engine(_) => None,
            Command::Client(c) => {
                let r = cmd::stats::apply_client(
                    c.as_ref(),
                    &call,
                    &self.shared,
                    &mut self.client,
                    start,
                );
                self.feed(line);
                r
            }
            Command::Blocking(b) => {
                // Shown when it starts waiting, as Redis shows it.
                self.feed(line);
                // The replies before it leave now, not when it is served.
                self.flush().await?;
                let (r, p, ran) = self.block(b).await?;
                self.shared.cmdstats.record(&call.key, None, r.is_error());
                // Logged when served, with its attempt's time (not its
                // wait), as Redis logs it when it unblocks; not when it
                // times out.
                if let Some(ns) = ran {
                    cmd::stats::observe_time(&self.shared, &call, &self.client.info, ns);
                }
                popped = p;
                Some(r)
            }
            Command::Transaction(control) => {
                let (exec, reset) = (
                    control == multi::Control::Exec,
                    control == multi::Control::Reset,
                );
                let r = multi::apply(
                    control,
                    &mut self.transaction,
                    &self.shared,
                    &mut self.client,
                    &mut popped,
                )
                .await;
                // The queued commands are shown if EXEC ran them.
                let queued = std::mem::take(&mut self.monitor_queued);
                if exec && matches!(r, Reply::Array(_)) {
                    for l in queued {
                        self.feed(Some(l));
                    }
                }
                if reset {
                    // RESET also ends MONITOR and CLIENT REPLY OFF, as in Redis.
                    self.client.monitor = None;
                    self.client.reply_mode = crate::client::ReplyMode::On;
                }
                self.feed(line);
                let ns = cmd::stats::elapsed_ns(start);
                cmd::stats::observe(&self.shared, &call, &self.client.info, ns, r.is_error());
                Some(r)
            }
        };
        // Framing limits are tighter until a client authenticates (or
        // while none needs to).
        let authed = self.client.authenticated || !self.shared.acl.auth_required();
        if authed != self.conn.limits.authenticated {
            self.conn.limits = self.shared.limits(authed);
        }
        if let Some(r) = reply {
            self.reply_popped(r, popped);
        }
        Ok(())
    }

    /// Blocks until the engine hands over a due member, the timeout
    /// passes, the client disconnects or the server shuts down. Returns the
    /// reply, the members it carries and, if it was served (or unblocked
    /// with an error), the time its attempt to pop took, waiting left out.
    async fn block(&mut self, b: Blocking) -> Result<(Reply, Vec<Popped>, Option<u64>)> {
        let Blocking {
            keys,
            opts,
            shape,
            timeout_ms,
            now: _,
        } = b;
        let shared = self.shared.clone();
        let engine = &self.client.engine.clone();
        let with_counts = opts.with_counts;
        // Where to send the client if its group's leadership moves away.
        let first_key = keys.first().cloned();
        let info = self.client.info.clone();
        let attempt = Instant::now();
        let (id, mut rx) = engine.block(keys, opts, || info.actor())?;
        let ran = Some(cmd::stats::elapsed_ns(attempt));
        // A CLIENT UNBLOCK meant for an earlier pop is forgotten.
        info.unblock.store(UNBLOCK_NONE, Ordering::Relaxed);
        info.blocked.store(true, Ordering::Relaxed);
        let sleep = tokio::time::sleep(std::time::Duration::from_millis(timeout_ms));
        tokio::pin!(sleep);
        let max_query = shared.config.client_query_buffer_limit;
        let result = loop {
            let delivery = tokio::select! {
                r = &mut rx => match r {
                    Ok(d) => d,
                    Err(_) => break Ok((Reply::from(Error::ShuttingDown), Vec::new(), None)),
                },
                () = &mut sleep, if timeout_ms > 0 => {
                    rx.close();
                    // A member handed over at the same instant is delivered, not lost.
                    match rx.try_recv() {
                        Ok(d) => d,
                        Err(_) => {
                            engine.unblock(id);
                            break Ok((Reply::NullArray, Vec::new(), None));
                        }
                    }
                }
                n = self.conn.read_more() => {
                    if went_away(&n, self.conn.buffered(), max_query) {
                        engine.unblock(id);
                        rx.close();
                        if let Ok(mut d) = rx.try_recv() {
                            put_back(engine, d.take_popped()).await;
                        }
                        break Err(Error::msg("client went away while blocked"));
                    }
                    continue;
                }
                () = shared.shutdown.wait() => {
                    rx.close();
                    match rx.try_recv() {
                        Ok(d) => d,
                        Err(_) => {
                            engine.unblock(id);
                            break Ok((Reply::from(Error::ShuttingDown), Vec::new(), None));
                        }
                    }
                }
                () = info.wake.notified() => {
                    if info.is_killed() {
                        // As if the client went away: nothing is lost.
                        engine.unblock(id);
                        rx.close();
                        if let Ok(mut d) = rx.try_recv() {
                            put_back(engine, d.take_popped()).await;
                        }
                        break Err(killed());
                    }
                    let woken = match info.unblock.swap(UNBLOCK_NONE, Ordering::Relaxed) {
                        UNBLOCK_TIMEOUT => Reply::NullArray,
                        UNBLOCK_ERROR => Reply::from(Error::Coded(
                            "UNBLOCKED",
                            "client unblocked via CLIENT UNBLOCK".into(),
                        )),
                        _ => continue,
                    };
                    rx.close();
                    // A member handed over at the same instant is delivered, not lost.
                    match rx.try_recv() {
                        Ok(d) => d,
                        Err(_) => {
                            engine.unblock(id);
                            // As in Redis, only an error unblocking is logged.
                            let ran = ran.filter(|_| woken.is_error());
                            break Ok((woken, Vec::new(), ran));
                        }
                    }
                }
            };
            break match self.durable_delivery(delivery, max_query).await? {
                Ok(popped) => {
                    let reply = pop_reply(&popped, shape, with_counts);
                    Ok((reply, popped, ran))
                }
                Err(e) => {
                    let e = match (&shared.cluster, &first_key) {
                        (Some(cluster), Some(key)) => cluster.redirect_lost(e, key).await,
                        _ => e,
                    };
                    Ok((Reply::from(e), Vec::new(), ran))
                }
            };
        };
        info.blocked.store(false, Ordering::Relaxed);
        result
    }

    /// Waits until a delivery may be acknowledged (see
    /// [`Engine::delivery_durable`]), watching the socket meanwhile: a
    /// client that leaves first gets its members put back rather than
    /// taking them with it. The inner result is the members, or why they
    /// may not be acknowledged.
    ///
    /// # Errors
    ///
    /// The client went away.
    async fn durable_delivery(
        &mut self,
        mut d: Delivery,
        max_query: usize,
    ) -> Result<Result<Vec<Popped>>> {
        let engine = self.client.engine.clone();
        let durable = {
            let wait = engine.delivery_durable(&d);
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    r = &mut wait => break Some(r),
                    n = self.conn.read_more() => {
                        if went_away(&n, self.conn.buffered(), max_query) {
                            break None;
                        }
                    }
                }
            }
        };
        match durable {
            Some(Ok(())) => Ok(d.popped),
            // Not durable: the pop is not acknowledged, and the failed store
            // takes no writes, so there is nothing to put back either.
            Some(Err(e)) => Ok(Err(e)),
            None => {
                put_back(&engine, d.take_popped()).await;
                Err(Error::msg("client went away while blocked"))
            }
        }
    }
}

/// The next MONITOR line for a monitoring client; never, for the others.
async fn next_monitor_line(m: &mut Option<monitor::Monitor>) -> Option<Bytes> {
    match m {
        Some(m) => m.next().await,
        None => std::future::pending().await,
    }
}
