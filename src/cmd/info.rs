//! `INFO`.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::{Args, ClientCommand, Command};
use crate::Result;
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;

/// Returns server information as `field:value` lines in sections, the text
/// `redis-cli --stat`, ioredis's ready check and exporters parse.
///
/// # Format
///
/// ```text
/// INFO [section [section ...]]
/// ```
///
/// Sections: `server`, `clients`, `memory`, `persistence`, `stats`,
/// `replication`, `commandstats`, `errorstats`, `latencystats`, `keyspace`,
/// `delay`; `all` or `everything` for every one; `default` or none for all
/// but `commandstats` and `latencystats`, as in Redis.
#[derive(Debug)]
pub struct Info {
    pub sections: Vec<String>,
}

/// In Redis's order; `delay` is delayd's own.
const SECTIONS: &[&str] = &[
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "commandstats",
    "errorstats",
    "latencystats",
    "cluster",
    "keyspace",
    "delay",
];

/// Sections left out of the default INFO, as in Redis 7.0: only `all`,
/// `everything` or their own name show them.
const NOT_DEFAULT: &[&str] = &["commandstats", "latencystats"];

/// Resident set size of this process, from /proc.
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn human(bytes: u64) -> String {
    let b = bytes as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2}G", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2}M", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2}K", b / 1024.0)
    } else {
        format!("{bytes}B")
    }
}

/// The table's parser.
///
/// # Errors
///
/// As [`Info::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(Info::parse(args)?))
}

impl Info {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// None: unknown sections are simply empty, as in Redis.
    pub fn parse(args: &mut Args) -> Result<Info> {
        Ok(Info {
            sections: args
                .rest()
                .iter()
                .map(|s| String::from_utf8_lossy(s).to_ascii_lowercase())
                .collect(),
        })
    }

    fn wants(&self, section: &str) -> bool {
        let default = !NOT_DEFAULT.contains(&section);
        (self.sections.is_empty() && default)
            || self.sections.iter().any(|s| {
                s == section || s == "all" || s == "everything" || (s == "default" && default)
            })
    }
}

impl ClientCommand for Info {
    fn apply(&self, shared: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(self.text(shared))
    }
}

