//! One connection to the server and the menus driven over it.
//!
//! Three threads share the socket:
//! - the main thread reads standard input, sends requests and, for those
//!   that get an ACK, waits for it on a channel;
//! - the reader thread splits what the server sends into frames, prints
//!   pushed messages at once and hands ACKs to the main thread; when the
//!   connection drops while a user is logged in, it reconnects (back-off
//!   from 0.2 s doubling to 5 s; through nginx that reaches a surviving
//!   server), logs in again with the session's resume token and swaps the
//!   new socket in, while the main thread refuses what is typed meanwhile;
//! - a pinger sends PING every minute so the server's idle timeout never
//!   cuts a client that is alive but quiet.

use std::cell::RefCell;
use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::args::Target;
use super::command::{self, Command, CommandError};
use super::format;
use super::roster::{Person, Roster};
use super::term::{self, Input};
use super::wire::{self, JsonStream, ValueTooLarge};
use chatserver::service::clock;

/// How long the client waits for the server to answer a request.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to one resolved address may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Well under the server's default idle timeout of 300 s.
const PING_EVERY: Duration = Duration::from_secs(60);
/// Reconnect back-off: the first try, and the longest wait between tries.
const FIRST_RETRY: Duration = Duration::from_millis(200);
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How long a reconnect's token LOGIN may take before the next try.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// Handed to a request waiting for its ACK when the connection drops (no
/// msgid of the protocol is negative).
const DISCONNECTED: i64 = -1;
/// Said for a line typed while the client reconnects.
const NOT_CONNECTED: &str = "[ERROR]: not connected to the server (reconnecting); that was not sent";
/// What [`Session::request`] waits for when it waits for nothing.
const NOTHING: i64 = 0;
/// The longest the reader holds back what follows an answer until the
/// main thread has printed it (it normally takes microseconds).
const HOLD_AT_MOST: Duration = Duration::from_secs(5);

/// A frame the reader hands to the main thread. Until `printed` is dropped
/// the reader prints nothing more, so a message right behind a LOGIN_ACK
/// comes after the login box, not before it.
struct Handover {
    msg: Value,
    printed: Sender<()>,
}

/// Why the menus stopped; each ends the client with status 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Quit,
    EndOfInput,
    ServerClosed,
}

/// What came back for a request.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    /// The ACK that was asked for.
    Ack(Value),
    /// An ERROR frame that arrived while waiting: the server refused.
    Error(Value),
    Timeout,
    /// The connection is down: the request was not sent, or its answer is
    /// lost with the connection.
    NotConnected,
    /// Not sent: this line says why.
    NotSent(String),
}

/// What the reader does with one frame from the server.
#[derive(Debug, Clone, PartialEq)]
enum Route {
    /// Hand it to the main thread waiting for a reply.
    Reply,
    /// Print this line now.
    Print(String),
    Ignore,
}

/// Error numbers that come as an ERROR instead of the ACK a request waits
/// for: the request itself was refused (malformed, unknown, not logged in,
/// rate-limited). Other ERRORs answer earlier chat messages.
const REFUSALS: [i64; 4] = [100, 101, 102, 104];

/// Where a frame goes. ACKs always go to the main thread (which drops those
/// it no longer waits for); an ERROR refusing a request answers the one
/// being waited for, if any; other frames are printed as they come.
fn route(msg: &Value, waiting: bool) -> Route {
    let errno = msg.get("errno").and_then(Value::as_i64).unwrap_or_default();
    match wire::msgid(msg) {
        Some(wire::LOGIN_ACK | wire::REG_ACK | wire::ADD_FRIEND_ACK | wire::CREATE_GROUP_ACK | wire::ADD_GROUP_ACK) => {
            Route::Reply
        }
        Some(wire::ERROR) if waiting && REFUSALS.contains(&errno) => Route::Reply,
        // PONG needs nothing; unknown kinds are newer additions to skip.
        _ => format::push(msg).map_or(Route::Ignore, Route::Print),
    }
}

/// The logged-in user, as the server confirmed it.
struct Me {
    id: i64,
    name: String,
    /// Whether the server answers ADD_FRIEND, CREATE_GROUP and ADD_GROUP.
    /// The original C++ server answers none of them (nor sends a token,
    /// which is how it is told apart).
    answers: bool,
}

/// Said after a request that the original C++ server carries out silently.
const UNANSWERED: &str = "sent; this server does not answer it (the lists show it at the next login)";

