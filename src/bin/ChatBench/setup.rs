//! The untimed part of a run: users registered (or reused), connections
//! logged in, groups made. Plain blocking sockets on a few threads: setup is
//! request/reply and its speed is not what is measured.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::wire::{errno, msgid};

/// Password of every bench user.
pub const PASSWORD: &str = "benchpw";
/// How long one setup reply may take (a login waits behind others' hashes).
const REPLY_TIMEOUT: Duration = Duration::from_secs(120);
/// How often connections idle during setup send a PING: well within the
/// server's default idle timeout of 300 s.
pub const KEEPALIVE: Duration = Duration::from_secs(60);
/// How long a login keeps retrying "account in use" (the server may still
/// be logging out the same user from the previous run) and "server busy".
const IN_USE_RETRY: Duration = Duration::from_secs(60);
/// How long a connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A new connection to `addr` with `TCP_NODELAY` (the bench's frames are
/// small and each is waited for).
pub fn dial(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream =
        TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
    Ok(stream)
}

/// A blocking request/reply client.
pub struct SyncClient {
    stream: TcpStream,
    /// Bytes read past the last frame returned.
    buf: Vec<u8>,
    /// The resume token of its last successful login, if the server sent one.
    token: Option<String>,
}

impl SyncClient {
    pub fn connect(addr: SocketAddr) -> Result<SyncClient, String> {
        let stream = dial(addr)?;
        stream.set_read_timeout(Some(REPLY_TIMEOUT)).map_err(|e| format!("read timeout: {e}"))?;
        Ok(SyncClient { stream, buf: Vec::new(), token: None })
    }

    /// The resume token its login got (see [`login`]).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// Sends `request` and returns the first reply with msgid `expect`,
    /// skipping pushes (presence, stray chats); an ERROR is an error.
    pub fn request(&mut self, request: &Value, expect: i64) -> Result<Value, String> {
        let mut bytes = request.to_string().into_bytes();
        bytes.push(0);
        self.stream.write_all(&bytes).map_err(|e| format!("sending {request}: {e}"))?;
        loop {
            let frame = self.next_frame().map_err(|e| format!("waiting for msgid {expect} after {request}: {e}"))?;
            let Ok(value) = serde_json::from_slice::<Value>(&frame) else { continue };
            match value["msgid"].as_i64() {
                Some(id) if id == expect => return Ok(value),
                Some(msgid::ERROR) => return Err(format!("{request} was refused: {value}")),
                _ => {}
            }
        }
    }

