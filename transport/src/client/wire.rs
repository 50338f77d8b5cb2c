//! The client's socket: a TCP stream, upgraded in place to TLS after
//! STARTTLS, with reads and writes under a deadline and replies read
//! through the sans-IO [`ReplyParser`]. The wire also holds the session's
//! protocol logger: command lines written and reply lines read are logged
//! here, message content (written with [`Wire::write_message`]) never is.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::client::ClientError;
use crate::protocol_log::SessionLogger;
use crate::smtp::{Reply, ReplyParser};
use crate::tls::TlsInfo;

/// Plain TCP, or TLS over it.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One SMTP connection's bytes, named by the `host:port` it goes to.
pub(crate) struct Wire {
    stream: Stream,
    parser: ReplyParser,
    host: String,
    buf: Vec<u8>,
    log: SessionLogger,
}

impl Wire {
    /// A plain-text connection to `host`, logged to `log` (whose `+` line
    /// is written here).
    pub(crate) fn new(tcp: TcpStream, host: String, mut log: SessionLogger) -> Self {
        log.connect();
        Self {
            stream: Stream::Plain(tcp),
            parser: ReplyParser::new(),
            host,
            buf: vec![0; 16 * 1024],
            log,
        }
    }

    /// The session's protocol logger, for `*` lines.
    pub(crate) fn log(&mut self) -> &mut SessionLogger {
        &mut self.log
    }

    /// `host:port`, for messages.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    /// The next reply, waiting at most `limit`.
    pub(crate) async fn read_reply(
        &mut self,
        stage: &'static str,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        loop {
            match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    self.log.receive_reply(&reply);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(source) => {
                    return Err(ClientError::Protocol {
                        host: self.host.clone(),
                        source,
                    });
                }
            }
            let n = match tokio::time::timeout(limit, self.stream.read(&mut self.buf)).await {
                Err(_) => return Err(self.timeout(stage)),
                Ok(Err(e)) => return Err(self.io(e)),
                Ok(Ok(n)) => n,
            };
            if n == 0 {
                return Err(ClientError::Closed {
                    host: self.host.clone(),
                    stage,
                });
            }
            self.parser.feed(&self.buf[..n]);
        }
    }

    /// Writes and flushes command lines (one, or a pipelined batch), each
    /// logged, waiting at most `limit`.
    pub(crate) async fn write(
        &mut self,
        lines: &str,
        stage: &'static str,
        limit: Duration,
    ) -> Result<(), ClientError> {
        if self.log.is_enabled() {
            for line in lines.split_terminator("\r\n") {
                self.log.send(line);
            }
        }
        self.write_bytes(lines.as_bytes(), stage, limit).await
    }

    /// Writes and flushes message content, which is never logged.
    pub(crate) async fn write_message(
        &mut self,
        bytes: &[u8],
        stage: &'static str,
        limit: Duration,
    ) -> Result<(), ClientError> {
        self.write_bytes(bytes, stage, limit).await
    }

    async fn write_bytes(
        &mut self,
        bytes: &[u8],
        stage: &'static str,
        limit: Duration,
    ) -> Result<(), ClientError> {
        let write = async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(limit, write).await {
            Err(_) => Err(self.timeout(stage)),
            Ok(Err(e)) => Err(self.io(e)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Sends one command line and reads its reply.
    pub(crate) async fn command(
        &mut self,
        line: &str,
        stage: &'static str,
        limit: Duration,
    ) -> Result<Reply, ClientError> {
        self.write(line, stage, limit).await?;
        self.read_reply(stage, limit).await
    }

    /// Runs the TLS handshake after the server's 220 to STARTTLS. Bytes the
    /// server sent after its 220 are discarded: nothing read in plain text
    /// may pass for what came over TLS. A failed handshake ends the
    /// session: its reason and `-` are logged.
    pub(crate) async fn start_tls(
        self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        limit: Duration,
    ) -> Result<(Self, TlsInfo), ClientError> {
        let Self {
            stream,
            host,
            buf,
            mut log,
            ..
        } = self;
        let Stream::Plain(tcp) = stream else {
            return Err(ClientError::Tls(
                host,
                io::Error::other("TLS is already active on this connection"),
            ));
        };
        let handshake = TlsConnector::from(config).connect(name, tcp);
        let tls = match tokio::time::timeout(limit, handshake).await {
            Err(_) => {
                log.tls_failed("handshake timed out");
                log.disconnect();
                return Err(ClientError::Tls(host, io::ErrorKind::TimedOut.into()));
            }
            Ok(Err(e)) => {
                log.tls_failed(&e);
                log.disconnect();
                return Err(ClientError::Tls(host, e));
            }
            Ok(Ok(tls)) => tls,
        };
        let info = TlsInfo::from_connection(tls.get_ref().1);
        let wire = Self {
            stream: Stream::Tls(Box::new(tls)),
            parser: ReplyParser::new(),
            host,
            buf,
            log,
        };
        Ok((wire, info))
    }

    /// Closes the connection (TLS close_notify first when TLS is up) and
    /// logs `-`.
    pub(crate) async fn shutdown(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
        self.log.disconnect();
    }

    fn timeout(&self, stage: &'static str) -> ClientError {
        ClientError::Timeout {
            host: self.host.clone(),
            stage,
        }
    }

    fn io(&self, source: io::Error) -> ClientError {
        ClientError::Io {
            host: self.host.clone(),
            source,
        }
    }
}
