//! login: C connections each cycle LOGIN -> LOGIN_ACK -> LOGOUT through a
//! share of N users. With `--during-pingpong K` (K pingpong pairs) or
//! `--during-fanout G` (one group of G members: one sender, one message at a
//! time), that chat runs throughout: first alone for `--secs`, then with the
//! login storm for `--secs`, so the chat figures with and without logins
//! come from the same run, the same connections and the same server.
//!
//! With `--token`, each login proves itself with the resume token of the
//! user's previous LOGIN_ACK (the first one, untimed, comes from a password
//! login during setup). A LOGOUT revokes its session's token (SPEC §2), so a
//! token cycle ends the session the way a dropped client does: it closes the
//! connection and logs the next user in on a new one.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::super::engine::{self, Io, Workload};
use super::super::hist::Histogram;
use super::super::report::Metrics;
use super::super::setup::{self, PASSWORD, deal, parallel};
use super::super::target::Target;
use super::super::wire::{self, Secret, errno, msgid};
use super::fanout::{Fanout, setup_group};
use super::pingpong::{PingPong, shares};
use super::{BUSY_RETRY, Unit, Window, cpu_per_message, sample_cpu, setup_pairs, tokens, users};
use crate::args::Options;

/// The chat measured alone (phase 0) and during the logins (phase 1), on
/// the first connections of each engine.
trait Chat: Send {
    /// Connections it uses, from 0.
    fn conns(&self) -> usize;
    fn begin(&mut self, io: &mut Io, now: Instant);
    fn on_frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant);
    /// Its last messages have arrived.
    fn finished(&self) -> bool;
    fn merge(&mut self, other: &Self);
    /// Its rows, alone and during, and its notes.
    fn report(&self, m: &mut Metrics, window: &Window);
}

fn p99_us(h: &Histogram) -> f64 {
    h.quantile(0.99) as f64 / 1000.0
}

/// `during / alone`, when there was something alone to compare with.
fn over(during: f64, alone: f64) -> Option<f64> {
    (alone > 0.0).then(|| during / alone)
}

impl Chat for PingPong {
    fn conns(&self) -> usize {
        PingPong::conns(self)
    }

    fn begin(&mut self, io: &mut Io, now: Instant) {
        PingPong::begin(self, io, now);
    }

    fn on_frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        PingPong::on_frame(self, io, conn, frame, now);
    }

    fn finished(&self) -> bool {
        PingPong::finished(self)
    }

    fn merge(&mut self, other: &PingPong) {
        PingPong::merge(self, other);
    }

    fn report(&self, m: &mut Metrics, window: &Window) {
        m.set("chat_msgs_per_s_alone", self.delivered[0] as f64 / window.secs(0));
        m.set("chat_msgs_per_s_during", self.delivered[1] as f64 / window.secs(1));
        m.set("chat_p50_us_alone", self.hist[0].quantile(0.5) as f64 / 1000.0);
        m.set("chat_p50_us_during", self.hist[1].quantile(0.5) as f64 / 1000.0);
        m.set("chat_p99_us_alone", p99_us(&self.hist[0]));
        m.set("chat_p99_us_during", p99_us(&self.hist[1]));
        m.set("chat_max_us_during", self.hist[1].max() as f64 / 1000.0);
        if let Some(ratio) = over(p99_us(&self.hist[1]), p99_us(&self.hist[0])) {
            m.set("chat_p99_during_over_alone", ratio);
        }
        self.notes(m);
    }
}

impl Chat for Fanout {
    fn conns(&self) -> usize {
        Fanout::conns(self)
    }

    fn begin(&mut self, io: &mut Io, now: Instant) {
        Fanout::begin(self, io, now);
    }

    fn on_frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        Fanout::on_frame(self, io, conn, frame, now);
    }

    fn finished(&self) -> bool {
        Fanout::finished(self)
    }

    fn merge(&mut self, other: &Fanout) {
        Fanout::merge(self, other);
    }

    fn report(&self, m: &mut Metrics, window: &Window) {
        let per_s = |phase: usize| self.deliveries[phase] as f64 / window.secs(phase);
        m.set("fanout_alone_deliveries_per_s", per_s(0));
        m.set("fanout_during_deliveries_per_s", per_s(1));
        if let Some(ratio) = over(per_s(1), per_s(0)) {
            m.set("fanout_during_over_alone", ratio);
        }
        m.set("fanout_alone_p99_us", p99_us(&self.last[0]));
        m.set("fanout_during_p99_us", p99_us(&self.last[1]));
        if let Some(ratio) = over(p99_us(&self.last[1]), p99_us(&self.last[0])) {
            m.set("fanout_p99_during_over_alone", ratio);
        }
        m.set("fanout_stalls_40ms", self.stalls as f64);
        self.notes(m);
    }
}

