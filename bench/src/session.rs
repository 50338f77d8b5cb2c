//! One client SMTP session as the bench drives it: greeting, EHLO,
//! STARTTLS with a client certificate, EHLO again, then MAIL/RCPT/DATA per
//! message (pipelined when the server advertises PIPELINING).

use std::time::Duration;

use anyhow::{Context, bail};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::reply::{self, Reply};

/// Longest wait for one reply or one write before the session is declared dead.
const IO_TIMEOUT: Duration = Duration::from_secs(120);

/// A byte stream with a read buffer, speaking in replies.
struct Conn<S> {
    stream: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    fn new(stream: S) -> Self {
        Self {
            stream,
            buf: Vec::with_capacity(4096),
        }
    }

    async fn reply(&mut self) -> anyhow::Result<Reply> {
        loop {
            if let Some((reply, used)) = reply::parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            let n = timeout(IO_TIMEOUT, self.stream.read_buf(&mut self.buf))
                .await
                .context("timed out waiting for a reply")??;
            if n == 0 {
                bail!("server closed the connection");
            }
        }
    }

    /// Reads a reply and fails unless its code is `want` (`want` < 10 means
    /// any code of that class, e.g. 2 for 2xx).
    async fn expect(&mut self, after: &str, want: u16) -> anyhow::Result<Reply> {
        let reply = self.reply().await.with_context(|| format!("after {after}"))?;
        let ok = if want < 10 {
            reply.code / 100 == want
        } else {
            reply.code == want
        };
        if !ok {
            bail!("after {after}: server replied {reply}");
        }
        Ok(reply)
    }

    async fn send(&mut self, parts: &[&[u8]]) -> anyhow::Result<()> {
        let write = async {
            for part in parts {
                self.stream.write_all(part).await?;
            }
            self.stream.flush().await
        };
        timeout(IO_TIMEOUT, write).await.context("timed out writing")??;
        Ok(())
    }
}

/// An open session, past STARTTLS and the second EHLO.
pub struct Session {
    conn: Conn<TlsStream<TcpStream>>,
    pipelining: bool,
    envelope: Vec<u8>,
}

impl Session {
    /// Connects to `target` and upgrades with `tls`, verifying `name`.
    pub async fn open(
        target: &str,
        tls: &TlsConnector,
        name: ServerName<'static>,
        ehlo: &str,
        from: &str,
        to: &str,
    ) -> anyhow::Result<Self> {
        let tcp = timeout(IO_TIMEOUT, TcpStream::connect(target))
            .await
            .context("timed out connecting")?
            .with_context(|| format!("connecting to {target}"))?;
        tcp.set_nodelay(true).context("setting TCP_NODELAY")?;
        let mut plain = Conn::new(tcp);
        plain.expect("connect", 220).await?;
        plain.send(&[format!("EHLO {ehlo}\r\n").as_bytes()]).await?;
        let caps = plain.expect("EHLO", 250).await?;
        if !caps.has_keyword("STARTTLS") {
            bail!("server does not offer STARTTLS");
        }
        plain.send(&[b"STARTTLS\r\n"]).await?;
        plain.expect("STARTTLS", 220).await?;
        if !plain.buf.is_empty() {
            bail!("server sent data after its STARTTLS reply (response injection?)");
        }
        let tls_stream = timeout(IO_TIMEOUT, tls.connect(name, plain.stream))
            .await
            .context("timed out in the TLS handshake")?
            .context("TLS handshake")?;
        let mut conn = Conn::new(tls_stream);
        conn.send(&[format!("EHLO {ehlo}\r\n").as_bytes()]).await?;
        // With TLS 1.3 a refused client certificate shows up here.
        let caps = conn.expect("EHLO after STARTTLS", 250).await?;
        Ok(Self {
            conn,
            pipelining: caps.has_keyword("PIPELINING"),
            envelope: format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n").into_bytes(),
        })
    }

    /// Whether MAIL/RCPT/DATA go out in one write.
    pub fn pipelining(&self) -> bool {
        self.pipelining
    }

    /// Sends one message; `message` must end in CRLF, hold no line that is
    /// a lone dot, and need no dot-stuffing (see `message`). Returns after
    /// the reply to the final dot.
    pub async fn send_message(&mut self, message: &[u8]) -> anyhow::Result<()> {
        let conn = &mut self.conn;
        if self.pipelining {
            conn.send(&[&self.envelope]).await?;
            conn.expect("MAIL", 2).await?;
            conn.expect("RCPT", 2).await?;
            conn.expect("DATA", 354).await?;
        } else {
            // The envelope's three lines, one round trip each.
            for (verb, line) in ["MAIL", "RCPT", "DATA"]
                .iter()
                .zip(self.envelope.split_inclusive(|&b| b == b'\n'))
            {
                conn.send(&[line]).await?;
                conn.expect(verb, if *verb == "DATA" { 354 } else { 2 }).await?;
            }
        }
        conn.send(&[message, b".\r\n"]).await?;
        conn.expect("end of data", 250).await?;
        Ok(())
    }

    /// QUIT and close; errors here do not matter to the measurement.
    pub async fn quit(mut self) {
        if self.conn.send(&[b"QUIT\r\n"]).await.is_ok() {
            let _ = self.conn.reply().await;
        }
        let _ = self.conn.stream.shutdown().await;
    }
}
