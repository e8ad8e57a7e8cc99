//! The `ringmq` command: parse flags, start the shards, reload TLS material
//! and the password file on SIGHUP, stop cleanly on SIGINT or SIGTERM.

use std::process::ExitCode;

use clap::Parser;
use ringmq::{Broker, Config};
use tracing::info;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|a| a == "passwd") {
        return ringmq::passwd::main(std::env::args_os().skip(2));
    }
    let config = Config::parse();
    if let Err(e) = config.validate() {
        eprintln!("ringmq: {e}");
        return ExitCode::from(2);
    }
    let filter = match EnvFilter::try_new(&config.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringmq: invalid --log filter {:?}: {e}", config.log);
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
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

    let broker = match Broker::start(config) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("ringmq: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signal = 0;
    loop {
        // SAFETY: sigwait reads the set and writes one int we own.
        unsafe { libc::sigwait(&signals, &mut signal) };
        if signal != libc::SIGHUP {
            break;
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
