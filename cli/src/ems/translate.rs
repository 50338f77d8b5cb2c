//! A bound cmdlet call, turned into what runs: the argument vector of the
//! `postern` verb that does the job (so each line goes through the same
//! code, and the same admin API call, as the verb), or a local file
//! operation, or `Format-List`. No I/O. One function per cmdlet family,
//! kept together (with their table tests) so the whole mapping is read in
//! one file.

use std::path::PathBuf;

use super::cmdlets::{Bound, Handling, Kind, handling};
use super::paths::{self, PathError};
use super::value::Value;

/// What a line does.
#[derive(Debug, PartialEq)]
pub enum Action {
    /// Runs `postern ARGV…` and reads its reply as `output`.
    Verb {
        /// The verb's arguments, after `postern`.
        argv: Vec<String>,
        /// What the reply is.
        output: Output,
    },
    /// `Set-Content`: writes a file.
    WriteFile {
        /// Where.
        path: PathBuf,
        /// What.
        data: Vec<u8>,
    },
    /// `Get-Content`: reads a file, as bytes or as text.
    ReadFile {
        /// The file.
        path: PathBuf,
        /// `-Encoding Byte`.
        bytes: bool,
    },
    /// `Format-List`: prints the piped objects.
    FormatList {
        /// The properties asked for (none: all).
        properties: Vec<String>,
    },
}

/// How to read a verb's reply.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Output {
    /// Nothing: the cmdlet prints nothing on success.
    Nothing,
    /// The reply's text is the value (a PEM request).
    Text,
    /// The reply's records are the objects.
    Records,
    /// The reply's text is a thumbprint: the value is that certificate.
    Certificate,
}

/// An action and what to tell the administrator about it.
#[derive(Debug, PartialEq)]
pub struct Translation {
    /// What runs.
    pub action: Action,
    /// How the line was read (paths mapped, wrapped names folded).
    pub notes: Vec<String>,
    /// Parameters accepted but not honoured, and why.
    pub warnings: Vec<String>,
}

/// Why a bound call cannot run.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TranslateError {
    /// A path that cannot be mapped.
    #[error("{cmdlet}: {source}")]
    Path {
        /// The cmdlet.
        cmdlet: &'static str,
        /// Why.
        source: PathError,
    },
    /// Something the cmdlet needs was not given.
    #[error("{cmdlet} needs {what}")]
    Missing {
        /// The cmdlet.
        cmdlet: &'static str,
        /// What, and how to give it.
        what: &'static str,
    },
    /// A value that does not fit.
    #[error("{cmdlet} -{param}: {why}")]
    Bad {
        /// The cmdlet.
        cmdlet: &'static str,
        /// The parameter.
        param: &'static str,
        /// Why.
        why: String,
    },
}

/// The smallest RSA key Postern makes; smaller `-KeySize` values are not honoured.
const MIN_RSA_BITS: u64 = 2048;

struct Tr<'a> {
    bound: &'a Bound,
    input: Option<&'a Value>,
    notes: Vec<String>,
    warnings: Vec<String>,
}

/// Translates a bound call; `input` is the value piped into it.
pub fn translate(bound: &Bound, input: Option<&Value>) -> Result<Translation, TranslateError> {
    let mut tr = Tr {
        bound,
        input,
        notes: Vec::new(),
        warnings: bound.warnings.clone(),
    };
    let action = tr.action()?;
    Ok(Translation {
        action,
        notes: tr.notes,
        warnings: tr.warnings,
    })
}

fn verb(argv: &[&str], output: Output) -> Action {
    Action::Verb {
        argv: argv.iter().map(|s| (*s).to_owned()).collect(),
        output,
    }
}

