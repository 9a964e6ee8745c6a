//! `COMMAND`: the command table, for clients and redis-cli's hints.

use bytes::Bytes;

use super::table::{Arg, COMMANDS, CommandSpec, lookup};
use super::{Args, ClientCommand, Command, is};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Describes commands.
///
/// # Format
///
/// ```text
/// COMMAND
/// COMMAND COUNT
/// COMMAND LIST
/// COMMAND INFO [command-name ...]
/// COMMAND DOCS [command-name ...]
/// COMMAND GETKEYS command [arg ...]
/// ```
#[derive(Debug)]
pub enum CommandCmd {
    All,
    Count,
    List,
    Info(Vec<Bytes>),
    Docs(Vec<Bytes>),
    GetKeys(Vec<Bytes>),
}

/// The table's parser.
///
/// # Errors
///
/// As [`CommandCmd::parse`].
pub fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(CommandCmd::parse(args)?))
}

impl CommandCmd {
    /// Parses the arguments after the command name.
    ///
    /// # Errors
    ///
    /// Unknown subcommands with Redis's text.
    pub fn parse(args: &mut Args) -> Result<CommandCmd> {
        let Some(sub) = args.try_next() else {
            return Ok(CommandCmd::All);
        };
        Ok(if is(&sub, "COUNT") {
            CommandCmd::Count
        } else if is(&sub, "LIST") {
            CommandCmd::List
        } else if is(&sub, "INFO") {
            CommandCmd::Info(args.rest())
        } else if is(&sub, "DOCS") {
            CommandCmd::Docs(args.rest())
        } else if is(&sub, "GETKEYS") {
            let rest = args.rest();
            if rest.is_empty() {
                return Err(Error::msg(
                    "wrong number of arguments for 'command|getkeys' command",
                ));
            }
            CommandCmd::GetKeys(rest)
        } else {
            return Err(Error::UnknownSubcommand {
                command: "COMMAND".into(),
                sub: String::from_utf8_lossy(&sub).into_owned(),
            });
        })
    }
}

impl ClientCommand for CommandCmd {
    fn apply(&self, _: &Shared, _: &mut ClientState) -> Option<Reply> {
        Some(self.reply())
    }
}

impl CommandCmd {
    /// The reply.
    pub fn reply(&self) -> Reply {
        match self {
            CommandCmd::All => Reply::Array(COMMANDS.iter().map(info_entry).collect()),
            CommandCmd::Count => Reply::Int(COMMANDS.len() as i64),
            CommandCmd::List => Reply::Array(
                COMMANDS
                    .iter()
                    .map(|c| Reply::bulk_static(c.name))
                    .collect(),
            ),
            CommandCmd::Info(names) if names.is_empty() => {
                Reply::Array(COMMANDS.iter().map(info_entry).collect())
            }
            CommandCmd::Info(names) => Reply::Array(
                names
                    .iter()
                    // Redis answers an unknown name with a null bulk (`$-1`), not `*-1`.
                    .map(|n| find(n).map_or(Reply::Null, info_entry))
                    .collect(),
            ),
            CommandCmd::Docs(names) => {
                let specs: Vec<&CommandSpec> = if names.is_empty() {
                    COMMANDS.iter().collect()
                } else {
                    names.iter().filter_map(|n| find(n)).collect()
                };
                Reply::Map(
                    specs
                        .into_iter()
                        .map(|c| (Reply::bulk_static(c.name), docs_entry(c)))
                        .collect(),
                )
            }
            CommandCmd::GetKeys(args) => match get_keys(args) {
                Ok(keys) => Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
                Err(e) => Reply::from(e),
            },
        }
    }
}

