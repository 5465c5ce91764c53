//! Shared harness for the integration tests.
//!
//! Every test file starts with `mod common;` and uses what it needs:
//!
//! ```ignore
//! mod common;
//! use common::{Client, Server, TestDb, unique_name};
//! use serde_json::json;
//!
//! #[test]
//! fn one_chat_is_delivered() {
//!     let db = TestDb::new(); // fresh database, dropped at the end
//!     let server = Server::start(&db); // bin ChatServer on 127.0.0.1:<free port>
//!     let mut a = Client::connect(server.addr);
//!     let mut b = Client::connect(server.addr);
//!     let ida = a.register(&unique_name("a"), "pw");
//!     let idb = b.register(&unique_name("b"), "pw");
//!     a.login_ok(ida, "pw");
//!     b.login_ok(idb, "pw");
//!     a.send(&json!({"msgid": 6, "toid": idb, "msg": "hi"}));
//!     assert_eq!(b.recv_msgid(6)["msg"], "hi");
//! }
//! ```
//!
//! Environment:
//! - `CHAT_MYSQL_URL`: the *base* MySQL URL (default
//!   `mysql://root@127.0.0.1:3306/chat`). Its database part is replaced by a
//!   fresh `chat_t_...` database per [`TestDb`]; the account needs the right
//!   to create and drop databases named `chat%` (`./autobuild.sh test` sets
//!   all of this up).
//! - `CHAT_REDIS_URL`: passed through to the servers unchanged. Redis keys
//!   and channels are namespaced by database name, so tests running in
//!   parallel never see each other.
//!
//! Declare the database before the server (`let db = ...; let server = ...;`):
//! locals drop in reverse order, so the server is killed before its
//! database is dropped.
//!
//! Every wait in here is bounded; a timeout panics with a message saying
//! what was awaited (and, for the server, what it printed).

// Each test file compiles its own copy of this module and uses only part of
// it; without this, every helper a given file leaves unused would be a
// dead-code warning (an error under `-D warnings`).
#![allow(dead_code)]

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chatserver::net::FrameDecoder;
use mysql::prelude::{FromRow, Queryable};
use serde_json::{Value, json};

/// Base URL used when `CHAT_MYSQL_URL` is not set.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/chat";
/// How long [`Server::start`] waits for the "listening" line.
pub const SERVER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long [`Client::recv`] and friends wait for a frame.
pub const RECV_TIMEOUT: Duration = Duration::from_secs(20);
/// What the server's log line says once it accepts connections, followed
/// by the address (after the line's timestamp and level).
pub const LISTENING_PREFIX: &str = "ChatServer listening on ";
/// Test databases are named `chat_t_<pid>_<counter>_<nanos>`.
pub const TEST_DB_PREFIX: &str = "chat_t_";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn next_counter() -> u64 {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// A name (user or group) unique within this test process, and therefore
/// within any database it uses: `<prefix>_<pid>_<n>`. Keep `prefix` short:
/// names may have at most 50 characters.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{}_{}", std::process::id(), next_counter())
}

/// The base MySQL URL: `CHAT_MYSQL_URL`, or [`DEFAULT_MYSQL_URL`].
pub fn base_mysql_url() -> String {
    match std::env::var("CHAT_MYSQL_URL") {
        Ok(url) if !url.trim().is_empty() => url.trim().to_string(),
        _ => DEFAULT_MYSQL_URL.to_string(),
    }
}

/// `url` with its database (the URL path) replaced by `db`; the query
/// string, if any, is kept. `mysql://u:p@h:3306/chat?x=1` with `db = "d"`
/// gives `mysql://u:p@h:3306/d?x=1`.
pub fn with_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3).unwrap_or_else(|| panic!("not a URL (no `://`): {url:?}"));
    // In a valid URL the authority cannot contain an unescaped '/', '?' or
    // '#', so it ends at the first of them.
    let rest = &url[scheme_end..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let head = &url[..scheme_end + authority_len];
    let after = &rest[authority_len..];
    let tail = after.find(['?', '#']).map_or("", |i| &after[i..]);
    format!("{head}/{db}{tail}")
}

/// The URL without a database: for connecting before the database exists.
fn server_level_opts(url: &str) -> mysql::Opts {
    let opts = mysql::Opts::from_url(url).unwrap_or_else(|e| panic!("invalid MySQL URL {url:?} (CHAT_MYSQL_URL): {e}"));
    mysql::OptsBuilder::from_opts(opts).db_name(None::<String>).into()
}

fn admin_conn(base_url: &str) -> mysql::Conn {
    mysql::Conn::new(server_level_opts(base_url)).unwrap_or_else(|e| {
        panic!(
            "cannot connect to MySQL at {base_url:?}: {e}\n\
             Is MariaDB running, and does CHAT_MYSQL_URL name an account that \
             may create databases `chat%`? `./autobuild.sh test` sets this up."
        )
    })
}

/// A database of its own for one test, dropped (with everything in it)
/// when this value is dropped — also when the test panics.
///
/// [`TestDb::new`] creates it empty (the server under test applies the
/// schema), [`TestDb::fresh`] applies the schema too (for tests of the
/// library without a server), [`TestDb::empty`] only picks the name (for
/// tests of creating the database).
pub struct TestDb {
    /// Database name, `chat_t_<pid>_<counter>_<nanos>`.
    pub name: String,
    /// Full URL of the database: the base URL with its path replaced.
    pub url: String,
    base_url: String,
}