    fn next_frame(&mut self) -> Result<Vec<u8>, String> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == 0) {
                let frame = self.buf[..end].to_vec();
                self.buf.drain(..=end);
                return Ok(frame);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err("connection closed by the server".into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(format!("no reply within {REPLY_TIMEOUT:?}"));
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Sends a PING without waiting for its PONG (read and skipped later:
    /// by `request`, or by the load engine, which ignores PONGs).
    pub fn ping(&mut self) -> Result<(), String> {
        self.stream.write_all(b"{\"msgid\":16}\0").map_err(|e| format!("keepalive PING: {e}"))
    }

    /// The socket, for the load engine. Unread complete frames are pushes
    /// the timed part does not need; they are dropped.
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }
}

/// Runs `job(state, i)` for `i` in `0..count` on `conc` threads, each with
/// a `state` of its own (starting as `S::default()`); the first error stops
/// the rest. Says how far it got every few seconds, as long setups
/// (thousands of password hashes) take minutes.
pub fn parallel<S: Default, T: Send>(
    what: &str,
    count: usize,
    conc: usize,
    job: impl Fn(&mut S, usize) -> Result<T, String> + Sync,
) -> Result<Vec<T>, String> {
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..count).map(|_| None).collect());
    let first_error: Mutex<Option<String>> = Mutex::new(None);
    let started = Instant::now();
    let last_note = Mutex::new(Instant::now());
    std::thread::scope(|scope| {
        for _ in 0..conc.clamp(1, count.max(1)) {
            scope.spawn(|| {
                let mut state = S::default();
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return;
                    }
                    match job(&mut state, i) {
                        Ok(value) => {
                            lock(&results)[i] = Some(value);
                            let finished = done.fetch_add(1, Ordering::Relaxed) + 1;
                            let mut last = lock(&last_note);
                            if last.elapsed() >= Duration::from_secs(5) {
                                *last = Instant::now();
                                eprintln!("  {what}: {finished}/{count} ({:.0} s)", started.elapsed().as_secs_f64());
                            }
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            lock(&first_error).get_or_insert(e);
                        }
                    }
                }
            });
        }
    });
    if let Some(e) = lock(&first_error).take() {
        return Err(format!("{what}: {e}"));
    }
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.into_iter().map(|r| r.ok_or_else(|| format!("{what}: a setup thread stopped early"))).collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A user name no earlier run used: pid, time and a counter.
fn fresh_name(n: usize) -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| {
        let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        format!("b{}_{}", std::process::id(), secs % 1_000_000)
    });
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!("{run}_{}_{n}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Registers `count` new users on `addr`, `conc` at a time (one
/// connection per thread).
pub fn register(addr: SocketAddr, count: usize, conc: usize) -> Result<Vec<i32>, String> {
    parallel("registering users", count, conc, |conn: &mut Option<SyncClient>, i| {
        let client = match conn {
            Some(client) => client,
            None => conn.insert(SyncClient::connect(addr)?),
        };
        let request = json!({"msgid": msgid::REG, "name": fresh_name(i), "password": PASSWORD});
        let ack = client.request(&request, msgid::REG_ACK)?;
        match (ack["errno"].as_i64(), ack["id"].as_i64()) {
            (Some(0), Some(id)) => i32::try_from(id).map_err(|_| format!("id out of range: {ack}")),
            _ => Err(format!("registration refused: {ack}")),
        }
    })
}

/// Ids of `count` users on `addr`: from `file` if it lists enough (users a
/// previous run registered in the same database), else registering the
/// rest and appending them to it.
pub fn users(addr: SocketAddr, count: usize, conc: usize, file: Option<&Path>) -> Result<Vec<i32>, String> {
    let Some(file) = file else { return register(addr, count, conc) };
    let mut ids: Vec<i32> = match fs::read_to_string(file) {
        Ok(text) => text.lines().filter_map(|l| l.trim().parse().ok()).collect(),
        Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    if ids.len() < count {
        let new = register(addr, count - ids.len(), conc)?;
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(file)
            .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        let text: String = new.iter().map(|id| format!("{id}\n")).collect();
        out.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
        ids.extend(new);
    }
    ids.truncate(count);
    Ok(ids)
}

/// Logs user `id` in with the password on a new connection to `addr`,
/// keeping the resume token the LOGIN_ACK carries.
pub fn login(addr: SocketAddr, id: i32) -> Result<SyncClient, String> {
    let mut client = SyncClient::connect(addr)?;
    let started = Instant::now();
    loop {
        let ack = client.request(&json!({"msgid": msgid::LOGIN, "id": id, "password": PASSWORD}), msgid::LOGIN_ACK)?;
        match ack["errno"].as_i64() {
            Some(0) => {
                client.token = ack["token"].as_str().map(String::from);
                return Ok(client);
            }
            Some(errno::IN_USE | errno::BUSY) if started.elapsed() < IN_USE_RETRY => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Some(1) => {
                return Err(format!(
                    "user {id} cannot log in ({ack}); if it came from --users-file, that file belongs to another database: delete it"
                ));
            }
            _ => return Err(format!("login of {id} refused: {ack}")),
        }
    }
}

/// Logs each `ids[i]` in on a connection to `addr_of(i)`, `conc` at a
/// time. While a long setup runs (thousands of logins take minutes), the
/// connections already logged in send a PING every [`KEEPALIVE`], so the
/// server's idle timeout does not close them before the timed part.
pub fn login_all(
    ids: &[i32],
    addr_of: impl Fn(usize) -> SocketAddr + Sync,
    conc: usize,
) -> Result<Vec<SyncClient>, String> {
    let done: Mutex<Vec<Option<SyncClient>>> = Mutex::new((0..ids.len()).map(|_| None).collect());
    let last_ping = Mutex::new(Instant::now());
    parallel("logging in", ids.len(), conc, |_: &mut (), i| {
        let client = login(addr_of(i), ids[i])?;
        lock(&done)[i] = Some(client);
        let mut last = lock(&last_ping);
        if last.elapsed() >= KEEPALIVE {
            *last = Instant::now();
            drop(last);
            for client in lock(&done).iter_mut().flatten() {
                client.ping()?;
            }
        }
        Ok(())
    })?;
    let done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    done.into_iter().map(|c| c.ok_or_else(|| "logging in: a connection is missing".to_string())).collect()
}

/// Makes a group of `members` (logged in): the first creates it, the others
/// join. Returns its id.
pub fn make_group(members: &mut [SyncClient]) -> Result<i32, String> {
    let (first, rest) = members.split_first_mut().ok_or("a group needs members")?;
    let name = fresh_name(0);
    let ack = first.request(
        &json!({"msgid": msgid::CREATE_GROUP, "groupname": name, "groupdesc": "bench"}),
        msgid::CREATE_GROUP_ACK,
    )?;
    let group = ack["groupid"].as_i64().and_then(|g| i32::try_from(g).ok()).ok_or(format!("CREATE_GROUP: {ack}"))?;
    for member in rest {
        let ack = member.request(&json!({"msgid": msgid::ADD_GROUP, "groupid": group}), msgid::ADD_GROUP_ACK)?;
        if ack["errno"].as_i64() != Some(0) {
            return Err(format!("ADD_GROUP: {ack}"));
        }
    }
    Ok(group)
}

/// Shares of `items` for `threads` engines: item `i` goes to share
/// `i % threads`, keeping each share's order.
pub fn deal<T>(items: Vec<T>, threads: usize) -> Vec<Vec<T>> {
    let mut shares: Vec<Vec<T>> = (0..threads.max(1)).map(|_| Vec::new()).collect();
    let n = shares.len();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % n].push(item);
    }
    shares
}
