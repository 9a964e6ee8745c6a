//! Hash slots and `CLUSTER` reply shapes against a real redis-server 7.0 in
//! cluster mode: `CLUSTER KEYSLOT` for random keys, and the replies of a
//! one-node cluster owning every slot next to the replies our builders make
//! from the same node's name, address and ports.
//!
//! The cluster sources are `pub(crate)` in the library (nothing outside the
//! server needs them), so this test compiles the same files into itself;
//! they name the library's reply type as `crate::protocol`, which
//! compat-tests/main.rs provides.

#[path = "../src/cluster/slots.rs"]
mod slots;
#[path = "../src/cluster/topology.rs"]
mod topology;

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;
use delayd::protocol::{Protocol, Reply};

use crate::harness::{Conn, cluster_redis, eventually, read_reply, resp, show};
use topology::{GroupView, NodeView, Topology};

/// xorshift64*: random keys, the same on every run (a failure names its key).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    fn bytes(&mut self, max_len: u64, alphabet: &[u8]) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64)])
            .collect()
    }
}

/// 1,000 keys: the known cases, then plain text, hash tags, empty tags,
/// misplaced and nested braces, and binary bytes (NUL, CR, LF, 0xFF and
/// braces among them).
fn random_keys() -> Vec<Vec<u8>> {
    let text: Vec<u8> = (b' '..=b'~').collect();
    let binary: Vec<u8> = (0..=255).collect();
    let braces = b"{}{}ab";
    let mut keys: Vec<Vec<u8>> = [
        &b"123456789"[..],
        b"{user1000}.following",
        b"{user1000}.followers",
        b"foo{}{bar}",
        b"foo{{bar}}zap",
        b"{bar",
        b"{}",
        b"",
        b"}{",
        b"{}}",
    ]
    .iter()
    .map(|k| k.to_vec())
    .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    while keys.len() < 1000 {
        let key = match keys.len() % 6 {
            0 => rng.bytes(24, &text),
            1 => [
                rng.bytes(8, &text),
                b"{".to_vec(),
                rng.bytes(8, &text),
                b"}".to_vec(),
                rng.bytes(8, &text),
            ]
            .concat(),
            2 => [rng.bytes(8, &text), b"{}".to_vec(), rng.bytes(8, &text)].concat(),
            3 => rng.bytes(16, braces),
            4 => rng.bytes(32, &binary),
            _ => [
                rng.bytes(6, &binary),
                b"{".to_vec(),
                rng.bytes(6, &binary),
                b"}".to_vec(),
                rng.bytes(6, &binary),
            ]
            .concat(),
        };
        keys.push(key);
    }
    keys
}

