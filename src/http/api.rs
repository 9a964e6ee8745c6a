//! The JSON API under `/api/`, documented by `openapi.json` (served at
//! `/api/openapi.json`).
//!
//! Every endpoint runs the engine calls the RESP commands run (their
//! argument checks too, so the limits and messages are DELAYADD's,
//! DELAYPOP's, ...), in one engine round, and answers only once the round
//! is as durable as `appendfsync` requires: a round that is not durable is
//! a 503, never a success. Bad input is a 4xx with a JSON `{"error": ...}`
//! and changes nothing.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{AppState, Peer};
use crate::Error;
use crate::cmd::delayadd::DelayAdd;
use crate::cmd::delaypop::DelayPop;
use crate::cmd::delayrange::due_window;
use crate::cmd::{Args, EngineCommand};
use crate::engine::Round;
use crate::engine::core::{
    AddFlags, Core, MAX_DUE_MS, Popped, QueueInfo, QueueLister, QueueSort, STEP_VISITS,
};
use crate::engine::store::MemberMeta;
use crate::protocol::Reply;

/// Longest a long-poll pop waits.
pub(crate) const MAX_WAIT_MS: u64 = 30_000;
/// Most items a page or a batch holds.
const MAX_PAGE: usize = 1000;
/// Most members one requeue-all call moves (call again for the rest).
const MAX_REQUEUE: usize = 10_000;
/// Most buckets of a timeline.
const MAX_BUCKETS: u64 = 1440;

/// An API error: its status and `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    fn bad(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// An error a command gave: a storage failure or a stopping server is
    /// the server's (503), anything else is the request's (400).
    fn from_engine(e: &Error) -> ApiError {
        match e {
            Error::Storage(_) | Error::ShuttingDown | Error::Io(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.reply_text())
            }
            _ => ApiError::bad(e.reply_text()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "error": self.message }))).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn ok(v: Value) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

/// Request body fields as the OpenAPI document (JSON Schema) reads them:
/// an `integer` is a number with no fractional part (`30000` or `30000.0`),
/// and an explicit `null` is refused rather than read as "absent".
mod json_int {
    use serde::de::{Deserialize, Deserializer, Error};
    use serde_json::Value;

    fn integral<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
        let v = Value::deserialize(d)?;
        let n = match &v {
            Value::Number(n) => n
                .as_i64()
                .map(i128::from)
                .or_else(|| n.as_u64().map(i128::from))
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
                        .map(|f| f as i128)
                }),
            _ => None,
        };
        n.and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| D::Error::custom(format!("expected an integer in range, got {v}")))
    }

    /// An optional integer field (`#[serde(default, with = "json_int::opt")]`).
    pub(super) mod opt {
        use super::*;

        pub(crate) fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            integral(d).map(Some)
        }
    }

    /// Any other optional field: present means not `null`.
    pub(super) fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        T::deserialize(d).map(Some)
    }

    /// A required (or defaulted) integer field.
    pub(super) fn deserialize<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        d: D,
    ) -> Result<T, D::Error> {
        integral(d)
    }
}

/// A JSON body; a bad one is a JSON 4xx (400 malformed, 413 too large,
/// 415 not `application/json`, 422 wrong shape).
pub(crate) struct Body<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(r) => Err(ApiError::new(r.status(), r.body_text())),
        }
    }
}

/// Query parameters; bad ones are a JSON 400.
pub(crate) struct Q<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Q(v)),
            Err(r) => Err(ApiError::bad(r.body_text())),
        }
    }
}

/// Path parameters (percent-decoded); bad ones are a JSON 400.
pub(crate) struct P<T>(T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(v)) => Ok(P(v)),
            Err(r) => Err(ApiError::bad(r.body_text())),
        }
    }
}

/// A queue name from the path, checked as the RESP commands check it.
fn queue_name(name: String) -> Result<Bytes, ApiError> {
    crate::cmd::check_key(Bytes::from(name)).map_err(|e| ApiError::bad(e.reply_text()))
}

/// Bytes as JSON text (UTF-8 as is; other bytes replaced).
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Who runs a round, for the message trace's `by=`.
fn actor(peer: Option<Peer>) -> Arc<str> {
    match peer {
        Some(Peer(a)) => format!("http addr={a}").into(),
        None => "http".into(),
    }
}

