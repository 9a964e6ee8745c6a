//! Who may use the console and the API: with `requirepass` set, the same
//! password as AUTH, by HTTP basic authentication (`curl -u default:pass`)
//! or by the console's login form, which opens a session (an HttpOnly,
//! SameSite=Strict cookie). A request authenticated by the session cookie
//! that changes something must also carry the session's CSRF token in the
//! `X-CSRF-Token` header, which another site's page cannot read.
//!
//! Every credential check goes through [`check_credentials`], which takes
//! `(user, pass)` and checks them against the ACL users as AUTH does. Only
//! users with every command on every key (`+@all ~*`) may use the console
//! and the API: its endpoints are not mapped to ACL permissions (yet), so a
//! restricted user is refused rather than given more than RESP allows.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::api::{ApiError, Body};
use crate::shared::Shared;

/// The session cookie's name.
const COOKIE: &str = "delayd_session";
/// The header a cookie-authenticated write must carry.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";
/// Sent by the console's own requests: a 401 then carries no
/// `WWW-Authenticate`, so the browser shows the login form, not its dialog.
const CONSOLE_HEADER: &str = "x-delayd-console";
/// How long a session lasts.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at most; the oldest goes first.
const MAX_SESSIONS: usize = 1024;

/// Whether the console and API ask for credentials: when clients must
/// AUTH (the default user has a password, or is off).
pub(crate) fn auth_required(shared: &Shared) -> bool {
    shared.acl.auth_required()
}

/// Why credentials were refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// No such user, user off, or wrong password (as AUTH's WRONGPASS).
    Wrong,
    /// Right, but the user's permissions are restricted.
    Restricted,
}

/// Checks a user name and password as AUTH does (an empty user is the
/// `default` user). The one place HTTP credentials are checked.
pub(crate) fn check_credentials(shared: &Shared, user: &str, pass: &str) -> Result<(), Refused> {
    let user = if user.is_empty() { "default" } else { user };
    match shared.acl.authenticate(user.as_bytes(), pass.as_bytes()) {
        Some(u) if u.unrestricted() => Ok(()),
        Some(_) => Err(Refused::Restricted),
        None => Err(Refused::Wrong),
    }
}

/// What a session was opened under: any change of the users (a password
/// changed by CONFIG SET requirepass or ACL SETUSER, a user deleted) ends
/// every session.
fn credentials_epoch(shared: &Shared) -> u64 {
    shared.acl.generation()
}

#[derive(Debug)]
struct Session {
    csrf: String,
    epoch: u64,
    created: Instant,
}

/// The console's open sessions, by cookie token.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn open(&self, epoch: u64) -> Option<(String, String)> {
        let token = random_hex()?;
        let csrf = random_hex()?;
        let mut open = self.open.lock().ok()?;
        open.retain(|_, s| s.created.elapsed() < SESSION_TTL);
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(k, _)| k.clone())
        {
            open.remove(&oldest);
        }
        open.insert(
            token.clone(),
            Session {
                csrf: csrf.clone(),
                epoch,
                created: Instant::now(),
            },
        );
        Some((token, csrf))
    }

    /// The CSRF token of a live session opened under `epoch`.
    fn csrf(&self, token: &str, epoch: u64) -> Option<String> {
        let open = self.open.lock().ok()?;
        let s = open.get(token)?;
        (s.epoch == epoch && s.created.elapsed() < SESSION_TTL).then(|| s.csrf.clone())
    }

    fn close(&self, token: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(token);
        }
    }
}

/// 32 random bytes from the kernel, as hex.
fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_string())
}

