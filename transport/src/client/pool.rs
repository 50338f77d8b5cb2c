//! The connection cache (Postfix's `scache`): idle connections kept per
//! next-hop key so the next message to the same hop skips the connect,
//! greeting, EHLO and TLS handshake.
//!
//! A connection is taken out of the cache for one transaction at a time,
//! so concurrent deliveries to one hop use different connections; the lock
//! guards only the idle lists and is never held across an await.
//!
//! Deliveries to one hop run at most `connections_per_hop` at a time
//! (Postfix's `default_destination_concurrency_limit`, 20); the others
//! wait for a turn. A delivery opens a new connection only when no idle
//! one is cached, so a hop never has more connections than that limit, and
//! under a steady load the same few connections carry message after
//! message instead of being closed for want of room in the cache. A cached
//! connection is proved alive by the RSET that opens its next transaction
//! (pipelined with MAIL, RCPT and DATA when the server offers PIPELINING,
//! so reuse costs no round trip); when the connection turns out to have
//! died while idle, nothing of the message was sent and it goes at once on
//! the next cached connection, then a new one. Idle connections expire after
//! `idle_keep` (checked when taken, and by [`Pool::reap`], which
//! [`Pool::spawn_reaper`] runs periodically).
//!
//! A connection remembers the identity it was made under (the generations
//! of the certificate store and of the trust store): once a certificate is
//! enabled, removed or rotated, or trust changes, it is closed instead of
//! reused, so the next message handshakes with the new identity
//! (DESIGN §10).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::client::{ClientConnection, ClientError, Connector, Dialect, SendOptions};
use crate::queue::{DeliveryOutcome, RecipientOutcome, RelayOrigin};
use crate::routing::{NextHop, SmtpHop, TlsRequirement};

/// Deliveries (and so connections) at once per next hop unless configured
/// otherwise: Postfix's `default_destination_concurrency_limit`.
pub const DEFAULT_CONNECTIONS_PER_HOP: usize = 20;

/// Idle connections kept per next hop unless configured otherwise: as many
/// as may be busy, so none is closed for want of room.
pub const DEFAULT_MAX_IDLE_PER_HOP: usize = DEFAULT_CONNECTIONS_PER_HOP;

/// A cached connection and what it was opened for.
struct Idle {
    conn: ClientConnection,
    /// The hop as it was when the connection was opened: a changed hop
    /// (new TLS policy, other hosts) must not reuse it; see
    /// [`SmtpHop::shares_connections_with`].
    hop: SmtpHop,
    since: Instant,
    /// The identity it was opened under: see [`Connector::identity_epoch`].
    epoch: (u64, u64),
}

struct Inner {
    connector: Connector,
    max_idle_per_hop: usize,
    connections_per_hop: usize,
    idle: Mutex<HashMap<NextHop, Vec<Idle>>>,
    /// Turns per hop key: a delivery holds one from before it takes or
    /// opens a connection until it has given the connection back.
    turns: Mutex<HashMap<NextHop, Arc<Semaphore>>>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NextHop, Vec<Idle>>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_turns(&self) -> std::sync::MutexGuard<'_, HashMap<NextHop, Arc<Semaphore>>> {
        self.turns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a turn to deliver to the hop `key`.
    async fn turn(&self, key: &NextHop) -> Option<OwnedSemaphorePermit> {
        let turns = {
            let mut all = self.lock_turns();
            match all.get(key) {
                Some(turns) => Arc::clone(turns),
                None => {
                    let turns = Arc::new(Semaphore::new(self.connections_per_hop.max(1)));
                    all.insert(key.clone(), Arc::clone(&turns));
                    turns
                }
            }
        };
        turns.acquire_owned().await.ok()
    }

    /// Forgets the turn counters of hops nobody delivers to or waits for.
    /// Counters are only cloned under the lock, so one held by the map
    /// alone has no permit out and no waiter.
    fn forget_quiet_hops(&self) {
        self.lock_turns().retain(|_, turns| Arc::strong_count(turns) > 1);
    }

    /// Takes every idle connection older than `idle_keep` out of the cache.
    fn take_expired(&self) -> Vec<ClientConnection> {
        let keep = self.connector.settings.idle_keep;
        let mut expired = Vec::new();
        let mut idle = self.lock();
        for list in idle.values_mut() {
            let epoch = self.connector.identity_epoch();
            let (old, fresh): (Vec<Idle>, Vec<Idle>) = list
                .drain(..)
                .partition(|i| i.since.elapsed() >= keep || i.epoch != epoch);
            *list = fresh;
            expired.extend(old.into_iter().map(|i| i.conn));
        }
        idle.retain(|_, list| !list.is_empty());
        expired
    }
}

/// Delivers messages over cached connections; cheap to clone.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

