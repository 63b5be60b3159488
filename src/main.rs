//! The `esalert` binary: parse arguments, start logging, run the command.

use std::process::ExitCode;

use clap::Parser;
use esalert::cli::{Cli, execute};

/// Counts the bytes each thread holds, so that a script or template that
/// outgrows its memory budget is stopped with an error instead of taking
/// the process down (see `esalert::alloc_budget`).
#[global_allocator]
static ALLOC: esalert::alloc_budget::CountingAlloc = esalert::alloc_budget::CountingAlloc;

fn main() -> ExitCode {
    esalert::install_crypto_provider();
    let cli = Cli::parse();
    let log_dir = cli.command.writes_log().then(|| cli.global.log_dir.clone());
    // The guard flushes alerts.log when main returns; keep it to the end.
    let _guard = match esalert::log::init(log_dir.as_deref(), cli.global.log_keep) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("esalert: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("esalert: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result: anyhow::Result<u8> = rt.block_on(async { Ok(execute(cli).await?) });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let e = said_once(&e);
            if log_dir.is_some() {
                // Goes to alerts.log and, through the same layer, to stderr.
                tracing::error!(event = "fatal", error = %e);
            } else {
                eprintln!("esalert: {e}");
            }
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, each said once. esalert's errors already put
/// their cause in their own message (`search failed: connection refused…`),
/// so anyhow's `{:#}` would print it twice; a cause is appended only when
/// the text so far doesn't hold it.
fn said_once(e: &anyhow::Error) -> String {
    let mut out = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !out.contains(&c) {
            out.push_str(": ");
            out.push_str(&c);
        }
    }
    out
}
