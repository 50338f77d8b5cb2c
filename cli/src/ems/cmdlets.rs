//! The cmdlets `postern ems` knows, their parameters, and binding a call's
//! arguments to them as PowerShell does (names without case, unique
//! prefixes, `-Switch`, `-Bool:$false`, positional identities). An unknown
//! cmdlet or parameter is refused with the nearest known one and the
//! `postern` verb that does the job. No I/O. Longer than most modules
//! because it holds the whole cmdlet table, which reads best in one place.

use super::value::Value;

/// A cmdlet: its parameters and the `postern` verb it runs.
#[derive(Debug)]
pub struct Cmdlet {
    /// The name as EMS spells it.
    pub name: &'static str,
    /// The `postern` verb that does the same job (for messages).
    pub verb: &'static str,
    /// Its parameters.
    pub params: &'static [Param],
    /// Parameters bound by position, in order.
    pub positional: &'static [&'static str],
    /// Set when Postern refuses the whole cmdlet: why, and what to do.
    pub refused: Option<&'static str>,
}

/// A parameter.
#[derive(Debug)]
pub struct Param {
    /// The name as EMS spells it.
    pub name: &'static str,
    /// What it takes.
    pub kind: Kind,
    /// What Postern does with it.
    pub handling: Handling,
}

/// What a parameter takes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// No value (`-GenerateRequest`), or `-Switch:$false`.
    Switch,
    /// `$true`/`$false`, as the next argument or after a colon.
    Bool,
    /// One value.
    One,
    /// One value or a comma list.
    Many,
}

