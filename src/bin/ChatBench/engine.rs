//! The load generator's event loop: non-blocking sockets on one epoll set
//! (edge-triggered, through the reactor's own syscall wrappers), frames cut
//! at NUL, and a [`Workload`] that reacts to each frame by queueing more.
//!
//! Output is only queued while frames are handled and written once per
//! wake-up, so a burst of replies to one connection costs one `send`.
//! Several engines can run on threads of their own, each owning a disjoint
//! share of the connections.

use std::net::TcpStream;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chatserver::net::FrameDecoder;
use chatserver::net::sys::{self, Epoll};

/// Set by Ctrl-C: every engine ends its run at the next wake-up.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// How long one `epoll_wait` may sleep: the resolution of phase changes.
const TICK: Duration = Duration::from_millis(2);
/// Bytes read per `read` call.
const READ_CHUNK: usize = 64 * 1024;
/// Largest frame from the server: a LOGIN_ACK with stored messages.
const MAX_FRAME: usize = 64 << 20;

/// What drives the traffic. All calls come from the engine's thread.
pub trait Workload {
    /// Called once before the first wait: queue the first messages.
    fn start(&mut self, io: &mut Io, now: Instant);
    /// One complete frame arrived on connection `conn`.
    fn frame(&mut self, io: &mut Io, conn: usize, frame: &[u8], now: Instant);
    /// Called after every wake-up; false ends the run.
    fn tick(&mut self, io: &mut Io, now: Instant) -> bool;
    /// Connection `conn` was closed by the peer or failed (called before
    /// the next `tick`); for workloads that must not wait for its replies.
    fn closed(&mut self, _io: &mut Io, _conn: usize, _now: Instant) {}
}

/// One connection of the bench.
struct Conn {
    /// None once closed.
    fd: Option<OwnedFd>,
    /// Queued output; `out[sent..]` is not written yet.
    out: Vec<u8>,
    sent: usize,
    /// Frame boundaries, and an unfinished frame from earlier reads.
    decoder: FrameDecoder,
    /// Already listed in `Io::dirty`.
    dirty: bool,
    /// Bumped by [`Io::replace`]: frames read from the old socket stop.
    epoch: u32,
}

/// The connections of one engine, addressed by index.
pub struct Io {
    epoll: Epoll,
    conns: Vec<Conn>,
    /// Connections with output queued since the last flush.
    dirty: Vec<usize>,
    /// Connections the peer closed, or that failed.
    closed: usize,
    /// Those not yet reported to the workload's `closed`.
    lost: Vec<usize>,
}

impl Io {
    /// Takes over `streams` (index = position), made non-blocking with
    /// `TCP_NODELAY` set.
    pub fn new(streams: Vec<TcpStream>) -> Result<Io, String> {
        let epoll = Epoll::new().map_err(|e| format!("epoll_create: {e}"))?;
        let mut io =
            Io { epoll, conns: Vec::with_capacity(streams.len()), dirty: Vec::new(), closed: 0, lost: Vec::new() };
        for stream in streams {
            io.add(stream)?;
        }
        Ok(io)
    }

    /// Takes over one more connection, made non-blocking with `TCP_NODELAY`
    /// set; returns its index.
    pub fn add(&mut self, stream: TcpStream) -> Result<usize, String> {
        let index = self.conns.len();
        let fd = self.watch(stream, index)?;
        self.conns.push(Conn {
            fd: Some(fd),
            out: Vec::new(),
            sent: 0,
            decoder: FrameDecoder::new(MAX_FRAME),
            dirty: false,
            epoch: 0,
        });
        Ok(index)
    }

    /// Closes connection `conn` (on purpose: not counted as lost) and puts
    /// `stream` in its place, with nothing queued or half-read.
    pub fn replace(&mut self, conn: usize, stream: TcpStream) -> Result<(), String> {
        let fd = self.watch(stream, conn)?;
        let c = self.conns.get_mut(conn).ok_or("no such connection")?;
        // The old descriptor leaves the epoll set as it closes; an event of
        // it still in this wake-up's batch finds the new one with nothing
        // to read, which is harmless.
        c.fd = Some(fd);
        c.out.clear();
        c.sent = 0;
        c.decoder = FrameDecoder::new(MAX_FRAME);
        c.epoch = c.epoch.wrapping_add(1);
        Ok(())
    }

