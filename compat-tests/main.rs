//! Black-box compatibility tests: the real `delayd` binary on a free
//! loopback port, driven by real Redis clients.

mod harness;
