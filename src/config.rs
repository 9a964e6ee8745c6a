//! Command-line configuration, named as redis-server names its options.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// When the journal is fsynced (`--appendfsync`, as in Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// Before every reply to a write (group commit: one fsync per batch).
    Always,
    /// Once a second; a crash of the machine loses at most the last second.
    #[value(name = "everysec")]
    EverySec,
    /// Left to the operating system.
    No,
}

impl Fsync {
    /// The name used in flags, CONFIG and INFO.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
            Fsync::No => "no",
        }
    }

    /// Parses a CONFIG SET value.
    pub fn parse(s: &str) -> Option<Fsync> {
        match s.to_ascii_lowercase().as_str() {
            "always" => Some(Fsync::Always),
            "everysec" => Some(Fsync::EverySec),
            "no" => Some(Fsync::No),
            _ => None,
        }
    }

    /// Encodes for an atomic.
    pub fn to_u8(self) -> u8 {
        self as u8
    }

    /// Decodes from an atomic.
    pub fn from_u8(v: u8) -> Fsync {
        match v {
            0 => Fsync::Always,
            1 => Fsync::EverySec,
            _ => Fsync::No,
        }
    }
}

/// delayd's configuration.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "delayd",
    version,
    about = "A durable delay-queue server that speaks the Redis protocol"
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
    #[arg(long, value_enum, default_value_t = Fsync::EverySec)]
    pub appendfsync: Fsync,

    /// Password every client must give with AUTH or HELLO ... AUTH.
    #[arg(long)]
    pub requirepass: Option<String>,

    /// Maximum number of connected clients.
    #[arg(long, default_value_t = 10_000)]
    pub maxclients: usize,

    /// Members due within this many ms are kept in memory; the rest stay on
    /// disk and are paged in ahead of time.
    #[arg(long, default_value_t = 120_000)]
    pub horizon_ms: u64,

    /// Longest accepted argument (member, queue name), in bytes.
    #[arg(long, default_value_t = 512 * 1024 * 1024)]
    pub proto_max_bulk_len: usize,

    /// Most bytes a client's unprocessed input may take.
    #[arg(long, default_value_t = 1024 * 1024 * 1024)]
    pub client_query_buffer_limit: usize,

    /// Worker threads for network I/O (the engine and writer have their own).
    #[arg(long, default_value_t = 1)]
    pub io_threads: usize,

    /// Log level: debug, verbose, notice or warning.
    #[arg(long, default_value = "notice")]
    pub loglevel: String,

    /// A redis.conf-style file of `name value` lines; flags override it.
    #[arg(long = "config")]
    pub config_file: Option<PathBuf>,
}

impl Config {
    /// The configuration with every default, for tests.
    pub fn for_dir(dir: impl Into<PathBuf>) -> Config {
        let mut c = Config::parse_from(["delayd"]);
        c.dir = dir.into();
        c
    }
}
