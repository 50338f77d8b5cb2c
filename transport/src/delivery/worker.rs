//! The delivery worker: takes messages as they are queued (and, every few
//! seconds, those whose retry time has come), routes each recipient's
//! next-hop key, delivers locally or relays, and records the outcomes.
//!
//! Messages are delivered concurrently up to a limit; recipients of one
//! message that share a next hop travel in one SMTP (or LMTP) transaction.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Semaphore;

use postern_model::QueueId;

use super::Maildir;
use crate::client::SendOptions;
use crate::dns::{DnsError, MxResolver};
use crate::domain_security::{OutboundDomainSecurity, outbound_outcome};
use crate::metrics::Metrics;
use crate::queue::{DeliveryOutcome, DueMessage, Queue, RecipientOutcome, RecipientState, RelayOrigin};
use crate::routing::{Destination, Router, SmtpHop};

/// Sends a message to a remote next hop; implemented by the SMTP client pool.
pub trait Relay: Send + Sync + 'static {
    /// Delivers `body` from `sender` to `recipients` over `hop`; an `Err`
    /// means nothing was delivered and every recipient is retried.
    /// `origin` names the message in this node's queue; it is sent only to
    /// a node of the organisation (exactly once across the internal hop).
    fn relay<'a>(
        &'a self,
        hop: &'a SmtpHop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
        origin: &'a RelayOrigin,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>>;

    /// Hands `body` to the mailbox server of `hop` over LMTP; each
    /// recipient's outcome is the server's reply for it. An `Err` means
    /// nothing was delivered and every recipient is retried.
    fn lmtp<'a>(
        &'a self,
        hop: &'a SmtpHop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>>;

    /// [`Relay::relay`] for a message with TLS demands (RFC 8689); relays
    /// that cannot honour them relay as usual.
    fn relay_with<'a>(
        &'a self,
        hop: &'a SmtpHop,
        sender: Option<&'a str>,
        recipients: &'a [String],
        body: &'a [u8],
        origin: &'a RelayOrigin,
        options: SendOptions,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<RecipientOutcome>, String>> + Send + 'a>> {
        let _ = options;
        self.relay(hop, sender, recipients, body, origin)
    }
}

/// What the message asks of TLS: `REQUIRETLS` from its envelope, or a
/// `TLS-Required: No` header field (ignored under REQUIRETLS, RFC 8689 §5).
fn send_options(require_tls: bool, body: &[u8]) -> SendOptions {
    SendOptions {
        require_tls,
        tls_optional: !require_tls && says_tls_not_required(body),
    }
}

/// Whether the header section carries `TLS-Required: No`.
fn says_tls_not_required(body: &[u8]) -> bool {
    let end = body
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(body.len());
    String::from_utf8_lossy(&body[..end]).split("\r\n").any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("TLS-Required") && value.trim().eq_ignore_ascii_case("no")
        })
    })
}

/// How the worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// Messages delivered at once.
    pub concurrency: usize,
    /// How often the queue is scanned for retries.
    pub scan_interval: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            scan_interval: Duration::from_secs(5),
        }
    }
}

/// Everything a delivery needs.
#[derive(Clone)]
pub struct DeliveryContext {
    /// The node's queue.
    pub queue: Queue,
    /// Resolves next-hop keys.
    pub router: Arc<dyn Router>,
    /// Local mailboxes.
    pub maildir: Maildir,
    /// Remote hops.
    pub relay: Arc<dyn Relay>,
    /// Looks up the MX hosts of hops routed by DNS (`SmtpHop::mx_domain`);
    /// `None`: such hops are deferred (451 4.4.3).
    pub dns: Option<Arc<MxResolver>>,
    /// Where the domain-security counters go.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// Runs until `shutdown` completes; messages in flight finish first.
pub async fn run(ctx: DeliveryContext, config: WorkerConfig, shutdown: impl Future<Output = ()>) {
    let mut fresh = ctx.queue.subscribe_fresh();
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let mut scan = tokio::time::interval(config.scan_interval);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let batch = tokio::select! {
            _ = &mut shutdown => break,
            Some(message) = fresh.recv() => vec![message],
            _ = scan.tick() => match ctx.queue.due(SystemTime::now()) {
                Ok(due) => due,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the queue");
                    Vec::new()
                }
            },
        };
        for message in batch {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let (id, queue) = (message.id, ctx.queue.clone());
                // A panicking delivery must not keep its lease forever.
                let delivery = tokio::spawn(async move { deliver_message(&ctx, message).await });
                if let Err(error) = delivery.await {
                    tracing::error!(%id, %error, "delivery task failed; the message is released for a later attempt");
                    queue.release(id);
                }
                drop(permit);
            });
        }
    }
    // Wait for deliveries in flight.
    let _ = permits.acquire_many(config.concurrency.max(1) as u32).await;
}

