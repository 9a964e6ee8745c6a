//! `SELECT`.

use super::{Args, ClientCommand, Command};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Selects a database. delayd has one, database 0, so clients that select
/// it explicitly keep working and any other index is refused.
///
/// # Format
///
/// ```text
/// SELECT index
/// ```
#[derive(Debug)]
pub struct Select {
    pub index: i64,
}

/// The table's parser.
///
/// # Errors
///
/// As [`Select::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(Select::parse(args)?))
}

impl Select {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// A non-integer index.
    pub fn parse(args: &mut Args) -> Result<Select> {
        Ok(Select {
            index: args.next_int()?,
        })
    }
}

impl ClientCommand for Select {
    fn apply(&self, _: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(if self.index == 0 {
            Reply::OK
        } else {
            Reply::from(Error::msg("DB index is out of range"))
        })
    }
}
