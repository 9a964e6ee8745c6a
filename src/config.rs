//! Configuration: command-line flags named as redis-server names its
//! options, and an optional redis.conf-style file (`--config`) whose
//! settings the flags override.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use clap::{CommandFactory, Parser};

pub use crate::engine::Fsync;

/// delayd's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "delayd",
    version,
    about = "A durable delay-queue server that speaks the Redis protocol",
    // A flag given twice takes its last value, so flags override the file.
    args_override_self = true
)]
pub struct Config {
    /// TCP port to listen on.
    #[arg(long, default_value_t = 6379)]
    pub port: u16,

    /// Addresses to listen on (space-separated, like redis.conf's `bind`).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,

    /// Directory of the store.
    #[arg(long, default_value = "./delayd-data")]
    pub dir: PathBuf,

    /// When to fsync the journal.
    #[arg(long, value_parser = parse_fsync, default_value = "everysec")]
    pub appendfsync: Fsync,

    /// Password every client must give with AUTH or HELLO ... AUTH.
    #[arg(long)]
    pub requirepass: Option<String>,

    /// ACL file: users loaded at start and by ACL LOAD, written by ACL
    /// SAVE (redis.conf's `aclfile`).
    #[arg(long)]
    pub aclfile: Option<PathBuf>,

    /// Maximum number of connected clients (lowered at start if the
    /// open-files limit cannot be raised to hold them).
    #[arg(long, default_value_t = 10_000)]
    pub maxclients: usize,

    /// Members due within this many ms are kept in memory, as far as
    /// `--hot-max-members` allows; the rest stay on disk and are paged in
    /// ahead of time.
    #[arg(long, default_value_t = 172_800_000)]
    pub horizon_ms: u64,

    /// Most members kept in memory: past it the in-memory horizon shrinks,
    /// and members due furthest out move to disk (~62 bytes plus the
    /// member's bytes each in memory).
    #[arg(long, default_value_t = 1_000_000)]
    pub hot_max_members: usize,

    /// Longest accepted argument (member, queue name), in bytes.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    pub proto_max_bulk_len: usize,

    /// Most bytes a client's unprocessed input may take.
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub client_query_buffer_limit: usize,

    /// Output buffer limits as in redis.conf: `<class> <hard> <soft>
    /// <soft-seconds>` for one or more of the classes normal, replica,
    /// pubsub (only normal applies: delayd has no replicas or Pub/Sub).
    /// A client whose pending replies reach the hard limit, or stay at the
    /// soft limit longer than soft-seconds, is disconnected; 0 turns a limit
    /// off. May be given several times; default `normal 256mb 64mb 60
    /// replica 256mb 64mb 60 pubsub 32mb 8mb 60`.
    #[arg(long, value_parser = parse_obuf_spec, action = clap::ArgAction::Append)]
    pub client_output_buffer_limit: Vec<ObufSpec>,

    /// Worker threads for network I/O (the engine and writer have their own).
    #[arg(long, default_value_t = 1)]
    pub io_threads: usize,

    /// Log level: debug, verbose, notice, warning or nothing.
    #[arg(long, default_value = "notice", value_parser = LOG_LEVELS)]
    pub loglevel: String,

    /// Port for HTTP on the `--bind` addresses: the web console (`/`), the
    /// JSON API (`/api/`) and Prometheus metrics (`/metrics`); off unless
    /// given. `--metrics-port` is its old name.
    #[arg(long, visible_alias = "metrics-port")]
    pub http_port: Option<u16>,

    /// How many queues, largest backlog first, get per-queue metrics.
    #[arg(long, default_value_t = 100)]
    pub metrics_top_queues: usize,

    /// Record every event of the members of queues whose names match this
    /// glob (as KEYS matches), for DELAYTRACE; empty: off.
    #[arg(long, default_value = "")]
    pub trace_queues: String,