/// What Postern does with a parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Handling {
    /// Passed to the `postern` verb as this flag (`--flag=value`).
    Flag(&'static str),
    /// Read by the cmdlet's own translation (paths, identities, sizes).
    Local,
    /// Accepted with no effect and no warning (`-Confirm:$false`, `-Force`):
    /// Postern never asks for confirmation.
    Accepted,
    /// Accepted but not honoured: a warning says why.
    Ignored(&'static str),
    /// Refused: the message says why and what to use.
    Refused(&'static str),
}

use Handling::{Accepted, Flag, Ignored, Local, Refused};
use Kind::{Bool, Many, One, Switch};

const fn p(name: &'static str, kind: Kind, handling: Handling) -> Param {
    Param { name, kind, handling }
}

/// Parameters every cmdlet takes (PowerShell's common parameters).
const COMMON: &[Param] = &[
    p("Confirm", Switch, Accepted),
    p("Force", Switch, Accepted),
    p("Verbose", Switch, Accepted),
    p(
        "DomainController",
        One,
        Ignored("Postern has no domain controllers: the node's own store is the directory"),
    ),
    p(
        "WhatIf",
        Switch,
        Refused("-WhatIf is not supported: run the line against a test node (postern up) first"),
    ),
];

const SEND_CONNECTOR: &[Param] = &[
    p("AddressSpaces", Many, Local),
    p("DNSRoutingEnabled", Bool, Flag("dns-routing-enabled")),
    p("SmartHosts", Many, Flag("smart-hosts")),
    p("Port", One, Flag("port")),
    p("Fqdn", One, Flag("fqdn")),
    p("RequireTLS", Bool, Flag("require-tls")),
    p("IgnoreSTARTTLS", Bool, Flag("ignore-starttls")),
    p("DomainSecureEnabled", Bool, Flag("domain-secure-enabled")),
    p("TlsAuthLevel", One, Flag("tls-auth-level")),
    p("TlsDomain", One, Flag("tls-domain")),
    p("ProtocolLoggingLevel", One, Flag("protocol-logging-level")),
    p("SourceTransportServers", Many, Flag("source-edges")),
    p("Enabled", Bool, Flag("enabled")),
];

const RECEIVE_CONNECTOR: &[Param] = &[
    p("Bindings", Many, Flag("bindings")),
    p("RemoteIPRanges", Many, Flag("remote-ip-ranges")),
    p("AuthMechanism", Many, Flag("auth-mechanism")),
    p("PermissionGroups", Many, Flag("permission-groups")),
    p("RequireTLS", Bool, Flag("require-tls")),
    p("DomainSecureEnabled", Bool, Flag("domain-secure-enabled")),
    p("Fqdn", One, Flag("fqdn")),
    p("ProtocolLoggingLevel", One, Flag("protocol-logging-level")),
    p("MaxMessageSize", One, Local),
    p(
        "Server",
        One,
        Ignored("a receive connector belongs to the node postern ems talks to (--node / POSTERN_NODE)"),
    ),
];

const USAGE: Handling = Ignored(
    "-Usage is a template in Exchange; Postern sets no properties from it: give them (-DomainSecureEnabled, -RequireTLS, -PermissionGroups …) directly",
);

const RENAME: Handling =
    Refused("renaming a connector is not supported: remove it and create it under the new name");

const IDENTITY: &[Param] = &[p("Identity", One, Local)];
const NAME: &[Param] = &[p("Name", One, Local)];
const THUMBPRINT: &[Param] = &[p("Thumbprint", One, Local), p("Identity", One, Local)];

/// Every cmdlet `postern ems` knows, each with its parameter groups.
pub static CMDLETS: &[(Cmdlet, &[&[Param]])] = &[
    (
        Cmdlet {
            name: "New-ExchangeCertificate",
            verb: "postern cert new",
            params: &[
                p("GenerateRequest", Switch, Flag("generate-request")),
                p("SubjectName", One, Flag("subject-name")),
                p("DomainName", Many, Flag("domain-name")),
                p("FriendlyName", One, Flag("friendly-name")),
                p("KeySize", One, Local),
                p("PrivateKeyExportable", Bool, Local),
                p("Path", One, Local),
                p("RequestFile", One, Local),
                p("Services", Many, Flag("services")),
            ],
            positional: &[],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Import-ExchangeCertificate",
            verb: "postern cert import --path FILE",
            params: &[
                p("FileData", One, Local),
                p("Path", One, Local),
                p("FriendlyName", One, Flag("friendly-name")),
                p("PrivateKeyExportable", Bool, Local),
                p(
                    "Password",
                    One,
                    Refused(
                        "PowerShell SecureStrings are not read here: put the password in a file and run postern cert import --path FILE --password-file PWFILE",
                    ),
                ),
            ],
            positional: &[],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Enable-ExchangeCertificate",
            verb: "postern cert enable --thumbprint TP --services smtp",
            params: &[
                p("Services", Many, Flag("services")),
                p(
                    "DoNotRequireSsl",
                    Switch,
                    Ignored("it concerns IIS, which Postern does not serve"),
                ),
            ],
            positional: &["Thumbprint"],
            refused: None,
        },
        &[THUMBPRINT],
    ),
    (
        Cmdlet {
            name: "Get-ExchangeCertificate",
            verb: "postern cert list / postern cert get --thumbprint TP",
            params: &[],
            positional: &["Thumbprint"],
            refused: None,
        },
        &[THUMBPRINT],
    ),
    (
        Cmdlet {
            name: "Remove-ExchangeCertificate",
            verb: "postern cert remove --thumbprint TP",
            params: &[],
            positional: &["Thumbprint"],
            refused: None,
        },
        &[THUMBPRINT],
    ),
    (
        Cmdlet {
            name: "Set-TransportConfig",
            verb: "postern transport-config set",
            params: &[
                p(
                    "TLSSendDomainSecureList",
                    Many,
                    Flag("tls-send-domain-secure-list"),
                ),
                p(
                    "TLSReceiveDomainSecureList",
                    Many,
                    Flag("tls-receive-domain-secure-list"),
                ),
                p("MaxRecipientEnvelopeLimit", One, Flag("max-recipients")),
                p("MaxReceiveSize", One, Local),
            ],
            positional: &[],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Get-TransportConfig",
            verb: "postern transport-config get",
            params: &[],
            positional: &[],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "New-SendConnector",
            verb: "postern send-connector new NAME",
            params: &[
                p("Usage", One, USAGE),
                p(
                    "Internet",
                    Switch,
                    Ignored("DNS routing, which -Internet chooses, is already the default"),
                ),
            ],
            positional: &["Name"],
            refused: None,
        },
        &[NAME, SEND_CONNECTOR],
    ),
    (
        Cmdlet {
            name: "Set-SendConnector",
            verb: "postern send-connector set NAME",
            params: &[p("Name", One, RENAME)],
            positional: &["Identity"],
            refused: None,
        },
        &[IDENTITY, SEND_CONNECTOR],
    ),
    (
        Cmdlet {
            name: "Get-SendConnector",
            verb: "postern send-connector list / get NAME",
            params: &[],
            positional: &["Identity"],
            refused: None,
        },
        &[IDENTITY],
    ),
    (
        Cmdlet {
            name: "Remove-SendConnector",
            verb: "postern send-connector remove NAME",
            params: &[],
            positional: &["Identity"],
            refused: None,
        },
        &[IDENTITY],
    ),
    (
        Cmdlet {
            name: "New-ReceiveConnector",
            verb: "postern receive-connector new NAME",
            params: &[p("Usage", One, USAGE)],
            positional: &["Name"],
            refused: None,
        },
        &[NAME, RECEIVE_CONNECTOR],
    ),
    (
        Cmdlet {
            name: "Set-ReceiveConnector",
            verb: "postern receive-connector set NAME",
            params: &[p("Name", One, RENAME)],
            positional: &["Identity"],
            refused: None,
        },
        &[IDENTITY, RECEIVE_CONNECTOR],
    ),
    (
        Cmdlet {
            name: "Get-ReceiveConnector",
            verb: "postern receive-connector list / get NAME",
            params: &[],
            positional: &["Identity"],
            refused: None,
        },
        &[IDENTITY],
    ),
    (
        Cmdlet {
            name: "Remove-ReceiveConnector",
            verb: "postern receive-connector remove NAME",
            params: &[],
            positional: &["Identity"],
            refused: None,
        },
        &[IDENTITY],
    ),
    (
        Cmdlet {
            name: "New-EdgeSubscription",
            verb: "postern edge-subscription new --file F (edge) / import --file F (hub)",
            params: &[
                p("FileName", One, Local),
                p("FileData", One, Local),
                p("Site", One, Flag("site")),
                p("CreateInternetSendConnector", Bool, Local),
                p("CreateInboundSendConnector", Bool, Local),
            ],
            positional: &[],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Get-EdgeSubscription",
            verb: "postern edge-subscription list",
            params: &[],
            positional: &[],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Remove-EdgeSubscription",
            verb: "postern edge-subscription remove NAME",
            params: &[],
            positional: &["Identity"],
            refused: None,
        },
        &[IDENTITY],
    ),
    (
        Cmdlet {
            name: "Start-EdgeSynchronization",
            verb: "postern edgesync start",
            params: &[
                p("ForceFullSync", Switch, Accepted),
                p(
                    "TargetServer",
                    One,
                    Ignored("Postern synchronises every subscribed edge"),
                ),
                p(
                    "Server",
                    One,
                    Ignored("the hub is the node postern ems talks to (--node)"),
                ),
            ],
            positional: &[],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Test-EdgeSynchronization",
            verb: "postern edgesync test",
            params: &[
                p("ExcludeRecipientTest", Switch, Accepted),
                p(
                    "VerifyRecipient",
                    One,
                    Ignored("Postern reports replication per edge, not per recipient"),
                ),
                p(
                    "Server",
                    One,
                    Ignored("the hub is the node postern ems talks to (--node)"),
                ),
            ],
            positional: &[],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Get-Queue",
            verb: "postern queue list",
            params: &[
                p(
                    "Server",
                    One,
                    Ignored("the queue shown is that of the node postern ems talks to (--node)"),
                ),
                p(
                    "Filter",
                    One,
                    Refused("filters are not supported: read postern queue list --json with jq"),
                ),
            ],
            positional: &["Identity"],
            refused: None,
        },
        &[IDENTITY],
    ),
    (
        Cmdlet {
            name: "Retry-Queue",
            verb: "postern queue list",
            params: &[],
            positional: &["Identity"],
            refused: Some(
                "Postern's admin API has no retry operation: each next hop is retried on its own back-off, and postern queue list shows every recipient's attempts and last error",
            ),
        },
        &[IDENTITY],
    ),
    (
        Cmdlet {
            name: "Set-Content",
            verb: "(a file on this machine)",
            params: &[
                p("Path", One, Local),
                p("Value", One, Local),
                p("Encoding", One, Local),
            ],
            positional: &["Path", "Value"],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Get-Content",
            verb: "(a file on this machine)",
            params: &[
                p("Path", One, Local),
                p("Encoding", One, Local),
                p("ReadCount", One, Accepted),
                p("Raw", Switch, Accepted),
            ],
            positional: &["Path"],
            refused: None,
        },
        &[],
    ),
    (
        Cmdlet {
            name: "Format-List",
            verb: "postern … get (a list; --json for scripts)",
            params: &[p("Property", Many, Local)],
            positional: &["Property"],
            refused: None,
        },
        &[],
    ),
];

/// Aliases EMS knows.
const ALIASES: &[(&str, &str)] = &[
    ("FL", "Format-List"),
    ("gc", "Get-Content"),
    ("sc", "Set-Content"),
];

/// Why a call cannot be bound.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BindError {
    /// No such cmdlet.
    #[error("{name} is not a cmdlet postern ems knows; the nearest is {nearest} ({verb})")]
    UnknownCmdlet {
        /// As typed.
        name: String,
        /// The nearest known cmdlet.
        nearest: &'static str,
        /// Its `postern` verb.
        verb: &'static str,
    },
    /// The cmdlet is known and refused as a whole.
    #[error("{cmdlet} is not supported: {why}")]
    RefusedCmdlet {
        /// The cmdlet.
        cmdlet: &'static str,
        /// Why, and what to use.
        why: &'static str,
    },
    /// No such parameter.
    #[error("{cmdlet} has no parameter -{name}; the nearest is -{nearest} ({verb})")]
    UnknownParam {
        /// The cmdlet.
        cmdlet: &'static str,
        /// As typed.
        name: String,
        /// The nearest parameter.
        nearest: &'static str,
        /// The cmdlet's `postern` verb.
        verb: &'static str,
    },
    /// A prefix naming several parameters.
    #[error("{cmdlet}: -{name} is ambiguous: it could be {candidates}")]
    Ambiguous {
        /// The cmdlet.
        cmdlet: &'static str,
        /// As typed.
        name: String,
        /// The parameters it could be.
        candidates: String,
    },
    /// Postern refuses the parameter.
    #[error("{cmdlet} -{param} is not supported: {why}")]
    RefusedParam {
        /// The cmdlet.
        cmdlet: &'static str,
        /// The parameter.
        param: &'static str,
        /// Why, and what to use.
        why: &'static str,
    },
    /// A parameter that needs a value has none.
    #[error("{cmdlet} -{param} needs a value (e.g. -{param}:$true or -{param} VALUE)")]
    MissingValue {
        /// The cmdlet.
        cmdlet: &'static str,
        /// The parameter.
        param: &'static str,
    },
    /// The same parameter twice.
    #[error("{cmdlet}: -{param} is given twice")]
    Repeated {
        /// The cmdlet.
        cmdlet: &'static str,
        /// The parameter.
        param: &'static str,
    },
    /// A positional argument with no parameter left to take it.
    #[error("{cmdlet} takes no further positional argument: {value}")]
    ExtraPositional {
        /// The cmdlet.
        cmdlet: &'static str,
        /// The argument, for the message.
        value: String,
    },
    /// A value of the wrong kind.
    #[error("{cmdlet} -{param} takes {wanted}, not {got}")]
    WrongKind {
        /// The cmdlet.
        cmdlet: &'static str,
        /// The parameter.
        param: &'static str,
        /// What it takes.
        wanted: &'static str,
        /// What was given.
        got: &'static str,
    },
}

/// An argument after evaluation.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgValue {
    /// `-Name`.
    Param(String),
    /// `-Name:value`.
    ParamWith(String, Value),
    /// A value.
    Value(Value),
}

