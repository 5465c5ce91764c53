//! The terminal side: printing whole lines from two threads, prompts, and
//! reading standard input line by line.
//!
//! Every line printed goes through [`crate::text::visible`]: text from the
//! network never reaches the terminal as a control character.
//!
//! Nothing here panics on I/O: `println!` would panic on a closed stdout
//! pipe, so every write goes through `write_all` and a failure ends the
//! client quietly instead.

use std::io::{self, BufRead, IsTerminal, Write};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::tty;
use crate::text;

/// Set by the first thread that ends the process, so that a second one
/// (the reader noticing the closed socket while the main thread says bye)
/// neither prints a second farewell nor calls `exit` concurrently.
static FINISHING: AtomicBool = AtomicBool::new(false);

/// The prompt on a terminal waiting for its answer. Lines printed meanwhile
/// (a message coming in while the user types) start on a line of their own
/// and are followed by the prompt again. Taken after the stdout lock.
static PROMPT: Mutex<Option<String>> = Mutex::new(None);

/// What the command loop shows on a terminal while it waits for a command.
pub const COMMAND_PROMPT: &str = "> ";

/// Prints one line (see [`lines`]).
pub fn line(text: &str) {
    lines(&[text]);
}

/// Prints lines while holding the stdout lock, so lines from the reader
/// thread and the main thread never interleave, then flushes, because
/// stdout may be a pipe that someone reads line by line.
pub fn lines<S: AsRef<str>>(lines: &[S]) {
    let mut out = io::stdout().lock();
    let prompt = PROMPT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let written = match prompt {
        // The cursor is after the prompt and what was typed so far, which
        // stays there to be completed; the prompt comes again below.
        Some(prompt) => out
            .write_all(b"\n")
            .and_then(|()| write_lines(&mut out, lines))
            .and_then(|()| out.write_all(prompt.as_bytes()))
            .and_then(|()| out.flush()),
        None => write_lines(&mut out, lines),
    };
    drop(out);
    if written.is_err() {
        // Nobody reads our output any more: nothing useful is left to do.
        end_process(None, 0);
    }
}

fn write_lines<S: AsRef<str>>(out: &mut impl Write, lines: &[S]) -> io::Result<()> {
    for line in lines {
        out.write_all(text::visible(line.as_ref()).as_bytes())?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Prints a farewell on stdout and ends the process with `code`.
pub fn finish(message: &str, code: i32) -> ! {
    end_process(Some((message, false)), code)
}

/// Prints an error on stderr and ends the process with `code`.
pub fn fail(message: &str, code: i32) -> ! {
    end_process(Some((message, true)), code)
}

fn end_process(message: Option<(&str, bool)>, code: i32) -> ! {
    if FINISHING.swap(true, Ordering::SeqCst) {
        // Another thread is already ending the process; let it.
        loop {
            std::thread::park();
        }
    }
    // The terminal is the user's again, whichever thread ends the client.
    tty::restore();
    // Write errors are moot now: we are leaving either way.
    match message {
        Some((text, false)) => {
            let mut out = io::stdout().lock();
            if PROMPT.lock().unwrap_or_else(|e| e.into_inner()).is_some() {
                let _ = out.write_all(b"\n");
            }
            let _ = write_lines(&mut out, &[text]);
        }
        Some((text, true)) => {
            let _ = write_lines(&mut io::stderr().lock(), &[text]);
        }
        None => {}
    }
    std::process::exit(code)
}

/// Standard input, read line by line.
pub struct Input {
    stdin: io::StdinLock<'static>,
    /// Whether a person types at a terminal. Prompts then stay on the line
    /// where the answer is typed (the terminal echoes it and its newline);
    /// fed from a pipe nothing echoes, so a prompt gets its own line and the
    /// output stays line-oriented for whoever reads it.
    interactive: bool,
}

impl Default for Input {
    fn default() -> Self {
        let stdin = io::stdin();
        let interactive = stdin.is_terminal();
        Input { stdin: stdin.lock(), interactive }
    }
}

impl Input {
    /// Shows `prompt` (e.g. `userid:`) and reads the answer; `None` at the
    /// end of input.
    pub fn prompt(&mut self, prompt: &str) -> Option<String> {
        if !self.interactive {
            line(prompt);
            return self.line();
        }
        self.answer(&format!("{prompt} "))
    }

    /// As [`Input::prompt`], without echoing the answer on a terminal.
    pub fn password(&mut self, prompt: &str) -> Option<String> {
        if !self.interactive {
            return self.prompt(prompt);
        }
        let quiet = tty::echo_off();
        let answer = self.answer(&format!("{prompt} "));
        drop(quiet);
        answer
    }

    /// The next command: on a terminal after showing [`COMMAND_PROMPT`]
    /// (the original showed none; fed from a pipe, neither does this).
    pub fn command(&mut self) -> Option<String> {
        if !self.interactive {
            return self.line();
        }
        self.answer(COMMAND_PROMPT)
    }

    /// Shows `prompt` on the terminal, then reads the line typed after it.
    fn answer(&mut self, prompt: &str) -> Option<String> {
        let mut out = io::stdout().lock();
        let shown = out.write_all(prompt.as_bytes()).and_then(|()| out.flush());
        *PROMPT.lock().unwrap_or_else(|e| e.into_inner()) = Some(prompt.to_string());
        drop(out);
        if shown.is_err() {
            end_process(None, 0);
        }
        let answer = self.line();
        *PROMPT.lock().unwrap_or_else(|e| e.into_inner()) = None;
        answer
    }

    /// The next line without its line ending; `None` at the end of input
    /// (a read error counts as the end too: there is no more input to get).
    /// Bytes that are not UTF-8 are replaced rather than refused.
    pub fn line(&mut self) -> Option<String> {
        let mut buf = Vec::new();
        match self.stdin.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(String::from_utf8_lossy(strip_line_end(&buf)).into_owned()),
        }
    }
}

/// `buf` without its trailing `\n` or `\r\n`.
fn strip_line_end(buf: &[u8]) -> &[u8] {
    let buf = buf.strip_suffix(b"\n").unwrap_or(buf);
    buf.strip_suffix(b"\r").unwrap_or(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_unix_and_dos_line_ends_only() {
        assert_eq!(strip_line_end(b"abc\n"), b"abc");
        assert_eq!(strip_line_end(b"abc\r\n"), b"abc");
        assert_eq!(strip_line_end(b"abc"), b"abc");
        assert_eq!(strip_line_end(b" a b \n"), b" a b ");
    }

    #[test]
    fn writes_each_line_with_newline() {
        let mut out = Vec::new();
        write_lines(&mut out, &["a", "群消息"]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "a\n群消息\n");
    }

    #[test]
    fn lines_never_carry_control_characters() {
        let mut out = Vec::new();
        write_lines(&mut out, &["\u{1b}]0;title\u{7}x\ny\u{202e}"]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "\\x1b]0;title\\x07x\\x0ay\\u{202e}\n");
    }
}
