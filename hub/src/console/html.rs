//! The console's page frame: escaping, navigation, the inline style sheet
//! and the small inline script that refreshes live pages. Everything is in
//! the page itself (no build step, nothing fetched from elsewhere); the
//! Content-Security-Policy says so to the browser.

use std::fmt::Write as _;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// The pages, in navigation order: path and title.
pub const PAGES: [(&str, &str); 5] = [
    ("/", "Organisation"),
    ("/queues", "Queues"),
    ("/certificates", "Certificates"),
    ("/domain-security", "Domain security"),
    ("/config", "Configuration"),
];

/// The Content-Security-Policy of every page: inline style and script
/// only, nothing from elsewhere, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
header{background:#1f3a5f;color:#fff;padding:.6em 1em;display:flex;gap:1.5em;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header a.on{color:#fff;font-weight:bold}
header .who{margin-left:auto;font-size:.85em;color:#cfe0ff}
main{padding:1em 1.5em}h1{font-size:1.3em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;background:#fff;margin:.5em 0}
th,td{border:1px solid #d5d9e0;padding:.3em .6em;text-align:left;vertical-align:top;font-size:.92em}
th{background:#eef1f5}
.ok{color:#17753a;font-weight:bold}.bad{color:#b3261e;font-weight:bold}.warn{color:#a05a00;font-weight:bold}
tr.expiring td{background:#fff1d6}tr.expired td{background:#fde0de}
.node-hub{fill:#1f3a5f}.node-edge{fill:#3c6e9f}.node text,.label{font-size:12px}
.link-in-sync{stroke:#17753a}.link-out-of-sync{stroke:#b3261e;stroke-dasharray:6 4}
.graph-bg{fill:#fff;stroke:#d5d9e0}.graph-line{stroke:#1f3a5f}
dl.fl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em;background:#fff;padding:.6em;border:1px solid #d5d9e0}
dl.fl dt{font-weight:bold}dl.fl dd{margin:0;font-family:monospace}
.note{color:#555;font-size:.9em}button{cursor:pointer}
";

/// Replaces `main` with the same page fetched again every few seconds, so
/// a live page follows the organisation without a reload; without
/// JavaScript the `noscript` refresh does the same, coarser.
const LIVE_SCRIPT: &str = "
(function(){
  var busy=false;
  setInterval(function(){
    if(busy||document.hidden)return;busy=true;
    fetch(location.href,{credentials:'same-origin',cache:'no-store'}).then(function(r){
      if(!r.ok)throw new Error(r.status);return r.text();
    }).then(function(t){
      var d=new DOMParser().parseFromString(t,'text/html');
      var n=d.querySelector('main'),o=document.querySelector('main');
      if(n&&o)o.innerHTML=n.innerHTML;
    }).catch(function(){}).finally(function(){busy=false;});
  },3000);
})();
";

/// Who is looking, for the header.
pub struct Viewer<'a> {
    /// The hub's name.
    pub hub: &'a str,
    /// Whether the session may act.
    pub read_only: bool,
}

/// A whole page: header with navigation, `body` inside `main`.
pub fn page(title: &str, active: &str, viewer: &Viewer<'_>, live: bool, body: &str) -> String {
    let mut nav = String::new();
    for (path, name) in PAGES {
        let class = if path == active { " class=\"on\"" } else { "" };
        let _ = write!(nav, "<a href=\"{path}\"{class}>{name}</a>");
    }
    let mode = if viewer.read_only {
        "read-only"
    } else {
        "administrator"
    };
    let refresh = if live {
        format!(
            "<noscript><meta http-equiv=\"refresh\" content=\"10\"></noscript><script>{LIVE_SCRIPT}</script>"
        )
    } else {
        String::new()
    };
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width\"><title>{title} · Postern {hub}</title>\
<style>{STYLE}</style>{refresh}</head><body>\
<header><strong>Postern</strong>{nav}<span class=\"who\">{hub} · {mode}</span>\
<form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form></header>\
<main data-page=\"{active}\"><h1>{title}</h1>{body}</main></body></html>",
        title = esc(title),
        hub = esc(viewer.hub),
    )
}

/// A page for someone without a session.
pub fn unauthorised(reason: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Postern console: sign in</title>\
<style>{STYLE}</style></head><body><main><h1>Sign in</h1><p>{}</p>\
<p>On the hub, run <code>postern console token</code> and open the link it prints.</p></main></body></html>",
        esc(reason)
    )
}

/// A `| FL`-style list of name/value pairs.
pub fn fl(pairs: &[(String, String)]) -> String {
    let mut out = String::from("<dl class=\"fl\">");
    for (k, v) in pairs {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
    }
    out.push_str("</dl>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_controls() {
        assert_eq!(esc("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(esc("a\u{1b}[31m"), "a\\u{1b}[31m");
    }
}
