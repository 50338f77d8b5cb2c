//! The hub's web console (`--console-bind`): HTTPS with the hub's SMTP
//! certificate, off unless bound. Server-rendered pages (`pages`) with an
//! inline style sheet and a small inline script for live refresh; nothing
//! is fetched from elsewhere and every page works without JavaScript.
//!
//! Access (`auth`): `postern console token` asks the hub, over its admin
//! socket, for a one-time login link; following it opens a session held in
//! a cookie. Every request without a session is answered 401. Pages read,
//! and the one action ("retry now") acts, through the same admin API the
//! CLI uses (`admin_client`), so the console can do nothing the CLI cannot.

pub mod admin_client;
pub mod auth;
pub mod edges;
pub mod history;
pub mod html;
pub mod pages;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use axum::middleware::{self, Next};
use axum::routing::{get, post};
use postern_proto::admin as pb;
use postern_tls::{ServerCertResolver, TlsRequirement, TrustStore, server_config};
use postern_transport::metrics::Metrics;
use postern_transport::node::Node;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;

use crate::console::admin_client::{AdminCallError, AdminClient};
use crate::console::auth::{Access, Session, Sessions};
use crate::console::history::History;
use crate::console::html::{CSP, Viewer, esc, page, unauthorised};

/// Why the console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// `--console-bind` is not `ip:port`.
    #[error("console binding {0:?} is not ip:port")]
    BadBinding(String),
    /// The address could not be bound.
    #[error("console binding {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// What the console's handlers share.
struct Shared {
    sessions: Sessions,
    history: Arc<History>,
    metrics: Arc<Metrics>,
    admin: AdminClient,
    hub: String,
    url: String,
}

/// A bound console: its address and login-link maker.
#[derive(Clone)]
pub struct Console {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Console {
    /// Binds `bind` (`ip:port`; port 0 picks one) for the hub `node`, whose
    /// counters are `metrics`.
    pub async fn bind(
        bind: &str,
        node: &Node,
        metrics: Arc<Metrics>,
    ) -> Result<(Self, TcpListener), ConsoleError> {
        let addr: SocketAddr = bind
            .parse()
            .map_err(|_| ConsoleError::BadBinding(bind.to_owned()))?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ConsoleError::Bind(addr, e))?;
        let addr = listener.local_addr().map_err(|e| ConsoleError::Bind(addr, e))?;
        let history = Arc::new(History::new());
        history::spawn_sampler(Arc::clone(&metrics), Arc::clone(&history));
        let shared = Arc::new(Shared {
            sessions: Sessions::new(),
            history,
            metrics,
            admin: AdminClient::new(node.admin_socket()),
            hub: node.identity.name.to_string(),
            url: format!("https://{addr}"),
        });
        Ok((Self { shared, addr }, listener))
    }

    /// Where the console listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The console's address as a URL (`https://127.0.0.1:7443`).
    pub fn url(&self) -> &str {
        &self.shared.url
    }

    /// Serves the console on `listener` with TLS from the hub's SMTP
    /// certificates until `shutdown` completes.
    pub fn serve(
        &self,
        listener: TcpListener,
        node: &Node,
        trust: &TrustStore,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let resolver = ServerCertResolver::new(node.certs.clone(), node.identity.fqdn.as_str());
        let mut tls = (*server_config(resolver, trust, &TlsRequirement::ENCRYPTION_ONLY)).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let router = self.router();
        tokio::spawn(postern_transport::http::serve_tls(
            listener,
            acceptor,
            router,
            shutdown,
            postern_transport::http::LIMITS,
        ))
    }

    /// A one-time login link.
    pub fn new_login_link(&self, access: Access) -> (String, SystemTime) {
        let (token, expires) = self.shared.sessions.new_token(access, SystemTime::now());
        (format!("{}/login?token={token}", self.shared.url), expires)
    }

    fn router(&self) -> Router {
        let shared = Arc::clone(&self.shared);
        Router::new()
            .route("/", get(organisation))
            .route("/queues", get(queues))
            .route("/queues/retry", post(retry))
            .route("/certificates", get(certificates))
            .route("/domain-security", get(domain_security))
            .route("/config", get(config))
            .route("/logout", post(logout))
            .fallback(|| async {
                html_response(StatusCode::NOT_FOUND, "<!DOCTYPE html><p>Not found</p>".into())
            })
            .layer(middleware::from_fn_with_state(
                Arc::clone(&shared),
                require_session,
            ))
            .route("/login", get(login))
            .layer(middleware::map_response(secure_headers))
            .with_state(shared)
    }
}

