//! ACL users from the outside: the README's producer, consumer and operator
//! against the real binary. Each denied command answers `-NOPERM` and
//! changes nothing (checked from a second, unrestricted connection); the
//! ACL file survives a restart through ACL SAVE and is read again by ACL
//! LOAD; redis-py connects with a username and password.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::time::Duration;

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;

use harness::{Conn, Server, eventually, read_reply, require_redis_py, resp, run_bounded, show};

/// A logged-in connection whose closing by the server can be seen.
struct Raw {
    w: TcpStream,
    r: BufReader<TcpStream>,
}

impl Raw {
    fn login(port: u16, auth: &str) -> Raw {
        let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Raw {
            w: c.try_clone().unwrap(),
            r: BufReader::new(c),
        };
        let reply = raw.ask(auth);
        assert!(
            reply == b"+OK\r\n" || reply.starts_with(b"%"),
            "{}",
            show(&reply)
        );
        raw
    }

    fn ask(&mut self, cmd: &str) -> Vec<u8> {
        let args: Vec<&[u8]> = cmd.split(' ').map(str::as_bytes).collect();
        self.w.write_all(&resp(&args)).unwrap();
        read_reply(&mut self.r)
    }

    /// Whether the server closed the connection (end of stream).
    fn closed(&mut self) -> bool {
        self.r
            .get_ref()
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut b = [0u8; 64];
        match self.r.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }
}

const NOPERM_CMD: &str = "-NOPERM this user has no permissions to run the '";
const NOPERM_KEY: &[u8] =
    b"-NOPERM this user has no permissions to access one of the keys used as arguments\r\n";

/// The README's users.
const USERS: &[&str] = &[
    "ACL SETUSER producer on >p-secret ~orders:* -@all +delayadd +ping",
    "ACL SETUSER consumer on >c-secret ~orders:* -@all +delaypop +bdelaypop +delayack +ping",
    "ACL SETUSER operator on >o-secret ~* -@all +@read +info +ping",
];

fn setup(admin: &mut Conn) {
    for u in USERS {
        assert_eq!(admin.ask(u), b"+OK\r\n", "{u}");
    }
}

fn login(port: u16, user: &str, pass: &str) -> Conn {
    let mut c = Conn::open(port, 2);
    assert_eq!(
        c.ask(&format!("AUTH {user} {pass}")),
        b"+OK\r\n",
        "AUTH {user}"
    );
    c
}

fn noperm_cmd(name: &str) -> Vec<u8> {
    format!("{NOPERM_CMD}{name}' command\r\n").into_bytes()
}

#[test]
fn producer_consumer_operator_may_do_only_their_part() {
    let s = Server::start(&[]);
    let mut admin = Conn::open(s.port, 2);
    setup(&mut admin);

    let mut producer = login(s.port, "producer", "p-secret");
    assert_eq!(producer.ask("DELAYADD orders:eu 0 o1"), b":1\r\n");
    assert_eq!(producer.ask("DELAYADD orders:eu 0 o2"), b":1\r\n");
    // Another queue: refused, and nothing added.
    assert_eq!(producer.ask("DELAYADD payments 0 p1"), NOPERM_KEY);
    assert_eq!(admin.ask("EXISTS payments"), b":0\r\n");
    // Popping, removing, deleting: refused, and nothing removed.
    assert_eq!(producer.ask("DELAYPOP orders:eu"), noperm_cmd("delaypop"));
    assert_eq!(
        producer.ask("DELAYREM orders:eu o1"),
        noperm_cmd("delayrem")
    );
    assert_eq!(producer.ask("DEL orders:eu"), noperm_cmd("del"));
    assert_eq!(producer.ask("FLUSHALL"), noperm_cmd("flushall"));
    assert_eq!(
        producer.ask("CONFIG SET requirepass x"),
        noperm_cmd("config|set")
    );
    assert_eq!(admin.ask("DELAYCARD orders:eu"), b":2\r\n");
    assert_eq!(
        admin.ask("CONFIG GET requirepass"),
        b"*2\r\n$11\r\nrequirepass\r\n$0\r\n\r\n"
    );

    let mut consumer = login(s.port, "consumer", "c-secret");
    assert_eq!(
        consumer.ask("DELAYADD orders:eu 0 o3"),
        noperm_cmd("delayadd")
    );
    assert_eq!(consumer.ask("DELAYPOP payments"), NOPERM_KEY);
    // A dead-letter queue outside its pattern is a key it may not write.
    assert_eq!(
        consumer.ask("DELAYPOP orders:eu LEASE 1000 RETRIES 1 DEADLETTER dead"),
        NOPERM_KEY
    );
    assert_eq!(admin.ask("DELAYCARD orders:eu"), b":2\r\n");
    let popped = consumer.ask("DELAYPOP orders:eu LEASE 30000 RETRIES 3 DEADLETTER orders:dead");
    assert_eq!(popped, b"*1\r\n$2\r\no1\r\n");
    assert_eq!(consumer.ask("DELAYACK orders:eu o1"), b":1\r\n");
    let r = show(&consumer.ask("BDELAYPOP orders:eu 1"));
    assert!(
        r.starts_with("*3\r\n$9\r\norders:eu\r\n$2\r\no2\r\n:"),
        "{r}"
    );
    assert_eq!(
        consumer.ask("DELAYRANGE orders:eu 0 -1"),
        noperm_cmd("delayrange")
    );

    let mut operator = login(s.port, "operator", "o-secret");
    assert_eq!(
        operator.ask("DELAYADD orders:eu 0 o9"),
        noperm_cmd("delayadd")
    );
    assert_eq!(operator.ask("DELAYPOP orders:eu"), noperm_cmd("delaypop"));
    assert_eq!(operator.ask("DEL orders:eu"), noperm_cmd("del"));
    assert_eq!(operator.ask("ACL LIST"), noperm_cmd("acl|list"));
    assert_eq!(
        operator.ask("CLIENT KILL USER producer"),
        noperm_cmd("client|kill")
    );
    assert_eq!(operator.ask("DELAYCARD payments"), b":0\r\n");
    assert!(show(&operator.ask("KEYS *")).starts_with('*'));
    assert!(show(&operator.ask("INFO stats")).contains("acl_access_denied_cmd:"));
    assert_eq!(operator.ask("ACL WHOAMI"), noperm_cmd("acl|whoami"));

    // Every denial is in ACL LOG, without a password, and counted in INFO.
    let log = show(&admin.ask("ACL LOG 100"));
    for what in ["delaypop", "payments", "dead", "config|set", "acl|list"] {
        assert!(
            log.contains(&format!("\r\n{what}\r\n")),
            "{what} not in {log}"
        );
    }
    assert!(!log.contains("secret"), "{log}");
    let info = show(&admin.ask("INFO stats"));
    assert!(info.contains("acl_access_denied_key:3\r\n"), "{info}");
    assert!(info.contains("acl_access_denied_auth:0\r\n"), "{info}");
}