/// Where a login connection is in its cycle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing sent (not started, or the run is over).
    Waiting,
    /// LOGIN for the cycler's user `user` sent at `sent` (ns since the epoch).
    AwaitAck { sent: u64, user: usize },
    /// LOGOUT and PING sent: the PONG says the logout is done.
    AwaitPong,
    /// Refused as busy: the next login waits until then, as a client
    /// told to try again later would.
    Backoff(Instant),
}

/// One user a connection cycles through.
struct LoginUser {
    id: i32,
    /// With `--token`: the token of its last LOGIN_ACK, to log in with next
    /// (None: the password).
    token: Option<Vec<u8>>,
}

/// One login connection and the users it cycles through.
struct Cycler {
    users: Vec<LoginUser>,
    next: usize,
    step: Step,
    /// Its server, to reconnect to after a token login.
    addr: SocketAddr,
}

/// What the logins of one engine came to.
#[derive(Default)]
struct Tally {
    hist: Histogram,
    logins: u64,
    /// LOGIN_ACKs with errno 2 (still logged in from before).
    in_use: u64,
    /// LOGIN_ACKs with errno 501 (server busy).
    busy: u64,
    /// LOGIN_ACKs with other errors.
    refused: u64,
    /// With `--token`: successful LOGIN_ACKs without a usable token.
    no_token: u64,
    /// With `--token`: connections that could not be opened again, and why.
    reconnect_failed: u64,
    reconnect_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.hist.merge(&other.hist);
        self.logins += other.logins;
        self.in_use += other.in_use;
        self.busy += other.busy;
        self.refused += other.refused;
        self.no_token += other.no_token;
        self.reconnect_failed += other.reconnect_failed;
        self.reconnect_error = self.reconnect_error.take().or(other.reconnect_error);
    }
}

struct LoginStorm<C> {
    /// The chat, on connections `0..chat.conns()`.
    chat: C,
    /// The login connections, from `chat.conns()` on.
    cyclers: Vec<Cycler>,
    /// Log in with tokens (and reconnect) instead of passwords (and LOGOUT).
    token: bool,
    window: Window,
    /// When the logins begin, and the measured phase they are counted in.
    begin: Instant,
    login_phase: usize,
    started: bool,
    tally: Tally,
}

impl<C: Chat> LoginStorm<C> {
    fn login_next(&mut self, io: &mut Io, c: usize, now: Instant) {
        let conn = self.chat.conns() + c;
        let cycler = &mut self.cyclers[c];
        if !self.window.sending(now) {
            cycler.step = Step::Waiting;
            return;
        }
        let user = cycler.next % cycler.users.len();
        cycler.next += 1;
        cycler.step = Step::AwaitAck { sent: self.window.ns(now), user };
        let LoginUser { id, token } = &cycler.users[user];
        let secret = token.as_deref().map_or(Secret::Password(PASSWORD), Secret::Token);
        io.send(conn, |out| wire::login(out, *id, secret));
    }

    /// A login succeeded: end the session and go on with the next user.
    fn logged_in(&mut self, io: &mut Io, c: usize, user: usize, frame: &[u8]) {
        let conn = self.chat.conns() + c;
        if !self.token {
            self.cyclers[c].step = Step::AwaitPong;
            io.send(conn, wire::logout_then_ping);
            return;
        }
        let token = wire::token_field(frame).map(<[u8]>::to_vec);
        if token.is_none() {
            self.tally.no_token += 1;
        }
        self.cyclers[c].users[user].token = token;
        // A LOGOUT would revoke the token just received: close instead, as
        // a dropped client would. The blocking connect is to a local server,
        // whose kernel completes it at once; the next login's latency starts
        // after it.
        match setup::dial(self.cyclers[c].addr).and_then(|stream| io.replace(conn, stream)) {
            Ok(()) => self.login_next(io, c, Instant::now()),
            Err(e) => {
                self.tally.reconnect_failed += 1;
                self.tally.reconnect_error.get_or_insert(e);
                self.cyclers[c].step = Step::Waiting;
            }
        }
    }

