//! `READONLY` and `READWRITE`: cluster read routing, accepted as no-ops.

use super::{Args, ClientCommand, Command};
use crate::Result;
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;

/// Answers `+OK` (a single node serves reads and writes alike).
///
/// # Format
///
/// ```text
/// READONLY
/// READWRITE
/// ```
#[derive(Debug)]
pub struct Readonly;

/// The table's parser.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse(_: &mut Args) -> Result<Command> {
    Ok(Command::client(Readonly))
}

impl ClientCommand for Readonly {
    fn apply(&self, _: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(Reply::OK)
    }
}
