//! Durable raft storage on sled (being written).
