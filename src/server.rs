//! The accept loop: listeners, the connection limit, one task per client.

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
        shared.obuf_limit(),
    );
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let info = Arc::new(ClientInfo::new(id, conn.peer(), conn.local()));
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
