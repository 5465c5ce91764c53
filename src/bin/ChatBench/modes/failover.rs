//! failover: N users logged in on the ChatServer at `--addr`, each keeping
//! the resume token of its LOGIN_ACK. Then the bench KILLS that server
//! (SIGKILL: this mode exists to do that) and at once every user connects
//! to the server at `--addr2` and logs in with its token, `--conc` logins in
//! flight over `--threads` engines, as a cluster's clients do when their
//! server dies (SPEC §5). Measured from the kill: when each user's
//! successful LOGIN_ACK came, and when the last one did.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::super::engine::{self, Io, Workload};
use super::super::hist::Histogram;
use super::super::procfs;
use super::super::report::Metrics;
use super::super::setup::{self, deal};
use super::super::target::Target;
use super::super::wire::{self, Secret, errno, msgid};
use super::{BUSY_RETRY, tokens, users};
use crate::args::Options;

/// How long a login refused with errno 2 or 501 waits before it is sent
/// again (errno 2 too: the user's old session may still be ending).
const RETRY_AFTER: Duration = BUSY_RETRY;
/// Users not back this long after the kill are counted as failed.
const GIVE_UP: Duration = Duration::from_secs(60);

/// Why a user did not get back in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    /// A LOGIN_ACK with this errno (not one that is retried).
    Errno(i64),
    /// No connection to `--addr2`.
    Connect,
    /// The server closed the connection before the LOGIN_ACK.
    Closed,
    /// Still refused, or unanswered, at [`GIVE_UP`].
    GaveUp,
}

impl Failure {
    fn text(self) -> String {
        match self {
            Failure::Errno(n) => format!("errno {n}"),
            Failure::Connect => "no connection".into(),
            Failure::Closed => "connection closed before the LOGIN_ACK".into(),
            Failure::GaveUp => format!("not back after {} s", GIVE_UP.as_secs()),
        }
    }
}

/// Where a user is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not yet connected to `--addr2`.
    Queued,
    /// LOGIN sent (or refused and due again) on connection `conn`.
    Trying {
        conn: usize,
    },
    Back,
    Failed,
}

struct User {
    id: i32,
    token: Vec<u8>,
    state: State,
}

/// One engine's share of the users, each logging in on a connection of
/// its own (kept open once back), at most `limit` at a time.
struct Failover {
    users: Vec<User>,
    addr: SocketAddr,
    killed: Instant,
    limit: usize,
    /// Users `0..next` have been started.
    next: usize,
    /// Users trying now (connected, not back, not failed).
    trying: usize,
    /// The user of each connection (connections are only added here, in order).
    owner: Vec<usize>,
    /// Logins refused with errno 2 or 501, with when to send them again.
    due: VecDeque<(Instant, usize)>,
    /// Time from the kill to each successful LOGIN_ACK, nanoseconds.
    back: Histogram,
    retries: u64,
    failures: BTreeMap<Failure, u64>,
    connect_error: Option<String>,
}

impl Failover {
    fn new(users: Vec<(i32, Vec<u8>)>, addr: SocketAddr, killed: Instant, limit: usize) -> Failover {
        Failover {
            users: users.into_iter().map(|(id, token)| User { id, token, state: State::Queued }).collect(),
            addr,
            killed,
            limit: limit.max(1),
            next: 0,
            trying: 0,
            owner: Vec::new(),
            due: VecDeque::new(),
            back: Histogram::default(),
            retries: 0,
            failures: BTreeMap::new(),
            connect_error: None,
        }
    }

    fn send_login(&self, io: &mut Io, u: usize) {
        let user = &self.users[u];
        if let State::Trying { conn } = user.state {
            io.send(conn, |out| wire::login(out, user.id, Secret::Token(&user.token)));
        }
    }

    /// Starts queued users until `limit` are trying. The connect blocks,
    /// but to a live server's listening socket it completes in the kernel.
    fn fill(&mut self, io: &mut Io) {
        while self.trying < self.limit && self.next < self.users.len() {
            let u = self.next;
            self.next += 1;
            match setup::dial(self.addr).and_then(|stream| io.add(stream)) {
                Ok(conn) => {
                    self.owner.push(u);
                    debug_assert_eq!(self.owner.len(), conn + 1);
                    self.users[u].state = State::Trying { conn };
                    self.trying += 1;
                    self.send_login(io, u);
                }
                Err(e) => {
                    self.connect_error.get_or_insert(e);
                    self.fail(u, Failure::Connect);
                }
            }
        }
    }