/// Runs `f` as one engine round (with the caller as the trace's actor)
/// and returns its result once durable.
async fn round<T: Send>(
    state: &AppState,
    peer: Option<Peer>,
    f: impl FnOnce(&mut Core) -> crate::Result<T>,
) -> Result<T, ApiError> {
    let actor = actor(peer);
    let r = state
        .shared
        .engine
        .run(move |core| {
            if core.tracing() {
                core.set_actor(Some(actor));
            }
            let out = f(core);
            core.set_actor(None);
            out
        })
        .await;
    match r {
        Round::Durable(Ok(v)) => Ok(v),
        Round::Durable(Err(e)) => Err(ApiError::from_engine(&e)),
        // It ran, but nothing of it may be acknowledged.
        Round::NotDurable(_, e) | Round::Failed(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not durable: {}", e.reply_text()),
        )),
    }
}

fn args(words: Vec<Bytes>) -> Args {
    Args::new(words)
}

fn int(v: impl ToString) -> Bytes {
    Bytes::from(v.to_string())
}

/// The API's routes (all behind the auth middleware; `pop` is added by the
/// router with its own concurrency cap).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/openapi.json", get(openapi))
        .route("/api/overview", get(overview))
        .route("/api/queues", get(list_queues))
        .route("/api/queues/{queue}", get(queue_info).delete(delete_queue))
        .route("/api/queues/{queue}/timeline", get(timeline))
        .route("/api/queues/{queue}/members", get(members).post(schedule))
        .route(
            "/api/queues/{queue}/members/{member}",
            get(member).delete(remove_member),
        )
        .route("/api/queues/{queue}/requeue", axum::routing::post(requeue))
        .route("/api/queues/{queue}/ack", axum::routing::post(ack))
        .method_not_allowed_fallback(method_not_allowed)
}

pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed here")
}

/// The OpenAPI 3 document.
async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        include_str!("openapi.json"),
    )
        .into_response()
}

// ------------------------------------------------------------- overview

/// Server-wide figures: what INFO and /metrics show.
async fn overview(State(state): State<AppState>) -> ApiResult {
    use std::sync::atomic::Ordering::Relaxed;
    let shared = &state.shared;
    let t = shared
        .engine
        .totals()
        .map_err(|e| ApiError::from_engine(&e))?;
    let es = &shared.engine.stats;
    let l = &t.lateness;
    let (pattern, _) = shared.engine.trace_settings();
    ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": shared.started.elapsed().as_secs_f64(),
        "now_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        "appendfsync": shared.engine.fsync().name(),
        "last_fsync_ok": es.last_fsync_ok.load(Relaxed),
        "last_fsync_unix": es.last_fsync_unix.load(Relaxed),
        "storage_error": es.failure(),
        "disk_bytes": t.disk_bytes,
        "commits": es.commits.load(Relaxed),
        "fsyncs": es.fsyncs.load(Relaxed),
        "connected_clients": shared.connected.load(Relaxed),
        "blocked_clients": t.blocked,
        "queues": t.queues,
        "pending": t.members,
        "ready": t.ready,
        "leased": t.leased,
        "in_memory": t.hot,
        "added": t.added,
        "popped": t.popped,
        "acked": t.acked,
        "dead_lettered": t.dead_lettered,
        "expired_leases": t.expired_leases,
        "tracing": !pattern.is_empty(),
        "lateness": {
            "bounds_us": crate::engine::lateness::BOUNDS_US,
            "buckets": l.buckets,
            "count": l.count,
            "sum_us": l.sum_us,
            "max_us": l.max_us,
            "p50_us": l.quantile_us(0.5),
            "p99_us": l.quantile_us(0.99),
        },
    }))
}

// --------------------------------------------------------------- queues

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(rename = "match")]
    pattern: Option<String>,
    sort: Option<String>,
    order: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
    after: Option<String>,
}

fn info_json(name: &[u8], exists: bool, info: &QueueInfo, now: u64) -> Value {
    json!({
        "name": text(name),
        "exists": exists,
        "pending": info.pending,
        "ready": info.ready,
        "leased": info.leased,
        "dead_lettered": info.counters.dead_lettered,
        "next_due_ms": info.next_due,
        "oldest_ready_age_ms": info.oldest_ready_due.map_or(0, |d| now.saturating_sub(d)),
        "added": info.counters.added,
        "popped": info.counters.popped,
        "acked": info.counters.acked,
        "expired_leases": info.counters.expired_leases,
    })
}

