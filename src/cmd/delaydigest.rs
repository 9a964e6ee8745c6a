//! `DELAYDIGEST`: a replica's fingerprint, to check replicas agree.

use super::{Args, ClientCommand, Command};
use crate::client::ClientState;
use crate::protocol::Reply;
use crate::shared::Shared;
use crate::{Error, Result};

/// Cluster mode: `[applied index, SHA-256 of the group's store]` of one
/// Raft group on this node. Two replicas at the same applied index must
/// give the same digest (the history checker compares them). Reads the
/// whole store.
///
/// # Format
///
/// ```text
/// DELAYDIGEST group
/// ```
#[derive(Debug)]
pub(crate) struct DelayDigest {
    group: i64,
}

/// The table's parser.
///
/// # Errors
///
/// A group that is not an integer.
pub(crate) fn parse(args: &mut Args) -> Result<Command> {
    Ok(Command::client(DelayDigest {
        group: args.next_int()?,
    }))
}

impl ClientCommand for DelayDigest {
    fn apply(&self, shared: &Shared, _: &mut ClientState) -> Option<Reply> {
        let Some(cluster) = &shared.cluster else {
            return Some(Reply::from(Error::msg(super::cluster::DISABLED)));
        };
        let digest = usize::try_from(self.group)
            .ok()
            .and_then(|g| cluster.digest(g));
        Some(match digest {
            Some((applied, hex)) => Reply::Array(vec![
                Reply::Int(i64::try_from(applied).unwrap_or(i64::MAX)),
                Reply::bulk(hex),
            ]),
            None => Reply::from(Error::msg("no such group, or it kept changing while read")),
        })
    }
}
