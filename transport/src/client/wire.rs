//! The client's socket: a TCP stream, upgraded in place to TLS after
//! STARTTLS, with reads and writes under a deadline and replies read
//! through the sans-IO [`ReplyParser`].

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
}

impl Wire {
    /// A plain-text connection to `host`.
    pub(crate) fn new(tcp: TcpStream, host: String) -> Self {
        Self {
            stream: Stream::Plain(tcp),
            parser: ReplyParser::new(),
            host,
            buf: vec![0; 16 * 1024],
        }
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
                Ok(Some(reply)) => return Ok(reply),
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

    /// Writes and flushes `bytes`, waiting at most `limit`.
    pub(crate) async fn write(
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
        self.write(line.as_bytes(), stage, limit).await?;
        self.read_reply(stage, limit).await
    }

    /// Runs the TLS handshake after the server's 220 to STARTTLS. Bytes the
    /// server sent after its 220 are discarded: nothing read in plain text
    /// may pass for what came over TLS.
    pub(crate) async fn start_tls(
        self,
        config: Arc<ClientConfig>,
        name: ServerName<'static>,
        limit: Duration,
    ) -> Result<(Self, TlsInfo), ClientError> {
        let Stream::Plain(tcp) = self.stream else {
            return Err(ClientError::Tls(
                self.host,
                io::Error::other("TLS is already active on this connection"),
            ));
        };
        let handshake = TlsConnector::from(config).connect(name, tcp);
        let tls = match tokio::time::timeout(limit, handshake).await {
            Err(_) => return Err(ClientError::Tls(self.host, io::ErrorKind::TimedOut.into())),
            Ok(Err(e)) => return Err(ClientError::Tls(self.host, e)),
            Ok(Ok(tls)) => tls,
        };
        let info = TlsInfo::from_connection(tls.get_ref().1);
        let wire = Self {
            stream: Stream::Tls(Box::new(tls)),
            parser: ReplyParser::new(),
            host: self.host,
            buf: self.buf,
        };
        Ok((wire, info))
    }

    /// Closes the connection (TLS close_notify first when TLS is up).
    pub(crate) async fn shutdown(&mut self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.stream.shutdown()).await;
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
