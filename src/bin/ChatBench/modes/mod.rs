//! The six workloads, and what they share: the run's timeline, CPU
//! sampling, and the loop over rounds and targets.

mod failover;
mod fanout;
mod flood;
mod idle;
mod login;
mod pingpong;

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::args::{Mode, Options, RelayChoice};
use super::procfs;
use super::report::{self, Metrics, Run};
use super::target::{Kind, REDIS_ADDR, Target};

/// Delivery latency counted as a stall: the 40 ms of a Nagle / delayed-ACK
/// deadlock, the classic fault of chat servers that leave Nagle on.
pub const STALL_NS: u64 = 40_000_000;

/// How long a login refused with errno 501 (server busy) waits before the
/// next try, as a client told to try again later would.
pub const BUSY_RETRY: Duration = Duration::from_millis(50);

/// A run's timeline. Messages flow from `epoch`; those delivered in
/// `[from, to)` are measured (split in two phases at `split`, if set); no
/// new message is sent after `to`; what is in flight may arrive until
/// `drain_until`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub epoch: Instant,
    pub from: Instant,
    pub split: Option<Instant>,
    pub to: Instant,
    pub drain_until: Instant,
}

impl Window {
    /// Warm-up `warmup` seconds, then `phases` (1 or 2) measured phases of
    /// `secs` each, then up to `drain` for what is still in flight.
    pub fn new(warmup: f64, secs: f64, phases: u32, drain: Duration) -> Window {
        let epoch = Instant::now();
        let from = epoch + Duration::from_secs_f64(warmup);
        let phase = Duration::from_secs_f64(secs);
        let split = (phases > 1).then_some(from + phase);
        let to = from + phase * phases;
        eprintln!("  setup done; warm-up {warmup} s, then measuring {phases} x {secs} s");
        Window { epoch, from, split, to, drain_until: to + drain }
    }

    /// The measured phase `t` falls in (0 or 1), if any.
    pub fn phase(&self, t: Instant) -> Option<usize> {
        if t < self.from || t >= self.to {
            return None;
        }
        Some(match self.split {
            Some(split) if t >= split => 1,
            _ => 0,
        })
    }

    /// Whether new messages may still be sent at `t`.
    pub fn sending(&self, t: Instant) -> bool {
        t < self.to
    }

    /// Nanoseconds from the epoch to `t`: the time in a message's stamp.
    pub fn ns(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// Length of measured phase `phase`, seconds.
    pub fn secs(&self, phase: usize) -> f64 {
        match (self.split, phase) {
            (Some(split), 0) => (split - self.from).as_secs_f64(),
            (Some(split), _) => (self.to - split).as_secs_f64(),
            (None, _) => (self.to - self.from).as_secs_f64(),
        }
    }

    /// Phase boundaries, for CPU sampling.
    pub fn marks(&self) -> Vec<Instant> {
        [Some(self.from), self.split, Some(self.to)].into_iter().flatten().collect()
    }
}

/// What is read about the processes at each phase boundary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// CPU time of the target's processes, microseconds.
    pub target_cpu_us: u64,
    /// Context switches of the target's threads.
    pub target_switches: u64,
    /// CPU time of the bench itself, microseconds.
    pub bench_cpu_us: u64,
    /// CPU time of the target's Redis, microseconds; None if it has none
    /// or its `/proc` entry could not be read (it may have gone).
    pub redis_cpu_us: Option<u64>,
}

/// Samples of `target` at each of `marks`, taken by a thread that sleeps
/// until each.
pub fn sample_cpu(target: &Target, marks: Vec<Instant>) -> JoinHandle<Vec<Sample>> {
    let (pids, redis) = (target.pids.clone(), target.redis_pid);
    std::thread::spawn(move || {
        marks
            .into_iter()
            .map(|mark| {
                std::thread::sleep(mark.saturating_duration_since(Instant::now()));
                Sample {
                    target_cpu_us: pids.iter().filter_map(|&p| procfs::cpu_us(p).ok()).sum(),
                    // Right after the servers', so both cover the same window.
                    redis_cpu_us: redis.and_then(|p| procfs::cpu_us(p).ok()),
                    target_switches: pids.iter().filter_map(|&p| procfs::context_switches(p).ok()).sum(),
                    bench_cpu_us: procfs::cpu_us(0).unwrap_or(0),
                }
            })
            .collect()
    })
}

/// Sets the cost figures between `samples[i]` and `samples[i + 1]`, per
/// `unit` (`msg`, `delivery`, `login`) counted there: the target's CPU, its
/// context switches, and the bench's own CPU.
pub fn cpu_per_message(m: &mut Metrics, samples: &[Sample], i: usize, count: u64, unit: Unit) {
    let (Some(a), Some(b)) = (samples.get(i), samples.get(i + 1)) else { return };
    if count == 0 {
        return;
    }
    let per = |x: u64, y: u64| y.saturating_sub(x) as f64 / count as f64;
    let [cpu, switches, bench] = unit.keys();
    if b.target_cpu_us != 0 {
        m.set(cpu, per(a.target_cpu_us, b.target_cpu_us));
        m.set(switches, per(a.target_switches, b.target_switches));
    }
    m.set(bench, per(a.bench_cpu_us, b.bench_cpu_us));
}

