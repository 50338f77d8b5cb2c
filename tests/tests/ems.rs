//! The seeds' Exchange Management Shell lines, run as written with
//! `postern ems` against a running hub and edge (processes), each checked
//! through the `postern … --json` reads; and bad input refused with the
//! nearest known name and the `postern` verb that does the job.
//!
//! The lines are extracted at run time from every seed in
//! `tests/fixtures/seeds/` (copies of `../shared/seeds/`), with the page's
//! line breaks as printed, so a line added to a seed is run and checked too:
//! a statement whose cmdlet has no check here fails the test.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use postern_tests::lab::free_port;
use postern_tests::{NodeProcess, Role, openssl_thumbprint, postern_bin, require_tool, sh};
use serde_json::Value;

// ---------------------------------------------------------------- extraction

const VERBS: [&str; 10] = [
    "New", "Set", "Get", "Remove", "Import", "Enable", "Start", "Test", "Retry", "Format",
];

fn is_dash(c: char) -> bool {
    matches!(c, '-' | '\u{2013}' | '\u{2014}')
}

fn starts_with_param(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(is_dash) && chars.next().is_some_and(char::is_alphabetic)
}

/// The length of a `Verb-Noun` cmdlet name at the start of `s`.
fn cmdlet_name_len(s: &str) -> Option<usize> {
    let verb = VERBS.iter().find(|v| {
        s.get(..v.len()).is_some_and(|h| h.eq_ignore_ascii_case(v)) && s[v.len()..].starts_with('-')
    })?;
    let noun: usize = s[verb.len() + 1..]
        .chars()
        .take_while(char::is_ascii_alphabetic)
        .count();
    (noun > 0).then_some(verb.len() + 1 + noun)
}

/// Whether what follows a cmdlet name reads as its arguments, not prose
/// ("the Set-SendConnector EMS cmdlet to …" is prose).
fn reads_as_arguments(rest: &str) -> bool {
    let r = rest.trim_start();
    if r.is_empty() || starts_with_param(r) || r.starts_with('|') {
        return true;
    }
    let word: String = r.chars().take_while(|c| !c.is_whitespace()).collect();
    let after = r[word.len()..].trim_start();
    word.chars().all(|c| c.is_alphanumeric() || c == '-')
        && (after.is_empty() || starts_with_param(after) || after.starts_with('|'))
}

/// Where a command starts on a line (after an optional `$var =`).
fn command_start(line: &str) -> Option<usize> {
    let mut in_quotes = false;
    for (i, c) in line.char_indices() {
        if c == '"' {
            in_quotes = !in_quotes;
        }
        let at_word = i == 0 || line[..i].ends_with([' ', '\t', '(']);
        if in_quotes || !at_word {
            continue;
        }
        let Some(len) = cmdlet_name_len(&line[i..]) else {
            continue;
        };
        if !reads_as_arguments(&line[i + len..]) {
            continue;
        }
        let before = line[..i].trim_end();
        let assigned = before.strip_suffix('=').is_some_and(|b| {
            let b = b.trim();
            b.starts_with('$') && b.len() > 1 && b[1..].chars().all(|c| c.is_alphanumeric() || c == '_')
        });
        return Some(if assigned { 0 } else { i });
    }
    None
}

