//! The server's log: one line per event on stderr, each starting with an
//! RFC 3339 UTC timestamp and a level, e.g.
//! `2026-11-26T10:00:00.123Z WARN MySQL unavailable (...)`.
//!
//! `info!`, `warn!` and `error!` format like `format!`; [`fatal`] writes the
//! one line that ends a start. Events an attacker can repeat at will go
//! through an [`Every`] so they cost a line per period, not one each.

mod every;
mod time;

use std::fmt::{self, Write as _};
use std::io::Write as _;

pub use every::{Every, also};
pub use time::rfc3339;

/// How much a line matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Normal operation: start, stop, recoveries, the figures line.
    Info,
    /// Something is wrong but the server copes: outages, clients cut off,
    /// failed logins.
    Warn,
    /// Something was lost or could not be done.
    Error,
    /// The server cannot start or go on, and exits.
    Fatal,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
            Level::Fatal => "FATAL",
        }
    }
}

/// Writes one line. Line breaks and other control characters in the
/// message are escaped, so text from the network or from MySQL can never
/// start a line of its own (a forged entry).
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    let mut line = format!("{} {} ", rfc3339(std::time::SystemTime::now()), level.as_str());
    let message = args.to_string();
    for c in message.chars() {
        if c.is_control() {
            let _ = write!(line, "\\u{{{:x}}}", u32::from(c));
        } else {
            line.push(c);
        }
    }
    line.push('\n');
    // One write per line, so lines of different threads never interleave.
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The line that ends a start that cannot go on.
pub fn fatal(message: &str) {
    write(Level::Fatal, format_args!("{message}"));
}

/// `info!("listening on {addr}")`: a line at level INFO.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($arg)*)) };
}

/// `warn!(...)`: a line at level WARN.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($arg)*)) };
}

/// `error!(...)`: a line at level ERROR.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($arg)*)) };
}
