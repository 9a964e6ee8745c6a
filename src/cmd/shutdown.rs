//! `SHUTDOWN`.

use super::{Args, ClientCommand, Command, is};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Stops the server cleanly: stop accepting, answer what is in flight, wake
/// blocked clients with an error, commit and fsync, exit 0. Every acknowledged
/// write is on disk afterwards whatever `appendfsync` says, so `NOSAVE` and
/// `SAVE` are accepted and mean the same.
///
/// # Format
///
/// ```text
/// SHUTDOWN [NOSAVE|SAVE] [NOW] [FORCE]
/// ```
#[derive(Debug)]
pub struct Shutdown;

/// The table's parser.
///
/// # Errors
///
/// As [`Shutdown::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(Shutdown::parse(args)?))
}

impl Shutdown {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// An unknown option, or `ABORT` (there is never a shutdown in progress to abort).
    pub fn parse(args: &mut Args) -> Result<Shutdown> {
        while let Some(a) = args.try_next() {
            if is(&a, "ABORT") {
                return Err(Error::msg("No shutdown in progress."));
            }
            if !(is(&a, "NOSAVE") || is(&a, "SAVE") || is(&a, "NOW") || is(&a, "FORCE")) {
                return Err(Error::Syntax);
            }
        }
        Ok(Shutdown)
    }
}

impl ClientCommand for Shutdown {
    /// Triggers the shutdown; the client gets no reply (it is closed, as
    /// Redis closes it).
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        tracing::warn!("SHUTDOWN requested by client {}", client.info.id);
        shared.shutdown.trigger();
        client.quit = true;
        None
    }
}
