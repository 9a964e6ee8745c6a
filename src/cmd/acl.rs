//! `ACL`: users and their permissions (see [`crate::acl`]), with Redis
//! 7.0's subcommands, texts and reply shapes.

use std::io::Read;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Args, ClientCommand, Command, is};
use crate::acl::{self, Denied};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Manages ACL users.
///
/// # Format
///
/// ```text
/// ACL SETUSER username [rule ...]
/// ACL DELUSER username [username ...]
/// ACL GETUSER username
/// ACL LIST | USERS | WHOAMI | SAVE | LOAD | HELP
/// ACL CAT [category]
/// ACL LOG [count | RESET]
/// ACL GENPASS [bits]
/// ACL DRYRUN username command [arg ...]
/// ```
#[derive(Debug)]
pub enum AclCmd {
    SetUser(Bytes, Vec<Bytes>),
    DelUser(Vec<Bytes>),
    GetUser(Bytes),
    List,
    Users,
    WhoAmI,
    Save,
    Load,
    Cat(Option<Bytes>),
    /// `None`: RESET.
    Log(Option<i64>),
    GenPass(i64),
    DryRun(Bytes, Vec<Bytes>),
    Help,
}

/// The table's parser.
///
/// # Errors
///
/// As [`AclCmd::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(AclCmd::parse(args)?))
}

/// Redis's text for a subcommand whose argument count picks no form.
fn wrong_args(sub: &[u8]) -> Error {
    Error::msg(format!(
        "unknown subcommand or wrong number of arguments for '{}'. Try ACL HELP.",
        String::from_utf8_lossy(sub)
    ))
}

impl AclCmd {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// Unknown subcommands and wrong argument counts, with Redis's texts.
    pub fn parse(args: &mut Args) -> Result<AclCmd> {
        let sub = args.next_bytes()?;
        let lower = String::from_utf8_lossy(&sub).to_ascii_lowercase();
        let mut rest = args.rest();
        let n = rest.len() + 2;
        // Each subcommand's arity, as Redis's table has it (checked before
        // the subcommand looks at its arguments).
        let arity: i64 = match lower.as_str() {
            "cat" | "genpass" | "log" => -2,
            "deluser" | "setuser" => -3,
            "dryrun" => -4,
            "getuser" => 3,
            "list" | "users" | "whoami" | "save" | "load" | "help" => 2,
            _ => {
                return Err(Error::UnknownSubcommand {
                    command: "ACL".into(),
                    sub: String::from_utf8_lossy(&sub).into_owned(),
                });
            }
        };
        let ok = if arity >= 0 {
            n as i64 == arity
        } else {
            n as i64 >= -arity
        };
        if !ok {
            return Err(Error::msg(format!(
                "wrong number of arguments for 'acl|{lower}' command"
            )));
        }
        Ok(match lower.as_str() {
            "setuser" => {
                let name = rest.remove(0);
                AclCmd::SetUser(name, rest)
            }
            "deluser" => AclCmd::DelUser(rest),
            "getuser" => AclCmd::GetUser(rest.remove(0)),
            "list" => AclCmd::List,
            "users" => AclCmd::Users,
            "whoami" => AclCmd::WhoAmI,
            "save" => AclCmd::Save,
            "load" => AclCmd::Load,
            "help" => AclCmd::Help,
            "cat" if rest.len() <= 1 => AclCmd::Cat(rest.pop()),
            "log" if rest.is_empty() => AclCmd::Log(Some(10)),
            "log" if rest.len() == 1 => {
                if is(&rest[0], "RESET") {
                    AclCmd::Log(None)
                } else {
                    AclCmd::Log(Some(super::parse_int(&rest[0])?.max(0)))
                }
            }
            "genpass" if rest.is_empty() => AclCmd::GenPass(256),
            "genpass" if rest.len() == 1 => AclCmd::GenPass(super::parse_int(&rest[0])?),
            "dryrun" => {
                let user = rest.remove(0);
                AclCmd::DryRun(user, rest)
            }
            _ => return Err(wrong_args(&sub)),
        })
    }
}

impl ClientCommand for AclCmd {
    fn apply(&self, shared: &Shared, client: &mut ClientState) -> Option<Reply> {
        Some(self.run(shared, client).unwrap_or_else(Reply::from))
    }
}

fn bulk_vec(v: Vec<u8>) -> Reply {
    Reply::Bulk(Bytes::from(v))
}

fn no_aclfile() -> Error {
    Error::msg(
        "This Redis instance is not configured to use an ACL file. You may want to specify users via the ACL SETUSER command and then issue a CONFIG REWRITE (assuming you have a Redis configuration file set) in order to store users in the Redis configuration.",
    )
}

