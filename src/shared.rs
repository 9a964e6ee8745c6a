//! What every connection shares: the configuration, the engine, settings
//! CONFIG SET may change, the client registry and server-wide counters.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::{broadcast, watch};

use crate::client::ClientInfo;
use crate::config::Config;
use crate::engine::Engine;
use crate::protocol::Limits;
use crate::shutdown::Shutdown;

/// Server-wide counters for INFO.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub commands_processed: AtomicU64,
    /// Clients closed for passing `client-output-buffer-limit`.
    pub obuf_limit_disconnections: AtomicU64,
}

/// Settings that CONFIG SET may change at run time.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub maxclients: usize,
    pub requirepass: Option<String>,
    pub obuf_limits: crate::config::ObufLimits,
    /// `protected-mode`.
    pub protected_mode: bool,
}

/// State shared by every connection.
pub struct Shared {
    pub config: Config,
    pub engine: Engine,
    /// Cluster mode: this node's part in it (`None` on a single node).
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    pub runtime: RwLock<Runtime>,
    pub clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    pub connected: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub stats: ServerStats,
    /// Per-command figures (INFO commandstats, errorstats, latencystats).
    pub cmdstats: Arc<crate::cmd::stats::CommandStats>,
    /// SLOWLOG (fed where commandstats time commands).
    pub(crate) slowlog: crate::cmd::slowlog::SlowLog,
    /// LATENCY (fed where commandstats time commands).
    pub(crate) latency: crate::cmd::latency::LatencyMonitor,
    pub started: Instant,
    pub shutdown: Shutdown,
    /// The port actually bound (differs from the config with `--port 0`).
    pub port: AtomicU64,
    /// (when, commands processed then, rate) for `instantaneous_ops_per_sec`.
    ops_sample: Mutex<(Instant, u64, u64)>,
    /// `CLIENT PAUSE`.
    pub(crate) pause: Pause,
    /// Clients in MONITOR mode: while 0, commands are not formatted for
    /// the feed (one atomic load per command).
    pub(crate) monitors: Arc<AtomicUsize>,
    /// Every command run, as MONITOR prints it (see [`crate::cmd::monitor`]).
    pub(crate) monitor_feed: broadcast::Sender<Bytes>,
    /// ACL users and the ACL log.
    pub(crate) acl: crate::acl::Acl,
    /// TLS settings and the acceptor for new handshakes.
    pub tls: crate::tls::Tls,
    /// Whether protected mode has refused a client yet: the log says why
    /// once, not once per client.
    pub(crate) protected_logged: AtomicBool,
}

/// Lines of MONITOR output kept for a monitor that falls behind; beyond
/// this it misses lines rather than the server buffering without bound.
const MONITOR_BACKLOG: usize = 8192;

/// What `CLIENT PAUSE` holds back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PauseMode {
    /// Write commands (table flag `write`, blocking pops included).
    Write,
    /// Every command.
    All,
}

/// The state of `CLIENT PAUSE`: a mode until a deadline, or none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PauseState {
    pub(crate) mode: Option<PauseMode>,
    pub(crate) until: Instant,
}

impl PauseState {
    /// Whether a command (a write or not) must wait now.
    pub(crate) fn holds(&self, write: bool) -> bool {
        match self.mode {
            None => false,
            Some(m) => Instant::now() < self.until && (m == PauseMode::All || write),
        }
    }
}

/// `CLIENT PAUSE` / `CLIENT UNPAUSE`, shared by every session.
pub(crate) struct Pause {
    /// Fast path: false while no pause was set since the last UNPAUSE or
    /// expiry, so an unpaused server pays one atomic load per command.
    active: AtomicBool,
    /// The state; sessions waiting out a pause watch it for UNPAUSE.
    state: watch::Sender<PauseState>,
}

