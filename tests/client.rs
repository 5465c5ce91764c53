//! `bin/ChatClient` driven through its standard input against a real
//! `ChatServer` (SPEC §4): what a person would type, and what they would see.

mod common;

#[path = "support/cluster.rs"]
mod cluster_support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use cluster_support::{Nginx, RedisProc, online_server_of, server_id_prefix, two_servers};
use common::{Server, TestDb, client_bin, is_stamp_shaped, read_lines, unique_name, user_on};

/// How long to wait for one expected line of client output.
const WAIT: Duration = Duration::from_secs(20);

/// The closing line of the login box, after which offline messages follow.
const BOX_END: &str = "======================================================";

/// Lines a client printed, and a condition variable to wait for more.
#[derive(Default)]
struct Output {
    lines: Mutex<Vec<String>>,
    grew: Condvar,
}

/// A running `ChatClient` with piped standard input and output. Its stdout
/// is read line by line on a thread; tests wait for lines with a timeout.
struct ClientProc {
    child: Child,
    stdin: Option<ChildStdin>,
    output: Arc<Output>,
    /// Lines before this index were already matched by [`ClientProc::expect`].
    cursor: usize,
    label: &'static str,
}

impl ClientProc {
    fn start(label: &'static str, args: &[&str]) -> ClientProc {
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
            sink.lines.lock().unwrap_or_else(|e| e.into_inner()).push(text.trim_end().to_string());
            sink.grew.notify_all();
        });
        let stdin = child.stdin.take();
        ClientProc { child, stdin, output, cursor: 0, label }
    }

    fn connect(label: &'static str, addr: SocketAddr) -> ClientProc {
        let ip = addr.ip().to_string();
        let port = addr.port().to_string();
        let mut client = ClientProc::start(label, &[&ip, &port]);
        client.expect_menu();
        client
    }

    /// Types one line.
    fn type_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("{}: typing {line:?} failed: {e}", self.label));
    }

    /// Ends standard input, as Ctrl-D or the end of a file would.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    fn transcript(&self) -> String {
        self.output.lines.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
    }

    /// Waits for the first line at or after the cursor that satisfies
    /// `wanted`, moves the cursor past it and returns it.
    fn expect_where(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
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

    /// The next line (from the cursor on) that contains `needle`.
    fn expect(&mut self, needle: &str) -> String {
        self.expect_where(&format!("containing {needle:?}"), |l| l.contains(needle))
    }

    /// The next line that is exactly `line`.
    fn expect_exact(&mut self, line: &str) -> String {
        self.expect_where(&format!("equal to {line:?}"), |l| l == line)
    }

    /// The line right at the cursor, once it is printed.
    fn next_line(&mut self) -> String {
        self.expect_where("at all", |_| true)
    }

    /// The whole first menu, ending with its prompt.
    fn expect_menu(&mut self) {
        self.expect_exact("========================");
        for line in ["1. login", "2. register", "3. quit", "========================", "choice:"] {
            assert_eq!(self.next_line(), line, "{}: menu", self.label);
        }
    }

    /// Registers through the menu and returns the id the client printed.
    fn register(&mut self, name: &str, password: &str) -> i64 {
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
    fn login(&mut self, id: i64, password: &str) {
        self.type_line("1");
        self.expect_exact("userid:");
        self.type_line(&id.to_string());
        self.expect_exact("userpassword:");
        self.type_line(password);
    }

    /// Waits for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
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
fn is_chat_line(line: &str, prefix: &str, tail: &str) -> bool {
    let Some(rest) = line.strip_prefix(prefix) else {
        return false;
    };
    is_stamp_shaped(rest.get(..19).unwrap_or("")) && rest[19..] == format!(" {tail}")
}

#[test]
fn two_users_chat_through_their_clients() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = ClientProc::connect("client A", server.addr);
    let mut b = ClientProc::connect("client B", server.addr);

    let (name_a, name_b) = (unique_name("ca"), unique_name("cb"));
    let id_a = a.register(&name_a, "pa");
    let id_b = b.register(&name_b, "pb");
    assert_ne!(id_a, id_b);

    // Input mistakes at the menu never reach the server.
    a.type_line("9");
    a.expect_exact("invalid input!");
    a.expect_menu();
    a.type_line("1");
    a.expect_exact("userid:");
    a.type_line("abc");
    a.expect_exact("invalid userid!");
    a.expect_menu();
    a.login(id_a, "wrong");
    a.expect_exact("id or password is invalid!");
    a.expect_menu();

    // A logs in; B is a friend before B ever logs in.
    a.login(id_a, "pa");
    a.expect_exact("======================login user======================");
    a.expect_exact(&format!("current login user => id:{id_a} name:{name_a}"));
    a.expect_exact("----------------------friend list---------------------");
    a.expect_exact("----------------------group list----------------------");
    a.expect_exact(BOX_END);
    a.expect_exact("show command list >>>");
    a.type_line(&format!("addfriend:{id_b}"));
    a.expect_exact(&format!("added friend [{id_b}]{name_b} (offline)"));

    // Mistyped commands.
    a.type_line("hello");
    a.expect_exact("invalid input command!");
    a.type_line("chat:abc:hi");
    a.expect_exact("invalid id!");
    a.type_line(&format!("addfriend:{id_a}"));
    a.expect("[ERROR]: ");

    // A message to B while B is offline is shown at B's login; the group
    // ACK that follows tells the server handled the chat before it.
    a.type_line(&format!("chat:{id_b}:while you were out"));
    a.type_line("creategroup:crabs:all: about crabs");
    let line = a.expect("create group success, groupid is ");
    let group: i64 =
        line.rsplit(' ').next().and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("no group id in {line:?}"));

    b.login(id_b, "pb");
    b.expect_exact(&format!("current login user => id:{id_b} name:{name_b}"));
    b.expect_exact(BOX_END);
    let offline = b.next_line();
    assert!(
        is_chat_line(&offline, "", &format!("[{id_a}]{name_a} said: while you were out")),
        "offline message line: {offline:?}"
    );
    a.expect_exact(&format!("[{id_b}]{name_b} is online"));

    // Live one-to-one chat; the message keeps its colons.
    a.type_line(&format!("chat:{id_b}:hello:with colon"));
    let line = b.expect(&format!("[{id_a}]{name_a} said: hello:with colon"));
    assert!(is_chat_line(&line, "", &format!("[{id_a}]{name_a} said: hello:with colon")), "{line:?}");

    // B joins the group; group messages reach the other member.
    b.type_line(&format!("addgroup:{group}"));
    b.expect_exact(&format!("join group {group} success"));
    a.type_line(&format!("groupchat:{group}:hi crabs"));
    let line = b.expect(&format!("[{id_a}]{name_a} said: hi crabs"));
    assert!(is_chat_line(&line, &format!("群消息[{group}]:"), &format!("[{id_a}]{name_a} said: hi crabs")), "{line:?}");
    b.type_line(&format!("groupchat:{group}:hi back"));
    let line = a.expect(&format!("[{id_b}]{name_b} said: hi back"));
    assert!(line.starts_with(&format!("群消息[{group}]:")), "{line:?}");

    // B logs out: back to the menu on the same connection; A sees it.
    b.type_line("loginout");
    b.expect_menu();
    a.expect_exact(&format!("[{id_b}]{name_b} is offline"));
    b.type_line(&format!("chat:{id_a}:not logged in"));
    b.expect_exact("invalid input!");
    b.expect_menu();
    // ...and may log in again on it.
    b.login(id_b, "pb");
    b.expect_exact(&format!("current login user => id:{id_b} name:{name_b}"));
    b.expect_exact(&format!("[{group}] crabs all: about crabs"));
    b.type_line("loginout");
    b.expect_menu();
    b.type_line("3");
    assert!(b.wait_exit().success(), "quit: {}", b.transcript());

    // End of input in the middle of a session ends the client cleanly.
    a.close_stdin();
    a.expect_exact("end of input, bye");
    assert!(a.wait_exit().success(), "EOF: {}", a.transcript());
}

