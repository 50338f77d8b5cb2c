//! Running a parsed script: evaluating values, binding and translating each
//! cmdlet, running the `postern` verb it maps to (the same handler, hence the
//! same admin API call, as `postern VERB`), reading and writing files, and
//! printing results as EMS does. Stops at the first error, as a runbook
//! with `$ErrorActionPreference = 'Stop'` would.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use anyhow::{Context, anyhow, bail};
use clap::Parser as _;

use super::cmdlets::{self, ArgValue};
use super::format;
use super::lexer::{self, StrPart};
use super::parser::{self, Arg, Command, Expr, Pipeline, Script};
use super::translate::{self, Action, Output};
use super::value::{FileBytes, Object, Value};
use crate::output::Reply;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + 'a>>;

/// One EMS session against one node: variables live as long as it does.
pub struct Session {
    node: PathBuf,
    vars: HashMap<String, Value>,
    verbose: bool,
}

impl Session {
    /// A session administering the node whose data directory is `node`;
    /// `verbose` prints the `postern` verb each cmdlet runs.
    pub fn new(node: &Path, verbose: bool) -> Self {
        Self {
            node: node.to_owned(),
            vars: HashMap::new(),
            verbose,
        }
    }

    /// Parses a script (printing how its line breaks were read).
    pub fn parse(text: &str) -> anyhow::Result<Script> {
        let lexed = lexer::lex(text)?;
        for note in &lexed.notes {
            eprintln!("note: {note}");
        }
        Ok(parser::parse(&lexed.tokens)?)
    }

    /// Runs a script's statements in order, printing what they output.
    pub async fn run(&mut self, script: &Script) -> anyhow::Result<()> {
        for statement in &script.statements {
            if is_exit(&statement.pipeline) {
                return Ok(());
            }
            let value = self
                .pipeline(&statement.pipeline)
                .await
                .with_context(|| format!("line {}", statement.line))?;
            match &statement.assign {
                Some(var) => {
                    self.vars.insert(var.to_ascii_lowercase(), value);
                }
                None => {
                    let mut out = std::io::stdout().lock();
                    out.write_all(format::show(&value).as_bytes())?;
                    out.flush()?;
                }
            }
        }
        Ok(())
    }

    fn pipeline<'a>(&'a mut self, pipeline: &'a Pipeline) -> Boxed<'a, Value> {
        Box::pin(async move {
            let mut input = match &pipeline.head {
                Some(expr) => Some(self.expr(expr).await?),
                None => None,
            };
            for command in &pipeline.commands {
                input = Some(self.command(command, input).await?);
            }
            Ok(input.unwrap_or(Value::Null))
        })
    }

    fn expr<'a>(&'a mut self, expr: &'a Expr) -> Boxed<'a, Value> {
        Box::pin(async move {
            Ok(match expr {
                Expr::Word(w) => Value::Text(w.clone()),
                Expr::Str(parts) => Value::Text(self.expand(parts)?),
                Expr::Var(name) => self.var(name)?,
                Expr::List(items) => {
                    let mut values = Vec::new();
                    for item in items {
                        values.push(self.expr(item).await?);
                    }
                    Value::List(values)
                }
                Expr::Cast(ty, inner) => cast(ty, self.expr(inner).await?)?,
                Expr::Paren(pipeline) => self.pipeline(pipeline).await?,
                Expr::Sub(script) => {
                    let mut outputs = Vec::new();
                    for statement in &script.statements {
                        let value = self.pipeline(&statement.pipeline).await?;
                        match &statement.assign {
                            Some(var) => {
                                self.vars.insert(var.to_ascii_lowercase(), value);
                            }
                            None => outputs.extend(value.items()),
                        }
                    }
                    match outputs.len() {
                        0 => Value::Null,
                        1 => outputs.remove(0),
                        _ => Value::List(outputs),
                    }
                }
            })
        })
    }

