//! login: C connections each cycle LOGIN -> LOGIN_ACK -> LOGOUT through a
//! share of N users. With `--during-pingpong K`, K pingpong pairs run
//! throughout: first alone for `--secs`, then with the login storm for
//! `--secs`, so the chat latency with and without logins comes from the same
//! run, the same pairs and the same server.

use std::time::{Duration, Instant};

use super::super::engine::{self, Io, Workload};
use super::super::hist::Histogram;
use super::super::report::Metrics;
use super::super::setup::{SyncClient, deal, parallel};
use super::super::target::Target;
use super::super::wire::{self, msgid};
use super::pingpong::{PingPong, shares};
use super::{Unit, Window, cpu_per_message, sample_cpu, setup_pairs, users};
use crate::bench::args::Options;

/// Where a login connection is in its cycle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Nothing sent (not started, or the run is over).
    Waiting,
    /// LOGIN sent at this time (ns since the epoch).
    AwaitAck(u64),
    /// LOGOUT and PING sent: the PONG says the logout is done.
    AwaitPong,
}

/// One login connection and the users it cycles through.
struct Cycler {
    users: Vec<i32>,
    next: usize,
    step: Step,
}

struct LoginStorm {
    /// The pairs, on connections `0..chat.conns()`.
    chat: PingPong,
    /// The login connections, from `chat.conns()` on.
    cyclers: Vec<Cycler>,
    window: Window,
    /// When the logins begin, and the measured phase they are counted in.
    begin: Instant,
    login_phase: usize,
    started: bool,
    hist: Histogram,
    logins: u64,
    /// LOGIN_ACKs with errno 2 (still logged in from before) or other errors.
    in_use: u64,
    refused: u64,
}

impl LoginStorm {
    fn login_next(&mut self, io: &mut Io, c: usize, now: Instant) {
        let base = self.chat.conns();
        let cycler = &mut self.cyclers[c];
        if !self.window.sending(now) {
            cycler.step = Step::Waiting;
            return;
        }
        let id = cycler.users[cycler.next % cycler.users.len()];
        cycler.next += 1;
        cycler.step = Step::AwaitAck(self.window.ns(now));
        io.send(base + c, |out| wire::login(out, id, super::super::setup::PASSWORD));
    }

    fn login_frame(&mut self, io: &mut Io, c: usize, frame: &[u8], now: Instant) {
        match (wire::int_field(frame, wire::MSGID), self.cyclers[c].step) {
            (Some(msgid::LOGIN_ACK), Step::AwaitAck(sent)) => match wire::int_field(frame, wire::ERRNO) {
                Some(0) => {
                    if self.window.phase(now) == Some(self.login_phase) {
                        self.hist.record(self.window.ns(now).saturating_sub(sent));
                        self.logins += 1;
                    }
                    self.cyclers[c].step = Step::AwaitPong;
                    io.send(self.chat.conns() + c, wire::logout_then_ping);
                }
                Some(2) => {
                    self.in_use += 1;
                    self.login_next(io, c, now);
                }
                _ => {
                    self.refused += 1;
                    self.login_next(io, c, now);
                }
            },
            (Some(msgid::PONG), Step::AwaitPong) => self.login_next(io, c, now),
            _ => {}
        }
    }
}

impl Workload for LoginStorm {
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
        let busy = self.cyclers.iter().any(|c| c.step != Step::Waiting);
        now < self.window.drain_until && (self.window.sending(now) || busy || !self.chat.finished())
    }
}

