//! TLS from outside: the real binary with `--tls-port` and certificates
//! this test generates (rcgen), driven by real clients over TLS
//! (`redis-cli --tls`, redis-py with `ssl=True`, the `redis` crate with
//! `tls-rustls`): client certificates (yes, optional, no), a plain client on
//! the TLS port, TLS only, certificate reload while a client stays
//! connected, bad files at start and on reload, and CONFIG SET's errors
//! byte for byte against a real redis-server with TLS.

#[path = "../compat-tests/harness.rs"]
mod harness;

use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::{Conn, Server, free_port, require_redis_py, require_tool, run_bounded, show};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// Certificates and keys written as PEM files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
}

/// A CA that signs the certificates of the test.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        Ca {
            issuer: CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// A leaf certificate and its key, as PEM: for the server (names
    /// localhost and 127.0.0.1) or for a client.
    fn leaf(&self, name: &str, server: bool) -> (String, String) {
        let sans = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

impl Pki {
    /// Two CAs; under `ca`: a server certificate `server`, a client
    /// certificate `client`; under `ca2`: a server certificate `server2`
    /// and a client certificate `rogue` (unknown to a server trusting `ca`).
    fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
        };
        let ca = Ca::new("delayd test CA");
        let ca2 = Ca::new("delayd second CA");
        pki.write("ca.crt", &ca.issuer.pem());
        pki.write("ca2.crt", &ca2.issuer.pem());
        for (ca, name, server) in [
            (&ca, "server", true),
            (&ca, "client", false),
            (&ca2, "server2", true),
            (&ca2, "rogue", false),
        ] {
            let (cert, key) = ca.leaf(name, server);
            pki.write(&format!("{name}.crt"), &cert);
            pki.write(&format!("{name}.key"), &key);
        }
        pki
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.path().join(name), text).unwrap();
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }

    fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.dir.path().join(name)).unwrap()
    }

    /// The server flags: `--tls-port`, certificate, key and CA.
    fn server_flags(&self, tls_port: u16) -> Vec<String> {
        vec![
            "--tls-port".into(),
            tls_port.to_string(),
            "--tls-cert-file".into(),
            self.path("server.crt"),
            "--tls-key-file".into(),
            self.path("server.key"),
            "--tls-ca-cert-file".into(),
            self.path("ca.crt"),
        ]
    }
}

/// A redis-rs client over TLS trusting `ca`, with the client certificate
/// `client` (a name in the [`Pki`]) if given.
fn tls_client(
    pki: &Pki,
    port: u16,
    ca: &str,
    client: Option<&str>,
) -> redis::RedisResult<redis::Connection> {
    let certs = redis::TlsCertificates {
        client_tls: client.map(|c| redis::ClientTlsConfig {
            client_cert: pki.read(&format!("{c}.crt")),
            client_key: pki.read(&format!("{c}.key")),
        }),
        root_cert: Some(pki.read(ca)),
    };
    let client = redis::Client::build_with_tls(format!("rediss://127.0.0.1:{port}/"), certs)?;
    let con = client.get_connection_with_timeout(Duration::from_secs(5))?;
    con.set_read_timeout(Some(Duration::from_secs(10)))?;
    con.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(con)
}

/// Whether a fresh TLS client gets PONG. With TLS 1.3 a refused client
/// certificate shows only at the first read, so connecting alone proves
/// nothing: this sends a command.
fn pings(pki: &Pki, port: u16, ca: &str, client: Option<&str>) -> bool {
    tls_client(pki, port, ca, client)
        .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
        .is_ok_and(|r| r == "PONG")
}

fn start(pki: &Pki, tls_port: u16, extra: &[&str]) -> Server {
    let mut flags = pki.server_flags(tls_port);
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    Server::start(&flags)
}

fn info_field(info: &str, key: &str) -> String {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .unwrap_or_else(|| panic!("no {key} in INFO:\n{info}"))
        .trim()
        .to_string()
}

