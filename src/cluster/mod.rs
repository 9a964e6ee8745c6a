//! Cluster mode: hash slots and the `CLUSTER` reply shapes (docs/cluster.md §7).
pub(crate) mod slots;
pub(crate) mod topology;