    fn fail(&mut self, u: usize, why: Failure) {
        if matches!(self.users[u].state, State::Trying { .. }) {
            self.trying -= 1;
        }
        self.users[u].state = State::Failed;
        *self.failures.entry(why).or_default() += 1;
    }

    /// The user on `conn`, if it is still trying.
    fn trying_on(&self, conn: usize) -> Option<usize> {
        let u = *self.owner.get(conn)?;
        matches!(self.users[u].state, State::Trying { .. }).then_some(u)
    }
}

impl Workload for Failover {
    fn start(&mut self, io: &mut Io, _now: Instant) {
        self.fill(io);
    }

    fn frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        if wire::int_field(frame, wire::MSGID) != Some(msgid::LOGIN_ACK) {
            return;
        }
        let Some(u) = self.trying_on(conn) else { return };
        match wire::int_field(frame, wire::ERRNO) {
            Some(0) => {
                self.back.record(now.saturating_duration_since(self.killed).as_nanos() as u64);
                self.users[u].state = State::Back;
                self.trying -= 1;
            }
            // Already logged in (still being taken offline) or busy: the
            // server says try again; the user keeps its place meanwhile.
            Some(errno::IN_USE | errno::BUSY) if now + RETRY_AFTER < self.killed + GIVE_UP => {
                self.retries += 1;
                self.due.push_back((now + RETRY_AFTER, u));
            }
            Some(errno::IN_USE | errno::BUSY) => self.fail(u, Failure::GaveUp),
            Some(n) => self.fail(u, Failure::Errno(n)),
            None => self.fail(u, Failure::Errno(-1)),
        }
        self.fill(io);
    }

    fn closed(&mut self, io: &mut Io, conn: usize, _now: Instant) {
        if let Some(u) = self.trying_on(conn) {
            self.fail(u, Failure::Closed);
            self.fill(io);
        }
    }

    fn tick(&mut self, io: &mut Io, now: Instant) -> bool {
        // Retries are due in the order they were refused (same delay each).
        while let Some(&(at, u)) = self.due.front()
            && at <= now
        {
            self.due.pop_front();
            self.send_login(io, u);
        }
        if now >= self.killed + GIVE_UP {
            for u in 0..self.users.len() {
                if matches!(self.users[u].state, State::Queued | State::Trying { .. }) {
                    self.fail(u, Failure::GaveUp);
                }
            }
            return false;
        }
        self.next < self.users.len() || self.trying > 0
    }
}

/// The pid of the server at `--addr`, the one to kill: `--server-pid`, or
/// the process listening on its port if that is a ChatServer (so that a
/// wrong `--addr` kills nothing else). Never the bench itself, nor the
/// server the users are to move to.
fn victim(o: &Options, addr: SocketAddr, addr2: SocketAddr) -> Result<libc::pid_t, String> {
    let port = addr.port();
    let pid = match o.server_pids.first() {
        Some(&pid) => pid,
        None => {
            let pid = procfs::listener_pid(port)
                .ok_or_else(|| format!("no process of this user seen listening on port {port}: pass --server-pid"))?;
            let name = procfs::comm(pid).map_err(|e| format!("cannot read /proc/{pid}/comm: {e}"))?;
            if name != "ChatServer" {
                return Err(format!(
                    "the process listening on port {port} is {name} (pid {pid}), not ChatServer: pass --server-pid to kill it anyway"
                ));
            }
            pid
        }
    };
    if pid == std::process::id() {
        return Err("--server-pid is ChatBench itself".into());
    }
    if procfs::listener_pid(addr2.port()) == Some(pid) {
        return Err(format!("pid {pid} also serves --addr2 {addr2}: the users would have nowhere to go"));
    }
    libc::pid_t::try_from(pid).map_err(|_| format!("pid {pid} is out of range"))
}

