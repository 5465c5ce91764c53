//! ChatBench: a load generator that speaks the chat protocol (SPEC §2),
//! and the raw relay it measures the ChatServer against.
//!
//! - [`args`]: the command line;
//! - [`setup`]: untimed registration, logins and groups (blocking sockets);
//! - [`engine`]: the timed part's epoll loop and the [`engine::Workload`] trait;
//! - `modes`: pingpong, flood, fanout, login, idle and failover;
//! - [`relay`]: the baseline server, built on `net` with no JSON or storage;
//! - [`wire`], [`hist`], [`procfs`], [`report`], [`target`]: frames,
//!   percentiles, `/proc`, output, and what is measured.

pub mod args;
pub mod engine;
pub mod hist;
mod modes;
pub mod procfs;
pub mod relay;
pub mod report;
pub mod setup;
pub mod target;
pub mod wire;

use std::sync::atomic::Ordering;

use args::Command;

/// Runs a parsed command line; the error is what to tell the user.
pub fn run(command: Command) -> Result<(), String> {
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
