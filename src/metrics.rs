//! Prometheus metrics, served at `GET /metrics` by the HTTP listener
//! ([`crate::http`], `--http-port`).
//!
//! The scrape answers the OpenMetrics text exposition (which Prometheus
//! scrapes natively) of the figures INFO shows, per-queue backlog gauges for
//! the `--metrics-top-queues` queues with the largest backlog, and the
//! firing-lateness histogram. The encoding is `prometheus-client`'s; the
//! figures are read at scrape time, so nothing is kept between scrapes.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use crate::engine::lateness::{BOUNDS_US, Lateness};
use crate::shared::Shared;
use crate::{Error, Result};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

/// The Content-Type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The exposition: every figure, read now.
///
/// # Errors
///
/// [`Error::ShuttingDown`] once the engine has stopped.
pub fn render(shared: &Shared) -> Result<String> {
    let snapshot = Snapshot::take(shared)?;
    let mut registry = Registry::with_prefix("delayd");
    registry.register_collector(Box::new(snapshot));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)
        .map_err(|_| Error::msg("encoding the metrics failed"))?;
    Ok(out)
}

/// A figure's value.
#[derive(Debug, Clone, Copy)]
enum Value {
    Int(u64),
    Float(f64),
}

/// One figure: a gauge or a counter.
#[derive(Debug)]
struct Figure {
    name: &'static str,
    help: &'static str,
    unit: Option<Unit>,
    counter: bool,
    value: Value,
}

/// One queue's backlog.
#[derive(Debug)]
struct QueueFigures {
    label: String,
    pending: u64,
    ready: u64,
}

/// Every figure of one scrape.
#[derive(Debug)]
struct Snapshot {
    figures: Vec<Figure>,
    /// The queues with the largest backlog.
    queues: Vec<QueueFigures>,
    lateness: Lateness,
    /// Cluster mode: each Raft group's state on this node.
    groups: Vec<crate::cluster::GroupStatus>,
}

fn gauge(name: &'static str, help: &'static str, value: u64) -> Figure {
    Figure {
        name,
        help,
        unit: None,
        counter: false,
        value: Value::Int(value),
    }
}

fn counter(name: &'static str, help: &'static str, value: u64) -> Figure {
    Figure {
        counter: true,
        ..gauge(name, help, value)
    }
}

fn with_unit(unit: Unit, value: Value, figure: Figure) -> Figure {
    Figure {
        unit: Some(unit),
        value,
        ..figure
    }
}

fn seconds_from_ms(ms: u64) -> Value {
    Value::Float(ms as f64 / 1000.0)
}

/// A queue name as a label value: UTF-8 as is, other bytes as `\xHH`.
fn queue_label(name: &[u8]) -> String {
    match std::str::from_utf8(name) {
        Ok(s) => s.to_string(),
        Err(_) => name
            .iter()
            .map(|&b| {
                if b.is_ascii() && !b.is_ascii_control() && b != b'\\' {
                    (b as char).to_string()
                } else {
                    format!("\\x{b:02x}")
                }
            })
            .collect(),
    }
}

