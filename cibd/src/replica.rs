//! Sans-IO raft replica (being written).
