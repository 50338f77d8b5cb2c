//! What every node serves over HTTP: `GET /metrics` (Prometheus text
//! exposition), `GET /healthz` (the process answers: liveness) and
//! `GET /readyz` (the mail engine is up and not stopping: readiness, for
//! compose health checks and orchestrators). Any other path is 404, another
//! method on these paths 405 with `Allow: GET`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Response, StatusCode, header};
use axum::routing::any;

use crate::http::plain;
use crate::metrics::Metrics;

/// Whether the node is ready for traffic; shared by the engine (which sets
/// it) and the HTTP server (which reports it).
#[derive(Clone, Debug, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Not ready yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the node ready (`true`) or not (`false`: starting, stopping).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }

    /// Whether the node is ready.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The node's routes; the console merges its own onto them.
pub fn node_routes(metrics: Arc<Metrics>, ready: Readiness) -> Router {
    Router::new()
        .route(
            "/metrics",
            any(move |method: Method| {
                let metrics = Arc::clone(&metrics);
                async move {
                    get_only(&method).unwrap_or_else(|| match metrics.render() {
                        Ok(text) => {
                            let mut r = Response::new(Body::from(text));
                            r.headers_mut().insert(
                                header::CONTENT_TYPE,
                                HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                            );
                            r
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "/metrics");
                            plain(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "Cannot write the metrics; see the node's log\n",
                            )
                        }
                    })
                }
            }),
        )
        .route(
            "/healthz",
            any(|method: Method| async move {
                get_only(&method).unwrap_or_else(|| plain(StatusCode::OK, "ok\n"))
            }),
        )
        .route(
            "/readyz",
            any(move |method: Method| {
                let ready = ready.clone();
                async move {
                    get_only(&method).unwrap_or_else(|| {
                        if ready.is_ready() {
                            plain(StatusCode::OK, "ready\n")
                        } else {
                            plain(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
                        }
                    })
                }
            }),
        )
        .fallback(|| async { plain(StatusCode::NOT_FOUND, "Not found; try /metrics\n") })
}

/// The 405 for anything but GET (HEAD is answered as GET by hyper's rules
/// only when routed so; probes and scrapers use GET).
fn get_only(method: &Method) -> Option<Response<Body>> {
    if method == Method::GET {
        return None;
    }
    let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "Use GET\n");
    r.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET"));
    Some(r)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::oneshot;

    use super::*;
    use crate::http::{LIMITS, Limits, serve};
    use crate::protocol_log::Direction;

    struct Server {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(metrics: Arc<Metrics>, ready: Readiness, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(serve(
            listener,
            node_routes(metrics, ready),
            async move { rx.await.unwrap_or(()) },
            limits,
        ));
        Server { addr, stop, task }
    }

    /// Sends `request` and returns everything the server wrote.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        String::from_utf8(out).unwrap()
    }

    #[tokio::test]
    async fn request_lines_are_routed() {
        let ready = Readiness::new();
        let server = start(Arc::new(Metrics::new()), ready.clone(), LIMITS).await;
        for (line, want) in [
            ("GET /metrics HTTP/1.1", "200 OK"),
            ("GET /metrics?name[]=x HTTP/1.0", "200 OK"),
            ("GET /healthz HTTP/1.1", "200 OK"),
            ("GET /readyz HTTP/1.1", "503 Service Unavailable"),
            ("POST /metrics HTTP/1.1", "405 Method Not Allowed"),
            ("PUT /readyz HTTP/1.1", "405 Method Not Allowed"),
            ("GET / HTTP/1.1", "404 Not Found"),
            ("GET /metrics/ HTTP/1.1", "404 Not Found"),
            ("GET /metrics HTTP/2", "400 Bad Request"),
            ("GET  /metrics HTTP/1.1", "400 Bad Request"),
            ("hello", "400 Bad Request"),
        ] {
            let got = exchange(server.addr, format!("{line}\r\nHost: x\r\n\r\n").as_bytes()).await;
            // hyper answers an HTTP/1.0 request in HTTP/1.0.
            assert!(
                got.starts_with("HTTP/1.") && got[9..].starts_with(&format!("{want}\r\n")),
                "{line:?}: {got}"
            );
        }
        ready.set(true);
        let got = exchange(server.addr, b"GET /readyz HTTP/1.1\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
        assert!(got.ends_with("\r\n\r\nready\n"), "{got}");
        server.stop.send(()).unwrap();
    }

    #[tokio::test]
    async fn metrics_are_served_over_loopback() {
        let metrics = Arc::new(Metrics::new());
        metrics.domain_secured_message_received();
        metrics.smtp_session(Direction::Receive, "Default");
        let server = start(Arc::clone(&metrics), Readiness::new(), LIMITS).await;

        let got = exchange(
            server.addr,
            b"GET /metrics HTTP/1.1\r\nHost: edge1\r\nAccept: */*\r\n\r\n",
        )
        .await;
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        let head: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(head[0], "HTTP/1.1 200 OK");
        assert!(
            head.contains(&"Content-Type: text/plain; version=0.0.4; charset=utf-8"),
            "{head:?}"
        );
        assert!(head.contains(&"Connection: close"), "{head:?}");
        assert!(head.contains(&format!("Content-Length: {}", body.len()).as_str()));
        assert!(body.contains("\npostern_domain_secured_messages_received_total 1\n"));
        assert!(
            body.contains("postern_smtp_sessions_total{direction=\"receive\",connector=\"Default\"} 1\n")
        );

        let got = exchange(server.addr, b"GET /favicon.ico HTTP/1.1\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 404 Not Found\r\n"), "{got}");
        let got = exchange(server.addr, b"DELETE /metrics HTTP/1.1\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{got}");
        assert!(got.contains("\r\nAllow: GET\r\n"));
        let got = exchange(server.addr, b"hello\r\n\r\n").await;
        assert!(got.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{got}");

        server.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server.task)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn oversized_heads_are_refused() {
        let server = start(Arc::new(Metrics::new()), Readiness::new(), LIMITS).await;
        let mut long = b"GET /".to_vec();
        long.extend(std::iter::repeat_n(b'a', 9 * 1024));
        long.extend(b" HTTP/1.1\r\n\r\n");
        let got = exchange(server.addr, &long).await;
        assert!(got.starts_with("HTTP/1.1 414 URI Too Long\r\n"), "{got}");

        let mut headers = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..1000 {
            headers.extend(format!("X-Filler-{i}: {}\r\n", "b".repeat(20)).as_bytes());
        }
        headers.extend(b"\r\n");
        let got = exchange(server.addr, &headers).await;
        assert!(got.starts_with("HTTP/1.1 431 "), "{got}");

        // Few headers, but too many bytes of them.
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..20 {
            big.extend(format!("X-Big-{i}: {}\r\n", "c".repeat(1500)).as_bytes());
        }
        big.extend(b"\r\n");
        let got = exchange(server.addr, &big).await;
        assert!(got.starts_with("HTTP/1.1 431 "), "{got}");
        server.stop.send(()).unwrap();
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let limits = Limits {
            read_timeout: Duration::from_millis(200),
            ..LIMITS
        };
        let server = start(Arc::new(Metrics::new()), Readiness::new(), limits).await;
        let got = tokio::time::timeout(
            Duration::from_secs(5),
            exchange(server.addr, b"GET /metrics HTTP/1.1\r\n"),
        )
        .await
        .unwrap();
        assert!(got.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{got}");
        server.stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server.task)
            .await
            .unwrap()
            .unwrap();
    }
}
