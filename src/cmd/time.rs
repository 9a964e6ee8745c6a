//! `TIME`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::{Args, ClientCommand, Command};
use crate::Result;
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;

/// Returns the server's Unix time as `[seconds, microseconds]`.
///
/// # Format
///
/// ```text
/// TIME
/// ```
#[derive(Debug)]
pub struct Time;

/// The table's parser.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse(_: &mut Args) -> Result<Command> {
    Ok(Command::client(Time))
}

impl ClientCommand for Time {
    fn apply(&self, _: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(reply())
    }
}

/// The reply.
pub fn reply() -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(now.as_secs().to_string())),
        Reply::Bulk(Bytes::from(now.subsec_micros().to_string())),
    ])
}