impl TestDb {
    /// Creates an empty database with a unique name on the server of
    /// `CHAT_MYSQL_URL`. Panics with a hint if MySQL is unreachable.
    pub fn new() -> TestDb {
        let db = TestDb::empty();
        let mut conn = admin_conn(&db.base_url);
        drop_stale_databases(&mut conn);
        conn.query_drop(format!("CREATE DATABASE `{}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci", db.name))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {} failed: {e}", db.name));
        db
    }

    /// A unique database with the schema applied by
    /// `chatserver::db::schema::prepare` (which also creates it).
    pub fn fresh() -> TestDb {
        let db = TestDb::empty();
        chatserver::db::schema::prepare(&db.url)
            .unwrap_or_else(|e| panic!("schema::prepare on test database {} failed: {e}", db.name));
        db
    }

    /// A unique name (and its URL) only: the database does not exist yet.
    /// It is still dropped, if it was created, when this value is dropped.
    pub fn empty() -> TestDb {
        let base_url = base_mysql_url();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock before 1970").as_nanos();
        let name = format!("{TEST_DB_PREFIX}{}_{}_{nanos}", std::process::id(), next_counter());
        let url = with_database(&base_url, &name);
        TestDb { name, url, base_url }
    }

    /// A new connection to this database, for assertions and setup.
    pub fn conn(&self) -> mysql::Conn {
        mysql::Conn::new(mysql::Opts::from_url(&self.url).expect("TestDb url is a valid MySQL URL"))
            .unwrap_or_else(|e| panic!("cannot connect to test database {}: {e}", self.name))
    }

    /// Runs a statement (`?` placeholders, `params` e.g. `()` or `(1, "x")`).
    pub fn exec<P: Into<mysql::Params>>(&self, sql: &str, params: P) {
        self.conn().exec_drop(sql, params).unwrap_or_else(|e| panic!("SQL failed: {sql}: {e}"));
    }

    /// The first row of a query, converted to `T` (a value type or a tuple),
    /// or `None` when there is no row.
    pub fn query_first<T: FromRow, P: Into<mysql::Params>>(&self, sql: &str, params: P) -> Option<T> {
        self.conn().exec_first(sql, params).unwrap_or_else(|e| panic!("SQL failed: {sql}: {e}"))
    }

    /// All rows of a query, each converted to `T`.
    pub fn query_all<T: FromRow, P: Into<mysql::Params>>(&self, sql: &str, params: P) -> Vec<T> {
        self.conn().exec(sql, params).unwrap_or_else(|e| panic!("SQL failed: {sql}: {e}"))
    }

    /// The single integer a query returns, e.g.
    /// `db.query_i64("SELECT COUNT(*) FROM offlinemessage WHERE userid = ?", (id,))`.
    /// Panics if there is no row or the value is NULL.
    pub fn query_i64<P: Into<mysql::Params>>(&self, sql: &str, params: P) -> i64 {
        self.query_first::<Option<i64>, P>(sql, params)
            .unwrap_or_else(|| panic!("query returned no row: {sql}"))
            .unwrap_or_else(|| panic!("query returned NULL: {sql}"))
    }

    /// The single string a query returns, or `None` when there is no row.
    pub fn query_string<P: Into<mysql::Params>>(&self, sql: &str, params: P) -> Option<String> {
        self.query_first::<String, P>(sql, params)
    }

    /// Names of the tables in this database, sorted.
    pub fn tables(&self) -> Vec<String> {
        self.query_all(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = ? ORDER BY table_name",
            (&self.name,),
        )
    }
}

impl Default for TestDb {
    fn default() -> Self {
        TestDb::new()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Never panic here: this may run while unwinding from a failed test.
        let result = mysql::Conn::new(server_level_opts(&self.base_url)).and_then(|mut c| {
            // Do not hang on a metadata lock held by a leftover connection.
            c.query_drop("SET SESSION lock_wait_timeout = 30")?;
            c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name))
        });
        if let Err(e) = result {
            eprintln!("warning: could not drop test database {}: {e}", self.name);
        }
    }
}

/// Once per test process: drops `chat_t_<pid>_..` databases left behind by
/// test processes that were killed (their pid is gone and the database is
/// over an hour old), so aborted runs do not pile up databases.
fn drop_stale_databases(conn: &mut mysql::Conn) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let names: Vec<String> = match conn.query("SHOW DATABASES LIKE 'chat\\_t\\_%'") {
            Ok(names) => names,
            Err(_) => return,
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        for name in names {
            let parts: Vec<&str> = name[TEST_DB_PREFIX.len()..].split('_').collect();
            let [pid, _counter, nanos] = parts[..] else {
                continue;
            };
            let (Ok(pid), Ok(nanos)) = (pid.parse::<libc::pid_t>(), nanos.parse::<u128>()) else {
                continue;
            };
            let old = now.saturating_sub(nanos) > Duration::from_secs(3600).as_nanos();
            // SAFETY: kill with signal 0 only checks whether `pid` exists.
            let gone =
                unsafe { libc::kill(pid, 0) } == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
            if old && gone {
                let _ = conn.query_drop(format!("DROP DATABASE IF EXISTS `{name}`"));
            }
        }
    });
}

