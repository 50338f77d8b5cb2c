//! The hub's web console, looked at with Debian's headless Chromium: a hub
//! and two subscribed edges as processes, the console bound on loopback
//! (HTTPS with the hub's self-signed certificate, hence
//! `--ignore-certificate-errors`). Chromium follows a one-time login link
//! from `postern console token` (a new one per page: each Chromium run is
//! a new browser) and dumps the page's DOM after its scripts ran, or writes
//! a screenshot to `target/tmp/console-screenshots/` for a person to look
//! at. The one POST (retry now) and the refusals are made with curl, which
//! sends what the page's form sends.
//!
//! The scenarios share one organisation and run in order:
//! access refusals, both edges in sync, one edge stopped, a certificate
//! about to expire, a queued message and "retry now", and finally the hub
//! restarted without `--console-bind`.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::swaks;
use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role, openssl_thumbprint, require_tool, sh};

struct Org {
    dir: PathBuf,
    hub: NodeProcess,
    edges: Vec<NodeProcess>,
    console: String,
    submission: String,
    shots: PathBuf,
}

impl Org {
    fn start(dir: &Path) -> Self {
        let console = free_port().to_string();
        let hub = NodeProcess::start_with(
            Role::Hub,
            &dir.join("hub"),
            "hub1.adatum.com",
            &[
                "--smtp-bind",
                &free_port().to_string(),
                "--console-bind",
                &console,
            ],
        )
        .unwrap();
        hub.ok(&["accepted-domain", "new", "adatum.com"]);
        hub.ok(&["mailbox", "new", "kim@adatum.com"]);
        // Mail for fabrikam.com leaves through the edges to a smart host
        // that never answers: it waits in the edge's queue.
        let nowhere = free_port().to_string();
        hub.ok(&[
            "send-connector",
            "new",
            "To fabrikam",
            "--address-spaces",
            "fabrikam.com;5",
            "--smart-hosts",
            &nowhere,
        ]);
        hub.ok(&[
            "transport-config",
            "set",
            "--tls-receive-domain-secure-list",
            "northwindtraders.com",
        ]);
        let submission = free_port().to_string();
        hub.ok(&[
            "receive-connector",
            "new",
            "Client Hub",
            "--bindings",
            &submission,
            "--permission-groups",
            "clients",
            "--remote-ip-ranges",
            "127.0.0.0/8",
        ]);
        let mut edges = Vec::new();
        for n in 1..=2 {
            let edge = NodeProcess::start_with(
                Role::Edge,
                &dir.join(format!("edge{n}")),
                &format!("edge{n}.adatum.com"),
                &[
                    "--smtp-bind",
                    &free_port().to_string(),
                    "--edgesync-bind",
                    &free_port().to_string(),
                ],
            )
            .unwrap();
            let sub = dir.join(format!("edge{n}.sub"));
            edge.ok(&["edge-subscription", "new", "--file", sub.to_str().unwrap()]);
            hub.ok(&["edge-subscription", "import", "--file", sub.to_str().unwrap()]);
            edges.push(edge);
        }
        let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Self {
            dir: dir.to_path_buf(),
            hub,
            edges,
            console: console.to_string(),
            submission,
            shots,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.console)
    }

    /// A fresh one-time login link going to `path`.
    fn login_link(&self, path: &str, read_only: bool) -> String {
        let mut args = vec!["console", "token"];
        if read_only {
            args.push("--read-only");
        }
        let link = self.hub.ok(&args).trim().to_owned();
        assert!(link.starts_with(&self.url("/login?token=")), "{link}");
        format!("{link}&next={path}")
    }

