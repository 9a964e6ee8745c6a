//! INFO `commandstats`, `errorstats`, `latencystats` and `CONFIG RESETSTAT`
//! against a real redis-server: the same requests on both, then the
//! sections compared line by line, timings masked (their digits differ,
//! their format must not).

use crate::harness::{Conn, servers, show};

/// The section's lines, sorted (Redis lists commands in hash order), with
/// the digits of timing values masked.
fn lines(info: &[u8]) -> Vec<String> {
    let text = show(info);
    let mut out: Vec<String> = text
        .split("\r\n")
        .filter(|l| l.contains(':') && !l.starts_with('$'))
        .map(|l| {
            let (name, fields) = l.split_once(':').unwrap_or((l, ""));
            let fields: Vec<String> = fields
                .split(',')
                .map(|f| match f.split_once('=') {
                    Some((k, v))
                        if ["usec", "usec_per_call", "p50", "p99", "p99.9"].contains(&k) =>
                    {
                        let masked: String = v
                            .chars()
                            .map(|c| if c.is_ascii_digit() { 'N' } else { c })
                            .collect::<String>();
                        // One digit or many: the same shape.
                        let parts: Vec<&str> = masked.split('.').collect();
                        let int = if parts[0].is_empty() { "" } else { "N" };
                        let frac = parts.get(1).map(|f| format!(".{f}")).unwrap_or_default();
                        format!("{k}={int}{frac}")
                    }
                    _ => f.to_string(),
                })
                .collect();
            format!("{name}:{}", fields.join(","))
        })
        .collect();
    out.sort();
    out
}

fn headers(info: &[u8]) -> Vec<String> {
    show(info)
        .split("\r\n")
        .filter(|l| l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[test]
fn commandstats_errorstats_latencystats_match_redis() {
    let Some((dd, redis)) = servers() else {
        return;
    };
    let mut d = Conn::open(dd.port, 2);
    let mut r = Conn::open(redis.port, 2);
    let script = [
        "CONFIG RESETSTAT",
        "PING",
        "PING",
        "ECHO hi",
        "PING a b c",
        "NOSUCHCOMMAND x",
        "CONFIG GET maxclients",
        "CONFIG NOSUCHSUB",
        "MULTI",
        "PING",
        "EXEC",
    ];
    for cmd in script {
        let (a, b) = (d.ask(cmd), r.ask(cmd));
        assert_eq!(a[0], b[0], "{cmd}: {} / {}", show(&a), show(&b));
    }
    for section in ["commandstats", "errorstats", "latencystats"] {
        let q = format!("INFO {section}");
        assert_eq!(lines(&d.ask(&q)), lines(&r.ask(&q)), "{q}");
    }
    let stats = show(&d.ask("INFO stats"));
    assert!(stats.contains("total_error_replies:3\r\n"), "{stats}");
    // Default INFO leaves commandstats and latencystats out; all has them.
    let sections = |c: &mut Conn, q: &str| -> Vec<String> {
        headers(&c.ask(q))
            .into_iter()
            .filter(|h| h.ends_with("stats"))
            .collect()
    };
    for q in ["INFO", "INFO default", "INFO all", "INFO everything"] {
        assert_eq!(sections(&mut d, q), sections(&mut r, q), "{q}");
    }
    // RESETSTAT empties them (its own call is then counted).
    assert_eq!(d.ask("CONFIG RESETSTAT"), r.ask("CONFIG RESETSTAT"));
    for section in ["commandstats", "errorstats", "latencystats"] {
        let q = format!("INFO {section}");
        assert_eq!(lines(&d.ask(&q)), lines(&r.ask(&q)), "after RESETSTAT: {q}");
    }
}

#[test]
fn queue_commands_are_counted_in_pipelines_and_transactions() {
    let Some((dd, _redis)) = servers() else {
        return;
    };
    let mut d = Conn::open(dd.port, 2);
    d.ask("DELAYADD q 0 a");
    d.ask("DELAYADD q");
    d.ask("MULTI");
    d.ask("DELAYADD q 0 b");
    d.ask("DELAYPOP q NOTANOPTION");
    d.ask("EXEC");
    let text = show(&d.ask("INFO commandstats"));
    assert!(
        text.contains("cmdstat_delayadd:calls=2,")
            && text.contains(",rejected_calls=1,failed_calls=0\r\n"),
        "{text}"
    );
    assert!(text.contains("cmdstat_delaypop:calls=1,"), "{text}");
    assert!(
        text.contains(",rejected_calls=0,failed_calls=1\r\n"),
        "{text}"
    );
    assert!(text.contains("cmdstat_exec:calls=1,"), "{text}");
    let lat = show(&d.ask("INFO latencystats"));
    assert!(
        lat.contains("latency_percentiles_usec_delayadd:p50="),
        "{lat}"
    );
}