#[test]
fn real_clients_speak_to_the_tls_port() {
    let pki = Pki::new();
    let tls_port = free_port();
    let server = start(&pki, tls_port, &[]);

    // The redis crate with tls-rustls.
    let mut rs = tls_client(&pki, tls_port, "ca.crt", Some("client")).expect("redis-rs over TLS");
    let added: i64 = redis::cmd("DELAYADD")
        .arg("tls:q")
        .arg(0)
        .arg("from-rust")
        .query(&mut rs)
        .unwrap();
    assert_eq!(added, 1);
    let info: String = redis::cmd("INFO").arg("server").query(&mut rs).unwrap();
    assert_eq!(info_field(&info, "tls_port"), tls_port.to_string());
    assert_eq!(info_field(&info, "tcp_port"), server.port.to_string());

    // A reply far larger than one TLS record and the 64 KB write piece
    // arrives whole (large replies are encoded while they are written).
    let mut add = redis::cmd("DELAYADD");
    add.arg("tls:big");
    for i in 0..5000 {
        add.arg(0).arg(format!("{i:0>100}"));
    }
    let n: i64 = add.query(&mut rs).unwrap();
    assert_eq!(n, 5000);
    let all: Vec<String> = redis::cmd("DELAYRANGE")
        .arg("tls:big")
        .arg(0)
        .arg(-1)
        .query(&mut rs)
        .unwrap();
    assert_eq!(all.len(), 5000);
    assert!(all.iter().all(|m| m.len() == 100));

    // redis-cli --tls (Debian's redis-tools is built with TLS).
    if let Some(cli) = require_tool("redis-cli", "apt-get install -y redis-tools") {
        let out = run_bounded(
            Command::new(&cli).args([
                "--tls",
                "--cacert",
                &pki.path("ca.crt"),
                "--cert",
                &pki.path("client.crt"),
                "--key",
                &pki.path("client.key"),
                "-p",
                &tls_port.to_string(),
                "DELAYADD",
                "tls:q",
                "0",
                "from-cli",
            ]),
            None,
            Duration::from_secs(20),
        );
        assert!(out.success(), "{}", out.describe());
        assert_eq!(out.stdout.trim(), "1", "{}", out.describe());
    }

    // redis-py with ssl=True.
    if require_redis_py() {
        let script = r#"
import sys, redis
port, ca, cert, key = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
r = redis.Redis(host="127.0.0.1", port=int(port), ssl=True, ssl_ca_certs=ca,
                ssl_certfile=cert, ssl_keyfile=key, socket_timeout=10)
assert r.execute_command("DELAYADD", "tls:q", 0, "from-py") == 1
print(r.execute_command("DELAYCARD", "tls:q"))
print(r.connection_pool.get_connection().__class__.__name__)
"#;
        let out = run_bounded(
            Command::new("python3").args([
                "-c",
                script,
                &tls_port.to_string(),
                &pki.path("ca.crt"),
                &pki.path("client.crt"),
                &pki.path("client.key"),
            ]),
            None,
            Duration::from_secs(30),
        );
        assert!(out.success(), "{}", out.describe());
        let lines: Vec<&str> = out.stdout.lines().collect();
        assert_eq!(lines.len(), 2, "{}", out.describe());
        assert!(
            ["2", "3"].contains(&lines[0]),
            "DELAYCARD after the other clients: {}",
            out.describe()
        );
        assert_eq!(lines[1], "SSLConnection", "{}", out.describe());
    }

    // The plain port serves the same data.
    let mut plain = server.client();
    let members: Vec<String> = redis::cmd("DELAYRANGE")
        .arg("tls:q")
        .arg(0)
        .arg(-1)
        .query(&mut plain)
        .unwrap();
    assert!(members.contains(&"from-rust".to_string()), "{members:?}");
}

#[test]
fn client_certificates_yes_optional_and_no() {
    let pki = Pki::new();
    let tls_port = free_port();
    // Default: yes, a certificate is required and must chain to the CA.
    let server = start(&pki, tls_port, &[]);
    assert!(pings(&pki, tls_port, "ca.crt", Some("client")));
    assert!(
        !pings(&pki, tls_port, "ca.crt", None),
        "no certificate, yes"
    );
    assert!(
        !pings(&pki, tls_port, "ca.crt", Some("rogue")),
        "unknown CA, yes"
    );

    let mut admin = server.client();
    let set = |admin: &mut redis::Connection, v: &str| {
        let r: String = redis::cmd("CONFIG")
            .arg("SET")
            .arg("tls-auth-clients")
            .arg(v)
            .query(admin)
            .unwrap();
        assert_eq!(r, "OK");
    };
    set(&mut admin, "optional");
    assert!(pings(&pki, tls_port, "ca.crt", Some("client")));
    assert!(
        pings(&pki, tls_port, "ca.crt", None),
        "no certificate, optional"
    );
    assert!(
        !pings(&pki, tls_port, "ca.crt", Some("rogue")),
        "a certificate sent is checked, optional"
    );

    set(&mut admin, "no");
    assert!(pings(&pki, tls_port, "ca.crt", None), "no certificate, no");
    assert!(pings(&pki, tls_port, "ca.crt", Some("client")));
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-auth-clients")
        .query(&mut admin)
        .unwrap();
    assert_eq!(got, ["tls-auth-clients", "no"]);
    drop(server);

    // With `no`, no CA is needed at all.
    let tls_port = free_port();
    let _server = Server::start(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &pki.path("server.crt"),
        "--tls-key-file",
        &pki.path("server.key"),
        "--tls-auth-clients",
        "no",
    ]);
    assert!(pings(&pki, tls_port, "ca.crt", None));
}