fn kill(pid: libc::pid_t) -> Result<(), String> {
    // SAFETY: kill(2) takes a pid and a signal number and touches no memory.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(format!("cannot kill pid {pid}: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

pub fn run(o: &Options, target: &Target) -> Result<Metrics, String> {
    let addr2 = target.addr2.ok_or("failover needs --addr2")?;
    // Before the long setup, so that a wrong pid, or no server at --addr2,
    // is found out at once.
    let pid = victim(o, target.addr, addr2)?;
    drop(setup::dial(addr2)?);
    let ids = users(o, target, o.users)?;
    let clients = setup::login_all(&ids, |_| target.addr, o.setup_conc)?;
    let users: Vec<(i32, Vec<u8>)> = ids.iter().copied().zip(tokens(&clients, target.addr)?).collect();
    let engines = o.threads.min(o.conc).min(users.len()).max(1);
    let limits = deal(vec![(); o.conc], engines).into_iter().map(|share| share.len());
    let mut prepared = Vec::new();
    for (share, limit) in deal(users, engines).into_iter().zip(limits) {
        prepared.push((Io::new(Vec::new())?, share, limit));
    }
    // Again: the users need somewhere to go, and a server at --addr2 that
    // went away during the setup must be found out before the kill.
    drop(setup::dial(addr2)?);
    eprintln!("  setup done: {} users on {}; killing pid {pid}, then all to {addr2}", ids.len(), target.addr);

    let killed = Instant::now();
    kill(pid)?;
    let work =
        prepared.into_iter().map(|(io, share, limit)| (io, Failover::new(share, addr2, killed, limit))).collect();
    let results = engine::drive_all(work)?;
    // Held open until now, so that the only way out was the kill.
    drop(clients);

    let mut back = Histogram::default();
    let (mut retries, mut closed) = (0, 0);
    let mut failures: BTreeMap<Failure, u64> = BTreeMap::new();
    let mut connect_error = None;
    for (part, lost) in results {
        back.merge(&part.back);
        retries += part.retries;
        closed += lost;
        for (why, n) in part.failures {
            *failures.entry(why).or_default() += n;
        }
        connect_error = connect_error.or(part.connect_error);
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    let failed: u64 = failures.values().sum();
    let mut m = Metrics::default();
    m.set("failover_users", ids.len() as f64);
    if back.count() > 0 {
        m.set("failover_all_back_ms", ms(back.max()));
        m.set("failover_p50_ms", ms(back.quantile(0.5)));
        m.set("failover_p99_ms", ms(back.quantile(0.99)));
    }
    m.set("failover_back", back.count() as f64);
    m.set("failover_failed", failed as f64);
    m.set("failover_retries", retries as f64);
    if failed > 0 {
        let each: Vec<String> = failures.iter().map(|(why, n)| format!("{n} {}", why.text())).collect();
        m.notes.push(format!("{failed} users not back: {}", each.join(", ")));
    }
    if let Some(e) = connect_error {
        m.notes.push(format!("connecting to {addr2}: {e}"));
    }
    let closed_after = closed.saturating_sub(failures.get(&Failure::Closed).copied().unwrap_or(0) as usize);
    if closed_after > 0 {
        m.notes.push(format!("{closed_after} connections to {addr2} closed after their login"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One engine's share against a listening socket that never answers:
    /// the LOGIN_ACKs are handed to it by hand.
    #[test]
    fn retries_busy_and_in_use_fails_the_rest_and_keeps_the_limit() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let killed = Instant::now();
        let users = (1..=3).map(|id| (id, b"t".to_vec())).collect();
        let mut f = Failover::new(users, addr, killed, 2);
        let mut io = Io::new(Vec::new()).unwrap();
        f.start(&mut io, killed);
        // Two in flight, the third waits for a place.
        assert_eq!((io.len(), f.trying, f.next), (2, 2, 2));
        let ack = |n: i64| format!(r#"{{"errno":{n},"msgid":2}}"#);
        let now = Instant::now();
        f.frame(&mut io, 0, ack(errno::BUSY).as_bytes(), now);
        assert_eq!((f.retries, f.due.len(), f.trying, io.len()), (1, 1, 2, 2));
        f.frame(&mut io, 1, ack(1).as_bytes(), now);
        // User 2 failed for good; its place went to user 3.
        assert_eq!((f.failures.get(&Failure::Errno(1)), f.trying, io.len()), (Some(&1), 2, 3));
        f.frame(&mut io, 0, ack(0).as_bytes(), now);
        f.closed(&mut io, 2, now);
        assert_eq!((f.back.count(), f.failures.get(&Failure::Closed), f.trying), (1, Some(&1), 0));
        // A late retry of a user already back sends nothing and changes nothing.
        assert!(!f.tick(&mut io, now + RETRY_AFTER));
        assert_eq!(f.back.count(), 1);
    }
}
