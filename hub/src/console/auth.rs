//! Who may use the console: one-time login tokens (`postern console
//! token`, through the admin socket, so only the hub's own user can make
//! one), and the sessions they open, carried in a cookie (`HttpOnly`,
//! `Secure`, `SameSite=Strict`).
//!
//! Tokens and session ids are 256 random bits; only their SHA-256 is kept,
//! so a memory dump or a log line cannot be replayed as a login. Each
//! session has its own CSRF token, echoed by every form; a POST must carry
//! it and must not come from another origin. Read-only sessions may look
//! but every action answers 403.
//!
//! Tokens and sessions live in memory only, by decision: a console
//! session is cheap to make again (`postern console token`), and keeping
//! none on disk means nothing to steal or expire there. A hub restart signs
//! everyone out (the README says so).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

/// How long a login link may wait to be used.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(600);
/// How long a session lasts without being used.
pub const SESSION_IDLE: Duration = Duration::from_secs(8 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "postern_session";

/// What a session may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Look only.
    ReadOnly,
    /// Look and act (retry a queue).
    Admin,
}

/// An open session, as a request sees it.
#[derive(Clone, Debug)]
pub struct Session {
    /// What it may do.
    pub access: Access,
    /// The token its forms must echo.
    pub csrf: String,
}

#[derive(Debug)]
struct PendingToken {
    access: Access,
    expires: SystemTime,
}

#[derive(Debug)]
struct Stored {
    session: Session,
    last_used: SystemTime,
}

/// Tokens waiting to be used and open sessions, by hash.
#[derive(Debug, Default)]
pub struct Sessions {
    tokens: Mutex<HashMap<[u8; 32], PendingToken>>,
    sessions: Mutex<HashMap<[u8; 32], Stored>>,
}

fn hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// 256 random bits, hex.
fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    /// No tokens, no sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new one-time login token and when it expires.
    pub fn new_token(&self, access: Access, now: SystemTime) -> (String, SystemTime) {
        let token = random_secret();
        let expires = now + TOKEN_LIFETIME;
        let mut tokens = lock(&self.tokens);
        tokens.retain(|_, t| t.expires > now);
        tokens.insert(hash(&token), PendingToken { access, expires });
        (token, expires)
    }

    /// Uses `token` (once): a new session id and its session, or `None`
    /// for an unknown, used or expired token.
    pub fn login(&self, token: &str, now: SystemTime) -> Option<(String, Session)> {
        let pending = lock(&self.tokens).remove(&hash(token))?;
        if pending.expires <= now {
            return None;
        }
        let id = random_secret();
        let session = Session {
            access: pending.access,
            csrf: random_secret(),
        };
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| s.last_used + SESSION_IDLE > now);
        sessions.insert(
            hash(&id),
            Stored {
                session: session.clone(),
                last_used: now,
            },
        );
        Some((id, session))
    }

    /// The session whose id is `id`, if open.
    pub fn session(&self, id: &str, now: SystemTime) -> Option<Session> {
        let mut sessions = lock(&self.sessions);
        let stored = sessions.get_mut(&hash(id))?;
        if stored.last_used + SESSION_IDLE <= now {
            sessions.remove(&hash(id));
            return None;
        }
        stored.last_used = now;
        Some(stored.session.clone())
    }

    /// Ends the session whose id is `id`.
    pub fn logout(&self, id: &str) {
        lock(&self.sessions).remove(&hash(id));
    }
}

/// The session id in a `Cookie` header, if any.
pub fn session_cookie(header: &str) -> Option<&str> {
    header
        .split(';')
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value for a new session.
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; Secure; SameSite=Strict")
}

/// Whether a state-changing request may come from where it says: the
/// `Origin` (else `Referer`) must name this host, and `Sec-Fetch-Site`,
/// when sent, must be `same-origin`. A request that says nothing of its
/// origin (a script, curl) passes this check and still needs the CSRF token.
pub fn same_origin(
    host: Option<&str>,
    origin: Option<&str>,
    referer: Option<&str>,
    fetch_site: Option<&str>,
) -> bool {
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    let claimed = origin.filter(|o| *o != "null").or(referer);
    match (claimed, host) {
        (None, _) => origin != Some("null"),
        (Some(_), None) => false,
        (Some(url), Some(host)) => {
            let rest = url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://"))
                .unwrap_or("");
            let authority = rest.split('/').next().unwrap_or("");
            authority.eq_ignore_ascii_case(host)
        }
    }
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_token_opens_one_session_once() {
        let s = Sessions::new();
        let now = SystemTime::now();
        let (token, _) = s.new_token(Access::ReadOnly, now);
        let (id, session) = s.login(&token, now).unwrap();
        assert_eq!(session.access, Access::ReadOnly);
        assert!(s.login(&token, now).is_none(), "one use");
        assert_eq!(s.session(&id, now).unwrap().csrf, session.csrf);
        assert!(s.session("forged", now).is_none());
        assert!(
            s.session(&id, now + SESSION_IDLE + Duration::from_secs(1))
                .is_none()
        );
        let (late, _) = s.new_token(Access::Admin, now);
        assert!(s.login(&late, now + TOKEN_LIFETIME).is_none(), "expired");
    }

    #[test]
    fn only_hashes_are_kept() {
        let s = Sessions::new();
        let now = SystemTime::now();
        let (token, _) = s.new_token(Access::Admin, now);
        let (id, _) = s.login(&token, now).unwrap();
        let dump = format!("{s:?}");
        assert!(!dump.contains(&id) && !dump.contains(&token));
    }

    #[test]
    fn origins_are_judged() {
        let host = Some("127.0.0.1:7443");
        for (origin, referer, site, ok) in [
            (Some("https://127.0.0.1:7443"), None, Some("same-origin"), true),
            (None, Some("https://127.0.0.1:7443/queues"), None, true),
            (None, None, None, true),
            (Some("https://evil.example"), None, Some("cross-site"), false),
            (Some("https://evil.example"), None, None, false),
            (None, None, Some("cross-site"), false),
            (Some("null"), None, None, false),
            (None, Some("https://127.0.0.1:74430/"), None, false),
        ] {
            assert_eq!(
                same_origin(host, origin, referer, site),
                ok,
                "{origin:?} {referer:?} {site:?}"
            );
        }
    }

    #[test]
    fn cookies_are_found() {
        assert_eq!(session_cookie("a=b; postern_session=xyz; c=d"), Some("xyz"));
        assert_eq!(session_cookie("a=b"), None);
        assert!(set_cookie("x").contains("HttpOnly; Secure; SameSite=Strict"));
        assert!(secrets_equal("abc", "abc") && !secrets_equal("abc", "abd") && !secrets_equal("a", "ab"));
    }
}
