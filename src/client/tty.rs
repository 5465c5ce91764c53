//! The terminal's echo, off while a password is typed (termios through
//! `libc`) and always put back: when the password has been read, and when
//! the client ends in the middle of it (end of input, Ctrl-C, the server
//! gone), since `process::exit` runs no destructors.

use std::sync::Mutex;

/// The settings standard input had before the echo went off; Some only
/// while it is off.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Echo is off while this lives.
pub struct EchoOff(());

impl Drop for EchoOff {
    fn drop(&mut self) {
        restore();
    }
}

/// Turns the echo of standard input off, keeping the newline's, so the
/// line typed next is not shown; None when it is no terminal (or refuses).
pub fn echo_off() -> Option<EchoOff> {
    // SAFETY: termios is a plain C struct, for which all zeroes is valid.
    let mut settings: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is ours to ask about; `settings` is a valid termios.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut settings) } != 0 {
        return None;
    }
    let mut quiet = settings;
    quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
    quiet.c_lflag |= libc::ECHONL;
    let mut saved = SAVED.lock().unwrap_or_else(|e| e.into_inner());
    // TCSANOW rather than TCSAFLUSH: what was typed ahead (a pasted
    // password) is kept.
    // SAFETY: as above; `quiet` is a valid termios.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
        return None;
    }
    saved.get_or_insert(settings);
    Some(EchoOff(()))
}

/// Puts standard input's settings back if the echo is off; a no-op else.
pub fn restore() {
    if let Some(settings) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
        // Nothing more can be done if the terminal refuses.
        // SAFETY: `settings` came from tcgetattr on the same fd.
        let _ = unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &settings) };
    }
}
