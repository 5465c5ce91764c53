//! `bin/ChatClient` as a test drives it: a child process with piped
//! standard input and output, whose lines are waited for with a timeout.
//!
//! Included with `#[path = "support/client_proc.rs"] mod client_proc;`
//! after `mod common;`; it uses the shared harness through `crate::common`.
#![allow(dead_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{client_bin, is_stamp_shaped, read_lines};

/// How long to wait for one expected line of client output.
pub const WAIT: Duration = Duration::from_secs(20);

/// The closing line of the login box, after which offline messages follow.
pub const BOX_END: &str = "======================================================";

/// Lines a client printed, and a condition variable to wait for more.
#[derive(Default)]
pub struct Output {
    pub lines: Mutex<Vec<String>>,
    /// Everything printed, byte for byte (but lossily decoded), line ends
    /// and all.
    pub raw: Mutex<String>,
    pub grew: Condvar,
}

/// A running `ChatClient` with piped standard input and output. Its stdout
/// is read line by line on a thread; tests wait for lines with a timeout.
pub struct ClientProc {
    pub child: Child,
    stdin: Option<ChildStdin>,
    pub output: Arc<Output>,
    /// Lines before this index were already matched by [`ClientProc::expect`].
    cursor: usize,
    label: &'static str,
}

impl ClientProc {
    pub fn start(label: &'static str, args: &[&str]) -> ClientProc {
        let mut child = Command::new(client_bin())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", client_bin()));
        let output = Arc::new(Output::default());
        let stdout = child.stdout.take().expect("stdout is piped");
        let sink = Arc::clone(&output);
        read_lines(stdout, move |text| {
            sink.raw.lock().unwrap_or_else(|e| e.into_inner()).push_str(text);
            sink.lines.lock().unwrap_or_else(|e| e.into_inner()).push(text.trim_end().to_string());
            sink.grew.notify_all();
        });
        let stdin = child.stdin.take();
        ClientProc { child, stdin, output, cursor: 0, label }
    }

    pub fn connect(label: &'static str, addr: SocketAddr) -> ClientProc {
        let ip = addr.ip().to_string();
        let port = addr.port().to_string();
        let mut client = ClientProc::start(label, &[&ip, &port]);
        client.expect_menu();
        client
    }

    /// Types one line.
    pub fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: typing {line:?} failed: {e}", self.label));
    }

    /// Ends standard input, as Ctrl-D or the end of a file would.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn raw_output(&self) -> String {
        self.output.raw.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn transcript(&self) -> String {
        self.output.lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// Waits for the first line at or after the cursor that satisfies
    /// `wanted`, moves the cursor past it and returns it.
    pub fn expect_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        let mut lines = self.output.lines.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(offset) = lines[self.cursor..].iter().position(|l| wanted(l)) {
                let index = self.cursor + offset;
                self.cursor = index + 1;
                return lines[index].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!("{}: no line {what} within {WAIT:?}; output so far:\n{}", self.label, lines.join("\n"));
            }
            lines = self.output.grew.wait_timeout(lines, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Where the cursor is, to come back to with [`ClientProc::rewind`]
    /// when lines may come in either order.
    pub fn mark(&self) -> usize {
        self.cursor
    }

    pub fn rewind(&mut self, to: usize) {
        self.cursor = to;
    }

    /// The next line (from the cursor on) that contains `needle`.
    pub fn expect(&mut self, needle: &str) -> String {
        self.expect_where(&format!("containing {needle:?}"), |l| l.contains(needle))
    }

    /// The next line that is exactly `line`.
    pub fn expect_exact(&mut self, line: &str) -> String {
        self.expect_where(&format!("equal to {line:?}"), |l| l == line)
    }

    /// The line right at the cursor, once it is printed.
    pub fn next_line(&mut self) -> String {
        self.expect_where("at all", |_| true)
    }

    /// The whole first menu, ending with its prompt.
    pub fn expect_menu(&mut self) {
        self.expect_exact("========================");
        for line in ["1. login", "2. register", "3. quit", "========================", "choice:"] {
            assert_eq!(self.next_line(), line, "{}: menu", self.label);
        }
    }

    /// Registers through the menu and returns the id the client printed.
    pub fn register(&mut self, name: &str, password: &str) -> i64 {
        self.type_line("2");
        self.expect_exact("username:");
        self.type_line(name);
        self.expect_exact("userpassword:");
        self.type_line(password);
        let prefix = format!("name={name} register success, userid is ");
        let line = self.expect(&prefix);
        let id = line
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(", do not forget it!"))
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("{}: unexpected register line {line:?}", self.label));
        self.expect_menu();
        id
    }

    /// Logs in through the menu and waits for the login box to open.
    pub fn login(&mut self, id: i64, password: &str) {
        self.type_line("1");
        self.expect_exact("userid:");
        self.type_line(&id.to_string());
        self.expect_exact("userpassword:");
        self.type_line(password);
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                Ok(None) => panic!("{}: still running after {WAIT:?}; output:\n{}", self.label, self.transcript()),
                Err(e) => panic!("{}: try_wait failed: {e}", self.label),
            }
        }
    }
}

impl Drop for ClientProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS [<id>]<name> said: <msg>` with any time stamp.
pub fn is_chat_line(line: &str, prefix: &str, tail: &str) -> bool {
    let Some(rest) = line.strip_prefix(prefix) else {
        return false;
    };
    is_stamp_shaped(rest.get(..19).unwrap_or("")) && rest[19..] == format!(" {tail}")
}