#[test]
fn end_of_input_at_the_first_menu_exits_cleanly() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = ClientProc::connect("client", server.addr);
    c.close_stdin();
    c.expect_exact("end of input, bye");
    assert!(c.wait_exit().success(), "{}", c.transcript());
}

#[test]
fn a_closed_server_ends_the_client_cleanly() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = ClientProc::connect("client", server.addr);
    server.signal(libc::SIGKILL);
    c.expect_exact("server closed the connection");
    assert!(c.wait_exit().success(), "{}", c.transcript());
}

#[test]
fn bad_arguments_and_no_server_are_reported() {
    let run = |args: &[&str]| {
        Command::new(client_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", client_bin()))
    };
    for args in [&[][..], &["127.0.0.1"], &["127.0.0.1", "x"], &["a", "1", "b"]] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("usage: ChatClient IP PORT"), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }

    // A port nobody listens on: take a free one and let it go.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port().to_string();
    let out = run(&["127.0.0.1", &port]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("cannot connect to 127.0.0.1:{port}: "))
            && stderr.trim_end().ends_with("is ChatServer running?"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// What the client says for a line typed while it reconnects.
const NOT_CONNECTED: &str = "[ERROR]: not connected to the server (reconnecting); that was not sent";

#[test]
fn the_client_reconnects_through_nginx_when_its_server_is_killed() {
    let db = TestDb::new();
    let redis = RedisProc::start_on_free_port();
    let url = redis.url();
    let (s1, s2) = two_servers(&db, &[("CHAT_REDIS_URL", url.as_str())]);
    let nginx = Nginx::start(&[s1.addr, s2.addr]);
    let mut c = ClientProc::connect("client", nginx.addr);
    let name = unique_name("rc");
    let id = c.register(&name, "pw-rc");
    c.login(id, "pw-rc");
    c.expect(&format!("current login user => id:{id} name:{name}"));
    c.expect_exact(BOX_END);
    c.expect_exact("show command list >>>");

    // The server the client landed on dies.
    let holder = online_server_of(&db, id).unwrap_or_else(|| panic!("user {id} is not in table online"));
    let (mut gone, survivor) = if holder.starts_with(&server_id_prefix(&s1)) { (s1, s2) } else { (s2, s1) };
    gone.signal(libc::SIGKILL);
    c.expect("[connection lost] reconnecting");
    c.expect_exact("reconnected");

    // It is logged in again, on the other server: a message reaches it.
    let (mut other, other_id, other_name) = user_on(survivor.addr, "rs", "pw-rs");
    other.send_chat(id, "after the failover");
    let said = format!("[{other_id}]{other_name} said: after the failover");
    c.expect_where(&format!("ending in {said:?}"), |l| is_chat_line(l, "", &said));
    assert!(gone.wait_exit(Duration::from_secs(30)).is_some(), "the killed server still runs");
}

#[test]
fn a_line_typed_while_the_client_reconnects_is_refused_not_sent_later() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = ClientProc::connect("client", server.addr);
    let name = unique_name("rl");
    let id = c.register(&name, "pw-rl");
    c.login(id, "pw-rl");
    c.expect_exact(BOX_END);
    // The command loop has started: the session is the client's now.
    c.expect_exact("show command list >>>");

    server.signal(libc::SIGKILL);
    c.expect("[connection lost] reconnecting");
    c.type_line(&format!("chat:{id}:typed while offline"));
    c.expect_exact(NOT_CONNECTED);

    // End of input still ends it cleanly.
    c.close_stdin();
    let status = c.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status after end of input; output:\n{}", c.transcript());
}
