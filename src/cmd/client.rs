//! `CLIENT`.

use bytes::Bytes;

use super::{Args, ClientCommand, Command, is};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Connection introspection and naming.
///
/// # Format
///
/// ```text
/// CLIENT ID
/// CLIENT SETNAME name
/// CLIENT GETNAME
/// CLIENT SETINFO LIB-NAME|LIB-VER value
/// CLIENT LIST [TYPE normal] [ID id ...]
/// CLIENT INFO
/// CLIENT NO-EVICT|NO-TOUCH ON|OFF
/// CLIENT HELP
/// ```
#[derive(Debug)]
pub enum Client {
    Id,
    SetName(Bytes),
    GetName,
    SetInfo(Bytes, Bytes),
    List(Option<Vec<u64>>),
    Info,
    Flag,
    Help,
}

/// Validates and sets the client name (CLIENT SETNAME, HELLO SETNAME).
///
/// # Errors
///
/// Names with spaces, newlines or other special characters, as Redis refuses.
pub fn set_name(client: &ClientState, name: &[u8]) -> Result<()> {
    if name.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
        return Err(Error::msg(
            "Client names cannot contain spaces, newlines or special characters.",
        ));
    }
    if let Ok(mut n) = client.info.name.lock() {
        *n = String::from_utf8_lossy(name).into_owned();
    }
    Ok(())
}

/// The table's parser.
///
/// # Errors
///
/// As [`Client::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(Client::parse(args)?))
}

impl Client {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// Unknown subcommands with Redis's text, wrong arity, syntax.
    pub fn parse(args: &mut Args) -> Result<Client> {
        let sub = args.next_bytes()?;
        let lower = String::from_utf8_lossy(&sub).to_ascii_lowercase();
        let arity = |want: usize, args: &Args| {
            if args.remaining() == want {
                Ok(())
            } else {
                Err(Error::msg(format!(
                    "wrong number of arguments for 'client|{lower}' command"
                )))
            }
        };
        Ok(match lower.as_str() {
            "id" => {
                arity(0, args)?;
                Client::Id
            }
            "setname" => {
                arity(1, args)?;
                Client::SetName(args.next_bytes()?)
            }
            "getname" => {
                arity(0, args)?;
                Client::GetName
            }
            "setinfo" => {
                arity(2, args)?;
                let attr = args.next_bytes()?;
                let value = args.next_bytes()?;
                if !(is(&attr, "LIB-NAME") || is(&attr, "LIB-VER")) {
                    return Err(Error::msg(format!(
                        "Unrecognized option '{}'",
                        String::from_utf8_lossy(&attr)
                    )));
                }
                Client::SetInfo(attr, value)
            }
            "list" => {
                let mut ids = None;
                while let Some(opt) = args.try_next() {
                    if is(&opt, "TYPE") {
                        let t = args.next_bytes()?;
                        if !is(&t, "normal") {
                            ids = Some(Vec::new());
                        }
                    } else if is(&opt, "ID") {
                        let mut list = Vec::new();
                        for a in args.rest() {
                            let id = super::parse_int(&a)
                                .map_err(|_| Error::msg("Invalid client ID"))?;
                            list.push(id as u64);
                        }
                        ids = Some(list);
                    } else {
                        return Err(Error::Syntax);
                    }
                }
                Client::List(ids)
            }
            "info" => {
                arity(0, args)?;
                Client::Info
            }
            "no-evict" | "no-touch" => {
                arity(1, args)?;
                let v = args.next_bytes()?;
                if !(is(&v, "on") || is(&v, "off")) {
                    return Err(Error::Syntax);
                }
                Client::Flag
            }
            "help" => Client::Help,
            _ => {
                return Err(Error::UnknownSubcommand {
                    command: "CLIENT".into(),
                    sub: String::from_utf8_lossy(&sub).into_owned(),
                });
            }
        })
    }
}

impl ClientCommand for Client {
    /// Applies the subcommand.
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        Some(self.run(shared, client))
    }
}

impl Client {
    fn run(&self, shared: &Shared, client: &mut ClientState) -> Reply {
        match self {
            Client::Id => Reply::Int(client.info.id as i64),
            Client::SetName(name) => match set_name(client, name) {
                Ok(()) => Reply::OK,
                Err(e) => Reply::from(e),
            },
            Client::GetName => {
                let name = client
                    .info
                    .name
                    .lock()
                    .map(|n| n.clone())
                    .unwrap_or_default();
                if name.is_empty() {
                    Reply::Null
                } else {
                    Reply::bulk(name)
                }
            }
            Client::SetInfo(attr, value) => {
                if value.iter().any(|&c| !(b'!'..=b'~').contains(&c)) {
                    return Reply::from(Error::msg(format!(
                        "{} cannot contain spaces, newlines or special characters.",
                        String::from_utf8_lossy(attr).to_ascii_lowercase()
                    )));
                }
                let slot = if is(attr, "LIB-NAME") {
                    &client.info.lib_name
                } else {
                    &client.info.lib_ver
                };
                if let Ok(mut s) = slot.lock() {
                    *s = String::from_utf8_lossy(value).into_owned();
                }
                Reply::OK
            }
            Client::List(ids) => {
                let clients = shared
                    .clients
                    .lock()
                    .map(|c| c.values().cloned().collect::<Vec<_>>())
                    .unwrap_or_default();
                let mut out = String::new();
                for c in clients {
                    if ids.as_ref().is_none_or(|ids| ids.contains(&c.id)) {
                        out.push_str(&c.line());
                        out.push('\n');
                    }
                }
                Reply::bulk(out)
            }
            Client::Info => Reply::bulk(format!("{}\n", client.info.line())),
            Client::Flag => Reply::OK,
            Client::Help => Reply::Array(
                [
                    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "GETNAME",
                    "    Return the name of the current connection.",
                    "ID",
                    "    Return the ID of the current connection.",
                    "INFO",
                    "    Return information about the current client connection.",
                    "LIST [TYPE normal] [ID <id> [<id> ...]]",
                    "    Return information about client connections.",
                    "SETINFO <option> <value>",
                    "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                    "SETNAME <name>",
                    "    Assign the name <name> to the current connection.",
                    "HELP",
                    "    Print this help.",
                ]
                .iter()
                .map(|l| Reply::bulk_static(l))
                .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::{args, err};

    #[test]
    fn unknown_subcommand_text() {
        assert_eq!(
            err(Client::parse(&mut args(&["bogus"]))),
            "ERR unknown subcommand 'bogus'. Try CLIENT HELP."
        );
        assert_eq!(
            err(Client::parse(&mut args(&["id", "x"]))),
            "ERR wrong number of arguments for 'client|id' command"
        );
        assert!(Client::parse(&mut args(&["SETINFO", "LIB-NAME", "redis-py"])).is_ok());
        assert!(matches!(
            Client::parse(&mut args(&["ID"])).unwrap(),
            Client::Id
        ));
    }
}
