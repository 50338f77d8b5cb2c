//! The bench's messages: headers that make each one findable at the sink
//! (`Message-ID: <bench-RUNID-N@bench>`) and filler to an exact size, in
//! CRLF lines of at most 78 characters that never start with a dot, so the
//! bytes on the wire after DATA are the message itself plus `.CRLF`.

/// Longest filler line, without its CRLF (RFC 5322's recommended 78).
const LINE: usize = 78;

/// What goes into every message of one run.
#[derive(Clone, Debug)]
pub struct Template {
    pub run_id: String,
    pub from: String,
    pub to: String,
    /// RFC 5322 date, taken once per run (the sink does not care).
    pub date: String,
    /// Target size in bytes, headers included; a message is never smaller
    /// than its headers plus the blank line.
    pub size: usize,
}

impl Template {
    /// The Message-ID's left part shared by the whole run: what the Maildir
    /// watcher looks for.
    pub fn marker(&self) -> String {
        marker(&self.run_id)
    }

    /// Message number `seq` of the run, exactly `size` bytes when `size` is
    /// at least the header length.
    pub fn build(&self, seq: u64) -> Vec<u8> {
        let mut subject_pad = 0;
        loop {
            let headers = format!(
                "From: <{from}>\r\nTo: <{to}>\r\nSubject: postern-bench {run} #{seq}{pad}\r\n\
                 Date: {date}\r\nMessage-ID: <{marker}{seq}@bench>\r\nMIME-Version: 1.0\r\n\
                 Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                from = self.from,
                to = self.to,
                run = self.run_id,
                pad = ".".repeat(subject_pad),
                date = self.date,
                marker = self.marker(),
            );
            let remaining = self.size.saturating_sub(headers.len());
            // A single byte cannot be a line (CRLF is two): lengthen a header.
            if remaining == 1 {
                subject_pad += 1;
                continue;
            }
            let mut out = Vec::with_capacity(self.size.max(headers.len()));
            out.extend_from_slice(headers.as_bytes());
            filler(&mut out, remaining, seq);
            return out;
        }
    }
}

/// `bench-RUNID-`.
pub fn marker(run_id: &str) -> String {
    format!("bench-{run_id}-")
}

/// Appends exactly `bytes` bytes (never 1) of CRLF lines.
fn filler(out: &mut Vec<u8>, mut bytes: usize, seq: u64) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut k = seq as usize;
    while bytes > 0 {
        let mut line = bytes.min(LINE + 2);
        if bytes - line == 1 {
            line -= 1; // leave two bytes for a last (empty) line, never one
        }
        for _ in 0..line - 2 {
            out.push(ALPHABET[k % ALPHABET.len()]);
            k += 7;
        }
        out.extend_from_slice(b"\r\n");
        bytes -= line;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(size: usize) -> Template {
        Template {
            run_id: "r1".into(),
            from: "a@bench.test".into(),
            to: "b@sink.test".into(),
            date: "Mon, 23 Nov 2026 09:00:00 +0000".into(),
            size,
        }
    }

    fn lines(msg: &[u8]) -> Vec<&[u8]> {
        assert!(msg.ends_with(b"\r\n"));
        msg[..msg.len() - 2].split(|&b| b == b'\n').collect()
    }

    #[test]
    fn exact_sizes_and_line_rules() {
        for size in (300..1200).chain([1024, 51_200]) {
            let msg = template(size).build(42);
            assert_eq!(msg.len(), size, "size {size}");
            for line in lines(&msg) {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(line.len() <= LINE, "line of {} bytes at size {size}", line.len());
                assert!(!line.starts_with(b"."), "dot line at size {size}");
                assert!(!line.contains(&b'\r'), "bare CR at size {size}");
            }
            assert!(!msg.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'), "bare LF");
        }
    }

    #[test]
    fn unique_message_id_and_floor_at_headers() {
        let t = template(10);
        let a = String::from_utf8(t.build(1)).unwrap();
        let b = String::from_utf8(t.build(2)).unwrap();
        assert!(a.contains("Message-ID: <bench-r1-1@bench>\r\n"));
        assert!(b.contains("Message-ID: <bench-r1-2@bench>\r\n"));
        assert!(a.ends_with("\r\n\r\n"), "too small a size gives headers only");
    }
}
