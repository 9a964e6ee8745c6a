//! The one error type of delayd.
//!
//! Every failure a command can meet is a variant here. The connection turns
//! an [`Error`] into a RESP error reply in exactly one place
//! ([`Error::reply_text`]), so the texts clients match on (Redis's own) live
//! together and cannot drift apart.

use std::fmt;
use std::sync::Arc;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while serving a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// `ERR unknown command 'x', with args beginning with: 'a' `.
    UnknownCommand { name: String, args: Vec<String> },
    /// `ERR unknown subcommand 'x'. Try CLIENT HELP.`
    UnknownSubcommand { command: String, sub: String },
    /// `ERR wrong number of arguments for 'x' command`.
    WrongArity(String),
    /// `ERR syntax error`.
    Syntax,
    /// `ERR value is not an integer or out of range`.
    NotInteger,
    /// `ERR timeout is not a float or out of range`.
    NotFloatTimeout,
    /// `ERR timeout is negative`.
    NegativeTimeout,
    /// Any other `ERR <text>` reply, for messages specific to one command.
    Msg(String),
    /// A reply with its own error code, such as `NOAUTH ...` or `WRONGPASS ...`.
    Coded(&'static str, String),
    /// The request could not be framed; the connection is closed after the reply.
    Protocol(String),
    /// The store failed; the write was not acknowledged.
    Storage(StorageError),
    /// The server is shutting down.
    ShuttingDown,
    /// A socket error; the connection is dropped.
    Io(std::io::Error),
}

impl Error {
    /// `ERR <text>`.
    pub fn msg(text: impl Into<String>) -> Error {
        Error::Msg(text.into())
    }

    /// The message without its reply code: for nesting in another message.
    pub fn detail(&self) -> String {
        match self {
            Error::Msg(m) | Error::Protocol(m) => m.clone(),
            Error::Storage(e) => e.to_string(),
            Error::Io(e) => e.to_string(),
            other => other.reply_text(),
        }
    }

    /// A command for data this node does not serve now (cluster mode: its
    /// group has no leader here, or lost it while the command ran). Redis
    /// Cluster clients refetch the slot map on it and retry.
    pub fn not_leader() -> Error {
        Error::Coded("CLUSTERDOWN", "The cluster is down".into())
    }

    /// Whether this is [`Error::not_leader`].
    pub fn is_not_leader(&self) -> bool {
        matches!(self, Error::Coded("CLUSTERDOWN", _))
    }

    /// The text of the RESP error reply, without the leading `-` and CRLF.
    pub fn reply_text(&self) -> String {
        match self {
            Error::UnknownCommand { name, args } => {
                let mut s = format!("ERR unknown command '{name}', with args beginning with: ");
                for a in args {
                    s.push('\'');
                    s.push_str(a);
                    s.push_str("' ");
                }
                s
            }
            Error::UnknownSubcommand { command, sub } => {
                format!("ERR unknown subcommand '{sub}'. Try {command} HELP.")
            }
            Error::WrongArity(cmd) => {
                format!("ERR wrong number of arguments for '{cmd}' command")
            }
            Error::Syntax => "ERR syntax error".into(),
            Error::NotInteger => "ERR value is not an integer or out of range".into(),
            Error::NotFloatTimeout => "ERR timeout is not a float or out of range".into(),
            Error::NegativeTimeout => "ERR timeout is negative".into(),
            Error::Msg(m) => format!("ERR {m}"),
            Error::Coded(code, m) => format!("{code} {m}"),
            Error::Protocol(m) => format!("ERR Protocol error: {m}"),
            Error::Storage(e) => format!("ERR storage error: {e}"),
            Error::ShuttingDown => "ERR server is shutting down".into(),
            Error::Io(e) => format!("ERR I/O error: {e}"),
        }
    }
}

/// Prose for logs (no reply code): the RESP text is made only by
/// [`Error::reply_text`], at the connection.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Storage(e) => write!(f, "storage error: {e}"),
            Error::Io(e) => write!(f, "I/O error: {e}"),
            Error::Protocol(m) => write!(f, "protocol error: {m}"),
            Error::ShuttingDown => f.write_str("the server is shutting down"),
            Error::Coded(code, m) => write!(f, "{code}: {m}"),
            other => {
                let text = other.reply_text();
                f.write_str(text.strip_prefix("ERR ").unwrap_or(&text))
            }
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Storage(e) => e.cause.as_deref().map(|c| c as _),
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// A storage failure: what failed, in prose, and the error that caused it
/// (shared, so the failure can be reported to every waiting client).
#[derive(Debug, Clone)]
pub struct StorageError {
    what: String,
    cause: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl Error {
    /// A storage failure described by `what`, with no underlying error.
    pub fn storage(what: impl Into<String>) -> Error {
        Error::Storage(StorageError {
            what: what.into(),
            cause: None,
        })
    }

    /// A storage failure described by `what`, caused by `cause`.
    pub fn storage_caused(
        what: impl Into<String>,
        cause: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Storage(StorageError {
            what: what.into(),
            cause: Some(Arc::new(cause)),
        })
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Self {
        let what = match &e {
            fjall::Error::Io(io) => io.to_string(),
            fjall::Error::Poisoned => "the store failed earlier (poisoned)".into(),
            other => format!("{other:?}"),
        };
        Error::storage_caused(what, e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn storage_errors_keep_their_cause_and_print_as_prose() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::from(fjall::Error::Io(io));
        assert_eq!(e.to_string(), "storage error: disk on fire");
        assert_eq!(e.reply_text(), "ERR storage error: disk on fire");
        assert!(e.source().is_some(), "the fjall error is kept");
        assert_eq!(Error::Syntax.to_string(), "syntax error");
        assert_eq!(
            Error::Io(std::io::Error::other("x")).detail(),
            "x",
            "nested in another message without a reply code"
        );
    }
}