/// Headers on every answer: no caching, no framing, no sniffing, only
/// inline resources.
async fn secure_headers(mut response: Response<Body>) -> Response<Body> {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

fn html_response(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Lets a request through only with an open session (401 otherwise), and
/// a state-changing one only from this origin (403 otherwise).
async fn require_session(
    State(shared): State<Arc<Shared>>,
    mut request: Request,
    next: Next,
) -> Response<Body> {
    let headers = request.headers();
    let session = header_str(headers, header::COOKIE)
        .and_then(auth::session_cookie)
        .and_then(|id| shared.sessions.session(id, SystemTime::now()));
    let Some(session) = session else {
        let mut r = html_response(
            StatusCode::UNAUTHORIZED,
            unauthorised("This console needs a session."),
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Cookie realm=\"postern-console\""),
        );
        return r;
    };
    if request.method() != axum::http::Method::GET {
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        if !auth::same_origin(
            header_str(headers, header::HOST),
            header_str(headers, header::ORIGIN),
            header_str(headers, header::REFERER),
            fetch_site,
        ) {
            return html_response(
                StatusCode::FORBIDDEN,
                unauthorised("Refused: the request came from another site."),
            );
        }
    }
    request.extensions_mut().insert(session);
    next.run(request).await
}

#[derive(serde::Deserialize)]
struct LoginQuery {
    token: String,
    next: Option<String>,
}

/// Follows a login link: a valid token opens a session and goes to `next`
/// (a path on this console) or the organisation page.
async fn login(State(shared): State<Arc<Shared>>, Query(q): Query<LoginQuery>) -> Response<Body> {
    let Some((id, _)) = shared.sessions.login(&q.token, SystemTime::now()) else {
        return html_response(
            StatusCode::UNAUTHORIZED,
            unauthorised("This login link is unknown, used or expired."),
        );
    };
    let target = q
        .next
        .filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/".to_owned());
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(&target) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&auth::set_cookie(&id)) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

async fn logout(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response<Body> {
    if let Some(id) = header_str(&headers, header::COOKIE).and_then(auth::session_cookie) {
        shared.sessions.logout(id);
    }
    html_response(StatusCode::OK, unauthorised("Signed out."))
}

/// Frames a page body, or shows the admin API's error.
fn render(
    shared: &Shared,
    session: &Session,
    title: &str,
    path: &str,
    live: bool,
    body: Result<String, AdminCallError>,
) -> Response<Body> {
    let viewer = Viewer {
        hub: &shared.hub,
        read_only: session.access == Access::ReadOnly,
    };
    match body {
        Ok(body) => html_response(StatusCode::OK, page(title, path, &viewer, live, &body)),
        Err(e) => html_response(
            StatusCode::BAD_GATEWAY,
            page(
                title,
                path,
                &viewer,
                live,
                &format!(
                    "<p class=\"bad\">The admin API did not answer: {}</p>",
                    esc(&e.to_string())
                ),
            ),
        ),
    }
}

async fn organisation(
    State(shared): State<Arc<Shared>>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response<Body> {
    let body = pages::organisation(&shared.admin).await;
    render(&shared, &session, "Organisation", "/", true, body)
}

async fn queues(
    State(shared): State<Arc<Shared>>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response<Body> {
    let csrf = (session.access == Access::Admin).then_some(session.csrf.as_str());
    let body = pages::queues(&shared.admin, &shared.hub, csrf).await;
    render(&shared, &session, "Queues", "/queues", true, body)
}

async fn certificates(
    State(shared): State<Arc<Shared>>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response<Body> {
    let body = pages::certificates(&shared.admin, &shared.hub).await;
    render(&shared, &session, "Certificates", "/certificates", false, body)
}

async fn domain_security(
    State(shared): State<Arc<Shared>>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response<Body> {
    let partners = shared.metrics.partners();
    let samples = shared.history.samples();
    let body = pages::domain_security(&shared.admin, &partners, &samples).await;
    render(
        &shared,
        &session,
        "Domain security",
        "/domain-security",
        true,
        body,
    )
}

async fn config(
    State(shared): State<Arc<Shared>>,
    axum::Extension(session): axum::Extension<Session>,
) -> Response<Body> {
    let body = pages::config(&shared.admin).await;
    render(&shared, &session, "Configuration", "/config", false, body)
}

#[derive(serde::Deserialize)]
struct RetryForm {
    csrf: String,
    hop: String,
}

/// "Retry now" for a hop: `postern queue retry --hop H` through the admin
/// API, then back to the queues.
async fn retry(
    State(shared): State<Arc<Shared>>,
    axum::Extension(session): axum::Extension<Session>,
    Form(form): Form<RetryForm>,
) -> Response<Body> {
    if session.access == Access::ReadOnly {
        return html_response(StatusCode::FORBIDDEN, unauthorised("This session is read-only."));
    }
    if !auth::secrets_equal(&form.csrf, &session.csrf) {
        return html_response(
            StatusCode::FORBIDDEN,
            unauthorised("Refused: the form's CSRF token is wrong."),
        );
    }
    match shared.admin.retry(&form.hop).await {
        Ok(n) => {
            tracing::info!(hop = %form.hop.escape_debug(), messages = n, "console: retry now");
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::SEE_OTHER;
            r.headers_mut()
                .insert(header::LOCATION, HeaderValue::from_static("/queues"));
            r
        }
        Err(e) => render(&shared, &session, "Queues", "/queues", false, Err(e)),
    }
}

/// The admin API's console service: one-time login links.
#[derive(Clone)]
pub struct ConsoleService {
    console: Option<Console>,
}

impl ConsoleService {
    /// The service for `console` (`None`: the console is not bound, and a
    /// token request says so).
    pub fn new(console: Option<Console>) -> Self {
        Self { console }
    }
}

#[tonic::async_trait]
impl pb::console_server::Console for ConsoleService {
    async fn new_console_token(
        &self,
        request: tonic::Request<pb::NewConsoleTokenRequest>,
    ) -> Result<tonic::Response<pb::ConsoleToken>, tonic::Status> {
        let Some(console) = &self.console else {
            return Err(tonic::Status::failed_precondition(
                "the console is off on this hub: start it with --console-bind ADDR",
            ));
        };
        let access = if request.into_inner().read_only {
            Access::ReadOnly
        } else {
            Access::Admin
        };
        let (url, expires) = console.new_login_link(access);
        Ok(tonic::Response::new(pb::ConsoleToken {
            url,
            expires: OffsetDateTime::from(expires).format(&Rfc3339).unwrap_or_default(),
        }))
    }
}
