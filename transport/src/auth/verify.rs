//! Verification on the edge of mail from outside, with mail-auth: SPF
//! (RFC 7208) of the HELO name and of the MAIL FROM domain against the
//! connecting address, DKIM (RFC 6376), ARC (RFC 8617) and DMARC (RFC
//! 7489: alignment, `p=`/`sp=`, and `pct=` sampled here since mail-auth
//! follows DMARCbis, which dropped it). The results become one
//! `Authentication-Results` field with the edge's authserv-id.
//!
//! DNS goes through the node's hickory resolver (its cache, its name
//! servers — `--dns-server` in labs — and its per-query timeout), and the
//! whole check runs under a budget no longer than the connector's command
//! timeout. A DNS failure or an exhausted budget is a `temperror`, which
//! never refuses a message.

use std::net::IpAddr;
use std::time::Duration;

use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimOutput, DkimResult, DmarcResult, MessageAuthenticator,
};
use rand::Rng as _;

use super::policy::{DmarcOutcome, DmarcPolicy, record_pct, sampled};

/// The longest a verification may take, whatever the connector allows.
pub const DEFAULT_BUDGET: Duration = Duration::from_secs(30);

/// What the SMTP session knows about the message being judged.
#[derive(Clone, Copy, Debug)]
pub struct Inbound<'a> {
    /// The connecting address.
    pub remote_ip: IpAddr,
    /// The HELO/EHLO name the client gave.
    pub helo: &'a str,
    /// The MAIL FROM address; empty for the null reverse path.
    pub mail_from: &'a str,
    /// The message as received (header section and body).
    pub message: &'a [u8],
}

/// What verification came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The `Authentication-Results` field, without the final CRLF.
    pub field: String,
    /// The DMARC outcome, with `pct=` applied to a failure's policy.
    pub dmarc: DmarcOutcome,
}

/// Checks SPF, DKIM, ARC and DMARC through the node's resolver.
#[derive(Clone)]
pub struct Verifier {
    auth: MessageAuthenticator,
    authserv_id: String,
    budget: Duration,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("authserv_id", &self.authserv_id)
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier asking `resolver`, stamping `authserv_id` (the node's FQDN).
    pub fn new(resolver: TokioResolver, authserv_id: &str) -> Self {
        Self {
            auth: MessageAuthenticator(resolver),
            authserv_id: authserv_id.to_ascii_lowercase(),
            budget: DEFAULT_BUDGET,
        }
    }

    /// The authserv-id stamped (and removed from mail that claims it).
    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }

    /// Verifies within `limit` (capped by the verifier's own budget).
    pub async fn verify(&self, inbound: Inbound<'_>, limit: Duration) -> Verdict {
        let budget = limit.min(self.budget);
        match tokio::time::timeout(budget, self.check(inbound)).await {
            Ok(verdict) => verdict,
            Err(_) => Verdict {
                field: format!(
                    "Authentication-Results: {};\r\n\tspf=temperror;\r\n\tdkim=temperror;\r\n\tdmarc=temperror (verification took longer than {}s)",
                    self.authserv_id,
                    budget.as_secs()
                ),
                dmarc: DmarcOutcome::Temporary,
            },
        }
    }