impl Pool {
    /// A pool opening connections with `connector`, delivering to each hop
    /// over at most [`DEFAULT_CONNECTIONS_PER_HOP`] connections at once and
    /// keeping as many idle.
    pub fn new(connector: Connector) -> Self {
        Self::with_limits(connector, DEFAULT_CONNECTIONS_PER_HOP, DEFAULT_MAX_IDLE_PER_HOP)
    }

    /// A pool keeping at most `max_idle_per_hop` idle connections per hop.
    pub fn with_max_idle_per_hop(connector: Connector, max_idle_per_hop: usize) -> Self {
        Self::with_limits(connector, DEFAULT_CONNECTIONS_PER_HOP, max_idle_per_hop)
    }

    /// A pool delivering to each hop over at most `connections_per_hop`
    /// connections at once (at least one) and keeping at most
    /// `max_idle_per_hop` of them idle.
    pub fn with_limits(connector: Connector, connections_per_hop: usize, max_idle_per_hop: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                connector,
                max_idle_per_hop,
                connections_per_hop,
                idle: Mutex::new(HashMap::new()),
                turns: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The connector new connections are opened with.
    pub fn connector(&self) -> &Connector {
        &self.inner.connector
    }

    /// Sends one message to `recipients` over `hop`, on a cached connection
    /// when one is alive, else on a new one, which is cached afterwards
    /// while it may carry more messages. `Err`: no connection could be
    /// opened, or it failed mid-transaction (every recipient is deferred).
    pub async fn deliver(
        &self,
        hop: &SmtpHop,
        sender: Option<&str>,
        recipients: &[String],
        body: &[u8],
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        self.deliver_relayed(hop, sender, recipients, body, None, SendOptions::default())
            .await
    }

    /// [`Pool::deliver`] for a message with `options` (RFC 8689).
    pub async fn deliver_with(
        &self,
        hop: &SmtpHop,
        sender: Option<&str>,
        recipients: &[String],
        body: &[u8],
        options: SendOptions,
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        self.deliver_relayed(hop, sender, recipients, body, None, options)
            .await
    }

    /// Like [`Pool::deliver_with`], naming the message by `origin` when
    /// `hop` is an organisation hop (mutual TLS with direct trust, so the
    /// server is a node of the organisation) and the server offers
    /// `X-POSTERN-ONCE`; on any other hop `origin` is not sent.
    ///
    /// A REQUIRETLS message no host can take bounces (every recipient
    /// fails with the code the last host earned); it never reuses a cached
    /// connection, which may have been opened under a weaker policy.
    pub async fn deliver_relayed(
        &self,
        hop: &SmtpHop,
        sender: Option<&str>,
        recipients: &[String],
        body: &[u8],
        origin: Option<&RelayOrigin>,
        options: SendOptions,
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        let origin = origin.filter(|_| hop.tls == TlsRequirement::ORGANISATION);
        // Held until the connection is back in the cache (or closed).
        let _turn = self.inner.turn(&hop.key).await;
        loop {
            let cached = if options == SendOptions::default() {
                self.take_idle(hop, Dialect::Smtp)
            } else {
                None
            };
            let reused = cached.is_some();
            let (mut conn, epoch) = match cached {
                Some(reused) => reused,
                None => match (
                    self.inner.connector.identity_epoch(),
                    self.inner.connector.connect_with(hop, options).await,
                ) {
                    (epoch, Ok(conn)) => (conn, epoch),
                    (_, Err(ClientError::RequireTls { host, code, reason })) => {
                        let text = format!("550 {code} {reason} ({host})");
                        return Ok(recipients
                            .iter()
                            .map(|r| {
                                RecipientOutcome::new(
                                    r.clone(),
                                    DeliveryOutcome::PermanentFailure(text.clone()),
                                )
                            })
                            .collect());
                    }
                    (_, Err(e)) => return Err(e),
                },
            };
            conn.set_require_tls(options.require_tls);
            let policy = conn.policy();
            let outcomes = conn.send_relayed(sender, recipients, body, origin).await;
            if let Err(e) = &outcomes
                && reused
                && conn.failed_at_reset()
            {
                tracing::debug!(hop = %hop.key, error = %e, "cached connection is dead; trying another");
                continue;
            }
            let outcomes = match policy {
                // The queue entry says which TLS policy applied.
                Some(policy) => outcomes
                    .map(|list| {
                        list.into_iter()
                            .map(|o| o.noting(&format!("[TLS policy {policy}]")))
                            .collect()
                    })
                    .map_err(|e| ClientError::UnderPolicy {
                        policy,
                        source: Box::new(e),
                    })?,
                None => outcomes?,
            };
            self.release(hop, conn, epoch);
            return Ok(outcomes);
        }
    }

    /// Hands one message to the LMTP server of `hop` (a mailbox server),
    /// on a cached connection when one is alive, else on a new one. Each
    /// recipient's outcome is the server's reply for it after the
    /// message. `Err`: no connection could be opened, or it failed before
    /// the message was sent (every recipient is deferred).
    pub async fn deliver_lmtp(
        &self,
        hop: &SmtpHop,
        sender: Option<&str>,
        recipients: &[String],
        body: &[u8],
    ) -> Result<Vec<RecipientOutcome>, ClientError> {
        // The mailbox server's concurrency is bounded like a relay hop's.
        let _turn = self.inner.turn(&hop.key).await;
        loop {
            let (mut conn, epoch, reused) = match self.take_idle(hop, Dialect::Lmtp) {
                Some((conn, epoch)) => (conn, epoch, true),
                None => {
                    let epoch = self.inner.connector.identity_epoch();
                    (self.inner.connector.connect_lmtp(hop).await?, epoch, false)
                }
            };
            let outcomes = match conn.send(sender, recipients, body).await {
                Err(e) if reused && conn.failed_at_reset() => {
                    tracing::debug!(hop = %hop.key, error = %e, "cached LMTP connection is dead; trying another");
                    continue;
                }
                outcomes => outcomes?,
            };
            self.release(hop, conn, epoch);
            return Ok(outcomes);
        }
    }

    /// Idle connections cached for the hop `key`.
    pub fn idle_count(&self, key: &NextHop) -> usize {
        self.inner.lock().get(key).map_or(0, Vec::len)
    }

    /// Closes (QUIT) the idle connections older than `idle_keep` or made
    /// under an identity or trust that has changed since; returns how many.
    pub async fn reap(&self) -> usize {
        self.inner.forget_quiet_hops();
        let expired = self.inner.take_expired();
        let n = expired.len();
        for conn in expired {
            conn.quit().await;
        }
        n
    }

    /// Closes (QUIT) every idle connection, e.g. at shutdown.
    pub async fn close_all(&self) {
        let all: Vec<Idle> = self.inner.lock().drain().flat_map(|(_, list)| list).collect();
        for idle in all {
            idle.conn.quit().await;
        }
    }

    /// Runs [`Pool::reap`] every half `idle_keep` until the handle or the
    /// pool is dropped.
    pub fn spawn_reaper(&self) -> ReaperHandle {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = (self.inner.connector.settings.idle_keep / 2).max(Duration::from_millis(100));
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(inner) = weak.upgrade() else { break };
                Pool { inner }.reap().await;
            }
        });
        ReaperHandle(task)
    }

    /// A cached connection for `hop` speaking `dialect`, if any; whether
    /// it is still alive shows at the RSET that opens its next
    /// transaction. A hop with fixed hosts (not MX-routed) takes only a
    /// connection to its first host: routing puts first the host it wants
    /// this message on (the edges' hubs and the hub's edges rotate per
    /// message to spread the load; a mailbox's home hub comes first), so a
    /// host that joins gets its share instead of the connections already
    /// open to the others carrying everything.
    fn take_idle(&self, hop: &SmtpHop, dialect: Dialect) -> Option<(ClientConnection, (u64, u64))> {
        let keep = self.inner.connector.settings.idle_keep;
        let first = hop
            .hosts
            .first()
            .filter(|_| hop.mx_domain.is_none() && hop.hosts.len() > 1);
        loop {
            let idle = {
                let mut all = self.inner.lock();
                let list = all.get_mut(&hop.key)?;
                let at = match first {
                    Some(first) => list.iter().rposition(|i| i.conn.peer() == first)?,
                    None => list.len().checked_sub(1)?,
                };
                list.remove(at)
            };
            let epoch = self.inner.connector.identity_epoch();
            if idle.since.elapsed() >= keep
                || !idle.hop.shares_connections_with(hop)
                || idle.epoch != epoch
                || idle.conn.dialect() != dialect
            {
                tokio::spawn(idle.conn.quit());
                continue;
            }
            return Some((idle.conn, idle.epoch));
        }
    }

    /// Caches `conn` after a transaction, or closes it when it is spent or
    /// the cache for the hop is full.
    fn release(&self, hop: &SmtpHop, conn: ClientConnection, epoch: (u64, u64)) {
        if !conn.is_reusable() || epoch != self.inner.connector.identity_epoch() {
            tokio::spawn(conn.quit());
            return;
        }
        let mut idle = self.inner.lock();
        let list = idle.entry(hop.key.clone()).or_default();
        if list.len() >= self.inner.max_idle_per_hop {
            drop(idle);
            tokio::spawn(conn.quit());
            return;
        }
        list.push(Idle {
            conn,
            hop: hop.clone(),
            since: Instant::now(),
            epoch,
        });
    }
}

/// Stops the reaper task when dropped.
#[derive(Debug)]
pub struct ReaperHandle(tokio::task::JoinHandle<()>);

impl Drop for ReaperHandle {
    fn drop(&mut self) {
        self.0.abort();
    }
}
