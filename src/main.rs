//! The `ringmq` command: read the flags and the `--config` file, start the
//! shards, reload on SIGHUP (the config file's live keys, the TLS material,
//! the password and ACL files), stop cleanly on SIGINT or SIGTERM.

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use ringmq::config_file::{self, LoadError, Loaded, LIVE_KEYS};
use ringmq::Broker;
use tracing::{info, warn};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, reload, EnvFilter, Registry};

/// The --log filter, with async-nats (--cluster-nats) at `warn` unless
/// the filter names it: under overload it logs each slow-consumer event
/// at info, which the broker counts and rate-limits itself.
fn log_directives(log: &str) -> String {
    if log.contains("async_nats") {
        log.to_string()
    } else {
        format!("{log},async_nats=warn")
    }
}

/// Swaps the log filter of the running process (SIGHUP).
type LogFilter = reload::Handle<EnvFilter, Registry>;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "passwd") {
        return ringmq::passwd::main(args.into_iter().skip(2));
    }
    // Regenerates ringmq.example.toml. Not a flag of `Config`, so it is no
    // config key and not in --help: a maintainer's tool.
    if args.len() == 2 && args[1] == "--print-example-config" {
        print!("{}", config_file::example());
        return ExitCode::SUCCESS;
    }
    let loaded = match config_file::load(args.clone()) {
        Ok(l) => l,
        Err(LoadError::Args(e)) => e.exit(),
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::from(2);
        }
    };
    if loaded.config.print_config {
        print!("{}", config_file::print(&loaded));
        return ExitCode::SUCCESS;
    }
    let filter = match EnvFilter::try_new(log_directives(&loaded.config.log)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringmq: invalid --log filter {:?}: {e}", loaded.config.log);
            return ExitCode::from(2);
        }
    };
    let (filter, log_filter) = reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        // Colour only on a terminal: a log file or journald gets plain text.
        .with(
            fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())),
        )
        .init();
    // The panic goes to the log too before the process aborts (release
    // builds abort on panic, see Cargo.toml).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(%info, "panic: aborting the process");
        default_hook(info);
    }));

    // Block the stop signals before any shard thread exists, so every
    // thread inherits the mask and only `sigwait` below receives them.
    let signals = stop_signals();
    // SAFETY: plain libc call on a sigset we own; affects this thread only.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &signals, std::ptr::null_mut()) };

    let broker = match Broker::start(loaded.config.clone()) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut running = loaded;
    let mut signal = 0;
    loop {
        // SAFETY: sigwait reads the set and writes one int we own.
        unsafe { libc::sigwait(&signals, &mut signal) };
        if signal != libc::SIGHUP {
            break;
        }
        if let Some(path) = running.config.config.clone() {
            reload_config_file(&broker, &args, &path, &mut running, &log_filter);
        }
        // SIGHUP: new TLS material for new handshakes; after a failure the
        // old material stays.
        info!("SIGHUP: reloading the TLS material and the password file");
        // The broker logs the outcome (and why, when it fails).
        let _ = broker.reload();
    }
    info!(signal, "stop signal received: shutting down");
    broker.shutdown();
    info!("stopped");
    ExitCode::SUCCESS
}

/// Reads the config file again (the command line still wins), applies the
/// [`LIVE_KEYS`] that changed and logs which changed keys need a restart.
/// A file that does not load changes nothing.
fn reload_config_file(
    broker: &Broker,
    args: &[OsString],
    path: &Path,
    running: &mut Loaded,
    log_filter: &LogFilter,
) {
    let new = match config_file::load(args.iter().cloned()) {
        Ok(new) => new,
        Err(e) => {
            warn!(
                "SIGHUP: config file not reloaded, the running configuration stays: {}",
                e.to_string().trim()
            );
            return;
        }
    };
    let changed = running.changed_keys(&new);
    let (live, restart): (Vec<&str>, Vec<&str>) = changed
        .iter()
        .map(String::as_str)
        .partition(|k| LIVE_KEYS.contains(k));
    if live.contains(&"log") {
        // `load` checked the filter already; a failure here keeps the old one.
        let applied = EnvFilter::try_new(log_directives(&new.config.log))
            .map_err(|e| e.to_string())
            .and_then(|f| log_filter.reload(f).map_err(|e| e.to_string()));
        if let Err(e) = applied {
            warn!("SIGHUP: log filter {:?} not applied: {e}", new.config.log);
            return;
        }
    }
    running.adopt_live(&new);
    if live.iter().any(|k| *k != "log") {
        broker.apply_live(&running.config);
    }
    info!(
        "SIGHUP: config file {} reloaded; applied: {} (the TLS, password and ACL files are read again)",
        path.display(),
        if live.is_empty() { "no change".to_string() } else { live.join(", ") }
    );
    if !restart.is_empty() {
        warn!(
            "SIGHUP: config file {}: changed but needs a restart (the running values stay): {}",
            path.display(),
            restart.join(", ")
        );
    }
}

fn stop_signals() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise the set we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}
