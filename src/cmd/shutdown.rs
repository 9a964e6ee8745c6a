//! `SHUTDOWN`.

use super::{Args, is};
use crate::server::Shared;
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

    /// Triggers the shutdown.
    pub fn apply(&self, shared: &Shared) {
        shared.shutdown.trigger();
    }
}
