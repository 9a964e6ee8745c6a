//! The HTTP listener (`--http-port`, alias `--metrics-port`): one port for
//! the Prometheus scrape (`/metrics`), the web console (`/`) and the JSON
//! API (`/api/`), served by axum over hyper's HTTP/1 server.
//!
//! The robustness promises of the old hand-written scrape server hold for
//! every route: a bounded request head (16 KB) read within 5 s, bounded
//! bodies (1 MB), one request per connection, a time limit per request and
//! per connection, at most [`MAX_CONNECTIONS`] connections at once (more
//! are closed at once), and at most [`MAX_IN_FLIGHT`] requests served at
//! once besides long-poll pops, which have their own cap.

pub(crate) mod api;
pub(crate) mod auth;
mod console;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::ServiceExt;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::shared::Shared;
use crate::{Error, Result};

/// Largest request head (request line and headers) hyper buffers; a
/// larger one is refused.
const MAX_HEAD: usize = 16 * 1024;
/// Largest request body (a batch of members to schedule).
pub(crate) const MAX_BODY: usize = 1024 * 1024;
/// Time a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a request may take, body read included (a long-poll pop waits at
/// most [`api::MAX_WAIT_MS`] of it).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(45);
/// Time a connection may stay open in all (its one request and the
/// response being taken).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections open at once; more are closed at once.
pub(crate) const MAX_CONNECTIONS: usize = 256;
/// Requests served at once (long-poll pops apart); more wait their turn.
const MAX_IN_FLIGHT: usize = 32;
/// Long-poll pops waiting at once; more wait their turn.
const MAX_POLLING: usize = 192;

/// The client's address, put in every request's extensions (for the
/// message trace's `by=`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Peer(pub(crate) SocketAddr);

/// What every handler gets.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) shared: Arc<Shared>,
    pub(crate) sessions: Arc<auth::Sessions>,
}

/// Binds every `--bind` address on `--http-port`; none when it is not set.
///
/// # Errors
///
/// An address that cannot be bound.
pub async fn bind(config: &Config) -> Result<Vec<TcpListener>> {
    let Some(port) = config.http_port else {
        return Ok(Vec::new());
    };
    crate::listen::bind_every(&config.bind, port)
        .await
        .map_err(|f| {
            Error::msg(format!(
                "cannot listen for HTTP on {} port {}: {}",
                f.addr, f.port, f.error
            ))
        })
}

/// The routes: `/metrics`, the console, the API.
pub(crate) fn router(state: AppState) -> Router {
    let polling = Router::new()
        .route("/api/queues/{queue}/pop", axum::routing::post(api::pop))
        .method_not_allowed_fallback(api::method_not_allowed)
        .layer(ConcurrencyLimitLayer::new(MAX_POLLING));
    let api = api::routes()
        .layer(ConcurrencyLimitLayer::new(MAX_IN_FLIGHT))
        .merge(polling)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require,
        ));
    Router::new()
        .route("/metrics", any(metrics))
        .merge(auth::routes())
        .merge(api)
        .merge(console::routes())
        .fallback(not_found)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// `GET`/`HEAD /metrics`: the OpenMetrics exposition.
async fn metrics(
    axum::extract::State(state): axum::extract::State<AppState>,
    method: Method,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "GET, HEAD")],
            "only GET and HEAD\n",
        )
            .into_response();
    }
    match crate::metrics::render(&state.shared) {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
            )],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", e.detail())).into_response(),
    }
}

async fn not_found(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        return api::ApiError::new(StatusCode::NOT_FOUND, "no such API endpoint").into_response();
    }
    (
        StatusCode::NOT_FOUND,
        "not found: the console is at /, the metrics at /metrics, the API at /api/\n",
    )
        .into_response()
}

/// Serves `listeners` until shutdown.
pub async fn run(listeners: Vec<TcpListener>, shared: Arc<Shared>) {
    if listeners.is_empty() {
        return;
    }
    let state = AppState {
        shared: shared.clone(),
        sessions: Arc::new(auth::Sessions::default()),
    };
    let app = router(state);
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut tasks = tokio::task::JoinSet::new();
    for listener in listeners {
        tasks.spawn(accept_loop(listener, app.clone(), limit.clone()));
    }
    shared.shutdown.wait().await;
    // Stops the accept loops and, with them, the requests in flight.
    tasks.shutdown().await;
}

async fn accept_loop(listener: TcpListener, app: Router, limit: Arc<Semaphore>) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            Some(_) = conns.join_next() => continue,
        };
        let (socket, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!("http: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            continue; // too many connections at once: drop this one
        };
        let app = app.clone();
        conns.spawn(async move {
            serve(socket, peer, app).await;
            drop(permit);
        });
    }
}

/// Serves one connection: one request (no keep-alive, as the scrape
/// server before it), with its head bounded in size and time.
async fn serve(socket: TcpStream, peer: SocketAddr, app: Router) {
    let _ = socket.set_nodelay(true);
    let svc = app.map_request(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(Peer(peer));
        req
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT)
        .keep_alive(false)
        .title_case_headers(true)
        .max_buf_size(MAX_HEAD)
        .serve_connection(TokioIo::new(socket), TowerToHyperService::new(svc));
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("http: {e}"),
        Err(_) => tracing::debug!("http: connection from {peer} timed out"),
    }
}