/// The writing half of the connection, shared by the main thread, the
/// pinger and the reader (which swaps in a new socket after a reconnect);
/// the lock keeps each frame whole on the wire.
struct Connection {
    stream: Mutex<TcpStream>,
    /// False while the connection is down and the reader reconnects.
    up: AtomicBool,
    /// The logged-in user's id and resume token: what a reconnect logs in
    /// with. None before login and after `loginout`.
    resume: Mutex<Option<(i64, String)>>,
}

impl Connection {
    fn send(&self, frame: &[u8]) -> io::Result<()> {
        // A poisoned lock only means another writer panicked; the stream
        // itself is still usable.
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        stream.write_all(frame)
    }

    fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    fn resume(&self) -> Option<(i64, String)> {
        self.resume.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_resume(&self, resume: Option<(i64, String)>) {
        *self.resume.lock().unwrap_or_else(|e| e.into_inner()) = resume;
    }
}

/// Connects, starts the reader and the pinger, runs the menus, and ends
/// the process.
pub fn run(target: &Target) -> ! {
    let stream = match connect(target) {
        Ok(stream) => stream,
        Err(reason) => term::fail(&format!("cannot connect to {target}: {reason}; is ChatServer running?"), 1),
    };
    match start(stream, target.clone()) {
        Ok(mut session) => match session.main_menu() {
            Exit::Quit => term::finish("bye", 0),
            Exit::EndOfInput => term::finish("end of input, bye", 0),
            Exit::ServerClosed => term::finish("server closed the connection", 0),
        },
        Err(e) => term::fail(&format!("cannot start the client: {e}"), 1),
    }
}

/// The first address of `target` that accepts a connection.
fn connect(target: &Target) -> Result<TcpStream, String> {
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve '{}': {e}", target.host))?;
    let mut last = String::from("no address found");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

/// What the reader and the main thread both keep up to date.
#[derive(Default)]
struct Shared {
    /// The msgid of the ACK the main thread waits for, else [`NOTHING`]. An
    /// ERROR refusing a request answers it as well; the reader clears it
    /// when it hands over the answer, so a later ERROR is printed.
    expecting: AtomicI64,
    /// Taken in by the reader in the order messages arrive.
    roster: Mutex<Roster>,
}

impl Shared {
    fn roster(&self) -> std::sync::MutexGuard<'_, Roster> {
        self.roster.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn start(stream: TcpStream, target: Target) -> io::Result<Session> {
    // Typed messages are small and should leave at once, not wait for Nagle;
    // failing to set it only costs latency.
    let _ = stream.set_nodelay(true);
    let reading = stream.try_clone()?;
    let (acks_tx, acks) = mpsc::channel();
    let shared = Arc::new(Shared::default());
    let reader_shared = Arc::clone(&shared);
    let conn = Arc::new(Connection { stream: Mutex::new(stream), up: AtomicBool::new(true), resume: Mutex::new(None) });
    let reader_conn = Arc::clone(&conn);
    thread::Builder::new()
        .name("reader".into())
        .spawn(move || read_server(reading, &reader_conn, &target, &acks_tx, &reader_shared))?;
    let pinger_conn = Arc::clone(&conn);
    thread::Builder::new().name("pinger".into()).spawn(move || ping_forever(&pinger_conn))?;
    Ok(Session { conn, acks, held: RefCell::new(None), shared, input: Input::default() })
}

/// The reader thread: frames in, lines out or replies handed over. When
/// the server goes away it reconnects if a user is logged in, and ends the
/// whole client if not.
fn read_server(mut stream: TcpStream, conn: &Connection, target: &Target, acks: &Sender<Handover>, shared: &Shared) {
    loop {
        read_frames(&mut stream, acks, shared);
        let Some((id, token)) = conn.resume() else { term::finish("server closed the connection", 0) };
        conn.up.store(false, Ordering::SeqCst);
        // A request waiting for its ACK will not get it on this connection.
        let (printed, _) = mpsc::channel();
        let _ = acks.send(Handover { msg: json!({ "msgid": DISCONNECTED }), printed });
        term::line(&format!("[connection lost] reconnecting to {target} ..."));
        let (fresh, ack) = reconnect(target, id, &token);
        let Ok(writing) = fresh.try_clone() else { continue };
        *conn.stream.lock().unwrap_or_else(|e| e.into_inner()) = writing;
        conn.set_resume(Some((id, format::text(&ack, "token"))));
        shared.roster().observe(&ack);
        conn.up.store(true, Ordering::SeqCst);
        let mut lines = vec!["reconnected".to_string()];
        lines.extend(format::stored(&ack));
        term::lines(&lines);
        stream = fresh;
    }
}

/// Reads and routes frames until the connection ends.
fn read_frames(stream: &mut TcpStream, acks: &Sender<Handover>, shared: &Shared) {
    let mut decoder = JsonStream::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(ValueTooLarge) => term::finish(
                    &format!("[ERROR]: the server sent a message over {} MiB; disconnecting", wire::MAX_FRAME >> 20),
                    1,
                ),
            };
            // A frame that is not a JSON object is skipped, not fatal.
            let Some(msg) = wire::parse_frame(&frame) else {
                continue;
            };
            shared.roster().observe(&msg);
            let expecting = shared.expecting.load(Ordering::SeqCst);
            match route(&msg, expecting != NOTHING) {
                Route::Reply => {
                    let answer = wire::msgid(&msg).is_some_and(|id| id == expecting || id == wire::ERROR);
                    if answer {
                        // Answered: what comes after it is not the answer.
                        let _ =
                            shared.expecting.compare_exchange(expecting, NOTHING, Ordering::SeqCst, Ordering::SeqCst);
                    }
                    let (printed, done) = mpsc::channel();
                    match acks.send(Handover { msg, printed }) {
                        // Ends at once for a frame the main thread drops.
                        Ok(()) if answer => {
                            let _ = done.recv_timeout(HOLD_AT_MOST);
                        }
                        Ok(()) => {}
                        // The main thread is gone only while the process
                        // ends; an ERROR is still worth showing then.
                        Err(mpsc::SendError(Handover { msg, .. })) => {
                            if let Some(line) = format::push(&msg) {
                                term::line(&line);
                            }
                        }
                    }
                }
                Route::Print(line) => term::line(&line),
                Route::Ignore => {}
            }
        }
    }
}

