//! `AUTH`.

use bytes::Bytes;

use super::{Args, ClientCommand, Command};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Authenticates the connection as an ACL user (`default`, whose password
/// `--requirepass` sets, when no user is named).
///
/// # Format
///
/// ```text
/// AUTH [username] password
/// ```
#[derive(Debug)]
pub struct Auth {
    pub user: Option<Bytes>,
    pub pass: Bytes,
}

/// Compares two byte strings in time that depends only on their lengths,
/// so a wrong password cannot be found byte by byte by timing.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Authenticates the client as `user` (`default` when not given) if the
/// password is one of the user's and the user is on; shared by AUTH and
/// HELLO ... AUTH (`cmd`, logged in ACL LOG on failure, without the
/// password).
///
/// # Errors
///
/// Redis's texts: no password configured for the default user (AUTH with
/// only a password), or `WRONGPASS`.
pub(crate) fn authenticate(
    shared: &Shared,
    client: &mut ClientState,
    user: Option<&[u8]>,
    pass: &[u8],
    cmd: &'static str,
) -> Result<()> {
    let name = match user {
        Some(u) => u,
        None => {
            let open = shared
                .acl
                .user(b"default")
                .is_none_or(|d| d.flags().contains(&"nopass"));
            if open {
                return Err(Error::msg(
                    "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
                ));
            }
            b"default".as_slice()
        }
    };
    match shared.acl.authenticate(name, pass) {
        Some(u) => {
            client.authenticated = true;
            client.set_user(&shared.acl, u);
            Ok(())
        }
        None => {
            shared.acl.log(
                crate::acl::Reason::Auth,
                client
                    .info
                    .in_multi
                    .load(std::sync::atomic::Ordering::Relaxed),
                Bytes::from_static(cmd.as_bytes()),
                Bytes::copy_from_slice(name),
                client.info.line(),
            );
            Err(wrongpass())
        }
    }
}

fn wrongpass() -> Error {
    Error::Coded(
        "WRONGPASS",
        "invalid username-password pair or user is disabled.".into(),
    )
}

/// The table's parser.
///
/// # Errors
///
/// As [`Auth::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(Auth::parse(args)?))
}

impl Auth {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// More than two arguments.
    pub fn parse(args: &mut Args) -> Result<Auth> {
        let mut rest = args.rest();
        match rest.len() {
            1 => Ok(Auth {
                user: None,
                pass: rest.remove(0),
            }),
            2 => {
                let pass = rest.remove(1);
                Ok(Auth {
                    user: Some(rest.remove(0)),
                    pass,
                })
            }
            _ => Err(Error::Syntax),
        }
    }
}

impl ClientCommand for Auth {
    /// Authenticates the client.
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        Some(
            match authenticate(shared, client, self.user.as_deref(), &self.pass, "AUTH") {
                Ok(()) => Reply::OK,
                Err(e) => Reply::from(e),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret1"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }
}
