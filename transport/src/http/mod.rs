//! The node's HTTP server: hyper (HTTP/1.1) driving an axum router, on
//! plain TCP (`/metrics`, `/healthz`, `/readyz`) or on TLS (the hub's
//! console). One request per connection (`Connection: close`): scrapers and
//! orchestrator probes are the clients, and a browser opens a new
//! connection per page without harm.
//!
//! The limits of the former hand-written server are kept: the request line
//! is at most 8 KB (414), the head at most 16 KB of headers and 100 of them
//! (431, hyper's own check), the head must arrive within 5 s (408), the
//! answer must be written within 5 s, and after answering the server reads
//! what the client still sends for up to a second before closing, so the
//! client reads the answer instead of a reset. hyper closes a connection
//! silently when the head is late, so the 408 is written here, once hyper
//! has let go of the socket.

pub mod routes;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Bounds on a request.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long the request head may take to arrive.
    pub read_timeout: Duration,
    /// The longest request target, in bytes.
    pub max_request_line: usize,
    /// The most bytes of headers.
    pub max_headers: usize,
    /// How long a whole exchange may take once the head is in (a body
    /// trickling in, an answer read slowly).
    pub exchange_timeout: Duration,
}

/// The limits a node serves with.
pub const LIMITS: Limits = Limits {
    read_timeout: Duration::from_secs(5),
    max_request_line: 8 * 1024,
    max_headers: 16 * 1024,
    exchange_timeout: Duration::from_secs(30),
};

/// How long, and how much, to read after answering before closing.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 64 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over plain HTTP on `listener` (bound by the caller, port
/// 0 in tests) until `shutdown` completes, then waits for the exchanges in
/// flight, each bounded by the limits.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    accept_loop(listener, router, None, shutdown, limits).await;
}

/// Serves `router` over HTTPS: each connection is a TLS handshake with
/// `acceptor` (the node's certificate resolver picks the certificate), then
/// the same HTTP exchange as [`serve`].
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    router: Router,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    accept_loop(listener, router, Some(acceptor), shutdown, limits).await;
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
    limits: Limits,
) {
    tokio::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, router.clone(), tls.clone(), limits));
                }
                Err(e) => {
                    // Running out of descriptors and the like pass; do not spin.
                    tracing::warn!("HTTP listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    while connections.join_next().await.is_some() {}
}

async fn connection(stream: TcpStream, router: Router, tls: Option<TlsAcceptor>, limits: Limits) {
    match tls {
        None => exchange(stream, router, limits).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => exchange(stream, router, limits).await,
            // A failed handshake has told the client already (an alert).
            Ok(Err(e)) => tracing::debug!(error = %e, "console TLS handshake failed"),
            Err(_) => tracing::debug!("console TLS handshake timed out"),
        },
    }
}

/// One request and its answer on `stream`.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin + Send>(mut stream: S, router: Router, limits: Limits) {
    let head_seen = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&head_seen);
    let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
        seen.store(true, Ordering::SeqCst);
        let router = router.clone();
        async move {
            let request = request.map(Body::new);
            if request.uri().to_string().len() > limits.max_request_line {
                return Ok(plain(StatusCode::URI_TOO_LONG, "Request line too long\n"));
            }
            router.oneshot(request).await
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(false)
        .title_case_headers(true)
        // hyper's floor is 8 KB; the request line plus the headers.
        .max_buf_size((limits.max_request_line + limits.max_headers).max(8192));
    let served = {
        let conn = builder.serve_connection(TokioIo::new(&mut stream), service);
        let head_deadline = async {
            tokio::time::sleep(limits.read_timeout).await;
            if head_seen.load(Ordering::SeqCst) {
                tokio::time::sleep(limits.exchange_timeout).await;
            }
        };
        tokio::select! {
            _ = conn => Served::Answered,
            () = head_deadline => Served::TimedOut,
        }
    };
    match served {
        Served::Answered => {}
        Served::TimedOut if !head_seen.load(Ordering::SeqCst) => {
            let answer = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nRequest timeout\n";
            let write = async {
                stream.write_all(answer).await?;
                stream.shutdown().await
            };
            if !matches!(tokio::time::timeout(limits.read_timeout, write).await, Ok(Ok(()))) {
                return;
            }
        }
        // The exchange took too long after its head: nobody to tell.
        Served::TimedOut => return,
    }
    // Lingering close: read what the client still sends (the rest of an
    // oversized head) until it closes, so our close does not reset the
    // connection before the client has read the answer.
    let _ = tokio::time::timeout(LINGER_TIMEOUT, async {
        let mut rest = (&mut stream).take(LINGER_BYTES);
        tokio::io::copy(&mut rest, &mut tokio::io::sink()).await
    })
    .await;
}

/// How hyper's part of an exchange ended.
enum Served {
    /// hyper answered, or the client went away.
    Answered,
    /// A deadline passed first.
    TimedOut,
}

/// A short plain-text answer.
pub fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