/// Connects again and logs in with the token, waiting 0.2 s, then twice as
/// long after each failure up to 5 s, until it works; returns the new
/// socket and its LOGIN_ACK. A refused token (expired, revoked) ends the
/// client: the user must log in with the password again.
fn reconnect(target: &Target, id: i64, token: &str) -> (TcpStream, Value) {
    let mut wait = FIRST_RETRY;
    loop {
        thread::sleep(wait);
        wait = (wait * 2).min(MAX_RETRY);
        let Ok(stream) = connect(target) else { continue };
        match resume(stream, id, token) {
            Ok(done) => return done,
            Err(Some(reason)) => {
                term::finish(&format!("could not log in again ({reason}); start the client and log in"), 1)
            }
            Err(None) => {}
        }
    }
}

/// Sends the token LOGIN on a new socket and reads its LOGIN_ACK. `Err`
/// with a reason when the server refused the token, without one when it is
/// worth trying again (the old session still closing, a busy or slow
/// server, a connection lost again).
fn resume(mut stream: TcpStream, id: i64, token: &str) -> Result<(TcpStream, Value), Option<String>> {
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(RESUME_TIMEOUT)).map_err(|_| None)?;
    stream.write_all(&wire::encode(&json!({ "msgid": wire::LOGIN, "id": id, "token": token }))).map_err(|_| None)?;
    let mut decoder = JsonStream::default();
    let mut buf = vec![0u8; 64 * 1024];
    let ack = 'read: loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => n,
        };
        decoder.push(&buf[..n]);
        while let Ok(Some(frame)) = decoder.next_frame() {
            if let Some(msg) = wire::parse_frame(&frame)
                && wire::msgid(&msg) == Some(wire::LOGIN_ACK)
            {
                break 'read msg;
            }
        }
    };
    match format::errno(&ack) {
        0 => {
            stream.set_read_timeout(None).map_err(|_| None)?;
            Ok((stream, ack))
        }
        1 => Err(Some(format::ack_reason(&ack))),
        _ => Err(None),
    }
}

fn ping_forever(conn: &Connection) {
    loop {
        thread::sleep(PING_EVERY);
        // A failure is the reader's to notice; the next PING goes out on
        // the connection it makes.
        if conn.is_up() {
            let _ = conn.send(&wire::encode(&json!({ "msgid": wire::PING })));
        }
    }
}

/// The main thread's side of the connection.
struct Session {
    conn: Arc<Connection>,
    acks: Receiver<Handover>,
    /// The handover of the last answer, dropped once it has been printed
    /// (when the main thread reads input or sends again).
    held: RefCell<Option<Sender<()>>>,
    shared: Arc<Shared>,
    input: Input,
}