    fn var(&self, name: &str) -> anyhow::Result<Value> {
        match name.to_ascii_lowercase().as_str() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            lower => self
                .vars
                .get(lower)
                .cloned()
                .ok_or_else(|| anyhow!("${name} is not set (assign it first: ${name} = …)")),
        }
    }

    fn expand(&self, parts: &[StrPart]) -> anyhow::Result<String> {
        let mut text = String::new();
        for part in parts {
            match part {
                StrPart::Literal(l) => text.push_str(l),
                StrPart::Var(name) => match self.var(name)? {
                    Value::Text(t) => text.push_str(&t),
                    Value::Bool(b) => text.push_str(if b { "True" } else { "False" }),
                    Value::Null => {}
                    other => bail!("${name} holds {}, which cannot go inside a string", other.kind()),
                },
            }
        }
        Ok(text)
    }

    async fn command(&mut self, command: &Command, input: Option<Value>) -> anyhow::Result<Value> {
        let cmdlet = cmdlets::find(&command.name)?;
        let mut args = Vec::new();
        for arg in &command.args {
            args.push(match arg {
                Arg::Param(name) => ArgValue::Param(name.clone()),
                Arg::ParamWith(name, expr) => ArgValue::ParamWith(name.clone(), self.expr(expr).await?),
                Arg::Value(expr) => ArgValue::Value(self.expr(expr).await?),
            });
        }
        let bound = cmdlets::bind(cmdlet, args)?;
        // Several objects piped into a cmdlet that acts on one: once each.
        let per_item = !matches!(cmdlet.name, "Format-List" | "Set-Content");
        match input {
            Some(Value::List(items)) if per_item => {
                let mut outputs = Vec::new();
                for item in &items {
                    outputs.extend(self.perform(&bound, Some(item)).await?.items());
                }
                Ok(Value::List(outputs))
            }
            input => self.perform(&bound, input.as_ref()).await,
        }
    }

    async fn perform(&mut self, bound: &cmdlets::Bound, input: Option<&Value>) -> anyhow::Result<Value> {
        let translation = translate::translate(bound, input)?;
        for note in &translation.notes {
            eprintln!("note: {note}");
        }
        for warning in &translation.warnings {
            eprintln!("WARNING: {warning}");
        }
        match translation.action {
            Action::Verb { argv, output } => self.verb(&argv, output).await,
            Action::WriteFile { path, data } => {
                write_file(&path, &data)?;
                Ok(Value::Null)
            }
            Action::ReadFile { path, bytes } => read_file(path, bytes),
            Action::FormatList { properties } => {
                let items = input.cloned().map(Value::items).unwrap_or_default();
                let objects: Vec<&Object> = items
                    .iter()
                    .map(|v| match v {
                        Value::Object(o) => Ok(o),
                        other => Err(anyhow!("Format-List formats objects, not {}", other.kind())),
                    })
                    .collect::<anyhow::Result<_>>()?;
                let (text, unmatched) = format::format_list(&objects, &properties);
                for name in unmatched {
                    eprintln!("WARNING: no object here has a property {name}");
                }
                Ok(Value::Text(text))
            }
        }
    }

    async fn verb(&mut self, argv: &[String], output: Output) -> anyhow::Result<Value> {
        let reply = self.run_verb(argv).await?;
        Ok(match (output, reply) {
            (Output::Nothing, _) | (_, Reply::Done) => Value::Null,
            (Output::Text, Reply::Text(t)) => Value::Text(t),
            (Output::Certificate, Reply::Text(t)) => {
                let thumbprint = t.trim().to_owned();
                let reply = self
                    .run_verb(&["cert".into(), "get".into(), format!("--thumbprint={thumbprint}")])
                    .await?;
                objects(reply)
            }
            (_, reply) => objects(reply),
        })
    }

    /// Runs `postern ARGV` through the same parser and handlers as the command line.
    async fn run_verb(&self, argv: &[String]) -> anyhow::Result<Reply> {
        if self.verbose {
            eprintln!("> postern {}", shell_words(argv));
        }
        let full = [
            "postern".to_owned(),
            "--node".to_owned(),
            self.node.display().to_string(),
        ]
        .into_iter()
        .chain(argv.iter().cloned());
        let cli = crate::Cli::try_parse_from(full).map_err(|e| {
            let text = e.to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or_default()
                .trim_start_matches("error: ")
                .to_owned();
            anyhow!("postern {}: {first}", shell_words(argv))
        })?;
        let node = self.node.as_path();
        match cli.command {
            crate::Command::Cert { command } => crate::cert::exec(node, command).await,
            crate::Command::TransportConfig { command } => {
                crate::objects::transport_config_exec(node, command).await
            }
            crate::Command::SendConnector { command } => {
                crate::objects::send_connector_exec(node, command).await
            }
            crate::Command::ReceiveConnector { command } => {
                crate::objects::receive_connector_exec(node, command).await
            }
            crate::Command::EdgeSubscription { command } => {
                crate::edgesync::subscription_exec(node, command).await
            }
            crate::Command::Edgesync { command } => crate::edgesync::edgesync_exec(node, command).await,
            crate::Command::Queue {
                command: crate::QueueCommand::List { json },
            } => crate::client::queue_exec(node, json).await,
            _ => bail!(
                "internal: postern ems does not run `postern {}`",
                shell_words(argv)
            ),
        }
    }
}

