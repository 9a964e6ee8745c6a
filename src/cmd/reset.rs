//! `RESET`: back to a new connection's state.

use super::multi::Control;
use super::{Args, ClientCommand, Command};
use crate::Result;
use crate::client::ClientState;
use crate::protocol::{Protocol, Reply};
use crate::shared::Shared;

/// Returns to RESP2, clears the name and, with a password set, the
/// authentication, and (the session's part) discards a transaction;
/// answers `+RESET`.
///
/// # Format
///
/// ```text
/// RESET
/// ```
#[derive(Debug)]
pub struct Reset;

/// The table's parser.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse(_: &mut Args) -> Result<Command> {
    Ok(Command::Transaction(Control::Reset))
}

impl ClientCommand for Reset {
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        client.set_proto(Protocol::Resp2);
        if let Ok(mut n) = client.info.name.lock() {
            n.clear();
        }
        // Back to the default user, authenticated only if it needs no
        // password (Redis's clientSetDefaultAuth).
        client.authenticated = !shared.acl.auth_required();
        let default = crate::acl::ClientUser::default_of(&shared.acl);
        client.set_user(&shared.acl, default.user);
        Some(Reply::Simple("RESET"))
    }
}