impl Session {
    fn prompt(&mut self, prompt: &str) -> Result<String, Exit> {
        self.printed();
        self.input.prompt(prompt).ok_or(Exit::EndOfInput)
    }

    /// Everything about the last answer is printed: the reader goes on.
    fn printed(&self) {
        self.held.borrow_mut().take();
    }

    /// Sends `msg`. One too long for the server, or any while the connection
    /// is down, is refused with a line saying so, never kept to be sent
    /// later.
    fn send(&self, msg: &Value) -> Result<(), Exit> {
        let frame = match checked(msg) {
            Ok(frame) => frame,
            Err(why) => {
                term::line(&why);
                return Ok(());
            }
        };
        if !self.conn.is_up() || self.conn.send(&frame).is_err() {
            // Logged in, the reader reconnects; else it ends the client.
            term::line(NOT_CONNECTED);
        }
        Ok(())
    }

    /// Sends `msg` and waits for the ACK with msgid `expect` (or an ERROR).
    fn request(&self, msg: &Value, expect: i64) -> Result<Reply, Exit> {
        let frame = match checked(msg) {
            Ok(frame) => frame,
            Err(why) => return Ok(Reply::NotSent(why)),
        };
        // Replies to earlier requests that timed out would be mistaken for
        // this one's.
        self.printed();
        while self.acks.try_recv().is_ok() {}
        if !self.conn.is_up() {
            return Ok(Reply::NotConnected);
        }
        // Before sending: the answer may come at once.
        self.shared.expecting.store(expect, Ordering::SeqCst);
        let reply = match self.conn.send(&frame) {
            Ok(()) => self.await_reply(expect),
            Err(_) => Ok(Reply::NotConnected),
        };
        self.shared.expecting.store(NOTHING, Ordering::SeqCst);
        reply
    }