    async fn check(&self, inbound: Inbound<'_>) -> Verdict {
        let Inbound {
            remote_ip,
            helo,
            mail_from,
            message,
        } = inbound;
        let host = self.authserv_id.as_str();
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            return Verdict {
                field: format!(
                    "Authentication-Results: {host}; none (the header section could not be parsed)"
                ),
                dmarc: DmarcOutcome::None,
            };
        };
        let spf_helo = self
            .auth
            .verify_spf(SpfParameters::verify_ehlo(remote_ip, helo, host))
            .await;
        let spf_mail_from = if mail_from.is_empty() {
            None
        } else {
            Some(
                self.auth
                    .verify_spf(SpfParameters::verify_mail_from(remote_ip, helo, host, mail_from))
                    .await,
            )
        };
        let dkim = body_hash_fails(&parsed, self.auth.verify_dkim(&parsed).await);
        let arc = self.auth.verify_arc(&parsed).await;
        // RFC 7489 §4.1: with a null reverse path, the HELO identity counts.
        let (spf_for_dmarc, spf_domain) = match &spf_mail_from {
            Some(out) => (out, mail_from.rsplit_once('@').map_or(helo, |(_, d)| d)),
            None => (&spf_helo, helo),
        };
        let dmarc = self
            .auth
            .verify_dmarc(DmarcParameters::new(&parsed, &dkim, spf_domain, spf_for_dmarc))
            .await;
        let header_from = parsed.from.first().map(String::as_str).unwrap_or_default();
        let mut results = AuthenticationResults::new(host).with_spf_ehlo_result(&spf_helo, remote_ip, helo);
        if let Some(out) = &spf_mail_from {
            results = results.with_spf_mailfrom_result(out, remote_ip, mail_from, helo);
        }
        results = results.with_dkim_results(&dkim, header_from);
        results = results.with_arc_result(&arc, remote_ip).with_dmarc_result(&dmarc);
        let mut field = results.to_header().trim_end().to_owned();
        if dkim.is_empty() {
            field.push_str(";\r\n\tdkim=none");
        }
        let outcome = match dmarc.result() {
            DmarcResult::Pass => DmarcOutcome::Pass,
            DmarcResult::None => DmarcOutcome::None,
            DmarcResult::TempError(_) => DmarcOutcome::Temporary,
            DmarcResult::PermError(_) => DmarcOutcome::Permanent,
            DmarcResult::Fail(_) => {
                let policy = match dmarc.policy() {
                    Policy::Reject => DmarcPolicy::Reject,
                    Policy::Quarantine => DmarcPolicy::Quarantine,
                    Policy::None | Policy::Unspecified => DmarcPolicy::None,
                };
                let pct = self.pct(dmarc.domain()).await;
                let roll = rand::thread_rng().gen_range(0..100u8);
                DmarcOutcome::Fail {
                    policy: sampled(policy, pct, roll),
                }
            }
        };
        Verdict {
            field,
            dmarc: outcome,
        }
    }

    /// The `pct=` of the DMARC record that governs `domain`: its own, or
    /// the nearest parent's (the resolver's cache answers, as
    /// `verify_dmarc` just asked). 100 when none is found.
    async fn pct(&self, domain: &str) -> u8 {
        let mut name = domain.trim_end_matches('.');
        loop {
            if let Ok(raw) = self.auth.txt_raw_lookup(format!("_dmarc.{name}.")).await
                && let Some(pct) = record_pct(&String::from_utf8_lossy(&raw))
            {
                return pct;
            }
            match name.split_once('.') {
                Some((_, parent)) if parent.contains('.') => name = parent,
                _ => return 100,
            }
        }
    }
}

/// RFC 6376 §6.1.3: a body hash that does not match is a PERMFAIL, which
/// RFC 8601 §2.7.1 writes `dkim=fail`; mail-auth reports it `neutral`.
fn body_hash_fails<'x>(
    parsed: &'x AuthenticatedMessage<'x>,
    outputs: Vec<DkimOutput<'x>>,
) -> Vec<DkimOutput<'x>> {
    outputs
        .into_iter()
        .map(|out| {
            let failed = match (out.result(), out.signature()) {
                (
                    DkimResult::Neutral(err @ mail_auth::Error::Dkim(DkimError::FailedBodyHashMatch)),
                    Some(sig),
                ) => parsed
                    .dkim_headers
                    .iter()
                    .find(|h| h.header.b == sig.b)
                    .map(|h| DkimOutput::fail(err.clone()).with_signature(&h.header)),
                _ => None,
            };
            failed.unwrap_or(out)
        })
        .collect()
}
