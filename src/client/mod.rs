//! The menu-driven terminal client, `bin/ChatClient IP PORT` (SPEC §4).
//!
//! It speaks the original C++ ChatServer's wire protocol, shows the
//! original's menus, and reads standard input line by line so that it works
//! typed by a person as well as fed from a pipe or a file.
//!
//! - [`args`]: the command line;
//! - [`wire`]: framing (compact JSON + NUL) and message ids;
//! - [`command`]: parsing the chat commands typed after login;
//! - [`format`]: how every message kind is printed (pure functions);
//! - [`term`]: line-atomic printing, prompts and reading standard input;
//! - [`session`]: the connection, the reader thread and the menu loops.

pub mod args;
pub mod command;
pub mod format;
pub mod session;
pub mod term;
pub mod wire;

/// Runs the client with the command-line arguments (without the program
/// name) and ends the process: it never returns.
pub fn run(args: &[String]) -> ! {
    let target = match args::parse_args(args) {
        Ok(target) => target,
        Err(what) => term::fail(&format!("{} ({what})", args::USAGE), 2),
    };
    session::run(&target)
}
