//! A scripted SMTP server for the client's tests: it answers from a
//! [`Script`] (so failures can be injected) and records every session's
//! commands, TLS state, client certificate and messages.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use postern_model::Thumbprint;
use rustls::ServerConfig;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::routing::HostPort;

/// How the server answers.
#[derive(Clone)]
pub struct Script {
    /// EHLO keywords (STARTTLS is added when `starttls` is set).
    pub keywords: Vec<String>,
    /// Offer STARTTLS with this config.
    pub starttls: Option<Arc<ServerConfig>>,
    /// Answer 220 to STARTTLS, then write garbage instead of TLS.
    pub tls_garbage: bool,
    /// A reply to EHLO instead of the 250 (e.g. `502 …` for HELO fallback).
    pub ehlo_reply: Option<String>,
    /// Reply to MAIL.
    pub mail_reply: String,
    /// Replies to RCPT by address; others get 250.
    pub rcpt: HashMap<String, String>,
    /// Reply to DATA.
    pub data_reply: String,
    /// Reply after the final dot.
    pub end_reply: String,
    /// Drop the connection after the first line of message data.
    pub close_in_data: bool,
    /// Drop the connection after the reply to the final dot.
    pub hang_up_after_message: bool,
    /// Speak LMTP: LHLO instead of EHLO, and after the message one reply
    /// per accepted recipient, taken from this map by address (others
    /// get `250 2.0.0 Saved`).
    pub lmtp: Option<HashMap<String, String>>,
    /// Over LMTP, drop the connection after this many per-recipient
    /// replies.
    pub lmtp_hang_up_after: Option<usize>,
    /// A reply to RSET instead of the 250 (e.g. `421 …`: shutting down).
    pub rset_reply: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            keywords: vec![
                "PIPELINING".into(),
                "8BITMIME".into(),
                "ENHANCEDSTATUSCODES".into(),
            ],
            starttls: None,
            tls_garbage: false,
            ehlo_reply: None,
            mail_reply: "250 2.1.0 Sender OK".into(),
            rcpt: HashMap::new(),
            data_reply: "354 Go ahead".into(),
            end_reply: "250 2.0.0 Queued as T1".into(),
            close_in_data: false,
            hang_up_after_message: false,
            lmtp: None,
            lmtp_hang_up_after: None,
            rset_reply: None,
        }
    }
}

/// What one session saw.
#[derive(Clone, Debug, Default)]
pub struct SessionRecord {
    /// Command lines, without CRLF.
    pub commands: Vec<String>,
    /// Whether TLS was established.
    pub tls: bool,
    /// The client certificate's thumbprint, when one was presented.
    pub client_cert: Option<Thumbprint>,
    /// Messages received (dot-unstuffed, with CRLF).
    pub messages: Vec<Vec<u8>>,
    /// The verbs of the commands that had arrived before the server
    /// answered the command ahead of them (pipelined by the client).
    pub pipelined: Vec<String>,
}

type Log = Arc<Mutex<Vec<SessionRecord>>>;

/// A running scripted server on 127.0.0.1.
pub struct TestServer {
    port: u16,
    log: Log,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Binds port 0 and serves `script` to every connection.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log: Log = Arc::default();
        let script = Arc::new(script);
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let index = {
                    let mut log = task_log.lock().unwrap();
                    log.push(SessionRecord::default());
                    log.len() - 1
                };
                tokio::spawn(session(tcp, script.clone(), task_log.clone(), index));
            }
        });
        Self { port, log, task }
    }

    /// Where to connect.
    pub fn host(&self) -> HostPort {
        HostPort {
            host: "127.0.0.1".into(),
            port: self.port,
        }
    }

    /// Every session so far.
    pub fn sessions(&self) -> Vec<SessionRecord> {
        self.log.lock().unwrap().clone()
    }

    /// The commands of every session, in order.
    pub fn commands(&self) -> Vec<String> {
        self.sessions().into_iter().flat_map(|s| s.commands).collect()
    }

    /// The verbs of every session's commands, in order.
    pub fn verbs(&self) -> Vec<String> {
        self.commands()
            .iter()
            .map(|c| c.split([' ', ':']).next().unwrap_or_default().to_owned())
            .collect()
    }
}

enum End {
    Closed,
    StartTls,
}