    /// Trace events kept per queue; the oldest are deleted past it.
    #[arg(long, default_value_t = crate::engine::trace::DEFAULT_MAX_EVENTS,
          value_parser = clap::value_parser!(u64).range(1..=i64::MAX as u64))]
    pub trace_max_events: u64,

    /// Commands that take at least this many microseconds to execute are
    /// logged for SLOWLOG GET; 0 logs every command, -1 none.
    #[arg(long, default_value_t = crate::cmd::slowlog::DEFAULT_SLOWER_THAN,
          allow_negative_numbers = true,
          value_parser = clap::value_parser!(i64).range(-1..))]
    pub slowlog_log_slower_than: i64,

    /// Entries the slow log keeps; the oldest are dropped past it.
    #[arg(long, default_value_t = crate::cmd::slowlog::DEFAULT_MAX_LEN,
          value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    pub slowlog_max_len: u64,

    /// Events (commands) that take at least this many milliseconds are
    /// sampled for LATENCY LATEST and HISTORY; 0: off.
    #[arg(long, default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
    pub latency_monitor_threshold: u64,
    /// Refuse clients from addresses other than 127.0.0.1 and ::1 while no
    /// password is set (`yes` or `no`), with redis-server's `-DENIED` error.
    #[arg(long, default_value = "yes", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub protected_mode: bool,

    /// TLS port, a second listener on the `--bind` addresses (0: none).
    /// With `--port 0` it is the only one.
    #[arg(long, default_value_t = 0)]
    pub tls_port: u16,

    /// The server's certificate chain (PEM).
    #[arg(long)]
    pub tls_cert_file: Option<String>,

    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long)]
    pub tls_key_file: Option<String>,

    /// CA certificates (PEM) that client certificates must chain to.
    #[arg(long)]
    pub tls_ca_cert_file: Option<String>,

    /// A directory of CA certificates (PEM files), as `--tls-ca-cert-file`.
    #[arg(long)]
    pub tls_ca_cert_dir: Option<String>,

    /// Client certificates: `yes` (required), `optional` (checked if sent)
    /// or `no` (not asked for).
    #[arg(long, default_value = "yes", value_parser = ["yes", "no", "optional"])]
    pub tls_auth_clients: String,

    /// TLS versions to offer, e.g. "TLSv1.2 TLSv1.3" (the default: both).
    #[arg(long)]
    pub tls_protocols: Option<String>,

    /// TLS for replication traffic (`yes` or `no`); applies once delayd
    /// has replicas.
    #[arg(long, default_value = "no", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub tls_replication: bool,

    /// TLS for cluster bus traffic (`yes` or `no`); applies once delayd
    /// has a cluster.
    #[arg(long, default_value = "no", value_parser = parse_yes_no, action = clap::ArgAction::Set)]
    pub tls_cluster: bool,

    /// Cluster mode: every node of the cluster as `id=host:port[@bus]`,
    /// comma-separated (the bus port defaults to the port + 10000). Unset:
    /// a single node.
    #[arg(long)]
    pub cluster_nodes: Option<String>,

    /// Cluster mode: which of `cluster-nodes` this node is.
    #[arg(long)]
    pub cluster_id: Option<u64>,

    /// Cluster mode: join a running cluster through one of its members,
    /// `host:port[@bus]`. On first start the node learns the cluster from
    /// it, then waits for a member to run `CLUSTER MEET` to it;
    /// `cluster-nodes` then needs name only this node.
    #[arg(long)]
    pub cluster_join: Option<String>,

    /// Cluster mode: log entries after which a group snapshots its store
    /// and purges its log (a node far behind then catches up from the
    /// snapshot).
    #[arg(long, default_value_t = 20_000)]
    pub cluster_snapshot_logs: u64,

    /// A redis.conf-style file of `name value` lines; flags override it.
    #[arg(long = "config")]
    pub config_file: Option<PathBuf>,
}

/// The limits of one class of clients in `client-output-buffer-limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObufLimit {
    /// Disconnect at this many pending bytes (0: no limit).
    pub hard: u64,
    /// Disconnect after `soft_secs` at this many pending bytes (0: no limit).
    pub soft: u64,
    pub soft_secs: u64,
}

/// Every class of `client-output-buffer-limit`, in Redis's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObufLimits {
    pub normal: ObufLimit,
    pub replica: ObufLimit,
    pub pubsub: ObufLimit,
}

