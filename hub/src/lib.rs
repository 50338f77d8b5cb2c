//! The hub role.