/// Sets `redis_cpu_us_per_msg`: the CPU of the Redis between the two
/// servers of `target` from `samples[i]` to `samples[i + 1]`, per message
/// (`count`) counted there. Nothing for one server (no Redis in the path,
/// and the relay has none); a note instead of the figure when that Redis is
/// unknown or could not be read at both ends, since a run is worth more
/// than one of its rows.
pub fn redis_cpu_per_message(m: &mut Metrics, target: &Target, samples: &[Sample], i: usize, count: u64) {
    if target.addr2.is_none() {
        return;
    }
    let Some(pid) = target.redis_pid else {
        m.notes.push(format!("no process seen listening on {REDIS_ADDR}: no redis_cpu_us_per_msg (pass --redis-pid)"));
        return;
    };
    let read = |s: Option<&Sample>| s.and_then(|s| s.redis_cpu_us);
    let (Some(a), Some(b)) = (read(samples.get(i)), read(samples.get(i + 1))) else {
        m.notes.push(format!("cannot read /proc/{pid}/stat (Redis): no redis_cpu_us_per_msg"));
        return;
    };
    if count > 0 {
        m.set("redis_cpu_us_per_msg", b.saturating_sub(a) as f64 / count as f64);
    }
}

/// What cost figures are counted per.
#[derive(Clone, Copy)]
pub enum Unit {
    Msg,
    Delivery,
    Login,
    TokenLogin,
}

impl Unit {
    fn keys(self) -> [&'static str; 3] {
        match self {
            Unit::Msg => ["cpu_us_per_msg", "switches_per_msg", "bench_cpu_us_per_msg"],
            Unit::Delivery => ["cpu_us_per_delivery", "switches_per_delivery", "bench_cpu_us_per_delivery"],
            Unit::Login => ["cpu_us_per_login", "switches_per_login", "bench_cpu_us_per_login"],
            Unit::TokenLogin => ["cpu_us_per_token_login", "switches_per_token_login", "bench_cpu_us_per_token_login"],
        }
    }
}

/// Connections a run of these options opens at once, for the fd limit.
fn connections(o: &Options) -> usize {
    match o.mode {
        Mode::PingPong | Mode::Flood => 2 * o.pairs,
        Mode::Fanout => o.group_size,
        Mode::Login => o.conc + 2 * o.during_pingpong + o.during_fanout,
        Mode::Idle => o.conns,
        // Each user's connection to the server killed, then to the other.
        Mode::Failover => 2 * o.users,
    }
}

/// Runs the mode against each target, `rounds` times alternating, then
/// prints the summary.
pub fn run(o: &Options) -> Result<(), String> {
    let needed = (connections(o) + o.setup_conc + 64) as u64;
    match procfs::raise_fd_limit(needed) {
        Ok(limit) if limit < needed => {
            return Err(format!(
                "this run needs about {needed} open files but the limit is {limit}; raise it (ulimit -n) or use fewer connections"
            ));
        }
        Ok(_) => {}
        Err(e) => eprintln!("ChatBench: cannot raise the open-file limit: {e}"),
    }
    let mut targets = Vec::new();
    match &o.relay {
        RelayChoice::Spawn => targets.push(Target::spawn_relay(o.relay_threads)?),
        RelayChoice::Limit(path) => targets.push(Target::spawn_limit_relay(path.as_deref(), o.relay_threads)?),
        RelayChoice::At(addr) => targets.push(Target::relay_at(*addr, o.relay_pid)),
        RelayChoice::None => {}
    }
    if let Some(addr) = o.addr {
        targets.push(Target::chat(addr, o.addr2, &o.server_pids, o.redis_pid));
    }
    let mut runs = Vec::new();
    for round in 0..o.rounds {
        for target in &targets {
            eprintln!("ChatBench {} round {}: {} at {}", o.mode.name(), round + 1, target.name(), target.addr);
            let mut metrics = run_once(o, target)?;
            if target.pids.is_empty() {
                metrics.notes.push("process unknown: no CPU or memory figures (pass --server-pid)".into());
            }
            runs.push(Run { target: target.name(), round, metrics });
            target.wait_quiet(Duration::from_secs(60));
        }
    }
    report::summarize(o.mode.name(), &params(o), &runs, o.json);
    Ok(())
}

fn run_once(o: &Options, target: &Target) -> Result<Metrics, String> {
    match o.mode {
        Mode::PingPong => pingpong::run(o, target),
        Mode::Flood => flood::run(o, target),
        Mode::Fanout => fanout::run(o, target),
        Mode::Login => login::run(o, target),
        Mode::Idle => idle::run(o, target),
        Mode::Failover => failover::run(o, target),
    }
}

