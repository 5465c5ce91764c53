//! Helpers for the bus fault tests (tests/bus_faults.rs): two servers with
//! extra arguments, raw commands to a test's own Redis, many users at once,
//! numbered message streams and the accounting of what became of them.
//!
//! Included from tests/bus_faults.rs with
//! `#[path = "support/faults.rs"] mod faults;`, after `mod common;` and
//! `mod cluster_support;`; it uses the shared harness through
//! `crate::common`.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use mysql::prelude::Queryable;
use serde_json::{Value, json};

use crate::common::{Client, Server, TestDb, unique_name};

// ------------------------------------------------------------------ servers

/// Two ChatServers on one database, each started with `args` (e.g.
/// `["--rate", "1000"]`) and `env` (e.g. `CHAT_REDIS_URL`).
pub fn two_servers_with(db: &TestDb, args: &[&str], env: &[(&str, &str)]) -> (Server, Server) {
    (Server::start_with(db, args, env), Server::start_with(db, args, env))
}

// ------------------------------------------------------------------ redis

/// Sends one command (RESP array of bulk strings) to the Redis on
/// 127.0.0.1:`port` on a connection of its own and returns the reply: the
/// text of a simple string, integer or bulk string. Panics on an error reply
/// or when Redis does not answer within 10 s.
pub fn redis_command(port: u16, args: &[&str]) -> String {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("cannot connect to the test's Redis on port {port} for {args:?}: {e}"));
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set read timeout");
    stream.set_write_timeout(Some(Duration::from_secs(10))).expect("set write timeout");
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.write_all(request.as_bytes()).unwrap_or_else(|e| panic!("sending {args:?} to Redis on {port}: {e}"));
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap_or_else(|e| panic!("reading Redis's reply to {args:?} (port {port}): {e}"));
    let body = line.get(1..).unwrap_or_default().trim_end().to_string();
    match line.as_bytes().first() {
        Some(b'+' | b':') => body,
        Some(b'-') => panic!("Redis on port {port} refused {args:?}: {body}"),
        Some(b'$') => {
            let len: i64 = body.parse().unwrap_or_else(|_| panic!("bad bulk length from Redis: {line:?}"));
            let Ok(len) = usize::try_from(len) else {
                return String::new(); // $-1: nil
            };
            let mut data = vec![0u8; len + 2];
            reader.read_exact(&mut data).unwrap_or_else(|e| panic!("reading Redis's reply to {args:?}: {e}"));
            data.truncate(len);
            String::from_utf8_lossy(&data).into_owned()
        }
        _ => panic!("unexpected reply from Redis on port {port} to {args:?}: {line:?}"),
    }
}

/// `CLIENT PAUSE <ms> ALL` on the Redis on `port`: every client's commands
/// (PUBLISH, SUBSCRIBE, UNSUBSCRIBE...) wait for `ms` milliseconds.
pub fn redis_pause_all(port: u16, ms: u64) {
    let reply = redis_command(port, &["CLIENT", "PAUSE", &ms.to_string(), "ALL"]);
    assert_eq!(reply, "OK", "CLIENT PAUSE {ms} ALL on the test's Redis (port {port})");
}

/// A numeric field of `INFO <section>` of the Redis on `port`, e.g.
/// `redis_info_number(port, "stats", "total_commands_processed")`.
pub fn redis_info_number(port: u16, section: &str, field: &str) -> u64 {
    let info = redis_command(port, &["INFO", section]);
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no numeric {field} in INFO {section} of the Redis on {port}:\n{info}"))
}

// ------------------------------------------------------------------ many at once