/// The seed's EMS statements in blocks: statements on consecutive lines
/// (a runbook snippet, sharing its variables) form one block.
fn ems_blocks(text: &str) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let mut blocks: Vec<Vec<String>> = Vec::new();
    let mut i = 0;
    let mut previous_end: Option<usize> = None;
    while i < lines.len() {
        let Some(start) = command_start(lines[i]) else {
            i += 1;
            continue;
        };
        let mut statement = lines[i][start..].to_owned();
        let mut j = i;
        loop {
            let open_quotes = statement.matches('"').count() % 2 == 1;
            let open_parens = statement.matches('(').count() > statement.matches(')').count();
            let end = statement.trim_end();
            let Some(next) = lines.get(j + 1) else { break };
            let next_trim = next.trim_start();
            let wraps = open_quotes
                || open_parens
                || end.ends_with('\\')
                || end.ends_with('|')
                || starts_with_param(next_trim)
                || (next_trim.starts_with('.') && next_trim[1..].starts_with(char::is_alphanumeric));
            if !wraps {
                break;
            }
            statement.push('\n');
            statement.push_str(next);
            j += 1;
        }
        // The seed's template line runs on into its own explanation.
        if let Some(at) = statement.find(" where ") {
            statement.truncate(at);
        }
        let joins = start == 0 && previous_end == Some(i.wrapping_sub(1));
        match blocks.last_mut() {
            Some(block) if joins => block.push(statement),
            _ => blocks.push(vec![statement]),
        }
        previous_end = Some(j);
        i = j + 1;
    }
    blocks
}

fn seeds() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/seeds");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------- reading a statement

/// A statement's text with the page's wraps joined, for the checks.
fn unwrapped(statement: &str) -> String {
    statement
        .replace("\\\n", "\\")
        .replace("\n.", ".")
        .replace('\n', " ")
}

/// The cmdlet of each pipeline element, and its arguments as words
/// (quotes removed, `-Name:value` split into `-Name` and `value`).
fn pipeline(statement: &str) -> Vec<(String, Vec<String>)> {
    let text = unwrapped(statement);
    let text = match text.split_once('=') {
        Some((var, rest))
            if var.trim().starts_with('$')
                && var.trim()[1..].chars().all(|c| c.is_alphanumeric() || c == '_') =>
        {
            rest.to_owned()
        }
        _ => text,
    };
    let mut elements = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut depth = 0;
    let flush = |word: &mut String, words: &mut Vec<String>| {
        if !word.is_empty() {
            words.push(std::mem::take(word));
        }
    };
    for c in text.chars() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth -= 1,
            '|' if !quoted && depth == 0 => {
                flush(&mut word, &mut words);
                elements.push(std::mem::take(&mut words));
            }
            c if c.is_whitespace() && !quoted && depth == 0 => flush(&mut word, &mut words),
            c => word.push(c),
        }
    }
    flush(&mut word, &mut words);
    elements.push(words);
    elements
        .into_iter()
        .filter(|w| !w.is_empty())
        .map(|mut w| {
            let cmdlet = w.remove(0);
            let mut args = Vec::new();
            for a in w {
                if a.starts_with(is_dash) && a.contains(':') && !a.contains('\\') {
                    let (p, v) = a.split_once(':').unwrap();
                    args.push(p.to_owned());
                    args.push(v.to_owned());
                } else {
                    args.push(a);
                }
            }
            (cmdlet, args)
        })
        .collect()
}

/// A parameter's value (`-Name value` or `-Name:value`), names without case.
fn param<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args
        .iter()
        .position(|a| a.starts_with(is_dash) && a.trim_start_matches(is_dash).eq_ignore_ascii_case(name))?;
    args.get(i + 1).map(String::as_str)
}

/// Parameters given, with their values.
fn params(args: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i].starts_with(is_dash) {
            let name = args[i].trim_start_matches(is_dash).to_owned();
            let value = args.get(i + 1).cloned().unwrap_or_default();
            out.push((name, value));
            i += 2;
        } else {
            i += 1;
        }
    }
    out
}

