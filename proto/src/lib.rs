//! Postern's gRPC interfaces, generated from `proto/*.proto` at build time.
//!
//! `admin` is what the CLI speaks to a node over its unix socket;
//! `edgesync` is the hub-to-edge replication stream; `queue` is not an
//! interface but the mail queue's record as stored on disk.

/// The admin API (`admin.proto`).
#[allow(clippy::all, missing_docs)]
pub mod admin {
    tonic::include_proto!("postern.admin.v1");
}

/// EdgeSync replication (`edgesync.proto`).
#[allow(clippy::all, missing_docs)]
pub mod edgesync {
    tonic::include_proto!("postern.edgesync.v1");
}

/// The mail queue's stored header record (`queue.proto`).
#[allow(clippy::all, missing_docs)]
pub mod queue {
    tonic::include_proto!("postern.queue.v1");
}