    fn await_reply(&self, expect: i64) -> Result<Reply, Exit> {
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.acks.recv_timeout(left) {
                Ok(Handover { msg, printed }) => {
                    let reply = match wire::msgid(&msg) {
                        Some(id) if id == expect => Reply::Ack(msg),
                        Some(wire::ERROR) => Reply::Error(msg),
                        Some(DISCONNECTED) => Reply::NotConnected,
                        // A late ACK of an earlier request: not ours.
                        _ => continue,
                    };
                    *self.held.borrow_mut() = Some(printed);
                    return Ok(reply);
                }
                Err(RecvTimeoutError::Timeout) => return Ok(Reply::Timeout),
                Err(RecvTimeoutError::Disconnected) => return Err(Exit::ServerClosed),
            }
        }
    }

    /// The first menu, until quit, end of input or a lost connection.
    fn main_menu(&mut self) -> Exit {
        loop {
            term::lines(&format::MAIN_MENU);
            let step = match self.prompt("choice:") {
                Err(exit) => Err(exit),
                Ok(choice) => match choice.trim() {
                    "1" => self.login(),
                    "2" => self.register(),
                    "3" | "quit" | "exit" => Err(Exit::Quit),
                    _ => {
                        term::line("invalid input!");
                        Ok(())
                    }
                },
            };
            if let Err(exit) = step {
                return exit;
            }
        }
    }

    fn login(&mut self) -> Result<(), Exit> {
        let Ok(id) = command::parse_id(&self.prompt("userid:")?) else {
            term::line("invalid userid!");
            return Ok(());
        };
        let password = self.input.password("userpassword:").ok_or(Exit::EndOfInput)?;
        let request = json!({ "msgid": wire::LOGIN, "id": id, "password": password });
        match self.request(&request, wire::LOGIN_ACK)? {
            Reply::Ack(ack) if format::errno(&ack) == 0 => {
                let token = ack.get("token").and_then(Value::as_str);
                let me = Me {
                    id: ack.get("id").and_then(Value::as_i64).unwrap_or(id),
                    name: format::text(&ack, "name"),
                    answers: token.is_some(),
                };
                // Before anything else, so that a drop from now on reconnects.
                // An older server sends no token: then a lost connection ends
                // the client, as it always did.
                if let Some(token) = token {
                    self.conn.set_resume(Some((me.id, token.to_string())));
                }
                term::lines(&format::login(&ack));
                self.printed();
                let done = self.chat(&me);
                self.conn.set_resume(None);
                done
            }
            // The original prints the server's reason as is, e.g.
            // `id or password is invalid!`.
            Reply::Ack(ack) => {
                term::line(&format::ack_reason(&ack));
                Ok(())
            }
            other => {
                term::line(&failure(&other));
                Ok(())
            }
        }
    }

    fn register(&mut self) -> Result<(), Exit> {
        let name = self.prompt("username:")?;
        let password = self.input.password("userpassword:").ok_or(Exit::EndOfInput)?;
        let request = json!({ "msgid": wire::REG, "name": name, "password": password });
        let reply = self.request(&request, wire::REG_ACK)?;
        term::line(&answer(&reply, |ack| format::register(&name, ack)));
        Ok(())
    }

    /// The command loop after login, until `loginout` or `quit`.
    fn chat(&mut self, me: &Me) -> Result<(), Exit> {
        term::lines(&format::help());
        loop {
            self.printed();
            let line = self.input.command().ok_or(Exit::EndOfInput)?;
            match command::parse_command(&line) {
                Ok(Command::LoginOut | Command::Quit) if !self.conn.is_up() => term::line(NOT_CONNECTED),
                Ok(cmd @ (Command::LoginOut | Command::Quit)) => {
                    // The connection stays open for the next login, as in
                    // the original. No reconnect once the server has it.
                    self.conn.set_resume(None);
                    self.send(&json!({ "msgid": wire::LOGOUT, "id": me.id }))?;
                    return if cmd == Command::Quit { Err(Exit::Quit) } else { Ok(()) };
                }
                Ok(cmd) => self.execute(me, cmd)?,
                Err(CommandError::Empty) => {}
                Err(e) => term::line(&e.to_string()),
            }
        }
    }

    /// Sends a request that this server answers with an ACK `expect`, and
    /// waits for it; None for a server that does not answer it.
    fn ask(&self, me: &Me, request: &Value, expect: i64) -> Result<Option<Reply>, Exit> {
        if me.answers {
            return self.request(request, expect).map(Some);
        }
        self.send(request)?;
        term::line(UNANSWERED);
        Ok(None)
    }

    /// Carries out one command other than `loginout` and `quit`. `id`,
    /// `name` and `time` go along because the original server wants them
    /// (it passes chat messages on as they came); this server ignores them.
    fn execute(&self, me: &Me, cmd: Command) -> Result<(), Exit> {
        match cmd {
            Command::Help => term::lines(&format::help()),
            Command::Friends => term::lines(&self.shared.roster().friend_lines()),
            Command::Groups => term::lines(&self.shared.roster().group_lines()),
            Command::Chat { to, msg } => self.send(&json!({
                "msgid": wire::ONE_CHAT, "id": me.id, "name": me.name,
                "toid": to, "msg": msg, "time": clock::now_stamp(),
            }))?,
            Command::GroupChat { group, msg } => self.send(&json!({
                "msgid": wire::GROUP_CHAT, "id": me.id, "name": me.name,
                "groupid": group, "msg": msg, "time": clock::now_stamp(),
            }))?,
            Command::AddFriend { friend } => {
                let request = json!({ "msgid": wire::ADD_FRIEND, "id": me.id, "friendid": friend });
                if let Some(reply) = self.ask(me, &request, wire::ADD_FRIEND_ACK)? {
                    term::line(&answer(&reply, format::add_friend));
                }
            }
            Command::CreateGroup { name, desc } => {
                let request = json!({
                    "msgid": wire::CREATE_GROUP, "id": me.id,
                    "groupname": name, "groupdesc": desc,
                });
                let Some(reply) = self.ask(me, &request, wire::CREATE_GROUP_ACK)? else { return Ok(()) };
                if let Some(id) = succeeded(&reply, "groupid") {
                    let me = Person { id: me.id, name: me.name.clone(), state: "online".into() };
                    self.shared.roster().created(id, &name, &desc, me);
                }
                term::line(&answer(&reply, format::create_group));
            }
            Command::AddGroup { group } => {
                let request = json!({ "msgid": wire::ADD_GROUP, "id": me.id, "groupid": group });
                let Some(reply) = self.ask(me, &request, wire::ADD_GROUP_ACK)? else { return Ok(()) };
                if succeeded(&reply, "groupid").is_some() {
                    self.shared.roster().joined(group);
                }
                term::line(&answer(&reply, |ack| format::add_group(ack, group)));
            }
            // `chat` handles them: they leave the command loop.
            Command::LoginOut | Command::Quit => {}
        }
        Ok(())
    }
}

