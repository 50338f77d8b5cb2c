//! EdgeSync: the control plane that replicates the hub's configuration and
//! certificates to edges (DESIGN §7).
//!
//! * `store` — the hub's versioned object store with a bounded change log;
//! * `source` — the traits the hub reads and writes configuration through;
//! * `etcd` — the store of several hubs on etcd, and `lease` — which hub
//!   syncs which edge;
//! * `replica` — the edge's read-only copy, applied in transactions;
//! * `subscription` — signed subscription files and bootstrap secrets;
//! * `rotation` — certificate rotation offers over the stream;
//! * `report` — what an edge reports of itself (queues, certificates);
//! * `gate` — what an unauthenticated peer can make an edge read.

pub mod channel;
pub mod edge_side;
pub mod etcd;
pub mod gate;
pub mod hub_side;
pub mod lease;
pub mod replica;
pub mod report;
pub mod rotation;
pub mod source;
pub mod store;
pub mod subscription;
pub mod trust_status;

pub use etcd::EtcdStore;
pub use replica::{Applied, ApplyError, LocalChangeError, Replica};
pub use source::{ConfigSource, ConfigStore, SideWrite, SourceError, Write};
pub use store::ChangeLogStore;
