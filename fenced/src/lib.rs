//! halo-fenced's pieces: fencing devices and their `pcmk_*` options (`device`), the devices
//! the CIB allows on a node (`cib_devices`) and following the CIB (`cib_link`), devices
//! watched on their monitor interval (`device_monitor`), fencing
//! topology from the CIB (`topology`), the node's fencer: registered devices, monitors,
//! fence requests and history (`fencer`), the fencers of a cluster working as one over a
//! process group (`peers`), and the daemon's gRPC API (`daemon`).

pub mod cib_devices;
pub mod cib_link;
pub mod daemon;
pub mod device;
pub mod device_monitor;
pub mod fencer;
pub mod peers;
pub mod topology;
