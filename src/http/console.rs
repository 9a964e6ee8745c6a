//! The web console: plain HTML, CSS and JavaScript compiled into the
//! binary (no build step), talking to the JSON API.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AppState;

/// One asset: its bytes and Content-Type.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The page may not be framed by another site (clickjacking).
            (
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("DENY"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

/// `/` and the assets.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/",
            get(|| async {
                asset(
                    include_str!("assets/index.html"),
                    "text/html; charset=utf-8",
                )
            }),
        )
        .route(
            "/console.js",
            get(|| async {
                asset(
                    include_str!("assets/console.js"),
                    "text/javascript; charset=utf-8",
                )
            }),
        )
        .route(
            "/console.css",
            get(|| async {
                asset(
                    include_str!("assets/console.css"),
                    "text/css; charset=utf-8",
                )
            }),
        )
}
