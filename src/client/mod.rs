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
//! - [`roster`]: the friends and groups that `friends` and `groups` show;
//! - [`term`]: line-atomic printing (controls made visible), prompts and
//!   reading standard input;
//! - [`tty`]: the terminal's echo, off while a password is typed;
//! - [`session`]: the connection, the reader thread and the menu loops.

pub mod args;
pub mod command;
pub mod format;
pub mod roster;
pub mod session;
pub mod term;
pub mod tty;
pub mod wire;

/// Runs the client with the command-line arguments (without the program
/// name) and ends the process: it never returns.
pub fn run(args: &[String]) -> ! {
    let target = match args::parse_args(args) {
        Ok(target) => target,
        Err(what) => term::fail(&format!("{} ({what})", args::USAGE), 2),
    };
    // Ctrl-C (and SIGTERM, SIGHUP) end the client the way quitting does,
    // which gives the terminal its echo back. Without the handler the
    // default action still ends the client.
    let _ = ctrlc::set_handler(|| term::finish("interrupted, bye", 130));
    session::run(&target)
}