#[test]
fn consumer_may_block_on_its_queues_only() {
    let s = Server::start(&[]);
    let mut admin = Conn::open(s.port, 2);
    setup(&mut admin);
    assert_eq!(admin.ask("DELAYADD orders:eu 0 o1"), b":1\r\n");
    let mut consumer = login(s.port, "consumer", "c-secret");
    assert_eq!(consumer.ask("BDELAYPOP payments orders:eu 1"), NOPERM_KEY);
    assert_eq!(admin.ask("DELAYCARD orders:eu"), b":1\r\n");
    let r = show(&consumer.ask("BDELAYPOP orders:eu 1"));
    assert!(
        r.starts_with("*3\r\n$9\r\norders:eu\r\n$2\r\no1\r\n:"),
        "{r}"
    );
}

#[test]
fn denied_commands_inside_multi_abort_exec() {
    let s = Server::start(&[]);
    let mut admin = Conn::open(s.port, 2);
    setup(&mut admin);
    let mut producer = login(s.port, "producer", "p-secret");
    assert_eq!(producer.ask("MULTI"), noperm_cmd("multi"));
    assert_eq!(admin.ask("ACL SETUSER producer +@transaction"), b"+OK\r\n");
    // The change applies to the connection already logged in.
    assert_eq!(producer.ask("MULTI"), b"+OK\r\n");
    assert_eq!(producer.ask("DELAYADD orders:eu 0 a"), b"+QUEUED\r\n");
    assert_eq!(producer.ask("DELAYADD payments 0 b"), NOPERM_KEY);
    assert_eq!(
        producer.ask("EXEC"),
        b"-EXECABORT Transaction discarded because of previous errors.\r\n"
    );
    assert_eq!(admin.ask("DBSIZE"), b":0\r\n");
    let log = show(&admin.ask("ACL LOG 1"));
    assert!(log.contains("\r\ncontext\r\n$5\r\nmulti\r\n"), "{log}");
}