/// One `client-output-buffer-limit` value: the classes it sets, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObufSpec(Vec<(ObufClass, ObufLimit)>);

/// A client class of `client-output-buffer-limit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObufClass {
    Normal,
    Replica,
    Pubsub,
}

const MB: u64 = 1024 * 1024;

impl Default for ObufLimits {
    /// Redis's defaults, except for normal clients, which Redis leaves
    /// unlimited. delayd holds at most one large reply per client (it stops
    /// running a client's commands while TCP holds its output back), so the
    /// limit only meets a single reply that is huge (over 256 MB: millions of
    /// members in one DELAYRANGE) or a client that leaves more than 64 MB of
    /// it unread for a minute; Redis's replica class has the same values.
    fn default() -> Self {
        ObufLimits {
            normal: ObufLimit {
                hard: 256 * MB,
                soft: 64 * MB,
                soft_secs: 60,
            },
            replica: ObufLimit {
                hard: 256 * MB,
                soft: 64 * MB,
                soft_secs: 60,
            },
            pubsub: ObufLimit {
                hard: 32 * MB,
                soft: 8 * MB,
                soft_secs: 60,
            },
        }
    }
}

impl ObufLimits {
    /// The limits after applying `specs` in order over the defaults.
    pub fn from_specs(specs: &[ObufSpec]) -> ObufLimits {
        let mut l = ObufLimits::default();
        for s in specs {
            l.apply(s);
        }
        l
    }

    /// Sets the classes `spec` names, leaving the others.
    pub fn apply(&mut self, spec: &ObufSpec) {
        for (class, limit) in &spec.0 {
            *match class {
                ObufClass::Normal => &mut self.normal,
                ObufClass::Replica => &mut self.replica,
                ObufClass::Pubsub => &mut self.pubsub,
            } = *limit;
        }
    }

    /// The value CONFIG GET shows, as Redis 7.0 writes it (bytes; the
    /// replica class named `slave`).
    pub fn render(&self) -> String {
        let one =
            |name: &str, l: &ObufLimit| format!("{name} {} {} {}", l.hard, l.soft, l.soft_secs);
        format!(
            "{} {} {}",
            one("normal", &self.normal),
            one("slave", &self.replica),
            one("pubsub", &self.pubsub)
        )
    }
}

/// Parses a `client-output-buffer-limit` value as Redis does: a multiple of
/// four words `<class> <hard> <soft> <soft-seconds>`, sizes with Redis's
/// units (`1k` = 1000, `1kb` = 1024, `m`, `mb`, `g`, `gb`). An empty value
/// sets nothing (CONFIG SET accepts it).
///
/// # Errors
///
/// Redis's texts for a wrong word count, an unknown class or a bad number.
pub fn parse_obuf_spec(value: &str) -> Result<ObufSpec, String> {
    let words: Vec<&str> = value.split_whitespace().collect();
    if !words.len().is_multiple_of(4) {
        return Err("Wrong number of arguments in buffer limit configuration.".into());
    }
    let mut out = Vec::new();
    for w in words.chunks_exact(4) {
        let class = match w[0].to_ascii_lowercase().as_str() {
            "normal" => ObufClass::Normal,
            "replica" | "slave" => ObufClass::Replica,
            "pubsub" => ObufClass::Pubsub,
            _ => {
                return Err("Invalid client class specified in buffer limit configuration.".into());
            }
        };
        let bad = || "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        let hard = mem_bytes(w[1]).ok_or_else(bad)?;
        let soft = mem_bytes(w[2]).ok_or_else(bad)?;
        let soft_secs = w[3]
            .strip_prefix('+')
            .unwrap_or(w[3])
            .parse::<i64>()
            .ok()
            .and_then(|s| u64::try_from(s).ok())
            .ok_or_else(bad)?;
        out.push((
            class,
            ObufLimit {
                hard,
                soft,
                soft_secs,
            },
        ));
    }
    Ok(ObufSpec(out))
}

/// A size with Redis's memory units (`memtoull`): digits, then nothing,
/// `b`, `k`, `kb`, `m`, `mb`, `g` or `gb` in any case. `None` if malformed
/// or too large (Redis wraps those around; refusing is safer).
fn mem_bytes(s: &str) -> Option<u64> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let mul: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => MB,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * MB,
        _ => return None,
    };
    // As in Redis, a unit without digits is 0.
    let n: u64 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    n.checked_mul(mul)
}

