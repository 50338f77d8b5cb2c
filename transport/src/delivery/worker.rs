//! The delivery worker: takes messages as they are queued (and, every few
//! seconds, those whose retry time has come), routes each recipient's
//! next-hop key, delivers locally or relays, and records the outcomes.
//!
//! Messages are delivered concurrently up to a limit; recipients of one
//! message that share a next hop travel in one SMTP (or LMTP) transaction.

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
use crate::queue::{
    DeliveryOutcome, DueMessage, Queue, QueuedHop, RecipientOutcome, RecipientState, RelayOrigin,
};
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

/// One hop of a message and the recipients it carries this time.
struct HopGroup {
    /// The hop: the queued one, or the one routing chose now.
    hop: QueuedHop,
    /// What the hop means now; `None`: no route (the recipients wait).
    destination: Option<Destination>,
    /// The recipients' addresses.
    recipients: Vec<String>,
}

/// Groups a message's recipients by the hop to use now, each hop resolved
/// once: the queued hop while it still routes, else the router's current
/// choice for the address (configuration changed, a DSN queued with its
/// domain as the hop, or a queued text that is no next hop). Groups keep
/// the order in which their first recipient comes.
fn group_by_hop(id: QueueId, router: &dyn Router, recipients: &[RecipientState]) -> Vec<HopGroup> {
    let mut queued: Vec<(&QueuedHop, Vec<&str>)> = Vec::new();
    for r in recipients {
        match queued.iter_mut().find(|(hop, _)| *hop == &r.next_hop) {
            Some((_, addresses)) => addresses.push(r.address.as_str()),
            None => queued.push((&r.next_hop, vec![r.address.as_str()])),
        }
    }
    let mut groups: Vec<HopGroup> = Vec::new();
    let mut join = |hop: QueuedHop, destination: Option<Destination>, address: String| match groups
        .iter_mut()
        .find(|g| g.hop == hop)
    {
        Some(group) => {
            group.destination = group.destination.take().or(destination);
            group.recipients.push(address);
        }
        None => groups.push(HopGroup {
            hop,
            destination,
            recipients: vec![address],
        }),
    };
    for (hop, addresses) in queued {
        let known = match hop {
            QueuedHop::Known(known) => Some(known),
            QueuedHop::Unreadable(text) => {
                tracing::warn!(%id, hop = %text, "a queued next hop is not understood; the recipient is routed again");
                None
            }
        };
        if let Some(destination) = known.and_then(|h| router.destination(h)) {
            for address in addresses {
                join(hop.clone(), Some(destination.clone()), address.to_owned());
            }
            continue;
        }
        for address in addresses {
            let rerouted = crate::smtp::Mailbox::parse(address)
                .ok()
                .and_then(|m| router.next_hop(&m).ok())
                .map_or_else(|| hop.clone(), QueuedHop::Known);
            join(rerouted, None, address.to_owned());
        }
    }
    for group in &mut groups {
        if group.destination.is_none() {
            group.destination = group.hop.known().and_then(|h| router.destination(h));
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
    let by_hop = group_by_hop(id, ctx.router.as_ref(), &message.recipients);
    let mut outcomes = Vec::with_capacity(message.recipients.len());
    for HopGroup {
        hop: key,
        destination,
        recipients,
    } in by_hop
    {
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
                    count_domain_secured(m, id, &hop.key.to_string(), outbound_outcome(&attempt));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod grouping {
    use postern_model::Domain;

    use super::*;
    use crate::queue::QueuedHop;
    use crate::routing::{NextHop, StaticRouter};

    fn rcpt(address: &str, hop: &str) -> RecipientState {
        RecipientState::new(address, QueuedHop::read(hop.to_owned()))
    }

    /// No relay: only `adatum.com` routes (locally).
    fn router() -> StaticRouter {
        StaticRouter {
            local_domains: vec![Domain::parse("adatum.com").unwrap()],
            relay: None,
        }
    }

    #[test]
    fn a_hop_that_routes_keeps_its_recipients_and_others_are_routed_again() {
        let id = QueueId::from_parts(1, 1);
        let groups = group_by_hop(
            id,
            &router(),
            &[
                rcpt("a@adatum.com", "local"),
                // A DSN's hop (its domain): routed again, to local.
                rcpt("b@adatum.com", "adatum.com"),
                // No next hop, but the address routes: to local as well.
                rcpt("c@adatum.com", "Outbound to adatum"),
                // Neither routes: waits under its stored text.
                rcpt("d@fabrikam.com", "relay:10.0.0.1:25"),
                rcpt("e@fabrikam.com", "fabrikam.com"),
            ],
        );
        let seen: Vec<(String, bool, Vec<&str>)> = groups
            .iter()
            .map(|g| {
                (
                    g.hop.to_string(),
                    g.destination.is_some(),
                    g.recipients.iter().map(String::as_str).collect(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (
                    "local".to_owned(),
                    true,
                    vec!["a@adatum.com", "b@adatum.com", "c@adatum.com"]
                ),
                ("relay:10.0.0.1:25".to_owned(), false, vec!["d@fabrikam.com"]),
                ("fabrikam.com".to_owned(), false, vec!["e@fabrikam.com"]),
            ]
        );
        assert_eq!(groups[0].hop, QueuedHop::Known(NextHop::Local));
        assert_eq!(groups[1].hop, QueuedHop::Unreadable("relay:10.0.0.1:25".into()));
    }
}