#[test]
fn a_plain_client_on_the_tls_port_gets_no_reply() {
    let pki = Pki::new();
    let tls_port = free_port();
    let server = start(&pki, tls_port, &[]);
    let mut c = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    std::io::Write::write_all(&mut c, b"PING\r\n").unwrap();
    // The server closes the connection: at most a TLS alert (a record
    // starting with 0x15), never a RESP reply.
    let mut got = Vec::new();
    let closed = match c.read_to_end(&mut got) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "the connection stayed open; got {got:?}");
    assert!(
        !got.starts_with(b"+") && !got.starts_with(b"-"),
        "a RESP reply on the TLS port: {}",
        show(&got)
    );
    assert!(got.is_empty() || got[0] == 0x15, "{got:?}");
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut server.client())
        .unwrap();
    assert_eq!(info_field(&info, "tls_handshake_failures"), "1");
}

#[test]
fn certificates_reload_while_a_client_stays_connected() {
    let pki = Pki::new();
    let tls_port = free_port();
    let server = start(&pki, tls_port, &[]);
    let mut old = tls_client(&pki, tls_port, "ca.crt", Some("client")).unwrap();
    let pong: String = redis::cmd("PING").query(&mut old).unwrap();
    assert_eq!(pong, "PONG");

    let config = |c: &mut redis::Connection, args: &[&str]| -> redis::RedisResult<redis::Value> {
        let mut cmd = redis::cmd("CONFIG");
        for a in args {
            cmd.arg(*a);
        }
        cmd.query(c)
    };
    let mut admin = server.client();

    // Swap to the second CA's certificate, through the TLS client itself.
    config(
        &mut old,
        &[
            "SET",
            "tls-cert-file",
            &pki.path("server2.crt"),
            "tls-key-file",
            &pki.path("server2.key"),
        ],
    )
    .expect("CONFIG SET over TLS");
    assert!(
        !pings(&pki, tls_port, "ca.crt", Some("client")),
        "a new client still sees the old certificate"
    );
    assert!(pings(&pki, tls_port, "ca2.crt", Some("client")));
    // The connected client keeps its session.
    let n: i64 = redis::cmd("DELAYADD")
        .arg("q")
        .arg(0)
        .arg("m")
        .query(&mut old)
        .unwrap();
    assert_eq!(n, 1);

    // A bad file: Redis's error, and the certificate in force stays.
    let err = config(
        &mut admin,
        &["SET", "tls-cert-file", "/nonexistent/cert.pem"],
    )
    .unwrap_err();
    assert_eq!(
        err.detail(),
        Some(
            "CONFIG SET failed (possibly related to argument 'tls-cert-file') - \
             Unable to update TLS configuration. Check server logs."
        ),
        "{err:?}"
    );
    // A key that is not the certificate's.
    config(
        &mut admin,
        &["SET", "tls-key-file", &pki.path("server.key")],
    )
    .unwrap_err();
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-cert-file")
        .query(&mut admin)
        .unwrap();
    assert_eq!(got[1], pki.path("server2.crt"));
    assert!(pings(&pki, tls_port, "ca2.crt", Some("client")));
    let log = server.log_text();
    assert!(
        log.contains("Failed to load certificate: /nonexistent/cert.pem"),
        "{log}"
    );

    // Rotation in place: the same path, new contents, CONFIG SET again.
    std::fs::copy(pki.path("server.crt"), pki.path("server2.crt")).unwrap();
    std::fs::copy(pki.path("server.key"), pki.path("server2.key")).unwrap();
    config(
        &mut admin,
        &["SET", "tls-cert-file", &pki.path("server2.crt")],
    )
    .unwrap();
    assert!(pings(&pki, tls_port, "ca.crt", Some("client")));
    assert!(!pings(&pki, tls_port, "ca2.crt", Some("client")));
    let pong: String = redis::cmd("PING").query(&mut old).unwrap();
    assert_eq!(pong, "PONG");
}

