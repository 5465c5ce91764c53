//! fanout: one group of G members; N of them send GROUP_CHATs, W in flight
//! each, the next as soon as every other member has the last. Throughput is
//! deliveries (messages x receivers) per second; latency is to the last
//! receiver, the one a group conversation waits for.

use std::collections::VecDeque;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::super::engine::{self, Io, Workload};
use super::super::hist::Histogram;
use super::super::report::Metrics;
use super::super::setup::{self, SyncClient};
use super::super::target::Target;
use super::super::wire::{self, Stamp, msgid};
use super::{STALL_NS, Unit, Window, cpu_per_message, redis_cpu_per_message, sample_cpu, users};
use crate::args::Options;

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

/// The fanout workload over one group whose members are connections
/// `base..base + members` (the senders first); embeddable in another
/// workload, and measured in up to two phases like [`super::pingpong::PingPong`].
pub struct Fanout {
    group: i32,
    base: usize,
    members: usize,
    receivers: usize,
    senders: Vec<Sender>,
    window: Window,
    inflight: usize,
    pad: usize,
    /// Latency to the last receiver of each message, per measured phase.
    pub last: [Histogram; 2],
    /// Latency of every single delivery, per measured phase.
    pub each: [Histogram; 2],
    pub deliveries: [u64; 2],
    pub messages: [u64; 2],
    /// Messages whose last receiver waited 40 ms or more.
    pub stalls: u64,
    pub errors: u64,
    /// Deliveries of a message not pending (a duplicate) or unreadable.
    pub unexpected: u64,
}

impl Fanout {
    /// A group `group` of `members` (0 for an engine without the group),
    /// of whom the first `senders` keep `inflight` messages each going.
    pub fn new(
        group: i32,
        base: usize,
        members: usize,
        senders: usize,
        inflight: usize,
        window: Window,
        pad: usize,
    ) -> Fanout {
        Fanout {
            group,
            base,
            members,
            receivers: members.saturating_sub(1),
            senders: (0..senders.min(members)).map(|_| Sender::default()).collect(),
            window,
            inflight,
            pad,
            last: Default::default(),
            each: Default::default(),
            deliveries: [0; 2],
            messages: [0; 2],
            stalls: 0,
            errors: 0,
            unexpected: 0,
        }
    }

    /// Connections this workload uses, from `base`.
    pub fn conns(&self) -> usize {
        self.members
    }

    fn send_one(&mut self, io: &mut Io, s: usize, now: Instant) {
        let sender = &mut self.senders[s];
        let stamp = Stamp { src: s as u32, seq: sender.next_seq, t_ns: self.window.ns(now) };
        sender.next_seq += 1;
        sender.pending.push_back(Pending { seq: stamp.seq, remaining: self.receivers });
        let (group, pad) = (self.group, self.pad);
        io.send(self.base + s, |out| wire::group_chat(out, group, stamp, pad));
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
        let phase = self.window.phase(now);
        if let Some(phase) = phase {
            self.each[phase].record(latency);
            self.deliveries[phase] += 1;
        }
        sender.pending[at].remaining -= 1;
        if sender.pending[at].remaining > 0 {
            return;
        }
        // This was the last receiver: its latency is the message's.
        sender.pending.remove(at);
        if let Some(phase) = phase {
            self.messages[phase] += 1;
            self.last[phase].record(latency);
            if latency >= STALL_NS {
                self.stalls += 1;
            }
        }
        if self.window.sending(now) {
            self.send_one(io, s, now);
        }
    }

    pub fn begin(&mut self, io: &mut Io, now: Instant) {
        for s in 0..self.senders.len() {
            for _ in 0..self.inflight {
                self.send_one(io, s, now);
            }
        }
    }

    pub fn on_frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant) {
        let member = conn - self.base;
        match wire::int_field(frame, wire::MSGID) {
            Some(msgid::GROUP_CHAT) => self.delivered(io, frame, now),
            Some(msgid::ERROR) if member < self.senders.len() => {
                // Refused: that message will reach nobody; send another.
                self.errors += 1;
                self.senders[member].pending.pop_front();
                if self.window.sending(now) {
                    self.send_one(io, member, now);
                }
            }
            _ => {}
        }
    }

    /// Every message sent has reached every receiver.
    pub fn finished(&self) -> bool {
        self.senders.iter().all(|s| s.pending.is_empty())
    }

    /// Adds the figures of `other` (another engine's share).
    pub fn merge(&mut self, other: &Fanout) {
        for phase in 0..2 {
            self.last[phase].merge(&other.last[phase]);
            self.each[phase].merge(&other.each[phase]);
            self.deliveries[phase] += other.deliveries[phase];
            self.messages[phase] += other.messages[phase];
        }
        self.stalls += other.stalls;
        self.errors += other.errors;
        self.unexpected += other.unexpected;
    }

    /// Notes on what went wrong, if anything.
    pub fn notes(&self, m: &mut Metrics) {
        if self.errors > 0 {
            m.notes.push(format!("{} GROUP_CHATs refused (ERROR): start the server with --rate 1000000", self.errors));
        }
        if self.unexpected > 0 {
            m.notes.push(format!("{} deliveries of messages not pending (duplicates?)", self.unexpected));
        }
    }
}

impl Workload for Fanout {
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

/// Logs in `ids` as one group's members (alternating servers with
/// `--addr2`) and makes the group; returns their sockets, in member
/// order, and the group id.
pub fn setup_group(o: &Options, target: &Target, ids: &[i32]) -> Result<(Vec<TcpStream>, i32), String> {
    let mut members = setup::login_all(ids, |i| target.addr_for(i % 2), o.setup_conc)?;
    let group = setup::make_group(&mut members)?;
    Ok((members.into_iter().map(SyncClient::into_stream).collect(), group))
}

pub fn run(o: &Options, target: &Target) -> Result<Metrics, String> {
    let ids = users(o, target, o.group_size)?;
    let (streams, group) = setup_group(o, target, &ids)?;
    // Every member is in one engine: a message's receivers must all be
    // counted where its sender is waiting for them.
    let mut io = Io::new(streams)?;
    let window = Window::new(o.warmup, o.secs, 1, Duration::from_secs(5));
    let cpu = sample_cpu(target, window.marks());
    let mut fanout = Fanout::new(group, 0, o.group_size, o.senders, o.inflight, window, o.msg_bytes);
    engine::drive(&mut io, &mut fanout);
    let samples = cpu.join().map_err(|_| "the CPU sampler panicked")?;

    let f = &fanout;
    let mut m = Metrics::default();
    m.set("deliveries_per_s", f.deliveries[0] as f64 / window.secs(0));
    m.set("msgs_per_s", f.messages[0] as f64 / window.secs(0));
    m.latency(
        ["last_p50_us", "last_p90_us", "last_p99_us", "last_p99_9_us", "last_max_us", "last_mean_us"],
        &f.last[0],
    );
    m.set("each_p99_us", f.each[0].quantile(0.99) as f64 / 1000.0);
    m.set("stalls_40ms", f.stalls as f64);
    cpu_per_message(&mut m, &samples, 0, f.deliveries[0], Unit::Delivery);
    // Per message, not per delivery, so that the row means the same in
    // every mode; deliveries_per_s / msgs_per_s gives the other.
    redis_cpu_per_message(&mut m, target, &samples, 0, f.messages[0]);
    if o.threads > 1 {
        m.notes.push("fanout runs on one load thread (--threads ignored)".into());
    }
    f.notes(&mut m);
    if io.closed() > 0 {
        m.notes.push(format!("{} connections closed during the run", io.closed()));
    }
    Ok(m)
}
