//! `ROLE`: this node's part in replication.

use crate::protocol::Reply;

/// The replication id a single node reports (it has no replication stream;
/// 40 hex digits, as clients parse it).
pub const REPLICATION_ID: &str = "0000000000000000000000000000000000000000";

/// Replies as a Redis master with no replicas: `[master, 0, []]`.
///
/// # Format
///
/// ```text
/// ROLE
/// ```
pub fn apply() -> Reply {
    Reply::Array(vec![
        Reply::bulk_static("master"),
        Reply::Int(0),
        Reply::Array(Vec::new()),
    ])
}