/// `Authorization: Basic base64(user:pass)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(base64_decode(b64.trim())?).ok()?;
    let (user, pass) = raw.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Standard base64 (padding optional); `None` if malformed.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.chunks(4) {
        if chunk.len() == 1 {
            return None;
        }
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// How a request is authenticated.
#[derive(Debug, PartialEq, Eq)]
enum Authed {
    /// No password is set, or HTTP basic credentials were right.
    Open,
    /// The console's session, with its CSRF token.
    Session(String),
    /// Right credentials of a user with restricted permissions.
    Restricted,
    No,
}

fn authenticate(state: &AppState, headers: &HeaderMap) -> Authed {
    let shared = &state.shared;
    if !auth_required(shared) {
        return Authed::Open;
    }
    if let Some((user, pass)) = basic_credentials(headers) {
        return match check_credentials(shared, &user, &pass) {
            Ok(()) => Authed::Open,
            Err(Refused::Restricted) => Authed::Restricted,
            Err(Refused::Wrong) => Authed::No,
        };
    }
    match cookie_token(headers).and_then(|t| state.sessions.csrf(&t, credentials_epoch(shared))) {
        Some(csrf) => Authed::Session(csrf),
        None => Authed::No,
    }
}

/// The middleware in front of the API: answers 401 without credentials,
/// 403 for a cookie-authenticated write without the session's CSRF token.
pub(crate) async fn require(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    match authenticate(&state, headers) {
        Authed::Open => next.run(req).await,
        Authed::Session(csrf) => {
            let safe = matches!(*req.method(), Method::GET | Method::HEAD);
            let given = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            let ok = given
                .is_some_and(|g| crate::cmd::auth::constant_time_eq(g.as_bytes(), csrf.as_bytes()));
            if safe || ok {
                next.run(req).await
            } else {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing or wrong X-CSRF-Token header (GET /api/session gives it)",
                )
                .into_response()
            }
        }
        Authed::Restricted => restricted().into_response(),
        Authed::No => {
            let mut r = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "authentication required: HTTP basic with the requirepass password, or log in",
            )
            .into_response();
            if !headers.contains_key(CONSOLE_HEADER) {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"delayd\", charset=\"UTF-8\""),
                );
            }
            r
        }
    }
}

fn restricted() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "this user's ACL permissions are restricted: the console and the HTTP API serve only users with every command on every key (+@all ~*)",
    )
}

/// `/api/session`, `/api/login`, `/api/logout` (outside the middleware).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/session", get(session))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
}

/// Whether credentials are needed and given, and the CSRF token of the
/// caller's session.
async fn session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let required = auth_required(&state.shared);
    let (authenticated, csrf) = match authenticate(&state, &headers) {
        Authed::Open => (true, None),
        Authed::Session(c) => (true, Some(c)),
        Authed::No | Authed::Restricted => (false, None),
    };
    axum::Json(json!({
        "auth_required": required,
        "authenticated": authenticated,
        "csrf_token": csrf,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    #[serde(default)]
    user: String,
    password: String,
}

/// Opens a session for the console.
async fn login(State(state): State<AppState>, Body(l): Body<Login>) -> Response {
    let shared = &state.shared;
    if !auth_required(shared) {
        return axum::Json(json!({ "csrf_token": null, "auth_required": false })).into_response();
    }
    match check_credentials(shared, &l.user, &l.password) {
        Ok(()) => {}
        Err(Refused::Restricted) => return restricted().into_response(),
        Err(Refused::Wrong) => {
            // A wrong password costs the caller a moment, as a brake on guessing.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "invalid username-password pair or user is disabled",
            )
            .into_response();
        }
    }
    let Some((token, csrf)) = state.sessions.open(credentials_epoch(shared)) else {
        return ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "cannot open a session")
            .into_response();
    };
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        SESSION_TTL.as_secs()
    );
    let mut r = axum::Json(json!({ "csrf_token": csrf, "auth_required": true })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Ends the caller's session.
async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(t) = cookie_token(&headers) {
        state.sessions.close(&t);
    }
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("delayd_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(
            base64_decode("ZGVmYXVsdDpzM2NyZXQ=").unwrap(),
            b"default:s3cret"
        );
        assert_eq!(base64_decode("YTpi").unwrap(), b"a:b");
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
        assert!(base64_decode("Y").is_none());
        assert!(base64_decode("a*b=").is_none());
    }
}
