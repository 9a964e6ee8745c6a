//! One client's state: what `CLIENT LIST` shows about it ([`ClientInfo`],
//! kept in the server's registry) and what its commands change
//! ([`ClientState`]: the protocol, authentication). Commands read and
//! change it; the session owns it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

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
    pub last_cmd: Mutex<String>,
    pub last_active: Mutex<Instant>,
    pub resp: AtomicU64,
    pub blocked: AtomicBool,
    pub in_multi: AtomicBool,
}

impl ClientInfo {
    /// Marks the client as inside `MULTI` (CLIENT LIST's `x` flag).
    pub fn set_in_multi(&self, yes: bool) {
        self.in_multi.store(yes, Ordering::Relaxed);
    }

    /// The CLIENT LIST line for this client (without the newline).
    pub fn line(&self) -> String {
        let get = |m: &Mutex<String>| m.lock().map(|s| s.clone()).unwrap_or_default();
        let idle = self
            .last_active
            .lock()
            .map(|t| t.elapsed().as_secs())
            .unwrap_or(0);
        let flags = if self.blocked.load(Ordering::Relaxed) {
            "b"
        } else if self.in_multi.load(Ordering::Relaxed) {
            "x"
        } else {
            "N"
        };
        format!(
            "id={} addr={} laddr={} fd=0 name={} age={} idle={} flags={} db=0 sub=0 psub=0 ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user=default redir=-1 resp={} lib-name={} lib-ver={}",
            self.id,
            self.addr,
            self.laddr,
            get(&self.name),
            self.created.elapsed().as_secs(),
            idle,
            flags,
            get(&self.last_cmd),
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
    /// Whether the client has authenticated (always, without a password).
    pub authenticated: bool,
    /// Set by `QUIT` and `SHUTDOWN`: close after the reply.
    pub quit: bool,
}

impl ClientState {
    /// A new client's state.
    pub fn new(info: Arc<ClientInfo>, authenticated: bool) -> ClientState {
        ClientState {
            info,
            proto: Protocol::Resp2,
            authenticated,
            quit: false,
        }
    }

    /// Switches the protocol (HELLO, RESET).
    pub fn set_proto(&mut self, proto: Protocol) {
        self.proto = proto;
        self.info
            .resp
            .store(proto.version() as u64, Ordering::Relaxed);
    }
}