impl Info {
    /// Builds the text.
    pub fn text(&self, shared: &Shared) -> Reply {
        let totals = shared.engine.totals().unwrap_or_default();
        let es = &shared.engine.stats;
        let mut out = String::new();
        for &section in SECTIONS {
            if !self.wants(section) {
                continue;
            }
            if !out.is_empty() {
                out.push_str("\r\n");
            }
            let _ = write!(out, "# {}\r\n", capitalize(section));
            let mut kv = |k: &str, v: &dyn std::fmt::Display| {
                let _ = write!(out, "{k}:{v}\r\n");
            };
            match section {
                "server" => {
                    let up = shared.started.elapsed().as_secs();
                    kv("redis_version", &super::hello::REDIS_VERSION);
                    kv("delayd_version", &env!("CARGO_PKG_VERSION"));
                    kv("redis_mode", &shared.mode_name());
                    kv("os", &std::env::consts::OS);
                    kv("arch_bits", &64);
                    kv("process_id", &std::process::id());
                    // As Redis: the TLS port when there is no plain one.
                    let tls_port = shared.tls.port.load(Ordering::Relaxed);
                    let port = match shared.port.load(Ordering::Relaxed) {
                        0 => tls_port,
                        p => p,
                    };
                    kv("tcp_port", &port);
                    // delayd's own: Redis 7.0 shows no TLS state; 0 = no TLS.
                    kv("tls_port", &tls_port);
                    kv("uptime_in_seconds", &up);
                    kv("uptime_in_days", &(up / 86400));
                    kv(
                        "executable",
                        &std::env::current_exe()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                    );
                    kv(
                        "config_file",
                        &shared
                            .config
                            .config_file
                            .as_ref()
                            .map(|p| p.display().to_string())
                            .unwrap_or_default(),
                    );
                }
                "clients" => {
                    kv(
                        "connected_clients",
                        &shared.connected.load(Ordering::Relaxed),
                    );
                    kv("blocked_clients", &totals.blocked);
                    kv("maxclients", &shared.runtime().maxclients);
                }
                "memory" => {
                    let rss = rss_bytes();
                    kv("used_memory", &rss);
                    kv("used_memory_human", &human(rss));
                    kv("used_memory_rss", &rss);
                    kv("used_memory_rss_human", &human(rss));
                    kv("maxmemory", &0);
                    kv("mem_allocator", &"mimalloc");
                }
                "persistence" => {
                    let failure = es.failure();
                    kv("loading", &0);
                    kv("aof_enabled", &1);
                    kv("appendfsync", &shared.engine.fsync().name());
                    kv(
                        "aof_last_write_status",
                        &if failure.is_some() { "err" } else { "ok" },
                    );
                    kv("aof_last_bgrewrite_status", &"ok");
                    kv("rdb_changes_since_last_save", &0);
                    kv(
                        "last_fsync_unix",
                        &es.last_fsync_unix.load(Ordering::Relaxed),
                    );
                    kv(
                        "last_fsync_status",
                        &if es.last_fsync_ok.load(Ordering::Relaxed) {
                            "ok"
                        } else {
                            "err"
                        },
                    );
                    kv("fsyncs", &es.fsyncs.load(Ordering::Relaxed));
                    kv("commits", &es.commits.load(Ordering::Relaxed));
                    kv(
                        "recovery_duration_ms",
                        &es.recovery_ms.load(Ordering::Relaxed),
                    );
                    kv(
                        "recovered_members",
                        &es.recovered_members.load(Ordering::Relaxed),
                    );
                    kv("store_disk_bytes", &totals.disk_bytes);
                    kv("storage_error", &failure.unwrap_or_default());
                }
                "stats" => {
                    let s = &shared.stats;
                    kv(
                        "total_connections_received",
                        &s.connections_received.load(Ordering::Relaxed),
                    );
                    kv(
                        "total_commands_processed",
                        &s.commands_processed.load(Ordering::Relaxed),
                    );
                    kv("instantaneous_ops_per_sec", &shared.ops_per_sec());
                    kv(
                        "rejected_connections",
                        &s.rejected_connections.load(Ordering::Relaxed),
                    );
                    kv(
                        "client_output_buffer_limit_disconnections",
                        &s.obuf_limit_disconnections.load(Ordering::Relaxed),
                    );
                    // delayd's own: plain clients on the TLS port, bad
                    // or missing client certificates, handshake timeouts.
                    kv(
                        "tls_handshake_failures",
                        &shared.tls.handshake_failures.load(Ordering::Relaxed),
                    );
                    kv("expired_keys", &0);
                    kv("total_error_replies", &shared.cmdstats.error_replies());
                    kv("evicted_keys", &0);
                    for (k, v) in super::acl::info_stats(shared) {
                        kv(k, &v);
                    }
                }
                "replication" => {
                    // A single node is a master with no replicas, in the
                    // fields exporters and sentinel-style checks read.
                    kv("role", &"master");
                    kv("connected_slaves", &0);
                    kv("master_failover_state", &"no-failover");
                    kv("master_replid", &super::role::REPLICATION_ID);
                    kv("master_replid2", &"0".repeat(40));
                    kv("master_repl_offset", &0);
                    kv("second_repl_offset", &-1);
                    kv("repl_backlog_active", &0);
                    kv("repl_backlog_size", &1_048_576);
                    kv("repl_backlog_first_byte_offset", &0);
                    kv("repl_backlog_histlen", &0);
                }
                "commandstats" => out.push_str(&shared.cmdstats.commandstats()),
                "errorstats" => out.push_str(&shared.cmdstats.errorstats()),
                "latencystats" => out.push_str(&shared.cmdstats.latencystats()),
                "cluster" => match &shared.cluster {
                    None => kv("cluster_enabled", &0),
                    Some(c) => {
                        kv("cluster_enabled", &1);
                        for (g, status) in c.group_status().iter().enumerate() {
                            kv(&format!("raft_group{g}"), status);
                        }
                        kv("cluster_membership_change", &c.membership_change());
                    }
                },
                "keyspace" if totals.queues > 0 => {
                    kv(
                        "db0",
                        &format!("keys={},expires=0,avg_ttl=0", totals.queues),
                    );
                }
                "delay" => {
                    kv("delay_queues", &totals.queues);
                    kv("delay_pending", &totals.members);
                    kv("delay_ready", &totals.ready);
                    kv("delay_leased", &totals.leased);
                    kv("delay_in_memory", &totals.hot);
                    kv("delay_wheel_entries", &totals.wheel);
                    kv("delay_horizon_ms", &totals.horizon_ms);
                    kv("delay_horizon_max_ms", &shared.config.horizon_ms);
                    kv("delay_hot_max_members", &totals.hot_max);
                    kv("delay_hot_until_ms", &totals.hot_until);
                    kv("delay_expired_leases", &totals.expired_leases);
                    kv("delay_dead_lettered", &totals.dead_lettered);
                    kv("delay_added", &totals.added);
                    kv("delay_popped", &totals.popped);
                    kv("delay_acked", &totals.acked);
                    let l = &totals.lateness;
                    kv("delay_fired", &l.count);
                    kv("delay_lateness_p50_us", &l.quantile_us(0.5));
                    kv("delay_lateness_p99_us", &l.quantile_us(0.99));
                    kv("delay_lateness_max_us", &l.max_us);
                }
                _ => {}
            }
        }
        Reply::bulk(out)
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}
