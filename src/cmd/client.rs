//! `CLIENT`.

use bytes::Bytes;

use super::{Args, ClientCommand, Command, is};
use crate::client::{ClientInfo, ClientState, ReplyMode, UNBLOCK_ERROR, UNBLOCK_TIMEOUT};
use crate::protocol::Reply;
use crate::shared::PauseMode;
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
/// CLIENT UNBLOCK id [TIMEOUT|ERROR]
/// CLIENT KILL ip:port
/// CLIENT KILL [ID id] [ADDR ip:port] [LADDR ip:port] [USER name] [TYPE type] [SKIPME yes|no]
/// CLIENT PAUSE timeout [WRITE|ALL]
/// CLIENT UNPAUSE
/// CLIENT REPLY ON|OFF|SKIP
/// CLIENT TRACKING ... (refused: not supported)
/// CLIENT HELP
/// ```
#[derive(Debug)]
pub enum Client {
    /// CLIENT UNBLOCK: the client id and how to wake it.
    Unblock(u64, u8),
    /// CLIENT KILL ip:port (answers OK or `No such client`).
    KillAddr(String),
    /// CLIENT KILL with filters (answers the number killed).
    Kill(KillFilter),
    /// CLIENT PAUSE: milliseconds and mode.
    Pause(u64, PauseMode),
    Unpause,
    Reply(ReplyMode),
    Id,
    SetName(Bytes),
    GetName,
    SetInfo(Bytes, Bytes),
    List(Option<Vec<u64>>),
    Info,
    Flag,
    Help,
}

/// CLIENT KILL's filters: a client is killed if it matches all that are set.
#[derive(Debug, Default)]
pub struct KillFilter {
    id: Option<u64>,
    addr: Option<String>,
    laddr: Option<String>,
    /// `USER`: clients running as that ACL user.
    user: Option<Bytes>,
    /// `TYPE` other than normal: matches no client, every client being a
    /// normal one.
    none: bool,
    /// `SKIPME no`: the caller may kill itself.
    include_me: bool,
}

impl KillFilter {
    fn matches(&self, c: &ClientInfo, me: u64) -> bool {
        !self.none
            && (self.include_me || c.id != me)
            && self.id.is_none_or(|id| id == c.id)
            && self.addr.as_ref().is_none_or(|a| *a == c.addr)
            && self.laddr.as_ref().is_none_or(|a| *a == c.laddr)
            && self.user.as_ref().is_none_or(|u| *u == c.user_name())
    }
}

/// Redis's text for a subcommand given the wrong number of arguments where
/// the count decides the form.
fn wrong_args(sub: &[u8]) -> Error {
    Error::msg(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try CLIENT HELP.",
        String::from_utf8_lossy(sub)
    ))
}