/// `msg` as a frame, unless it is too long for the server: then the line
/// that says so.
fn checked(msg: &Value) -> Result<Vec<u8>, String> {
    let frame = wire::encode(msg);
    // The NUL at the end does not count.
    let size = frame.len().saturating_sub(1);
    if size > wire::MAX_SEND {
        return Err(format!("[ERROR]: message too long ({size} bytes; the server takes {}); not sent", wire::MAX_SEND));
    }
    Ok(frame)
}

/// The integer `key` of a successful ACK; an ACK without it (the original's
/// ADD_GROUP_ACK) counts as success with 0.
fn succeeded(reply: &Reply, key: &str) -> Option<i64> {
    match reply {
        Reply::Ack(ack) if format::errno(ack) == 0 => Some(ack.get(key).and_then(Value::as_i64).unwrap_or(0)),
        _ => None,
    }
}

/// The line for a reply: `on_ack` formats the ACK, whatever its errno.
fn answer(reply: &Reply, on_ack: impl FnOnce(&Value) -> String) -> String {
    match reply {
        Reply::Ack(ack) => on_ack(ack),
        other => failure(other),
    }
}

/// The line for a request that got no ACK.
fn failure(reply: &Reply) -> String {
    match reply {
        Reply::Error(msg) => format::error(msg),
        Reply::Timeout => format!("[ERROR]: no reply from the server within {} s", ACK_TIMEOUT.as_secs()),
        Reply::NotConnected => NOT_CONNECTED.to_string(),
        Reply::NotSent(why) => why.clone(),
        Reply::Ack(ack) => format::ack_error(ack),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_go_to_the_main_thread() {
        for id in [2, 5, 12, 13, 14] {
            assert_eq!(route(&json!({ "msgid": id, "errno": 0 }), false), Route::Reply);
        }
    }

    #[test]
    fn errors_answer_a_waiting_request_or_are_printed() {
        let error = json!({ "msgid": 11, "errno": 102, "msg": "not logged in" });
        assert_eq!(route(&error, true), Route::Reply);
        assert_eq!(route(&error, false), Route::Print("[ERROR]: not logged in".into()));
        // An error about an earlier chat message is no answer to the request.
        let chat_error = json!({ "msgid": 11, "errno": 200, "msg": "no such user" });
        assert_eq!(route(&chat_error, true), Route::Print("[ERROR]: no such user".into()));
    }

    #[test]
    fn pushes_are_printed_even_while_waiting() {
        let chat = json!({ "msgid": 6, "id": 2, "name": "li", "msg": "hi", "time": "t" });
        assert_eq!(route(&chat, true), Route::Print("t [2]li said: hi".into()));
        let presence = json!({ "msgid": 15, "id": 2, "name": "li", "state": "online" });
        assert_eq!(route(&presence, false), Route::Print("[2]li is online".into()));
    }

    #[test]
    fn pong_and_unknown_kinds_are_ignored() {
        assert_eq!(route(&json!({ "msgid": 17 }), false), Route::Ignore);
        assert_eq!(route(&json!({ "msgid": 99 }), true), Route::Ignore);
        assert_eq!(route(&json!({ "hello": 1 }), false), Route::Ignore);
    }

    #[test]
    fn frames_over_the_servers_limit_are_not_sent() {
        // `{"msg":"…"}` is 10 bytes around the text.
        let fits = json!({ "msg": "x".repeat(wire::MAX_SEND - 10) });
        assert_eq!(checked(&fits).map(|frame| frame.len()), Ok(wire::MAX_SEND + 1));
        let over = json!({ "msg": "x".repeat(wire::MAX_SEND - 9) });
        assert_eq!(
            checked(&over),
            Err("[ERROR]: message too long (65537 bytes; the server takes 65536); not sent".to_string())
        );
        // Escapes count as what goes on the wire, not as typed.
        assert!(checked(&json!({ "msg": "\u{1}".repeat(wire::MAX_SEND / 6 + 1) })).is_err());
    }

    #[test]
    fn failures_say_why() {
        assert_eq!(failure(&Reply::Timeout), "[ERROR]: no reply from the server within 30 s");
        assert_eq!(
            failure(&Reply::Error(json!({ "msgid": 11, "errno": 500, "msg": "storage unavailable" }))),
            "[ERROR]: storage unavailable"
        );
        assert_eq!(
            answer(&Reply::Ack(json!({ "msgid": 13, "errno": 0, "groupid": 3 })), format::create_group),
            "create group success, groupid is 3"
        );
    }
}
