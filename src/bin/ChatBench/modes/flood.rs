//! flood: each pair's first side keeps W ONE_CHATs in flight to the second
//! (a new one as each arrives); the receiver checks every sequence number,
//! so loss, reordering and duplication are counted, not guessed.

use std::time::{Duration, Instant};

use super::super::engine::{self, Io, Workload};
use super::super::hist::Histogram;
use super::super::report::Metrics;
use super::super::target::Target;
use super::super::wire::{self, Stamp, msgid};
use super::pingpong::engines_for_pairs;
use super::{STALL_NS, Unit, Window, cpu_per_message, redis_cpu_per_message, sample_cpu};
use crate::args::Options;

/// One sender -> receiver stream; connections `2i` (sender), `2i + 1`.
struct Flow {
    src: u32,
    to: i32,
    /// Messages sent; the next one's sequence number.
    sent: u64,
    inflight: u64,
    /// Bit `seq` set once `seq` arrived.
    seen: Vec<u64>,
    /// Highest sequence number received so far.
    highest: Option<u64>,
    unique: u64,
    duplicated: u64,
    reordered: u64,
    /// Refused by the server with an ERROR (not lost: the sender was told).
    refused: u64,
}

struct Flood {
    flows: Vec<Flow>,
    window: Window,
    inflight: u64,
    pad: usize,
    hist: Histogram,
    delivered: u64,
    stalls: u64,
    /// Chat frames that do not belong to the flow they arrived on.
    stray: u64,
}

impl Flood {
    fn send_one(&mut self, io: &mut Io, f: usize, now: Instant) {
        let flow = &mut self.flows[f];
        let stamp = Stamp { src: flow.src, seq: flow.sent, t_ns: self.window.ns(now) };
        let (to, pad) = (flow.to, self.pad);
        flow.sent += 1;
        flow.inflight += 1;
        io.send(2 * f, |out| wire::one_chat(out, to, stamp, pad));
    }

    fn received(&mut self, io: &mut Io, f: usize, frame: &[u8], now: Instant) {
        let flow = &mut self.flows[f];
        let Some(stamp) = wire::msg_field(frame).and_then(Stamp::parse).filter(|s| s.src == flow.src) else {
            self.stray += 1;
            return;
        };
        let (word, bit) = ((stamp.seq / 64) as usize, stamp.seq % 64);
        if flow.seen.len() <= word {
            flow.seen.resize(word + 1, 0);
        }
        if flow.seen[word] & (1 << bit) != 0 {
            flow.duplicated += 1;
            return;
        }
        flow.seen[word] |= 1 << bit;
        flow.unique += 1;
        if flow.highest.is_some_and(|h| stamp.seq < h) {
            flow.reordered += 1;
        }
        flow.highest = flow.highest.max(Some(stamp.seq));
        flow.inflight = flow.inflight.saturating_sub(1);
        let latency = self.window.ns(now).saturating_sub(stamp.t_ns);
        if self.window.phase(now).is_some() {
            self.hist.record(latency);
            self.delivered += 1;
            if latency >= STALL_NS {
                self.stalls += 1;
            }
        }
        if self.window.sending(now) {
            self.send_one(io, f, now);
        }
    }
}

impl Workload for Flood {
    fn start(&mut self, io: &mut Io, now: Instant) {
        for f in 0..self.flows.len() {
            for _ in 0..self.inflight {
                self.send_one(io, f, now);
            }
        }
    }

    fn frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        let (f, side) = (conn / 2, conn % 2);
        match (wire::int_field(frame, wire::MSGID), side) {
            (Some(msgid::ONE_CHAT), 1) => self.received(io, f, frame, now),
            (Some(msgid::ERROR), 0) => {
                let flow = &mut self.flows[f];
                flow.refused += 1;
                flow.inflight = flow.inflight.saturating_sub(1);
                if self.window.sending(now) {
                    self.send_one(io, f, now);
                }
            }
            (Some(msgid::ONE_CHAT), _) => self.stray += 1,
            _ => {}
        }
    }

    fn tick(&mut self, _io: &mut Io, now: Instant) -> bool {
        now < self.window.drain_until && (self.window.sending(now) || self.flows.iter().any(|f| f.inflight > 0))
    }
}

pub fn run(o: &Options, target: &Target) -> Result<Metrics, String> {
    let (ios, specs) = engines_for_pairs(o, target)?;
    // Loss is only loss if it does not arrive after a generous wait.
    let window = Window::new(o.warmup, o.secs, 1, Duration::from_secs(10));
    let cpu = sample_cpu(target, window.marks());
    let work = ios
        .into_iter()
        .zip(specs)
        .map(|(io, spec)| {
            let flows = spec
                .iter()
                .map(|&(ids, src)| Flow {
                    src,
                    to: ids[1],
                    sent: 0,
                    inflight: 0,
                    seen: Vec::new(),
                    highest: None,
                    unique: 0,
                    duplicated: 0,
                    reordered: 0,
                    refused: 0,
                })
                .collect();
            let flood = Flood {
                flows,
                window,
                inflight: o.inflight as u64,
                pad: o.msg_bytes,
                hist: Histogram::default(),
                delivered: 0,
                stalls: 0,
                stray: 0,
            };
            (io, flood)
        })
        .collect();
    let results = engine::drive_all(work)?;
    let samples = cpu.join().map_err(|_| "the CPU sampler panicked")?;

    let mut hist = Histogram::default();
    let (mut sent, mut unique, mut dup, mut reordered, mut refused, mut delivered, mut stalls, mut stray, mut closed) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0);
    for (part, lost_conns) in &results {
        hist.merge(&part.hist);
        delivered += part.delivered;
        stalls += part.stalls;
        stray += part.stray;
        closed += lost_conns;
        for flow in &part.flows {
            sent += flow.sent;
            unique += flow.unique;
            dup += flow.duplicated;
            reordered += flow.reordered;
            refused += flow.refused;
        }
    }
    let mut m = Metrics::default();
    m.set("delivered_per_s", delivered as f64 / window.secs(0));
    m.set("sent", sent as f64);
    m.set("lost", sent.saturating_sub(unique + refused) as f64);
    m.set("reordered", reordered as f64);
    m.set("duplicated", dup as f64);
    m.set("refused", refused as f64);
    m.latency(["p50_us", "p90_us", "p99_us", "p99_9_us", "max_us", "mean_us"], &hist);
    m.set("stalls_40ms", stalls as f64);
    cpu_per_message(&mut m, &samples, 0, delivered, Unit::Msg);
    redis_cpu_per_message(&mut m, target, &samples, 0, delivered);
    if refused > 0 {
        m.notes.push(format!("{refused} messages refused (ERROR): start the server with --rate 1000000"));
    }
    if stray > 0 {
        m.notes.push(format!("{stray} chat frames arrived where none was expected"));
    }
    if closed > 0 {
        m.notes.push(format!("{closed} connections closed during the run"));
    }
    Ok(m)
}