impl Snapshot {
    fn take(shared: &Shared) -> Result<Snapshot> {
        let t = shared.engine.totals()?;
        let top = shared.engine.top_queues(shared.config.metrics_top_queues)?;
        let es = &shared.engine.stats;
        let st = &shared.stats;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let up = shared.started.elapsed().as_secs_f64();
        let figures = vec![
            with_unit(
                Unit::Seconds,
                Value::Float(up),
                gauge("uptime", "Seconds since the server started.", 0),
            ),
            gauge(
                "connected_clients",
                "Client connections open now.",
                shared.connected.load(Ordering::Relaxed) as u64,
            ),
            gauge(
                "blocked_clients",
                "Clients blocked in DELAYPOP BLOCK or BDELAYPOP.",
                t.blocked,
            ),
            gauge(
                "maxclients",
                "The connection limit in force (maxclients).",
                shared.runtime().maxclients as u64,
            ),
            counter(
                "connections_received",
                "Connections accepted since start.",
                load(&st.connections_received),
            ),
            counter(
                "rejected_connections",
                "Connections refused because maxclients was reached.",
                load(&st.rejected_connections),
            ),
            counter(
                "commands_processed",
                "Commands processed since start.",
                load(&st.commands_processed),
            ),
            with_unit(
                Unit::Bytes,
                Value::Int(crate::cmd::info::rss_bytes()),
                gauge("memory_rss", "Resident set size of the process.", 0),
            ),
            counter(
                "fsyncs",
                "Journal fsyncs done since start.",
                load(&es.fsyncs),
            ),
            counter(
                "commits",
                "Write batches committed since start.",
                load(&es.commits),
            ),
            gauge(
                "last_fsync_success",
                "1 if the last fsync succeeded, 0 if it failed.",
                u64::from(es.last_fsync_ok.load(Ordering::Relaxed)),
            ),
            with_unit(
                Unit::Seconds,
                Value::Int(load(&es.last_fsync_unix)),
                gauge(
                    "last_fsync_timestamp",
                    "Unix time of the last fsync (0: none yet).",
                    0,
                ),
            ),
            gauge(
                "storage_error",
                "1 after a storage error (writes are refused until restart), else 0.",
                u64::from(es.failure().is_some()),
            ),
            with_unit(
                Unit::Bytes,
                Value::Int(t.disk_bytes),
                gauge("store_disk", "Bytes the store takes on disk.", 0),
            ),
            with_unit(
                Unit::Seconds,
                seconds_from_ms(load(&es.recovery_ms)),
                gauge(
                    "recovery_duration",
                    "How long the start-up recovery took.",
                    0,
                ),
            ),
            gauge(
                "recovered_members",
                "Members found in the store at start-up.",
                load(&es.recovered_members),
            ),
            gauge("queues", "Queues that have members.", t.queues),
            gauge(
                "members_pending",
                "Members in all queues, leased ones included.",
                t.members,
            ),
            gauge(
                "members_ready",
                "Members due and waiting for a consumer.",
                t.ready,
            ),
            gauge(
                "members_leased",
                "Members popped with a lease and not yet acknowledged.",
                t.leased,
            ),
            gauge(
                "members_in_memory",
                "Members kept in memory (due within the horizon).",
                t.hot,
            ),
            gauge("wheel_entries", "Entries in the timing wheel.", t.wheel),
            with_unit(
                Unit::Seconds,
                seconds_from_ms(t.horizon_ms),
                gauge(
                    "horizon",
                    "Members due within this long are kept in memory (at most horizon-ms, less while hot-max-members holds it back).",
                    0,
                ),
            ),
            with_unit(
                Unit::Seconds,
                seconds_from_ms(t.hot_until),
                gauge(
                    "hot_until_timestamp",
                    "Unix time up to which members are paged into memory.",
                    0,
                ),
            ),
            counter(
                "expired_leases",
                "Leases that ran out without DELAYACK (the member was due again).",
                t.expired_leases,
            ),
            counter(
                "dead_lettered",
                "Members moved to a dead-letter queue after too many deliveries.",
                t.dead_lettered,
            ),
            counter(
                "members_added",
                "Members added by DELAYADD since start.",
                t.added,
            ),
            counter(
                "members_popped",
                "Members popped (removed or leased) since start.",
                t.popped,
            ),
            counter(
                "members_acked",
                "Leased members acknowledged by DELAYACK since start.",
                t.acked,
            ),
        ];
        let mut seen = HashSet::new();
        let queues = top
            .into_iter()
            .map(|(name, pending, ready)| QueueFigures {
                label: queue_label(&name),
                pending,
                ready,
            })
            // Two names may escape alike: one series per label.
            .filter(|q| seen.insert(q.label.clone()))
            .collect();
        Ok(Snapshot {
            figures,
            queues,
            lateness: t.lateness,
            groups: shared
                .cluster
                .as_ref()
                .map(|c| c.group_status())
                .unwrap_or_default(),
        })
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::result::Result<(), std::fmt::Error> {
        let info =
            prometheus_client::metrics::info::Info::new([("version", env!("CARGO_PKG_VERSION"))]);
        info.encode(encoder.encode_descriptor(
            "build",
            "The delayd version.",
            None,
            info.metric_type(),
        )?)?;
        for f in &self.figures {
            let kind = if f.counter {
                MetricType::Counter
            } else {
                MetricType::Gauge
            };
            let m = encoder.encode_descriptor(f.name, f.help, f.unit.as_ref(), kind)?;
            match (f.counter, f.value) {
                (true, Value::Int(v)) => ConstCounter::new(v).encode(m)?,
                (true, Value::Float(v)) => ConstCounter::new(v).encode(m)?,
                (false, Value::Int(v)) => ConstGauge::new(v).encode(m)?,
                (false, Value::Float(v)) => ConstGauge::new(v).encode(m)?,
            }
        }
        for (name, help, ready) in [
            (
                "queue_pending",
                "Members in the queue, leased included (the queues with the largest backlog only).",
                false,
            ),
            (
                "queue_ready",
                "Members of the queue due and waiting for a consumer (the queues with the largest backlog only).",
                true,
            ),
        ] {
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for q in &self.queues {
                let labels = [("queue", q.label.as_str())];
                let value = if ready { q.ready } else { q.pending };
                ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
            }
        }
        type GroupFigure = fn(&crate::cluster::GroupStatus) -> u64;
        let group_figures: [(&str, &str, GroupFigure); 6] = [
            ("raft_term", "The group's Raft term.", |g| g.term),
            (
                "raft_leading",
                "1 while this node leads the group and serves its slots.",
                |g| u64::from(g.serving),
            ),
            (
                "raft_leader",
                "The node id of the group's leader (0: none).",
                |g| g.leader,
            ),
            (
                "raft_last_log_index",
                "The last index of the group's log on this node.",
                |g| g.last_log_index,
            ),
            (
                "raft_commit_index",
                "The last log index this node knows committed by a majority.",
                |g| g.committed,
            ),
            (
                "raft_last_applied",
                "The last log index applied to this node's store.",
                |g| g.last_applied,
            ),
        ];
        if !self.groups.is_empty() {
            for (name, help, value) in group_figures {
                let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                for (i, g) in self.groups.iter().enumerate() {
                    let group = i.to_string();
                    let labels = [("group", group.as_str())];
                    ConstGauge::new(value(g)).encode(m.encode_family(&labels)?)?;
                }
            }
            let mut m = encoder.encode_descriptor(
                "raft_replication_lag",
                "On a group's leader: entries of its log a follower has not acknowledged yet.",
                None,
                MetricType::Gauge,
            )?;
            for (i, g) in self.groups.iter().enumerate() {
                let group = i.to_string();
                for (id, behind) in &g.lag {
                    let follower = id.to_string();
                    let labels = [("group", group.as_str()), ("follower", follower.as_str())];
                    ConstGauge::new(*behind).encode(m.encode_family(&labels)?)?;
                }
            }
        }
        let l = &self.lateness;
        let buckets: Vec<(f64, u64)> = BOUNDS_US
            .iter()
            .map(|&b| b as f64 / 1e6)
            .chain(std::iter::once(f64::INFINITY))
            .zip(l.buckets.iter().copied())
            .collect();
        let mut m = encoder.encode_descriptor(
            "firing_lateness",
            "How long after its due time a member was made ready by the timing wheel.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        m.encode_histogram::<NoLabelSet>(l.sum_us as f64 / 1e6, l.count, &buckets, None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_queue_names_are_escaped() {
        assert_eq!(queue_label(b"orders"), "orders");
        assert_eq!(queue_label(b"a\xffb"), "a\\xffb");
    }
}