/// What a server process printed: stdout and stderr lines, interleaved in
/// the order they were read, plus a condition variable to wait on.
#[derive(Default)]
struct OutputBuf {
    text: Mutex<String>,
    grew: Condvar,
}

impl OutputBuf {
    fn push_line(&self, line: &str) {
        let mut text = self.text.lock().unwrap_or_else(|e| e.into_inner());
        text.push_str(line);
        if !line.ends_with('\n') {
            text.push('\n');
        }
        self.grew.notify_all();
    }

    fn get(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Reads `pipe` line by line until EOF (or a read error) on a thread of its
/// own, so the pipe never fills, handing each line (lossily decoded, with
/// its line end) to `each`.
pub fn read_lines<R: Read + Send + 'static>(pipe: R, each: impl Fn(&str) + Send + 'static) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => each(&String::from_utf8_lossy(&line)),
            }
        }
    })
}

/// Reads `pipe` line by line into `out` until EOF, handing each line
/// (without its line end) to `each` as well.
fn drain<R: Read + Send + 'static>(
    pipe: R,
    out: Arc<OutputBuf>,
    each: impl Fn(&str) + Send + 'static,
) -> thread::JoinHandle<()> {
    read_lines(pipe, move |text| {
        out.push_line(text);
        each(text.trim_end());
    })
}

/// Path of the `ChatServer` binary built by cargo for these tests.
pub fn server_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ChatServer")
}

/// Path of the `ChatClient` binary built by cargo for these tests.
pub fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ChatClient")
}

/// The parts of a server log line, `2026-11-26T10:00:00.123Z LEVEL text`:
/// the timestamp, the level and the text; `None` for a line of another
/// shape. The timestamp is checked field by field (RFC 3339, UTC, with
/// milliseconds).
pub fn log_line(line: &str) -> Option<(&str, &str, &str)> {
    let (stamp, rest) = line.split_once(' ')?;
    let (level, text) = rest.split_once(' ')?;
    let b = stamp.as_bytes();
    let digits = |r: std::ops::Range<usize>| r.clone().all(|i| b.get(i).is_some_and(u8::is_ascii_digit));
    let shape = b.len() == 24
        && digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z';
    let num = |r: std::ops::Range<usize>| stamp[r].parse::<u32>().unwrap_or(99);
    let ranges = shape
        && (1..=12).contains(&num(5..7))
        && (1..=31).contains(&num(8..10))
        && num(11..13) < 24
        && num(14..16) < 60
        && num(17..19) < 61;
    let known = ["INFO", "WARN", "ERROR", "FATAL"].contains(&level);
    (ranges && known).then_some((stamp, level, text))
}

/// A running `ChatServer` process. Dropping it kills it (SIGKILL) and reaps it.
pub struct Server {
    /// Where it listens, from its "ChatServer listening on ..." line.
    pub addr: SocketAddr,
    child: Child,
    status: Option<ExitStatus>,
    output: Arc<OutputBuf>,
}

impl Server {
    /// `ChatServer 127.0.0.1 0` on database `db`.
    pub fn start(db: &TestDb) -> Server {
        Server::start_with(db, &[], &[])
    }

    /// `ChatServer 127.0.0.1 0 <extra_args>` with `CHAT_MYSQL_URL=db.url`,
    /// then `env` applied on top (it may override `CHAT_MYSQL_URL`, set
    /// `CHAT_REDIS_URL`, `CHAT_DB_POOL`, ...). Everything else, including
    /// `CHAT_REDIS_URL`, is inherited from the test's environment.
    pub fn start_with(db: &TestDb, extra_args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut args = vec!["127.0.0.1", "0"];
        args.extend_from_slice(extra_args);
        Server::start_args(db, &args, env)
    }