/// The `order` query parameter: `asc` (the default) or `desc`.
fn descending(order: Option<&str>) -> Result<bool, ApiError> {
    match order.unwrap_or("asc") {
        "asc" => Ok(false),
        "desc" => Ok(true),
        other => Err(ApiError::bad(format!(
            "unknown order '{other}': asc or desc"
        ))),
    }
}

fn limit_of(limit: Option<usize>, default: usize) -> Result<usize, ApiError> {
    match limit.unwrap_or(default) {
        0 => Err(ApiError::bad("limit must be at least 1")),
        n if n > MAX_PAGE => Err(ApiError::bad(format!("limit must be at most {MAX_PAGE}"))),
        n => Ok(n),
    }
}

/// `GET /api/queues`: a page of queues, filtered by a glob, sorted; by
/// name, `after` (the `next` of the previous page) starts the page after
/// that name. The listing runs in steps, each an engine round of its own
/// (see `engine/core/listing.rs`): between two steps this task yields, so
/// the other clients' commands (on the same I/O thread too) run, and a
/// million queues never hold the engine for more than a step. The last
/// round waits for durability past every state the earlier ones read.
async fn list_queues(State(state): State<AppState>, Q(q): Q<ListQuery>) -> ApiResult {
    let sort = match q.sort.as_deref().unwrap_or("name") {
        "name" => QueueSort::Name,
        "pending" => QueueSort::Pending,
        "ready" => QueueSort::Ready,
        "leased" => QueueSort::Leased,
        "dead_lettered" => QueueSort::DeadLettered,
        "oldest_ready_age" => QueueSort::OldestReadyAge,
        other => {
            return Err(ApiError::bad(format!(
                "unknown sort '{other}': name, pending, ready, leased, dead_lettered or oldest_ready_age"
            )));
        }
    };
    let desc = descending(q.order.as_deref())?;
    let limit = limit_of(q.limit, 50)?;
    let offset = q.offset.unwrap_or(0);
    let after = match q.after {
        None => None,
        Some(_) if sort != QueueSort::Name => {
            return Err(ApiError::bad(
                "bad cursor: after is only for sort=name (page other sorts with offset)",
            ));
        }
        Some(a) => Some(
            crate::cmd::check_key(Bytes::from(a))
                .map_err(|e| ApiError::bad(format!("bad cursor after: {}", e.reply_text())))?,
        ),
    };
    let pattern = q.pattern.filter(|p| !p.is_empty() && p != "*");
    let mut lister = QueueLister::new(
        pattern.as_deref().map(str::as_bytes),
        sort,
        desc,
        offset,
        limit,
        after,
    );
    let now = loop {
        let (done, now) = round(&state, None, |core| {
            Ok((lister.step(core, STEP_VISITS), core.now()))
        })
        .await?;
        if done {
            break now;
        }
        tokio::task::yield_now().await;
    };
    let page = lister.take_page().unwrap_or_default();
    let queues: Vec<Value> = page
        .rows
        .iter()
        .map(|(name, info)| info_json(name, true, info, now))
        .collect();
    let next = page.next.as_deref().map(text);
    ok(json!({
        "total": page.total,
        "offset": offset,
        "limit": limit,
        "next": next,
        "queues": queues,
    }))
}

/// `GET /api/queues/{queue}`: DELAYINFO's figures.
async fn queue_info(State(state): State<AppState>, P(name): P<String>) -> ApiResult {
    let key = queue_name(name)?;
    let k = key.clone();
    let (exists, info, now) = round(&state, None, move |core| {
        Ok((core.exists(&k), core.info(&k), core.now()))
    })
    .await?;
    ok(info_json(&key, exists, &info, now))
}