/// `TLSSendDomainSecureList` → `tls_send_domain_secure_list`: the JSON key.
fn snake(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::new();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars[i - 1].is_ascii_lowercase();
            let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
            if prev_lower || (next_lower && chars[i - 1].is_ascii_uppercase()) {
                out.push('_');
            }
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Whether a JSON read shows the value the line set.
fn shows(json: &Value, given: &str) -> bool {
    match json {
        Value::Bool(b) => given.eq_ignore_ascii_case(if *b { "$true" } else { "$false" }),
        Value::String(s) => s.eq_ignore_ascii_case(given),
        Value::Array(items) => {
            let parts: Vec<&str> = given.split(',').collect();
            items.len() == parts.len()
                && parts.iter().all(|p| {
                    items
                        .iter()
                        .any(|i| i.as_str().is_some_and(|s| s.eq_ignore_ascii_case(p)))
                })
        }
        _ => false,
    }
}

/// A Windows path of a line, on this machine (the drive is the working directory).
fn local(dir: &Path, path: &str) -> PathBuf {
    let p = path.trim_matches('"');
    let p = if p.len() >= 2 && p.as_bytes()[1] == b':' {
        &p[2..]
    } else {
        p
    };
    dir.join(p.replace('\\', "/").trim_start_matches('/'))
}

// ---------------------------------------------------------------- running

fn ems_in(node: &NodeProcess, cwd: &Path, script: &str) -> Output {
    let mut child = Command::new(postern_bin())
        .arg("--node")
        .arg(&node.dir)
        .args(["ems", "--verbose", "--file", "-"])
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ems_ok(node: &NodeProcess, cwd: &Path, script: &str) -> (String, String) {
    let out = ems_in(node, cwd, script);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "postern ems failed on:\n{script}\n--- stdout\n{stdout}--- stderr\n{stderr}"
    );
    (stdout, stderr)
}

fn ems_fails(node: &NodeProcess, cwd: &Path, script: &str) -> String {
    let out = ems_in(node, cwd, script);
    assert!(!out.status.success(), "postern ems accepted:\n{script}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn certs(node: &NodeProcess) -> Vec<Value> {
    node.json(&["cert", "list"]).as_array().unwrap().clone()
}

fn cert(node: &NodeProcess, thumbprint: &str) -> Value {
    node.json(&["cert", "get", "--thumbprint", thumbprint])
}

/// A hub and an edge, the edge subscribed with EMS's own lines.
struct Org {
    hub: NodeProcess,
    edge: NodeProcess,
    dir: PathBuf,
}

fn org(tmp: &Path) -> Org {
    let hub = NodeProcess::start(Role::Hub, &tmp.join("van-ex1"), "van-ex1.adatum.com").unwrap();
    let sync = free_port().to_string();
    let edge = NodeProcess::start_with(
        Role::Edge,
        &tmp.join("van-ex2"),
        "van-ex2.adatum.com",
        &["--edgesync-bind", &sync],
    )
    .unwrap();
    let dir = tmp.join("work");
    std::fs::create_dir_all(&dir).unwrap();
    // Exchange's subscription procedure, as EMS lines.
    ems_ok(
        &edge,
        &dir,
        "New-EdgeSubscription -FileName \"C:\\EdgeSubscriptionExport.xml\"",
    );
    let (out, _) = ems_ok(
        &hub,
        &dir,
        "New-EdgeSubscription -FileData ([byte[]]$(Get-Content -Path \"C:\\EdgeSubscriptionExport.xml\" -Encoding Byte -ReadCount 0)) -Site \"Default-First-Site-Name\"",
    );
    assert!(out.contains("van-ex2"), "{out}");
    let subs = hub.json(&["edge-subscription", "list"]);
    assert_eq!(subs[0]["name"], "van-ex2", "{subs}");
    assert_eq!(subs[0]["site"], "Default-First-Site-Name", "{subs}");
    ems_ok(&hub, &dir, "Start-EdgeSynchronization");
    wait_for("the edge in sync", || {
        let s = hub.json(&["edgesync", "test"]);
        s[0]["status"] == "in-sync" && s[0]["lag"] == 0
    });
    let (out, _) = ems_ok(&hub, &dir, "Test-EdgeSynchronization | FL Edge,Status,Lag");
    assert!(
        out.contains("Edge   : van-ex2") && out.contains("Status : InSync"),
        "{out}"
    );
    Org { hub, edge, dir }
}

// ---------------------------------------------------------------- the seeds

/// What the test remembers between blocks: requests written and not yet
/// issued, the last certificate issued and imported.
#[derive(Default)]
struct State {
    requests: Vec<PathBuf>,
    issued: Vec<PathBuf>,
    thumbprint: String,
    checked: usize,
}

/// The CA (openssl) issues the latest request, as `out` (PEM, or a
/// certificate-only PKCS#12 for `.pfx`).
fn issue(dir: &Path, state: &mut State, out: &Path) {
    let request = state.requests.pop().expect("a request to issue");
    let pem = out.with_extension("issued.pem");
    sh(
        dir,
        &format!(
            "openssl x509 -req -in '{}' -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -copy_extensions copy -out '{}' 2>/dev/null",
            request.display(),
            pem.display()
        ),
    );
    if out.extension().is_some_and(|e| e == "pfx") {
        sh(
            dir,
            &format!(
                "openssl pkcs12 -export -nokeys -in '{}' -out '{}' -passout pass:",
                pem.display(),
                out.display()
            ),
        );
    } else {
        std::fs::copy(&pem, out).unwrap();
    }
    state.issued.push(pem);
}

/// Before a block runs, the CA issues what its import line will read:
/// the file it names, or, for the seed's placeholder "path to certificate",
/// a file the test names (returned, as the line will give it).
fn issue_for(block: &[String], dir: &Path, state: &mut State) -> Option<String> {
    let text = block.join("\n");
    if !text.to_ascii_lowercase().contains("import-exchangecertificate") {
        return None;
    }
    if text.contains("\"path to certificate\"") {
        let name = format!("issued-{}.cer", state.issued.len());
        issue(dir, state, &dir.join(&name));
        return Some(format!("C:\\{name}"));
    }
    let joined = unwrapped(&text);
    let file = joined
        .split_whitespace()
        .find(|w| w.ends_with(".pfx") || w.ends_with(".cer") || w.ends_with(".pem"))
        .expect("the import line names its file");
    issue(dir, state, &local(dir, file));
    None
}

/// The seed's placeholders, given the values the seed explains in its own
/// words ("where "fqdn" is the FQDN for your connector, …").
fn substitute(statement: &str, state: &State, issued: Option<&str>) -> String {
    let mut text = statement
        .replace("\"fqdn\"", "\"mail.example.com\"")
        .replace("\"filename\"", "\"C:\\template.req\"")
        .replace("\"Subject\"", "\"CN=mail.example.com\"")
        .replace("\"thumbprint\"", &format!("\"{}\"", state.thumbprint));
    if let Some(issued) = issued {
        text = text.replace("\"path to certificate\"", &format!("\"{issued}\""));
    }
    text
}

/// After a block ran: every statement's effect, read back as JSON.
fn check(o: &Org, block: &[String], stdout: &str, stderr: &str, before: &[Value], state: &mut State) {
    for statement in block {
        let elements = pipeline(statement);
        let (cmdlet, args) = &elements[0];
        let node = node_for(o, cmdlet);
        match cmdlet.to_ascii_lowercase().as_str() {
            "new-exchangecertificate" => {
                assert!(args.iter().any(|a| {
                    a.trim_start_matches(is_dash)
                        .eq_ignore_ascii_case("GenerateRequest")
                }));
                let friendly = param(args, "FriendlyName")
                    .unwrap()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ");
                let after = certs(node);
                let new: Vec<&Value> = after.iter().filter(|c| !before.contains(c)).collect();
                let pending = new
                    .iter()
                    .find(|c| c["friendly_name"] == friendly.as_str())
                    .unwrap_or_else(|| panic!("no new request named {friendly}: {new:?}"));
                assert_eq!(pending["status"], "pending-request");
                // Where the request went: -path, or the block's Set-Content.
                let path = param(args, "path")
                    .map(str::to_owned)
                    .or_else(|| {
                        block.iter().find_map(|s| {
                            let p = pipeline(s);
                            p[0].0
                                .eq_ignore_ascii_case("Set-Content")
                                .then(|| param(&p[0].1, "Path").unwrap().to_owned())
                        })
                    })
                    .expect("the request is written somewhere");
                let file = local(&o.dir, &path);
                let text = sh(
                    &o.dir,
                    &format!("openssl req -in '{}' -verify -noout -text 2>&1", file.display()),
                );
                assert!(
                    text.contains("verify OK") || text.contains("self-signature ok"),
                    "{text}"
                );
                let subject = param(args, "SubjectName").unwrap().trim_matches('"');
                let cn = subject.rsplit("CN=").next().unwrap();
                assert!(text.contains(&format!("CN = {cn}")), "{subject} not in\n{text}");
                assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
                if let Some(size) = param(args, "Keysize") {
                    assert!(
                        stderr.contains(&format!("-KeySize {size} is not honoured")),
                        "{stderr}"
                    );
                }
                state.requests.push(file);
            }
            "set-content" => {
                let file = local(&o.dir, param(args, "Path").unwrap());
                let text = std::fs::read_to_string(&file).unwrap();
                assert!(text.starts_with("-----BEGIN CERTIFICATE REQUEST-----"), "{text}");
            }
            "import-exchangecertificate" => {
                let issued = state.issued.last().unwrap();
                let tp = openssl_thumbprint(&o.dir, issued.to_str().unwrap());
                let c = cert(node, &tp);
                assert_eq!(c["status"], "valid", "{c}");
                assert_eq!(c["has_private_key"], true, "{c}");
                assert_eq!(c["self_signed"], false, "{c}");
                let enabled = elements.iter().any(|(name, args)| {
                    name.eq_ignore_ascii_case("Enable-ExchangeCertificate")
                        && param(args, "Services").is_some_and(|s| s.eq_ignore_ascii_case("SMTP"))
                });
                if enabled {
                    assert_eq!(c["services"], serde_json::json!(["smtp"]), "{c}");
                } else {
                    assert_eq!(c["services"], serde_json::json!([]), "{c}");
                    assert!(
                        stdout.contains(&tp),
                        "the import prints the thumbprint:\n{stdout}"
                    );
                }
                state.thumbprint = tp;
            }
            "enable-exchangecertificate" => {
                let c = cert(node, &state.thumbprint);
                assert_eq!(c["services"], serde_json::json!(["smtp"]), "{c}");
            }
            "set-transportconfig" => {
                for (name, value) in params(args) {
                    let key = snake(&name);
                    assert!(
                        shows(&o.hub.json(&["transport-config", "get"])[&key], &value),
                        "{key} is not {value}"
                    );
                    // Global settings reach the edge through EdgeSync.
                    wait_for(&format!("{key} on the edge"), || {
                        shows(&o.edge.json(&["transport-config", "get"])[&key], &value)
                    });
                }
            }
            "set-sendconnector" => {
                let name = &args[0];
                for (p, value) in params(args) {
                    let key = snake(&p);
                    let read = o.hub.json(&["send-connector", "get", name]);
                    assert!(shows(&read[&key], &value), "{key} is not {value}: {read}");
                    wait_for(&format!("{key} on the edge"), || {
                        let out = o.edge.cli(&["send-connector", "get", name, "--json"]);
                        out.status.success()
                            && shows(
                                &serde_json::from_slice::<Value>(&out.stdout).unwrap()[&key],
                                &value,
                            )
                    });
                }
            }
            "set-receiveconnector" => {
                let name = &args[0];
                let read = o.edge.json(&["receive-connector", "get", name]);
                for (p, value) in params(args) {
                    assert!(shows(&read[snake(&p)], &value), "{p} is not {value}: {read}");
                }
            }
            "get-sendconnector" => {
                let name = &args[0];
                let (fl, props) = &elements[1];
                assert!(fl.eq_ignore_ascii_case("FL") || fl.eq_ignore_ascii_case("Format-List"));
                let asked: Vec<&str> = props[0].split(',').collect();
                let read = o.hub.json(&["send-connector", "get", name]);
                let shown: Vec<(&str, &str)> = stdout
                    .lines()
                    .filter_map(|l| l.split_once(" :"))
                    .map(|(k, v)| (k.trim(), v.trim()))
                    .collect();
                assert_eq!(shown.len(), asked.len(), "{stdout}");
                for ((label, text), want) in shown.iter().zip(&asked) {
                    assert!(label.eq_ignore_ascii_case(want), "{label} for {want}:\n{stdout}");
                    let expected = match &read[snake(want)] {
                        Value::Bool(true) => "True".to_owned(),
                        Value::Bool(false) => "False".to_owned(),
                        Value::Null => String::new(),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    assert_eq!(*text, expected, "{label}:\n{stdout}");
                }
                // The seed: Fqdn is blank (the node's own FQDN is used).
                assert!(
                    shown.iter().any(|(k, v)| *k == "Fqdn" && v.is_empty()),
                    "{stdout}"
                );
            }
            other => panic!("no check for the seed's {other} line: add one to tests/tests/ems.rs"),
        }
        state.checked += 1;
    }
}

fn node_for<'a>(o: &'a Org, cmdlet: &str) -> &'a NodeProcess {
    let c = cmdlet.to_ascii_lowercase();
    // Global configuration is changed on a hub; certificates and receive
    // connectors belong to the edge the seed configures.
    if c.ends_with("transportconfig") || c.ends_with("sendconnector") {
        &o.hub
    } else {
        &o.edge
    }
}

#[test]
fn every_ems_line_of_the_seeds_runs_and_has_the_effect_the_seed_describes() {
    require_tool("openssl");
    let tmp = tempfile::tempdir().unwrap();
    let o = org(tmp.path());
    let dir = o.dir.clone();
    sh(
        &dir,
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
         -subj '/CN=Adatum Test Root CA' 2>/dev/null",
    );
    // What the seed assumes exists: the folder, a Send connector named
    // Internet (on a hub), a Receive connector named Internet (on the edge).
    std::fs::create_dir_all(dir.join("Certificates")).unwrap();
    ems_ok(
        &o.hub,
        &dir,
        "New-SendConnector -Name Internet -AddressSpaces \"SMTP:*;10\" -DNSRoutingEnabled $true",
    );
    let bind = free_port().to_string();
    ems_ok(
        &o.edge,
        &dir,
        &format!(
            "New-ReceiveConnector -Name Internet -Bindings {bind} -RemoteIPRanges 0.0.0.0/0 -PermissionGroups AnonymousUsers"
        ),
    );
    let mut state = State::default();
    let mut statements = 0;
    for (name, text) in seeds() {
        let blocks = ems_blocks(&text);
        assert!(!blocks.is_empty(), "no EMS line found in {name}");
        for block in blocks {
            statements += block.len();
            let issued = issue_for(&block, &dir, &mut state);
            let block: Vec<String> = block
                .iter()
                .map(|s| substitute(s, &state, issued.as_deref()))
                .collect();
            let node = node_for(&o, &pipeline(&block[0])[0].0);
            let before = certs(node);
            let (stdout, stderr) = ems_ok(node, &dir, &block.join("\n"));
            check(&o, &block, &stdout, &stderr, &before, &mut state);
        }
    }
    // Both seeds: 10 statements in the first, 5 in the second.
    assert!(
        statements >= 15,
        "only {statements} EMS statements found in the seeds"
    );
    assert_eq!(state.checked, statements);
}

#[test]
fn the_extraction_finds_each_statement_with_its_printed_line_breaks() {
    let seeds = seeds();
    let all: Vec<Vec<Vec<String>>> = seeds.iter().map(|(_, text)| ems_blocks(text)).collect();
    let first: Vec<&String> = all[0].iter().flatten().collect();
    assert_eq!(first.len(), 10, "{first:#?}");
    assert!(
        first[0].starts_with("$Data1 = New-ExchangeCertificate") && first[0].ends_with("mail\n.adatum.com")
    );
    assert_eq!(
        all[0][0].len(),
        2,
        "the request and Set-Content are one runbook block"
    );
    assert!(
        first[2].ends_with("Enable-ExchangeCertificate\n-Services SMTP"),
        "{}",
        first[2]
    );
    assert_eq!(
        first[5],
        "Get-SendConnector Internet | FL Name,DNSRoutingEnabled,FQDN,DomainSecureEnabled"
    );
    let second: Vec<&String> = all[1].iter().flatten().collect();
    assert_eq!(second.len(), 5, "{second:#?}");
    assert!(second[0].ends_with("-subjectName \"Subject\""), "{}", second[0]);
    assert_eq!(
        second[2],
        "import-exchangecertificate \u{2013}path \"path to certificate\""
    );
    // Prose naming a cmdlet is not a line.
    assert!(
        first
            .iter()
            .chain(&second)
            .all(|s| !s.contains(" cmdlet") && !s.contains("commandlet"))
    );
}

#[test]
fn bad_input_is_refused_with_the_nearest_name_and_the_verb_and_stops_the_runbook() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = NodeProcess::start(Role::Hub, &tmp.path().join("hub"), "van-ex1.adatum.com").unwrap();
    let dir = tmp.path();
    ems_ok(&hub, dir, "New-SendConnector Internet -AddressSpaces *");

    let err = ems_fails(&hub, dir, "Set-SendConector Internet -DomainSecureEnabled:$true");
    assert!(
        err.contains("the nearest is Set-SendConnector (postern send-connector set NAME)"),
        "{err}"
    );
    let err = ems_fails(&hub, dir, "Set-SendConnector Internet -DomianSecureEnabled:$true");
    assert!(err.contains("no parameter -DomianSecureEnabled; the nearest is -DomainSecureEnabled (postern send-connector set NAME)"), "{err}");
    let err = ems_fails(&hub, dir, "Set-SendConnector Internet -DomainSecureEnabled:maybe");
    assert!(err.contains("takes $true or $false"), "{err}");
    let err = ems_fails(&hub, dir, "Set-SendConnector Internet -RequireTLS");
    assert!(err.contains("-RequireTLS needs a value"), "{err}");
    let err = ems_fails(&hub, dir, "Retry-Queue -Identity van-ex1\\Submission");
    assert!(
        err.contains("no retry operation") && err.contains("postern queue list"),
        "{err}"
    );
    let err = ems_fails(
        &hub,
        dir,
        "Import-ExchangeCertificate -Path C:\\x.pfx -Password secret",
    );
    assert!(err.contains("--password-file"), "{err}");
    let err = ems_fails(
        &hub,
        dir,
        "Set-TransportConfig -TLSSendDomainSecureList \"northwind",
    );
    assert!(err.contains("not complete"), "{err}");
    let err = ems_fails(&hub, dir, "Get-SendConnector | Where-Object { $_.Enabled }");
    assert!(err.contains("not supported"), "{err}");
    let err = ems_fails(&hub, dir, "Set-Content -Path x.req -Value $Nope");
    assert!(err.contains("$Nope is not set"), "{err}");
    // What the seeds warn about: the named connector must exist, and so must
    // the folder and the .pfx file.
    let err = ems_fails(&hub, dir, "Set-SendConnector Outbound -DomainSecureEnabled:$true");
    assert!(err.contains("no send-connector named"), "{err}");
    let err = ems_fails(
        &hub,
        dir,
        "$Data1 = New-ExchangeCertificate -GenerateRequest -SubjectName \"CN=van-ex1.adatum.com\"\nSet-Content -Path \"C:\\Certificates\\VAN-EX1-request.req\" -Value $Data1",
    );
    assert!(
        err.contains("line 2") && err.contains("./Certificates does not exist"),
        "{err}"
    );
    let err = ems_fails(
        &hub,
        dir,
        "Import-ExchangeCertificate -FileData ([Byte[]]$(Get-Content -Path C:\\Certificates\\VAN-EX2-certificate.pfx -Encoding Byte -ReadCount 0)) | Enable-ExchangeCertificate -Services SMTP",
    );
    assert!(
        err.contains("cannot read ./Certificates/VAN-EX2-certificate.pfx"),
        "{err}"
    );
    let err = ems_fails(&hub, dir, "Import-ExchangeCertificate -FileData \"MIIC\"");
    assert!(err.contains("takes the file's bytes"), "{err}");

    // A runbook stops at its first error: what came before is done, nothing after.
    let err = ems_fails(
        &hub,
        dir,
        "Set-TransportConfig -TLSSendDomainSecureList northwindtraders.com\nSet-SendConector Internet\nSet-TransportConfig -TLSReceiveDomainSecureList northwindtraders.com",
    );
    assert!(err.contains("line 2"), "{err}");
    let t = hub.json(&["transport-config", "get"]);
    assert_eq!(
        t["tls_send_domain_secure_list"],
        serde_json::json!(["northwindtraders.com"])
    );
    assert_eq!(t["tls_receive_domain_secure_list"], serde_json::json!([]));
    let c = hub.json(&["send-connector", "get", "Internet"]);
    assert_eq!(
        c["domain_secure_enabled"], false,
        "no refused line changed the connector: {c}"
    );
}

