//! idle: N logged-in connections that send nothing, held open for `--secs`
//! on one epoll set; the server's resident memory per connection is the
//! growth of its VmRSS over the empty (but warmed-up) server, divided by N.

use std::time::{Duration, Instant};

use super::super::engine::{self, Io, Workload};
use super::super::procfs;
use super::super::report::Metrics;
use super::super::setup::{self, KEEPALIVE, SyncClient};
use super::super::target::Target;
use super::super::wire::{self, msgid};
use super::users;
use crate::args::Options;

/// Holds the connections until the deadline, with a PING every
/// [`KEEPALIVE`] (as a real idle client would send, or the server's idle
/// timeout closes it), counting any other frame (there should be none).
struct Hold {
    until: Instant,
    next_ping: Instant,
    frames: u64,
}

impl Workload for Hold {
    fn start(&mut self, _io: &mut Io, _now: Instant) {}

    fn frame(&mut self, _io: &mut Io, _conn: usize, frame: &[u8], _now: Instant) {
        if wire::int_field(frame, wire::MSGID) != Some(msgid::PONG) {
            self.frames += 1;
        }
    }

    fn tick(&mut self, io: &mut Io, now: Instant) -> bool {
        if now >= self.next_ping {
            self.next_ping = now + KEEPALIVE;
            for conn in 0..io.len() {
                io.send(conn, wire::ping);
            }
        }
        now < self.until
    }
}

pub fn run(o: &Options, target: &Target) -> Result<Metrics, String> {
    let ids = users(o, target, o.conns)?;
    // Warm up first: a server that has never hashed a password on all its
    // job threads grows by their arenas at the first logins, whatever the
    // number of connections. Log a few users in and out, then measure.
    let warm = o.setup_conc.min(ids.len());
    drop(setup::login_all(&ids[..warm], |i| target.addr_for(i % 2), o.setup_conc)?);
    target.wait_quiet(Duration::from_secs(30));
    let before = target.rss_kib();

    let started = Instant::now();
    let clients = setup::login_all(&ids, |i| target.addr_for(i % 2), o.setup_conc)?;
    let setup_secs = started.elapsed().as_secs_f64();
    let mut io = Io::new(clients.into_iter().map(SyncClient::into_stream).collect())?;
    target.wait_quiet(Duration::from_secs(30));
    let now = Instant::now();
    let mut hold = Hold { until: now + Duration::from_secs_f64(o.secs), next_ping: now + KEEPALIVE, frames: 0 };
    engine::drive(&mut io, &mut hold);
    let after = target.rss_kib();

    let mut m = Metrics::default();
    m.set("conns", (io.len() - io.closed()) as f64);
    if let (Some(before), Some(after)) = (before, after) {
        let live = (io.len() - io.closed()).max(1);
        m.set("rss_per_conn_bytes", after.saturating_sub(before) as f64 * 1024.0 / live as f64);
        m.set("rss_empty_kib", before as f64);
        m.set("rss_loaded_kib", after as f64);
    }
    if let Ok(bench) = procfs::rss_kib(std::process::id()) {
        m.set("bench_rss_kib", bench as f64);
    }
    m.set("setup_logins_per_s", io.len() as f64 / setup_secs.max(1e-9));
    if hold.frames > 0 {
        m.notes.push(format!("{} frames arrived on idle connections", hold.frames));
    }
    if io.closed() > 0 {
        m.notes.push(format!("{} connections closed while idle", io.closed()));
    }
    Ok(m)
}