/// Groups a message's recipients by the hop to use now, each hop resolved
/// once: the queued key while it still routes, else the router's current
/// choice for the address (configuration changed, or a DSN queued with its
/// domain as the hop).
fn group_by_hop(
    router: &dyn Router,
    recipients: &[RecipientState],
) -> BTreeMap<String, (Option<Destination>, Vec<String>)> {
    let mut queued: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in recipients {
        queued
            .entry(r.next_hop.as_str())
            .or_default()
            .push(r.address.as_str());
    }
    let mut groups: BTreeMap<String, (Option<Destination>, Vec<String>)> = BTreeMap::new();
    for (key, addresses) in queued {
        if let Some(destination) = router.destination(key) {
            let group = groups.entry(key.to_owned()).or_insert((None, Vec::new()));
            group.0 = Some(destination);
            group.1.extend(addresses.into_iter().map(str::to_owned));
            continue;
        }
        for address in addresses {
            let rerouted = crate::smtp::Mailbox::parse(address)
                .ok()
                .and_then(|m| router.next_hop(&m).ok())
                .unwrap_or_else(|| key.to_owned());
            groups
                .entry(rerouted)
                .or_insert((None, Vec::new()))
                .1
                .push(address.to_owned());
        }
    }
    for (key, group) in &mut groups {
        if group.0.is_none() {
            group.0 = router.destination(key);
        }
    }
    groups
}

/// `hop` with its MX hosts filled in when it is routed by DNS (on the
/// hop's [`SmtpHop::mx_port`]); other hops unchanged. `Err`: the hop and
/// why its domain has no usable MX.
async fn resolve_mx(dns: Option<&MxResolver>, hop: SmtpHop) -> Result<SmtpHop, (SmtpHop, DnsError)> {
    let Some(domain) = hop.mx_domain.clone() else {
        return Ok(hop);
    };
    let Some(dns) = dns else {
        return Err((hop, DnsError::Unavailable("none configured".into())));
    };
    match dns.next_hosts(&domain, hop.mx_port()).await {
        Ok(hosts) => {
            tracing::debug!(hop = %hop.key, %domain, ?hosts, "MX hosts");
            Ok(SmtpHop { hosts, ..hop })
        }
        Err(e) => Err((hop, e)),
    }
}

/// Counts and logs one attempt over the domain-secured hop `hop`, as
/// `domain_security` judged it: a partner's 4.7.x refusal counts like a
/// session that could not be secured (Exchange's Domain-Secured Outbound
/// Session Failures).
fn count_domain_secured(m: &Metrics, id: QueueId, hop: &str, outcome: OutboundDomainSecurity<'_>) {
    use crate::protocol_log::Direction::Send;
    match outcome {
        OutboundDomainSecurity::Sent => {
            m.domain_secured_message_sent();
            m.partner_success(Send, hop);
        }
        OutboundDomainSecurity::PartnerRefused { reply } => {
            m.domain_secured_outbound_session_failure();
            m.partner_failure(Send, hop, reply);
            tracing::warn!(%id, %hop, reason = %reply, "the domain-secure partner refused our session; the message stays queued");
        }
        OutboundDomainSecurity::SessionFailed { reason } => {
            m.domain_secured_outbound_session_failure();
            m.partner_failure(Send, hop, reason);
            tracing::warn!(%id, %hop, reason = %postern_model::peer_text(reason), "domain-secured session failed; the message stays queued (never sent in plain text)");
        }
        OutboundDomainSecurity::Uncounted => {}
    }
}

/// Every one of `recipients` to be tried again, for `reason`.
fn deferred(recipients: Vec<String>, reason: &str) -> impl Iterator<Item = RecipientOutcome> + '_ {
    recipients.into_iter().map(move |address| RecipientOutcome {
        address,
        outcome: DeliveryOutcome::TransientFailure(reason.to_owned()),
    })
}