    /// Like [`Server::start_with`] but with the complete argument list, for
    /// a fixed address: `Server::start_args(&db, &["127.0.0.1", "6000"], &[])`.
    pub fn start_args(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(server_bin());
        cmd.args(args)
            .env("CHAT_MYSQL_URL", &db.url)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot run {}: {e}", server_bin()));
        let output = Arc::new(OutputBuf::default());
        let (tx, rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        // Both senders stop at EOF; the channel then reports "disconnected".
        let tx_err = tx.clone();
        drain(stdout, output.clone(), move |line| {
            let _ = tx.send(line.to_string());
        });
        let stderr_thread = drain(stderr, output.clone(), move |line| {
            let _ = tx_err.send(line.to_string());
        });

        let mut server = Server { addr: SocketAddr::from(([0, 0, 0, 0], 0)), child, status: None, output };
        let deadline = Instant::now() + SERVER_START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(at) = line.find(LISTENING_PREFIX) {
                        let addr = &line[at + LISTENING_PREFIX.len()..];
                        server.addr =
                            addr.trim().parse().unwrap_or_else(|e| panic!("bad address in server line {line:?}: {e}"));
                        return server;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!(
                        "ChatServer {args:?} did not print `{LISTENING_PREFIX}IP:PORT` \
                         within {SERVER_START_TIMEOUT:?}; its output:\n{}",
                        server.output()
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let exit = server.wait_exit(Duration::from_secs(5));
                    let status = exit.map_or("still running".to_string(), |s| s.to_string());
                    if exit.is_some() {
                        // It exited: stderr reaches EOF; collect its last lines.
                        let _ = stderr_thread.join();
                    }
                    panic!(
                        "ChatServer {args:?} closed stdout before listening \
                         ({status}); its output:\n{}",
                        server.output()
                    );
                }
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `sig` (e.g. `libc::SIGTERM`, `libc::SIGINT`, `libc::SIGKILL`).
    /// Does nothing once the process has been reaped (its pid may be reused).
    pub fn signal(&self, sig: libc::c_int) {
        if self.status.is_some() {
            return;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: plain kill(2) on our own child, which has not been reaped
        // (reaping happens only through `self.child`, recorded in `status`).
        let rc = unsafe { libc::kill(pid, sig) };
        assert!(rc == 0, "kill({pid}, {sig}) failed: {}", io::Error::last_os_error());
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None`
    /// if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.status.is_none() {
                self.status = self.child.try_wait().expect("try_wait on ChatServer");
            }
            if self.status.is_some() || Instant::now() >= deadline {
                return self.status;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.wait_exit(Duration::ZERO).is_none()
    }

    /// Everything the server printed so far (stdout and stderr, by line).
    pub fn output(&self) -> String {
        self.output.get()
    }

    /// Waits until the output contains `needle`; whether it did within `timeout`.
    pub fn wait_output(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut text = self.output.text.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if text.contains(needle) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            text = self.output.grew.wait_timeout(text, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.wait_exit(Duration::ZERO).is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
    }
}

/// How a server process that was expected to exit ended.
#[derive(Debug)]
pub struct Finished {
    /// `None` if it was still running at the timeout (it was then killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ChatServer <args>` with `env` on top of the test's environment and
/// waits up to `timeout` for it to exit: for tests of bad arguments, an
/// unreachable database, a port in use...
pub fn run_server_to_exit(args: &[&str], env: &[(&str, &str)], timeout: Duration) -> Finished {
    let mut child = Command::new(server_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", server_bin()));
    let out = Arc::new(OutputBuf::default());
    let err = Arc::new(OutputBuf::default());
    let t_out = drain(child.stdout.take().expect("piped"), out.clone(), |_| {});
    let t_err = drain(child.stderr.take().expect("piped"), err.clone(), |_| {});
    let deadline = Instant::now() + timeout;
    let mut status = None;
    while status.is_none() && Instant::now() < deadline {
        status = child.try_wait().expect("try_wait on ChatServer");
        if status.is_none() {
            thread::sleep(Duration::from_millis(20));
        }
    }
    if status.is_none() {
        let _ = child.kill();
    }
    // Reaps it (after a successful try_wait this just returns that status).
    let _ = child.wait();
    let _ = t_out.join();
    let _ = t_err.join();
    Finished { status, stdout: out.get(), stderr: err.get() }
}

/// How a read from the server ended.
enum ReadEnd {
    Frame(Vec<u8>),
    Timeout,
    /// EOF or ECONNRESET; the text says which.
    Closed(String),
}

/// A blocking protocol client: JSON objects terminated by NUL.
///
/// Frames are found by the server's own `net::FrameDecoder`; several frames
/// in one read and one frame over many reads are both handled.
pub struct Client {
    stream: TcpStream,
    /// Frame boundaries, and the unfinished tail of the last read.
    decoder: FrameDecoder,
    /// Frames read but not yet asked for.
    frames: VecDeque<Vec<u8>>,
    peer: SocketAddr,
}

/// Largest frame a test reads: a LOGIN_ACK with many stored messages.
const MAX_FRAME: usize = 64 << 20;

impl Client {
    /// Connects (within 10 s) with TCP_NODELAY set.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("cannot connect to ChatServer at {addr}: {e}"));
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        stream.set_write_timeout(Some(RECV_TIMEOUT)).expect("set write timeout");
        Client { stream, decoder: FrameDecoder::new(MAX_FRAME), frames: VecDeque::new(), peer: addr }
    }

    /// The socket, e.g. for `shutdown` or local_addr.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends `msg` as compact JSON followed by NUL. Panics on a write error.
    pub fn send(&mut self, msg: &Value) {
        self.try_send(msg).unwrap_or_else(|e| panic!("sending {msg} to {} failed: {e}", self.peer));
    }

    /// Like [`Client::send`] but returns the write error (the server may
    /// have closed the connection already).
    pub fn try_send(&mut self, msg: &Value) -> io::Result<()> {
        let mut bytes = serde_json::to_vec(msg).expect("serialize JSON");
        bytes.push(0);
        self.try_send_raw(&bytes)
    }

    /// Sends bytes exactly as given (no NUL added). Panics on a write error.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes)
            .unwrap_or_else(|e| panic!("sending {} raw bytes to {} failed: {e}", bytes.len(), self.peer));
    }

    /// Like [`Client::send_raw`] but returns the write error.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Half-closes the connection (no more data from us).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    /// Next frame, a read timeout, or the end of the stream.
    fn read_frame(&mut self, timeout: Duration) -> ReadEnd {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return ReadEnd::Frame(frame);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return ReadEnd::Timeout;
            }
            self.stream.set_read_timeout(Some(left)).expect("set read timeout");
            match self.stream.read(&mut chunk) {
                Ok(0) => return ReadEnd::Closed(self.closed_text("EOF")),
                Ok(n) => {
                    let frames = &mut self.frames;
                    let fed = self.decoder.feed(&chunk[..n], |frame| {
                        frames.push_back(frame.to_vec());
                        true
                    });
                    assert!(fed.is_ok(), "{} sent a frame over {MAX_FRAME} bytes", self.peer);
                }
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {}
                    io::ErrorKind::Interrupted => {}
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                        return ReadEnd::Closed(self.closed_text(&e.to_string()));
                    }
                    _ => panic!("reading from {} failed: {e}", self.peer),
                },
            }
        }
    }

    fn closed_text(&self, how: &str) -> String {
        let tail = self.decoder.pending();
        if tail.is_empty() {
            format!("connection closed by server ({how})")
        } else {
            format!(
                "connection closed by server ({how}) after an unterminated frame: {:?}",
                String::from_utf8_lossy(tail)
            )
        }
    }

    fn parse(&self, frame: &[u8]) -> Value {
        serde_json::from_slice(frame).unwrap_or_else(|e| {
            panic!("server sent a frame that is not JSON ({e}): {:?}", String::from_utf8_lossy(frame))
        })
    }

    /// Next frame within `timeout`, or `None` if none arrived. Panics if the
    /// server closed the connection or sent something that is not JSON.
    pub fn try_recv(&mut self, timeout: Duration) -> Option<Value> {
        match self.read_frame(timeout) {
            ReadEnd::Frame(frame) => Some(self.parse(&frame)),
            ReadEnd::Timeout => None,
            ReadEnd::Closed(why) => panic!("waiting for a frame from {}: {why}", self.peer),
        }
    }

    /// Next frame; panics after [`RECV_TIMEOUT`].
    pub fn recv(&mut self) -> Value {
        self.recv_expecting("any frame")
    }

    fn recv_expecting(&mut self, what: &str) -> Value {
        match self.read_frame(RECV_TIMEOUT) {
            ReadEnd::Frame(frame) => self.parse(&frame),
            ReadEnd::Timeout => panic!("timed out after {RECV_TIMEOUT:?} waiting for {what} from {}", self.peer),
            ReadEnd::Closed(why) => panic!("waiting for {what} from {}: {why}", self.peer),
        }
    }

    /// Next frame, asserting its `msgid` is `msgid` (panics showing the frame
    /// otherwise). Does not skip frames: other traffic is a failure.
    pub fn recv_msgid(&mut self, msgid: i64) -> Value {
        let v = self.recv_expecting(&format!("a frame with msgid {msgid}"));
        assert_eq!(v["msgid"].as_i64(), Some(msgid), "expected a frame with msgid {msgid}, got {v}");
        v
    }

    /// The first frame with `msgid`, discarding (and losing) any other
    /// frames before it, e.g. PRESENCE pushes; panics after [`RECV_TIMEOUT`].
    pub fn recv_until_msgid(&mut self, msgid: i64) -> Value {
        let deadline = Instant::now() + RECV_TIMEOUT;
        let mut skipped = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                ReadEnd::Frame(frame) => {
                    let v = self.parse(&frame);
                    if v["msgid"].as_i64() == Some(msgid) {
                        return v;
                    }
                    skipped.push(v);
                }
                ReadEnd::Timeout => panic!(
                    "timed out after {RECV_TIMEOUT:?} waiting for msgid {msgid} from {} \
                     (skipped: {skipped:?})",
                    self.peer
                ),
                ReadEnd::Closed(why) => {
                    panic!("waiting for msgid {msgid} from {}: {why} (skipped: {skipped:?})", self.peer)
                }
            }
        }
    }

    /// Next frame, asserting it is an ERROR (msgid 11) with `errno`.
    pub fn recv_error(&mut self, errno: i64) -> Value {
        let v = self.recv_expecting(&format!("ERROR (msgid 11) errno {errno}"));
        assert!(
            v["msgid"].as_i64() == Some(11) && v["errno"].as_i64() == Some(errno),
            "expected ERROR (msgid 11) with errno {errno}, got {v}"
        );
        v
    }

    /// Asserts that no frame arrives within `timeout` (a closed connection
    /// also fails).
    pub fn expect_silence(&mut self, timeout: Duration) {
        if let Some(v) = self.try_recv(timeout) {
            panic!("expected nothing from {} for {timeout:?}, got {v}", self.peer);
        }
    }

    /// Asserts the server closes the connection (read gives EOF or
    /// ECONNRESET) within [`RECV_TIMEOUT`]. Frames that arrive before the
    /// close are returned, in order (not checked; frames that are not JSON
    /// come back as JSON strings of their lossy text); an unterminated
    /// trailing fragment is discarded.
    pub fn expect_closed(&mut self) -> Vec<Value> {
        let deadline = Instant::now() + RECV_TIMEOUT;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.read_frame(left) {
                ReadEnd::Frame(frame) => frames
                    .push(serde_json::from_slice(&frame).unwrap_or_else(|_| json!(String::from_utf8_lossy(&frame)))),
                ReadEnd::Closed(_) => {
                    self.decoder = FrameDecoder::new(MAX_FRAME);
                    return frames;
                }
                ReadEnd::Timeout => panic!(
                    "expected {} to close the connection within {RECV_TIMEOUT:?}; \
                     it stayed open (frames received meanwhile: {frames:?})",
                    self.peer
                ),
            }
        }
    }

    /// REG: returns the REG_ACK (asserted msgid 5; errno not checked).
    pub fn reg(&mut self, name: &str, password: &str) -> Value {
        self.send(&json!({"msgid": 4, "name": name, "password": password}));
        self.recv_msgid(5)
    }

    /// REG: registers `name` and returns the new id (asserts REG_ACK errno 0).
    pub fn register(&mut self, name: &str, password: &str) -> i64 {
        let ack = self.reg(name, password);
        assert_eq!(ack["errno"].as_i64(), Some(0), "registering {name:?} failed: {ack}");
        ack["id"].as_i64().unwrap_or_else(|| panic!("REG_ACK without an integer id: {ack}"))
    }

    /// LOGIN: returns the LOGIN_ACK (asserted msgid 2; errno not checked).
    pub fn login(&mut self, id: i64, password: &str) -> Value {
        self.send(&json!({"msgid": 1, "id": id, "password": password}));
        self.recv_msgid(2)
    }

    /// LOGIN that must succeed: returns the LOGIN_ACK (asserted errno 0).
    pub fn login_ok(&mut self, id: i64, password: &str) -> Value {
        let ack = self.login(id, password);
        assert_eq!(ack["errno"].as_i64(), Some(0), "login of {id} failed: {ack}");
        ack
    }

    /// Registers a fresh user named `unique_name(prefix)` and logs in;
    /// returns (id, name).
    pub fn register_login(&mut self, prefix: &str, password: &str) -> (i64, String) {
        let name = unique_name(prefix);
        let id = self.register(&name, password);
        self.login_ok(id, password);
        (id, name)
    }

    /// LOGOUT (it has no reply).
    pub fn logout(&mut self) {
        self.send(&json!({"msgid": 3}));
    }

    /// PING: returns the very next frame, asserted to be a PONG (msgid 17),
    /// so nothing else was queued for this client ahead of it.
    pub fn ping(&mut self) -> Value {
        self.send(&json!({"msgid": 16}));
        self.recv_msgid(17)
    }

    /// ONE_CHAT of `msg` to `toid` (no reply when it is delivered or stored).
    pub fn send_chat(&mut self, toid: i64, msg: &str) {
        self.send(&json!({"msgid": 6, "toid": toid, "msg": msg}));
    }

    /// GROUP_CHAT of `msg` to `groupid` (no reply when it is delivered).
    pub fn send_group_chat(&mut self, groupid: i64, msg: &str) {
        self.send(&json!({"msgid": 10, "groupid": groupid, "msg": msg}));
    }

    /// ADD_FRIEND: returns the ACK (asserted msgid 12; errno not checked).
    pub fn add_friend(&mut self, friendid: i64) -> Value {
        self.send(&json!({"msgid": 7, "friendid": friendid}));
        self.recv_msgid(12)
    }

    /// ADD_FRIEND that must succeed: returns the ACK (asserted errno 0).
    pub fn add_friend_ok(&mut self, friendid: i64) -> Value {
        let ack = self.add_friend(friendid);
        assert_eq!(ack["errno"].as_i64(), Some(0), "ADD_FRIEND {friendid} failed: {ack}");
        ack
    }

    /// CREATE_GROUP: returns the ACK (asserted msgid 13; errno not checked).
    pub fn create_group(&mut self, name: &str, desc: &str) -> Value {
        self.send(&json!({"msgid": 8, "groupname": name, "groupdesc": desc}));
        self.recv_msgid(13)
    }

    /// CREATE_GROUP that must succeed: returns the new group's id.
    pub fn new_group(&mut self, name: &str, desc: &str) -> i64 {
        let ack = self.create_group(name, desc);
        assert_eq!(ack["errno"].as_i64(), Some(0), "CREATE_GROUP {name:?} failed: {ack}");
        ack["groupid"].as_i64().unwrap_or_else(|| panic!("CREATE_GROUP_ACK without groupid: {ack}"))
    }

    /// ADD_GROUP: returns the ACK (asserted msgid 14; errno not checked).
    pub fn add_group(&mut self, groupid: i64) -> Value {
        self.send(&json!({"msgid": 9, "groupid": groupid}));
        self.recv_msgid(14)
    }
}

