//! `PING`.

use bytes::Bytes;

use super::Args;
use crate::protocol::{Protocol, Reply};
use crate::{Error, Result};

/// Replies `PONG`, or echoes the message.
///
/// # Format
///
/// ```text
/// PING [message]
/// ```
#[derive(Debug)]
pub struct Ping {
    pub msg: Option<Bytes>,
}

impl Ping {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// More than one argument (Redis's arity error).
    pub fn parse(args: &mut Args) -> Result<Ping> {
        if args.remaining() > 1 {
            return Err(Error::WrongArity("ping".into()));
        }
        Ok(Ping {
            msg: args.try_next(),
        })
    }

    /// The reply. `proto` and `in_multi` are kept for RESP2 pub/sub rules;
    /// without subscriptions PING is the same everywhere.
    pub fn apply(&self, _proto: Protocol, _in_multi: bool) -> Reply {
        match &self.msg {
            Some(m) => Reply::Bulk(m.clone()),
            None => Reply::Simple("PONG"),
        }
    }
}
