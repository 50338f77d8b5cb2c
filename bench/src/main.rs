//! `postern-bench`: arguments in, a load run, JSON on stdout, a human line
//! on stderr. Exit 0 when every message was delivered, 3 when some were not
//! seen at the sink before the timeout, 1 on any other failure.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use postern_bench::load::{self, LoadConfig};

#[derive(Parser)]
#[command(name = "postern-bench", about = "Load generator for a mail relay chain")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send N messages of S bytes over C concurrent STARTTLS sessions.
    Load(LoadArgs),
}

#[derive(clap::Args)]
struct LoadArgs {
    /// SMTP server to submit to, HOST:PORT.
    #[arg(long)]
    target: String,
    #[arg(long, default_value_t = 1000)]
    messages: u64,
    /// Message size in bytes, headers included; K/M suffixes are 1024-based.
    #[arg(long, default_value = "1K", value_parser = parse_size)]
    size: usize,
    #[arg(long, default_value_t = 10)]
    concurrency: usize,
    /// Client certificate (PEM, leaf first).
    #[arg(long)]
    cert: PathBuf,
    /// Client private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// CA the server's certificate must chain to (PEM).
    #[arg(long)]
    ca: PathBuf,
    /// Name sent as SNI and verified in the server's certificate.
    #[arg(long)]
    tls_name: String,
    #[arg(long, default_value = "a@bench.test")]
    from: String,
    #[arg(long, default_value = "b@sink.test")]
    to: String,
    #[arg(long, default_value = "bench.test")]
    ehlo: String,
    /// The sink's Maildir (holding new/ and cur/) to wait for deliveries in.
    #[arg(long)]
    maildir: Option<PathBuf>,
    /// Seconds to wait for the sink after the last message was accepted.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let (digits, unit) = match s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => s.split_at(at),
        None => (s, ""),
    };
    let n: usize = digits.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1024,
        "M" | "MB" | "MIB" => 1024 * 1024,
        _ => return Err(format!("bad size unit in {s:?}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} too large"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("postern-bench: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let Command::Load(a) = cli.command;
    let cfg = LoadConfig {
        target: a.target,
        messages: a.messages,
        size: a.size,
        concurrency: a.concurrency,
        cert: a.cert,
        key: a.key,
        ca: a.ca,
        tls_name: a.tls_name,
        from: a.from,
        to: a.to,
        ehlo: a.ehlo,
        maildir: a.maildir,
        timeout: Duration::from_secs(a.timeout),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let report = runtime.block_on(load::run(&cfg))?;
    println!("{}", report.to_json());
    eprintln!("{}", report.human());
    if report.complete() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "postern-bench: only {} of {} messages reached the Maildir within {} s",
            report.delivered.unwrap_or(0),
            report.messages,
            a.timeout
        );
        Ok(ExitCode::from(3))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1K"), Ok(1024));
        assert_eq!(parse_size("50k"), Ok(51_200));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("1X").is_err());
        assert!(parse_size("").is_err());
    }
}
