//! TLS-RPT counters (RFC 8460 §4): successful sessions and failures per
//! policy domain, policy type and result type, for today's figures and the
//! daily aggregate report.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The policy a session was checked against (RFC 8460 §4.3 `policy-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PolicyKind {
    /// DANE TLSA records.
    Tlsa,
    /// An MTA-STS policy.
    Sts,
    /// Neither was found.
    NoPolicyFound,
}

impl PolicyKind {
    /// The report's word.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyKind::Tlsa => "tlsa",
            PolicyKind::Sts => "sts",
            PolicyKind::NoPolicyFound => "no-policy-found",
        }
    }
}

/// Result types of RFC 8460 §4.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// STARTTLS was not offered.
    StarttlsNotSupported,
    /// The certificate does not name the host.
    CertificateHostMismatch,
    /// The certificate does not chain to a trusted root.
    CertificateNotTrusted,
    /// The certificate has expired.
    CertificateExpired,
    /// The certificate matched no TLSA record.
    TlsaInvalid,
    /// DNSSEC validation failed.
    DnssecInvalid,
    /// The MTA-STS policy could not be fetched.
    StsPolicyFetchError,
    /// The MTA-STS policy was malformed.
    StsPolicyInvalid,
    /// The MX host is not in the MTA-STS policy.
    MxMismatch,
    /// Another handshake failure.
    ValidationFailure,
}

impl FailureKind {
    /// The report's `result-type`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::StarttlsNotSupported => "starttls-not-supported",
            FailureKind::CertificateHostMismatch => "certificate-host-mismatch",
            FailureKind::CertificateNotTrusted => "certificate-not-trusted",
            FailureKind::CertificateExpired => "certificate-expired",
            FailureKind::TlsaInvalid => "tlsa-invalid",
            FailureKind::DnssecInvalid => "dnssec-invalid",
            FailureKind::StsPolicyFetchError => "sts-policy-fetch-error",
            FailureKind::StsPolicyInvalid => "sts-policy-invalid",
            FailureKind::MxMismatch => "validation-failure",
            FailureKind::ValidationFailure => "validation-failure",
        }
    }
}

/// One policy's figures for a domain.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyFigures {
    /// Sessions that satisfied the policy.
    pub successes: u64,
    /// Failures per (result type, receiving MX host).
    pub failures: BTreeMap<(FailureKind, String), u64>,
}

/// Figures per (policy domain, policy kind).
pub type Figures = BTreeMap<(String, PolicyKind), PolicyFigures>;

/// The node's counters since the last report.
#[derive(Debug, Default)]
pub struct TlsCounters {
    figures: Mutex<Figures>,
}

impl TlsCounters {
    fn with<T>(&self, f: impl FnOnce(&mut Figures) -> T) -> T {
        let mut guard = self.figures.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// Counts a session that satisfied `kind` for `domain`.
    pub fn success(&self, domain: &str, kind: PolicyKind) {
        self.with(|f| {
            f.entry((domain.to_ascii_lowercase(), kind))
                .or_default()
                .successes += 1
        });
    }

    /// Counts a failure of `kind` for `domain` at `mx` (may be empty).
    pub fn failure(&self, domain: &str, kind: PolicyKind, failure: FailureKind, mx: &str) {
        self.with(|f| {
            *f.entry((domain.to_ascii_lowercase(), kind))
                .or_default()
                .failures
                .entry((failure, mx.to_ascii_lowercase()))
                .or_default() += 1
        });
    }

    /// The figures so far.
    pub fn snapshot(&self) -> Figures {
        self.with(|f| f.clone())
    }

    /// The figures so far, which are reset.
    pub fn take(&self) -> Figures {
        self.with(std::mem::take)
    }

    /// Total failures of `failure` for `domain` (for tests and `show`).
    pub fn failures_of(&self, domain: &str, failure: FailureKind) -> u64 {
        self.with(|f| {
            f.iter()
                .filter(|((d, _), _)| d == domain)
                .flat_map(|(_, p)| p.failures.iter())
                .filter(|((k, _), _)| *k == failure)
                .map(|(_, n)| n)
                .sum()
        })
    }

    /// Total successes for `domain` under `kind`.
    pub fn successes_of(&self, domain: &str, kind: PolicyKind) -> u64 {
        self.with(|f| f.get(&(domain.to_owned(), kind)).map_or(0, |p| p.successes))
    }
}
