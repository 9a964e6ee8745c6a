//! `TIME`.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::protocol::Reply;

/// Returns the server's Unix time as `[seconds, microseconds]`.
///
/// # Format
///
/// ```text
/// TIME
/// ```
pub fn apply() -> Reply {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(now.as_secs().to_string())),
        Reply::Bulk(Bytes::from(now.subsec_micros().to_string())),
    ])
}
