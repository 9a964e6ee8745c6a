//! Query by time: `DELAYRANGE ... BYSCORE [REV] [LIMIT]` and `DELAYCOUNT`
//! answer byte for byte as `ZRANGE ... BYSCORE` and `ZCOUNT` do on a real
//! redis-server holding the same members with their due times as scores.

use crate::harness::{Conn, servers, show};

/// Members and due times (Unix ms, far in the future so nothing fires).
const MEMBERS: &[(&str, u64)] = &[
    ("a", 4_000_000_000_000),
    ("b", 4_000_000_000_010),
    ("c", 4_000_000_000_010),
    ("d", 4_000_000_000_020),
    ("e", 4_000_000_000_030),
];

#[test]
fn byscore_ranges_and_counts_match_zrange_and_zcount() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    for proto in [2, 3] {
        let mut d = Conn::open(dd.port, proto);
        let mut r = Conn::open(redis.port, proto);
        for (m, due) in MEMBERS {
            assert_eq!(d.ask(&format!("DELAYADD q AT {due} {m}")), b":1\r\n");
            assert_eq!(r.ask(&format!("ZADD q {due} {m}")), b":1\r\n");
        }
        let ranges = [
            "-inf +inf BYSCORE",
            "4000000000010 4000000000020 BYSCORE",
            "(4000000000010 +inf BYSCORE",
            "-inf (4000000000020 BYSCORE",
            "+inf -inf BYSCORE REV",
            "4000000000020 (4000000000000 BYSCORE REV",
            "-inf +inf BYSCORE LIMIT 1 2",
            "-inf +inf BYSCORE LIMIT 2 -1",
            "-inf +inf BYSCORE LIMIT -1 2",
            "+inf -inf BYSCORE REV LIMIT 1 3",
            "5 4 BYSCORE",
            "0 -1 REV",
            "1 3 REV",
            "0 -1 LIMIT 0 1",
            "x 1 BYSCORE",
            "-inf +inf BYSCORE BOGUS",
        ];
        for args in ranges {
            let mine = d.ask(&format!("DELAYRANGE q {args}"));
            let theirs = r.ask(&format!("ZRANGE q {args}"));
            assert_eq!(
                show(&mine),
                show(&theirs),
                "RESP{proto} DELAYRANGE q {args}"
            );
        }
        let counts = [
            "-inf +inf",
            "4000000000010 4000000000010",
            "(4000000000010 4000000000030",
            "(4000000000010 (4000000000030",
            "4000000000030 4000000000000",
            "a 1",
        ];
        for args in counts {
            let mine = d.ask(&format!("DELAYCOUNT q {args}"));
            let theirs = r.ask(&format!("ZCOUNT q {args}"));
            assert_eq!(
                show(&mine),
                show(&theirs),
                "RESP{proto} DELAYCOUNT q {args}"
            );
        }
        assert_eq!(d.ask("DEL q"), b":1\r\n");
        assert_eq!(r.ask("DEL q"), b":1\r\n");
    }
}
