//! Recipient acceptance through routing: at RCPT the router names the
//! next hop (or refuses, e.g. 550 5.7.1 for relaying), and the hop is
//! remembered so the queued recipient carries the very hop the client was
//! answered for, even if routing changes before the final dot.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::routing::{NextHop, Origin, RouteRefusal, Router};
use crate::smtp::{ForwardPath, Mailbox, RecipientContext, RecipientPolicy, RecipientVerdict, ReversePath};

/// The session's origin as the connection updates it (after STARTTLS),
/// shared with the recipient policy.
#[derive(Clone, Debug)]
pub struct SharedOrigin(Arc<Mutex<Origin>>);

impl SharedOrigin {
    /// Starts from `origin`.
    pub fn new(origin: Origin) -> Self {
        Self(Arc::new(Mutex::new(origin)))
    }

    /// The origin now.
    pub fn get(&self) -> Origin {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Changes it.
    pub fn update(&self, f: impl FnOnce(&mut Origin)) {
        f(&mut self.0.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// Next hops chosen at RCPT, by recipient address, for the current
/// transaction; shared between the session's policy and the connection.
#[derive(Clone, Debug, Default)]
pub struct RouteBook(Arc<Mutex<HashMap<String, NextHop>>>);

impl RouteBook {
    fn insert(&self, address: String, key: NextHop) {
        self.lock().insert(address, key);
    }

    fn clear(&self) {
        self.lock().clear();
    }

    /// The hop chosen for `address` in this transaction.
    pub fn get(&self, address: &str) -> Option<NextHop> {
        self.lock().get(address).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NextHop>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The recipient policy of a receive connector: a recipient is taken when
/// the router has a next hop for it.
pub struct RoutingPolicy {
    router: Arc<dyn Router>,
    postmaster: Mailbox,
    book: RouteBook,
    origin: Option<SharedOrigin>,
}

impl RoutingPolicy {
    /// Routes with `router`; the bare `<Postmaster>` stands for
    /// `postmaster` (postmaster@ the node). Keys go into `book`.
    pub fn new(router: Arc<dyn Router>, postmaster: Mailbox, book: RouteBook) -> Self {
        Self {
            router,
            postmaster,
            book,
            origin: None,
        }
    }

    /// Routes as the session's origin allows (relaying, domain security).
    pub fn with_origin(mut self, origin: SharedOrigin) -> Self {
        self.origin = Some(origin);
        self
    }

    /// The mailbox a forward path is delivered to.
    pub fn mailbox(&self, path: &ForwardPath) -> Mailbox {
        resolve_mailbox(path, &self.postmaster)
    }
}

/// `<Postmaster>` becomes `postmaster`; a mailbox stays itself.
pub fn resolve_mailbox(path: &ForwardPath, postmaster: &Mailbox) -> Mailbox {
    match path {
        ForwardPath::Postmaster => postmaster.clone(),
        ForwardPath::Mailbox(m) => m.clone(),
    }
}

/// The next hop for `path`. `<Postmaster>` must always be accepted
/// (RFC 5321 §4.5.1): when the router has no route for it, it is
/// delivered locally.
pub fn route(router: &dyn Router, path: &ForwardPath, postmaster: &Mailbox) -> Result<NextHop, RouteRefusal> {
    let mailbox = resolve_mailbox(path, postmaster);
    match (router.next_hop(&mailbox), path) {
        (Ok(key), _) => Ok(key),
        (Err(_), ForwardPath::Postmaster) => Ok(NextHop::Local),
        (Err(refusal), ForwardPath::Mailbox(_)) => Err(refusal),
    }
}

/// `route` with the session's sender and origin. `<Postmaster>` falls
/// back to local delivery only when the refusal is about where it goes
/// (5xx); a temporary refusal about who is sending (domain security's
/// 451 4.7.5) applies to it too: RFC 5321's postmaster rule does not
/// override an administrator's demand for mutual TLS, and accepting it
/// would queue a report to a forged sender (backscatter).
pub fn route_from(
    router: &dyn Router,
    path: &ForwardPath,
    postmaster: &Mailbox,
    sender: Option<&Mailbox>,
    origin: &Origin,
) -> Result<NextHop, RouteRefusal> {
    let mailbox = resolve_mailbox(path, postmaster);
    match (router.next_hop_from(&mailbox, sender, origin), path) {
        (Ok(key), _) => Ok(key),
        (Err(refusal), ForwardPath::Postmaster) if refusal.0.is_transient() => Err(refusal),
        (Err(_), ForwardPath::Postmaster) => Ok(NextHop::Local),
        (Err(refusal), ForwardPath::Mailbox(_)) => Err(refusal),
    }
}

impl RecipientPolicy for RoutingPolicy {
    fn check(&mut self, ctx: RecipientContext<'_>, to: &ForwardPath) -> RecipientVerdict {
        if ctx.accepted.is_empty() {
            // A new transaction: forget keys of abandoned ones.
            self.book.clear();
        }
        let routed = match &self.origin {
            Some(origin) => {
                let sender = match ctx.from {
                    ReversePath::Mailbox(m) => Some(m),
                    ReversePath::Null => None,
                };
                route_from(self.router.as_ref(), to, &self.postmaster, sender, &origin.get())
            }
            None => route(self.router.as_ref(), to, &self.postmaster),
        };
        match routed {
            Ok(key) => {
                self.book.insert(self.mailbox(to).to_string(), key);
                RecipientVerdict::Accept
            }
            Err(RouteRefusal(reply)) => RecipientVerdict::Reject(reply),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use postern_model::Domain;

    use super::*;
    use crate::routing::StaticRouter;
    use crate::smtp::{HeloName, ReversePath};

    #[test]
    fn local_accepted_with_key_relay_refused_postmaster_always() {
        let router = Arc::new(StaticRouter {
            local_domains: vec![Domain::parse("local.test").unwrap()],
            relay: None,
        });
        let book = RouteBook::default();
        let postmaster = Mailbox::parse("postmaster@mx.other.test").unwrap();
        let mut policy = RoutingPolicy::new(router, postmaster, book.clone());
        let helo = HeloName::parse("client.test").unwrap();
        let from = ReversePath::Null;
        let ctx = RecipientContext {
            helo: &helo,
            from: &from,
            accepted: &[],
            tls: false,
        };
        let local = ForwardPath::parse("<Bob@Local.Test>").unwrap();
        assert_eq!(policy.check(ctx, &local), RecipientVerdict::Accept);
        assert_eq!(book.get("Bob@local.test"), Some(NextHop::Local));
        let remote = ForwardPath::parse("<x@elsewhere.test>").unwrap();
        let RecipientVerdict::Reject(reply) = policy.check(ctx, &remote) else {
            panic!("relaying accepted");
        };
        assert_eq!(reply.code(), 550);
        assert_eq!(
            policy.check(ctx, &ForwardPath::Postmaster),
            RecipientVerdict::Accept
        );
        assert_eq!(book.get("postmaster@mx.other.test"), Some(NextHop::Local));
    }

    /// Refuses every sender as domain security does (451 4.7.5).
    struct DomainSecurityRefuses;

    impl Router for DomainSecurityRefuses {
        fn next_hop(&self, _rcpt: &Mailbox) -> Result<NextHop, RouteRefusal> {
            Ok(NextHop::Local)
        }
        fn destination(&self, _hop: &NextHop) -> Option<crate::routing::Destination> {
            None
        }
        fn next_hop_from(
            &self,
            _rcpt: &Mailbox,
            _sender: Option<&Mailbox>,
            _origin: &Origin,
        ) -> Result<NextHop, RouteRefusal> {
            Err(RouteRefusal(crate::smtp::Reply::simple(
                451,
                (4, 7, 5),
                "Domain security failed",
            )))
        }
    }

    #[test]
    fn postmaster_has_no_exception_from_domain_security() {
        let postmaster = Mailbox::parse("postmaster@mx.other.test").unwrap();
        let origin = Origin::anonymous("Default");
        let refused = route_from(
            &DomainSecurityRefuses,
            &ForwardPath::Postmaster,
            &postmaster,
            None,
            &origin,
        )
        .unwrap_err();
        assert_eq!(refused.0.code(), 451);
        assert_eq!(
            refused.0.enhanced().map(|e| e.to_string()).as_deref(),
            Some("4.7.5")
        );
    }
}
