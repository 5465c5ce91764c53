//! The publishing connection: one socket to Redis that any thread writes
//! to directly, without waiting for a reply. Commands queued by many
//! threads travel pipelined, often many in one segment; the replies (counts
//! of receivers, which the bus does not need: delivery is acknowledged end
//! to end) are read and dropped by the link's own thread, which also
//! reconnects and runs the bus's timers.

use std::io::Read;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::conn::Endpoint;
use super::resp::{self, Reply};

/// How often the link thread wakes to flush, and to run the bus's timers.
pub const TICK: Duration = Duration::from_millis(20);
/// Reconnect back-off bounds; the back-off starts again after a connection
/// that stayed up for [`GOOD_SESSION`]. Kept short: messages wait for the
/// link, and a local Redis costs little to try.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// A connection that lasted this long worked; one that failed sooner (a
/// Redis that accepts and then refuses, say NOAUTH) counts as a failure.
const GOOD_SESSION: Duration = Duration::from_secs(1);
/// Bytes kept for a Redis that stopped reading (paused, or slow) before the
/// link gives up on the connection; the bus resends what is unacknowledged.
const MAX_PENDING: usize = 64 << 20;

/// What the link tells the bus.
pub trait LinkEvents: Send + Sync + 'static {
    /// A connection is up; anything unacknowledged may be sent again.
    fn link_up(&self);
    /// The connection failed; what was written may or may not have arrived.
    fn link_down(&self, why: &str);
    /// Called every [`TICK`] on the link thread.
    fn tick(&self, now: Instant);
}

pub struct Link {
    /// Where Redis is.
    endpoint: Endpoint,
    /// The socket and what it has not taken yet.
    state: Mutex<State>,
    /// Set to end the link thread.
    stopping: AtomicBool,
}

#[derive(Default)]
struct State {
    /// The connection while it is up.
    stream: Option<Arc<TcpStream>>,
    /// Bytes the socket did not take yet, written before anything newer.
    pending: Vec<u8>,
}

impl Link {
    pub fn new(endpoint: Endpoint) -> Link {
        Link { endpoint, state: Mutex::new(State::default()), stopping: AtomicBool::new(false) }
    }

    /// Starts the link thread.
    pub fn start(self: &Arc<Self>, events: Arc<dyn LinkEvents>) -> std::io::Result<()> {
        let link = Arc::clone(self);
        std::thread::Builder::new().name("bus-link".into()).spawn(move || link.run(&*events))?;
        Ok(())
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// Writes RESP commands in the order of the calls; false when no
    /// connection is up (nothing was written). True does not mean Redis got
    /// them: a failed write is dropped here and found by the link thread,
    /// and what mattered is sent again (unacknowledged). Never blocks.
    pub fn write(&self, bytes: &[u8]) -> bool {
        let mut state = self.state.lock();
        let Some(stream) = state.stream.clone() else { return false };
        if !state.pending.is_empty() {
            state.pending.extend_from_slice(bytes);
            return true;
        }
        match send_now(&stream, bytes) {
            Ok(n) => state.pending.extend_from_slice(&bytes[n..]),
            // The link thread sees the failure on its next read and reconnects.
            Err(_) => state.pending.clear(),
        }
        true
    }

    fn run(&self, events: &dyn LinkEvents) {
        let mut backoff = MIN_BACKOFF;
        while !self.stopping.load(Ordering::Relaxed) {
            let stream = match self.endpoint.connect(&[]) {
                Ok(stream) => stream,
                Err(e) => {
                    events.link_down(&e.to_string());
                    self.wait(backoff, events);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            let stream = Arc::new(stream);
            if stream.set_read_timeout(Some(TICK)).is_err() {
                continue;
            }
            self.state.lock().stream = Some(Arc::clone(&stream));
            events.link_up();
            let started = Instant::now();
            let why = self.serve(&stream, events);
            {
                let mut state = self.state.lock();
                state.stream = None;
                state.pending.clear();
            }
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            events.link_down(&why);
            if started.elapsed() >= GOOD_SESSION {
                backoff = MIN_BACKOFF;
            } else {
                self.wait(backoff, events);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Reads and drops replies, flushes what the socket did not take, and
    /// ticks, until the connection fails; returns why it did.
    fn serve(&self, stream: &TcpStream, events: &dyn LinkEvents) -> String {
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        let mut last_tick = Instant::now();
        loop {
            if self.stopping.load(Ordering::Relaxed) {
                return "stopping".into();
            }
            match (&*stream).read(&mut chunk) {
                Ok(0) => return "Redis closed the connection".into(),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if let Err(why) = drop_replies(&mut buf) {
                        return why;
                    }
                }
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return e.to_string(),
            }
            if let Err(why) = self.flush(stream) {
                return why;
            }
            let now = Instant::now();
            if now.duration_since(last_tick) >= TICK {
                last_tick = now;
                events.tick(now);
            }
        }
    }

    /// Writes what earlier writes left over.
    fn flush(&self, stream: &TcpStream) -> Result<(), String> {
        let mut state = self.state.lock();
        if state.pending.is_empty() {
            return Ok(());
        }
        if state.pending.len() > MAX_PENDING {
            return Err("Redis stopped reading what the bus sends".into());
        }
        let n = send_now(stream, &state.pending).map_err(|e| e.to_string())?;
        state.pending.drain(..n);
        Ok(())
    }

    /// Sleeps out a back-off, still ticking (the bus's timers run while
    /// Redis is away too).
    fn wait(&self, backoff: Duration, events: &dyn LinkEvents) {
        let until = Instant::now() + backoff;
        while Instant::now() < until && !self.stopping.load(Ordering::Relaxed) {
            std::thread::sleep(TICK);
            events.tick(Instant::now());
        }
    }
}

/// Drops the complete replies in `buf`; an error reply to a PUBLISH means
/// the connection is not what the bus thinks (say, a lost AUTH).
fn drop_replies(buf: &mut Vec<u8>) -> Result<(), String> {
    let mut used = 0;
    loop {
        match resp::parse(&buf[used..]) {
            Ok(Some((Reply::Error(why), _))) => return Err(String::from_utf8_lossy(&why).into_owned()),
            Ok(Some((_, n))) => used += n,
            Ok(None) => break,
            Err(_) => return Err("Redis sent something that is not RESP".into()),
        }
    }
    buf.drain(..used);
    Ok(())
}

/// Writes as much of `bytes` as the socket takes now.
fn send_now(stream: &TcpStream, bytes: &[u8]) -> std::io::Result<usize> {
    let mut sent = 0;
    while sent < bytes.len() {
        let rest = &bytes[sent..];
        // SAFETY: `rest` is a valid, initialised buffer of `rest.len()` bytes
        // for the whole call, and the descriptor is kept open by `stream`.
        // MSG_DONTWAIT makes this one call non-blocking without changing the
        // socket, which the link thread reads in blocking mode.
        let n = unsafe {
            libc::send(stream.as_raw_fd(), rest.as_ptr().cast(), rest.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
        };
        if n >= 0 {
            sent += n as usize;
            continue;
        }
        let err = std::io::Error::last_os_error();
        match err.kind() {
            std::io::ErrorKind::Interrupted => {}
            std::io::ErrorKind::WouldBlock => break,
            _ => return Err(err),
        }
    }
    Ok(sent)
}
