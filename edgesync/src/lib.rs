//! EdgeSync replication (issue 4).