pub fn run(o: &Options, target: &Target) -> Result<Metrics, String> {
    let k = o.during_pingpong;
    let ids = users(o, target, 2 * k + o.users)?;
    let (pair_ids, login_ids) = ids.split_at(2 * k);
    let pairs = setup_pairs(o, target, pair_ids)?;
    let conns = parallel("connecting", o.conc, o.setup_conc, |_: &mut (), i| {
        SyncClient::connect(target.addr_for(i % 2)).map(SyncClient::into_stream)
    })?;
    // Connection c cycles users c, c + C, c + 2C, ...
    let cyclers: Vec<(std::net::TcpStream, Vec<i32>)> = conns
        .into_iter()
        .enumerate()
        .map(|(c, stream)| (stream, login_ids.iter().skip(c).step_by(o.conc).copied().collect()))
        .collect();

    let threads = o.threads.min(o.conc);
    let chat_shares = shares(pairs, threads);
    let login_shares = deal(cyclers, threads);
    let mut prepared = Vec::new();
    for ((mut streams, pair_spec), logins) in chat_shares.into_iter().zip(login_shares) {
        let mut users = Vec::new();
        for (stream, mine) in logins {
            streams.push(stream);
            users.push(mine);
        }
        prepared.push((Io::new(streams)?, pair_spec, users));
    }
    let phases = if k > 0 { 2 } else { 1 };
    let window = Window::new(o.warmup, o.secs, phases, Duration::from_secs(30));
    let cpu = sample_cpu(target, window.marks());
    let login_phase = phases as usize - 1;
    let begin = window.split.unwrap_or(window.epoch);
    let work = prepared
        .into_iter()
        .map(|(io, pair_spec, users)| {
            let storm = LoginStorm {
                chat: PingPong::new(&pair_spec, 0, window, o.msg_bytes),
                cyclers: users.into_iter().map(|users| Cycler { users, next: 0, step: Step::Waiting }).collect(),
                window,
                begin,
                login_phase,
                started: false,
                hist: Histogram::default(),
                logins: 0,
                in_use: 0,
                refused: 0,
            };
            (io, storm)
        })
        .collect();
    let results = engine::drive_all(work)?;
    let samples = cpu.join().map_err(|_| "the CPU sampler panicked")?;

    let mut chat = PingPong::new(&[], 0, window, 0);
    let mut hist = Histogram::default();
    let (mut logins, mut in_use, mut refused, mut closed) = (0, 0, 0, 0);
    for (part, lost) in &results {
        chat.merge(&part.chat);
        hist.merge(&part.hist);
        logins += part.logins;
        in_use += part.in_use;
        refused += part.refused;
        closed += lost;
    }
    let mut m = Metrics::default();
    m.set("logins_per_s", logins as f64 / window.secs(login_phase));
    m.latency(
        ["login_p50_us", "login_p90_us", "login_p99_us", "login_p99_9_us", "login_max_us", "login_mean_us"],
        &hist,
    );
    cpu_per_message(&mut m, &samples, login_phase, logins, Unit::Login);
    if k > 0 {
        let p99 = |h: &Histogram| h.quantile(0.99) as f64 / 1000.0;
        m.set("chat_msgs_per_s_alone", chat.delivered[0] as f64 / window.secs(0));
        m.set("chat_msgs_per_s_during", chat.delivered[1] as f64 / window.secs(1));
        m.set("chat_p50_us_alone", chat.hist[0].quantile(0.5) as f64 / 1000.0);
        m.set("chat_p50_us_during", chat.hist[1].quantile(0.5) as f64 / 1000.0);
        m.set("chat_p99_us_alone", p99(&chat.hist[0]));
        m.set("chat_p99_us_during", p99(&chat.hist[1]));
        m.set("chat_max_us_during", chat.hist[1].max() as f64 / 1000.0);
        if chat.hist[0].count() > 0 {
            m.set("chat_p99_during_over_alone", p99(&chat.hist[1]) / p99(&chat.hist[0]));
        }
        chat.notes(&mut m);
    }
    if in_use > 0 {
        m.notes.push(format!("{in_use} logins refused as already logged in"));
    }
    if refused > 0 {
        m.notes.push(format!("{refused} logins refused"));
    }
    if closed > 0 {
        m.notes.push(format!("{closed} connections closed during the run"));
    }
    Ok(m)
}
