//! Generic commands answered byte for byte as a real redis-server answers
//! them (a master with no replicas), for exporters, sentinel-style checks
//! and client libraries that read them.

use crate::harness::{Conn, servers, show};

#[test]
fn role_and_info_replication_match_a_redis_master() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    for proto in [2, 3] {
        let mut d = Conn::open(dd.port, proto);
        let mut r = Conn::open(redis.port, proto);
        assert_eq!(
            show(&d.ask("ROLE")),
            show(&r.ask("ROLE")),
            "RESP{proto} ROLE"
        );
        assert_eq!(
            show(&d.ask("DELAYPOP q COUNT 0")),
            show(&r.ask("ZPOPMIN q 0")),
            "RESP{proto} COUNT 0"
        );
    }
    let mut d = Conn::open(dd.port, 2);
    let mut r = Conn::open(redis.port, 2);
    let fields = |info: Vec<u8>| -> Vec<String> {
        String::from_utf8_lossy(&info)
            .lines()
            .filter(|l| l.contains(':') && !l.starts_with('$'))
            .map(|l| l.split(':').next().unwrap_or_default().to_string())
            .collect()
    };
    let mine = d.ask("INFO replication");
    let theirs = r.ask("INFO replication");
    assert_eq!(
        fields(mine.clone()),
        fields(theirs),
        "INFO replication fields"
    );
    let text = String::from_utf8_lossy(&mine);
    assert!(text.contains("# Replication\r\nrole:master\r\n"), "{text}");
    assert!(text.contains("connected_slaves:0\r\n"), "{text}");
    // The section is part of the default INFO too, as in Redis.
    let all = String::from_utf8_lossy(&d.ask("INFO")).to_string();
    assert!(all.contains("# Replication\r\n"), "{all}");
}