/// `exit` (PowerShell's keyword) ends a runbook.
pub fn is_exit(pipeline: &Pipeline) -> bool {
    matches!(pipeline.commands.as_slice(), [c] if pipeline.head.is_none() && c.args.is_empty() && c.name.eq_ignore_ascii_case("exit"))
}

fn objects(reply: Reply) -> Value {
    match reply {
        Reply::Done => Value::Null,
        Reply::Text(t) => Value::Text(t),
        Reply::Records {
            records, as_array, ..
        } => {
            let mut objects: Vec<Value> = records
                .iter()
                .map(|r| Value::Object(Object::from_record(r)))
                .collect();
            if !as_array && objects.len() == 1 {
                objects.remove(0)
            } else {
                Value::List(objects)
            }
        }
    }
}

fn cast(ty: &str, value: Value) -> anyhow::Result<Value> {
    let ty = ty.to_ascii_lowercase();
    match ty.trim_start_matches("system.") {
        "byte[]" => match value {
            Value::Bytes(b) => Ok(Value::Bytes(b)),
            other => bail!(
                "[Byte[]] needs a file's bytes (Get-Content -Path FILE -Encoding Byte -ReadCount 0), not {}",
                other.kind()
            ),
        },
        "string" => match value {
            Value::Text(t) => Ok(Value::Text(t)),
            Value::Bool(b) => Ok(Value::Text(if b { "True" } else { "False" }.into())),
            Value::Bytes(b) => {
                Ok(Value::Text(String::from_utf8(b.data).map_err(|_| {
                    anyhow!("the bytes of {} are not UTF-8 text", b.path.display())
                })?))
            }
            other => bail!("[string] cannot convert {}", other.kind()),
        },
        "bool" => match value {
            Value::Bool(b) => Ok(Value::Bool(b)),
            other => bail!("[bool] cannot convert {}", other.kind()),
        },
        _ => bail!("the cast [{ty}] is not supported by postern ems (only [Byte[]], [string] and [bool])"),
    }
}

fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
        && !parent.is_dir()
    {
        bail!(
            "cannot write {}: the folder {} does not exist (create it first, as on Windows)",
            path.display(),
            parent.display()
        );
    }
    std::fs::write(path, data).with_context(|| format!("cannot write {}", path.display()))
}

fn read_file(path: PathBuf, bytes: bool) -> anyhow::Result<Value> {
    let data = std::fs::read(&path)
        .with_context(|| format!("cannot read {} (it must exist in the path given)", path.display()))?;
    if bytes {
        return Ok(Value::Bytes(FileBytes { path, data }));
    }
    String::from_utf8(data)
        .map(Value::Text)
        .map_err(|_| anyhow!("{} is not text: read it with -Encoding Byte", path.display()))
}

/// Arguments as a shell line, quoted where needed.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
