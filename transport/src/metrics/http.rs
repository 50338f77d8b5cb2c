//! `GET /metrics` over plain HTTP/1.1, written by hand: one request per
//! connection, `Connection: close`, 404 for any other path. A scraper is
//! the only client, so there is no keep-alive, chunking or body to read;
//! the request head is bounded (8 KB request line, 16 KB of headers, 5 s
//! to arrive) so a slow or hostile client cannot hold resources.
//!
//! The request line is judged by a pure function (`route`) with table
//! tests; the socket code only reads the head and writes the answer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::metrics::exposition::CONTENT_TYPE;

/// Bounds on a request.
#[derive(Clone, Copy, Debug)]
struct Limits {
    read_timeout: Duration,
    max_request_line: usize,
    max_headers: usize,
}

const LIMITS: Limits = Limits {
    read_timeout: Duration::from_secs(5),
    max_request_line: 8 * 1024,
    max_headers: 16 * 1024,
};

/// How long writing the answer may take.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long, and how much, to read after answering before closing.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
const LINGER_BYTES: u64 = 64 * 1024;

/// Serves `GET /metrics` on `listener` (bound by the caller, port 0 in
/// tests) until `shutdown` completes, then waits for the requests in
/// flight, each bounded by the read and write timeouts.
pub async fn serve_metrics(listener: TcpListener, metrics: Arc<Metrics>, shutdown: impl Future<Output = ()>) {
    serve(listener, metrics, shutdown, LIMITS).await;
}

async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
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
                    connections.spawn(answer(stream, Arc::clone(&metrics), limits));
                }
                Err(e) => {
                    // Running out of descriptors and the like pass; do not spin.
                    tracing::warn!("metrics listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    while connections.join_next().await.is_some() {}
}

/// What a request gets.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    TimedOut,
    UriTooLong,
    HeadersTooLarge,
}