/// A new connection to `addr` with a fresh user `unique_name(prefix)`
/// registered and logged in on it: (client, id, name).
pub fn user_on(addr: SocketAddr, prefix: &str, password: &str) -> (Client, i64, String) {
    let mut c = Client::connect(addr);
    let (id, name) = c.register_login(prefix, password);
    (c, id, name)
}

/// Registers a fresh user `unique_name(prefix)` on a connection of its own
/// (closed right after), so the user stays offline: (id, name).
pub fn offline_user(addr: SocketAddr, prefix: &str, password: &str) -> (i64, String) {
    let name = unique_name(prefix);
    let id = Client::connect(addr).register(&name, password);
    (id, name)
}

/// LOGOUT on `c`, then waits until user `id` is offline in table user.
pub fn logout_and_wait(db: &TestDb, c: &mut Client, id: i64) {
    c.logout();
    wait_user_state(db, id, "offline");
}

/// PING, and asserts the very next frame is exactly `{"msgid":17}`.
pub fn ping_pong(c: &mut Client) {
    let pong = c.ping();
    assert_eq!(pong, json!({"msgid": 17}), "PONG has extra fields");
}

/// The keys of a JSON object, sorted.
pub fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap_or_else(|| panic!("not a JSON object: {v}")).keys().cloned().collect()
}

