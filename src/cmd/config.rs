//! `CONFIG`.

use bytes::Bytes;

use super::{Args, ClientCommand, Command, is};
use crate::client::ClientState;
use crate::config::Fsync;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::tls::{AuthClients, TlsSettings};
use crate::{Error, Result};

/// Reads and changes configuration.
///
/// # Format
///
/// ```text
/// CONFIG GET parameter [parameter ...]
/// CONFIG SET parameter value [parameter value ...]
/// CONFIG RESETSTAT
/// ```
///
/// `GET` takes glob patterns and replies with a map (a flat array in RESP2)
/// of the effective values. `SET` changes `maxclients` (no higher than the
/// open-files limit allows), `appendfsync`, `requirepass`, `loglevel`,
/// `client-output-buffer-limit`, `hot-max-members`, `trace-queues`,
/// `trace-max-events`, `slowlog-log-slower-than`, `slowlog-max-len`,
/// `latency-monitor-threshold`, `protected-mode` and the TLS files and
/// settings (`tls-cert-file`,
/// `tls-key-file`, `tls-ca-cert-file`, ...: setting one reloads the
/// certificates for new connections) at run time; the rest, `tls-port`
/// among them, are fixed at start.
#[derive(Debug)]
pub enum ConfigCmd {
    Get(Vec<Bytes>),
    Set(Vec<(String, String)>),
    ResetStat,
}

/// Parameters that exist only for Redis tools' sake, with fixed values.
const FIXED: &[(&str, &str)] = &[
    ("save", ""),
    ("appendonly", "yes"),
    ("databases", "1"),
    ("timeout", "0"),
    ("maxmemory", "0"),
    ("cluster-enabled", "no"),
];

/// The effective value of every parameter, in CONFIG GET order.
fn all_params(shared: &Shared) -> Vec<(&'static str, String)> {
    let c = &shared.config;
    let rt = shared.runtime();
    let (trace_queues, trace_max_events) = shared.engine.trace_settings();
    let mut v: Vec<(&'static str, String)> = vec![
        (
            "port",
            shared
                .port
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        ),
        ("bind", c.bind.clone()),
        ("dir", c.dir.display().to_string()),
        ("appendfsync", shared.engine.fsync().name().to_string()),
        ("requirepass", rt.requirepass.unwrap_or_default()),
        (
            "aclfile",
            c.aclfile
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("maxclients", rt.maxclients.to_string()),
        ("horizon-ms", c.horizon_ms.to_string()),
        ("hot-max-members", shared.engine.hot_max().to_string()),
        ("proto-max-bulk-len", c.proto_max_bulk_len.to_string()),
        (
            "client-query-buffer-limit",
            c.client_query_buffer_limit.to_string(),
        ),
        ("client-output-buffer-limit", rt.obuf_limits.render()),
        ("io-threads", c.io_threads.to_string()),
        (
            "loglevel",
            crate::config::current_log_level().unwrap_or_else(|| c.loglevel.clone()),
        ),
        (
            "http-port",
            c.http_port.map(|p| p.to_string()).unwrap_or_default(),
        ),
        // The old name of http-port.
        (
            "metrics-port",
            c.http_port.map(|p| p.to_string()).unwrap_or_default(),
        ),
        ("metrics-top-queues", c.metrics_top_queues.to_string()),
        (
            "trace-queues",
            String::from_utf8_lossy(&trace_queues).into_owned(),
        ),
        ("trace-max-events", trace_max_events.to_string()),
        (
            "slowlog-log-slower-than",
            shared.slowlog.slower_than().to_string(),
        ),
        ("slowlog-max-len", shared.slowlog.max_len().to_string()),
        (
            "latency-monitor-threshold",
            shared.latency.threshold().to_string(),
        ),
        ("protected-mode", yes_no(rt.protected_mode)),
        (
            "tls-port",
            shared
                .tls
                .port
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        ),
    ];
    let tls = shared.tls.settings();
    let path = |p: Option<String>| p.unwrap_or_default();
    v.extend([
        ("tls-cert-file", path(tls.cert_file)),
        ("tls-key-file", path(tls.key_file)),
        ("tls-ca-cert-file", path(tls.ca_cert_file)),
        ("tls-ca-cert-dir", path(tls.ca_cert_dir)),
        ("tls-auth-clients", tls.auth_clients.name().to_string()),
        ("tls-protocols", path(tls.protocols)),
        ("tls-replication", yes_no(tls.replication)),
        ("tls-cluster", yes_no(tls.cluster)),
    ]);
    v.extend(FIXED.iter().map(|(k, val)| (*k, (*val).to_string())));
    v
}

fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// The table's parser.
///
/// # Errors
///
/// As [`ConfigCmd::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(ConfigCmd::parse(args)?))
}

