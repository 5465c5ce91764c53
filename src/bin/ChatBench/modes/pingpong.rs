//! pingpong: each pair bounces one ONE_CHAT back and forth, one in flight
//! per pair, so throughput is the inverse of the round trip through the
//! server times the pairs; latency is per delivery (send to receipt).

use std::time::{Duration, Instant};

use super::super::engine::{self, Io, Workload};
use super::super::hist::Histogram;
use super::super::report::Metrics;
use super::super::setup::deal;
use super::super::target::Target;
use super::super::wire::{self, Stamp, errno, msgid};
use super::{
    PairSetup, STALL_NS, Unit, Window, cpu_per_message, redis_cpu_per_message, sample_cpu, setup_pairs, users,
};
use crate::args::Options;

/// One pair's ball.
struct Pair {
    src: u32,
    ids: [i32; 2],
    /// Sequence number of the message in flight.
    seq: u64,
    /// No message in flight any more (the run is over, or the pair failed).
    idle: bool,
}

/// The pingpong workload over pairs whose connections are `base + 2i`
/// (side 0) and `base + 2i + 1` (side 1); embeddable in another workload.
pub struct PingPong {
    pairs: Vec<Pair>,
    base: usize,
    window: Window,
    pad: usize,
    /// Latency of deliveries in each measured phase, nanoseconds.
    pub hist: [Histogram; 2],
    pub delivered: [u64; 2],
    /// Deliveries in a measured phase that took 40 ms or more.
    pub stalls: u64,
    /// ERROR frames received (each also counted in `rate_limited` if 104).
    pub errors: u64,
    pub rate_limited: u64,
    /// Chat frames whose stamp was not the one in flight.
    pub unexpected: u64,
}

impl PingPong {
    pub fn new(pairs: &[([i32; 2], u32)], base: usize, window: Window, pad: usize) -> PingPong {
        PingPong {
            pairs: pairs.iter().map(|&(ids, src)| Pair { src, ids, seq: 0, idle: false }).collect(),
            base,
            window,
            pad,
            hist: Default::default(),
            delivered: [0; 2],
            stalls: 0,
            errors: 0,
            rate_limited: 0,
            unexpected: 0,
        }
    }

    /// Connections this workload uses, from `base`.
    pub fn conns(&self) -> usize {
        2 * self.pairs.len()
    }

    /// Sends pair `p`'s current message from `side` to the other side.
    fn serve(&mut self, io: &mut Io, p: usize, side: usize, now: Instant) {
        let pair = &self.pairs[p];
        let stamp = Stamp { src: pair.src, seq: pair.seq, t_ns: self.window.ns(now) };
        let (to, pad) = (pair.ids[1 - side], self.pad);
        io.send(self.base + 2 * p + side, |out| wire::one_chat(out, to, stamp, pad));
    }

    pub fn begin(&mut self, io: &mut Io, now: Instant) {
        for p in 0..self.pairs.len() {
            self.serve(io, p, 0, now);
        }
    }

    pub fn on_frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        let local = conn - self.base;
        let (p, side) = (local / 2, local % 2);
        match wire::int_field(frame, wire::MSGID) {
            Some(msgid::ONE_CHAT) => {
                let pair = &mut self.pairs[p];
                let stamp = wire::msg_field(frame).and_then(Stamp::parse);
                let Some(stamp) = stamp.filter(|s| s.src == pair.src && s.seq == pair.seq && !pair.idle) else {
                    self.unexpected += 1;
                    return;
                };
                let latency = self.window.ns(now).saturating_sub(stamp.t_ns);
                if let Some(phase) = self.window.phase(now) {
                    self.hist[phase].record(latency);
                    self.delivered[phase] += 1;
                    if latency >= STALL_NS {
                        self.stalls += 1;
                    }
                }
                pair.seq += 1;
                if self.window.sending(now) {
                    self.serve(io, p, side, now);
                } else {
                    pair.idle = true;
                }
            }
            Some(msgid::ERROR) => {
                self.errors += 1;
                // Refused by flood control: send it again, or the pair
                // would stop. Anything else ends the pair.
                if wire::int_field(frame, wire::ERRNO) == Some(errno::RATE_LIMITED) && self.window.sending(now) {
                    self.rate_limited += 1;
                    self.serve(io, p, side, now);
                } else {
                    self.pairs[p].idle = true;
                }
            }
            _ => {}
        }
    }

    /// Every pair's last message has arrived.
    pub fn finished(&self) -> bool {
        self.pairs.iter().all(|p| p.idle)
    }

    pub fn merge(&mut self, other: &PingPong) {
        for phase in 0..2 {
            self.hist[phase].merge(&other.hist[phase]);
            self.delivered[phase] += other.delivered[phase];
        }
        self.stalls += other.stalls;
        self.errors += other.errors;
        self.rate_limited += other.rate_limited;
        self.unexpected += other.unexpected;
    }

    /// Notes on what went wrong, if anything.
    pub fn notes(&self, m: &mut Metrics) {
        if self.rate_limited > 0 {
            m.notes.push(format!(
                "{} messages refused by flood control: start the server with --rate 1000000",
                self.rate_limited
            ));
        }
        if self.errors > self.rate_limited {
            m.notes.push(format!("{} ERROR replies", self.errors - self.rate_limited));
        }
        if self.unexpected > 0 {
            m.notes.push(format!("{} chat messages out of sequence", self.unexpected));
        }
    }
}