/// `names` as a sorted set, to compare with [`keys`].
pub fn key_set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// Asserts an ACK is a refusal with `errno` and a non-empty errmsg.
pub fn assert_refused(ack: &Value, errno: i64, what: &str) {
    assert_eq!(ack["errno"].as_i64(), Some(errno), "{what}: {ack}");
    assert!(ack["errmsg"].as_str().is_some_and(|s| !s.is_empty()), "{what}: refusal without errmsg: {ack}");
}

/// Asserts `got` is exactly the ONE_CHAT from (`id`, `name`) to `toid`
/// with `msg`, stamped within a minute of now.
pub fn assert_one_chat(got: &Value, id: i64, name: &str, toid: i64, msg: &str) {
    assert_recent_stamp(got);
    let expected = json!({"msgid": 6, "id": id, "name": name, "toid": toid, "msg": msg, "time": got["time"].clone()});
    assert_eq!(got, &expected, "delivered ONE_CHAT differs from what was sent");
}

/// Asserts `got` is exactly the GROUP_CHAT from (`id`, `name`) in
/// `groupid` with `msg`, stamped within a minute of now.
pub fn assert_group_chat(got: &Value, id: i64, name: &str, groupid: i64, msg: &str) {
    assert_recent_stamp(got);
    let expected =
        json!({"msgid": 10, "id": id, "name": name, "groupid": groupid, "msg": msg, "time": got["time"].clone()});
    assert_eq!(got, &expected, "delivered GROUP_CHAT differs from what was sent");
}

