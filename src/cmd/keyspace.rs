//! Generic key commands over queues: `DEL`, `UNLINK`, `EXISTS`, `TYPE`,
//! `KEYS`, `SCAN`, `DBSIZE`, `FLUSHDB`, `FLUSHALL`.
//!
//! Every key of delayd is a delay queue; a queue exists while it has members.

use bytes::Bytes;

use super::{Args, Command, EngineCommand, is};
use crate::engine::core::Core;
use crate::protocol::Reply;
use crate::{Error, Result};

/// The type name `TYPE` and `SCAN ... TYPE` use for a queue.
pub const TYPE_NAME: &str = "delayqueue";

/// A generic key command.
///
/// # Format
///
/// ```text
/// DEL key [key ...]
/// UNLINK key [key ...]
/// EXISTS key [key ...]
/// TYPE key
/// KEYS pattern
/// SCAN cursor [MATCH pattern] [COUNT count] [TYPE type]
/// DBSIZE
/// FLUSHDB [ASYNC|SYNC]
/// FLUSHALL [ASYNC|SYNC]
/// ```
#[derive(Debug)]
pub enum Keyspace {
    Del(Vec<Bytes>),
    Exists(Vec<Bytes>),
    Type(Bytes),
    Keys(Bytes),
    Scan {
        cursor: u64,
        pattern: Option<Bytes>,
        count: usize,
        type_ok: bool,
    },
    DbSize,
    Flush,
}

/// `DEL` and `UNLINK` (the same here: deleting a queue is one batch).
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_del(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(Keyspace::Del(args.rest())))
}

/// `EXISTS`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_exists(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(Keyspace::Exists(args.rest())))
}

/// `TYPE`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_type(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(Keyspace::Type(args.next_bytes()?)))
}

/// `KEYS`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_keys(args: &mut Args) -> Result<Command> {
    Ok(Command::engine(Keyspace::Keys(args.next_bytes()?)))
}

/// `DBSIZE`.
///
/// # Errors
///
/// None: the arity is checked by the table.
pub fn parse_dbsize(_: &mut Args) -> Result<Command> {
    Ok(Command::engine(Keyspace::DbSize))
}

/// `FLUSHDB` and `FLUSHALL` (one database).
///
/// # Errors
///
/// A mode other than `ASYNC` or `SYNC`.
pub fn parse_flush(args: &mut Args) -> Result<Command> {
    if let Some(mode) = args.try_next()
        && !(is(&mode, "ASYNC") || is(&mode, "SYNC"))
    {
        return Err(Error::Syntax);
    }
    args.finish()?;
    Ok(Command::engine(Keyspace::Flush))
}

/// `SCAN`.
///
/// # Errors
///
/// A bad cursor or count, an unknown option.
pub fn parse_scan(args: &mut Args) -> Result<Command> {
    let cursor = std::str::from_utf8(&args.next_bytes()?)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| Error::msg("invalid cursor"))?;
    let (mut pattern, mut count, mut type_ok) = (None, 10usize, true);
    while let Some(opt) = args.try_next() {
        if is(&opt, "MATCH") {
            pattern = Some(args.next_bytes()?);
        } else if is(&opt, "COUNT") {
            let n = args.next_int()?;
            if n < 1 {
                return Err(Error::Syntax);
            }
            count = n.min(1 << 20) as usize;
        } else if is(&opt, "TYPE") {
            type_ok = is(&args.next_bytes()?, TYPE_NAME);
        } else {
            return Err(Error::Syntax);
        }
    }
    Ok(Command::engine(Keyspace::Scan {
        cursor,
        pattern,
        count,
        type_ok,
    }))
}

impl EngineCommand for Keyspace {
    fn may_reply_large(&self) -> bool {
        match self {
            Keyspace::Keys(_) => true,
            Keyspace::Scan { count, .. } => *count > super::FEW,
            _ => false,
        }
    }

