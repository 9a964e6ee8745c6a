//! The Redis wire protocol: request framing (RESP multibulk and inline) and
//! reply encoding (RESP2 and RESP3).

pub mod decode;
pub mod reply;

pub use decode::{Decoder, Limits};
pub use reply::{Protocol, Reply};
