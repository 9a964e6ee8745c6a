//! The accept loop: listeners, the connection limit, one task per client,
//! and the state the connections share.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};

use crate::Result;
use crate::config::Config;
use crate::connection::Connection;
use crate::engine::Engine;
use crate::protocol::Limits;
use crate::session::Session;
use crate::shutdown::Shutdown;

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

/// Server-wide counters for INFO.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub connections_received: AtomicU64,
    pub rejected_connections: AtomicU64,
    pub commands_processed: AtomicU64,
}

/// Settings that CONFIG SET may change at run time.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub maxclients: usize,
    pub requirepass: Option<String>,
}

/// State shared by every connection.
pub struct Shared {
    pub config: Config,
    pub engine: Engine,
    pub runtime: RwLock<Runtime>,
    pub clients: Mutex<BTreeMap<u64, Arc<ClientInfo>>>,
    pub connected: AtomicUsize,
    pub next_client_id: AtomicU64,
    pub stats: ServerStats,
    pub started: Instant,
    pub shutdown: Shutdown,
    /// The port actually bound (differs from the config with `--port 0`).
    pub port: AtomicU64,
    /// (when, commands processed then, rate) for `instantaneous_ops_per_sec`.
    ops_sample: Mutex<(Instant, u64, u64)>,
}

impl Shared {
    /// Shared state for a server over `engine`.
    pub fn new(config: Config, engine: Engine) -> Arc<Shared> {
        Arc::new(Shared {
            runtime: RwLock::new(Runtime {
                maxclients: config.maxclients,
                requirepass: config.requirepass.clone(),
            }),
            port: AtomicU64::new(u64::from(config.port)),
            config,
            engine,
            clients: Mutex::new(BTreeMap::new()),
            connected: AtomicUsize::new(0),
            next_client_id: AtomicU64::new(1),
            stats: ServerStats::default(),
            started: Instant::now(),
            shutdown: Shutdown::new(),
            ops_sample: Mutex::new((Instant::now(), 0, 0)),
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

    /// Framing limits for a client in the given authentication state.
    pub fn limits(&self, authenticated: bool) -> Limits {
        Limits {
            max_bulk_len: self.config.proto_max_bulk_len,
            max_args: 1024 * 1024,
            authenticated,
        }
    }
}

/// Binds every address of `--bind` on `--port`.
///
/// # Errors
///
/// Fails if an address cannot be bound.
pub async fn bind(config: &Config) -> Result<Vec<TcpListener>> {
    let mut listeners = Vec::new();
    let mut port = config.port;
    for addr in config.bind.split_whitespace() {
        let addr = addr.trim_start_matches('-');
        let l = TcpListener::bind((addr, port)).await?;
        // With --port 0 the first listener picks the port and the rest follow it.
        port = l.local_addr()?.port();
        listeners.push(l);
    }
    Ok(listeners)
}

/// Accepts connections until shutdown, then waits for the connections to
/// finish and shuts the engine down.
///
/// # Errors
///
/// A storage error from the final fsync.
pub async fn run(listeners: Vec<TcpListener>, shared: Arc<Shared>) -> Result<()> {
    if let Some(l) = listeners.first() {
        shared
            .port
            .store(u64::from(l.local_addr()?.port()), Ordering::Relaxed);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(accept_loop(listener, shared.clone()));
    }
    shared.shutdown.wait().await;
    tasks.shutdown().await;
    // Give connections a moment to answer what is in flight.
    let deadline = Instant::now() + std::time::Duration::from_secs(5);
    while shared.connected.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    shared.engine.shutdown().await
}

/// How long the accept loop waits after a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Least time between two log lines about failed accepts.
const ACCEPT_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut warned: Option<Instant> = None;
    loop {
        let (socket, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: the connection stays
                // in the listen backlog and the listener stays readable, so
                // back off instead of spinning, and keep serving. Every retry
                // fails alike until a descriptor is free: say so now and then.
                if warned.is_none_or(|t| t.elapsed() >= ACCEPT_WARN_EVERY) {
                    tracing::warn!("accept failed: {e}");
                    warned = Some(Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        shared
            .stats
            .connections_received
            .fetch_add(1, Ordering::Relaxed);
        let max = shared.runtime().maxclients;
        if shared.connected.load(Ordering::Relaxed) >= max {
            shared
                .stats
                .rejected_connections
                .fetch_add(1, Ordering::Relaxed);
            reject(socket);
            continue;
        }
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        tokio::spawn(async move {
            serve(socket, &shared).await;
            shared.connected.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Tells a client past `maxclients` so and closes its connection at once, as
/// Redis does: one non-blocking write, which a fresh socket's buffer takes
/// whole. A task per rejected client would keep a descriptor each while a
/// burst lasts.
fn reject(socket: TcpStream) {
    if let Ok(mut socket) = socket.into_std() {
        let _ = socket.write(b"-ERR max number of clients reached\r\n");
    }
}

async fn serve(socket: TcpStream, shared: &Arc<Shared>) {
    let authenticated = shared.runtime().requirepass.is_none();
    let conn = Connection::new(
        socket,
        shared.limits(authenticated),
        shared.config.client_query_buffer_limit,
    );
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let info = Arc::new(ClientInfo {
        id,
        addr: conn.peer(),
        laddr: conn.local(),
        created: Instant::now(),
        name: Mutex::default(),
        lib_name: Mutex::default(),
        lib_ver: Mutex::default(),
        last_cmd: Mutex::new("NULL".into()),
        last_active: Mutex::new(Instant::now()),
        resp: AtomicU64::new(2),
        blocked: AtomicBool::new(false),
        in_multi: AtomicBool::new(false),
    });
    if let Ok(mut c) = shared.clients.lock() {
        c.insert(id, info.clone());
    }
    let mut session = Session::new(conn, shared.clone(), info, authenticated);
    if let Err(e) = session.run().await {
        tracing::debug!("client {id} closed: {e}");
    }
    if let Ok(mut c) = shared.clients.lock() {
        c.remove(&id);
    }
}