/// The log levels, as redis-server names them.
pub const LOG_LEVELS: [&str; 5] = ["debug", "verbose", "notice", "warning", "nothing"];

/// The tracing filter directive for a log level (`None` if unknown).
pub fn log_filter(level: &str) -> Option<&'static str> {
    Some(match level {
        "debug" => "debug",
        "verbose" | "notice" => "info",
        "warning" => "warn",
        "nothing" => "off",
        _ => return None,
    })
}

/// Changes the log level of the running process.
pub type LogLevelSetter = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

static LOG_SETTER: OnceLock<LogLevelSetter> = OnceLock::new();
static LOG_LEVEL: Mutex<Option<String>> = Mutex::new(None);

/// Installs the hook `CONFIG SET loglevel` uses (the binary does, once its
/// logger is set up), with the level in force.
pub fn install_log_level_setter(level: &str, setter: LogLevelSetter) {
    if LOG_SETTER.set(setter).is_ok()
        && let Ok(mut l) = LOG_LEVEL.lock()
    {
        *l = Some(level.to_string());
    }
}

/// The log level in force, if the process installed a setter.
pub fn current_log_level() -> Option<String> {
    LOG_LEVEL.lock().ok().and_then(|l| l.clone())
}

/// Changes the log level (`CONFIG SET loglevel`).
///
/// # Errors
///
/// An unknown level, or no setter installed (the level is then fixed).
pub fn set_log_level(level: &str) -> Result<(), String> {
    let level = level.to_ascii_lowercase();
    if log_filter(&level).is_none() {
        return Err(format!(
            "argument(s) must be one of the following: {}",
            LOG_LEVELS.join(", ")
        ));
    }
    let setter = LOG_SETTER
        .get()
        .ok_or_else(|| "can't set immutable config".to_string())?;
    setter(&level)?;
    if let Ok(mut l) = LOG_LEVEL.lock() {
        *l = Some(level);
    }
    Ok(())
}

/// Why the configuration could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    /// A bad command line (clap's own error, with `--help` and `--version`).
    Cli(clap::Error),
    /// An unreadable or bad configuration file; the message names the line.
    File(String),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Cli(e) => write!(f, "{e}"),
            LoadError::File(m) => f.write_str(m),
        }
    }
}

impl Config {
    /// The configuration with every default, for tests.
    pub fn for_dir(dir: impl Into<PathBuf>) -> Config {
        let mut c = Config::parse_from(["delayd"]);
        c.dir = dir.into();
        c
    }

    /// Loads the configuration from a command line (program name first):
    /// with `--config FILE`, the file's settings, overridden by the flags.
    ///
    /// # Errors
    ///
    /// A bad flag, or an unreadable file or bad line in it.
    pub fn load<I, T>(args: I) -> Result<Config, LoadError>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let cli = Config::try_parse_from(&args).map_err(LoadError::Cli)?;
        let Some(path) = cli.config_file.clone() else {
            return Ok(cli.normalized());
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            LoadError::File(format!("cannot read config file {}: {e}", path.display()))
        })?;
        let from_file = file_args(&text).map_err(|(line, why)| {
            LoadError::File(format!(
                "bad config file {}, line {line}: {why}",
                path.display()
            ))
        })?;
        // The file first, then the command line: the last value wins.
        let mut all = Vec::with_capacity(args.len() + from_file.len());
        all.extend(args.first().cloned());
        all.extend(from_file);
        all.extend(args.iter().skip(1).cloned());
        let mut config = Config::try_parse_from(all).map_err(LoadError::Cli)?;
        config.config_file = Some(std::fs::canonicalize(&path).unwrap_or(path));
        Ok(config.normalized())
    }

    /// Raises the open-files limit to hold `maxclients` clients besides
    /// the server's own files, or lowers `maxclients` to what the limit
    /// holds (see [`crate::fdlimit::fit`]).
    ///
    /// # Errors
    ///
    /// The limit leaves no room for a single client.
    pub fn fit_open_files(&mut self) -> Result<(), String> {
        self.maxclients = crate::fdlimit::fit(self.maxclients)?;
        Ok(())
    }

    /// The output buffer limits: every `--client-output-buffer-limit` (the
    /// file's lines, then the flags) applied in order over the defaults.
    pub fn obuf_limits(&self) -> ObufLimits {
        ObufLimits::from_specs(&self.client_output_buffer_limit)
    }

    /// An empty password means none, as with `CONFIG SET requirepass ""`.
    fn normalized(mut self) -> Config {
        if self.requirepass.as_deref() == Some("") {
            self.requirepass = None;
        }
        // As in Redis, an empty TLS path or protocol list means none.
        for v in [
            &mut self.tls_cert_file,
            &mut self.tls_key_file,
            &mut self.tls_ca_cert_file,
            &mut self.tls_ca_cert_dir,
            &mut self.tls_protocols,
        ] {
            if v.as_deref() == Some("") {
                *v = None;
            }
        }
        self
    }
}