    fn login_frame(&mut self, io: &mut Io, c: usize, frame: &[u8], now: Instant) {
        match (wire::int_field(frame, wire::MSGID), self.cyclers[c].step) {
            (Some(msgid::LOGIN_ACK), Step::AwaitAck { sent, user }) => {
                match wire::int_field(frame, wire::ERRNO) {
                    Some(0) => {
                        if self.window.phase(now) == Some(self.login_phase) {
                            self.tally.hist.record(self.window.ns(now).saturating_sub(sent));
                            self.tally.logins += 1;
                        }
                        return self.logged_in(io, c, user, frame);
                    }
                    Some(errno::IN_USE) => self.tally.in_use += 1,
                    Some(errno::BUSY) => {
                        self.tally.busy += 1;
                        self.cyclers[c].step = Step::Backoff(now + BUSY_RETRY);
                        return;
                    }
                    _ => self.tally.refused += 1,
                }
                // The connection is still logged out: on with the next user.
                self.login_next(io, c, now);
            }
            (Some(msgid::PONG), Step::AwaitPong) => self.login_next(io, c, now),
            _ => {}
        }
    }
}

impl<C: Chat> Workload for LoginStorm<C> {
    fn start(&mut self, io: &mut Io, now: Instant) {
        self.chat.begin(io, now);
    }

    fn frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        match conn.checked_sub(self.chat.conns()) {
            Some(c) => self.login_frame(io, c, frame, now),
            None => self.chat.on_frame(io, conn, frame, now),
        }
    }

    fn tick(&mut self, io: &mut Io, now: Instant) -> bool {
        if !self.started && now >= self.begin {
            self.started = true;
            for c in 0..self.cyclers.len() {
                self.login_next(io, c, now);
            }
        }
        for c in 0..self.cyclers.len() {
            if matches!(self.cyclers[c].step, Step::Backoff(until) if until <= now) {
                self.login_next(io, c, now);
            }
        }
        let busy = self.cyclers.iter().any(|c| c.step != Step::Waiting);
        now < self.window.drain_until && (self.window.sending(now) || busy || !self.chat.finished())
    }
}

/// The login rows: rate, latency and cost, named for what proved the login.
type Rows = (&'static str, [&'static str; 6], Unit);
const PASSWORD_ROWS: Rows = (
    "logins_per_s",
    ["login_p50_us", "login_p90_us", "login_p99_us", "login_p99_9_us", "login_max_us", "login_mean_us"],
    Unit::Login,
);
const TOKEN_ROWS: Rows = (
    "token_logins_per_s",
    [
        "token_login_p50_us",
        "token_login_p90_us",
        "token_login_p99_us",
        "token_login_p99_9_us",
        "token_login_max_us",
        "token_login_mean_us",
    ],
    Unit::TokenLogin,
);

pub fn run(o: &Options, target: &Target) -> Result<Metrics, String> {
    let chat_users = 2 * o.during_pingpong + o.during_fanout;
    let ids = users(o, target, chat_users + o.users)?;
    let (chat_ids, login_ids) = ids.split_at(chat_users);
    let threads = o.threads.min(o.conc);
    if o.during_fanout > 0 {
        let (streams, group) = setup_group(o, target, chat_ids)?;
        // The whole group in the first engine: a message's receivers must
        // all be counted where its sender is waiting for them.
        let mut chat_shares: Vec<(Vec<TcpStream>, usize)> = (0..threads).map(|_| (Vec::new(), 0)).collect();
        chat_shares[0] = (streams, o.during_fanout);
        storm(o, target, login_ids, chat_shares, |members, window| {
            Fanout::new(group, 0, members, 1, 1, window, o.msg_bytes)
        })
    } else {
        let pairs = setup_pairs(o, target, chat_ids)?;
        storm(o, target, login_ids, shares(pairs, threads), |spec, window| PingPong::new(&spec, 0, window, o.msg_bytes))
    }
}