/// A call bound to a cmdlet: each given parameter with its value.
#[derive(Debug)]
pub struct Bound {
    /// The cmdlet.
    pub cmdlet: &'static Cmdlet,
    /// Parameters given (canonical names) and their values; switches and
    /// booleans are `Value::Bool`.
    pub values: Vec<(&'static str, Value)>,
    /// Warnings about parameters accepted but not honoured.
    pub warnings: Vec<String>,
}

impl Bound {
    /// A parameter's value.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// The cmdlet named `name` (any case, aliases included).
pub fn find(name: &str) -> Result<&'static Cmdlet, BindError> {
    let canonical = ALIASES
        .iter()
        .find(|(a, _)| a.eq_ignore_ascii_case(name))
        .map_or(name, |(_, c)| c);
    if let Some((c, _)) = CMDLETS
        .iter()
        .find(|(c, _)| c.name.eq_ignore_ascii_case(canonical))
    {
        return match c.refused {
            Some(why) => Err(BindError::RefusedCmdlet { cmdlet: c.name, why }),
            None => Ok(c),
        };
    }
    let nearest = CMDLETS
        .iter()
        .map(|(c, _)| c)
        .min_by_key(|c| distance(name, c.name))
        .map_or(&CMDLETS[0].0, |c| c);
    Err(BindError::UnknownCmdlet {
        name: name.to_owned(),
        nearest: nearest.name,
        verb: nearest.verb,
    })
}

fn params_of(cmdlet: &'static Cmdlet) -> Vec<&'static Param> {
    let groups = CMDLETS
        .iter()
        .find(|(c, _)| c.name == cmdlet.name)
        .map_or(&[][..], |(_, g)| g);
    let mut all: Vec<&'static Param> = cmdlet.params.iter().collect();
    for group in groups.iter() {
        all.extend(group.iter());
    }
    all.extend(COMMON.iter());
    all
}

/// Case-insensitive edit distance (Levenshtein), for suggestions.
fn distance(a: &str, b: &str) -> usize {
    strsim::levenshtein(&a.to_ascii_lowercase(), &b.to_ascii_lowercase())
}

fn resolve(
    cmdlet: &'static Cmdlet,
    params: &[&'static Param],
    name: &str,
) -> Result<&'static Param, BindError> {
    if let Some(p) = params.iter().find(|p| p.name.eq_ignore_ascii_case(name)) {
        return Ok(p);
    }
    let lower = name.to_ascii_lowercase();
    let prefixed: Vec<&&Param> = params
        .iter()
        .filter(|p| p.name.to_ascii_lowercase().starts_with(&lower))
        .collect();
    match prefixed.as_slice() {
        [one] => Ok(one),
        [] => {
            let nearest = params
                .iter()
                .filter(|p| !COMMON.iter().any(|c| c.name == p.name))
                .min_by_key(|p| distance(name, p.name))
                .or(params.first())
                .map_or("", |p| p.name);
            Err(BindError::UnknownParam {
                cmdlet: cmdlet.name,
                name: name.to_owned(),
                nearest,
                verb: cmdlet.verb,
            })
        }
        many => Err(BindError::Ambiguous {
            cmdlet: cmdlet.name,
            name: name.to_owned(),
            candidates: many
                .iter()
                .map(|p| format!("-{}", p.name))
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

fn to_bool(cmdlet: &'static Cmdlet, param: &'static Param, v: Value) -> Result<Value, BindError> {
    match v {
        Value::Bool(b) => Ok(Value::Bool(b)),
        Value::Text(t) if t.eq_ignore_ascii_case("true") || t == "1" => Ok(Value::Bool(true)),
        Value::Text(t) if t.eq_ignore_ascii_case("false") || t == "0" => Ok(Value::Bool(false)),
        other => Err(BindError::WrongKind {
            cmdlet: cmdlet.name,
            param: param.name,
            wanted: "$true or $false",
            got: other.kind(),
        }),
    }
}

/// Binds evaluated arguments to `cmdlet`'s parameters.
pub fn bind(cmdlet: &'static Cmdlet, args: Vec<ArgValue>) -> Result<Bound, BindError> {
    let params = params_of(cmdlet);
    let mut values: Vec<(&'static str, Value)> = Vec::new();
    let mut positionals = Vec::new();
    let mut args = args.into_iter().peekable();
    while let Some(arg) = args.next() {
        let (param, value) = match arg {
            ArgValue::Value(v) => {
                positionals.push(v);
                continue;
            }
            ArgValue::ParamWith(name, v) => {
                let param = resolve(cmdlet, &params, &name)?;
                let v = match param.kind {
                    Switch | Bool => to_bool(cmdlet, param, v)?,
                    One | Many => v,
                };
                (param, v)
            }
            ArgValue::Param(name) => {
                let param = resolve(cmdlet, &params, &name)?;
                let v = match param.kind {
                    Switch => Value::Bool(true),
                    _ => match args.next_if(|a| matches!(a, ArgValue::Value(_))) {
                        Some(ArgValue::Value(v)) if param.kind == Bool => to_bool(cmdlet, param, v)?,
                        Some(ArgValue::Value(v)) => v,
                        _ => {
                            return Err(BindError::MissingValue {
                                cmdlet: cmdlet.name,
                                param: param.name,
                            });
                        }
                    },
                };
                (param, v)
            }
        };
        if values.iter().any(|(n, _)| *n == param.name) {
            return Err(BindError::Repeated {
                cmdlet: cmdlet.name,
                param: param.name,
            });
        }
        values.push((param.name, value));
    }
    let taken: Vec<&'static str> = values.iter().map(|(n, _)| *n).collect();
    let mut free = cmdlet.positional.iter().filter(|n| !taken.contains(n));
    for v in positionals {
        let Some(name) = free.next() else {
            return Err(BindError::ExtraPositional {
                cmdlet: cmdlet.name,
                value: super::format::show(&v).trim().to_owned(),
            });
        };
        values.push((name, v));
    }
    let mut warnings = Vec::new();
    for (name, value) in &values {
        let Some(param) = params.iter().find(|p| p.name == *name) else {
            continue;
        };
        match param.handling {
            Refused(why) => {
                return Err(BindError::RefusedParam {
                    cmdlet: cmdlet.name,
                    param: param.name,
                    why,
                });
            }
            Ignored(why) if *value != Value::Bool(false) => {
                warnings.push(format!("-{} is not honoured: {why}", param.name));
            }
            _ => {}
        }
    }
    Ok(Bound {
        cmdlet,
        values,
        warnings,
    })
}

/// A parameter's handling (for the translation of `Flag` parameters).
pub fn handling(cmdlet: &'static Cmdlet, name: &str) -> Option<Handling> {
    params_of(cmdlet)
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.handling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    #[test]
    fn names_without_case_aliases_and_prefixes() {
        assert_eq!(
            find("import-exchangecertificate").unwrap().name,
            "Import-ExchangeCertificate"
        );
        assert_eq!(find("fl").unwrap().name, "Format-List");
        let c = find("Enable-ExchangeCertificate").unwrap();
        let b = bind(
            c,
            vec![ArgValue::Param("thumb".into()), ArgValue::Value(text("AB"))],
        )
        .unwrap();
        assert_eq!(b.get("Thumbprint"), Some(&text("AB")));
    }

    #[test]
    fn switches_booleans_and_positionals() {
        let c = find("Set-ReceiveConnector").unwrap();
        let b = bind(
            c,
            vec![
                ArgValue::Value(text("Internet")),
                ArgValue::Param("DomainSecureEnabled".into()),
                ArgValue::Value(Value::Bool(true)),
                ArgValue::Param("AuthMechanism".into()),
                ArgValue::Value(text("TLS")),
            ],
        )
        .unwrap();
        assert_eq!(b.get("Identity"), Some(&text("Internet")));
        assert_eq!(b.get("DomainSecureEnabled"), Some(&Value::Bool(true)));
        assert_eq!(b.get("AuthMechanism"), Some(&text("TLS")));

        let c = find("New-ExchangeCertificate").unwrap();
        let b = bind(
            c,
            vec![
                ArgValue::ParamWith("GenerateRequest".into(), Value::Bool(true)),
                ArgValue::Param("SubjectName".into()),
                ArgValue::Value(text("CN=x")),
            ],
        )
        .unwrap();
        assert_eq!(b.get("GenerateRequest"), Some(&Value::Bool(true)));
        // A switch takes no following value: it stays positional (and here, extra).
        let err = bind(
            c,
            vec![
                ArgValue::Param("GenerateRequest".into()),
                ArgValue::Value(text("x")),
            ],
        )
        .unwrap_err();
        assert!(matches!(err, BindError::ExtraPositional { .. }), "{err}");
    }

    #[test]
    fn unknown_names_get_the_nearest_and_the_verb() {
        let err = find("Set-SendConector").unwrap_err().to_string();
        assert!(
            err.contains("nearest is Set-SendConnector (postern send-connector set NAME)"),
            "{err}"
        );
        let c = find("Set-SendConnector").unwrap();
        let err = bind(
            c,
            vec![
                ArgValue::Param("DomianSecureEnabled".into()),
                ArgValue::Value(Value::Bool(true)),
            ],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nearest is -DomainSecureEnabled"), "{err}");
        assert!(err.contains("postern send-connector set"), "{err}");
        let err = bind(c, vec![ArgValue::Param("D".into())]).unwrap_err();
        assert!(matches!(err, BindError::Ambiguous { .. }), "{err}");
    }

    #[test]
    fn refused_and_ignored_parameters_say_why() {
        let err = find("Retry-Queue").unwrap_err().to_string();
        assert!(err.contains("no retry operation"), "{err}");
        let c = find("Import-ExchangeCertificate").unwrap();
        let err = bind(
            c,
            vec![ArgValue::Param("Password".into()), ArgValue::Value(text("x"))],
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("--password-file"), "{err}");
        let c = find("New-SendConnector").unwrap();
        let b = bind(
            c,
            vec![
                ArgValue::Value(text("X")),
                ArgValue::Param("Usage".into()),
                ArgValue::Value(text("Partner")),
            ],
        )
        .unwrap();
        assert_eq!(b.warnings.len(), 1);
        let err = bind(c, vec![ArgValue::Param("RequireTLS".into())]).unwrap_err();
        assert!(matches!(err, BindError::MissingValue { .. }), "{err}");
        let err = bind(c, vec![ArgValue::ParamWith("RequireTLS".into(), text("maybe"))]).unwrap_err();
        assert!(matches!(err, BindError::WrongKind { .. }), "{err}");
    }
}