/// CLIENT KILL's arguments after the subcommand.
fn parse_kill(args: &mut Args) -> Result<Client> {
    let rest = args.rest();
    if rest.len() == 1 {
        return Ok(Client::KillAddr(
            String::from_utf8_lossy(&rest[0]).into_owned(),
        ));
    }
    if !rest.len().is_multiple_of(2) {
        return Err(Error::Syntax);
    }
    let mut f = KillFilter::default();
    for pair in rest.chunks(2) {
        let (opt, v) = (&pair[0], &pair[1]);
        let text = String::from_utf8_lossy(v).into_owned();
        if is(opt, "ID") {
            let id = super::parse_int(v).ok().filter(|&id| id > 0);
            let Some(id) = id else {
                return Err(Error::msg("client-id should be greater than 0"));
            };
            f.id = Some(id as u64);
        } else if is(opt, "ADDR") {
            f.addr = Some(text);
        } else if is(opt, "LADDR") {
            f.laddr = Some(text);
        } else if is(opt, "TYPE") {
            match text.to_ascii_lowercase().as_str() {
                "normal" => {}
                "master" | "replica" | "slave" | "pubsub" => f.none = true,
                _ => return Err(Error::msg(format!("Unknown client type '{text}'"))),
            }
        } else if is(opt, "USER") {
            // Whether the user exists is checked when it runs.
            f.user = Some(v.clone());
        } else if is(opt, "SKIPME") {
            if is(v, "yes") {
                f.include_me = false;
            } else if is(v, "no") {
                f.include_me = true;
            } else {
                return Err(Error::Syntax);
            }
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(Client::Kill(f))
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
            "unblock" => {
                if !(1..=2).contains(&args.remaining()) {
                    return Err(wrong_args(&sub));
                }
                let id = super::parse_int(&args.next_bytes()?)?;
                let how = match args.try_next() {
                    None => UNBLOCK_TIMEOUT,
                    Some(r) if is(&r, "TIMEOUT") => UNBLOCK_TIMEOUT,
                    Some(r) if is(&r, "ERROR") => UNBLOCK_ERROR,
                    Some(_) => {
                        return Err(Error::msg(
                            "CLIENT UNBLOCK reason should be TIMEOUT or ERROR",
                        ));
                    }
                };
                // Ids are positive: a negative one matches no client.
                Client::Unblock(u64::try_from(id).unwrap_or(0), how)
            }
            "kill" => {
                if args.remaining() == 0 {
                    return Err(Error::msg(format!(
                        "wrong number of arguments for 'client|{lower}' command"
                    )));
                }
                parse_kill(args)?
            }
            "pause" => {
                if args.remaining() == 0 {
                    return Err(Error::msg(format!(
                        "wrong number of arguments for 'client|{lower}' command"
                    )));
                }
                if args.remaining() > 2 {
                    return Err(wrong_args(&sub));
                }
                let ms = super::parse_int(&args.next_bytes()?)
                    .map_err(|_| Error::msg("timeout is not an integer or out of range"))?;
                if ms < 0 {
                    return Err(Error::msg("timeout is negative"));
                }
                let mode = match args.try_next() {
                    None => PauseMode::All,
                    Some(m) if is(&m, "WRITE") => PauseMode::Write,
                    Some(m) if is(&m, "ALL") => PauseMode::All,
                    Some(_) => {
                        return Err(Error::msg("CLIENT PAUSE mode must be WRITE or ALL"));
                    }
                };
                Client::Pause(ms as u64, mode)
            }
            "unpause" => {
                arity(0, args)?;
                Client::Unpause
            }
            "reply" => {
                arity(1, args)?;
                let v = args.next_bytes()?;
                Client::Reply(if is(&v, "on") {
                    ReplyMode::On
                } else if is(&v, "off") {
                    ReplyMode::Off
                } else if is(&v, "skip") {
                    ReplyMode::SkipNext
                } else {
                    return Err(Error::Syntax);
                })
            }
            "tracking" | "trackinginfo" | "getredir" | "caching" => {
                return Err(Error::msg(
                    "CLIENT TRACKING (client-side caching) is not supported by delayd",
                ));
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
        self.run(shared, client)
    }
}

impl Client {
    fn run(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        Some(match self {
            Client::Unblock(id, how) => {
                let target = shared.clients.lock().ok().and_then(|c| c.get(id).cloned());
                Reply::Int(i64::from(target.is_some_and(|c| c.unblock(*how))))
            }
            Client::KillAddr(addr) => {
                let target = shared
                    .clients
                    .lock()
                    .ok()
                    .and_then(|c| c.values().find(|c| c.addr == *addr).cloned());
                match target {
                    // As in Redis the old form may kill the caller itself.
                    Some(c) => {
                        c.kill();
                        Reply::OK
                    }
                    None => Reply::from(Error::msg("No such client")),
                }
            }
            Client::Kill(f) => {
                if let Some(u) = &f.user
                    && shared.acl.user(u).is_none()
                {
                    return Some(Reply::from(Error::msg(format!(
                        "No such user '{}'",
                        String::from_utf8_lossy(u)
                    ))));
                }
                let targets: Vec<_> = shared
                    .clients
                    .lock()
                    .map(|c| {
                        c.values()
                            .filter(|c| f.matches(c, client.info.id))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                for c in &targets {
                    c.kill();
                }
                Reply::Int(targets.len() as i64)
            }
            Client::Pause(ms, mode) => {
                let until = std::time::Instant::now()
                    .checked_add(std::time::Duration::from_millis(*ms))
                    .unwrap_or_else(|| {
                        std::time::Instant::now() + std::time::Duration::from_secs(1 << 40)
                    });
                shared.pause.pause(until, *mode);
                Reply::OK
            }
            Client::Unpause => {
                shared.pause.unpause();
                Reply::OK
            }
            Client::Reply(mode) => {
                // OFF and SKIP are not answered; ON is, even after OFF.
                if *mode == ReplyMode::SkipNext && client.reply_mode == ReplyMode::Off {
                    return None;
                }
                client.reply_mode = *mode;
                return (*mode == ReplyMode::On).then_some(Reply::OK);
            }
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
                    return Some(Reply::from(Error::msg(format!(
                        "{} cannot contain spaces, newlines or special characters.",
                        String::from_utf8_lossy(attr).to_ascii_lowercase()
                    ))));
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
                    "KILL <ip:port>",
                    "    Kill connection made from <ip:port>.",
                    "KILL <option> <value> [<option> <value> [...]]",
                    "    Kill connections. Options are:",
                    "    * ADDR (<ip:port>|<unixsocket>:0)",
                    "      Kill connections made from the specified address",
                    "    * LADDR (<ip:port>|<unixsocket>:0)",
                    "      Kill connections made to specified local address",
                    "    * TYPE (NORMAL|MASTER|REPLICA|PUBSUB)",
                    "      Kill connections by type.",
                    "    * USER <username>",
                    "      Kill connections authenticated by <username>.",
                    "    * SKIPME (YES|NO)",
                    "      Skip killing current connection (default: yes).",
                    "LIST [TYPE normal] [ID <id> [<id> ...]]",
                    "    Return information about client connections.",
                    "UNPAUSE",
                    "    Stop the current client pause, resuming traffic.",
                    "PAUSE <timeout> [WRITE|ALL]",
                    "    Suspend all, or just write, clients for <timeout> milliseconds.",
                    "REPLY (ON|OFF|SKIP)",
                    "    Control the replies sent to the current connection.",
                    "SETINFO <option> <value>",
                    "    Set client meta attr. Options are: LIB-NAME, LIB-VER.",
                    "SETNAME <name>",
                    "    Assign the name <name> to the current connection.",
                    "UNBLOCK <clientid> [TIMEOUT|ERROR]",
                    "    Unblock the specified blocked client.",
                    "NO-EVICT (ON|OFF)",
                    "    Protect current client connection from eviction (accepted, no effect).",
                    "TRACKING",
                    "    Not supported by delayd (client-side caching).",
                    "HELP",
                    "    Print this help.",
                ]
                .iter()
                .map(|l| Reply::bulk_static(l))
                .collect(),
            ),
        })
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