async fn session(tcp: TcpStream, script: Arc<Script>, log: Log, index: usize) {
    let mut io = BufReader::new(tcp);
    if io.write_all(b"220 test.server ESMTP\r\n").await.is_err() {
        return;
    }
    let End::StartTls = dialogue(&mut io, &script, &log, index, false).await else {
        return;
    };
    let Some(config) = script.starttls.clone() else {
        return;
    };
    let mut tcp = io.into_inner();
    if script.tls_garbage {
        let _ = tcp.write_all(b"this is not TLS at all\r\n").await;
        return;
    }
    let Ok(tls) = TlsAcceptor::from(config).accept(tcp).await else {
        return;
    };
    let client_cert = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| Thumbprint::of_der(c.as_ref()));
    {
        let mut log = log.lock().unwrap();
        log[index].tls = true;
        log[index].client_cert = client_cert;
    }
    let mut io = BufReader::new(tls);
    dialogue(&mut io, &script, &log, index, true).await;
}

async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    script: &Script,
    log: &Log,
    index: usize,
    tls: bool,
) -> End {
    let mut buf = Vec::new();
    let mut accepted: Vec<String> = Vec::new();
    loop {
        buf.clear();
        let waiting = !io.buffer().is_empty();
        match io.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return End::Closed,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        log.lock().unwrap()[index].commands.push(line.clone());
        let verb = line
            .split([' ', ':'])
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if waiting {
            log.lock().unwrap()[index].pipelined.push(verb.clone());
        }
        let hello = if script.lmtp.is_some() { "LHLO" } else { "EHLO" };
        let reply = match verb.as_str() {
            v if v == hello => match (&script.ehlo_reply, tls) {
                (Some(reply), false) => reply.clone(),
                _ => {
                    let mut keywords = script.keywords.clone();
                    if script.starttls.is_some() && !tls {
                        keywords.push("STARTTLS".into());
                    }
                    let mut reply = "250-test.server".to_owned();
                    for k in keywords {
                        reply.push_str("\r\n250-");
                        reply.push_str(&k);
                    }
                    // The last line must use a space.
                    if let Some(i) = reply.rfind("250-") {
                        reply.replace_range(i..i + 4, "250 ");
                    }
                    reply
                }
            },
            "HELO" => "250 test.server".into(),
            "STARTTLS" if script.starttls.is_some() && !tls => {
                let _ = io.write_all(b"220 2.0.0 Ready to start TLS\r\n").await;
                return End::StartTls;
            }
            "STARTTLS" => "502 5.5.1 Not available".into(),
            "MAIL" => {
                accepted.clear();
                script.mail_reply.clone()
            }
            "RCPT" => {
                let address = line
                    .split_once('<')
                    .and_then(|(_, rest)| rest.split_once('>'))
                    .map(|(a, _)| a)
                    .unwrap_or_default();
                let reply = script
                    .rcpt
                    .get(address)
                    .cloned()
                    .unwrap_or_else(|| "250 2.1.5 Recipient OK".into());
                if reply.starts_with('2') {
                    accepted.push(address.to_owned());
                }
                reply
            }
            "DATA" => {
                let data = format!("{}\r\n", script.data_reply);
                if io.write_all(data.as_bytes()).await.is_err() {
                    return End::Closed;
                }
                if !script.data_reply.starts_with("354") {
                    continue;
                }
                let Some(message) = receive(io, script.close_in_data).await else {
                    return End::Closed;
                };
                log.lock().unwrap()[index].messages.push(message);
                if let Some(replies) = &script.lmtp {
                    for (n, address) in accepted.iter().enumerate() {
                        if script.lmtp_hang_up_after == Some(n) {
                            return End::Closed;
                        }
                        let reply = replies
                            .get(address)
                            .cloned()
                            .unwrap_or_else(|| "250 2.0.0 Saved".into());
                        if io.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
                            return End::Closed;
                        }
                    }
                    continue;
                }
                if script.hang_up_after_message {
                    let _ = io.write_all(format!("{}\r\n", script.end_reply).as_bytes()).await;
                    return End::Closed;
                }
                script.end_reply.clone()
            }
            "RSET" => {
                accepted.clear();
                script.rset_reply.clone().unwrap_or_else(|| "250 2.0.0 OK".into())
            }
            "NOOP" => "250 2.0.0 OK".into(),
            "QUIT" => {
                let _ = io.write_all(b"221 2.0.0 Bye\r\n").await;
                return End::Closed;
            }
            _ => "500 5.5.2 Command not recognized".into(),
        };
        if io.write_all(format!("{reply}\r\n").as_bytes()).await.is_err() {
            return End::Closed;
        }
    }
}

/// Reads message lines up to the final dot, undoing dot-stuffing.
async fn receive<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    close_early: bool,
) -> Option<Vec<u8>> {
    let mut message = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        if io.read_until(b'\n', &mut line).await.ok()? == 0 {
            return None;
        }
        if close_early {
            return None;
        }
        if line == b".\r\n" {
            return Some(message);
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        message.extend_from_slice(unstuffed);
    }
}