fn find(name: &[u8]) -> Option<&'static CommandSpec> {
    lookup(&String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// The keys a command would touch, from the table's key positions.
fn get_keys(args: &[Bytes]) -> Result<Vec<Bytes>> {
    let spec = find(&args[0]).ok_or_else(|| Error::msg("Invalid command specified"))?;
    if !spec.arity_ok(args.len()) {
        return Err(Error::msg(
            "Invalid number of arguments specified for command",
        ));
    }
    let keys = spec.keys(args);
    if keys.is_empty() {
        return Err(Error::msg("The command has no key arguments"));
    }
    let keys = keys.into_iter().map(|(i, _)| args[i].clone()).collect();
    Ok(keys)
}

fn simple_set(items: &[&'static str]) -> Reply {
    Reply::Array(items.iter().map(|s| Reply::Simple(s)).collect())
}

/// One `COMMAND INFO` entry: the 10 elements clients (go-redis) expect.
fn info_entry(c: &'static CommandSpec) -> Reply {
    let acl: Vec<Reply> = c
        .acl
        .iter()
        .map(|a| Reply::Bulk(Bytes::from(format!("@{a}"))))
        .collect();
    let key_specs = if c.first_key > 0 {
        let lastkey = if c.last_key < 0 {
            c.last_key
        } else {
            c.last_key - c.first_key
        };
        let flags: &[&'static str] = if c.flags.contains(&"write") {
            &["RW", "UPDATE"]
        } else {
            &["RO", "ACCESS"]
        };
        vec![Reply::Map(vec![
            (Reply::bulk_static("flags"), simple_set(flags)),
            (
                Reply::bulk_static("begin_search"),
                Reply::Map(vec![
                    (Reply::bulk_static("type"), Reply::bulk_static("index")),
                    (
                        Reply::bulk_static("spec"),
                        Reply::Map(vec![(Reply::bulk_static("index"), Reply::Int(c.first_key))]),
                    ),
                ]),
            ),
            (
                Reply::bulk_static("find_keys"),
                Reply::Map(vec![
                    (Reply::bulk_static("type"), Reply::bulk_static("range")),
                    (
                        Reply::bulk_static("spec"),
                        Reply::Map(vec![
                            (Reply::bulk_static("lastkey"), Reply::Int(lastkey)),
                            (Reply::bulk_static("keystep"), Reply::Int(c.step)),
                            (Reply::bulk_static("limit"), Reply::Int(0)),
                        ]),
                    ),
                ]),
            ),
        ])]
    } else {
        Vec::new()
    };
    Reply::Array(vec![
        Reply::bulk_static(c.name),
        Reply::Int(c.arity),
        simple_set(c.flags),
        Reply::Int(c.first_key),
        Reply::Int(c.last_key),
        Reply::Int(c.step),
        Reply::Array(acl),
        Reply::Array(Vec::new()),
        Reply::Array(key_specs),
        Reply::Array(Vec::new()),
    ])
}

/// One `COMMAND DOCS` entry.
fn docs_entry(c: &'static CommandSpec) -> Reply {
    let mut m = vec![
        (Reply::bulk_static("summary"), Reply::bulk_static(c.summary)),
        (Reply::bulk_static("since"), Reply::bulk_static(c.since)),
        (Reply::bulk_static("group"), Reply::bulk_static(c.group)),
        (
            Reply::bulk_static("complexity"),
            Reply::bulk_static(c.complexity),
        ),
    ];
    if !c.args.is_empty() {
        let mut key_index = 0;
        m.push((
            Reply::bulk_static("arguments"),
            Reply::Array(c.args.iter().map(|a| arg_doc(a, &mut key_index)).collect()),
        ));
    }
    Reply::Map(m)
}

fn arg_doc(a: &'static Arg, key_index: &mut i64) -> Reply {
    let mut m = vec![
        (Reply::bulk_static("name"), Reply::bulk_static(a.name)),
        (
            Reply::bulk_static("type"),
            Reply::bulk_static(a.kind.name()),
        ),
    ];
    if a.kind == super::table::ArgType::Key {
        m.push((Reply::bulk_static("key_spec_index"), Reply::Int(0)));
        *key_index += 1;
    }
    if let Some(t) = a.token {
        m.push((Reply::bulk_static("token"), Reply::bulk_static(t)));
    }
    let mut flags = Vec::new();
    if a.optional {
        flags.push("optional");
    }
    if a.multiple {
        flags.push("multiple");
    }
    if !flags.is_empty() {
        m.push((Reply::bulk_static("flags"), simple_set(&flags)));
    }
    if !a.args.is_empty() {
        m.push((
            Reply::bulk_static("arguments"),
            Reply::Array(a.args.iter().map(|x| arg_doc(x, key_index)).collect()),
        ));
    }
    Reply::Map(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::testing::args;

    #[test]
    fn info_entries_have_ten_elements() {
        let Reply::Array(all) = CommandCmd::All.reply() else {
            panic!()
        };
        assert_eq!(all.len(), COMMANDS.len());
        for e in all {
            let Reply::Array(parts) = e else { panic!() };
            assert_eq!(parts.len(), 10);
        }
    }

    #[test]
    fn getkeys_uses_key_positions() {
        let c = CommandCmd::parse(&mut args(&["GETKEYS", "BDELAYPOP", "a", "b", "0"])).unwrap();
        assert_eq!(
            c.reply(),
            Reply::Array(vec![Reply::bulk("a"), Reply::bulk("b")])
        );
        let c = CommandCmd::parse(&mut args(&["GETKEYS", "DELAYADD", "q", "1", "m"])).unwrap();
        assert_eq!(c.reply(), Reply::Array(vec![Reply::bulk("q")]));
    }

    #[test]
    fn docs_describe_delayadd() {
        let c = CommandCmd::parse(&mut args(&["DOCS", "delayadd"])).unwrap();
        let Reply::Map(m) = c.reply() else { panic!() };
        assert_eq!(m.len(), 1);
        let Reply::Map(doc) = &m[0].1 else { panic!() };
        assert!(doc.iter().any(|(k, _)| *k == Reply::bulk("arguments")));
    }
}
