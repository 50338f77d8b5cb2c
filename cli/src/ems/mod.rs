//! `postern ems`: the Exchange Management Shell lines of the seeds, run as
//! written. A small PowerShell subset — `-Name value`, `-Switch`,
//! `-Switch:$false`, quoted strings (with a printed page's line breaks),
//! comma lists, `;`, `$var = …`, `|`, `[Byte[]]$(…)` — is read by
//! [`lexer`] and [`parser`] (no I/O), bound to the cmdlets of [`cmdlets`]
//! and turned by [`translate`] into the `postern` verb that does the job;
//! [`session`] runs that verb through the same handler as the command line,
//! so there is one implementation of each behaviour. [`format`] prints
//! objects as EMS's `Format-List` does.

mod cmdlets;
mod format;
mod lexer;
mod parser;
mod paths;
mod session;
mod translate;
mod value;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use session::Session;

/// `postern ems` arguments.
#[derive(Args)]
pub struct EmsArgs {
    /// EMS line(s) to run, e.g. 'Set-SendConnector Internet -DomainSecureEnabled:$true'
    /// (quote it: the shell would expand $true). Without a line or --file:
    /// a prompt on a terminal, else the script on standard input.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    line: Vec<String>,
    /// Run a runbook file (`-` for standard input).
    #[arg(long, conflicts_with = "line")]
    file: Option<PathBuf>,
    /// Print the `postern` verb each cmdlet runs, on standard error.
    #[arg(long, short)]
    verbose: bool,
}

/// Runs `postern ems` against the node in `node`.
pub async fn run(node: &Path, args: EmsArgs) -> anyhow::Result<()> {
    let mut session = Session::new(node, args.verbose);
    let text = match (&args.file, args.line.is_empty()) {
        (Some(file), _) if file.as_os_str() == "-" => read_stdin()?,
        (Some(file), _) => {
            std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?
        }
        (None, false) => args.line.join(" "),
        (None, true) if std::io::stdin().is_terminal() => return prompt(&mut session).await,
        (None, true) => read_stdin()?,
    };
    let script = Session::parse(&text)?;
    session.run(&script).await
}

fn read_stdin() -> anyhow::Result<String> {
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read the script from standard input")?;
    Ok(text)
}

/// The interactive prompt: one statement at a time, `>>` while a statement
/// is unfinished (an open quote or parenthesis, a trailing `|`), errors
/// printed and the session kept; `exit` or end of input leaves.
async fn prompt(session: &mut Session) -> anyhow::Result<()> {
    let stdin = std::io::stdin();
    let mut pending = String::new();
    loop {
        {
            let mut out = std::io::stdout().lock();
            write!(
                out,
                "{}",
                if pending.is_empty() {
                    "[PS] postern> "
                } else {
                    ">> "
                }
            )?;
            out.flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            crate::output::line(format_args!(""))?;
            return Ok(());
        }
        if pending.is_empty() && matches!(line.trim().to_ascii_lowercase().as_str(), "exit" | "quit") {
            return Ok(());
        }
        pending.push_str(&line);
        match lexer::lex(&pending) {
            Err(lexer::LexError::Incomplete { .. }) if !line.trim().is_empty() => continue,
            _ => {}
        }
        let text = std::mem::take(&mut pending);
        let result = match Session::parse(&text) {
            Ok(script) => session.run(&script).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            eprintln!("error: {}", crate::client::one_line(&e));
        }
    }
}