/// Asserts `got` is exactly the PRESENCE of (`id`, `name`) with `state`.
pub fn assert_presence(got: &Value, id: i64, name: &str, state: &str) {
    assert_eq!(got, &json!({"msgid": 15, "id": id, "name": name, "state": state}), "PRESENCE differs");
}

/// The `offlinemsg` of a LOGIN_ACK, parsed (empty when absent).
pub fn offline_msgs(ack: &Value) -> Vec<Value> {
    parse_string_list(&ack["offlinemsg"])
}

/// Asserts the `offlinemsg` of `ack` is an array holding, in order, exactly
/// the ONE_CHATs from (`id`, `name`) to `toid` with the texts `msgs`.
pub fn assert_offline_chats(ack: &Value, id: i64, name: &str, toid: i64, msgs: &[&str]) {
    assert!(ack["offlinemsg"].is_array(), "LOGIN_ACK has no offlinemsg array: {ack}");
    let got = offline_msgs(ack);
    let texts: Vec<&str> = got.iter().map(|m| m["msg"].as_str().unwrap_or("<no msg>")).collect();
    assert_eq!(texts, msgs, "offlinemsg texts (in order) differ; LOGIN_ACK: {ack}");
    for (m, text) in got.iter().zip(msgs) {
        assert_one_chat(m, id, name, toid, text);
    }
}

/// Parses a LOGIN_ACK list whose elements are JSON *strings* holding JSON
/// (`friends`, `groups`, a group's `users`) into values; a missing field
/// gives an empty list. Panics if an element is not such a string.
pub fn parse_string_list(list: &Value) -> Vec<Value> {
    match list {
        Value::Null => Vec::new(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let s = item.as_str().unwrap_or_else(|| panic!("list element is not a JSON string: {item}"));
                serde_json::from_str(s).unwrap_or_else(|e| panic!("list element is not JSON text ({e}): {s:?}"))
            })
            .collect(),
        other => panic!("expected an array, got {other}"),
    }
}

// --- added for the protocol tests ---

/// How long the protocol tests poll for an effect that happens
/// asynchronously (a row in a table, a user's state, a login slot freed).
pub const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// Calls `probe` every 50 ms until it returns `Some`, and returns that value;
/// panics after `timeout` saying what was awaited.
pub fn poll_until<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    poll_until_deadline(&format!("{what} (waited {timeout:?})"), Instant::now() + timeout, probe)
}