impl AclCmd {
    fn run(&self, shared: &Shared, client: &mut ClientState) -> Result<Reply> {
        let acl = &shared.acl;
        Ok(match self {
            AclCmd::SetUser(name, rules) => {
                if acl::has_spaces(name) {
                    return Err(Error::msg(
                        "Usernames can't contain spaces or null characters",
                    ));
                }
                acl.set_user(name, rules).map_err(Error::msg)?;
                Reply::OK
            }
            AclCmd::DelUser(names) => {
                if names.iter().any(|n| n.as_ref() == b"default") {
                    return Err(Error::msg("The 'default' user cannot be removed"));
                }
                let gone = acl.delete(names);
                shared.kill_clients_of(&gone);
                Reply::Int(gone.len() as i64)
            }
            AclCmd::GetUser(name) => match acl.user(name) {
                None => Reply::Null,
                Some(u) => {
                    let f = |k: &'static str, v: Reply| (Reply::bulk_static(k), v);
                    Reply::Map(vec![
                        f(
                            "flags",
                            Reply::Array(u.flags().into_iter().map(Reply::bulk_static).collect()),
                        ),
                        f(
                            "passwords",
                            Reply::Array(
                                u.password_hashes()
                                    .iter()
                                    .map(|h| Reply::Bulk(Bytes::from(h.clone())))
                                    .collect(),
                            ),
                        ),
                        f("commands", Reply::Bulk(Bytes::from(u.describe_commands()))),
                        f("keys", bulk_vec(u.describe_keys())),
                        f("channels", bulk_vec(u.describe_channels())),
                        f("selectors", Reply::Array(Vec::new())),
                    ])
                }
            },
            AclCmd::List => Reply::Array(
                acl.users()
                    .iter()
                    .map(|u| {
                        let mut line = b"user ".to_vec();
                        line.extend_from_slice(&u.name);
                        line.push(b' ');
                        line.extend_from_slice(&u.describe());
                        bulk_vec(line)
                    })
                    .collect(),
            ),
            AclCmd::Users => Reply::Array(
                acl.users()
                    .iter()
                    .map(|u| Reply::Bulk(u.name.clone()))
                    .collect(),
            ),
            AclCmd::WhoAmI => Reply::Bulk(client.user.user.name.clone()),
            AclCmd::Save => {
                let Some(path) = &shared.config.aclfile else {
                    return Err(no_aclfile());
                };
                if let Err(e) = save(path, &acl.file_text()) {
                    tracing::warn!("Writing ACL file for ACL SAVE: {e}");
                    return Err(Error::msg(
                        "There was an error trying to save the ACLs. Please check the server logs for more information",
                    ));
                }
                Reply::OK
            }
            AclCmd::Load => {
                if shared.config.aclfile.is_none() {
                    return Err(no_aclfile());
                }
                shared.load_aclfile().map_err(Error::msg)?;
                Reply::OK
            }
            AclCmd::Cat(None) => Reply::Array(
                acl::CATEGORIES
                    .iter()
                    .map(|c| Reply::bulk_static(c))
                    .collect(),
            ),
            AclCmd::Cat(Some(cat)) => {
                let name = String::from_utf8_lossy(cat);
                let Some(cmds) = acl::commands_in(&name) else {
                    let shown: String = name.chars().take(128).collect();
                    return Err(Error::msg(format!("Unknown category '{shown}'")));
                };
                Reply::Array(
                    cmds.into_iter()
                        .map(|c| Reply::Bulk(Bytes::copy_from_slice(c.as_bytes())))
                        .collect(),
                )
            }
            AclCmd::Log(None) => {
                acl.log_reset();
                Reply::OK
            }
            AclCmd::Log(Some(count)) => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let entries = acl.log_entries(usize::try_from(*count).unwrap_or(usize::MAX));
                Reply::Array(
                    entries
                        .into_iter()
                        .map(|e| {
                            let f = |k: &'static str, v: Reply| (Reply::bulk_static(k), v);
                            let age = now.saturating_sub(e.ctime) as f64 / 1000.0;
                            Reply::Map(vec![
                                f("count", Reply::Int(e.count as i64)),
                                f("reason", Reply::bulk_static(e.reason_name())),
                                f("context", Reply::bulk_static(e.context)),
                                f("object", Reply::Bulk(e.object)),
                                f("username", Reply::Bulk(e.username)),
                                f("age-seconds", Reply::Double(age)),
                                f("client-info", Reply::Bulk(Bytes::from(e.client_info))),
                            ])
                        })
                        .collect(),
                )
            }
            AclCmd::GenPass(bits) => {
                const MAX_BITS: i64 = 4096;
                if *bits <= 0 || *bits > MAX_BITS {
                    return Err(Error::msg(format!(
                        "ACL GENPASS argument must be the number of bits for the output password, a positive number up to {MAX_BITS}"
                    )));
                }
                let chars = ((bits + 3) / 4) as usize;
                let mut raw = vec![0u8; chars.div_ceil(2)];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut raw))
                    .map_err(|e| Error::msg(format!("cannot read random bytes: {e}")))?;
                let mut hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
                hex.truncate(chars);
                Reply::Bulk(Bytes::from(hex))
            }
            AclCmd::DryRun(name, args) => {
                let Some(u) = acl.user(name) else {
                    return Err(Error::msg(format!(
                        "User '{}' not found",
                        String::from_utf8_lossy(name)
                    )));
                };
                let lower = String::from_utf8_lossy(&args[0]).to_ascii_lowercase();
                let Some(spec) = super::table::lookup(&lower) else {
                    return Err(Error::msg(format!(
                        "Command '{}' not found",
                        String::from_utf8_lossy(&args[0])
                    )));
                };
                let fullname = acl::call_name(spec, args);
                if !spec.arity_ok(args.len()) {
                    return Err(Error::msg(format!(
                        "wrong number of arguments for '{fullname}' command"
                    )));
                }
                match u.check(spec, args) {
                    Ok(()) => Reply::OK,
                    Err(Denied::Command) => Reply::Bulk(Bytes::from(format!(
                        "This user has no permissions to run the '{fullname}' command"
                    ))),
                    Err(Denied::Key(i)) => Reply::Bulk(Bytes::from(format!(
                        "This user has no permissions to access the '{}' key",
                        String::from_utf8_lossy(&args[i])
                    ))),
                }
            }
            AclCmd::Help => Reply::Array(
                [
                    "ACL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
                    "CAT [<category>]",
                    "    List all commands that belong to <category>, or all command categories",
                    "    when no category is specified.",
                    "DELUSER <username> [<username> ...]",
                    "    Delete a list of users.",
                    "DRYRUN <username> <command> [<arg> ...]",
                    "    Returns whether the user can execute the given command without executing the command.",
                    "GETUSER <username>",
                    "    Get the user's details.",
                    "GENPASS [<bits>]",
                    "    Generate a secure 256-bit user password. The optional `bits` argument can",
                    "    be used to specify a different size.",
                    "LIST",
                    "    Show users details in config file format.",
                    "LOAD",
                    "    Reload users from the ACL file.",
                    "LOG [<count> | RESET]",
                    "    Show the ACL log entries.",
                    "SAVE",
                    "    Save the current config to the ACL file.",
                    "SETUSER <username> <attribute> [<attribute> ...]",
                    "    Create or modify a user with the specified attributes.",
                    "USERS",
                    "    List all the registered usernames.",
                    "WHOAMI",
                    "    Return the current connection username.",
                    "HELP",
                    "    Print this help.",
                ]
                .into_iter()
                .map(Reply::Simple)
                .collect(),
            ),
        })
    }
}