/// `f` applied to every item on `threads` threads (item i on thread
/// i % threads, each thread's items in order); the results in the order of
/// `items`. A panic in `f` is passed on with its own message.
pub fn in_parallel<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = threads.max(1);
    let n = items.len();
    let mut shares: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push((i, item));
    }
    let mut slots: Vec<Option<R>> = (0..n).map(|_| None).collect();
    thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| scope.spawn(move || share.into_iter().map(|(i, item)| (i, f(item))).collect::<Vec<_>>()))
            .collect();
        for handle in handles {
            match handle.join() {
                Ok(done) => {
                    for (i, r) in done {
                        slots[i] = Some(r);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
    });
    slots.into_iter().map(|r| r.expect("every item was handled")).collect()
}

/// Registers `n` fresh users named `unique_name(prefix)` with `password`,
/// spread over the servers at `addrs` (registering costs a password hash,
/// one at a time per server) on `threads` threads, a connection each per
/// server. Returns (id, name) of each, in order.
pub fn register_many(
    addrs: &[SocketAddr],
    prefix: &str,
    password: &str,
    n: usize,
    threads: usize,
) -> Vec<(i64, String)> {
    assert!(!addrs.is_empty(), "register_many needs at least one server");
    let threads = threads.max(1);
    // Thread t registers on addrs[t % addrs.len()], over one connection.
    let chunks: Vec<(usize, Vec<String>)> =
        (0..threads).map(|t| (t, (0..n).filter(|i| i % threads == t).map(|_| unique_name(prefix)).collect())).collect();
    let per_thread = in_parallel(chunks, threads, |(t, names)| {
        let mut c = Client::connect(addrs[t % addrs.len()]);
        names.into_iter().map(|name| (c.register(&name, password), name)).collect::<Vec<_>>()
    });
    // Back to the order 0..n: item i was the (i / threads)-th of thread i % threads.
    let mut iters: Vec<_> = per_thread.into_iter().map(Vec::into_iter).collect();
    (0..n).map(|i| iters[i % threads].next().expect("one user per index")).collect()
}

/// Like [`register_many`], but only the first user is registered through
/// the server (REG at `addr`); the others are inserted straight into table
/// `user` with a copy of that user's stored password hash (salted argon2id:
/// the same password checks out against it), skipping `n - 1` slow hashes.
/// For tests about what happens after login, not about registering.
pub fn register_many_fast(db: &TestDb, addr: SocketAddr, prefix: &str, password: &str, n: usize) -> Vec<(i64, String)> {
    register_many_fast_in(&mut db.conn(), addr, prefix, password, n)
}

/// [`register_many_fast`] on the server's database reached through `conn`
/// (a throwaway MariaDB's, say).
pub fn register_many_fast_in(
    conn: &mut mysql::Conn,
    addr: SocketAddr,
    prefix: &str,
    password: &str,
    n: usize,
) -> Vec<(i64, String)> {
    if n == 0 {
        return Vec::new();
    }
    let first_name = unique_name(prefix);
    let first = Client::connect(addr).register(&first_name, password);
    let hash: String = conn
        .exec_first("SELECT password FROM user WHERE id = ?", (first,))
        .expect("reading a password hash")
        .unwrap_or_else(|| panic!("user {first}, just registered, has no row in table user"));
    let mut users = vec![(first, first_name)];
    let names: Vec<String> = (1..n).map(|_| unique_name(prefix)).collect();
    for chunk in names.chunks(500) {
        let rows = vec!["(?, ?)"; chunk.len()].join(", ");
        let params: Vec<mysql::Value> = chunk
            .iter()
            .flat_map(|name| [mysql::Value::from(name.as_str()), mysql::Value::from(hash.as_str())])
            .collect();
        conn.exec_drop(format!("INSERT INTO user (name, password) VALUES {rows}"), params)
            .unwrap_or_else(|e| panic!("inserting {} users into table user: {e}", chunk.len()));
        let marks = vec!["?"; chunk.len()].join(", ");
        let found: Vec<(i64, String)> = conn
            .exec(format!("SELECT id, name FROM user WHERE name IN ({marks})"), chunk.to_vec())
            .unwrap_or_else(|e| panic!("reading back the ids of {} inserted users: {e}", chunk.len()));
        let ids: HashMap<String, i64> = found.into_iter().map(|(id, name)| (name, id)).collect();
        users.extend(chunk.iter().map(|name| (ids[name], name.clone())));
    }
    users
}

/// Logs each of `users` in on a connection of its own to `addr`, `threads`
/// at a time; every login must succeed. The clients, in the order of `users`.
pub fn login_many(addr: SocketAddr, users: &[(i64, String)], password: &str, threads: usize) -> Vec<Client> {
    let ids: Vec<i64> = users.iter().map(|(id, _)| *id).collect();
    in_parallel(ids, threads, |id| {
        let mut c = Client::connect(addr);
        c.login_ok(id, password);
        c
    })
}

// ------------------------------------------------------------------ streams

/// Sets the flag when dropped, also while unwinding from a panic: a thread
/// that waits for the flag then ends instead of running to its timeout.
pub struct SetOnDrop<'a>(pub &'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sleeps until the `k`-th message of a stream that started at `start` and
/// runs at `per_sec` messages a second is due (pacing, not a wait for an
/// event).
pub fn pace(start: Instant, k: usize, per_sec: f64) {
    let due = start + Duration::from_secs_f64(k as f64 / per_sec);
    let now = Instant::now();
    if due > now {
        thread::sleep(due - now);
    }
}

/// Sends PING and returns every frame that came before its PONG, waiting up
/// to `timeout` in all (a busy server may have a backlog to work through
/// first). Panics if no PONG comes or the connection closes.
pub fn ping_collect(c: &mut Client, timeout: Duration, who: &str) -> Vec<Value> {
    c.send(&json!({"msgid": 16}));
    let deadline = Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Some(v) = c.try_recv(left) else {
            panic!("{who}: no PONG within {timeout:?} of its PING; frames meanwhile: {before:?}");
        };
        if v["msgid"].as_i64() == Some(17) {
            return before;
        }
        before.push(v);
    }
}

