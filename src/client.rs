//! One client's state: what `CLIENT LIST` shows about it ([`ClientInfo`],
//! kept in the server's registry) and what its commands change
//! ([`ClientState`]: the protocol, authentication). Commands read and
//! change it; the session owns it.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use crate::protocol::Protocol;

/// What CLIENT LIST / CLIENT INFO show about a connection.
#[derive(Debug)]
pub struct ClientInfo {
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub created: Instant,
    pub name: Mutex<String>,
    pub lib_name: Mutex<String>,
    pub lib_ver: Mutex<String>,
    /// The last command's name and when it came: set on every command, so
    /// one lock and no copy.
    last_cmd: Mutex<(&'static str, Instant)>,
    /// The ACL user the client runs as (CLIENT LIST's `user=`, CLIENT KILL
    /// USER, and ACL DELUSER, which disconnects its clients).
    pub(crate) user: Mutex<bytes::Bytes>,
    pub resp: AtomicU64,
    pub blocked: AtomicBool,
    pub in_multi: AtomicBool,
    /// In MONITOR mode (CLIENT LIST's `O` flag).
    pub(crate) monitor: AtomicBool,
    /// Set by CLIENT KILL: the session closes at its next wake-up.
    pub(crate) killed: AtomicBool,
    /// What CLIENT UNBLOCK asked of a blocked pop: [`UNBLOCK_NONE`],
    /// [`UNBLOCK_TIMEOUT`] or [`UNBLOCK_ERROR`].
    pub(crate) unblock: AtomicU8,
    /// Wakes the session (blocked, idle or paused) for CLIENT KILL and
    /// CLIENT UNBLOCK. One waiter, the session; `notify_one` keeps a permit
    /// if it is not waiting, so a request made between two awaits is seen.
    pub(crate) wake: Notify,
}

/// No CLIENT UNBLOCK pending.
pub(crate) const UNBLOCK_NONE: u8 = 0;
/// CLIENT UNBLOCK id [TIMEOUT]: answer as if the timeout passed.
pub(crate) const UNBLOCK_TIMEOUT: u8 = 1;
/// CLIENT UNBLOCK id ERROR: answer `-UNBLOCKED`.
pub(crate) const UNBLOCK_ERROR: u8 = 2;

impl ClientInfo {
    /// A new connection's entry for the registry.
    pub(crate) fn new(id: u64, addr: String, laddr: String) -> ClientInfo {
        ClientInfo {
            id,
            addr,
            laddr,
            created: Instant::now(),
            name: Mutex::default(),
            lib_name: Mutex::default(),
            lib_ver: Mutex::default(),
            last_cmd: Mutex::new(("NULL", Instant::now())),
            user: Mutex::new(bytes::Bytes::from_static(b"default")),
            resp: AtomicU64::new(2),
            blocked: AtomicBool::new(false),
            in_multi: AtomicBool::new(false),
            monitor: AtomicBool::new(false),
            killed: AtomicBool::new(false),
            unblock: AtomicU8::new(UNBLOCK_NONE),
            wake: Notify::new(),
        }
    }

    /// Who this client is, for the message trace (`by=...`).
    pub(crate) fn actor(&self) -> std::sync::Arc<str> {
        let name = self.name.lock().map(|n| n.clone()).unwrap_or_default();
        format!("id={} name={} addr={}", self.id, name, self.addr).into()
    }

    /// CLIENT KILL: the session closes the connection promptly, whether it
    /// is blocked, idle or waiting out a pause.
    pub(crate) fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Whether CLIENT KILL closed this client.
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    /// CLIENT UNBLOCK: wakes the client if it is blocked in a pop, with
    /// `how` ([`UNBLOCK_TIMEOUT`] or [`UNBLOCK_ERROR`]); false if it is not
    /// blocked.
    pub(crate) fn unblock(&self, how: u8) -> bool {
        if !self.blocked.load(Ordering::Relaxed) {
            return false;
        }
        self.unblock.store(how, Ordering::Relaxed);
        self.wake.notify_one();
        true
    }

    /// The name of the client's user.
    pub(crate) fn user_name(&self) -> bytes::Bytes {
        self.user.lock().map(|u| u.clone()).unwrap_or_default()
    }

    /// Notes a command of `spec` that came at `now` (CLIENT LIST's `cmd=`
    /// and `idle=`).
    pub(crate) fn touch(&self, name: &'static str, now: Instant) {
        if let Ok(mut c) = self.last_cmd.lock() {
            *c = (name, now);
        }
    }

