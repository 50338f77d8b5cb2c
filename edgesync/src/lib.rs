//! EdgeSync: the control plane that replicates the hub's configuration and
//! certificates to edges (DESIGN §7).
//!
//! * `store` — the hub's versioned object store with a bounded change log;
//! * `source` — the trait the hub side reads configuration through;
//! * `replica` — the edge's read-only copy, applied in transactions;
//! * `subscription` — signed subscription files and bootstrap secrets;
//! * `rotation` — certificate rotation offers over the stream;
//! * `report` — what an edge reports of itself (queues, certificates);
//! * `gate` — what an unauthenticated peer can make an edge read.

pub mod channel;
pub mod edge_side;
pub mod gate;
pub mod hub_side;
pub mod replica;
pub mod report;
pub mod rotation;
pub mod source;
pub mod store;
pub mod subscription;
pub mod trust_status;

pub use replica::{Applied, ApplyError, LocalChangeError, Replica};
pub use source::{ConfigSource, SourceError};
pub use store::{ChangeLogStore, SideWrite};