/// `DELETE /api/queues/{queue}`: DEL.
async fn delete_queue(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    P(name): P<String>,
) -> ApiResult {
    let key = queue_name(name)?;
    let n = round(&state, peer.map(|p| p.0), move |core| {
        core.delete_queues(&[key])
    })
    .await?;
    ok(json!({ "deleted": n }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineQuery {
    from_ms: Option<u64>,
    step_ms: Option<u64>,
    buckets: Option<u64>,
}

/// `GET /api/queues/{queue}/timeline`: how many members come due in each
/// of `buckets` windows of `step_ms` from `from_ms` (DELAYCOUNT's engine
/// call per window), and how many are due before it.
async fn timeline(
    State(state): State<AppState>,
    P(name): P<String>,
    Q(q): Q<TimelineQuery>,
) -> ApiResult {
    let key = queue_name(name)?;
    let step = q.step_ms.unwrap_or(60_000);
    let buckets = q.buckets.unwrap_or(60);
    if step == 0 {
        return Err(ApiError::bad("step_ms must be at least 1"));
    }
    if buckets == 0 || buckets > MAX_BUCKETS {
        return Err(ApiError::bad(format!("buckets must be 1 to {MAX_BUCKETS}")));
    }
    let span = step.checked_mul(buckets);
    if let Some(from) = q.from_ms
        && span
            .and_then(|s| s.checked_add(from))
            .is_none_or(|end| end > MAX_DUE_MS + 1)
    {
        return Err(ApiError::bad("the timeline reaches beyond the year 9999"));
    }
    if span.is_none_or(|s| s > MAX_DUE_MS) {
        return Err(ApiError::bad("the timeline reaches beyond the year 9999"));
    }
    let from_ms = q.from_ms;
    let (from, overdue, counts) = round(&state, None, move |core| {
        let from = from_ms.unwrap_or_else(|| core.now());
        let overdue = if from == 0 {
            0
        } else {
            core.count_due(&key, (0, from - 1))?
        };
        let mut counts = Vec::with_capacity(buckets as usize);
        for i in 0..buckets {
            let lo = from.saturating_add(i * step);
            counts.push(core.count_due(&key, (lo, lo.saturating_add(step - 1)))?);
        }
        Ok((from, overdue, counts))
    })
    .await?;
    ok(json!({ "from_ms": from, "step_ms": step, "overdue": overdue, "counts": counts }))
}

// -------------------------------------------------------------- members

/// A member's state now: `leased` (handed out, not acked, lease running),
/// `ready` (due), or `scheduled` (due later).
fn state_of(meta: &MemberMeta, now: u64) -> &'static str {
    if meta.due <= now {
        "ready"
    } else if meta.leased() {
        "leased"
    } else {
        "scheduled"
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembersQuery {
    min: Option<String>,
    max: Option<String>,
    order: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

/// `GET /api/queues/{queue}/members`: members by due time in a range
/// (DELAYRANGE ... BYSCORE's bounds: ms, `-inf`, `+inf`, `(` exclusive),
/// a page at a time.
async fn members(
    State(state): State<AppState>,
    P(name): P<String>,
    Q(q): Q<MembersQuery>,
) -> ApiResult {
    let key = queue_name(name)?;
    let min = q.min.unwrap_or_else(|| "-inf".into());
    let max = q.max.unwrap_or_else(|| "+inf".into());
    let window = due_window(min.as_bytes(), max.as_bytes()).map_err(|_| {
        ApiError::bad(
            "min and max must be Unix ms, -inf or +inf, optionally after ( for an exclusive bound",
        )
    })?;
    if window.0 > window.1 {
        return Err(ApiError::bad(format!(
            "bad range: min {min} is after max {max}"
        )));
    }
    let rev = descending(q.order.as_deref())?;
    let limit = limit_of(q.limit, 50)?;
    let offset = q.offset.unwrap_or(0);
    let (mut found, now) = round(&state, None, move |core| {
        let found = core.range_by_due(&key, window, rev, offset, limit + 1)?;
        Ok((found, core.now()))
    })
    .await?;
    let more = found.len() > limit;
    found.truncate(limit);
    let list: Vec<Value> = found
        .iter()
        .map(|s| {
            json!({
                "member": text(&s.member),
                "due_ms": s.meta.due,
                "deliveries": s.meta.deliveries,
                "state": state_of(&s.meta, now),
            })
        })
        .collect();
    ok(json!({ "offset": offset, "limit": limit, "more": more, "members": list }))
}

/// `GET /api/queues/{queue}/members/{member}`: a member's state, due time,
/// delivery count, and its trace (DELAYTRACE) when its queue is traced or
/// was.
async fn member(
    State(state): State<AppState>,
    P((name, member)): P<(String, String)>,
) -> ApiResult {
    let key = queue_name(name)?;
    let m = Bytes::from(member);
    let (k, mm) = (key.clone(), m.clone());
    let (meta, trace, now) = round(&state, None, move |core| {
        let meta = core.score(&k, &mm)?;
        let trace = core.trace(&k, &mm)?;
        Ok((meta, trace, core.now()))
    })
    .await?;
    let trace: Vec<Value> = trace
        .into_iter()
        .map(|e| json!({ "time_ms": e.time, "event": e.kind.name(), "detail": text(&e.detail) }))
        .collect();
    let mut v = json!({
        "queue": text(&key),
        "member": text(&m),
        "found": meta.is_some(),
        "trace": trace,
    });
    if let Some(meta) = meta {
        v["due_ms"] = json!(meta.due);
        v["deliveries"] = json!(meta.deliveries);
        v["state"] = json!(state_of(&meta, now));
    }
    ok(v)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleItem {
    member: String,
    #[serde(default, deserialize_with = "json_int::opt::deserialize")]
    delay_ms: Option<i64>,
    #[serde(default, deserialize_with = "json_int::opt::deserialize")]
    at_ms: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Schedule {
    members: Vec<ScheduleItem>,
    #[serde(default)]
    nx: bool,
    #[serde(default)]
    xx: bool,
}

/// DELAYADD's arguments for the items of one kind (`at`: absolute times).
fn add_command(key: &Bytes, s: &Schedule, at: bool) -> Result<Option<DelayAdd>, ApiError> {
    let items: Vec<(i64, &str)> = s
        .members
        .iter()
        .filter_map(|i| {
            let v = if at { i.at_ms } else { i.delay_ms };
            v.map(|v| (v, i.member.as_str()))
        })
        .collect();
    if items.is_empty() {
        return Ok(None);
    }
    let mut words = vec![key.clone()];
    if s.nx {
        words.push(Bytes::from_static(b"NX"));
    }
    if s.xx {
        words.push(Bytes::from_static(b"XX"));
    }
    words.push(Bytes::from_static(b"CH"));
    if at {
        words.push(Bytes::from_static(b"AT"));
    }
    for (v, m) in items {
        words.push(int(v));
        words.push(Bytes::copy_from_slice(m.as_bytes()));
    }
    DelayAdd::parse(&mut args(words))
        .map(Some)
        .map_err(|e| ApiError::bad(e.reply_text()))
}

/// `POST /api/queues/{queue}/members`: DELAYADD. Each item has a
/// `delay_ms` or an `at_ms`; a member already there is rescheduled (`nx`:
/// only add new ones, which makes a retried request change nothing;
/// `xx`: only reschedule).
async fn schedule(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    P(name): P<String>,
    Body(s): Body<Schedule>,
) -> ApiResult {
    let key = queue_name(name)?;
    if s.members.is_empty() {
        return Err(ApiError::bad("members is empty"));
    }
    if s.members.len() > MAX_PAGE {
        return Err(ApiError::bad(format!(
            "at most {MAX_PAGE} members per request"
        )));
    }
    for i in &s.members {
        if i.delay_ms.is_some() == i.at_ms.is_some() {
            return Err(ApiError::bad(format!(
                "member '{}': give exactly one of delay_ms and at_ms",
                i.member
            )));
        }
    }
    let by_delay = add_command(&key, &s, false)?;
    let by_time = add_command(&key, &s, true)?;
    let (added, changed) = round(&state, peer.map(|p| p.0), move |core| {
        let before = core.card(&key);
        let mut changed = 0;
        // The delays first: only they can still be refused (a delay that
        // ends beyond the year 9999), and then nothing was written.
        for c in [by_delay, by_time].into_iter().flatten() {
            if let Reply::Int(n) = c.apply(core)? {
                changed += n;
            }
        }
        let added = core.card(&key).saturating_sub(before) as i64;
        Ok((added, changed))
    })
    .await?;
    ok(json!({ "added": added, "rescheduled": changed - added }))
}

/// `DELETE /api/queues/{queue}/members/{member}`: DELAYREM.
async fn remove_member(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    P((name, member)): P<(String, String)>,
) -> ApiResult {
    let key = queue_name(name)?;
    let m = Bytes::from(member);
    let n = round(&state, peer.map(|p| p.0), move |core| {
        core.remove(&key, &[m], false)
    })
    .await?;
    ok(json!({ "removed": n }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Requeue {
    to: String,
    #[serde(default, deserialize_with = "json_int::present")]
    members: Option<Vec<String>>,
    #[serde(default, deserialize_with = "json_int::deserialize")]
    delay_ms: i64,
    #[serde(default, deserialize_with = "json_int::opt::deserialize")]
    limit: Option<usize>,
}

/// `POST /api/queues/{queue}/requeue`: moves members of a (dead-letter)
/// queue to `to`, due after `delay_ms` (0: now): the members named, or
/// with none named the earliest `limit` (at most 10,000; call again for
/// the rest). One round: DELAYADD to `to`, DELAYREM from this queue.
async fn requeue(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    P(name): P<String>,
    Body(r): Body<Requeue>,
) -> ApiResult {
    let key = queue_name(name)?;
    let to = queue_name(r.to)?;
    if to.is_empty() {
        return Err(ApiError::bad("to must not be empty"));
    }
    if to == key {
        return Err(ApiError::bad("to must name another queue"));
    }
    if r.delay_ms < 0 {
        return Err(ApiError::bad("delay is negative"));
    }
    if r.delay_ms as u64 > MAX_DUE_MS {
        return Err(ApiError::bad("due time is beyond the year 9999"));
    }
    let named: Option<Vec<Bytes>> = match r.members {
        Some(m) if m.is_empty() => return Err(ApiError::bad("members is empty")),
        Some(m) if m.len() > MAX_PAGE => {
            return Err(ApiError::bad(format!(
                "at most {MAX_PAGE} members per request"
            )));
        }
        Some(m) => Some(m.into_iter().map(Bytes::from).collect()),
        None => None,
    };
    let limit = r.limit.unwrap_or(MAX_REQUEUE);
    if limit == 0 || limit > MAX_REQUEUE {
        return Err(ApiError::bad(format!("limit must be 1 to {MAX_REQUEUE}")));
    }
    let delay = r.delay_ms;
    let (moved, remaining) = round(&state, peer.map(|p| p.0), move |core| {
        let members: Vec<Bytes> = match named {
            Some(named) => {
                let mut present = Vec::with_capacity(named.len());
                for m in named {
                    if core.score(&key, &m)?.is_some() && !present.contains(&m) {
                        present.push(m);
                    }
                }
                present
            }
            None => core
                .range_by_due(&key, (0, u64::MAX), false, 0, limit)?
                .into_iter()
                .map(|s| s.member)
                .collect(),
        };
        if members.is_empty() {
            return Ok((0, core.card(&key)));
        }
        // Added to `to` first: a refused due time writes nothing.
        let add = DelayAdd {
            key: to,
            flags: AddFlags::default(),
            at: false,
            items: members.iter().map(|m| (delay, m.clone())).collect(),
        };
        add.apply(core)?;
        let moved = core.remove(&key, &members, false)?;
        Ok((moved, core.card(&key)))
    })
    .await?;
    ok(json!({ "requeued": moved, "remaining": remaining }))
}

// ------------------------------------------------------------ consumers

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PopRequest {
    #[serde(default, deserialize_with = "json_int::opt::deserialize")]
    count: Option<u64>,
    #[serde(default, deserialize_with = "json_int::opt::deserialize")]
    lease_ms: Option<u64>,
    #[serde(default, deserialize_with = "json_int::opt::deserialize")]
    wait_ms: Option<u64>,
    #[serde(default, deserialize_with = "json_int::opt::deserialize")]
    retries: Option<u64>,
    #[serde(default, deserialize_with = "json_int::present")]
    dead_letter: Option<String>,
}

fn popped_json(p: &Popped) -> Value {
    json!({
        "member": text(&p.member),
        "due_ms": p.before.due,
        "deliveries": p.deliveries,
        "lease_until_ms": p.after.map(|a| a.due),
    })
}

/// `POST /api/queues/{queue}/pop`: DELAYPOP ... LEASE, waiting up to
/// `wait_ms` (at most 30 s) for a member to come due. Always with a lease
/// (default 30 s): an HTTP response cannot be known to have reached its
/// client, so members stay until `ack`, and come back when the lease runs
/// out if the consumer never got them.
pub(crate) async fn pop(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    P(name): P<String>,
    Body(r): Body<PopRequest>,
) -> ApiResult {
    let key = queue_name(name)?;
    let wait = r.wait_ms.unwrap_or(0);
    if wait > MAX_WAIT_MS {
        return Err(ApiError::bad(format!(
            "wait_ms must be at most {MAX_WAIT_MS}"
        )));
    }
    let mut words = vec![
        key.clone(),
        Bytes::from_static(b"COUNT"),
        int(r.count.unwrap_or(1)),
        Bytes::from_static(b"LEASE"),
        int(r.lease_ms.unwrap_or(30_000)),
    ];
    if let Some(n) = r.retries {
        words.extend([Bytes::from_static(b"RETRIES"), int(n)]);
    }
    if let Some(d) = r.dead_letter {
        if d.is_empty() {
            return Err(ApiError::bad("dead_letter must not be empty"));
        }
        words.extend([Bytes::from_static(b"DEADLETTER"), Bytes::from(d)]);
    }
    let cmd = DelayPop::parse(&mut args(words)).map_err(|e| ApiError::bad(e.reply_text()))?;
    if cmd.opts.count == 0 || cmd.opts.count > MAX_PAGE {
        return Err(ApiError::bad(format!("count must be 1 to {MAX_PAGE}")));
    }
    let peer = peer.map(|p| p.0);
    if wait == 0 {
        let popped = round(&state, peer, move |core| core.pop(&cmd.key, &cmd.opts)).await?;
        let list: Vec<Value> = popped.iter().map(popped_json).collect();
        return ok(json!({ "members": list }));
    }
    let engine = &state.shared.engine;
    let (id, mut rx) = engine
        .block(vec![key], cmd.opts, || actor(peer))
        .map_err(|e| ApiError::from_engine(&e))?;
    // A client that goes away drops this future: the guard forgets the
    // waiter. What was leased to it meanwhile comes back with its lease.
    let guard = Unblock {
        engine: engine.clone(),
        id: Some(id),
    };
    let delivery = tokio::select! {
        r = &mut rx => r.ok(),
        () = tokio::time::sleep(Duration::from_millis(wait)) => {
            rx.close();
            // A member handed over at the same instant is delivered, not lost.
            rx.try_recv().ok()
        }
        () = state.shared.shutdown.wait() => {
            rx.close();
            rx.try_recv().ok()
        }
    };
    drop(guard);
    let Some(d) = delivery else {
        return ok(json!({ "members": [] }));
    };
    engine.delivery_durable(&d).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not durable: {}", e.reply_text()),
        )
    })?;
    let popped = d.popped.map_err(|e| ApiError::from_engine(&e))?;
    let list: Vec<Value> = popped.iter().map(popped_json).collect();
    ok(json!({ "members": list }))
}

/// Forgets a blocked waiter when dropped (its pop timed out, was served,
/// or its client went away).
struct Unblock {
    engine: crate::engine::Engine,
    id: Option<u64>,
}

impl Drop for Unblock {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.engine.unblock(id);
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ack {
    members: Vec<String>,
}

/// `POST /api/queues/{queue}/ack`: DELAYACK.
async fn ack(
    State(state): State<AppState>,
    peer: Option<axum::Extension<Peer>>,
    P(name): P<String>,
    Body(a): Body<Ack>,
) -> ApiResult {
    let key = queue_name(name)?;
    if a.members.is_empty() {
        return Err(ApiError::bad("members is empty"));
    }
    if a.members.len() > MAX_PAGE {
        return Err(ApiError::bad(format!(
            "at most {MAX_PAGE} members per request"
        )));
    }
    let members: Vec<Bytes> = a.members.into_iter().map(Bytes::from).collect();
    let n = round(&state, peer.map(|p| p.0), move |core| {
        core.remove(&key, &members, true)
    })
    .await?;
    ok(json!({ "acked": n }))
}