#[test]
fn requirepass_is_the_default_users_password() {
    let s = Server::start(&["--requirepass", "topsecret"]);
    let mut c = Conn::open(s.port, 2);
    assert_eq!(c.ask("PING"), b"-NOAUTH Authentication required.\r\n");
    assert_eq!(
        c.ask("AUTH wrong"),
        b"-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(c.ask("AUTH default topsecret"), b"+OK\r\n");
    assert_eq!(c.ask("ACL WHOAMI"), b"$7\r\ndefault\r\n");
    assert_eq!(c.ask("ACL SETUSER alice on >pw ~* +@all"), b"+OK\r\n");
    let mut h = Raw::login(s.port, "HELLO 3 AUTH alice pw");
    assert_eq!(h.ask("ACL WHOAMI"), b"$5\r\nalice\r\n");
    assert!(show(&c.ask("CLIENT LIST")).contains(" user=alice "));
    // The failed AUTH is logged under the user it named, with no password.
    let log = show(&c.ask("ACL LOG"));
    assert!(
        log.contains("\r\nauth\r\n") && !log.contains("wrong"),
        "{log}"
    );
    assert!(show(&c.ask("INFO stats")).contains("acl_access_denied_auth:1\r\n"));
    // Deleting a user disconnects its clients.
    assert_eq!(c.ask("ACL DELUSER alice"), b":1\r\n");
    assert!(eventually(Duration::from_secs(5), || h.closed()));
    // A new password for the default user through CONFIG SET.
    assert_eq!(c.ask("CONFIG SET requirepass other"), b"+OK\r\n");
    let mut n = Conn::open(s.port, 2);
    assert!(n.ask("AUTH topsecret").starts_with(b"-WRONGPASS"));
    assert_eq!(n.ask("AUTH other"), b"+OK\r\n");
}

#[test]
fn aclfile_survives_a_restart_and_is_reloaded() {
    let tmp = tempfile::tempdir().unwrap();
    let aclfile = tmp.path().join("users.acl");
    std::fs::write(&aclfile, "").unwrap();
    let file = aclfile.to_str().unwrap();
    let data = tmp.path().join("data");
    let mut s = Server::start_in(&data, &["--aclfile", file]);
    let mut admin = Conn::open(s.port, 2);
    setup(&mut admin);
    assert_eq!(admin.ask("ACL SAVE"), b"+OK\r\n");
    let text = std::fs::read_to_string(&aclfile).unwrap();
    assert!(text.contains("user producer on #"), "{text}");
    assert!(
        !text.contains("p-secret"),
        "passwords are stored hashed: {text}"
    );
    s.terminate();

    let s = Server::start_in(&data, &["--aclfile", file]);
    let mut producer = Raw::login(s.port, "AUTH producer p-secret");
    assert_eq!(producer.ask("DELAYADD orders:eu 0 o1"), b":1\r\n");
    assert_eq!(producer.ask("DELAYADD payments 0 o1"), NOPERM_KEY);

    // ACL LOAD: the file replaces the users; their clients are disconnected.
    let mut admin = Conn::open(s.port, 2);
    std::fs::write(
        &aclfile,
        "user default on nopass ~* &* +@all\nuser producer on >new ~* +@all\n",
    )
    .unwrap();
    assert_eq!(admin.ask("ACL LOAD"), b"+OK\r\n");
    assert!(eventually(Duration::from_secs(5), || producer.closed()));
    let mut producer = login(s.port, "producer", "new");
    assert_eq!(producer.ask("DELAYADD payments 0 o1"), b":1\r\n");
    assert_eq!(
        admin.ask("ACL USERS"),
        b"*2\r\n$7\r\ndefault\r\n$8\r\nproducer\r\n"
    );

    // A bad file changes nothing.
    std::fs::write(&aclfile, "user producer on +nosuch\nbogus\n").unwrap();
    let r = show(&admin.ask("ACL LOAD"));
    assert!(r.contains("Error in applying operation '+nosuch'"), "{r}");
    assert!(r.contains(":2 should start with user keyword"), "{r}");
    assert!(r.ends_with("WARNING: ACL errors detected, no change to the previously active ACL rules was performed\r\n"), "{r}");
    assert_eq!(
        admin.ask("ACL USERS"),
        b"*2\r\n$7\r\ndefault\r\n$8\r\nproducer\r\n"
    );
}

#[test]
fn a_bad_aclfile_stops_start_up() {
    let tmp = tempfile::tempdir().unwrap();
    let aclfile = tmp.path().join("users.acl");
    std::fs::write(&aclfile, "user x on +nosuch\n").unwrap();
    let out = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_delayd")).args([
            "--port",
            &harness::free_port().to_string(),
            "--dir",
            tmp.path().join("d").to_str().unwrap(),
            "--aclfile",
            aclfile.to_str().unwrap(),
        ]),
        None,
        Duration::from_secs(30),
    );
    assert!(!out.success(), "{}", out.describe());
    assert!(
        out.describe()
            .contains("Aborting Redis startup because of ACL errors"),
        "{}",
        out.describe()
    );
}

#[test]
fn redis_py_connects_with_a_username() {
    if !require_redis_py() {
        return;
    }
    let s = Server::start(&[]);
    let mut admin = Conn::open(s.port, 2);
    setup(&mut admin);
    let script = format!(
        r#"
import redis
p = redis.Redis(port={port}, username="producer", password="p-secret")
assert p.execute_command("DELAYADD", "orders:eu", 0, "o1") == 1
try:
    p.execute_command("DELAYADD", "payments", 0, "o1")
    raise SystemExit("not refused")
except redis.exceptions.NoPermissionError as e:
    assert "no permissions to access one of the keys" in str(e), e
try:
    redis.Redis(port={port}, username="producer", password="bad").ping()
    raise SystemExit("bad password accepted")
except redis.exceptions.AuthenticationError:
    pass
c = redis.Redis(port={port}, username="consumer", password="c-secret", protocol=3)
assert c.execute_command("DELAYPOP", "orders:eu") == [b"o1"]
print("ok")
"#,
        port = s.port
    );
    let out = run_bounded(
        std::process::Command::new("python3").args(["-c", &script]),
        None,
        Duration::from_secs(60),
    );
    assert!(out.success(), "{}", out.describe());
    assert_eq!(admin.ask("EXISTS payments"), b":0\r\n");
}