    fn chromium(&self, extra: &[&str], link: &str) -> String {
        let profile = tempfile::tempdir().unwrap();
        let out = Command::new(require_tool("chromium"))
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--ignore-certificate-errors",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(link)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "chromium: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The DOM of `path` as Chromium has it, signed in; with `shot`, the
    /// same run writes a screenshot to `shot`.png in the output directory.
    fn page(&self, path: &str, shot: Option<&str>) -> String {
        let file = shot.map(|name| self.shots.join(format!("{name}.png")));
        let mut args = vec!["--dump-dom".to_owned()];
        if let Some(file) = &file {
            let _ = std::fs::remove_file(file);
            args.push(format!("--screenshot={}", file.display()));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let dom = self.chromium(&args, &self.login_link(path, false));
        if let Some(file) = file {
            let size = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
            assert!(size > 1000, "no screenshot at {}", file.display());
            println!("screenshot: {}", file.display());
        }
        dom
    }

    /// curl against the console: (status code, body).
    fn curl(&self, args: &[&str]) -> (u16, String) {
        let out = Command::new(require_tool("curl"))
            .args(["-sk", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// A curl cookie jar signed in through a login link.
    fn curl_session(&self, name: &str, read_only: bool) -> PathBuf {
        let jar = self.dir.join(format!("{name}.jar"));
        let (code, _) = self.curl(&[
            "-c",
            jar.to_str().unwrap(),
            "-b",
            jar.to_str().unwrap(),
            "-L",
            &self.login_link("/queues", read_only),
        ]);
        assert_eq!(code, 200);
        let cookies = std::fs::read_to_string(&jar).unwrap();
        assert!(
            cookies.contains("#HttpOnly_") && cookies.contains("postern_session"),
            "{cookies}"
        );
        jar
    }

    /// Loads `path` until `ready` holds of its DOM; fails with the last
    /// DOM and the hub's log after `timeout`.
    fn wait_page(
        &self,
        path: &str,
        shot: Option<&str>,
        what: &str,
        timeout: Duration,
        ready: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let dom = self.page(path, shot);
            if ready(&dom) {
                return dom;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}\n{dom}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    fn logs(&self) -> String {
        format!("--- hub:\n{}", self.hub.log_text())
    }
}

/// The `data-sync` of `edge`'s row on the organisation page.
fn sync_of(dom: &str, edge: &str) -> Option<String> {
    let start = dom.find(&format!("<tr data-edge=\"{edge}\" data-sync=\""))?;
    let rest = &dom[start..];
    let value = rest.split("data-sync=\"").nth(1)?;
    Some(value.split('"').next()?.to_owned())
}

/// The value of the first hidden `csrf` field.
fn csrf_of(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field");
    html[at + 19..].split('"').next().unwrap().to_owned()
}

#[test]
fn the_console_shows_the_organisation_and_acts_through_the_admin_api() {
    require_tool("chromium");
    require_tool("curl");
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let mut org = Org::start(tmp.path());

    without_a_session_everything_is_refused(&org);
    both_edges_show_in_sync(&org);
    a_stopped_edge_shows_out_of_sync(&mut org);
    a_certificate_expiring_in_ten_days_is_marked(&org);
    the_read_views_show_the_configuration(&org);
    a_queued_message_is_shown_and_retry_now_delivers_it(&mut org);
    the_console_is_off_unless_bound(&mut org);
}

fn without_a_session_everything_is_refused(org: &Org) {
    for path in [
        "/",
        "/queues",
        "/certificates",
        "/domain-security",
        "/config",
        "/nowhere",
    ] {
        let (code, body) = org.curl(&[&org.url(path)]);
        assert_eq!(code, 401, "{path}: {body}");
        assert!(body.contains("postern console token"));
    }
    let (code, _) = org.curl(&["-X", "POST", "-d", "hop=edges&csrf=x", &org.url("/queues/retry")]);
    assert_eq!(code, 401, "an action without a session");
    let forged = format!("postern_session={}", "ab".repeat(32));
    let (code, _) = org.curl(&["-b", &forged, &org.url("/")]);
    assert_eq!(code, 401, "a forged cookie");
    let (code, _) = org.curl(&[&org.url("/login?token=0123456789abcdef")]);
    assert_eq!(code, 401, "an unknown token");

    // A link is good once.
    let link = org.login_link("/", false);
    let (code, _) = org.curl(&[&link]);
    assert_eq!(code, 303);
    let (code, _) = org.curl(&[&link]);
    assert_eq!(code, 401, "a used token");

    // A signed-in session, but the POST comes from another site, or
    // without the page's CSRF token.
    let jar = org.curl_session("admin", false);
    let jar = jar.to_str().unwrap();
    let (code, page) = org.curl(&["-b", jar, &org.url("/queues")]);
    assert_eq!(code, 200);
    assert!(page.contains("<h1>Queues</h1>"));
    let (code, _) = org.curl(&[
        "-b",
        jar,
        "-H",
        "Origin: https://attacker.example",
        "-H",
        "Sec-Fetch-Site: cross-site",
        "-d",
        "hop=edges&csrf=whatever",
        &org.url("/queues/retry"),
    ]);
    assert_eq!(code, 403, "a cross-site POST");
    let (code, _) = org.curl(&["-b", jar, "-d", "hop=edges&csrf=wrong", &org.url("/queues/retry")]);
    assert_eq!(code, 403, "a POST without the session's CSRF token");

    // A read-only session looks but may not act, even with its token.
    let ro = org.curl_session("read-only", true);
    let ro = ro.to_str().unwrap();
    let (code, page) = org.curl(&["-b", ro, &org.url("/queues")]);
    assert_eq!(code, 200);
    assert!(page.contains("read-only") && !page.contains("name=\"csrf\""));
}

fn both_edges_show_in_sync(org: &Org) {
    let dom = org.wait_page(
        "/",
        Some("organisation-in-sync"),
        "both edges in sync on the organisation page",
        Duration::from_secs(60),
        |dom| {
            sync_of(dom, "edge1").as_deref() == Some("in-sync")
                && sync_of(dom, "edge2").as_deref() == Some("in-sync")
        },
    );
    assert!(dom.contains("<svg id=\"organisation\""), "the picture");
    assert!(dom.contains("class=\"link-in-sync\" data-edge=\"edge1\""));
    assert!(dom.contains("2 of 2 edges in sync"));
}

fn a_stopped_edge_shows_out_of_sync(org: &mut Org) {
    org.edges[1].stop().unwrap();
    let dom = org.wait_page(
        "/",
        Some("organisation-edge2-stopped"),
        "edge2 out of sync on the organisation page",
        Duration::from_secs(60),
        |dom| sync_of(dom, "edge2").as_deref() == Some("out-of-sync"),
    );
    assert_eq!(sync_of(&dom, "edge1").as_deref(), Some("in-sync"));
    assert!(dom.contains("class=\"link-out-of-sync\" data-edge=\"edge2\""));
}

fn a_certificate_expiring_in_ten_days_is_marked(org: &Org) {
    sh(
        &org.dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -days 10 -subj '/CN=soon.adatum.com' \
           -keyout soon.key -out soon.pem 2>/dev/null && cat soon.pem soon.key > soon-bundle.pem",
    );
    let thumbprint = openssl_thumbprint(&org.dir, "soon.pem");
    let bundle = org.dir.join("soon-bundle.pem");
    org.hub
        .ok(&["cert", "import", "--path", bundle.to_str().unwrap()]);
    let dom = org.page("/certificates", Some("certificates"));
    let row = dom
        .split("<tr ")
        .find(|r| r.contains(&format!("data-thumbprint=\"{thumbprint}\"")))
        .unwrap_or_else(|| panic!("no row for {thumbprint}: {dom}"));
    assert!(row.starts_with("class=\"expiring\""), "{row}");
    assert!(row.contains("days left"), "{row}");
    let days: i64 = row
        .split("data-days=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(days, 10, "{row}");
    // The hub's own five-year certificate is not marked.
    assert!(dom.matches("class=\"expiring\"").count() == 1, "{dom}");
}

fn the_read_views_show_the_configuration(org: &Org) {
    let dom = org.page("/config", None);
    assert!(dom.contains("<dd>To fabrikam</dd>"), "{dom}");
    assert!(dom.contains("<dd>adatum.com</dd>"), "{dom}");
    let dom = org.page("/domain-security", Some("domain-security"));
    let row = dom
        .split("<tr ")
        .find(|r| r.starts_with("data-partner=\"northwindtraders.com\""))
        .unwrap_or_else(|| panic!("no partner row: {dom}"));
    assert!(
        row.contains("<td>no</td><td>yes</td>"),
        "on the receive list only: {row}"
    );
    assert_eq!(
        dom.matches("<svg class=\"graph\"").count(),
        3,
        "three counters drawn"
    );
}

fn a_queued_message_is_shown_and_retry_now_delivers_it(org: &mut Org) {
    // Both edges down: outbound mail waits at the hub, and the "edges" hop
    // backs off (a minute after the first failure).
    org.edges[0].stop().unwrap();
    let out = swaks(&[
        "--server",
        &org.submission,
        "--from",
        "kim@adatum.com",
        "--to",
        "someone@fabrikam.com",
        "--header",
        "Subject: waiting for an edge",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    org.wait_page(
        "/queues",
        Some("queue-deferred"),
        "the message deferred on the queue page",
        Duration::from_secs(30),
        |dom| {
            dom.contains("<tr data-hop=\"edges\">")
                && dom.contains("someone@fabrikam.com")
                && dom.contains("deferred")
        },
    );

    // An edge is back; "retry now" ends the back-off instead of waiting it out.
    org.edges[0].start_again().unwrap();
    let jar = org.curl_session("retry", false);
    let jar = jar.to_str().unwrap();
    let (code, page) = org.curl(&["-b", jar, &org.url("/queues")]);
    assert_eq!(code, 200);
    assert!(page.contains("<tr data-hop=\"edges\">"), "{page}");
    let csrf = csrf_of(&page);
    let origin = format!("Origin: {}", org.url(""));
    let (code, _) = org.curl(&[
        "-b",
        jar,
        "-H",
        &origin,
        "-H",
        "Sec-Fetch-Site: same-origin",
        "--data-urlencode",
        "hop=edges",
        "--data-urlencode",
        &format!("csrf={csrf}"),
        &org.url("/queues/retry"),
    ]);
    assert_eq!(code, 303, "retry now goes back to the queues");
    assert!(org.hub.log_text().contains("queue retry asked for"));
    org.wait_page(
        "/queues",
        Some("queue-after-retry"),
        "the message delivered to edge1 after retry now",
        Duration::from_secs(40),
        |dom| dom.contains("id=\"queue-empty\""),
    );
    // The hub handed it to the next hop (an edge).
    let counters = org.hub.json(&["counters"]);
    let sent = counters
        .as_array()
        .unwrap()
        .iter()
        .find(|c| {
            c["metric"] == "postern_messages_total"
                && c["labels"] == serde_json::json!(["direction=send", "outcome=accepted"])
        })
        .unwrap_or_else(|| panic!("{counters}"));
    assert!(sent["value"].as_u64().unwrap() >= 1, "{counters}");
}

fn the_console_is_off_unless_bound(org: &mut Org) {
    org.hub.stop().unwrap();
    let hub = NodeProcess::start_with(Role::Hub, &org.dir.join("hub"), "hub1.adatum.com", &[]).unwrap();
    let err = hub.fails(&["console", "token"]);
    assert!(err.contains("--console-bind"), "{err}");
    let out = Command::new(require_tool("curl"))
        .args(["-sk", "-o", "/dev/null", &org.url("/")])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(7),
        "nothing listens on the console's address"
    );
}
