//! Black-box compatibility tests: the real `delayd` binary on a free
//! loopback port, driven by real Redis clients.

mod acl;
mod client_controls;
mod cluster_shapes;
mod cluster_standalone;
mod examples;
mod harness;
mod multi_shapes;
mod query_by_time;
mod redis_benchmark;
mod redis_cli;
mod redis_parity;
mod redis_py;
mod redis_rs;
mod slowlog;
mod stats;
mod watch;

// src/cluster/*.rs, compiled into cluster_shapes, name the library's reply
// type as `crate::protocol`.
use delayd::protocol;