/// Judges a request line (without its line ending).
fn route(request_line: &str) -> Route {
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") || method.is_empty() || !target.starts_with('/') {
        return Route::BadRequest;
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    match (method, path) {
        ("GET", "/metrics") => Route::Metrics,
        (_, "/metrics") => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// Why no request line came.
enum HeadError {
    /// The peer closed or the socket failed: nobody to answer.
    Gone,
    UriTooLong,
    HeadersTooLarge,
}

/// Reads the request head and returns the request line.
async fn read_head<R: AsyncRead + Unpin>(stream: R, limits: Limits) -> Result<String, HeadError> {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let cap = limits.max_request_line as u64 + 2;
    (&mut reader)
        .take(cap)
        .read_until(b'\n', &mut line)
        .await
        .map_err(|_| HeadError::Gone)?;
    if !line.ends_with(b"\n") {
        return Err(if line.len() as u64 >= cap {
            HeadError::UriTooLong
        } else {
            HeadError::Gone
        });
    }
    let request_line = String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_owned();
    if request_line.len() > limits.max_request_line {
        return Err(HeadError::UriTooLong);
    }
    // Read the headers to their end, so closing the socket after the answer
    // does not reset it under the client; their content does not matter.
    let mut budget = limits.max_headers as u64;
    loop {
        let mut header = Vec::new();
        let n = (&mut reader)
            .take(budget)
            .read_until(b'\n', &mut header)
            .await
            .map_err(|_| HeadError::Gone)?;
        if !header.ends_with(b"\n") {
            return Err(if n as u64 >= budget {
                HeadError::HeadersTooLarge
            } else {
                HeadError::Gone
            });
        }
        budget -= n as u64;
        if header == b"\r\n" || header == b"\n" {
            return Ok(request_line);
        }
    }
}

/// Answers one connection.
async fn answer(mut stream: TcpStream, metrics: Arc<Metrics>, limits: Limits) {
    let route = match tokio::time::timeout(limits.read_timeout, read_head(&mut stream, limits)).await {
        Err(_) => Route::TimedOut,
        Ok(Err(HeadError::Gone)) => return,
        Ok(Err(HeadError::UriTooLong)) => Route::UriTooLong,
        Ok(Err(HeadError::HeadersTooLarge)) => Route::HeadersTooLarge,
        Ok(Ok(line)) => route(&line),
    };
    let response = respond(&route, &metrics);
    let write = async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    };
    // The client may have gone; there is no one to tell.
    if let Ok(Ok(())) = tokio::time::timeout(WRITE_TIMEOUT, write).await {
        // Lingering close: read what the client still sends (the rest of an
        // oversized head) until it closes, so our close does not reset the
        // connection before the client has read the answer.
        let mut sink = tokio::io::sink();
        let mut rest = (&mut stream).take(LINGER_BYTES);
        let drain = tokio::io::copy(&mut rest, &mut sink);
        let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
    }
}

/// The whole response.
fn respond(route: &Route, metrics: &Metrics) -> String {
    let (status, content_type, extra, body) = match route {
        Route::Metrics => ("200 OK", CONTENT_TYPE, "", metrics.render()),
        Route::NotFound => (
            "404 Not Found",
            "text/plain",
            "",
            "Not found; try /metrics\n".to_owned(),
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain",
            "Allow: GET\r\n",
            "Use GET\n".to_owned(),
        ),
        Route::BadRequest => ("400 Bad Request", "text/plain", "", "Bad request\n".to_owned()),
        Route::TimedOut => (
            "408 Request Timeout",
            "text/plain",
            "",
            "Request timeout\n".to_owned(),
        ),
        Route::UriTooLong => (
            "414 URI Too Long",
            "text/plain",
            "",
            "Request line too long\n".to_owned(),
        ),
        Route::HeadersTooLarge => (
            "431 Request Header Fields Too Large",
            "text/plain",
            "",
            "Headers too large\n".to_owned(),
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use tokio::sync::oneshot;

    use super::*;
    use crate::protocol_log::Direction;

    #[test]
    fn request_lines_are_routed() {
        for (line, want) in [
            ("GET /metrics HTTP/1.1", Route::Metrics),
            ("GET /metrics?name[]=x HTTP/1.0", Route::Metrics),
            ("POST /metrics HTTP/1.1", Route::MethodNotAllowed),
            ("GET / HTTP/1.1", Route::NotFound),
            ("GET /metrics/ HTTP/1.1", Route::NotFound),
            ("GET /metrics", Route::BadRequest),
            ("GET /metrics HTTP/2", Route::BadRequest),
            ("GET  /metrics HTTP/1.1", Route::BadRequest),
            ("GET http://x/metrics HTTP/1.1", Route::BadRequest),
            ("", Route::BadRequest),
        ] {
            assert_eq!(route(line), want, "{line:?}");
        }
    }

    struct Server {
        addr: SocketAddr,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(metrics: Arc<Metrics>, limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel();
        let task = tokio::spawn(serve(
            listener,
            metrics,
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
    async fn metrics_are_served_over_loopback() {
        let metrics = Arc::new(Metrics::new());
        metrics.domain_secured_message_received();
        metrics.smtp_session(Direction::Receive, "Default");
        let server = start(Arc::clone(&metrics), LIMITS).await;

        let got = exchange(
            server.addr,
            b"GET /metrics HTTP/1.1\r\nHost: edge1\r\nAccept: */*\r\n\r\n",
        )
        .await;
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        let head: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(head[0], "HTTP/1.1 200 OK");
        assert!(head.contains(&"Content-Type: text/plain; version=0.0.4; charset=utf-8"));
        assert!(head.contains(&"Connection: close"));
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
        let server = start(Arc::new(Metrics::new()), LIMITS).await;
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
        server.stop.send(()).unwrap();
    }

    #[tokio::test]
    async fn a_silent_client_times_out() {
        let limits = Limits {
            read_timeout: Duration::from_millis(200),
            ..LIMITS
        };
        let server = start(Arc::new(Metrics::new()), limits).await;
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
