//! fanout: one group of G members; N of them send GROUP_CHATs, W in flight
//! each, the next as soon as every other member has the last. Throughput is
//! deliveries (messages x receivers) per second; latency is to the last
//! receiver, the one a group conversation waits for.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::super::engine::{self, Io, Workload};
use super::super::hist::Histogram;
use super::super::report::Metrics;
use super::super::setup::{self, SyncClient};
use super::super::target::Target;
use super::super::wire::{self, Stamp, msgid};
use super::{STALL_NS, Unit, Window, cpu_per_message, redis_cpu_per_message, sample_cpu, users};
use crate::bench::args::Options;

/// A message still on its way to some members.
struct Pending {
    seq: u64,
    /// Members that have not received it yet.
    remaining: usize,
}

/// One sender: member (and connection) number `src`.
#[derive(Default)]
struct Sender {
    next_seq: u64,
    pending: VecDeque<Pending>,
}

struct Fanout {
    group: i32,
    receivers: usize,
    senders: Vec<Sender>,
    window: Window,
    inflight: usize,
    pad: usize,
    /// Latency to the last receiver of each message.
    last: Histogram,
    /// Latency of every single delivery.
    each: Histogram,
    deliveries: u64,
    messages: u64,
    stalls: u64,
    errors: u64,
    /// Deliveries of a message not pending (a duplicate) or unreadable.
    unexpected: u64,
}

impl Fanout {
    fn send_one(&mut self, io: &mut Io, s: usize, now: Instant) {
        let sender = &mut self.senders[s];
        let stamp = Stamp { src: s as u32, seq: sender.next_seq, t_ns: self.window.ns(now) };
        sender.next_seq += 1;
        sender.pending.push_back(Pending { seq: stamp.seq, remaining: self.receivers });
        let (group, pad) = (self.group, self.pad);
        io.send(s, |out| wire::group_chat(out, group, stamp, pad));
    }

    fn delivered(&mut self, io: &mut Io, frame: &[u8], now: Instant) {
        let stamp = wire::msg_field(frame).and_then(Stamp::parse);
        let Some(stamp) = stamp.filter(|s| (s.src as usize) < self.senders.len()) else {
            self.unexpected += 1;
            return;
        };
        let s = stamp.src as usize;
        let sender = &mut self.senders[s];
        let Some(at) = sender.pending.iter().position(|p| p.seq == stamp.seq) else {
            self.unexpected += 1;
            return;
        };
        let latency = self.window.ns(now).saturating_sub(stamp.t_ns);
        let measured = self.window.phase(now).is_some();
        if measured {
            self.each.record(latency);
            self.deliveries += 1;
        }
        sender.pending[at].remaining -= 1;
        if sender.pending[at].remaining > 0 {
            return;
        }
        // This was the last receiver: its latency is the message's.
        sender.pending.remove(at);
        if measured {
            self.messages += 1;
            self.last.record(latency);
            if latency >= STALL_NS {
                self.stalls += 1;
            }
        }
        if self.window.sending(now) {
            self.send_one(io, s, now);
        }
    }
}

impl Workload for Fanout {
    fn start(&mut self, io: &mut Io, now: Instant) {
        for s in 0..self.senders.len() {
            for _ in 0..self.inflight {
                self.send_one(io, s, now);
            }
        }
    }

    fn frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        match wire::int_field(frame, wire::MSGID) {
            Some(msgid::GROUP_CHAT) => self.delivered(io, frame, now),
            Some(msgid::ERROR) if conn < self.senders.len() => {
                // Refused: that message will reach nobody; send another.
                self.errors += 1;
                self.senders[conn].pending.pop_front();
                if self.window.sending(now) {
                    self.send_one(io, conn, now);
                }
            }
            _ => {}
        }
    }

    fn tick(&mut self, _io: &mut Io, now: Instant) -> bool {
        now < self.window.drain_until
            && (self.window.sending(now) || self.senders.iter().any(|s| !s.pending.is_empty()))
    }
}

pub fn run(o: &Options, target: &Target) -> Result<Metrics, String> {
    let ids = users(o, target, o.group_size)?;
    let mut members = setup::login_all(&ids, |i| target.addr_for(i % 2), o.setup_conc)?;
    let group = setup::make_group(&mut members)?;
    // Every member is in one engine: a message's receivers must all be
    // counted where its sender is waiting for them.
    let mut io = Io::new(members.into_iter().map(SyncClient::into_stream).collect())?;
    let window = Window::new(o.warmup, o.secs, 1, Duration::from_secs(5));
    let cpu = sample_cpu(target, window.marks());
    let mut fanout = Fanout {
        group,
        receivers: o.group_size - 1,
        senders: (0..o.senders).map(|_| Sender::default()).collect(),
        window,
        inflight: o.inflight,
        pad: o.msg_bytes,
        last: Histogram::default(),
        each: Histogram::default(),
        deliveries: 0,
        messages: 0,
        stalls: 0,
        errors: 0,
        unexpected: 0,
    };
    engine::drive(&mut io, &mut fanout);
    let samples = cpu.join().map_err(|_| "the CPU sampler panicked")?;

    let f = &fanout;
    let mut m = Metrics::default();
    m.set("deliveries_per_s", f.deliveries as f64 / window.secs(0));
    m.set("msgs_per_s", f.messages as f64 / window.secs(0));
    m.latency(["last_p50_us", "last_p90_us", "last_p99_us", "last_p99_9_us", "last_max_us", "last_mean_us"], &f.last);
    m.set("each_p99_us", f.each.quantile(0.99) as f64 / 1000.0);
    m.set("stalls_40ms", f.stalls as f64);
    cpu_per_message(&mut m, &samples, 0, f.deliveries, Unit::Delivery);
    // Per message, not per delivery, so that the row means the same in
    // every mode; deliveries_per_s / msgs_per_s gives the other.
    redis_cpu_per_message(&mut m, target, &samples, 0, f.messages);
    if o.threads > 1 {
        m.notes.push("fanout runs on one load thread (--threads ignored)".into());
    }
    if f.errors > 0 {
        m.notes.push(format!("{} GROUP_CHATs refused (ERROR): start the server with --rate 1000000", f.errors));
    }
    if f.unexpected > 0 {
        m.notes.push(format!("{} deliveries of messages not pending (duplicates?)", f.unexpected));
    }
    if io.closed() > 0 {
        m.notes.push(format!("{} connections closed during the run", io.closed()));
    }
    Ok(m)
}
