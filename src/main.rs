use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Ringway: a thread-per-core io_uring reverse proxy for WebSockets and HTTP/1.1.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file.
    #[arg(long, short, global = true, default_value = "config/ringway.toml")]
    config: PathBuf,
    /// Log level or filter (error, warn, info, debug, trace; or an EnvFilter such as
    /// "ringway=debug"). Default: $RUST_LOG, else info.
    #[arg(long, global = true)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the configuration: print every problem as FILE:LINE:COL: message.
    Check,
    /// Reload the running Ringway (found through `[runtime] pid_file`): sends it SIGHUP.
    Reload,
    /// Replace the running Ringway with this binary without dropping connections: sends it
    /// SIGUSR2 (it starts the new binary, hands over its sockets, then drains).
    Upgrade,
    /// Print the man page (roff) to stdout.
    #[command(hide = true)]
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Man) = cli.command {
        use clap::CommandFactory;
        let page = clap_mangen::Man::new(Cli::command());
        return match page.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ringway man: {e}");
                ExitCode::from(1)
            }
        };
    }
    let filter = cli
        .log_level
        .as_deref()
        .map(EnvFilter::try_new)
        .unwrap_or_else(|| {
            EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info"))
        });
    let filter = match filter {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringway: bad log level: {e}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let file = cli.config.display().to_string();
    let config = match ringway::config::load_with_warnings(&cli.config) {
        Ok((c, warnings)) => {
            // Shown by `check` and at start; a reload (SIGHUP) logs them.
            let signalling = matches!(cli.command, Some(Command::Reload | Command::Upgrade));
            for w in warnings.iter().filter(|_| !signalling) {
                eprintln!("{file}:{}:{}: warning: {}", w.line, w.col, w.message);
            }
            c
        }
        Err(problems) => {
            for p in &problems {
                eprintln!("{file}:{}:{}: {}", p.line, p.col, p.message);
            }
            eprintln!("{file}: {} problem(s)", problems.len());
            return ExitCode::from(1);
        }
    };
    let signal = match cli.command {
        Some(Command::Reload) => Some(("reload", libc::SIGHUP)),
        Some(Command::Upgrade) => Some(("upgrade", libc::SIGUSR2)),
        _ => None,
    };
    if let Some((what, sig)) = signal {
        return match ringway::runtime::send_signal(&config, sig) {
            Ok(pid) => {
                println!("{file}: ok; {what} signalled to pid {pid}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("ringway {what}: {e}");
                ExitCode::from(1)
            }
        };
    }
    if let Some(Command::Check) = cli.command {
        // What a start would refuse beyond the file itself: certificates and keys, CA files,
        // the access log, what OCSP stapling needs.
        if let Err(e) = ringway::runtime::preflight::files(&config) {
            eprintln!("{file}: {e}");
            eprintln!("{file}: 1 problem(s)");
            return ExitCode::from(1);
        }
        let routes: usize = config
            .vhosts
            .iter()
            .map(|v| v.websockets.len() + v.contexts.len())
            .sum();
        println!(
            "{file}: ok ({} cores, {} listeners, {} backends, {} vhosts, {routes} routes)",
            config.runtime.cores,
            config.listeners.len(),
            config.backends.iter().filter(|b| !b.implicit).count(),
            config.vhosts.len()
        );
        return ExitCode::SUCCESS;
    }
    // Before any executor: without io_uring nothing can run; say why in one line.
    if let Err(e) = ringway::runtime::preflight::io_uring() {
        eprintln!("{e}");
        return ExitCode::from(1);
    }
    match ringway::runtime::run(config, cli.config.clone()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(1)
        }
    }
}
