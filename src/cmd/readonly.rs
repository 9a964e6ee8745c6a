//! `READONLY` and `READWRITE`: cluster read routing, which a standalone
//! node refuses as Redis 7.0 without cluster mode does (see [`cluster`]).
//!
//! [`cluster`]: super::cluster

use super::{Args, Command};
use crate::Result;

/// The table's parser: the command answers `-ERR This instance has cluster
/// support disabled`.
///
/// # Format
///
/// ```text
/// READONLY
/// READWRITE
/// ```
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse(args: &mut Args) -> Result<Command> {
    super::cluster::parse(args)
}