impl Tr<'_> {
    fn name(&self) -> &'static str {
        self.bound.cmdlet.name
    }

    fn bad(&self, param: &'static str, why: impl Into<String>) -> TranslateError {
        TranslateError::Bad {
            cmdlet: self.name(),
            param,
            why: why.into(),
        }
    }

    /// One value as text; a line break inside it (the page's wrap) reads as a space.
    fn one(&mut self, param: &'static str, v: &Value) -> Result<String, TranslateError> {
        match v {
            Value::Text(t) if t.contains('\n') => {
                let folded = t.split_whitespace().collect::<Vec<_>>().join(" ");
                self.notes.push(format!(
                    "-{param}: the line break inside {:?} is read as a space",
                    t.replace('\n', "⏎")
                ));
                Ok(folded)
            }
            Value::Text(t) => Ok(t.clone()),
            Value::Bool(b) => Ok(if *b { "True" } else { "False" }.to_owned()),
            Value::Null => Ok(String::new()),
            Value::List(items) if items.len() == 1 => self.one(param, &items[0]),
            other => Err(self.bad(param, format!("takes one value, not {}", other.kind()))),
        }
    }

    fn many(&mut self, param: &'static str, v: &Value) -> Result<Vec<String>, TranslateError> {
        v.clone().items().iter().map(|i| self.one(param, i)).collect()
    }

    fn text(&mut self, param: &'static str) -> Result<Option<String>, TranslateError> {
        match self.bound.get(param) {
            Some(v) => Ok(Some(self.one(param, v)?)),
            None => Ok(None),
        }
    }

    fn path(&mut self, param: &'static str) -> Result<Option<PathBuf>, TranslateError> {
        let Some(text) = self.text(param)? else {
            return Ok(None);
        };
        let (path, note) = paths::map(&text).map_err(|source| TranslateError::Path {
            cmdlet: self.name(),
            source,
        })?;
        self.notes.extend(note);
        Ok(Some(path))
    }

    fn bool(&self, param: &'static str) -> Option<bool> {
        match self.bound.get(param) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The identity given, or the piped object's `property`.
    fn identity(
        &mut self,
        params: &[&'static str],
        property: &str,
    ) -> Result<Option<String>, TranslateError> {
        for param in params {
            if let Some(v) = self.bound.get(param) {
                return match v {
                    Value::Object(o) => Ok(o.text(property)),
                    v => Ok(Some(self.one(param, v)?)),
                };
            }
        }
        Ok(match self.input {
            Some(Value::Object(o)) => o.text(property),
            Some(Value::Text(t)) if !t.contains('\n') => Some(t.trim().to_owned()),
            _ => None,
        })
    }

    /// `--flag=value` for every `Flag` parameter given.
    fn flags(&mut self, argv: &mut Vec<String>) -> Result<(), TranslateError> {
        let cmdlet = self.bound.cmdlet;
        for (name, value) in &self.bound.values {
            let Some(Handling::Flag(flag)) = handling(cmdlet, name) else {
                continue;
            };
            let kind = super::cmdlets::CMDLETS
                .iter()
                .find(|(c, _)| c.name == cmdlet.name)
                .and_then(|(c, groups)| {
                    c.params
                        .iter()
                        .chain(groups.iter().flat_map(|g| g.iter()))
                        .find(|p| p.name == *name)
                })
                .map_or(Kind::One, |p| p.kind);
            match (kind, value) {
                (Kind::Switch, Value::Bool(true)) => argv.push(format!("--{flag}")),
                (Kind::Switch, _) => {}
                (Kind::Bool, Value::Bool(b)) => argv.push(format!("--{flag}={b}")),
                (Kind::Many, v) => {
                    let items = self.many(name, v)?;
                    argv.push(format!("--{flag}={}", items.join(",")));
                }
                (_, v) => {
                    let text = self.one(name, v)?;
                    argv.push(format!("--{flag}={text}"));
                }
            }
        }
        Ok(())
    }

    fn size(&mut self, param: &'static str) -> Result<Option<u64>, TranslateError> {
        let Some(text) = self.text(param)? else {
            return Ok(None);
        };
        parse_size(&text).map(Some).map_err(|why| self.bad(param, why))
    }

    fn action(&mut self) -> Result<Action, TranslateError> {
        match self.name() {
            "New-ExchangeCertificate" => self.new_certificate(),
            "Import-ExchangeCertificate" => self.import_certificate(),
            "Enable-ExchangeCertificate" => {
                let tp = self.identity(&["Thumbprint", "Identity"], "Thumbprint")?.ok_or(
                    TranslateError::Missing {
                        cmdlet: self.name(),
                        what: "-Thumbprint (or a certificate piped in from Import-ExchangeCertificate)",
                    },
                )?;
                let mut argv = vec!["cert".into(), "enable".into(), format!("--thumbprint={tp}")];
                self.flags(&mut argv)?;
                if self.bound.get("Services").is_none() {
                    return Err(TranslateError::Missing {
                        cmdlet: self.name(),
                        what: "-Services (e.g. -Services SMTP)",
                    });
                }
                Ok(Action::Verb {
                    argv,
                    output: Output::Nothing,
                })
            }
            "Get-ExchangeCertificate" => {
                Ok(match self.identity(&["Thumbprint", "Identity"], "Thumbprint")? {
                    Some(tp) => verb(&["cert", "get", &format!("--thumbprint={tp}")], Output::Records),
                    None => verb(&["cert", "list"], Output::Records),
                })
            }
            "Remove-ExchangeCertificate" => {
                let tp = self.identity(&["Thumbprint", "Identity"], "Thumbprint")?.ok_or(
                    TranslateError::Missing {
                        cmdlet: self.name(),
                        what: "-Thumbprint",
                    },
                )?;
                Ok(verb(
                    &["cert", "remove", &format!("--thumbprint={tp}")],
                    Output::Nothing,
                ))
            }
            "Set-TransportConfig" => {
                let mut argv = vec!["transport-config".into(), "set".into()];
                self.flags(&mut argv)?;
                if let Some(n) = self.size("MaxReceiveSize")? {
                    argv.push(format!("--max-message-size={n}"));
                }
                Ok(Action::Verb {
                    argv,
                    output: Output::Nothing,
                })
            }
            "Get-TransportConfig" => Ok(verb(&["transport-config", "get"], Output::Records)),
            "New-SendConnector" | "Set-SendConnector" => self.connector("send-connector"),
            "New-ReceiveConnector" | "Set-ReceiveConnector" => self.connector("receive-connector"),
            "Get-SendConnector" => self.get_connector("send-connector"),
            "Get-ReceiveConnector" => self.get_connector("receive-connector"),
            "Remove-SendConnector" => self.remove_named("send-connector"),
            "Remove-ReceiveConnector" => self.remove_named("receive-connector"),
            "New-EdgeSubscription" => self.new_subscription(),
            "Get-EdgeSubscription" => Ok(verb(&["edge-subscription", "list"], Output::Records)),
            "Remove-EdgeSubscription" => self.remove_named("edge-subscription"),
            "Start-EdgeSynchronization" => Ok(verb(&["edgesync", "start"], Output::Nothing)),
            "Test-EdgeSynchronization" => Ok(verb(&["edgesync", "test"], Output::Records)),
            "Get-Queue" => {
                if self.bound.get("Identity").is_some() {
                    self.warnings
                        .push("-Identity is not honoured: every queued message of the node is listed".into());
                }
                Ok(verb(&["queue", "list"], Output::Records))
            }
            "Set-Content" => self.set_content(),
            "Get-Content" => {
                let path = self.path("Path")?.ok_or(TranslateError::Missing {
                    cmdlet: self.name(),
                    what: "-Path",
                })?;
                let encoding = self.text("Encoding")?.unwrap_or_default();
                Ok(Action::ReadFile {
                    path,
                    bytes: encoding.eq_ignore_ascii_case("Byte"),
                })
            }
            "Format-List" => {
                let properties = match self.bound.get("Property") {
                    Some(v) => self.many("Property", v)?,
                    None => Vec::new(),
                };
                Ok(Action::FormatList { properties })
            }
            _ => Err(TranslateError::Missing {
                cmdlet: self.name(),
                what: "a translation to a postern verb (an internal error: please report it)",
            }),
        }
    }

    fn new_certificate(&mut self) -> Result<Action, TranslateError> {
        let mut argv = vec!["cert".into(), "new".into()];
        self.flags(&mut argv)?;
        if self.bound.get("SubjectName").is_none() {
            let first = match self.bound.get("DomainName") {
                Some(v) => self.many("DomainName", v)?.into_iter().next(),
                None => None,
            };
            let Some(first) = first else {
                return Err(TranslateError::Missing {
                    cmdlet: self.name(),
                    what: "-SubjectName (e.g. \"CN=mail.example.com\") or -DomainName",
                });
            };
            self.notes.push(format!(
                "no -SubjectName: the subject is CN={first}, the first -DomainName"
            ));
            argv.push(format!("--subject-name=CN={first}"));
        }
        if let Some(size) = self.text("KeySize")? {
            let bits: u64 = size
                .trim()
                .parse()
                .map_err(|_| self.bad("KeySize", format!("{size:?} is not a number of bits")))?;
            if bits < MIN_RSA_BITS {
                self.warnings.push(format!(
                    "-KeySize {bits} is not honoured: Postern makes no RSA key under {MIN_RSA_BITS} bits (public CAs have refused them since 2013, and NIST SP 800-131A disallows them); the key is {MIN_RSA_BITS} bits"
                ));
            } else {
                argv.push(format!("--key-size={bits}"));
            }
        }
        if self.bool("PrivateKeyExportable") == Some(true) {
            self.warnings.push(
                "-PrivateKeyExportable:$true is not honoured: private keys never leave the node that made them; make a request on each node that needs a certificate".into(),
            );
        }
        let path = match self.path("Path")? {
            Some(p) => Some(p),
            None => self.path("RequestFile")?,
        };
        let request = self.bool("GenerateRequest") == Some(true);
        let output = match (&path, request) {
            (Some(path), true) => {
                argv.push(format!("--path={}", path.display()));
                Output::Certificate
            }
            (Some(_), false) => {
                return Err(self.bad("Path", "writes a certificate request: give -GenerateRequest too"));
            }
            (None, true) => Output::Text,
            (None, false) => Output::Certificate,
        };
        Ok(Action::Verb { argv, output })
    }

    fn import_certificate(&mut self) -> Result<Action, TranslateError> {
        let mut argv = vec!["cert".into(), "import".into()];
        let file = match (self.bound.get("FileData"), self.path("Path")?) {
            (Some(_), Some(_)) => return Err(self.bad("FileData", "give -FileData or -Path, not both")),
            (Some(Value::Bytes(b)), None) => b.path.clone(),
            (Some(other), None) => {
                return Err(self.bad(
                    "FileData",
                    format!(
                        "takes the file's bytes, ([Byte[]]$(Get-Content -Path FILE -Encoding Byte -ReadCount 0)), not {}",
                        other.kind()
                    ),
                ));
            }
            (None, Some(path)) => path,
            (None, None) => {
                return Err(TranslateError::Missing {
                    cmdlet: self.name(),
                    what: "-FileData or -Path",
                });
            }
        };
        argv.push(format!("--path={}", file.display()));
        self.flags(&mut argv)?;
        if self.bool("PrivateKeyExportable") == Some(true) {
            self.warnings.push(
                "-PrivateKeyExportable:$true is not honoured: private keys never leave the node that holds them".into(),
            );
        }
        Ok(Action::Verb {
            argv,
            output: Output::Certificate,
        })
    }

    fn connector(&mut self, noun: &str) -> Result<Action, TranslateError> {
        let creating = self.name().starts_with("New-");
        let name = if creating {
            self.identity(&["Name"], "Name")?
        } else {
            self.identity(&["Identity"], "Name")?
        }
        .ok_or(TranslateError::Missing {
            cmdlet: self.name(),
            what: "the connector's name (-Name / -Identity, or first)",
        })?;
        let name = self.local_name(noun, name);
        let mut argv = vec![
            noun.to_owned(),
            if creating { "new" } else { "set" }.to_owned(),
            name,
        ];
        self.flags(&mut argv)?;
        if let Some(v) = self.bound.get("AddressSpaces") {
            let mut spaces = Vec::new();
            for space in self.many("AddressSpaces", v)? {
                spaces.push(address_space(&space).map_err(|why| self.bad("AddressSpaces", why))?);
            }
            argv.push(format!("--address-spaces={}", spaces.join(",")));
        }
        if let Some(n) = self.size("MaxMessageSize")? {
            argv.push(format!("--max-message-size={n}"));
        }
        Ok(Action::Verb {
            argv,
            output: Output::Nothing,
        })
    }

    fn get_connector(&mut self, noun: &str) -> Result<Action, TranslateError> {
        Ok(match self.identity(&["Identity"], "Name")? {
            Some(name) => {
                let name = self.local_name(noun, name);
                verb(&[noun, "get", &name], Output::Records)
            }
            None => verb(&[noun, "list"], Output::Records),
        })
    }

    fn remove_named(&mut self, noun: &str) -> Result<Action, TranslateError> {
        let name = self
            .identity(&["Identity"], "Name")?
            .ok_or(TranslateError::Missing {
                cmdlet: self.name(),
                what: "-Identity (the name)",
            })?;
        let name = self.local_name(noun, name);
        Ok(verb(&[noun, "remove", &name], Output::Nothing))
    }

    /// A receive connector's identity `SERVER\Name`, as Exchange writes it:
    /// the connector belongs to the node administered, so only the name counts.
    fn local_name(&mut self, noun: &str, identity: String) -> String {
        match identity.rsplit_once('\\') {
            Some((server, name)) if noun == "receive-connector" && !name.is_empty() => {
                self.notes.push(format!(
                    "{identity} is read as the connector {name} of this node (the server part {server} names the node given by --node)"
                ));
                name.to_owned()
            }
            _ => identity,
        }
    }

    fn new_subscription(&mut self) -> Result<Action, TranslateError> {
        for param in ["CreateInternetSendConnector", "CreateInboundSendConnector"] {
            if self.bool(param) == Some(false) {
                self.warnings.push(format!(
                    "-{param}:$false is not honoured: a Postern subscription always makes the EdgeSync send connectors; remove them with Remove-SendConnector"
                ));
            }
        }
        match (self.path("FileName")?, self.bound.get("FileData").cloned()) {
            (Some(file), None) => {
                if self.bound.get("Site").is_some() {
                    return Err(self.bad("Site", "is given where the file is imported, on a hub (with -FileData)"));
                }
                Ok(verb(
                    &["edge-subscription", "new", &format!("--file={}", file.display())],
                    Output::Nothing,
                ))
            }
            (None, Some(Value::Bytes(b))) => {
                let mut argv = vec![
                    "edge-subscription".to_owned(),
                    "import".to_owned(),
                    format!("--file={}", b.path.display()),
                ];
                self.flags(&mut argv)?;
                Ok(Action::Verb {
                    argv,
                    output: Output::Records,
                })
            }
            (None, Some(other)) => Err(self.bad(
                "FileData",
                format!(
                    "takes the file's bytes, ([Byte[]]$(Get-Content -Path FILE -Encoding Byte -ReadCount 0)), not {}",
                    other.kind()
                ),
            )),
            (Some(_), Some(_)) => Err(self.bad("FileName", "give -FileName (on the edge) or -FileData (on a hub), not both")),
            (None, None) => Err(TranslateError::Missing {
                cmdlet: self.name(),
                what: "-FileName (on the edge) or -FileData (on a hub)",
            }),
        }
    }

    fn set_content(&mut self) -> Result<Action, TranslateError> {
        let path = self.path("Path")?.ok_or(TranslateError::Missing {
            cmdlet: self.name(),
            what: "-Path",
        })?;
        let value = match (self.bound.get("Value"), self.input) {
            (Some(v), _) | (None, Some(v)) => v.clone(),
            (None, None) => Value::Null,
        };
        let data = match value {
            Value::Bytes(b) => b.data,
            Value::Null => Vec::new(),
            Value::Object(_) => {
                return Err(self.bad(
                    "Value",
                    "objects are not written to files; pipe them to Format-List",
                ));
            }
            v => {
                let lines: Vec<String> = v
                    .items()
                    .iter()
                    .map(|i| match i {
                        Value::Text(t) => Ok(t.clone()),
                        Value::Bool(b) => Ok(if *b { "True" } else { "False" }.to_owned()),
                        other => Err(self.bad("Value", format!("cannot write {} as text", other.kind()))),
                    })
                    .collect::<Result<_, _>>()?;
                let mut text = lines.join("\n");
                if !text.ends_with('\n') {
                    text.push('\n');
                }
                text.into_bytes()
            }
        };
        Ok(Action::WriteFile { path, data })
    }
}

/// Exchange's address-space forms: `SMTP:domain;cost`, `domain;cost`, `*`.
fn address_space(text: &str) -> Result<String, String> {
    let text = text.trim();
    match text.split_once(':') {
        Some((kind, rest)) if kind.eq_ignore_ascii_case("smtp") => Ok(rest.to_owned()),
        Some((kind, _)) => Err(format!(
            "{kind} address spaces are not supported: Postern routes SMTP address spaces (domain;cost)"
        )),
        None => Ok(text.to_owned()),
    }
}

/// `10MB`, `512KB`, `1GB`, `35651584` (bytes).
fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_uppercase().replace(' ', "");
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t.as_str(), ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 10MB or 10485760)"))?;
    let factor: u64 = match unit {
        "" | "B" => 1,
        "KB" => 1 << 10,
        "MB" => 1 << 20,
        "GB" => 1 << 30,
        _ => return Err(format!("{text:?} is not a size (e.g. 10MB or 10485760)")),
    };
    n.checked_mul(factor)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::super::cmdlets::{ArgValue, bind, find};
    use super::super::value::{FileBytes, Object};
    use super::*;

    fn run(cmdlet: &str, args: Vec<ArgValue>, input: Option<&Value>) -> Translation {
        translate(&bind(find(cmdlet).unwrap(), args).unwrap(), input).unwrap()
    }

    fn t(s: &str) -> Value {
        Value::Text(s.into())
    }

    fn argv(tr: &Translation) -> Vec<String> {
        match &tr.action {
            Action::Verb { argv, .. } => argv.clone(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_seeds_request_maps_to_cert_new() {
        let tr = run(
            "New-ExchangeCertificate",
            vec![
                ArgValue::Param("GenerateRequest".into()),
                ArgValue::Param("FriendlyName".into()),
                ArgValue::Value(t("Internet certificate\nfor VAN-EX2")),
                ArgValue::Param("SubjectName".into()),
                ArgValue::Value(t("DC=com,DC=Adatum,CN=VAN-EX2.adatum.com")),
                ArgValue::Param("DomainName".into()),
                ArgValue::Value(t("mail.adatum.com")),
            ],
            None,
        );
        assert_eq!(
            argv(&tr),
            [
                "cert",
                "new",
                "--generate-request",
                "--friendly-name=Internet certificate for VAN-EX2",
                "--subject-name=DC=com,DC=Adatum,CN=VAN-EX2.adatum.com",
                "--domain-name=mail.adatum.com"
            ]
        );
        assert!(matches!(
            tr.action,
            Action::Verb {
                output: Output::Text,
                ..
            }
        ));
        assert_eq!(tr.notes.len(), 1);
    }

    #[test]
    fn a_1024_bit_key_and_an_exportable_key_are_not_honoured() {
        let tr = run(
            "New-ExchangeCertificate",
            vec![
                ArgValue::Param("DomainName".into()),
                ArgValue::Value(t("mail.example.com")),
                ArgValue::ParamWith("GenerateRequest".into(), Value::Bool(true)),
                ArgValue::Param("Keysize".into()),
                ArgValue::Value(t("1024")),
                ArgValue::Param("path".into()),
                ArgValue::Value(t("c:\\example.req")),
                ArgValue::ParamWith("privatekeyExportable".into(), Value::Bool(true)),
                ArgValue::Param("subjectName".into()),
                ArgValue::Value(t("c=us, o=Example Corp, CN=mail.example.com")),
            ],
            None,
        );
        let a = argv(&tr);
        assert!(a.iter().all(|x| !x.starts_with("--key-size")), "{a:?}");
        assert!(a.contains(&"--path=./example.req".to_owned()), "{a:?}");
        assert_eq!(tr.warnings.len(), 2, "{:?}", tr.warnings);
        assert!(tr.warnings[0].contains("-KeySize 1024 is not honoured"));
    }

    #[test]
    fn import_reads_the_bytes_file_and_enable_takes_the_piped_thumbprint() {
        let bytes = Value::Bytes(FileBytes {
            path: "./Certificates/x.pfx".into(),
            data: vec![1, 2],
        });
        let tr = run(
            "Import-ExchangeCertificate",
            vec![ArgValue::Param("FileData".into()), ArgValue::Value(bytes)],
            None,
        );
        assert_eq!(argv(&tr), ["cert", "import", "--path=./Certificates/x.pfx"]);
        let cert = Value::Object(Object {
            properties: vec![("Thumbprint".into(), serde_json::json!("AB12"))],
        });
        let tr = run(
            "Enable-ExchangeCertificate",
            vec![ArgValue::Param("Services".into()), ArgValue::Value(t("SMTP"))],
            Some(&cert),
        );
        assert_eq!(
            argv(&tr),
            ["cert", "enable", "--thumbprint=AB12", "--services=SMTP"]
        );
        let err = translate(
            &bind(
                find("Enable-ExchangeCertificate").unwrap(),
                vec![ArgValue::Param("Services".into()), ArgValue::Value(t("SMTP"))],
            )
            .unwrap(),
            None,
        )
        .unwrap_err();
        assert!(matches!(err, TranslateError::Missing { .. }));
    }

    #[test]
    fn connectors_and_transport_config() {
        let tr = run(
            "Set-SendConnector",
            vec![
                ArgValue::Value(t("Internet")),
                ArgValue::ParamWith("DomainSecureEnabled".into(), Value::Bool(true)),
            ],
            None,
        );
        assert_eq!(
            argv(&tr),
            [
                "send-connector",
                "set",
                "Internet",
                "--domain-secure-enabled=true"
            ]
        );
        let tr = run(
            "New-SendConnector",
            vec![
                ArgValue::Param("Name".into()),
                ArgValue::Value(t("Internet")),
                ArgValue::Param("AddressSpaces".into()),
                ArgValue::Value(Value::List(vec![t("SMTP:*;100"), t("contoso.com")])),
            ],
            None,
        );
        assert_eq!(
            argv(&tr),
            [
                "send-connector",
                "new",
                "Internet",
                "--address-spaces=*;100,contoso.com"
            ]
        );
        let tr = run(
            "Set-TransportConfig",
            vec![
                ArgValue::Param("TLSSendDomainSecureList".into()),
                ArgValue::Value(Value::Null),
            ],
            None,
        );
        assert_eq!(
            argv(&tr),
            ["transport-config", "set", "--tls-send-domain-secure-list="]
        );
        let tr = run(
            "Set-ReceiveConnector",
            vec![
                ArgValue::Value(t("VAN-EX2\\Internet")),
                ArgValue::Param("ProtocolLoggingLevel".into()),
                ArgValue::Value(t("Verbose")),
            ],
            None,
        );
        assert_eq!(
            argv(&tr),
            [
                "receive-connector",
                "set",
                "Internet",
                "--protocol-logging-level=Verbose"
            ]
        );
        assert_eq!(tr.notes.len(), 1);
        let tr = run("Get-SendConnector", vec![ArgValue::Value(t("Internet"))], None);
        assert_eq!(argv(&tr), ["send-connector", "get", "Internet"]);
    }

    #[test]
    fn files_and_sizes() {
        let tr = run(
            "Set-Content",
            vec![
                ArgValue::Param("Path".into()),
                ArgValue::Value(t("C:\\Certificates\\r.req")),
                ArgValue::Param("Value".into()),
                ArgValue::Value(t("PEM")),
            ],
            None,
        );
        assert_eq!(
            tr.action,
            Action::WriteFile {
                path: "./Certificates/r.req".into(),
                data: b"PEM\n".to_vec()
            }
        );
        assert_eq!(parse_size("10MB"), Ok(10 << 20));
        assert_eq!(parse_size("512"), Ok(512));
        assert!(parse_size("lots").is_err());
        assert!(address_space("X400:c=us;1").is_err());
    }
}
