//! Delivery: the worker that drains the queue, local Maildir delivery, and
//! the `Relay` seam through which the SMTP client pool sends remote mail.

mod maildir;
mod worker;

pub use maildir::Maildir;
pub use worker::{DeliveryContext, Relay, WorkerConfig, deliver_message, run};

#[cfg(test)]
mod tests;