impl Pause {
    fn new() -> Pause {
        Pause {
            active: AtomicBool::new(false),
            state: watch::Sender::new(PauseState {
                mode: None,
                until: Instant::now(),
            }),
        }
    }

    /// Whether a pause may be in effect (then see [`Pause::subscribe`]).
    pub(crate) fn maybe_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    /// The state, to wait for a change of it.
    pub(crate) fn subscribe(&self) -> watch::Receiver<PauseState> {
        self.state.subscribe()
    }

    /// `CLIENT PAUSE`: as in Redis, a pause already in effect is only made
    /// longer or stricter, never shorter or looser.
    pub(crate) fn pause(&self, until: Instant, mode: PauseMode) {
        self.state.send_modify(|s| {
            let now = Instant::now();
            if s.mode.is_none() || s.until <= now {
                *s = PauseState {
                    mode: Some(mode),
                    until,
                };
            } else {
                s.until = s.until.max(until);
                s.mode = s.mode.max(Some(mode));
            }
        });
        self.active.store(true, Ordering::Relaxed);
    }

    /// Turns the fast path back on once a pause has run out.
    pub(crate) fn clear_expired(&self) {
        self.state.send_if_modified(|s| {
            if s.mode.is_some() && s.until <= Instant::now() {
                s.mode = None;
                self.active.store(false, Ordering::Relaxed);
            }
            false
        });
    }

    /// `CLIENT UNPAUSE`: wakes every waiting client.
    pub(crate) fn unpause(&self) {
        self.state.send_modify(|s| s.mode = None);
        self.active.store(false, Ordering::Relaxed);
    }
}