/// Everything `c` receives until `done()` holds and nothing has come for
/// `quiet` since (or since `done()` was first seen); panics after `limit`.
pub fn collect_until_quiet(
    c: &mut Client,
    done: impl Fn() -> bool,
    quiet: Duration,
    limit: Duration,
    who: &str,
) -> Vec<Value> {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut last = Instant::now();
    let mut done_seen = false;
    loop {
        if let Some(v) = c.try_recv(Duration::from_millis(200)) {
            got.push(v);
            last = Instant::now();
        } else {
            if !done_seen && done() {
                done_seen = true;
                last = last.max(Instant::now());
            }
            if done_seen && last.elapsed() >= quiet {
                return got;
            }
        }
        assert!(
            start.elapsed() < limit,
            "{who}: still receiving (or the stream not done) after {limit:?}; got {} frames so far",
            got.len()
        );
    }
}

/// The texts of the ONE_CHATs from `from` to `to` among `frames`, in order,
/// and every other frame (not a ONE_CHAT, or one with other ids).
pub fn chats_from(frames: &[Value], from: i64, to: i64) -> (Vec<String>, Vec<Value>) {
    let mut texts = Vec::new();
    let mut other = Vec::new();
    for v in frames {
        let is_ours =
            v["msgid"].as_i64() == Some(6) && v["id"].as_i64() == Some(from) && v["toid"].as_i64() == Some(to);
        match v["msg"].as_str() {
            Some(text) if is_ours => texts.push(text.to_string()),
            _ => other.push(v.clone()),
        }
    }
    (texts, other)
}

/// What became of a numbered stream: each message sent should be live or
/// stored, exactly once, and each of the two in the order sent.
#[derive(Debug, Default)]
pub struct Accounting {
    pub sent: usize,
    pub live: usize,
    pub stored: usize,
    /// Sent, but neither live nor stored.
    pub missing: Vec<String>,
    /// Received more than once (live and stored together), with the count.
    pub duplicated: Vec<(String, usize)>,
    /// Received but never sent.
    pub unknown: Vec<String>,
    /// The first pair (earlier, later) of live messages that came in the
    /// wrong order, if any.
    pub live_out_of_order: Option<(String, String)>,
    /// The same for stored ones.
    pub stored_out_of_order: Option<(String, String)>,
}

/// The first adjacent pair of `texts` whose send positions go backwards.
fn first_inversion(texts: &[String], position: &HashMap<&str, usize>) -> Option<(String, String)> {
    let known: Vec<(&String, usize)> = texts.iter().filter_map(|t| Some((t, *position.get(t.as_str())?))).collect();
    known.windows(2).find(|w| w[1].1 <= w[0].1).map(|w| (w[0].0.clone(), w[1].0.clone()))
}

impl Accounting {
    pub fn new(sent: &[String], live: &[String], stored: &[String]) -> Accounting {
        let position: HashMap<&str, usize> = sent.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for t in live.iter().chain(stored) {
            *seen.entry(t.as_str()).or_default() += 1;
        }
        Accounting {
            sent: sent.len(),
            live: live.len(),
            stored: stored.len(),
            missing: sent.iter().filter(|t| !seen.contains_key(t.as_str())).cloned().collect(),
            duplicated: seen.iter().filter(|(_, n)| **n > 1).map(|(t, n)| (t.to_string(), *n)).collect(),
            unknown: seen.keys().filter(|t| !position.contains_key(*t)).map(|t| t.to_string()).collect(),
            live_out_of_order: first_inversion(live, &position),
            stored_out_of_order: first_inversion(stored, &position),
        }
    }

    /// Whether every message was received exactly once, in order per kind.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty()
            && self.duplicated.is_empty()
            && self.unknown.is_empty()
            && self.live_out_of_order.is_none()
            && self.stored_out_of_order.is_none()
    }

    /// One line saying what went wrong (or the counts when nothing did).
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} sent, {} live, {} stored", self.sent, self.live, self.stored)];
        let few = |list: &[String]| {
            let head: Vec<&str> = list.iter().take(10).map(String::as_str).collect();
            format!("{head:?}{}", if list.len() > 10 { " ..." } else { "" })
        };
        if !self.missing.is_empty() {
            parts.push(format!("{} LOST (neither live nor stored): {}", self.missing.len(), few(&self.missing)));
        }
        if !self.duplicated.is_empty() {
            let head: Vec<_> = self.duplicated.iter().take(10).collect();
            parts.push(format!("{} DUPLICATED: {head:?}", self.duplicated.len()));
        }
        if !self.unknown.is_empty() {
            parts.push(format!("{} never sent: {}", self.unknown.len(), few(&self.unknown)));
        }
        if let Some((a, b)) = &self.live_out_of_order {
            parts.push(format!("live out of order: {b:?} came after {a:?}"));
        }
        if let Some((a, b)) = &self.stored_out_of_order {
            parts.push(format!("stored out of order: {b:?} after {a:?}"));
        }
        parts.join("; ")
    }
}