#[test]
fn keyslot_matches_redis_for_1000_keys() {
    let Some((redis, _bus)) = cluster_redis() else {
        return;
    };
    let keys = random_keys();
    assert_eq!(keys.len(), 1000);
    // Some keys of each kind really carry a tag, an empty tag, binary bytes.
    assert!(keys.iter().any(|k| k.starts_with(b"{user1000}")));
    assert!(
        keys.iter()
            .filter(|k| k.windows(2).any(|w| w == b"{}"))
            .count()
            > 100
    );
    assert!(keys.iter().any(|k| k.contains(&0) && k.contains(&b'\n')));

    let mut conn = TcpStream::connect(("127.0.0.1", redis.port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // All requests in one pipeline; the replies are a few bytes each.
    let mut requests = Vec::new();
    for key in &keys {
        requests.extend(resp(&[b"CLUSTER", b"KEYSLOT", key]));
    }
    conn.write_all(&requests).expect("send");
    let mut replies = BufReader::new(conn);
    let mut distinct = std::collections::HashSet::new();
    for key in &keys {
        let ours = slots::key_hash_slot(key);
        distinct.insert(ours);
        assert_eq!(
            show(&read_reply(&mut replies)),
            format!(":{ours}\r\n"),
            "CLUSTER KEYSLOT {key:?}"
        );
    }
    // The keys spread over the slots (the comparison is not of one value).
    assert!(distinct.len() > 500, "{} distinct slots", distinct.len());
}

fn encode(r: &Reply, proto: Protocol) -> Vec<u8> {
    let mut out = BytesMut::new();
    r.encode(proto, &mut out);
    out.to_vec()
}

/// The text of a bulk string (`$`) or verbatim string (`=` with its `txt:`
/// prefix) reply.
fn text_of(reply: &[u8]) -> String {
    let s = show(reply);
    let (header, body) = s.split_once("\r\n").expect("a header line");
    let body = body.strip_suffix("\r\n").expect("a final CRLF");
    let len: usize = header[1..].parse().expect("a length");
    assert_eq!(body.len(), len, "{s:?}");
    match &header[..1] {
        "$" => body.to_string(),
        "=" => body.strip_prefix("txt:").expect("txt: format").to_string(),
        _ => panic!("not a string reply: {s:?}"),
    }
}

#[test]
fn reply_shapes_match_a_one_node_redis_cluster() {
    let Some((redis, bus)) = cluster_redis() else {
        return;
    };
    let mut c = Conn::open(redis.port, 2);
    assert_eq!(show(&c.ask("CLUSTER ADDSLOTSRANGE 0 16383")), "+OK\r\n");
    // A lone master says `ok` after its rejoin delay (2 s in 7.0), and
    // shows the announced address once its cron has applied it.
    assert!(
        eventually(Duration::from_secs(15), || {
            show(&c.ask("CLUSTER INFO")).contains("cluster_state:ok")
                && show(&c.ask("CLUSTER SLOTS")).contains("127.0.0.1")
        }),
        "redis-server did not reach cluster_state:ok: {}",
        show(&c.ask("CLUSTER INFO"))
    );
    let name = text_of(&c.ask("CLUSTER MYID"));
    assert_eq!(name.len(), 40, "{name}");

    // The same node as our view: one group over every slot, led by it.
    let t = Topology {
        myself: 7,
        nodes: vec![NodeView {
            id: 7,
            name: name.clone(),
            host: "127.0.0.1".into(),
            port: redis.port,
            bus_port: bus,
            online: true,
        }],
        groups: vec![GroupView {
            first_slot: 0,
            last_slot: slots::SLOTS - 1,
            leader: Some(7),
            last_leader: Some(7),
            voters: vec![7],
            term: 0,
            applied_index: 0,
        }],
    };

    for (proto, p) in [(2, Protocol::Resp2), (3, Protocol::Resp3)] {
        let mut r = Conn::open(redis.port, proto);
        // Byte for byte.
        for (form, ours) in [
            ("CLUSTER SLOTS", topology::cluster_slots(&t)),
            ("CLUSTER SHARDS", topology::cluster_shards(&t)),
            ("CLUSTER MYID", topology::cluster_myid(&t)),
        ] {
            assert_eq!(
                show(&encode(&ours, p)),
                show(&r.ask(form)),
                "RESP{proto} {form}"
            );
        }

        // CLUSTER NODES: the same fields but the ping/pong times. Redis
        // sends NODES and INFO as verbatim strings (`=`, `txt:`) in RESP3;
        // `Reply` has no verbatim type, so ours is a bulk string there (as
        // delayd's INFO is) and the texts are compared.
        let redis_nodes = r.ask("CLUSTER NODES");
        let ours_nodes = encode(&topology::cluster_nodes(&t), p);
        if proto == 2 {
            assert_eq!(ours_nodes[0], redis_nodes[0], "{}", show(&redis_nodes));
        }
        let (redis_nodes, ours_nodes) = (text_of(&redis_nodes), text_of(&ours_nodes));
        assert!(redis_nodes.ends_with('\n') && !redis_nodes.ends_with("\r\n"));
        assert!(ours_nodes.ends_with('\n') && !ours_nodes.ends_with("\r\n"));
        let fields = |text: &str| -> Vec<Vec<String>> {
            text.lines()
                .map(|line| {
                    line.split(' ')
                        .enumerate()
                        .filter(|(i, _)| *i != 4 && *i != 5)
                        .map(|(_, f)| f.to_string())
                        .collect()
                })
                .collect()
        };
        assert_eq!(fields(&ours_nodes), fields(&redis_nodes), "RESP{proto}");
        assert_eq!(
            fields(&ours_nodes),
            vec![vec![
                name.clone(),
                format!("127.0.0.1:{}@{bus}", redis.port),
                "myself,master".to_string(),
                "-".to_string(),
                "0".to_string(),
                "connected".to_string(),
                "0-16383".to_string(),
            ]]
        );

        // CLUSTER INFO: a lone node has no timing values and sends no
        // messages, so the texts are equal whole (field order included).
        let redis_info = r.ask("CLUSTER INFO");
        let ours_info = encode(&topology::cluster_info(&t), p);
        if proto == 2 {
            assert_eq!(show(&ours_info), show(&redis_info));
        }
        assert_eq!(text_of(&ours_info), text_of(&redis_info), "RESP{proto}");
    }
}