    /// Marks the client as inside `MULTI` (CLIENT LIST's `x` flag).
    pub fn set_in_multi(&self, yes: bool) {
        self.in_multi.store(yes, Ordering::Relaxed);
    }

    /// The CLIENT LIST line for this client (without the newline).
    pub fn line(&self) -> String {
        let get = |m: &Mutex<String>| m.lock().map(|s| s.clone()).unwrap_or_default();
        let (last_cmd, idle) = self
            .last_cmd
            .lock()
            .map_or(("NULL", 0), |c| (c.0, c.1.elapsed().as_secs()));
        let flags = if self.monitor.load(Ordering::Relaxed) {
            "O"
        } else if self.blocked.load(Ordering::Relaxed) {
            "b"
        } else if self.in_multi.load(Ordering::Relaxed) {
            "x"
        } else {
            "N"
        };
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            get(&self.name),
            self.created.elapsed().as_secs(),
            idle,
            flags,
            last_cmd,
            String::from_utf8_lossy(&self.user_name()),
            self.resp.load(Ordering::Relaxed),
            get(&self.lib_name),
            get(&self.lib_ver),
        )
    }
}

/// What a client's commands change about its connection.
#[derive(Debug)]
pub struct ClientState {
    pub info: Arc<ClientInfo>,
    /// RESP2 or RESP3, switched by `HELLO`.
    pub proto: Protocol,
    /// Whether the client has authenticated (or needed not: it connected
    /// while the default user had no password, as in Redis).
    pub authenticated: bool,
    /// The ACL user it runs as.
    pub(crate) user: crate::acl::ClientUser,
    /// Set by `QUIT` and `SHUTDOWN`: close after the reply.
    pub quit: bool,
    /// `CLIENT REPLY`: whether replies are sent.
    pub(crate) reply_mode: ReplyMode,
    /// Set by `MONITOR`: the feed of other clients' commands.
    pub(crate) monitor: Option<crate::cmd::monitor::Monitor>,
    /// The queues `WATCH`ed for the next `EXEC`.
    pub watches: crate::cmd::multi::Watches,
    /// The engine running this client's queue commands: the server's, or in
    /// cluster mode that of the group of the slot it last named.
    pub(crate) engine: crate::engine::Engine,
    /// Cluster mode: the index of that group.
    pub(crate) group: usize,
}

/// `CLIENT REPLY`'s modes, with Redis's rules: OFF silences every reply
/// until `CLIENT REPLY ON`; SKIP silences the next command's reply only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyMode {
    On,
    Off,
    /// `CLIENT REPLY SKIP` ran: the next command is silent.
    SkipNext,
    /// The command being run is silent (the one after SKIP).
    Skip,
}

impl ReplyMode {
    /// Whether replies are dropped now.
    pub(crate) fn silent(self) -> bool {
        matches!(self, ReplyMode::Off | ReplyMode::Skip)
    }

    /// The mode for the next command, once one is done (Redis's
    /// `resetClient`): a skipped command's successor is answered again.
    pub(crate) fn after_command(self) -> ReplyMode {
        match self {
            ReplyMode::Skip => ReplyMode::On,
            ReplyMode::SkipNext => ReplyMode::Skip,
            m => m,
        }
    }
}

impl ClientState {
    /// A new client's state.
    pub(crate) fn new(
        info: Arc<ClientInfo>,
        acl: &crate::acl::Acl,
        engine: crate::engine::Engine,
        group: usize,
    ) -> ClientState {
        ClientState {
            info,
            proto: Protocol::Resp2,
            authenticated: !acl.auth_required(),
            user: crate::acl::ClientUser::default_of(acl),
            quit: false,
            reply_mode: ReplyMode::On,
            monitor: None,
            watches: crate::cmd::multi::Watches::default(),
            engine,
            group,
        }
    }

    /// Runs as `user` from now on (AUTH, HELLO ... AUTH, RESET).
    pub(crate) fn set_user(&mut self, acl: &crate::acl::Acl, user: Arc<crate::acl::User>) {
        if let Ok(mut u) = self.info.user.lock() {
            *u = user.name.clone();
        }
        self.user = crate::acl::ClientUser::new(acl, user);
    }

    /// Switches the protocol (HELLO, RESET).
    pub fn set_proto(&mut self, proto: Protocol) {
        self.proto = proto;
        self.info
            .resp
            .store(proto.version() as u64, Ordering::Relaxed);
    }
}
