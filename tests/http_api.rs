//! The HTTP API (`--http-port`, `/api/`): every endpoint through real HTTP
//! on loopback against the real binary, checked against what the RESP
//! commands see (the `redis` crate); bad input, limits and auth.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use harness::{Server, free_port, now_ms};
use serde_json::{Value, json};

/// One HTTP response.
#[derive(Debug)]
struct Resp {
    status: u16,
    /// The head's header lines, as sent.
    headers: String,
    body: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    /// The JSON error text of a 4xx/5xx.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {}", self.body))
            .to_string()
    }
}

/// One request over a fresh connection (the server closes after each).
fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect to the HTTP port");
    c.set_read_timeout(Some(Duration::from_secs(40))).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    c.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before taking a huge body.
    let _ = c.write_all(body);
    let mut raw = Vec::new();
    let _ = c.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {text:?}"));
    let (line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    Resp {
        status,
        headers: headers.to_string(),
        body: body.to_string(),
    }
}

fn get(port: u16, path: &str) -> Resp {
    request(port, "GET", path, &[], b"")
}

fn post(port: u16, path: &str, body: &Value) -> Resp {
    request(
        port,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

fn delete(port: u16, path: &str) -> Resp {
    request(port, "DELETE", path, &[], b"")
}

fn ok(r: Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.header("content-type").as_deref(),
        Some("application/json"),
        "{}",
        r.headers
    );
    r.json()
}

fn start(extra: &[&str]) -> (Server, u16) {
    let http = free_port();
    let mut args = vec!["--http-port".to_string(), http.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    (Server::start(&args), http)
}

fn score(con: &mut redis::Connection, q: &str, m: &str) -> Option<u64> {
    redis::cmd("DELAYSCORE").arg(q).arg(m).query(con).unwrap()
}

fn card(con: &mut redis::Connection, q: &str) -> u64 {
    redis::cmd("DELAYCARD").arg(q).query(con).unwrap()
}

/// Every member of a queue with its due time, as DELAYRANGE shows them.
fn snapshot(con: &mut redis::Connection, q: &str) -> Vec<(String, u64)> {
    redis::cmd("DELAYRANGE")
        .arg(q)
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query(con)
        .unwrap()
}

#[test]
fn schedule_find_pop_ack_remove_and_delete_through_http() {
    let (server, http) = start(&["--trace-queues", "orders:*"]);
    let mut con = server.client();
    // CONFIG GET shows the port under both names.
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*-port")
        .query(&mut con)
        .unwrap();
    for name in ["http-port", "metrics-port"] {
        let i = cfg.iter().position(|k| k == name).expect(name);
        assert_eq!(cfg[i + 1], http.to_string(), "{cfg:?}");
    }

    // Schedule: by delay and by absolute time, in one request.
    let at = now_ms() + 3_600_000;
    let r = ok(post(
        http,
        "/api/queues/orders:eu/members",
        &json!({"members": [
            {"member": "soon", "delay_ms": 0},
            {"member": "later", "at_ms": at},
            {"member": "a b/c%", "delay_ms": 600000},
        ]}),
    ));
    assert_eq!(r, json!({"added": 3, "rescheduled": 0}));
    assert_eq!(card(&mut con, "orders:eu"), 3);
    assert_eq!(score(&mut con, "orders:eu", "later"), Some(at));
    // Idempotent by member with nx: a retried request changes nothing.
    let retry = json!({"members": [{"member": "later", "at_ms": at + 5}], "nx": true});
    assert_eq!(
        ok(post(http, "/api/queues/orders:eu/members", &retry)),
        json!({"added": 0, "rescheduled": 0})
    );
    assert_eq!(score(&mut con, "orders:eu", "later"), Some(at));
    // Without nx a member already there is rescheduled, as DELAYADD does.
    let move_it = json!({"members": [{"member": "later", "at_ms": at + 5}]});
    assert_eq!(
        ok(post(http, "/api/queues/orders:eu/members", &move_it)),
        json!({"added": 0, "rescheduled": 1})
    );
    assert_eq!(score(&mut con, "orders:eu", "later"), Some(at + 5));

    // Queue info: DELAYINFO's figures.
    let info = ok(get(http, "/api/queues/orders:eu"));
    assert_eq!(info["name"], "orders:eu");
    assert_eq!(info["exists"], true);
    assert_eq!(info["pending"], 3);
    assert_eq!(info["added"], 3);
    assert_eq!(ok(get(http, "/api/queues/nope"))["exists"], false);

    // Members by due time: all, then a page, then only the far one.
    let all = ok(get(http, "/api/queues/orders:eu/members"));
    let names: Vec<&str> = all["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["member"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["soon", "a b/c%", "later"]);
    assert_eq!(all["more"], false);
    assert_eq!(all["members"][0]["state"], "ready");
    assert_eq!(all["members"][1]["state"], "scheduled");
    let page = ok(get(http, "/api/queues/orders:eu/members?limit=1&offset=1"));
    assert_eq!(page["members"][0]["member"], "a b/c%");
    assert_eq!(page["more"], true);
    let far = ok(get(
        http,
        &format!("/api/queues/orders:eu/members?min={}&max=%2Binf", at),
    ));
    assert_eq!(far["members"].as_array().unwrap().len(), 1);
    let rev = ok(get(
        http,
        "/api/queues/orders:eu/members?order=desc&limit=1",
    ));
    assert_eq!(rev["members"][0]["member"], "later");

    // Member lookup, with a name that needs percent-encoding, and its trace.
    let m = ok(get(http, "/api/queues/orders:eu/members/a%20b%2Fc%25"));
    assert_eq!(m["found"], true);
    assert_eq!(m["member"], "a b/c%");
    assert_eq!(m["state"], "scheduled");
    assert_eq!(m["deliveries"], 0);
    assert_eq!(m["trace"][0]["event"], "added");
    let gone = ok(get(http, "/api/queues/orders:eu/members/nobody"));
    assert_eq!(gone["found"], false);

    // Pop with a lease, then ack.
    let popped = ok(post(
        http,
        "/api/queues/orders:eu/pop",
        &json!({"lease_ms": 60000}),
    ));
    let list = popped["members"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["member"], "soon");
    assert_eq!(list[0]["deliveries"], 1);
    assert!(list[0]["lease_until_ms"].as_u64().unwrap() > now_ms());
    let leased = ok(get(http, "/api/queues/orders:eu/members/soon"));
    assert_eq!(leased["state"], "leased");
    let info: Vec<redis::Value> = redis::cmd("DELAYINFO")
        .arg("orders:eu")
        .query(&mut con)
        .unwrap();
    assert!(format!("{info:?}").contains("leased"));
    assert_eq!(
        ok(post(
            http,
            "/api/queues/orders:eu/ack",
            &json!({"members": ["soon"]})
        )),
        json!({"acked": 1})
    );
    assert_eq!(score(&mut con, "orders:eu", "soon"), None);
    // Nothing due: an empty list at once.
    let none = ok(post(http, "/api/queues/orders:eu/pop", &json!({})));
    assert_eq!(none, json!({"members": []}));

    // Long poll: a member that comes due while the pop waits is handed over.
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let r = post(
            http,
            "/api/queues/jobs/pop",
            &json!({"wait_ms": 10000, "lease_ms": 1000, "count": 5}),
        );
        (r, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    let _: i64 = redis::cmd("DELAYADD")
        .arg("jobs")
        .arg(200)
        .arg("j1")
        .query(&mut con)
        .unwrap();
    let (r, took) = waiter.join().unwrap();
    let r = ok(r);
    assert_eq!(r["members"][0]["member"], "j1", "{r}");
    assert!(
        took < Duration::from_secs(9),
        "the pop waited for its timeout: {took:?}"
    );
    // The lease runs out unacknowledged: the member is handed out again.
    let again = ok(post(
        http,
        "/api/queues/jobs/pop",
        &json!({"wait_ms": 5000, "lease_ms": 1000}),
    ));
    assert_eq!(again["members"][0]["member"], "j1");
    assert_eq!(again["members"][0]["deliveries"], 2);
    // A long poll on an empty queue answers an empty list after its wait.
    let started = Instant::now();
    let empty = ok(post(http, "/api/queues/idle/pop", &json!({"wait_ms": 400})));
    assert_eq!(empty, json!({"members": []}));
    assert!(started.elapsed() >= Duration::from_millis(350));

    // Remove one member, then delete the queue.
    assert_eq!(
        ok(delete(http, "/api/queues/orders:eu/members/later")),
        json!({"removed": 1})
    );
    assert_eq!(
        ok(delete(http, "/api/queues/orders:eu/members/later")),
        json!({"removed": 0})
    );
    assert_eq!(
        ok(delete(http, "/api/queues/orders:eu")),
        json!({"deleted": 1})
    );
    assert_eq!(card(&mut con, "orders:eu"), 0);

    // The overview: INFO's figures.
    let o = ok(get(http, "/api/overview"));
    assert_eq!(o["appendfsync"], "everysec");
    assert_eq!(o["storage_error"], Value::Null);
    let queues: u64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(o["queues"], queues);
    // The same figure as DELAYINFO's (j1 is the only leased member).
    let jobs = ok(get(http, "/api/queues/jobs"));
    assert_eq!(o["leased"], jobs["leased"], "{o} {jobs}");
    assert_eq!(o["tracing"], true);
    assert_eq!(
        o["lateness"]["buckets"].as_array().unwrap().len(),
        o["lateness"]["bounds_us"].as_array().unwrap().len() + 1
    );
}

#[test]
fn queues_are_listed_a_page_at_a_time_sorted_and_filtered() {
    let (server, http) = start(&[]);
    let mut con = server.client();
    let mut pipe = redis::pipe();
    // q00..q29 with i + 1 members; x1 and x2 with one each.
    for i in 0..30u64 {
        let mut cmd = redis::cmd("DELAYADD");
        cmd.arg(format!("q{i:02}"));
        for m in 0..=i {
            cmd.arg(600_000).arg(format!("m{m}"));
        }
        pipe.add_command(cmd).ignore();
    }
    pipe.cmd("DELAYADD").arg("x1").arg(0).arg("m").ignore();
    pipe.cmd("DELAYADD").arg("x2").arg(0).arg("m").ignore();
    let () = pipe.query(&mut con).unwrap();
    let names = |v: &Value| -> Vec<String> {
        v["queues"]
            .as_array()
            .unwrap()
            .iter()
            .map(|q| q["name"].as_str().unwrap().to_string())
            .collect()
    };
    let p = ok(get(http, "/api/queues?limit=5"));
    assert_eq!(p["total"], 32);
    assert_eq!(names(&p), ["q00", "q01", "q02", "q03", "q04"]);
    let p = ok(get(http, "/api/queues?limit=5&offset=30"));
    assert_eq!(names(&p), ["x1", "x2"]);
    let p = ok(get(http, "/api/queues?sort=pending&order=desc&limit=3"));
    assert_eq!(names(&p), ["q29", "q28", "q27"]);
    assert_eq!(p["queues"][0]["pending"], 30);
    let p = ok(get(
        http,
        "/api/queues?match=q1%3F&sort=pending&order=asc&limit=100",
    ));
    assert_eq!(p["total"], 10);
    assert_eq!(names(&p)[0], "q10");
    let p = ok(get(http, "/api/queues?match=x*&sort=ready&order=desc"));
    assert_eq!(p["total"], 2);
    assert_eq!(p["queues"][0]["ready"], 1);
    let p = ok(get(http, "/api/queues?match=zzz*"));
    assert_eq!((p["total"].clone(), names(&p).len()), (json!(0), 0));
    // By name, `next` is the cursor of the next page (the page's last
    // name), null on the last page; `after` starts the page after it.
    let p = ok(get(http, "/api/queues?limit=5"));
    assert_eq!(p["next"], "q04");
    let p = ok(get(http, "/api/queues?limit=5&after=q04"));
    assert_eq!(names(&p), ["q05", "q06", "q07", "q08", "q09"]);
    for order in ["asc", "desc"] {
        let mut all = Vec::new();
        let mut url = format!("/api/queues?limit=7&order={order}");
        loop {
            let p = ok(get(http, &url));
            assert_eq!(p["total"], 32, "{url}");
            all.extend(names(&p));
            match p["next"].as_str() {
                Some(n) => url = format!("/api/queues?limit=7&order={order}&after={n}"),
                None => break,
            }
        }
        let mut want: Vec<String> = (0..30).map(|i| format!("q{i:02}")).collect();
        want.extend(["x1".to_string(), "x2".to_string()]);
        if order == "desc" {
            want.reverse();
        }
        assert_eq!(all, want, "{order}");
    }
    let p = ok(get(
        http,
        "/api/queues?match=q1*&order=desc&after=q15&limit=3",
    ));
    assert_eq!(p["total"], 10);
    assert_eq!(names(&p), ["q14", "q13", "q12"]);
    assert_eq!(p["next"], "q12");
    let p = ok(get(http, "/api/queues?match=q*&after=q29"));
    assert_eq!((names(&p).len(), p["next"].clone()), (0, Value::Null));
    let p = ok(get(http, "/api/queues?sort=pending&limit=2"));
    assert_eq!(p["next"], Value::Null);
}

#[test]
fn timeline_counts_members_per_window_as_delaycount_does() {
    let (server, http) = start(&[]);
    let mut con = server.client();
    let from = (now_ms() / 60_000 + 10) * 60_000;
    // Window 0: 2 members, window 1: none, window 2: 3 members; one before.
    let mut cmd = redis::cmd("DELAYADD");
    cmd.arg("t").arg("AT");
    for (i, due) in [
        from,
        from + 59_999,
        from + 120_000,
        from + 150_000,
        from + 179_999,
        1000,
    ]
    .iter()
    .enumerate()
    {
        cmd.arg(*due).arg(format!("m{i}"));
    }
    let _: i64 = cmd.query(&mut con).unwrap();
    let t = ok(get(
        http,
        &format!("/api/queues/t/timeline?from_ms={from}&step_ms=60000&buckets=4"),
    ));
    assert_eq!(t["counts"], json!([2, 0, 3, 0]));
    assert_eq!(t["overdue"], 1);
    assert_eq!(t["from_ms"], from);
    for (i, want) in [2u64, 0, 3, 0].iter().enumerate() {
        let lo = from + i as u64 * 60_000;
        let n: u64 = redis::cmd("DELAYCOUNT")
            .arg("t")
            .arg(lo)
            .arg(lo + 59_999)
            .query(&mut con)
            .unwrap();
        assert_eq!(n, *want);
    }
}

/// Dead-letters `member` of `queue` into `dlq` through RESP: two leased
/// pops with RETRIES 1.
fn dead_letter(con: &mut redis::Connection, queue: &str, dlq: &str, member: &str) {
    let _: i64 = redis::cmd("DELAYADD")
        .arg(queue)
        .arg(0)
        .arg(member)
        .query(con)
        .unwrap();
    let pop = |con: &mut redis::Connection| -> Vec<String> {
        redis::cmd("DELAYPOP")
            .arg(queue)
            .arg("LEASE")
            .arg(1)
            .arg("RETRIES")
            .arg(1)
            .arg("DEADLETTER")
            .arg(dlq)
            .query(con)
            .unwrap()
    };
    assert_eq!(pop(con), [member]);
    assert!(harness::eventually(Duration::from_secs(5), || {
        pop(con).is_empty() && score(con, dlq, member).is_some()
    }));
}

#[test]
fn dead_letters_are_requeued_one_or_all() {
    let (server, http) = start(&[]);
    let mut con = server.client();
    for m in ["d1", "d2", "d3"] {
        dead_letter(&mut con, "work", "work:dlq", m);
    }
    assert_eq!(card(&mut con, "work:dlq"), 3);
    let info = ok(get(http, "/api/queues/work"));
    assert_eq!(info["dead_lettered"], 3);
    // One member, named; a name not in the queue is not moved.
    let r = ok(post(
        http,
        "/api/queues/work:dlq/requeue",
        &json!({"to": "work", "members": ["d2", "ghost"]}),
    ));
    assert_eq!(r, json!({"requeued": 1, "remaining": 2}));
    assert!(score(&mut con, "work", "d2").is_some());
    assert_eq!(score(&mut con, "work:dlq", "d2"), None);
    assert_eq!(score(&mut con, "work", "ghost"), None);
    // All the rest, a page at a time, due in a minute.
    let before = now_ms();
    let r = ok(post(
        http,
        "/api/queues/work:dlq/requeue",
        &json!({"to": "work", "limit": 1, "delay_ms": 60000}),
    ));
    assert_eq!(r, json!({"requeued": 1, "remaining": 1}));
    let r = ok(post(
        http,
        "/api/queues/work:dlq/requeue",
        &json!({"to": "work"}),
    ));
    assert_eq!(r, json!({"requeued": 1, "remaining": 0}));
    assert_eq!(card(&mut con, "work:dlq"), 0);
    assert_eq!(card(&mut con, "work"), 3);
    assert!(score(&mut con, "work", "d1").unwrap() >= before + 60_000);
    // Requeuing into itself is refused.
    let r = post(http, "/api/queues/work/requeue", &json!({"to": "work"}));
    assert_eq!(r.status, 400);
}

/// JSON Schema's `integer` includes numbers written with a zero fraction
/// (schemathesis sends them): they are accepted as the integers they are.
#[test]
fn integral_numbers_written_as_floats_are_integers() {
    let (server, http) = start(&[]);
    let mut con = server.client();
    let r = post(
        http,
        "/api/queues/f/members",
        &serde_json::json!({"members": [{"member": "x", "delay_ms": 60000.0}]}),
    );
    ok(r);
    let due = score(&mut con, "f", "x").expect("scheduled");
    let now = harness::now_ms();
    assert!(
        due > now + 50_000 && due <= now + 60_000,
        "due {due}, now {now}"
    );
}

#[test]
fn bad_input_is_a_json_4xx_and_changes_nothing() {
    let (server, http) = start(&[]);
    let mut con = server.client();
    let _: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(600_000)
        .arg("a")
        .arg(0)
        .arg("b")
        .query(&mut con)
        .unwrap();
    let before = snapshot(&mut con, "q");
    let json_post = |path: &str, body: &[u8]| {
        request(
            http,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body,
        )
    };
    let cases: Vec<(Resp, u16, &str)> = vec![
        // Malformed and mis-shaped bodies.
        (
            json_post("/api/queues/q/members", b"{\"members\": [{\"member\""),
            400,
            "parse",
        ),
        (
            request(
                http,
                "POST",
                "/api/queues/q/members",
                &[("Content-Type", "text/plain")],
                b"{}",
            ),
            415,
            "Content-Type",
        ),
        (
            json_post("/api/queues/q/members", b"{\"members\": 5}"),
            422,
            "members",
        ),
        (
            json_post("/api/queues/q/members", b"{\"members\": [], \"bogus\": 1}"),
            422,
            "bogus",
        ),
        (
            json_post("/api/queues/q/members", b"{\"members\": []}"),
            400,
            "empty",
        ),
        // Bad values: DELAYADD's own checks, and one of delay_ms/at_ms.
        (
            json_post(
                "/api/queues/q/members",
                br#"{"members":[{"member":"a","delay_ms":-1}]}"#,
            ),
            400,
            "delay is negative",
        ),
        (
            json_post(
                "/api/queues/q/members",
                br#"{"members":[{"member":"a","at_ms":99999999999999999}]}"#,
            ),
            400,
            "year 9999",
        ),
        // Explicit nulls and fractions are not integers (as the document
        // reads them); an empty dead-letter queue name is refused.
        (
            json_post(
                "/api/queues/q/members",
                br#"{"members":[{"member":"a","at_ms":null}]}"#,
            ),
            422,
            "integer",
        ),
        (
            json_post(
                "/api/queues/q/members",
                br#"{"members":[{"member":"a","delay_ms":2.5}]}"#,
            ),
            422,
            "integer",
        ),
        (
            json_post("/api/queues/q/requeue", br#"{"to":"q","limit":null}"#),
            422,
            "integer",
        ),
        (
            json_post("/api/queues/q/pop", br#"{"retries":1,"dead_letter":""}"#),
            400,
            "dead_letter",
        ),
        (
            json_post(
                "/api/queues/q/members",
                br#"{"members":[{"member":"a","delay_ms":1,"at_ms":1}]}"#,
            ),
            400,
            "exactly one",
        ),
        (
            json_post(
                "/api/queues/q/members",
                br#"{"members":[{"member":"a","delay_ms":1}],"nx":true,"xx":true}"#,
            ),
            400,
            "not compatible",
        ),
        // Bad ranges and pages.
        (
            get(http, "/api/queues/q/members?min=100&max=50"),
            400,
            "bad range",
        ),
        (
            get(http, "/api/queues/q/members?min=abc"),
            400,
            "min and max",
        ),
        (get(http, "/api/queues/q/members?limit=0"), 400, "limit"),
        (get(http, "/api/queues/q/members?limit=5000"), 400, "limit"),
        (get(http, "/api/queues/q/members?offset=-1"), 400, "offset"),
        (get(http, "/api/queues/q/members?order=up"), 400, "order"),
        (get(http, "/api/queues?sort=size"), 400, "sort"),
        (
            get(http, "/api/queues?sort=pending&after=q"),
            400,
            "bad cursor: after is only for sort=name",
        ),
        (
            get(http, "/api/queues/q/timeline?buckets=0"),
            400,
            "buckets",
        ),
        (
            get(http, "/api/queues/q/timeline?step_ms=0"),
            400,
            "step_ms",
        ),
        (
            get(http, "/api/queues/q/timeline?step_ms=18446744073709551615"),
            400,
            "9999",
        ),
        // Bad pops, acks, requeues.
        (
            json_post("/api/queues/q/pop", br#"{"wait_ms":40000}"#),
            400,
            "wait_ms",
        ),
        (
            json_post("/api/queues/q/pop", br#"{"count":0}"#),
            400,
            "count",
        ),
        (
            json_post("/api/queues/q/pop", br#"{"lease_ms":0}"#),
            400,
            "positive",
        ),
        (
            json_post("/api/queues/q/pop", br#"{"retries":2}"#),
            400,
            "DEADLETTER",
        ),
        (
            json_post("/api/queues/q/ack", br#"{"members":[]}"#),
            400,
            "empty",
        ),
        (
            json_post("/api/queues/q/requeue", br#"{"members":["a"]}"#),
            422,
            "to",
        ),
        (
            json_post("/api/queues/q/requeue", br#"{"to":"r","delay_ms":-5}"#),
            400,
            "negative",
        ),
        // No such endpoint, wrong method.
        (get(http, "/api/nope"), 404, "no such"),
        (
            request(http, "PUT", "/api/queues/q", &[], b""),
            405,
            "method",
        ),
        (get(http, "/api/queues/q/pop"), 405, ""),
    ];
    for (r, status, text) in &cases {
        assert_eq!(r.status, *status, "{text}: {}", r.body);
        assert!(r.error().contains(text), "{text}: {}", r.body);
    }
    // A body over the limit (1 MB): 413, as JSON, nothing added.
    let mut huge = br#"{"members":[{"member":""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 2 << 20));
    huge.extend_from_slice(br#"","delay_ms":1}]}"#);
    let r = json_post("/api/queues/q/members", &huge);
    assert_eq!(r.status, 413, "{}", r.body);
    // Nothing changed, and no queue was made.
    assert_eq!(snapshot(&mut con, "q"), before);
    let n: i64 = redis::cmd("DBSIZE").query(&mut con).unwrap();
    assert_eq!(n, 1);
    // A bad request head: 400; a head over the limit: refused.
    let mut c = TcpStream::connect(("127.0.0.1", http)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"hello\r\n\r\n").unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    assert!(
        out.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&out)
    );
}

#[test]
fn with_requirepass_the_api_asks_for_it_and_writes_need_the_csrf_token() {
    let (server, http) = start(&["--requirepass", "s3cret"]);
    let url = format!("redis://:s3cret@127.0.0.1:{}/", server.port);
    let mut con = harness::connect(&url);
    // No credentials: 401, with a basic challenge for tools, none for the console.
    let r = get(http, "/api/queues");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Basic"));
    let r = request(
        http,
        "GET",
        "/api/queues",
        &[("X-Delayd-Console", "1")],
        b"",
    );
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_none());
    let add = json!({"members": [{"member": "m", "delay_ms": 0}]}).to_string();
    let r = request(
        http,
        "POST",
        "/api/queues/q/members",
        &[("Content-Type", "application/json")],
        add.as_bytes(),
    );
    assert_eq!(r.status, 401);
    // Wrong and right basic credentials ("default", or no user, as AUTH).
    let basic = |user_pass: &str| format!("Basic {}", b64(user_pass.as_bytes()));
    for bad in ["default:nope", "other:s3cret", "garbage"] {
        let r = request(
            http,
            "GET",
            "/api/queues",
            &[("Authorization", &basic(bad))],
            b"",
        );
        assert_eq!(r.status, 401, "{bad}");
    }
    for good in ["default:s3cret", ":s3cret"] {
        let r = request(
            http,
            "GET",
            "/api/queues",
            &[("Authorization", &basic(good))],
            b"",
        );
        assert_eq!(r.status, 200, "{good}: {}", r.body);
    }
    let r = request(
        http,
        "POST",
        "/api/queues/q/members",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &basic("default:s3cret")),
        ],
        add.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // ACL users: one with every permission may use the API; a restricted
    // one is refused (403), not given more than RESP would allow it.
    for rules in [
        &["ops", "on", ">opspw", "+@all", "~*"][..],
        &[
            "worker",
            "on",
            ">workpw",
            "+delaypop",
            "+delayack",
            "~jobs:*",
        ][..],
    ] {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(rules)
            .query(&mut con)
            .unwrap();
    }
    let r = request(
        http,
        "GET",
        "/api/queues",
        &[("Authorization", &basic("ops:opspw"))],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = request(
        http,
        "GET",
        "/api/queues",
        &[("Authorization", &basic("worker:workpw"))],
        b"",
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.error().contains("restricted"), "{}", r.body);
    let r = post(
        http,
        "/api/login",
        &json!({"user": "worker", "password": "workpw"}),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    // The scrape stays open, as before.
    assert_eq!(get(http, "/metrics").status, 200);
    // The console's login: a wrong password is refused; the right one
    // opens a session cookie (HttpOnly, SameSite=Strict) and gives a token.
    let r = post(http, "/api/login", &json!({"password": "nope"}));
    assert_eq!(r.status, 401);
    assert!(r.header("set-cookie").is_none());
    let r = post(
        http,
        "/api/login",
        &json!({"user": "default", "password": "s3cret"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let cookie_header = r.header("set-cookie").unwrap();
    assert!(cookie_header.contains("HttpOnly") && cookie_header.contains("SameSite=Strict"));
    let cookie = cookie_header.split(';').next().unwrap().to_string();
    let csrf = r.json()["csrf_token"].as_str().unwrap().to_string();
    let s = ok(request(
        http,
        "GET",
        "/api/session",
        &[("Cookie", &cookie)],
        b"",
    ));
    assert_eq!(
        s,
        json!({"auth_required": true, "authenticated": true, "csrf_token": csrf})
    );
    // Reads with the cookie alone; writes need the token too.
    let r = request(http, "GET", "/api/queues/q", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 200);
    let before = snapshot(&mut con, "q");
    let add2 = json!({"members": [{"member": "forged", "delay_ms": 0}]}).to_string();
    for token in [None, Some("0000")] {
        let mut h = vec![
            ("Content-Type", "application/json"),
            ("Cookie", cookie.as_str()),
        ];
        if let Some(t) = token {
            h.push(("X-CSRF-Token", t));
        }
        let r = request(http, "POST", "/api/queues/q/members", &h, add2.as_bytes());
        assert_eq!(r.status, 403, "{}", r.body);
        let r = request(http, "DELETE", "/api/queues/q", &h, b"");
        assert_eq!(r.status, 403, "{}", r.body);
    }
    assert_eq!(snapshot(&mut con, "q"), before);
    let r = request(
        http,
        "POST",
        "/api/queues/q/members",
        &[
            ("Content-Type", "application/json"),
            ("Cookie", &cookie),
            ("X-CSRF-Token", &csrf),
        ],
        add2.as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(score(&mut con, "q", "forged").is_some());
    // A password change ends the session.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg("n3w")
        .query(&mut con)
        .unwrap();
    let r = request(http, "GET", "/api/queues", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 401);
    // Log out: the cookie is cleared and no longer works.
    let r = post(http, "/api/login", &json!({"password": "n3w"}));
    let cookie = r
        .header("set-cookie")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let r = request(http, "POST", "/api/logout", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = request(http, "GET", "/api/queues", &[("Cookie", &cookie)], b"");
    assert_eq!(r.status, 401);
}

/// Standard base64, for the basic credentials.
fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The console's assets are served from the binary.
#[test]
fn the_console_and_the_openapi_document_are_served() {
    let (_server, http) = start(&[]);
    let r = get(http, "/");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("/console.js"));
    for (path, kind) in [
        ("/console.js", "text/javascript"),
        ("/console.css", "text/css"),
    ] {
        let r = get(http, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap().starts_with(kind),
            "{path}"
        );
    }
    let doc = ok(get(http, "/api/openapi.json"));
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    // Every API route is documented.
    for p in [
        "/api/overview",
        "/api/queues",
        "/api/queues/{queue}",
        "/api/queues/{queue}/timeline",
        "/api/queues/{queue}/members",
        "/api/queues/{queue}/members/{member}",
        "/api/queues/{queue}/requeue",
        "/api/queues/{queue}/pop",
        "/api/queues/{queue}/ack",
    ] {
        assert!(doc["paths"].get(p).is_some(), "{p} is not documented");
    }
    assert_eq!(get(http, "/nope").status, 404);
}

/// The 503 promise: with the store failed (a full disk), a write through
/// the API is refused with a JSON 503, never acknowledged.
#[test]
fn a_failed_store_is_a_json_503_not_a_success() {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "this test mounts a small tmpfs and needs root in CI"
        );
        eprintln!("SKIPPED: mounting a small tmpfs needs root; run as root to include this test");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=6m", "tmpfs"])
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(mounted.success(), "mount tmpfs");
    struct Unmount<'a>(&'a std::path::Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(self.0).status();
        }
    }
    let _guard = Unmount(&mnt);
    let http = free_port();
    let server = Server::start_in(
        &mnt.join("data"),
        &["--appendfsync", "always", "--http-port", &http.to_string()],
    );
    let pad = "x".repeat(2000);
    let mut failed = None;
    for i in 0..5000 {
        let body = json!({"members": [{"member": format!("m{i}-{pad}"), "delay_ms": 600000}]});
        let r = post(http, "/api/queues/q/members", &body);
        if r.status != 200 {
            failed = Some(r);
            break;
        }
    }
    let r = failed.expect("a 6 MiB disk fills up");
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.error().contains("storage error"), "{}", r.body);
    let r = post(
        http,
        "/api/queues/q/members",
        &json!({"members": [{"member": "late", "delay_ms": 1}]}),
    );
    assert_eq!(r.status, 503);
    assert!(r.error().contains("writes are refused"), "{}", r.body);
    let o = ok(get(http, "/api/overview"));
    assert!(
        o["storage_error"]
            .as_str()
            .unwrap()
            .contains("No space left"),
        "{o}"
    );
    drop(server);
}