/// Ids of `count` bench users on `target` (the users file applies to the
/// ChatServer only: the relay's ids cost nothing).
pub fn users(o: &Options, target: &Target, count: usize) -> Result<Vec<i32>, String> {
    let file = if target.kind == Kind::Chat { o.users_file.as_deref() } else { None };
    super::setup::users(target.addr, count, o.setup_conc, file)
}

/// The resume tokens of logged-in `clients`, in order; an error if the
/// server at `addr` sent none (one without resume tokens).
pub fn tokens(clients: &[super::setup::SyncClient], addr: std::net::SocketAddr) -> Result<Vec<Vec<u8>>, String> {
    clients
        .iter()
        .map(|client| {
            let token = client.token().map(str::as_bytes).and_then(super::wire::usable_token);
            token.map(<[u8]>::to_vec).ok_or_else(|| format!("{addr} sent no usable resume token in LOGIN_ACK"))
        })
        .collect()
}

/// The parameters shown with the results.
fn params(o: &Options) -> Vec<(&'static str, String)> {
    let mut p =
        vec![("secs", o.secs.to_string()), ("warmup", o.warmup.to_string()), ("threads", o.threads.to_string())];
    match o.mode {
        Mode::PingPong => p.extend([("pairs", o.pairs.to_string()), ("msg_bytes", o.msg_bytes.to_string())]),
        Mode::Flood => p.extend([
            ("pairs", o.pairs.to_string()),
            ("inflight", o.inflight.to_string()),
            ("msg_bytes", o.msg_bytes.to_string()),
        ]),
        Mode::Fanout => p.extend([
            ("group_size", o.group_size.to_string()),
            ("senders", o.senders.to_string()),
            ("inflight", o.inflight.to_string()),
        ]),
        Mode::Login => p.extend([
            ("users", o.users.to_string()),
            ("conc", o.conc.to_string()),
            ("during_pingpong", o.during_pingpong.to_string()),
            ("during_fanout", o.during_fanout.to_string()),
            ("token", o.token.to_string()),
        ]),
        Mode::Idle => p.push(("conns", o.conns.to_string())),
        Mode::Failover => {
            // It is over when every user is back: no timed window.
            p.retain(|(k, _)| !matches!(*k, "secs" | "warmup"));
            p.extend([("users", o.users.to_string()), ("conc", o.conc.to_string())]);
        }
    }
    if let Some(addr2) = o.addr2 {
        p.push(("addr2", addr2.to_string()));
    }
    p
}

/// One pair's users and logged-in connections: side 0 on the first
/// server, side 1 on the second (the same one without `--addr2`).
pub struct PairSetup {
    /// The pair's index in the run: the `src` of its stamps.
    pub src: u32,
    pub ids: [i32; 2],
    pub streams: [std::net::TcpStream; 2],
}

/// Logs in `ids` two by two as pairs.
pub fn setup_pairs(o: &Options, target: &Target, ids: &[i32]) -> Result<Vec<PairSetup>, String> {
    let clients = super::setup::login_all(ids, |i| target.addr_for(i % 2), o.setup_conc)?;
    let mut streams = clients.into_iter().map(super::setup::SyncClient::into_stream);
    let mut pairs = Vec::with_capacity(ids.len() / 2);
    for (src, pair) in ids.chunks_exact(2).enumerate() {
        let (Some(a), Some(b)) = (streams.next(), streams.next()) else { break };
        pairs.push(PairSetup { src: src as u32, ids: [pair[0], pair[1]], streams: [a, b] });
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn redis_cpu_is_per_message_and_left_out_with_a_note() {
        let (a, b) = (SocketAddr::from(([127, 0, 0, 1], 1)), SocketAddr::from(([127, 0, 0, 1], 2)));
        let at = |redis_cpu_us| Sample { redis_cpu_us, ..Sample::default() };
        let figure = |target: &Target, samples: &[Sample]| {
            let mut m = Metrics::default();
            redis_cpu_per_message(&mut m, target, samples, 0, 400);
            (m.get("redis_cpu_us_per_msg"), m.notes.len())
        };
        let mut two = Target::chat(a, Some(b), &[1, 2], Some(7));
        assert_eq!(figure(&two, &[at(Some(1000)), at(Some(3000))]), (Some(5.0), 0));
        // Redis gone (or unreadable) at one end of the window.
        assert_eq!(figure(&two, &[at(Some(1000)), at(None)]), (None, 1));
        assert_eq!(figure(&two, &[at(Some(1000))]), (None, 1));
        // No pid given and none found by port.
        two.redis_pid = None;
        assert_eq!(figure(&two, &[at(None), at(None)]), (None, 1));
        // One server: no Redis in the path, so neither figure nor note.
        let one = Target::chat(a, None, &[1], Some(7));
        assert_eq!(one.redis_pid, None);
        assert_eq!(figure(&one, &[at(None), at(None)]), (None, 0));
    }
}