/// Calls `probe` every 50 ms until it returns `Some`, and returns that value;
/// panics at `deadline` saying what was awaited.
pub fn poll_until_deadline<T>(what: &str, deadline: Instant, mut probe: impl FnMut() -> Option<T>) -> T {
    loop {
        if let Some(v) = probe() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Reads `read()` every 50 ms until `done` holds for it, and returns it;
/// panics after `timeout` with what was awaited and the last value read.
pub fn poll_value<V: std::fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut read: impl FnMut() -> V,
    done: impl Fn(&V) -> bool,
) -> V {
    let deadline = Instant::now() + timeout;
    loop {
        let v = read();
        if done(&v) {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {v:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// The `state` column of user `id` (`online`/`offline`); panics if missing.
pub fn user_state(db: &TestDb, id: i64) -> String {
    db.query_string("SELECT state FROM user WHERE id = ?", (id,))
        .unwrap_or_else(|| panic!("no row for user {id} in table user"))
}

/// Waits (bounded by [`POLL_TIMEOUT`]) until user `id` has `state`.
pub fn wait_user_state(db: &TestDb, id: i64, state: &str) {
    poll_value(
        &format!("user {id} to be {state:?} in table user"),
        POLL_TIMEOUT,
        || user_state(db, id),
        |s| s == state,
    );
}

/// Rows of `offlinemessage` stored for user `id`.
pub fn offline_count(db: &TestDb, id: i64) -> i64 {
    db.query_i64("SELECT COUNT(*) FROM offlinemessage WHERE userid = ?", (id,))
}

/// Waits (bounded by [`POLL_TIMEOUT`]) until exactly `n` messages are stored
/// for user `id`.
pub fn wait_offline_count(db: &TestDb, id: i64, n: i64) {
    poll_value(
        &format!("{n} rows in offlinemessage for user {id}"),
        POLL_TIMEOUT,
        || offline_count(db, id),
        |&c| c == n,
    );
}

/// Logs in on `client`, retrying while the server still holds the previous
/// session (a close or logout is processed asynchronously): every refusal
/// meanwhile must be errno 2 with the spec's errmsg. Returns the LOGIN_ACK
/// with errno 0; panics after [`POLL_TIMEOUT`].
pub fn login_when_released(client: &mut Client, id: i64, password: &str) -> Value {
    poll_until(&format!("user {id} to be able to log in again"), POLL_TIMEOUT, || {
        let ack = client.login(id, password);
        match ack["errno"].as_i64() {
            Some(0) => Some(ack),
            Some(2) => {
                assert_eq!(
                    ack["errmsg"], "this account is using, input another!",
                    "refused login of {id} while the old session ends: {ack}"
                );
                None
            }
            _ => panic!("login of {id} while the old session ends: expected errno 0 or 2, got {ack}"),
        }
    })
}

/// Whether `stamp` has exactly the shape `YYYY-MM-DD HH:MM:SS` (digits
/// anywhere but at the separators; the values are not checked).
pub fn is_stamp_shaped(stamp: &str) -> bool {
    stamp.len() == 19
        && stamp.bytes().enumerate().all(|(i, c)| match i {
            4 | 7 => c == b'-',
            10 => c == b' ',
            13 | 16 => c == b':',
            _ => c.is_ascii_digit(),
        })
}

/// Seconds since the epoch of a server stamp `YYYY-MM-DD HH:MM:SS` read as
/// local time, or `None` when `stamp` does not have exactly that shape.
pub fn local_stamp_epoch(stamp: &str) -> Option<i64> {
    if !is_stamp_shaped(stamp) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> i32 { stamp[r].parse().expect("digits") };
    let (year, mon, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, min, sec) = (num(11..13), num(14..16), num(17..19));
    if !(1..=12).contains(&mon) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    // SAFETY: `tm` is a plain C struct we own; mktime reads and normalises it.
    let t: i64 = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        tm.tm_year = year - 1900;
        tm.tm_mon = mon - 1;
        tm.tm_mday = day;
        tm.tm_hour = hour;
        tm.tm_min = min;
        tm.tm_sec = sec;
        tm.tm_isdst = -1;
        libc::mktime(&mut tm)
    };
    (t != -1).then_some(t)
}

/// Asserts `v["time"]` is a `YYYY-MM-DD HH:MM:SS` local-time stamp within a
/// minute of now.
pub fn assert_recent_stamp(v: &Value) {
    let stamp = v["time"].as_str().unwrap_or_else(|| panic!("no string `time` in {v}"));
    let t = local_stamp_epoch(stamp).unwrap_or_else(|| panic!("`time` {stamp:?} is not `YYYY-MM-DD HH:MM:SS` in {v}"));
    // SAFETY: time(NULL) writes nothing.
    let now: i64 = unsafe { libc::time(std::ptr::null_mut()) };
    assert!((t - now).abs() <= 60, "`time` {stamp:?} is not within a minute of now (local time) in {v}");
}

// --- helper processes (support/cluster.rs, support/mariadb.rs) ---

/// Waits until `ready()` holds for the helper process `child` that was just
/// started, trying every 50 ms; panics (adding `details()`, e.g. its log)
/// if the process exits first or `timeout` passes. `what` names the
/// process and what "ready" means, e.g. "redis-server on port 7000 to
/// answer PING".
pub fn wait_process_ready(
    child: &mut Child,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    details: impl Fn() -> String,
) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("waiting for {what}: the process exited ({status}) first; {}", details());
        }
        if ready() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; {}", details());
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM to `child` (unless it has exited already) and waits up to
/// `timeout` for it to exit, then SIGKILLs it; reaps it either way. Whether
/// it ended without the SIGKILL. Never panics (may run while unwinding).
pub fn terminate(child: &mut Child, timeout: Duration) -> bool {
    let mut clean = true;
    if matches!(child.try_wait(), Ok(None))
        && let Ok(pid) = libc::pid_t::try_from(child.id())
    {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + timeout;
        while matches!(child.try_wait(), Ok(None)) {
            if Instant::now() >= deadline {
                clean = false;
                let _ = child.kill();
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.wait();
    clean
}