/// Turns a configuration file into flags, checking each line on its own so
/// an error names its line: `(line number, what is wrong)`.
fn file_args(text: &str) -> Result<Vec<OsString>, (usize, String)> {
    let command = Config::command();
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = split_args(line).map_err(|why| (n, why))?;
        let Some((name, values)) = words.split_first() else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        let arg = command
            .get_arguments()
            .filter(|a| !matches!(a.get_id().as_str(), "config_file" | "help" | "version"))
            .find(|a| {
                a.get_long() == Some(name.as_str())
                    || a.get_all_aliases()
                        .is_some_and(|al| al.contains(&name.as_str()))
            })
            .ok_or_else(|| (n, format!("unknown option '{name}'")))?;
        let flag = format!("--{name}");
        let mut one = Vec::new();
        if !arg.get_action().takes_values() {
            // A switch: `name yes` or `name no`.
            match values {
                [v] if v.eq_ignore_ascii_case("yes") => one.push(flag),
                [v] if v.eq_ignore_ascii_case("no") => {}
                _ => return Err((n, format!("'{name}' takes yes or no"))),
            }
        } else if matches!(
            name.as_str(),
            "bind" | "client-output-buffer-limit" | "tls-protocols"
        ) && !values.is_empty()
        {
            // Several words, as in redis.conf.
            one.extend([flag, values.join(" ")]);
        } else if let [v] = values {
            one.extend([flag, v.clone()]);
        } else {
            return Err((
                n,
                format!("'{name}' takes one value, {} given", values.len()),
            ));
        }
        // Check the value with the same rules as the flag.
        if let Err(e) =
            Config::try_parse_from(std::iter::once("delayd".to_string()).chain(one.clone()))
        {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default();
            return Err((n, first.trim_start_matches("error: ").to_string()));
        }
        out.extend(one.into_iter().map(OsString::from));
    }
    Ok(out)
}

