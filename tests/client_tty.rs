//! `bin/ChatClient` on a pseudo-terminal, as a person at a terminal runs
//! it (SPEC §4): passwords are not echoed, the echo comes back on every way
//! out, and a message that arrives while a line is being typed gets a line
//! of its own with the prompt shown again after it.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Server, TestDb, client_bin, offline_user, unique_name};

const WAIT: Duration = Duration::from_secs(20);
const PW: &str = "s3cret-Tty-pw";

/// What the terminal showed: everything the client wrote and the terminal
/// echoed, as the master side of the pseudo-terminal reads it.
#[derive(Default)]
struct Screen {
    bytes: Mutex<Vec<u8>>,
    grew: Condvar,
}

/// The client running on a fresh pseudo-terminal, which is its controlling
/// terminal (so Ctrl-C is a SIGINT) and its standard input and output.
struct TtyClient {
    child: Child,
    master: File,
    /// Kept open by the test, so the terminal's settings can still be read
    /// once the client is gone.
    slave: OwnedFd,
    screen: Arc<Screen>,
    /// Bytes of the screen already matched by [`TtyClient::expect`].
    seen: usize,
}

impl TtyClient {
    fn start(addr: SocketAddr) -> TtyClient {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two fds into the ints we own; the other
        // arguments may be null.
        let rc =
            unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both fds were just opened and are owned by nobody else.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let stdin = slave.try_clone().expect("dup the slave");
        let stdout = slave.try_clone().expect("dup the slave");
        let mut command = Command::new(client_bin());
        command.args([addr.ip().to_string(), addr.port().to_string()]);
        command.stdin(Stdio::from(stdin)).stdout(Stdio::from(stdout)).stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() == -1 || libc::ioctl(0, libc::TIOCSCTTY, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", client_bin()));
        let screen = Arc::new(Screen::default());
        let sink = Arc::clone(&screen);
        let mut reading = master.try_clone().expect("dup the master");
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // Ends with an error (EIO) once no one holds the slave any more.
            while let Ok(n @ 1..) = reading.read(&mut buf) {
                sink.bytes.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
                sink.grew.notify_all();
            }
        });
        TtyClient { child, master, slave, screen, seen: 0 }
    }

    fn shown(&self) -> String {
        String::from_utf8_lossy(&self.screen.bytes.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }

    /// Waits until `needle` shows after what was matched so far; returns
    /// what showed from there up to and including it.
    fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let mut bytes = self.screen.bytes.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let after = String::from_utf8_lossy(&bytes[self.seen.min(bytes.len())..]).into_owned();
            if let Some(at) = after.find(needle) {
                let upto = &after[..at + needle.len()];
                self.seen += upto.len();
                return upto.to_string();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no {needle:?} on the terminal within {WAIT:?}; it shows:\n{after:?}");
            bytes = self.screen.grew.wait_timeout(bytes, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Types `keys` as they are (a line needs its "\n").
    fn type_keys(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).and_then(|()| self.master.flush()).expect("typing on the terminal");
    }

    /// Whether the terminal echoes what is typed, right now.
    fn echoes(&self) -> bool {
        // SAFETY: termios is a plain C struct; tcgetattr fills it from an
        // fd we hold.
        let mut settings: libc::termios = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut settings) };
        assert_eq!(rc, 0, "tcgetattr: {}", std::io::Error::last_os_error());
        settings.c_lflag & libc::ECHO != 0
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                other => panic!("the client did not exit within {WAIT:?} ({other:?}); it shows:\n{}", self.shown()),
            }
        }
    }

    /// Logs in as `id` through the menu, up to the command prompt.
    fn log_in(&mut self, id: i64) {
        self.expect("choice: ");
        self.type_keys("1\n");
        self.expect("userid: ");
        self.type_keys(&format!("{id}\n"));
        self.expect("userpassword: ");
        assert!(!self.echoes(), "the echo is on at the password prompt");
        self.type_keys(&format!("{PW}\n"));
        self.expect(&format!("current login user => id:{id} "));
        self.expect("show command list >>>");
        self.expect("\n> ");
    }
}

impl Drop for TtyClient {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn the_password_is_not_echoed_and_the_echo_comes_back() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (id, _) = offline_user(server.addr, "tp", PW);
    let mut c = TtyClient::start(server.addr);
    assert!(c.echoes(), "the terminal does not echo to begin with");

    // Registering: the name is echoed, the password not.
    c.expect("choice: ");
    c.type_keys("2\n");
    c.expect("username: ");
    let name = unique_name("tr");
    c.type_keys(&format!("{name}\n"));
    assert!(c.expect("userpassword: ").contains(&name), "the name typed was not echoed");
    assert!(!c.echoes(), "the echo is on at the password prompt");
    c.type_keys("other-Secret-pw\n");
    c.expect(&format!("name={name} register success"));
    assert!(c.echoes(), "the echo stayed off after the password");

    c.log_in(id);
    assert!(c.echoes(), "the echo stayed off after the password");
    // What is typed now is echoed again, after the prompt.
    c.type_keys("friends\n");
    assert_eq!(c.expect("friends\r\n"), "friends\r\n", "the command was not echoed after the prompt");
    c.expect("friend list");
    let shown = c.shown();
    assert!(!shown.contains(PW) && !shown.contains("other-Secret-pw"), "a password was echoed:\n{shown}");
    c.type_keys("quit\n");
    c.expect("bye");
    assert_eq!(c.wait_exit().code(), Some(0));
}

#[test]
fn the_echo_comes_back_on_ctrl_c_and_end_of_input_at_the_password_prompt() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (id, _) = offline_user(server.addr, "tc", PW);
    for (key, farewell, code) in [("\u{3}", "interrupted, bye", 130), ("\u{4}", "end of input, bye", 0)] {
        let mut c = TtyClient::start(server.addr);
        c.expect("choice: ");
        c.type_keys("1\n");
        c.expect("userid: ");
        c.type_keys(&format!("{id}\n"));
        c.expect("userpassword: ");
        assert!(!c.echoes(), "the echo is on at the password prompt");
        c.type_keys(key);
        c.expect(farewell);
        assert_eq!(c.wait_exit().code(), Some(code), "{key:?}; it shows:\n{}", c.shown());
        assert!(c.echoes(), "after {key:?} at the password prompt the terminal no longer echoes");
    }
}

#[test]
fn a_message_arriving_while_a_line_is_typed_gets_its_own_line_then_the_prompt() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (id, _) = offline_user(server.addr, "tm", PW);
    let mut other = Client::connect(server.addr);
    let (other_id, other_name) = other.register_login("to", PW);
    let mut c = TtyClient::start(server.addr);
    c.log_in(id);

    // Half a line typed, then a message comes in.
    c.type_keys(&format!("chat:{other_id}:half"));
    c.expect("half");
    other.send_chat(id, "hello there");
    let shown = c.expect("\r\n> ");
    let said = format!("[{other_id}]{other_name} said: hello there");
    // Right after the half line: a line break, the message on a line of its
    // own, then the prompt again.
    assert!(shown.starts_with("\r\n"), "the message did not start a line of its own: {shown:?}");
    let line = shown.trim_start_matches("\r\n").trim_end_matches("\r\n> ");
    assert!(line.ends_with(&said) && !line.contains('\n'), "{shown:?}");

    // The line typed before it is still there to be finished and sent.
    c.type_keys(" and whole\n");
    let got = other.recv_msgid(6);
    assert_eq!(got["msg"], "half and whole", "{got}");
    c.type_keys("quit\n");
    c.expect("bye");
    assert_eq!(c.wait_exit().code(), Some(0));
}
