//! The accept loop: listeners (plain and TLS), the connection limit,
//! protected mode, one task per client.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::net::{TcpListener, TcpStream};

use crate::Result;
use crate::client::ClientInfo;
use crate::config::Config;
use crate::connection::Connection;
use crate::session::Session;
use crate::shared::Shared;

/// A bound listening socket.
pub struct Listener {
    pub tcp: TcpListener,
    /// Whether clients of this socket speak TLS (`--tls-port`).
    pub tls: bool,
}

/// Binds every address of `--bind` on `--port`, and on `--tls-port` if set.
/// As in Redis, `--port 0` with a TLS port means TLS only; without one it
/// lets the system pick a port.
///
/// # Errors
///
/// Fails if an address cannot be bound.
pub async fn bind(config: &Config) -> Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    if config.port != 0 || config.tls_port == 0 {
        ports.push((config.port, false));
    }
    if config.tls_port != 0 {
        ports.push((config.tls_port, true));
    }
    for (port, tls) in ports {
        let bound = crate::listen::bind_every(&config.bind, port)
            .await
            .map_err(|f| {
                crate::Error::msg(format!(
                    "Failed listening on {}:{}{}: {}",
                    f.addr,
                    f.port,
                    if tls { " (TLS)" } else { "" },
                    f.error
                ))
            })?;
        listeners.extend(bound.into_iter().map(|tcp| Listener { tcp, tls }));
    }
    Ok(listeners)
}

/// Accepts connections until shutdown, then waits for the connections to
/// finish and shuts the engine down.
///
/// # Errors
///
/// A storage error from the final fsync.
pub async fn run(listeners: Vec<Listener>, shared: Arc<Shared>) -> Result<()> {
    if let Some(l) = listeners.iter().find(|l| !l.tls) {
        shared
            .port
            .store(u64::from(l.tcp.local_addr()?.port()), Ordering::Relaxed);
    } else {
        // TLS only: no plain port.
        shared.port.store(0, Ordering::Relaxed);
    }
    if let Some(l) = listeners.iter().find(|l| l.tls) {
        shared
            .tls
            .port
            .store(u64::from(l.tcp.local_addr()?.port()), Ordering::Relaxed);
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
    match &shared.cluster {
        Some(cluster) => cluster.shutdown().await,
        None => shared.engine.shutdown().await,
    }
}

/// How long the accept loop waits after a failed accept.
const ACCEPT_BACKOFF: std::time::Duration = std::time::Duration::from_millis(50);

/// Least time between two log lines about failed accepts.
const ACCEPT_WARN_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

async fn accept_loop(listener: Listener, shared: Arc<Shared>) {
    let mut warned: Option<Instant> = None;
    loop {
        let (socket, peer) = match listener.tcp.accept().await {
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
        // Small replies should leave at once, not wait for Nagle.
        let _ = socket.set_nodelay(true);
        shared.connected.fetch_add(1, Ordering::Relaxed);
        let shared = shared.clone();
        let tls = listener.tls;
        tokio::spawn(async move {
            if tls {
                serve_tls(socket, peer, &shared).await;
            } else if denied(peer, &shared) {
                let _ = socket.try_write(PROTECTED_MODE_DENIED.as_bytes());
            } else {
                serve(socket, peer, &shared).await;
            }
            shared.connected.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// How long a TLS client has to complete its handshake: a client that
/// connects and sends nothing must not hold a connection slot for ever.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Redis 7.0's protected-mode refusal, word for word (clients and tests
/// look for it), typo included.
pub(crate) const PROTECTED_MODE_DENIED: &str = "-DENIED Redis is running in protected mode because protected \
mode is enabled and no password is set for the default user. \
In this mode connections are only accepted from the loopback interface. \
If you want to connect from external computers to Redis you \
may adopt one of the following solutions: \
1) Just disable protected mode sending the command \
'CONFIG SET protected-mode no' from the loopback interface \
by connecting to Redis from the same host the server is \
running, however MAKE SURE Redis is not publicly accessible \
from internet if you do so. Use CONFIG REWRITE to make this \
change permanent. \
2) Alternatively you can just disable the protected mode by \
editing the Redis configuration file, and setting the protected \
mode option to 'no', and then restarting the server. \
3) If you started the server manually just for testing, restart \
it with the '--protected-mode no' option. \
4) Setup a an authentication password for the default user. \
NOTE: You only need to do one of the above things in order for \
the server to start accepting connections from the outside.\r\n";

/// Protected mode: whether a client may not connect; if so counts it as a
/// rejected connection, as Redis does, and the caller sends
/// [`PROTECTED_MODE_DENIED`] (one write, which a fresh connection's buffer
/// takes whole) and closes.
fn denied(peer: std::net::SocketAddr, shared: &Shared) -> bool {
    if !shared.protected_mode_denies(&peer) {
        return false;
    }
    shared
        .stats
        .rejected_connections
        .fetch_add(1, Ordering::Relaxed);
    if !shared.protected_logged.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            "Refused a connection from {peer}: protected mode is on and no password is set \
             (only 127.0.0.1 and ::1 may connect; set requirepass, or --protected-mode no on \
             a trusted network). Said once; later refusals count in rejected_connections."
        );
    }
    true
}

/// A TLS client: the handshake (bounded in time), then protected mode and
/// the session over the encrypted stream, as Redis checks protected mode
/// once the connection is established.
async fn serve_tls(socket: TcpStream, peer: std::net::SocketAddr, shared: &Arc<Shared>) {
    let Some(acceptor) = shared.tls.acceptor() else {
        return;
    };
    let local = socket.local_addr();
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            shared
                .tls
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("TLS handshake with {peer} failed: {e}");
            return;
        }
        Err(_) => {
            shared
                .tls
                .handshake_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("TLS handshake with {peer} timed out");
            return;
        }
    };
    let mut stream = stream;
    if denied(peer, shared) {
        // Over TLS the refusal goes through the encrypted stream.
        let _ = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, async {
            use tokio::io::AsyncWriteExt;
            let _ = stream.write_all(PROTECTED_MODE_DENIED.as_bytes()).await;
            let _ = stream.shutdown().await;
        })
        .await;
        return;
    }
    run_session(stream, peer, local, shared).await;
}

async fn serve(socket: TcpStream, peer: std::net::SocketAddr, shared: &Arc<Shared>) {
    let local = socket.local_addr();
    run_session(socket, peer, local, shared).await;
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

async fn run_session<S>(
    stream: S,
    peer: std::net::SocketAddr,
    local: std::io::Result<std::net::SocketAddr>,
    shared: &Arc<Shared>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let authenticated = shared.runtime().requirepass.is_none();
    let conn = Connection::new(
        stream,
        shared.limits(authenticated),
        shared.config.client_query_buffer_limit,
        shared.obuf_limit(),
    );
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let local = local.map_or_else(|_| "?".into(), |a| a.to_string());
    let info = Arc::new(ClientInfo::new(id, peer.to_string(), local));
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
