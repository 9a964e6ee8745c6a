//! `SELECT`.

use super::Args;
use crate::protocol::Reply;
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

    /// The reply.
    pub fn apply(&self) -> Reply {
        if self.index == 0 {
            Reply::OK
        } else {
            Reply::from(Error::msg("DB index is out of range"))
        }
    }
}
