//! Listening on one port of every `--bind` address (the RESP port, the TLS
//! port and the HTTP port all do).

use tokio::net::TcpListener;

/// Why [`bind_every`] failed: the address and port, and the OS's error.
pub(crate) struct BindFailure {
    pub(crate) addr: String,
    pub(crate) port: u16,
    pub(crate) error: std::io::Error,
}

/// How many times port 0 is chosen again when the port the first address
/// got is taken on a later one.
const PORT_0_ATTEMPTS: usize = 8;

/// Listens on `port` of every address of `bind` (space-separated, as
/// redis.conf's `bind`). With port 0 the first address picks the port and
/// the others follow it; that port may be taken on another address (by a
/// connection's local port, say), and then the choice is made again.
///
/// # Errors
///
/// An address cannot be listened on.
pub(crate) async fn bind_every(
    bind: &str,
    port: u16,
) -> std::result::Result<Vec<TcpListener>, BindFailure> {
    let mut attempts = if port == 0 { PORT_0_ATTEMPTS } else { 1 };
    loop {
        attempts -= 1;
        match bind_once(bind, port).await {
            Err((failure, chosen))
                if chosen
                    && attempts > 0
                    && failure.error.kind() == std::io::ErrorKind::AddrInUse =>
            {
                continue;
            }
            Err((failure, _)) => return Err(failure),
            Ok(listeners) => return Ok(listeners),
        }
    }
}

/// One attempt of [`bind_every`]; on failure, whether the port that failed
/// was chosen by an earlier address (rather than asked for).
async fn bind_once(
    bind: &str,
    asked: u16,
) -> std::result::Result<Vec<TcpListener>, (BindFailure, bool)> {
    let mut listeners: Vec<TcpListener> = Vec::new();
    let mut port = asked;
    for addr in bind.split_whitespace() {
        let addr = addr.trim_start_matches('-');
        let fail = |error| {
            let failure = BindFailure {
                addr: addr.to_string(),
                port,
                error,
            };
            (failure, asked == 0 && !listeners.is_empty())
        };
        let l = TcpListener::bind((addr, port)).await.map_err(fail)?;
        port = l.local_addr().map_err(fail)?.port();
        listeners.push(l);
    }
    Ok(listeners)
}