/// With `--token`: the first login of each of `ids` (user `j` cycles on
/// connection `j % conc`), with the password and untimed, for its token.
fn first_tokens(o: &Options, target: &Target, ids: &[i32]) -> Result<Vec<Vec<u8>>, String> {
    let clients = setup::login_all(ids, |j| target.addr_for(j % o.conc % 2), o.setup_conc)?;
    let tokens = tokens(&clients, target.addr);
    // Closed, not logged out: a LOGOUT would revoke the tokens. The server
    // takes the users offline before the timed part begins.
    drop(clients);
    target.wait_quiet(Duration::from_secs(30));
    tokens
}

/// The login storm with `chat` measured alone and during it; each engine's
/// chat is made by `make_chat` from its share's spec.
fn storm<C: Chat, S>(
    o: &Options,
    target: &Target,
    login_ids: &[i32],
    chat_shares: Vec<(Vec<TcpStream>, S)>,
    make_chat: impl Fn(S, Window) -> C,
) -> Result<Metrics, String> {
    let mut tokens =
        if o.token { first_tokens(o, target, login_ids)?.into_iter().map(Some).collect() } else { Vec::new() };
    tokens.resize(login_ids.len(), None);
    let conns = parallel("connecting", o.conc, o.setup_conc, |_: &mut (), i| {
        let addr = target.addr_for(i % 2);
        setup::dial(addr).map(|stream| (stream, addr))
    })?;
    // Connection c cycles users c, c + C, c + 2C, ...
    let mut users: Vec<Vec<LoginUser>> = (0..o.conc).map(|_| Vec::new()).collect();
    for (j, (&id, token)) in login_ids.iter().zip(tokens).enumerate() {
        users[j % o.conc].push(LoginUser { id, token });
    }
    let cyclers = conns
        .into_iter()
        .zip(users)
        .map(|((stream, addr), users)| (stream, Cycler { users, next: 0, step: Step::Waiting, addr }));

    let chat_present = o.during_pingpong + o.during_fanout > 0;
    let phases = if chat_present { 2 } else { 1 };
    let login_shares = deal(cyclers.collect(), chat_shares.len());
    let mut prepared = Vec::new();
    for ((mut streams, spec), logins) in chat_shares.into_iter().zip(login_shares) {
        let mut mine = Vec::new();
        for (stream, cycler) in logins {
            streams.push(stream);
            mine.push(cycler);
        }
        prepared.push((Io::new(streams)?, spec, mine));
    }
    let window = Window::new(o.warmup, o.secs, phases, Duration::from_secs(30));
    let cpu = sample_cpu(target, window.marks());
    let login_phase = phases as usize - 1;
    let begin = window.split.unwrap_or(window.epoch);
    let work = prepared
        .into_iter()
        .map(|(io, spec, cyclers)| {
            let storm = LoginStorm {
                chat: make_chat(spec, window),
                cyclers,
                token: o.token,
                window,
                begin,
                login_phase,
                started: false,
                tally: Tally::default(),
            };
            (io, storm)
        })
        .collect();
    let results = engine::drive_all(work)?;
    let samples = cpu.join().map_err(|_| "the CPU sampler panicked")?;

    let mut parts = results.into_iter();
    let (first, mut closed) = parts.next().ok_or("no load thread ran")?;
    let (mut chat, mut tally) = (first.chat, first.tally);
    for (part, lost) in parts {
        chat.merge(&part.chat);
        tally.merge(part.tally);
        closed += lost;
    }
    let mut m = Metrics::default();
    let (rate, latency, unit) = if o.token { TOKEN_ROWS } else { PASSWORD_ROWS };
    m.set(rate, tally.logins as f64 / window.secs(login_phase));
    m.latency(latency, &tally.hist);
    m.set("logins_refused_busy", tally.busy as f64);
    cpu_per_message(&mut m, &samples, login_phase, tally.logins, unit);
    if chat_present {
        chat.report(&mut m, &window);
    }
    if tally.in_use > 0 {
        m.notes.push(format!("{} logins refused as already logged in", tally.in_use));
    }
    if tally.refused > 0 {
        m.notes.push(format!("{} logins refused", tally.refused));
    }
    if tally.no_token > 0 {
        m.notes.push(format!(
            "{} LOGIN_ACKs without a usable token (those users log in with the password next)",
            tally.no_token
        ));
    }
    if let Some(e) = &tally.reconnect_error {
        m.notes.push(format!("{} login connections could not reconnect and stopped: {e}", tally.reconnect_failed));
    }
    if closed > 0 {
        m.notes.push(format!("{closed} connections closed during the run"));
    }
    Ok(m)
}
