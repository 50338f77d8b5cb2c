//! postern-bench: a load generator for a mail relay chain. It submits
//! messages over STARTTLS with a client certificate and measures, at the far
//! end's Maildir, when they arrive. It is a foreign client of whatever chain
//! it measures (Postfix or Postern) and so uses none of Postern's crates.
//!
//! - `reply`: SMTP reply parsing, no I/O.
//! - `message`: the bench's messages (exact size, findable Message-ID).
//! - `session`: one client session over tokio and rustls.
//! - `maildir`: counting a run's messages at the sink.
//! - `stats`: latency percentiles.
//! - `load`: the run itself and its report.

pub mod load;
pub mod maildir;
pub mod message;
pub mod reply;
pub mod session;
pub mod stats;
pub mod tls;