/// Writes the ACL file as Redis's ACL SAVE does: a temporary file next to
/// it, then a rename, so a crash leaves the old file or the new one.
fn save(path: &std::path::Path, text: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    ));
    let tmp = std::path::PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text)?;
        f.sync_all()
    });
    let r = written.and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// INFO's ACL figures (`# Stats`, as Redis 7.2 shows them).
pub(crate) fn info_stats(shared: &Shared) -> [(&'static str, u64); 4] {
    let a = &shared.acl;
    [
        (
            "acl_access_denied_auth",
            a.denied_auth.load(Ordering::Relaxed),
        ),
        (
            "acl_access_denied_cmd",
            a.denied_cmd.load(Ordering::Relaxed),
        ),
        (
            "acl_access_denied_key",
            a.denied_key.load(Ordering::Relaxed),
        ),
        ("acl_access_denied_channel", 0),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::{args, err};

    #[test]
    fn arity_and_subcommand_errors() {
        assert_eq!(
            err(AclCmd::parse(&mut args(&["setuser"]))),
            "ERR wrong number of arguments for 'acl|setuser' command"
        );
        assert_eq!(
            err(AclCmd::parse(&mut args(&["Bogus"]))),
            "ERR unknown subcommand 'Bogus'. Try ACL HELP."
        );
        assert_eq!(
            err(AclCmd::parse(&mut args(&["cat", "a", "b"]))),
            "ERR unknown subcommand or wrong number of arguments for 'cat'. Try ACL HELP."
        );
        assert_eq!(
            err(AclCmd::parse(&mut args(&["log", "x"]))),
            "ERR value is not an integer or out of range"
        );
    }
}