/// A delayd started without waiting on a plain port (TLS only), or one
/// expected to fail at start; killed when dropped.
struct Raw {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Raw {
    fn spawn(args: &[String]) -> Raw {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let child = Command::new(env!("CARGO_BIN_EXE_delayd"))
            .arg("--dir")
            .arg(dir.path().join("data"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Raw {
            child,
            log,
            _dir: dir,
        }
    }

    /// The exit code once the process has exited by itself, within `limit`.
    fn exit_code(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn port_zero_with_a_tls_port_is_tls_only() {
    let pki = Pki::new();
    let tls_port = free_port();
    let mut args = pki.server_flags(tls_port);
    args.extend(["--port".to_string(), "0".to_string()]);
    let raw = Raw::spawn(&args);
    let ok = harness::eventually(Duration::from_secs(20), || {
        pings(&pki, tls_port, "ca.crt", Some("client"))
    });
    assert!(ok, "no TLS service; log:\n{}", raw.log());
    let mut c = tls_client(&pki, tls_port, "ca.crt", Some("client")).unwrap();
    let info: String = redis::cmd("INFO").arg("server").query(&mut c).unwrap();
    // As Redis: tcp_port shows the TLS port when there is no plain one.
    assert_eq!(info_field(&info, "tcp_port"), tls_port.to_string());
    let port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("port")
        .query(&mut c)
        .unwrap();
    assert_eq!(port[1], "0");
    let log = raw.log();
    assert_eq!(
        log.matches("ready to accept connections on").count(),
        1,
        "{log}"
    );
    assert!(
        log.contains(&format!("127.0.0.1:{tls_port} (TLS)")),
        "{log}"
    );
}

#[test]
fn bad_tls_files_at_start_are_a_clear_error() {
    let pki = Pki::new();
    pki.write("garbage.crt", "not a certificate\n");
    let with = |swap: &[(&str, String)], drop_flag: Option<&str>| {
        let mut args = pki.server_flags(free_port());
        for (flag, value) in swap {
            let i = args.iter().position(|a| a == flag).unwrap();
            args[i + 1] = value.clone();
        }
        if let Some(flag) = drop_flag {
            let i = args.iter().position(|a| a == flag).unwrap();
            args.drain(i..i + 2);
        }
        args.extend(["--port".to_string(), free_port().to_string()]);
        let mut raw = Raw::spawn(&args);
        let code = raw.exit_code(Duration::from_secs(20));
        (code, raw.log())
    };
    /// Flags whose values are replaced, a flag left out, what the log says.
    type Case<'a> = (Vec<(&'a str, String)>, Option<&'a str>, String);
    let cases: Vec<Case> = vec![
        (
            vec![("--tls-cert-file", "/nonexistent/server.crt".to_string())],
            None,
            "Failed to load certificate: /nonexistent/server.crt: No such file".to_string(),
        ),
        (
            vec![("--tls-cert-file", pki.path("garbage.crt"))],
            None,
            format!("Failed to load certificate: {}", pki.path("garbage.crt")),
        ),
        (
            vec![("--tls-key-file", pki.path("client.key"))],
            None,
            "does not match the key".to_string(),
        ),
        (
            vec![],
            Some("--tls-ca-cert-file"),
            "Either tls-ca-cert-file or tls-ca-cert-dir must be specified".to_string(),
        ),
        (
            vec![],
            Some("--tls-key-file"),
            "No tls-key-file configured!".to_string(),
        ),
    ];
    for (swap, drop_flag, want) in cases {
        let (code, log) = with(&swap, drop_flag);
        assert_eq!(code, Some(1), "{swap:?} {drop_flag:?}; log:\n{log}");
        assert!(log.contains(&want), "{swap:?}: want {want:?}; log:\n{log}");
        assert!(
            log.contains("Failed to configure TLS. Check logs for more info."),
            "{log}"
        );
    }
}

#[test]
fn the_ca_directory_stands_for_the_ca_file() {
    let pki = Pki::new();
    let cadir = pki.dir.path().join("cadir");
    std::fs::create_dir(&cadir).unwrap();
    std::fs::copy(pki.path("ca.crt"), cadir.join("ca.pem")).unwrap();
    std::fs::write(cadir.join("README"), "not a certificate").unwrap();
    let tls_port = free_port();
    let mut flags = pki.server_flags(tls_port);
    let i = flags
        .iter()
        .position(|a| a == "--tls-ca-cert-file")
        .unwrap();
    flags[i] = "--tls-ca-cert-dir".into();
    flags[i + 1] = cadir.to_str().unwrap().into();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let _server = Server::start(&flags);
    assert!(pings(&pki, tls_port, "ca.crt", Some("client")));
    assert!(!pings(&pki, tls_port, "ca.crt", Some("rogue")));
}

/// The TLS version Python's ssl (OpenSSL) negotiates with the server.
fn negotiated_version(pki: &Pki, port: u16) -> String {
    let script = r#"
import sys, socket, ssl
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.load_cert_chain(sys.argv[3], sys.argv[4])
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    with ctx.wrap_socket(s, server_hostname="localhost") as t:
        print(t.version())
"#;
    let out = run_bounded(
        Command::new("python3").args([
            "-c",
            script,
            &port.to_string(),
            &pki.path("ca.crt"),
            &pki.path("client.crt"),
            &pki.path("client.key"),
        ]),
        None,
        Duration::from_secs(20),
    );
    assert!(out.success(), "{}", out.describe());
    out.stdout.trim().to_string()
}

#[test]
fn tls_protocols_limit_the_versions() {
    if require_tool("python3", "apt-get install -y python3").is_none() {
        return;
    }
    let pki = Pki::new();
    let tls_port = free_port();
    let server = start(&pki, tls_port, &[]);
    assert_eq!(negotiated_version(&pki, tls_port), "TLSv1.3");
    let mut c = server.client();
    let r: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-protocols")
        .arg("TLSv1.2")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, "OK");
    assert_eq!(negotiated_version(&pki, tls_port), "TLSv1.2");
    let got: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-protocols")
        .query(&mut c)
        .unwrap();
    assert_eq!(got[1], "TLSv1.2");
    // Old versions are skipped, not an error, so a redis.conf listing them works.
    let r: String = redis::cmd("CONFIG")
        .arg("SET")
        .arg("tls-protocols")
        .arg("TLSv1 TLSv1.1 TLSv1.2 TLSv1.3")
        .query(&mut c)
        .unwrap();
    assert_eq!(r, "OK");
    assert_eq!(negotiated_version(&pki, tls_port), "TLSv1.3");
}

/// A real redis-server listening with TLS too.
struct RedisTls {
    port: u16,
    child: Child,
    _cwd: tempfile::TempDir,
}

impl Drop for RedisTls {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn redis_with_tls(bin: &Path, pki: &Pki) -> RedisTls {
    let port = free_port();
    let cwd = tempfile::tempdir().unwrap();
    let child = Command::new(bin)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(pki.server_flags(free_port()))
        .current_dir(cwd.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let r = RedisTls {
        port,
        child,
        _cwd: cwd,
    };
    let up = harness::eventually(Duration::from_secs(20), || {
        TcpStream::connect(("127.0.0.1", port))
            .is_ok_and(|c| Conn::wrap(c).ask("PING") == b"+PONG\r\n")
    });
    assert!(up, "redis-server with TLS did not start");
    r
}

#[test]
fn config_set_errors_match_redis_server_byte_for_byte() {
    let Some(bin) = require_tool("redis-server", "apt-get install -y redis-server") else {
        return;
    };
    let pki = Pki::new();
    let redis = redis_with_tls(&bin, &pki);
    let delayd = start(&pki, free_port(), &[]);
    let mut ours = Conn::open(delayd.port, 2);
    let mut theirs = Conn::open(redis.port, 2);
    for cmd in [
        "CONFIG SET tls-cert-file /nonexistent/cert.pem",
        "CONFIG SET tls-key-file /nonexistent/key.pem",
        "CONFIG SET tls-ca-cert-file /nonexistent/ca.pem",
        "CONFIG SET tls-protocols TLSv9",
        "CONFIG SET tls-auth-clients maybe",
        "CONFIG SET tls-replication maybe",
        "CONFIG SET protected-mode maybe",
        "CONFIG GET tls-auth-clients",
        "CONFIG GET protected-mode",
        "CONFIG GET tls-replication",
        "CONFIG SET tls-auth-clients optional",
        "CONFIG GET tls-auth-clients",
    ] {
        let (a, b) = (ours.ask(cmd), theirs.ask(cmd));
        assert_eq!(show(&a), show(&b), "{cmd}");
    }
}