/// Delivers one due message and records the outcome.
pub async fn deliver_message(ctx: &DeliveryContext, message: DueMessage) {
    let id = message.id;
    let body = match ctx.queue.body(id) {
        Ok(Some(body)) => body,
        Ok(None) => {
            tracing::warn!(%id, "queued message has no body; dropping its lease");
            ctx.queue.release(id);
            return;
        }
        Err(e) => {
            tracing::error!(%id, error = %e, "cannot read a queued body");
            ctx.queue.release(id);
            return;
        }
    };
    let by_hop = group_by_hop(ctx.router.as_ref(), &message.recipients);
    let mut outcomes = Vec::with_capacity(message.recipients.len());
    for (key, (destination, recipients)) in by_hop {
        match destination {
            Some(Destination::Local) => {
                let maildir = ctx.maildir.clone();
                let sender = message.sender.clone();
                let body = body.clone();
                let attempt = message.attempt;
                let local = tokio::task::spawn_blocking(move || {
                    recipients
                        .iter()
                        .map(|rcpt| RecipientOutcome {
                            address: rcpt.clone(),
                            outcome: maildir.deliver(id, sender.as_deref(), rcpt, &body, attempt),
                        })
                        .collect::<Vec<_>>()
                })
                .await;
                match local {
                    Ok(done) => outcomes.extend(done),
                    Err(e) => tracing::error!(%id, error = %e, "local delivery task failed"),
                }
            }
            Some(Destination::Smtp(hop)) => {
                let hop = match resolve_mx(ctx.dns.as_deref(), hop).await {
                    Ok(hop) => hop,
                    Err((hop, e)) => {
                        tracing::info!(%id, hop = %hop.key, error = %e, "MX lookup failed");
                        let outcome = e.outcome();
                        outcomes.extend(recipients.into_iter().map(|address| RecipientOutcome {
                            address,
                            outcome: outcome.clone(),
                        }));
                        continue;
                    }
                };
                let secured = ctx.router.is_domain_secured(&hop.key);
                let origin = RelayOrigin {
                    node: hop.helo.clone(),
                    id,
                    expires: message.received_at + ctx.queue.config().expiration,
                };
                let options = send_options(message.require_tls, &body);
                let attempt = ctx
                    .relay
                    .relay_with(
                        &hop,
                        message.sender.as_deref(),
                        &recipients,
                        &body,
                        &origin,
                        options,
                    )
                    .await;
                if let (true, Some(m)) = (secured, &ctx.metrics) {
                    count_domain_secured(m, id, &hop.key, outbound_outcome(&attempt));
                }
                match attempt {
                    Ok(done) => outcomes.extend(done),
                    Err(reason) => {
                        // The reason may quote the remote server's reply.
                        tracing::info!(%id, hop = %hop.key, reason = %postern_model::peer_text(&reason.to_string()), "relay attempt failed; will retry");
                        outcomes.extend(deferred(recipients, &reason));
                    }
                }
            }
            Some(Destination::Lmtp(hop)) => {
                match ctx
                    .relay
                    .lmtp(&hop, message.sender.as_deref(), &recipients, &body)
                    .await
                {
                    Ok(done) => outcomes.extend(done),
                    Err(reason) => {
                        tracing::info!(%id, hop = %hop.key, reason = %postern_model::peer_text(&reason.to_string()), "LMTP attempt failed; will retry");
                        outcomes.extend(deferred(recipients, &reason));
                    }
                }
            }
            None => outcomes.extend(recipients.into_iter().map(|address| RecipientOutcome {
                address,
                outcome: DeliveryOutcome::TransientFailure(format!("451 4.4.0 no route for next hop {key}")),
            })),
        }
    }
    if let Err(e) = ctx.queue.record_attempt(id, outcomes, SystemTime::now()).await {
        tracing::error!(%id, error = %e, "cannot record a delivery attempt");
        ctx.queue.release(id);
    }
    if let Some(m) = &ctx.metrics {
        m.set_queue_length(ctx.queue.stats().queue_length);
    }
}

#[cfg(test)]
mod tls_demands {
    use super::*;

    #[test]
    fn tls_required_no_is_read_from_the_header_section_only() {
        let no = b"Received: x\r\nTLS-Required:  No \r\nSubject: s\r\n\r\nbody\r\n";
        assert_eq!(
            send_options(false, no),
            SendOptions {
                require_tls: false,
                tls_optional: true
            }
        );
        // REQUIRETLS wins over the header (RFC 8689 §5).
        assert!(!send_options(true, no).tls_optional);
        let in_body = b"Subject: s\r\n\r\nTLS-Required: No\r\n";
        assert!(!send_options(false, in_body).tls_optional);
        let yes = b"TLS-Required: Yes\r\n\r\n";
        assert!(!send_options(false, yes).tls_optional);
    }
}
