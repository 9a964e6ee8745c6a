//! ACL users against a real redis-server 7.0: the same requests on both,
//! replies compared byte for byte where they are deterministic (rules that
//! describe one single command, so Redis's hash order of commands does not
//! matter), and ACL LOG entries compared with their age and client info
//! left out.

use crate::harness::{Conn, servers, show};

/// Requests run on an admin connection, then as the user `alice`.
const ADMIN: &[&str] = &[
    "ACL SETUSER alice on >pw ~orders:* -@all +del",
    "ACL GETUSER alice",
    "ACL LIST",
    "ACL USERS",
    "ACL WHOAMI",
    "ACL GETUSER nobody",
    "ACL GETUSER default",
    "ACL SETUSER bob +nosuch",
    "ACL SETUSER bob +@nosuch",
    "ACL SETUSER bob #abc",
    "ACL SETUSER bob <nopass",
    "ACL SETUSER bob allkeys ~x",
    "ACL SETUSER bob +client|id|x",
    "ACL SETUSER bob +del|",
    "ACL SETUSER bob bogus",
    "ACL USERS",
    "ACL SETUSER carol reset",
    "ACL GETUSER carol",
    "ACL SETUSER carol on nopass %R~r:* %W~w:* ~b:* +@all -del",
    "ACL LIST",
    "ACL SETUSER carol resetpass >a >b <a",
    "ACL GETUSER carol",
    "ACL DELUSER default",
    "ACL DELUSER carol nobody",
    "ACL CAT nosuch",
    "ACL DRYRUN alice del orders:1",
    "ACL DRYRUN alice del other",
    "ACL DRYRUN alice ping",
    "ACL DRYRUN alice config get x",
    "ACL DRYRUN nobody ping",
    "ACL DRYRUN alice nosuch",
    "ACL DRYRUN alice del",
    "ACL GENPASS 0",
    "ACL GENPASS x",
    "ACL LOG x",
    "ACL LOG 1 2",
    "ACL SETUSER",
    "ACL NOSUCH",
    "ACL SAVE",
    "ACL LOAD",
    "ACL LOG RESET",
    "AUTH onlypass",
    "AUTH alice wrong",
    "AUTH nobody pw",
];

const ALICE: &[&str] = &[
    "AUTH alice pw",
    "ACL WHOAMI",
    "PING",
    "DEL orders:1",
    "DEL other",
    "DEL orders:1 other",
    "CONFIG GET maxclients",
    "CLIENT ID",
    "EXISTS orders:1",
    "MULTI",
    "AUTH alice pw",
    "HELLO 2 AUTH alice wrong",
];

#[test]
fn acl_replies_match_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    for proto in [2, 3] {
        let mut d = Conn::open(dd.port, proto);
        let mut r = Conn::open(redis.port, proto);
        for cmd in ADMIN {
            // GETUSER's flags are a set in RESP3, an array here.
            if proto == 3 && cmd.starts_with("ACL GETUSER") {
                continue;
            }
            let (want, got) = (r.ask(cmd), d.ask(cmd));
            assert_eq!(show(&got), show(&want), "RESP{proto} {cmd}");
        }
        let mut d = Conn::open(dd.port, proto);
        let mut r = Conn::open(redis.port, proto);
        for cmd in ALICE {
            let (want, got) = (r.ask(cmd), d.ask(cmd));
            assert_eq!(show(&got), show(&want), "RESP{proto} as alice: {cmd}");
        }
    }
}

/// ACL LOG's entries with `age-seconds` and `client-info` left out.
fn log_fields(c: &mut Conn) -> Vec<String> {
    let text = show(&c.ask("ACL LOG"));
    let mut out = Vec::new();
    let mut lines = text.split("\r\n");
    while let Some(l) = lines.next() {
        out.push(l.to_string());
        if l == "age-seconds" || l == "client-info" {
            // The value's `$n` header and the value.
            lines.next();
            lines.next();
        }
    }
    out
}

#[test]
fn acl_log_matches_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    let script = [
        "ACL SETUSER alice on >pw ~orders:* -@all +del +multi",
        "AUTH alice wrong",
        "AUTH alice wrong",
        "AUTH alice pw",
        "PING",
        "DEL other",
        "MULTI",
        "DEL elsewhere",
        "DISCARD",
    ];
    let mut d = Conn::open(dd.port, 2);
    let mut r = Conn::open(redis.port, 2);
    for cmd in script {
        let (want, got) = (r.ask(cmd), d.ask(cmd));
        assert_eq!(show(&got), show(&want), "{cmd}");
    }
    let mut d = Conn::open(dd.port, 2);
    let mut r = Conn::open(redis.port, 2);
    let (want, got) = (log_fields(&mut r), log_fields(&mut d));
    assert!(want.len() > 20, "{want:?}");
    assert_eq!(got, want);
}
