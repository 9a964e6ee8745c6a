//! `AUTH`.

use bytes::Bytes;

use super::{Args, ClientCommand, Command};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Authenticates the connection against `--requirepass`. The only user is
/// `default`, as in Redis without ACLs.
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

/// Checks credentials; shared by AUTH and HELLO ... AUTH.
///
/// # Errors
///
/// Redis's texts: no password configured, or `WRONGPASS`.
pub fn check(shared: &Shared, user: Option<&[u8]>, pass: &[u8]) -> Result<()> {
    let Some(expected) = shared.runtime().requirepass else {
        if user.is_none() {
            return Err(Error::msg(
                "AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?",
            ));
        }
        // With no password set the default user accepts any password, as in Redis.
        return if user == Some(b"default".as_slice()) {
            Ok(())
        } else {
            Err(wrongpass())
        };
    };
    let user_ok = user.is_none_or(|u| constant_time_eq(u, b"default"));
    let pass_ok = constant_time_eq(pass, expected.as_bytes());
    if user_ok & pass_ok {
        Ok(())
    } else {
        Err(wrongpass())
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
        Some(match check(shared, self.user.as_deref(), &self.pass) {
            Ok(()) => {
                client.authenticated = true;
                Reply::OK
            }
            Err(e) => Reply::from(e),
        })
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
