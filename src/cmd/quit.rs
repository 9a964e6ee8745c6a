//! `QUIT`: close the connection after the reply.

use super::{Args, ClientCommand, Command};
use crate::Result;
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;

/// Answers `+OK`, then the connection is closed.
///
/// # Format
///
/// ```text
/// QUIT
/// ```
#[derive(Debug)]
pub struct Quit;

/// The table's parser (any arguments are ignored, as Redis does).
///
/// # Errors
///
/// None.
pub fn parse(_: &mut Args) -> Result<Command> {
    Ok(Command::client(Quit))
}

impl ClientCommand for Quit {
    fn apply(&self, _: &Shared, client: &mut ClientState) -> Option<Reply> {
        client.quit = true;
        Some(Reply::OK)
    }
}
