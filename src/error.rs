//! The one error type of delayd.
//!
//! Every failure a command can meet is a variant here. The connection turns
//! an [`Error`] into a RESP error reply in exactly one place
//! ([`Error::reply_text`]), so the texts clients match on (Redis's own) live
//! together and cannot drift apart.

use std::fmt;

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
    Storage(String),
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
            Error::Storage(m) | Error::Msg(m) | Error::Protocol(m) => m.clone(),
            other => other.reply_text(),
        }
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
            Error::Storage(m) => format!("ERR storage error: {m}"),
            Error::ShuttingDown => "ERR server is shutting down".into(),
            Error::Io(e) => format!("ERR I/O error: {e}"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reply_text())
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(e)
    }
}

impl From<fjall::Error> for Error {
    fn from(e: fjall::Error) -> Self {
        Error::Storage(match e {
            fjall::Error::Io(io) => io.to_string(),
            fjall::Error::Poisoned => "the store failed earlier (poisoned)".into(),
            other => format!("{other:?}"),
        })
    }
}