    /// Applies the command.
    ///
    /// # Errors
    ///
    /// A storage error.
    fn apply(&self, core: &mut Core) -> Result<Reply> {
        Ok(match self {
            Keyspace::Del(keys) => Reply::Int(core.delete_queues(keys)?),
            Keyspace::Exists(keys) => {
                Reply::Int(keys.iter().filter(|k| core.exists(k)).count() as i64)
            }
            Keyspace::Type(key) => Reply::Simple(if core.exists(key) { TYPE_NAME } else { "none" }),
            Keyspace::Keys(pattern) => {
                let mut out = Vec::new();
                let mut cursor = 0;
                loop {
                    let (next, names) = core.scan(cursor, 1024);
                    out.extend(
                        names
                            .into_iter()
                            .filter(|n| crate::glob::matches(pattern, n, false))
                            .map(Reply::Bulk),
                    );
                    if next == 0 {
                        break;
                    }
                    cursor = next;
                }
                Reply::Array(out)
            }
            Keyspace::Scan {
                cursor,
                pattern,
                count,
                type_ok,
            } => {
                let (next, names) = core.scan(*cursor, *count);
                let names = names
                    .into_iter()
                    .filter(|n| {
                        *type_ok
                            && pattern
                                .as_ref()
                                .is_none_or(|p| crate::glob::matches(p, n, false))
                    })
                    .map(Reply::Bulk)
                    .collect();
                Reply::Array(vec![
                    Reply::Bulk(Bytes::from(next.to_string())),
                    Reply::Array(names),
                ])
            }
            Keyspace::DbSize => Reply::Int(core.queue_count() as i64),
            Keyspace::Flush => {
                core.flush()?;
                Reply::OK
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::cmd::testing::*;
    use crate::protocol::Reply;

    #[test]
    fn keys_scan_type_del_flush() {
        let (mut core, _clock, _dir) = core_at(0);
        for i in 0..25 {
            exec(&mut core, &["DELAYADD", &format!("q:{i}"), "10", "m"]);
        }
        exec(&mut core, &["DELAYADD", "other", "10", "m"]);
        assert_eq!(exec(&mut core, &["DBSIZE"]), Reply::Int(26));
        match exec(&mut core, &["KEYS", "q:1*"]) {
            Reply::Array(v) => assert_eq!(v.len(), 11),
            r => panic!("{r:?}"),
        }
        // SCAN visits every key exactly once across calls.
        let mut seen = std::collections::HashSet::new();
        let mut cursor = "0".to_string();
        loop {
            let Reply::Array(parts) =
                exec(&mut core, &["SCAN", &cursor, "COUNT", "4", "MATCH", "q:*"])
            else {
                panic!()
            };
            let Reply::Bulk(c) = &parts[0] else { panic!() };
            let Reply::Array(names) = &parts[1] else {
                panic!()
            };
            for n in names {
                let Reply::Bulk(n) = n else { panic!() };
                assert!(seen.insert(n.clone()));
            }
            cursor = String::from_utf8(c.to_vec()).unwrap();
            if cursor == "0" {
                break;
            }
        }
        assert_eq!(seen.len(), 25);
        assert_eq!(
            exec(&mut core, &["TYPE", "other"]),
            Reply::Simple("delayqueue")
        );
        assert_eq!(exec(&mut core, &["TYPE", "nope"]), Reply::Simple("none"));
        assert_eq!(
            exec(&mut core, &["EXISTS", "other", "other", "nope"]),
            Reply::Int(2)
        );
        assert_eq!(exec(&mut core, &["DEL", "other", "nope"]), Reply::Int(1));
        assert_eq!(
            exec(&mut core, &["SCAN", "x"]),
            Reply::Error("ERR invalid cursor".into())
        );
        assert_eq!(exec(&mut core, &["FLUSHALL"]), Reply::OK);
        assert_eq!(exec(&mut core, &["DBSIZE"]), Reply::Int(0));
    }
}
