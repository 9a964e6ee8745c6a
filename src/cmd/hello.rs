//! `HELLO`.

use bytes::Bytes;

use super::{Args, ClientCommand, Command, is};
use crate::client::ClientState;
use crate::protocol::{Protocol, Reply};
use crate::shared::Shared;
use crate::{Error, Result};

/// The Redis version delayd reports: clients gate features on it, and
/// delayd speaks the Redis 7 protocol (RESP3, HELLO, CLIENT SETINFO).
pub const REDIS_VERSION: &str = "7.2.0";

/// Handshake: switches the protocol (2 or 3), optionally authenticates and
/// names the client, and replies with a map describing the server.
///
/// # Format
///
/// ```text
/// HELLO [protover [AUTH username password] [SETNAME clientname]]
/// ```
#[derive(Debug)]
pub struct Hello {
    pub proto: Option<Protocol>,
    pub auth: Option<(Bytes, Bytes)>,
    pub setname: Option<Bytes>,
}

/// The table's parser.
///
/// # Errors
///
/// As [`Hello::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(Hello::parse(args)?))
}

impl Hello {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// `NOPROTO` for a version other than 2 or 3, syntax errors.
    pub fn parse(args: &mut Args) -> Result<Hello> {
        let mut h = Hello {
            proto: None,
            auth: None,
            setname: None,
        };
        let Some(v) = args.try_next() else {
            return Ok(h);
        };
        let v = super::parse_int(&v)
            .map_err(|_| Error::msg("Protocol version is not an integer or out of range"))?;
        h.proto = Some(match v {
            2 => Protocol::Resp2,
            3 => Protocol::Resp3,
            _ => {
                return Err(Error::Coded(
                    "NOPROTO",
                    "unsupported protocol version".into(),
                ));
            }
        });
        while let Some(opt) = args.try_next() {
            if is(&opt, "AUTH") && args.remaining() >= 2 {
                let user = args.next_bytes()?;
                h.auth = Some((user, args.next_bytes()?));
            } else if is(&opt, "SETNAME") && args.remaining() >= 1 {
                h.setname = Some(args.next_bytes()?);
            } else {
                return Err(Error::msg(format!(
                    "Syntax error in HELLO option '{}'",
                    String::from_utf8_lossy(&opt)
                )));
            }
        }
        Ok(h)
    }
}

impl ClientCommand for Hello {
    /// Applies the handshake to the client.
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        Some(self.handshake(shared, client))
    }
}

impl Hello {
    fn handshake(&self, shared: &Shared, client: &mut ClientState) -> Reply {
        if let Some((user, pass)) = &self.auth
            && let Err(e) = super::auth::authenticate(shared, client, Some(user), pass, "HELLO")
        {
            return Reply::from(e);
        }
        if !client.authenticated && shared.acl.auth_required() {
            return Reply::from(Error::Coded(
                "NOAUTH",
                "HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time".into(),
            ));
        }
        if let Some(name) = &self.setname
            && let Err(e) = super::client::set_name(client, name)
        {
            return Reply::from(e);
        }
        if let Some(p) = self.proto {
            client.set_proto(p);
        }
        let field = |k: &'static str, v: Reply| (Reply::bulk_static(k), v);
        Reply::Map(vec![
            field("server", Reply::bulk_static("redis")),
            field("version", Reply::bulk_static(REDIS_VERSION)),
            field("proto", Reply::Int(client.proto.version())),
            field("id", Reply::Int(client.info.id as i64)),
            field("mode", Reply::bulk_static(shared.mode_name())),
            field("role", Reply::bulk_static("master")),
            field("modules", Reply::Array(Vec::new())),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::{args, err};

    #[test]
    fn bad_versions() {
        assert_eq!(
            err(Hello::parse(&mut args(&["4"]))),
            "NOPROTO unsupported protocol version"
        );
        assert_eq!(
            err(Hello::parse(&mut args(&["1"]))),
            "NOPROTO unsupported protocol version"
        );
        assert_eq!(
            err(Hello::parse(&mut args(&["x"]))),
            "ERR Protocol version is not an integer or out of range"
        );
        assert_eq!(
            err(Hello::parse(&mut args(&["3", "AUTH", "u"]))),
            "ERR Syntax error in HELLO option 'AUTH'"
        );
        assert!(Hello::parse(&mut args(&["3", "AUTH", "default", "pw", "SETNAME", "x"])).is_ok());
    }
}