impl ConfigCmd {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// Unknown subcommands and wrong arity, with Redis's texts.
    pub fn parse(args: &mut Args) -> Result<ConfigCmd> {
        let sub = args.next_bytes()?;
        if is(&sub, "GET") {
            if args.remaining() == 0 {
                return Err(Error::WrongArity("config|get".into()));
            }
            Ok(ConfigCmd::Get(args.rest()))
        } else if is(&sub, "SET") {
            let rest = args.rest();
            if rest.is_empty() || !rest.len().is_multiple_of(2) {
                return Err(Error::WrongArity("config|set".into()));
            }
            Ok(ConfigCmd::Set(
                rest.chunks_exact(2)
                    .map(|p| {
                        (
                            String::from_utf8_lossy(&p[0]).to_ascii_lowercase(),
                            String::from_utf8_lossy(&p[1]).into_owned(),
                        )
                    })
                    .collect(),
            ))
        } else if is(&sub, "RESETSTAT") {
            Ok(ConfigCmd::ResetStat)
        } else {
            Err(Error::UnknownSubcommand {
                command: "CONFIG".into(),
                sub: String::from_utf8_lossy(&sub).into_owned(),
            })
        }
    }
}

impl ClientCommand for ConfigCmd {
    fn apply(&self, shared: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(self.run(shared))
    }
}

impl ConfigCmd {
    /// Applies the subcommand.
    pub fn run(&self, shared: &Shared) -> Reply {
        match self {
            ConfigCmd::Get(patterns) => {
                let pairs = all_params(shared)
                    .into_iter()
                    .filter(|(k, _)| {
                        patterns
                            .iter()
                            .any(|p| crate::glob::matches(p, k.as_bytes(), true))
                    })
                    .map(|(k, v)| (Reply::bulk_static(k), Reply::bulk(v)))
                    .collect();
                Reply::Map(pairs)
            }
            ConfigCmd::Set(pairs) => match set(shared, pairs) {
                Ok(()) => Reply::OK,
                Err(e) => Reply::from(e),
            },
            ConfigCmd::ResetStat => {
                shared.cmdstats.reset();
                Reply::OK
            }
        }
    }
}

/// Redis's text for a CONFIG SET value it refuses.
fn failed(name: &str, why: &str) -> Error {
    Error::msg(format!(
        "CONFIG SET failed (possibly related to argument '{name}') - {why}"
    ))
}

/// A CONFIG SET value that must be a positive integer, with Redis's texts.
fn positive(name: &str, value: &str) -> Result<u64> {
    at_least(name, value, 1).map(i64::unsigned_abs)
}

/// A CONFIG SET value that must be an integer in `min..=i64::MAX`, with
/// Redis's texts.
fn at_least(name: &str, value: &str, min: i64) -> Result<i64> {
    let n = super::parse_int(value.as_bytes())
        .map_err(|_| failed(name, "argument couldn't be parsed into an integer"))?;
    if n < min {
        return Err(failed(
            name,
            &format!("argument must be between {min} and 9223372036854775807 inclusive"),
        ));
    }
    Ok(n)
}

