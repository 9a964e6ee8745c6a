//! `ROLE`: this node's part in replication.

use super::{Args, ClientCommand, Command};
use crate::Result;
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;

/// The replication id a single node reports (it has no replication stream;
/// 40 hex digits, as clients parse it).
pub const REPLICATION_ID: &str = "0000000000000000000000000000000000000000";

/// Replies as a Redis master with no replicas: `[master, 0, []]`.
///
/// # Format
///
/// ```text
/// ROLE
/// ```
#[derive(Debug)]
pub struct Role;

/// The table's parser.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse(_: &mut Args) -> Result<Command> {
    Ok(Command::client(Role))
}

impl ClientCommand for Role {
    fn apply(&self, _: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(reply())
    }
}

/// The reply.
pub fn reply() -> Reply {
    Reply::Array(vec![
        Reply::bulk_static("master"),
        Reply::Int(0),
        Reply::Array(Vec::new()),
    ])
}