impl Shared {
    /// What HELLO's `mode` and INFO's `redis_mode` say, as Redis does.
    pub fn mode_name(&self) -> &'static str {
        if self.cluster.is_some() {
            "cluster"
        } else {
            "standalone"
        }
    }

    /// Every engine of this process: the server's, or in cluster mode one
    /// per group (CONFIG SET applies to all).
    pub fn engines(&self) -> Vec<&Engine> {
        match &self.cluster {
            Some(c) => c.groups.iter().map(|g| &g.engine).collect(),
            None => vec![&self.engine],
        }
    }

    /// Shared state for a server over `engine`.
    pub fn new(
        config: Config,
        engine: Engine,
        cluster: Option<Arc<crate::cluster::Cluster>>,
    ) -> Arc<Shared> {
        let acl = crate::acl::Acl::new(config.requirepass.as_deref());
        Arc::new(Shared {
            runtime: RwLock::new(Runtime {
                maxclients: config.maxclients,
                requirepass: config.requirepass.clone(),
                obuf_limits: config.obuf_limits(),
                protected_mode: config.protected_mode,
            }),
            tls: crate::tls::Tls::new(&config),
            protected_logged: AtomicBool::new(false),
            port: AtomicU64::new(u64::from(config.port)),
            slowlog: crate::cmd::slowlog::SlowLog::new(
                config.slowlog_log_slower_than,
                config.slowlog_max_len,
            ),
            latency: crate::cmd::latency::LatencyMonitor::new(config.latency_monitor_threshold),
            config,
            engine,
            cluster,
            clients: Mutex::new(BTreeMap::new()),
            connected: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
            stats: ServerStats::default(),
            cmdstats: Arc::default(),
            started: Instant::now(),
            shutdown: Shutdown::new(),
            ops_sample: Mutex::new((Instant::now(), 0, 0)),
            pause: Pause::new(),
            monitors: Arc::new(AtomicUsize::new(0)),
            monitor_feed: broadcast::Sender::new(MONITOR_BACKLOG),
            acl,
        })
    }

    /// Commands per second, measured between INFO calls at least a second apart.
    pub fn ops_per_sec(&self) -> u64 {
        let total = self.stats.commands_processed.load(Ordering::Relaxed);
        let Ok(mut s) = self.ops_sample.lock() else {
            return 0;
        };
        let elapsed = s.0.elapsed().as_secs_f64();
        if elapsed >= 1.0 {
            s.2 = ((total - s.1) as f64 / elapsed) as u64;
            *s = (Instant::now(), total, s.2);
        }
        s.2
    }

    /// A copy of the run-time settings.
    pub fn runtime(&self) -> Runtime {
        self.runtime
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The output buffer limit of normal clients in force.
    pub(crate) fn obuf_limit(&self) -> crate::config::ObufLimit {
        self.runtime.read().map_or_else(
            |e| e.into_inner().obuf_limits.normal,
            |r| r.obuf_limits.normal,
        )
    }

    /// Whether the default user can be used without a password (on and
    /// nopass): what protected mode treats as "no password set". With
    /// ACL users, `requirepass` alone no longer says it.
    pub fn default_user_is_open(&self) -> bool {
        self.acl.default_user_is_open()
    }

    /// Loads `aclfile` (at start and by ACL LOAD): the users replace those
    /// in memory, whose clients are disconnected (the default user's stay,
    /// as in Redis); nothing changes if the file has an error.
    ///
    /// # Errors
    ///
    /// Redis's description of what is wrong with the file.
    pub fn load_aclfile(&self) -> Result<(), String> {
        let Some(path) = &self.config.aclfile else {
            return Ok(());
        };
        let shown = path.display().to_string();
        let replaced = self.acl.load_file(path, &shown)?;
        self.kill_clients_of(&replaced);
        Ok(())
    }

    /// Disconnects the clients running as one of `users` (ACL DELUSER,
    /// ACL LOAD), as Redis does; a client deleting its own user gets its
    /// reply first.
    pub(crate) fn kill_clients_of(&self, users: &[Bytes]) {
        if users.is_empty() {
            return;
        }
        if let Ok(clients) = self.clients.lock() {
            for c in clients.values() {
                if users.contains(&c.user_name()) {
                    c.kill();
                }
            }
        }
    }

    /// Whether protected mode refuses a client from `peer`: as in Redis
    /// 7.0, while `protected-mode` is on and the default user has no
    /// password, only 127.0.0.1 and ::1 are let in (whatever `bind` says).
    /// This is the one place the rule lives; "no password" is the ACL
    /// default user being usable without one ([`Shared::default_user_is_open`]).
    pub(crate) fn protected_mode_denies(&self, peer: &std::net::SocketAddr) -> bool {
        let on = self
            .runtime
            .read()
            .map_or_else(|e| e.into_inner().protected_mode, |r| r.protected_mode);
        on && self.default_user_is_open() && !is_local(peer.ip())
    }

    /// Framing limits for a client in the given authentication state.
    pub fn limits(&self, authenticated: bool) -> Limits {
        Limits {
            max_bulk_len: self.config.proto_max_bulk_len,
            max_args: 1024 * 1024,
            authenticated,
        }
    }
}

/// Redis's `islocalClient`: exactly 127.0.0.1 or ::1 (not the rest of
/// 127.0.0.0/8). An IPv4 loopback client on a dual-stack socket shows as
/// ::ffff:127.0.0.1 and counts as 127.0.0.1.
fn is_local(ip: std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4 == std::net::Ipv4Addr::LOCALHOST,
        std::net::IpAddr::V6(v6) => v6 == std::net::Ipv6Addr::LOCALHOST,
    }
}

#[cfg(test)]
mod tests {
    use super::is_local;

    #[test]
    fn only_the_two_loopback_addresses_are_local_as_in_redis() {
        for (ip, local) in [
            ("127.0.0.1", true),
            ("::1", true),
            ("::ffff:127.0.0.1", true),
            ("127.0.0.2", false),
            ("10.0.0.1", false),
            ("::ffff:10.0.0.1", false),
            ("fe80::1", false),
        ] {
            assert_eq!(is_local(ip.parse().unwrap()), local, "{ip}");
        }
    }
}