/// Splits a configuration line into words as redis.conf does: spaces
/// separate words; "double quotes" take `\n`, `\r`, `\t`, `\b`, `\a`,
/// `\xHH` and `\`-escaped characters; 'single quotes' take only `\'`.
/// A closing quote must end the word.
///
/// # Errors
///
/// Unbalanced quotes, a closing quote followed by more text, or a word that
/// is not UTF-8.
pub fn split_args(line: &str) -> Result<Vec<String>, String> {
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut i = 0;
    loop {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= b.len() {
            return Ok(words);
        }
        let mut word = Vec::new();
        let mut quote: Option<u8> = None;
        loop {
            let Some(&c) = b.get(i) else {
                if quote.is_some() {
                    return Err("unbalanced quotes".into());
                }
                break;
            };
            match quote {
                Some(b'"') if c == b'\\' && i + 3 < b.len() && b[i + 1] == b'x' => {
                    let hex = std::str::from_utf8(&b[i + 2..i + 4])
                        .ok()
                        .filter(|h| h.bytes().all(|d| d.is_ascii_hexdigit()))
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    match hex {
                        Some(v) => {
                            word.push(v);
                            i += 4;
                        }
                        None => {
                            word.push(b'x');
                            i += 2;
                        }
                    }
                }
                Some(b'"') if c == b'\\' && i + 1 < b.len() => {
                    word.push(match b[i + 1] {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 8,
                        b'a' => 7,
                        other => other,
                    });
                    i += 2;
                }
                Some(b'\'') if c == b'\\' && b.get(i + 1) == Some(&b'\'') => {
                    word.push(b'\'');
                    i += 2;
                }
                Some(q) if c == q => {
                    i += 1;
                    if b.get(i).is_some_and(|n| !n.is_ascii_whitespace()) {
                        return Err("closing quote must be followed by a space".into());
                    }
                    break;
                }
                Some(_) => {
                    word.push(c);
                    i += 1;
                }
                None if c.is_ascii_whitespace() => break,
                None if c == b'"' || c == b'\'' => {
                    quote = Some(c);
                    i += 1;
                }
                None => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        words.push(String::from_utf8(word).map_err(|_| "a value is not UTF-8".to_string())?);
    }
}

/// Parses a redis.conf boolean: `yes` or `no`, in any case.
pub(crate) fn parse_yes_no(s: &str) -> Result<bool, String> {
    if s.eq_ignore_ascii_case("yes") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("no") {
        Ok(false)
    } else {
        Err(format!("'{s}' is not yes or no"))
    }
}

/// Parses `--appendfsync`.
fn parse_fsync(s: &str) -> Result<Fsync, String> {
    Fsync::parse(s).ok_or_else(|| format!("'{s}' is not one of always, everysec, no"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_redis_conf_splits_them() {
        let w = |s: &str| split_args(s).unwrap();
        assert_eq!(w("port 6379"), ["port", "6379"]);
        assert_eq!(w("  bind 127.0.0.1   ::1 "), ["bind", "127.0.0.1", "::1"]);
        assert_eq!(w(r#"requirepass "a b""#), ["requirepass", "a b"]);
        assert_eq!(w(r#"x "q\"\n\x41\\""#), ["x", "q\"\nA\\"]);
        assert_eq!(w(r"x 'it\'s \n'"), ["x", "it's \\n"]);
        assert_eq!(w(r#"x """#), ["x", ""]);
        assert!(split_args(r#"x "open"#).is_err());
        assert!(split_args(r#"x "a"b"#).is_err());
    }

    #[test]
    fn the_file_comes_first_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("d.conf");
        std::fs::write(
            &conf,
            "# comment\n\nport 7000\nbind 127.0.0.1 ::1\nmaxclients 5\nrequirepass \"\"\n",
        )
        .unwrap();
        let c = Config::load([
            "delayd",
            "--config",
            conf.to_str().unwrap(),
            "--maxclients",
            "9",
        ])
        .unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(c.bind, "127.0.0.1 ::1");
        assert_eq!(c.maxclients, 9);
        assert_eq!(c.requirepass, None);
        assert_eq!(c.appendfsync, Fsync::EverySec);
    }

    #[test]
    fn output_buffer_limits_parse_as_redis_parses_them() {
        let limits = |v: &str| {
            let mut l = ObufLimits::default();
            l.apply(&parse_obuf_spec(v)?);
            Ok::<_, String>(l.render())
        };
        assert_eq!(
            limits("").unwrap(),
            "normal 268435456 67108864 60 slave 268435456 67108864 60 pubsub 33554432 8388608 60"
        );
        assert_eq!(
            limits("NORMAL 1mb 512kb 1 replica 1k 2K +3 pubsub 1GB 2g 0").unwrap(),
            "normal 1048576 524288 1 slave 1000 2000 3 pubsub 1073741824 2000000000 0"
        );
        assert_eq!(
            limits("slave 5b 2B -0 normal mb 0 0").unwrap(),
            "normal 0 0 0 slave 5 2 0 pubsub 33554432 8388608 60"
        );
        let count = "Wrong number of arguments in buffer limit configuration.";
        let class = "Invalid client class specified in buffer limit configuration.";
        let number = "Error in hard, soft or soft_seconds setting in buffer limit configuration.";
        assert_eq!(limits("normal 1mb 512kb").unwrap_err(), count);
        assert_eq!(limits("master 1 1 1").unwrap_err(), class);
        assert_eq!(limits("normal 5 2 3 bogus 1 1 1").unwrap_err(), class);
        for bad in [
            "normal x 1 1",
            "normal -1 1 1",
            "normal +5 1 1",
            "normal 1.5mb 1 1",
            "normal 1 1 -1",
            "normal 1 1 3x",
            "normal 18446744073709551615gb 1 1",
        ] {
            assert_eq!(limits(bad).unwrap_err(), number, "{bad}");
        }
    }

    #[test]
    fn output_buffer_limit_lines_and_flags_add_up_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("d.conf");
        std::fs::write(
            &conf,
            "client-output-buffer-limit normal 1mb 512kb 1\n\
             client-output-buffer-limit pubsub 1 2 3\n",
        )
        .unwrap();
        let c = Config::load([
            "delayd",
            "--config",
            conf.to_str().unwrap(),
            "--client-output-buffer-limit",
            "normal 0 0 0",
            "--client-output-buffer-limit",
            "replica 4 5 6",
        ])
        .unwrap();
        assert_eq!(
            c.obuf_limits().render(),
            "normal 0 0 0 slave 4 5 6 pubsub 1 2 3"
        );
        assert_eq!(Config::for_dir("x").obuf_limits(), ObufLimits::default());
        let err = file_args("client-output-buffer-limit normal 1 2\n").unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("Wrong number of arguments"), "{}", err.1);
    }

    #[test]
    fn slowlog_and_latency_settings_parse_as_redis_bounds_them() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("d.conf");
        std::fs::write(
            &conf,
            "slowlog-log-slower-than -1\nslowlog-max-len 0\nlatency-monitor-threshold 5\n",
        )
        .unwrap();
        let c = Config::load(["delayd", "--config", conf.to_str().unwrap()]).unwrap();
        assert_eq!(c.slowlog_log_slower_than, -1);
        assert_eq!(c.slowlog_max_len, 0);
        assert_eq!(c.latency_monitor_threshold, 5);
        let c = Config::load(["delayd"]).unwrap();
        assert_eq!(
            (
                c.slowlog_log_slower_than,
                c.slowlog_max_len,
                c.latency_monitor_threshold
            ),
            (10_000, 128, 0)
        );
        assert!(Config::load(["delayd", "--slowlog-log-slower-than", "-2"]).is_err());
        assert!(Config::load(["delayd", "--slowlog-max-len", "-1"]).is_err());
        assert!(file_args("latency-monitor-threshold -1\n").is_err());
    }

    #[test]
    fn tls_and_protected_mode_lines_read_as_redis_conf_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("d.conf");
        std::fs::write(
            &conf,
            "protected-mode no\ntls-port 6380\ntls-protocols \"TLSv1.2 TLSv1.3\"\n\
             tls-auth-clients optional\ntls-replication yes\ntls-cert-file \"\"\n",
        )
        .unwrap();
        let c = Config::load(["delayd", "--config", conf.to_str().unwrap()]).unwrap();
        assert!(!c.protected_mode);
        assert_eq!(c.tls_port, 6380);
        assert_eq!(c.tls_protocols.as_deref(), Some("TLSv1.2 TLSv1.3"));
        assert_eq!(c.tls_auth_clients, "optional");
        assert!(c.tls_replication && !c.tls_cluster);
        assert_eq!(c.tls_cert_file, None);
        let d = Config::for_dir("x");
        assert!(d.protected_mode);
        assert_eq!((d.tls_port, d.tls_auth_clients.as_str()), (0, "yes"));
        assert!(
            file_args("protected-mode maybe")
                .unwrap_err()
                .1
                .contains("maybe")
        );
        assert!(file_args("tls-auth-clients sometimes").is_err());
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = |text: &str| file_args(text).unwrap_err();
        assert_eq!(err("port 1\nport x\n").0, 2);
        assert!(err("nope 1").1.contains("unknown option 'nope'"));
        assert!(err("help 1").1.contains("unknown option"));
        assert!(err("loglevel chatty").1.contains("chatty"));
        assert!(err("maxclients").1.contains("one value, 0 given"));
    }
}
