//! Cluster commands on a standalone node, byte for byte against a real
//! redis-server 7.0 started without cluster mode: cluster-aware clients
//! probe with `CLUSTER SLOTS`/`CLUSTER INFO` and must learn, as from Redis,
//! that this is a single node. `CLUSTER KEYSLOT` is refused too (Redis 7.0
//! computes no slot outside cluster mode), and unknown subcommands and
//! wrong argument counts are found before authentication and abort a
//! transaction, as in Redis.

use crate::harness::{Conn, servers, show};

/// Every form a cluster client or an operator sends, with the argument
/// errors around them (words split on spaces).
const FORMS: &[&str] = &[
    "CLUSTER INFO",
    "CLUSTER SLOTS",
    "CLUSTER NODES",
    "CLUSTER SHARDS",
    "CLUSTER MYID",
    "CLUSTER LINKS",
    "CLUSTER HELP",
    "CLUSTER KEYSLOT 123456789",
    "CLUSTER KEYSLOT {user1000}.following",
    "CLUSTER COUNTKEYSINSLOT 12739",
    "CLUSTER GETKEYSINSLOT 12739 10",
    "CLUSTER REPLICAS 0123456789012345678901234567890123456789",
    "CLUSTER SETSLOT 1 STABLE",
    "CLUSTER MEET 127.0.0.1 7000",
    "CLUSTER RESET HARD",
    "CLUSTER FAILOVER",
    "cluster Info",
    "CLUSTER",
    "CLUSTER INFO extra",
    "CLUSTER KEYSLOT",
    "CLUSTER KEYSLOT a b",
    "CLUSTER MEET 127.0.0.1",
    "CLUSTER FOO",
    "CLUSTER foo bar",
    "CLUSTER MYSHARDID",
    "ASKING",
    "READONLY",
    "READWRITE",
    "asking",
    "ASKING x",
    "READONLY x",
    "READWRITE x",
];

#[test]
fn cluster_commands_answer_as_a_non_cluster_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    let long = format!("CLUSTER {} a", "x".repeat(200));
    for proto in [2, 3] {
        let mut d = Conn::open(dd.port, proto);
        let mut r = Conn::open(redis.port, proto);
        for form in FORMS.iter().copied().chain([long.as_str()]) {
            assert_eq!(show(&d.ask(form)), show(&r.ask(form)), "RESP{proto} {form}");
        }
        // The connection is still usable after every refusal.
        assert_eq!(show(&d.ask("PING")), "+PONG\r\n");
    }
    // The refusal itself, spelled out (so the comparison cannot pass on
    // two servers that both answer something else).
    let mut d = Conn::open(dd.port, 2);
    for form in ["CLUSTER SLOTS", "CLUSTER KEYSLOT 123456789", "READONLY"] {
        assert_eq!(
            show(&d.ask(form)),
            "-ERR This instance has cluster support disabled\r\n",
            "{form}"
        );
    }
}

#[test]
fn cluster_commands_in_a_transaction_match_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    // Known forms are queued and refused in EXEC's reply; an unknown
    // subcommand or a wrong argument count is refused at once and aborts
    // the transaction.
    let scripts: &[&[&str]] = &[
        &[
            "MULTI",
            "CLUSTER INFO",
            "ASKING",
            "READONLY",
            "READWRITE",
            "CLUSTER KEYSLOT k",
            "EXEC",
        ],
        &["MULTI", "CLUSTER FOO", "PING", "EXEC"],
        &["MULTI", "CLUSTER KEYSLOT", "PING", "EXEC"],
        &["MULTI", "READONLY x", "EXEC"],
    ];
    for proto in [2, 3] {
        let mut d = Conn::open(dd.port, proto);
        let mut r = Conn::open(redis.port, proto);
        for script in scripts {
            for form in *script {
                assert_eq!(
                    show(&d.ask(form)),
                    show(&r.ask(form)),
                    "RESP{proto} {form} in {script:?}"
                );
            }
        }
    }
}

#[test]
fn cluster_argument_errors_come_before_authentication_as_in_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    for port in [dd.port, redis.port] {
        let mut c = Conn::open(port, 2);
        assert_eq!(show(&c.ask("CONFIG SET requirepass secret")), "+OK\r\n");
    }
    let mut d = Conn::open(dd.port, 2);
    let mut r = Conn::open(redis.port, 2);
    for form in [
        "CLUSTER FOO",
        "CLUSTER KEYSLOT",
        "CLUSTER INFO",
        "ASKING x",
        "ASKING",
        "READONLY",
        "AUTH secret",
        "CLUSTER INFO",
        "READWRITE",
    ] {
        assert_eq!(show(&d.ask(form)), show(&r.ask(form)), "{form}");
    }
}