#[test]
fn the_second_seeds_three_send_connectors() {
    // The seed names the parameters in prose ("the Set-SendConnector
    // commandlet with the "-RequireTLS:$true" parameter"): each one it names
    // is used here.
    let named: Vec<String> = seeds()
        .iter()
        .flat_map(|(_, text)| {
            text.match_indices("commandlet with the \"")
                .map(|(at, m)| text[at + m.len()..].split('"').next().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(named, ["-RequireTLS:$true", "-IgnoreSTARTTLS:$true"]);
    let tmp = tempfile::tempdir().unwrap();
    let hub = NodeProcess::start(Role::Hub, &tmp.path().join("hub"), "van-ex1.adatum.com").unwrap();
    let runbook = "New-SendConnector Partners -AddressSpaces northwindtraders.com\n\
                   New-SendConnector \"No TLS\" -AddressSpaces expired.example;\n\
                   New-SendConnector Internet -AddressSpaces \"*;100\"\n\
                   Set-SendConnector Partners -RequireTLS:$true\n\
                   Set-SendConnector \"No TLS\" -IgnoreSTARTTLS:$true\n\
                   Get-SendConnector | FL Name,RequireTLS,IgnoreSTARTTLS";
    for parameter in &named {
        assert!(runbook.contains(parameter.as_str()));
    }
    let (out, _) = ems_ok(&hub, tmp.path(), runbook);
    assert_eq!(out.matches("Name           :").count(), 3, "{out}");
    let partners = hub.json(&["send-connector", "get", "Partners"]);
    assert_eq!(partners["require_tls"], true);
    assert_eq!(partners["ignore_starttls"], false);
    let no_tls = hub.json(&["send-connector", "get", "No TLS"]);
    assert_eq!(no_tls["ignore_starttls"], true);
    let internet = hub.json(&["send-connector", "get", "Internet"]);
    assert_eq!(internet["require_tls"], false, "opportunistic TLS is the default");
    assert_eq!(internet["ignore_starttls"], false);
    // Contradictory settings are refused (the admin API's rule), through EMS too.
    let err = ems_fails(
        &hub,
        tmp.path(),
        "Set-SendConnector \"No TLS\" -DomainSecureEnabled:$true",
    );
    assert!(!err.is_empty());
}
