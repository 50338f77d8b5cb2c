//! `ConfigVersion`: the monotonic version of the hub's configuration.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Version of the authoritative configuration, monotonic within its store
/// (whose id travels beside it): the sled store bumps it by one per change;
/// the etcd store of several hubs uses the etcd revision of the last
/// change, so every hub reports the same version for the same state and
/// versions may skip. Zero means "nothing applied yet".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConfigVersion(pub u64);

impl ConfigVersion {
    /// The version before any change.
    pub const ZERO: Self = Self(0);

    /// The version after this one.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for ConfigVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}
