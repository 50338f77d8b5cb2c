//! Errors as people read them in logs: the error's message followed by
//! each cause (`cannot serve EdgeSync: transport error: address in use`),
//! never Rust's `Debug` form. Use `error = %error_text::chain(&e)` in
//! tracing calls when `e` wraps a cause its own message does not repeat
//! (tonic, hyper and I/O errors, which say only "transport error" or
//! "connection error" on top).

use std::error::Error;
use std::fmt;

/// An error and its causes, displayed on one line joined by `: `; a cause
/// whose text the line already holds is skipped.
pub struct Chain<'a>(&'a (dyn Error + 'static));

/// `e` and its causes, for a log field.
pub fn chain<'a>(e: &'a (dyn Error + 'static)) -> Chain<'a> {
    Chain(e)
}

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(e) = cause {
            let text = e.to_string();
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = e.source();
        }
        // One log line per error, whatever a cause's text holds.
        f.write_str(&line.replace(['\r', '\n'], " "))
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("transport error")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect to 127.0.0.1:1: {0}")]
    struct Repeats(#[source] std::io::Error);

    #[test]
    fn causes_follow_the_message_once_and_never_as_debug() {
        let e = Outer(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "address in use\nsecond line",
        ));
        assert_eq!(
            chain(&e).to_string(),
            "transport error: address in use second line"
        );
        let e = Repeats(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused",
        ));
        assert_eq!(
            chain(&e).to_string(),
            "cannot connect to 127.0.0.1:1: Connection refused"
        );
        assert!(
            !format!("{:?}", chain(&e)).contains("Custom"),
            "Debug is the same line"
        );
    }
}
