//! `ChatBench MODE [options]`: a load generator that speaks the chat protocol (SPEC §2),
//! and the raw relay it measures the ChatServer against.
//!
//! - [`args`]: the command line;
//! - [`setup`]: untimed registration, logins and groups (blocking sockets);
//! - [`engine`]: the timed part's epoll loop and the [`engine::Workload`] trait;
//! - `modes`: pingpong, flood, fanout, login, idle and failover;
//! - [`relay`]: the baseline server, built on `net` with no JSON or storage;
//! - [`wire`], [`hist`], [`procfs`], [`report`], [`target`]: frames,
//!   percentiles, `/proc`, output, and what is measured.

mod args;
mod engine;
mod hist;
mod modes;
mod procfs;
mod relay;
mod report;
mod setup;
mod target;
mod wire;

use std::process::ExitCode;
use std::sync::atomic::Ordering;

use args::Command;

/// Runs a parsed command line; the error is what to tell the user.
fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Relay { addr, threads, spawned } => relay::serve(addr, threads, spawned),
        Command::Bench(options) => {
            // Ctrl-C ends the timed part early; the relay child and the
            // connections are still cleaned up on the way out.
            let _ = ctrlc::set_handler(|| engine::INTERRUPTED.store(true, Ordering::Relaxed));
            modes::run(&options)
        }
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&argv) {
        Ok(command) => command,
        Err(why) if why.is_empty() => {
            eprintln!("{}", args::USAGE);
            return ExitCode::from(2);
        }
        Err(why) => {
            eprintln!("ChatBench: {why} (ChatBench --help shows the usage)");
            return ExitCode::from(2);
        }
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("ChatBench: {why}");
            ExitCode::FAILURE
        }
    }
}
