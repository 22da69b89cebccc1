//! The `assets-host` command line; everything it does lives in the library.

use clap::Parser;

// Imports allocate and free millions of small strings on the host side;
// mimalloc does that markedly faster than the system allocator (measured in
// BENCHMARKS.md). The library leaves the choice to its embedders.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = assets_host::cli::Cli::parse();
    // A server logs each request and run; the one-shot commands only warnings.
    let default_level = match cli.command {
        assets_host::cli::Command::Serve(_) => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("ASSETS_HOST_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match assets_host::cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