impl Workload for PingPong {
    fn start(&mut self, io: &mut Io, now: Instant) {
        self.begin(io, now);
    }

    fn frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        self.on_frame(io, conn, frame, now);
    }

    fn tick(&mut self, _io: &mut Io, now: Instant) -> bool {
        now < self.window.drain_until && (self.window.sending(now) || !self.finished())
    }
}

/// Each pair's ids and stamp source.
pub type PairIds = Vec<([i32; 2], u32)>;

/// One engine's share of the pairs: its connections (two per pair, in
/// order) and the pairs' ids.
pub type Share = (Vec<std::net::TcpStream>, PairIds);

/// Splits logged-in pairs over `threads` engines.
pub fn shares(pairs: Vec<PairSetup>, threads: usize) -> Vec<Share> {
    deal(pairs, threads)
        .into_iter()
        .map(|share| {
            let ids = share.iter().map(|p| (p.ids, p.src)).collect();
            let streams = share.into_iter().flat_map(|p| p.streams).collect();
            (streams, ids)
        })
        .collect()
}

/// Logs in `o.pairs` pairs (untimed) and deals them over `o.threads`
/// engines: each engine's sockets, and its pairs' ids and stamp sources.
pub fn engines_for_pairs(o: &Options, target: &Target) -> Result<(Vec<Io>, Vec<PairIds>), String> {
    let ids = users(o, target, 2 * o.pairs)?;
    let pairs = setup_pairs(o, target, &ids)?;
    let mut ios = Vec::new();
    let mut specs = Vec::new();
    for (streams, spec) in shares(pairs, o.threads) {
        ios.push(Io::new(streams)?);
        specs.push(spec);
    }
    Ok((ios, specs))
}

pub fn run(o: &Options, target: &Target) -> Result<Metrics, String> {
    let (ios, specs) = engines_for_pairs(o, target)?;
    let window = Window::new(o.warmup, o.secs, 1, Duration::from_secs(5));
    let cpu = sample_cpu(target, window.marks());
    let work =
        ios.into_iter().zip(specs).map(|(io, spec)| (io, PingPong::new(&spec, 0, window, o.msg_bytes))).collect();
    let results = engine::drive_all(work)?;
    let samples = cpu.join().map_err(|_| "the CPU sampler panicked")?;

    let mut total = PingPong::new(&[], 0, window, 0);
    let mut lost_conns = 0;
    for (part, closed) in &results {
        total.merge(part);
        lost_conns += closed;
    }
    let mut m = Metrics::default();
    m.set("msgs_per_s", total.delivered[0] as f64 / window.secs(0));
    m.latency(["p50_us", "p90_us", "p99_us", "p99_9_us", "max_us", "mean_us"], &total.hist[0]);
    m.set("stalls_40ms", total.stalls as f64);
    cpu_per_message(&mut m, &samples, 0, total.delivered[0], Unit::Msg);
    redis_cpu_per_message(&mut m, target, &samples, 0, total.delivered[0]);
    total.notes(&mut m);
    if lost_conns > 0 {
        m.notes.push(format!("{lost_conns} connections closed during the run"));
    }
    Ok(m)
}