fn set(shared: &Shared, pairs: &[(String, String)]) -> Result<()> {
    // Validate everything first so a bad pair changes nothing.
    let mut fsync = None;
    let mut maxclients = None;
    let mut requirepass = None;
    let mut loglevel = None;
    let mut obuf = Vec::new();
    let mut trace_queues = None;
    let mut trace_max_events = None;
    let mut hot_max = None;
    let mut slower_than = None;
    let mut slowlog_max_len = None;
    let mut latency_threshold = None;
    let mut protected_mode = None;
    // Any TLS parameter rebuilds the acceptor, even with an unchanged path
    // (Redis's VOLATILE_CONFIG): that is how a certificate rewritten in
    // place is reloaded. The first TLS parameter named takes the blame.
    let mut tls: Option<(&str, TlsSettings)> = None;
    for (name, value) in pairs {
        let bool_value = || {
            crate::config::parse_yes_no(value)
                .map_err(|_| failed(name, "argument must be 'yes' or 'no'"))
        };
        if name.starts_with("tls-") && name != "tls-port" {
            let (_, t) = tls.get_or_insert_with(|| (name.as_str(), shared.tls.settings()));
            let path = (!value.is_empty()).then(|| value.clone());
            match name.as_str() {
                "tls-cert-file" => t.cert_file = path,
                "tls-key-file" => t.key_file = path,
                "tls-ca-cert-file" => t.ca_cert_file = path,
                "tls-ca-cert-dir" => t.ca_cert_dir = path,
                "tls-protocols" => t.protocols = path,
                "tls-auth-clients" => {
                    t.auth_clients = AuthClients::parse(value).ok_or_else(|| {
                        failed(
                            name,
                            "argument(s) must be one of the following: no, yes, optional",
                        )
                    })?;
                }
                "tls-replication" => t.replication = bool_value()?,
                "tls-cluster" => t.cluster = bool_value()?,
                other => {
                    return Err(Error::msg(format!(
                        "Unknown option or number of arguments for CONFIG SET - '{other}'"
                    )));
                }
            }
            continue;
        }
        match name.as_str() {
            "protected-mode" => protected_mode = Some(bool_value()?),
            "client-output-buffer-limit" => {
                obuf.push(crate::config::parse_obuf_spec(value).map_err(|why| failed(name, &why))?);
            }
            "appendfsync" => {
                fsync = Some(Fsync::parse(value).ok_or_else(|| {
                    failed(
                        name,
                        "argument(s) must be one of the following: always, everysec, no",
                    )
                })?);
            }
            "maxclients" => {
                let n = super::parse_int(value.as_bytes())
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| failed(name, "argument must be a positive integer"))?;
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                // More clients need more descriptors: raise the open-files
                // limit first, or refuse as Redis does.
                if n > shared.runtime().maxclients {
                    let fits = crate::fdlimit::fit(n).unwrap_or(0);
                    if fits < n {
                        return Err(failed(
                            name,
                            &format!(
                                "The operating system is not able to handle the specified \
                                 number of clients, try with {fits}"
                            ),
                        ));
                    }
                }
                maxclients = Some(n);
            }
            "requirepass" => requirepass = Some(value.clone()),
            "loglevel" => {
                let level = value.to_ascii_lowercase();
                if crate::config::log_filter(&level).is_none() {
                    return Err(failed(
                        name,
                        &format!(
                            "argument(s) must be one of the following: {}",
                            crate::config::LOG_LEVELS.join(", ")
                        ),
                    ));
                }
                loglevel = Some(level);
            }
            "trace-queues" => trace_queues = Some(value.clone()),
            "trace-max-events" => trace_max_events = Some(positive(name, value)?),
            "hot-max-members" => {
                hot_max = Some(usize::try_from(positive(name, value)?).unwrap_or(usize::MAX));
            }
            "slowlog-log-slower-than" => slower_than = Some(at_least(name, value, -1)?),
            "slowlog-max-len" => {
                slowlog_max_len = Some(at_least(name, value, 0)?.unsigned_abs());
            }
            "latency-monitor-threshold" => {
                latency_threshold = Some(at_least(name, value, 0)?.unsigned_abs());
            }
            other if all_params(shared).iter().any(|(k, _)| *k == other) => {
                return Err(failed(name, "can't set immutable config"));
            }
            other => {
                return Err(Error::msg(format!(
                    "Unknown option or number of arguments for CONFIG SET - '{other}'"
                )));
            }
        }
    }
    if let Some((name, settings)) = tls {
        shared.tls.reconfigure(settings).map_err(|why| {
            tracing::warn!(
                "Failed applying new configuration. Possibly related to new {name} setting. \
                 Restoring previous settings."
            );
            failed(name, why)
        })?;
    }
    if let Some(level) = loglevel {
        // Fails only where no logger is installed (the level is then fixed).
        crate::config::set_log_level(&level).map_err(|why| failed("loglevel", &why))?;
    }
    for engine in shared.engines() {
        if let Some(f) = fsync {
            engine.set_fsync(f);
        }
        if let Some(p) = &trace_queues {
            engine.set_trace_queues(p.as_bytes());
        }
        if let Some(n) = trace_max_events {
            engine.set_trace_max_events(n);
        }
        if let Some(n) = hot_max {
            engine.set_hot_max(n);
        }
    }
    if let Some(us) = slower_than {
        shared.slowlog.set_slower_than(us);
    }
    if let Some(n) = slowlog_max_len {
        shared.slowlog.set_max_len(n);
    }
    if let Some(ms) = latency_threshold {
        shared.latency.set_threshold(ms);
    }
    if let Ok(mut rt) = shared.runtime.write() {
        if let Some(n) = maxclients {
            rt.maxclients = n;
        }
        if let Some(p) = requirepass {
            rt.requirepass = (!p.is_empty()).then_some(p);
            // As in Redis, requirepass is the default user's password.
            shared.acl.set_requirepass(rt.requirepass.as_deref());
        }
        for spec in &obuf {
            rt.obuf_limits.apply(spec);
        }
        if let Some(on) = protected_mode {
            rt.protected_mode = on;
        }
    }
    Ok(())
}
