//! delayd: a durable delay-queue server that speaks the Redis protocol.
//!
//! Requests arrive over RESP ([`protocol`]), become typed commands
//! ([`cmd`]) and run in the [`engine`], whose source of truth is a fjall
//! LSM store and whose clock is a hierarchical timing wheel.

#![forbid(unsafe_code)]
// A server must not die on an unexpected value: outside tests, every
// failure is an error value, never an unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub(crate) mod acl;
pub mod client;
pub mod cluster;
pub mod cmd;
pub mod config;
pub(crate) mod connection;
pub mod engine;
pub mod error;
pub mod fdlimit;
pub(crate) mod glob;
pub mod http;
pub(crate) mod listen;
pub mod metrics;
pub(crate) mod output;
pub mod protocol;
pub mod server;
pub(crate) mod session;
pub mod shared;
pub mod shutdown;
pub mod tls;

pub use error::{Error, Result};
