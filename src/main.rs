use std::path::{Path, PathBuf};
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
    /// Reload the running Ringway: through the control socket when `[admin] socket` is set
    /// (prints the new generation, or the config's problems and exits 1); otherwise sends
    /// SIGHUP to the process named in `[runtime] pid_file`.
    Reload,
    /// Replace the running Ringway with this binary without dropping connections: sends it
    /// SIGUSR2 (it starts the new binary, hands over its sockets, then drains).
    Upgrade,
    /// Talk to the running Ringway through its control socket (`[admin] socket`).
    Ctl {
        #[command(subcommand)]
        action: Ctl,
    },
    /// Print the man page (roff) to stdout.
    #[command(hide = true)]
    Man,
}

#[derive(Subcommand)]
enum Ctl {
    /// Every backend and server: source, address, state, weight, health, connections.
    Backends,
    /// Put a server back into balancing.
    Ready { backend: String, server: String },
    /// Drain a server: no new connections; its WebSockets are closed gradually.
    Drain {
        backend: String,
        server: String,
        /// Spread the closes over this long (like "60s"; default: the backend's drain_spread).
        #[arg(long)]
        spread: Option<String>,
    },
    /// Maintenance: no new connections, open ones kept.
    Maint { backend: String, server: String },
    /// Set a server's weight.
    Weight {
        backend: String,
        server: String,
        weight: u32,
    },
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
    let config = match ringway::config::load(&cli.config) {
        Ok(c) => {
            // Warnings (the config is valid) are shown by `check` and at start; a reload
            // (SIGHUP) logs them.
            let quiet = matches!(
                cli.command,
                Some(Command::Reload | Command::Upgrade | Command::Ctl { .. })
            );
            for w in c.warnings.iter().filter(|_| !quiet) {
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
    let socket = config.admin.as_ref().and_then(|a| a.socket.clone());
    match (&cli.command, &socket) {
        (Some(Command::Ctl { action }), Some(socket)) => return ctl(socket, action),
        (Some(Command::Ctl { .. }), None) => {
            eprintln!("ringway ctl: {file} has no [admin] socket");
            return ExitCode::from(1);
        }
        (Some(Command::Reload), Some(socket)) => return reload(socket),
        _ => {}
    }
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
        // Server names that do not resolve now: not fatal (the backend starts with no servers
        // and follows the name), a warning on stderr like the loader's.
        for ((line, col), name, error) in ringway::runtime::unresolved_names(&config) {
            eprintln!("{file}:{line}:{col}: warning: server name {name} does not resolve ({error}); its backend starts with no servers");
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

/// One control socket request; prints the answer (JSON pretty-printed) and exits 0 for a 2xx,
/// 1 otherwise (with the answer's `error` on stderr).
fn ctl(socket: &Path, action: &Ctl) -> ExitCode {
    use ringway::runtime::control::ctl::encode_segment;
    let server_path = |b: &str, s: &str| {
        format!(
            "/api/backends/{}/servers/{}",
            encode_segment(b),
            encode_segment(s)
        )
    };
    let (method, target, body) = match action {
        Ctl::Backends => ("GET", "/api/backends".to_string(), None),
        Ctl::Ready { backend, server } => (
            "POST",
            server_path(backend, server),
            Some(serde_json::json!({ "state": "ready" })),
        ),
        Ctl::Drain {
            backend,
            server,
            spread,
        } => {
            let mut body = serde_json::json!({ "state": "drain" });
            if let Some(spread) = spread {
                body["spread"] = spread.as_str().into();
            }
            ("POST", server_path(backend, server), Some(body))
        }
        Ctl::Maint { backend, server } => (
            "POST",
            server_path(backend, server),
            Some(serde_json::json!({ "state": "maint" })),
        ),
        Ctl::Weight {
            backend,
            server,
            weight,
        } => (
            "POST",
            server_path(backend, server),
            Some(serde_json::json!({ "weight": weight })),
        ),
    };
    let body = body.map(|b| b.to_string());
    match ringway::runtime::control::ctl::request(
        socket,
        method,
        &target,
        body.as_deref().map(str::as_bytes),
    ) {
        Ok((status, answer)) => {
            let json = serde_json::from_slice::<serde_json::Value>(&answer).ok();
            if (200..300).contains(&status) {
                match json.and_then(|j| serde_json::to_string_pretty(&j).ok()) {
                    Some(text) => println!("{text}"),
                    None => println!("{}", String::from_utf8_lossy(&answer)),
                }
                ExitCode::SUCCESS
            } else {
                let message = json
                    .as_ref()
                    .and_then(|j| j.get("error"))
                    .and_then(|e| e.as_str())
                    .map_or_else(
                        || String::from_utf8_lossy(&answer).into_owned(),
                        str::to_string,
                    );
                eprintln!("ringway ctl: {status}: {message}");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("ringway ctl: {e}");
            ExitCode::from(1)
        }
    }
}

/// `ringway reload` through the control socket: prints `{"generation": N}` (exit 0), or each
/// problem as FILE:LINE:COL: message on stderr (exit 1).
fn reload(socket: &Path) -> ExitCode {
    match ringway::runtime::control::ctl::request(socket, "POST", "/api/reload", None) {
        Ok((status, answer)) => {
            let json = serde_json::from_slice::<serde_json::Value>(&answer).unwrap_or_default();
            if status == 200 {
                let text = serde_json::to_string_pretty(&json).unwrap_or_default();
                println!("{text}");
                return ExitCode::SUCCESS;
            }
            match json.get("errors").and_then(|e| e.as_array()) {
                Some(errors) => {
                    for e in errors {
                        eprintln!("{}", e.as_str().unwrap_or_default());
                    }
                    eprintln!("ringway reload: refused; the running config keeps serving");
                }
                None => eprintln!(
                    "ringway reload: {status}: {}",
                    json.get("error").and_then(|e| e.as_str()).map_or_else(
                        || String::from_utf8_lossy(&answer).into_owned(),
                        str::to_string
                    )
                ),
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("ringway reload: {e}");
            ExitCode::from(1)
        }
    }
}