    /// Makes `stream` ready for the engine and adds it to the epoll set as
    /// connection `index`.
    fn watch(&self, stream: TcpStream, index: usize) -> Result<OwnedFd, String> {
        stream.set_nonblocking(true).map_err(|e| format!("set_nonblocking: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("TCP_NODELAY: {e}"))?;
        let fd = OwnedFd::from(stream);
        self.epoll.add(fd.as_raw_fd(), sys::CONN_EVENTS, index as u64).map_err(|e| format!("epoll_ctl: {e}"))?;
        Ok(fd)
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    /// Connections lost during the run.
    pub fn closed(&self) -> usize {
        self.closed
    }

    /// Queues whatever `write` appends (whole, NUL-terminated frames) on
    /// connection `conn`; written at the end of this wake-up.
    pub fn send(&mut self, conn: usize, write: impl FnOnce(&mut Vec<u8>)) {
        let Some(c) = self.conns.get_mut(conn) else { return };
        if c.fd.is_none() {
            return;
        }
        write(&mut c.out);
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(conn);
        }
    }

    fn close(&mut self, conn: usize) {
        if let Some(c) = self.conns.get_mut(conn)
            && c.fd.take().is_some()
        {
            self.closed += 1;
            self.lost.push(conn);
        }
    }

    /// Writes every connection's queued output as far as the socket takes
    /// it; the rest waits for the next `EPOLLOUT` edge.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for &conn in &dirty {
            let c = &mut self.conns[conn];
            c.dirty = false;
            let Some(fd) = c.fd.as_ref() else { continue };
            let mut failed = false;
            while c.sent < c.out.len() {
                match sys::write(fd.as_fd(), &c.out[c.sent..]) {
                    Ok(n) => c.sent += n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
            if c.sent == c.out.len() {
                c.out.clear();
                c.sent = 0;
            }
            if failed {
                self.close(conn);
            }
        }
        dirty.clear();
        self.dirty = dirty;
    }

    /// Reads what `conn` has and hands each frame to `work`.
    fn read(&mut self, conn: usize, scratch: &mut [u8], work: &mut impl Workload) {
        loop {
            let Some(fd) = self.conns[conn].fd.as_ref() else { return };
            let n = match sys::read(fd.as_fd(), scratch) {
                Ok(0) => return self.close(conn),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => return self.close(conn),
            };
            let now = Instant::now();
            // Out of the connection while the workload, which may write to
            // it or replace its socket, sees the frames.
            let epoch = self.conns[conn].epoch;
            let mut decoder = std::mem::replace(&mut self.conns[conn].decoder, FrameDecoder::new(MAX_FRAME));
            let fed = decoder.feed(&scratch[..n], |frame| {
                work.frame(self, conn, frame, now);
                self.conns[conn].epoch == epoch
            });
            if self.conns[conn].epoch != epoch {
                // A new socket, read on its own events.
                return;
            }
            self.conns[conn].decoder = decoder;
            if fed.is_err() {
                return self.close(conn);
            }
            // A short read emptied the socket (edge-triggered: no need to
            // see EAGAIN to know it).
            if n < scratch.len() {
                return;
            }
        }
    }
}

/// Runs `work` over `io` until its `tick` says stop (or Ctrl-C).
pub fn drive(io: &mut Io, work: &mut impl Workload) {
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut scratch = vec![0u8; READ_CHUNK];
    work.start(io, Instant::now());
    io.flush();
    loop {
        let n = match io.epoll.wait(&mut events, TICK.as_millis() as i32) {
            Ok(n) => n,
            Err(e) => {
                eprintln!("ChatBench: epoll_wait failed: {e}");
                return;
            }
        };
        for ev in &events[..n] {
            let (conn, flags) = (ev.u64 as usize, ev.events);
            if flags & (libc::EPOLLIN | libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0 {
                io.read(conn, &mut scratch, work);
            }
            if flags & libc::EPOLLOUT as u32 != 0
                && let Some(c) = io.conns.get_mut(conn)
                && c.sent < c.out.len()
                && !c.dirty
            {
                c.dirty = true;
                io.dirty.push(conn);
            }
        }
        let now = Instant::now();
        for conn in std::mem::take(&mut io.lost) {
            work.closed(io, conn, now);
        }
        let go_on = work.tick(io, now) && !INTERRUPTED.load(Ordering::Relaxed);
        io.flush();
        if !go_on {
            return;
        }
    }
}

/// Runs one engine per `(Io, Workload)` share, each on its own thread, and
/// gives the workloads back (in order) with the connections lost per share.
pub fn drive_all<W: Workload + Send>(shares: Vec<(Io, W)>) -> Result<Vec<(W, usize)>, String> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|(mut io, mut work)| {
                scope.spawn(move || {
                    drive(&mut io, &mut work);
                    (work, io.closed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| "a load thread panicked".to_string())).collect()
    })
}
