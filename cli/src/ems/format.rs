//! Output as EMS prints it: `Format-List` blocks (`Name : value`, labels
//! padded, a blank line around each object), `True`/`False`, collections as
//! `{a, b}`, `$null` as nothing, enumerations in PascalCase. No I/O.

use serde_json::Value as Json;

use super::value::{Object, Value};

/// Properties whose values are enumerations, printed in PascalCase as
/// Exchange prints them (`verbose` → `Verbose`, `tls` → `Tls`).
const ENUMS: [&str; 6] = [
    "ProtocolLoggingLevel",
    "TlsAuthLevel",
    "AuthMechanism",
    "PermissionGroups",
    "Status",
    "DomainType",
];

/// Objects as `Format-List` prints them, with only `properties` when some
/// are named (`*` wildcards allowed). Returns the text and the names that
/// matched no property.
pub fn format_list(objects: &[&Object], properties: &[String]) -> (String, Vec<String>) {
    let mut unmatched: Vec<String> = properties
        .iter()
        .filter(|p| {
            !objects
                .iter()
                .any(|o| o.properties.iter().any(|(n, _)| glob(p, n)))
        })
        .cloned()
        .collect();
    unmatched.dedup();
    let mut out = String::new();
    for object in objects {
        let shown: Vec<&(String, Json)> = if properties.is_empty() {
            object.properties.iter().collect()
        } else {
            // In the order asked for, as PowerShell does.
            let mut shown = Vec::new();
            for p in properties {
                for entry in &object.properties {
                    if glob(p, &entry.0) && !shown.contains(&entry) {
                        shown.push(entry);
                    }
                }
            }
            shown
        };
        let width = shown.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        out.push('\n');
        for (name, value) in shown {
            let text = render(name, value);
            if text.is_empty() {
                out.push_str(&format!("{name:<width$} :\n"));
            } else {
                out.push_str(&format!("{name:<width$} : {text}\n"));
            }
        }
    }
    if !objects.is_empty() {
        out.push('\n');
    }
    (out, unmatched)
}

/// A top-level value as the console shows it.
pub fn show(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::Bool(b) => format!("{}\n", if *b { "True" } else { "False" }),
        Value::Text(t) if t.ends_with('\n') => t.clone(),
        Value::Text(t) => format!("{t}\n"),
        Value::Bytes(b) => format!("({} bytes read from {})\n", b.data.len(), b.path.display()),
        Value::Object(o) => format_list(&[o], &[]).0,
        Value::List(items) => {
            let objects: Vec<&Object> = items
                .iter()
                .filter_map(|v| match v {
                    Value::Object(o) => Some(o),
                    _ => None,
                })
                .collect();
            let mut out = format_list(&objects, &[]).0;
            if objects.is_empty() {
                out.clear();
            }
            for item in items.iter().filter(|v| !matches!(v, Value::Object(_))) {
                out.push_str(&show(item));
            }
            out
        }
    }
}

/// `*` matches any run of characters; names compare without case.
fn glob(pattern: &str, name: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

fn render(name: &str, value: &Json) -> String {
    let pascal = ENUMS.iter().any(|e| e.eq_ignore_ascii_case(name));
    match value {
        Json::Null => String::new(),
        Json::Bool(b) => (if *b { "True" } else { "False" }).to_owned(),
        Json::Number(n) => n.to_string(),
        Json::String(s) if name.eq_ignore_ascii_case("Services") => s.to_ascii_uppercase(),
        Json::String(s) if pascal => pascal_case(s),
        Json::String(s) => s.clone(),
        Json::Array(items) if items.is_empty() => "{}".to_owned(),
        Json::Array(items) => format!(
            "{{{}}}",
            items
                .iter()
                .map(|i| render(name, i))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Json::Object(_) => value.to_string(),
    }
}

/// `pending-request` → `PendingRequest`.
fn pascal_case(s: &str) -> String {
    s.split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn connector() -> Object {
        Object {
            properties: vec![
                ("Name".into(), json!("Internet")),
                ("AddressSpaces".into(), json!(["*;100"])),
                ("DNSRoutingEnabled".into(), json!(true)),
                ("Fqdn".into(), Json::Null),
                ("DomainSecureEnabled".into(), json!(true)),
                ("ProtocolLoggingLevel".into(), json!("verbose")),
            ],
        }
    }

    #[test]
    fn the_seeds_format_list_with_a_property_list() {
        let props: Vec<String> = ["Name", "DNSRoutingEnabled", "FQDN", "DomainSecureEnabled"]
            .map(String::from)
            .to_vec();
        let (text, unmatched) = format_list(&[&connector()], &props);
        assert_eq!(
            text,
            "\nName                : Internet\nDNSRoutingEnabled   : True\nFqdn                :\nDomainSecureEnabled : True\n\n"
        );
        assert!(unmatched.is_empty());
    }

    #[test]
    fn all_properties_collections_enums_and_wildcards() {
        let (text, _) = format_list(&[&connector()], &[]);
        assert!(text.contains("AddressSpaces        : {*;100}"), "{text}");
        assert!(text.contains("ProtocolLoggingLevel : Verbose"), "{text}");
        let (text, unmatched) = format_list(&[&connector()], &["*Secure*".into(), "Nope".into()]);
        assert_eq!(text, "\nDomainSecureEnabled : True\n\n");
        assert_eq!(unmatched, vec!["Nope".to_owned()]);
    }

    #[test]
    fn scalars_show_as_powershell_does() {
        assert_eq!(show(&Value::Bool(false)), "False\n");
        assert_eq!(show(&Value::Null), "");
        assert_eq!(show(&Value::Text("a".into())), "a\n");
        assert_eq!(pascal_case("pending-request"), "PendingRequest");
    }
}
