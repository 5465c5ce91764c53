//! One worker's epoll loop: it owns its connections and is the only thread
//! that reads them, runs their handler and closes them. Other threads may
//! append frames to a connection's output (see `output.rs`); what the
//! socket does not take at once is the loop's to flush.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::config::NetConfig;
use super::frame::FrameDecoder;
use super::handler::{AfterClose, CloseReason, ConnId, Handler, Outbox, Pending};
use super::output::{Closing, Writer};
use super::remote::{Remote, Task};
use super::server::StopHandle;
use super::sys::{self, Epoll};

/// Token of the loop's wake-up eventfd; connection tokens never reach it.
const WAKE_TOKEN: u64 = u64::MAX;
/// Most bytes read from one connection per turn, so one busy client cannot
/// starve the others; the rest is read on the next turn.
const READ_BUDGET: usize = 256 * 1024;
/// How long a loop with reads waiting sleeps while another loop is behind.
const CONGESTED_WAIT_MS: i32 = 1;
/// How often the sweep runs: idle connections closed, quiet ones' buffers
/// freed.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// One client connection.
struct Connection<S> {
    /// The socket's descriptor, for reads. `out` owns the socket and closes
    /// it in [`EventLoop::close`] (which also takes it out of the epoll set);
    /// the connection is gone from its slot by then.
    fd: RawFd,
    /// Finds frame boundaries and keeps an unfinished tail.
    decoder: FrameDecoder,
    /// Bytes not yet accepted by the socket; shared with the threads that
    /// write to the connection directly.
    out: Writer,
    /// The handler's state for this connection.
    session: S,
    /// When bytes last arrived: a connection quiet for a sweep gives its
    /// buffers back.
    last_active: Instant,
    /// Since when pending output has waited without the socket taking any
    /// of it, for the send timeout; None while nothing waits.
    stalled_since: Option<Instant>,
    /// Set once the connection must close after flushing its output.
    closing: Option<CloseReason>,
    /// How far the output must be written before a closing connection
    /// closes: what was written or waiting when the close was first seen.
    /// Frames added later come back to the handler as unsent, so a steady
    /// stream into the output cannot keep a closing connection open.
    close_at: Option<u64>,
    /// The handler asked not to be given more frames for now.
    paused: bool,
    /// The peer signalled a hang-up (EPOLLRDHUP/HUP). Edge-triggered, that
    /// comes once: reads go on past short reads until the end of the stream
    /// even if reading was paused when it came.
    hung_up: bool,
    /// The end of the stream was read: nothing more comes from the peer,
    /// and the handler decides when the connection closes.
    ended: bool,
    /// Already listed for a flush at the end of this turn.
    dirty: bool,
}

impl<S> Connection<S> {
    fn socket(&self) -> BorrowedFd<'_> {
        // SAFETY: `out` (this connection's own handle on the shared output)
        // owns the descriptor, and only `Writer::close_after_marks` closes
        // it, which only `EventLoop::close` calls, after taking the
        // connection out of its slot: while `self` is borrowed it is open.
        unsafe { BorrowedFd::borrow_raw(self.fd) }
    }

    /// The session, and what its handler may do to this open connection
    /// (`release` means nothing for an open one).
    fn parts<'a>(&'a mut self, release: &'a mut bool, now: Instant) -> (&'a mut S, Outbox<'a>) {
        let Connection { out, session, closing, paused, .. } = self;
        (session, Outbox { out, close: closing, paused, release, now })
    }
}

/// A slot of the connection table.
struct Slot<S> {
    /// Bumped each time the slot is freed, so stale tokens miss.
    generation: u32,
    /// The connection, while it is open.
    conn: Option<Connection<S>>,
    /// The session of a closed connection the handler still drains
    /// ([`AfterClose::Drain`]): messages for it keep reaching it.
    draining: Option<S>,
}

/// A worker loop.
pub(super) struct EventLoop<H: Handler> {
    /// This loop's index among the workers.
    index: usize,
    /// The epoll set of this loop's connections and wake-up eventfd.
    epoll: Epoll,
    /// What the connections are served by.
    handler: Arc<H>,
    /// Inboxes of all loops; this loop drains its own.
    remote: Remote<H::Message>,
    /// Limits shared with the acceptor.
    config: NetConfig,
    /// Open connections of the whole server, for `--max-conns`.
    live: Arc<AtomicUsize>,
    /// Stops the whole server if this loop cannot go on.
    stop: StopHandle,
    /// The connection table, indexed by the low half of a token.
    slots: Vec<Slot<H::Session>>,
    /// Free slot indices.
    free: Vec<u32>,
    /// Tokens whose output must be flushed at the end of this turn.
    dirty: Vec<u64>,
    /// Tokens that stopped reading on the budget and have more to read.
    unread: Vec<u64>,
    /// Read buffer shared by all connections of the loop; a frame's tail is
    /// copied out, so idle connections hold no read buffer of their own.
    scratch: Vec<u8>,
    /// Where output of draining sessions goes: nowhere, emptied each time.
    void: Writer,
    /// Marks a flush found written out, reported once the output's lock
    /// is let go (the handler may write to the connection again).
    done_marks: Vec<u64>,
    /// The time at the start of this turn.
    now: Instant,
}

/// Stops the server when dropped during a panic.
struct StopOnPanic(StopHandle);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            crate::error!("a worker loop panicked; stopping the server");
            self.0.stop();
        }
    }
}

fn token_of(index: u32, generation: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(index)
}

fn index_of(token: u64) -> usize {
    (token & 0xffff_ffff) as usize
}

/// The live connection `token` names in `slots`, if any. A free function
/// (not a method) so that callers can hold it while borrowing the loop's
/// other fields, the handler above all: cloning the handler's `Arc` per call
/// instead made both loops bounce its reference count between cores.
fn find<S>(slots: &mut [Slot<S>], token: u64) -> Option<&mut Connection<S>> {
    let slot = slots.get_mut(index_of(token))?;
    if token_of(index_of(token) as u32, slot.generation) != token {
        return None;
    }
    slot.conn.as_mut()
}

impl<H: Handler> EventLoop<H> {
    pub(super) fn new(
        index: usize,
        handler: Arc<H>,
        remote: Remote<H::Message>,
        config: NetConfig,
        live: &Arc<AtomicUsize>,
        stop: &StopHandle,
    ) -> std::io::Result<EventLoop<H>> {
        let epoll = Epoll::new()?;
        epoll.add(remote.inbox(index).wake.raw(), sys::READ_EVENTS, WAKE_TOKEN)?;
        Ok(EventLoop {
            index,
            epoll,
            handler,
            remote,
            config,
            live: Arc::clone(live),
            stop: stop.clone(),
            slots: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            unread: Vec::new(),
            scratch: vec![0; 64 * 1024],
            void: Writer::detached(),
            done_marks: Vec::new(),
            now: Instant::now(),
        })
    }

    /// Runs until a `Shutdown` task arrives; an error when the loop could
    /// not go on (it stopped the server).
    pub(super) fn run(mut self) -> std::io::Result<()> {
        super::remote::set_current_worker(self.index);
        // A loop that dies leaves its connections and inbox unserved (and
        // the others stopped once its inbox passes the mark): stop it all.
        let _stop_on_panic = StopOnPanic(self.stop.clone());
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut tasks = Vec::new();
        let mut last_sweep = Instant::now();
        loop {
            // Frames the end of the last turn (its hooks, the sweep) wrote
            // into other connections' outputs go out before any sleep.
            self.remote.flush_unflushed();
            // Do not sleep while work is waiting: reads cut short by the budget,
            // or tasks this loop posted to itself (those send no wake-up).
            // While a loop is behind, nobody reads: what the clients send
            // waits in TCP, and this loop looks again shortly.
            let congested = self.remote.congested();
            let pending = !self.unread.is_empty() || self.remote.inbox(self.index).has_tasks();
            let mut timeout = match (pending, congested) {
                (true, true) => CONGESTED_WAIT_MS,
                (true, false) => 0,
                (false, _) => SWEEP_EVERY.as_millis() as i32,
            };
            let inbox = self.remote.inbox(self.index);
            if timeout != 0 && !inbox.going_to_sleep() {
                timeout = 0;
            }
            let waited = self.epoll.wait(&mut events, timeout);
            inbox.woke();
            let n = match waited {
                Ok(n) => n,
                Err(e) => {
                    // Not EINTR (retried): the epoll set itself is broken and
                    // waiting again would fail the same way at once.
                    crate::error!("worker {}: epoll_wait failed: {e}; stopping the server", self.index);
                    self.stop.stop();
                    self.shutdown();
                    return Err(e);
                }
            };
            self.now = Instant::now();
            for ev in &events[..n] {
                let (token, flags) = (ev.u64, ev.events);
                if token == WAKE_TOKEN {
                    self.remote.inbox(self.index).wake.drain();
                    continue;
                }
                let hangup = flags & (libc::EPOLLERR | libc::EPOLLHUP | libc::EPOLLRDHUP) as u32 != 0;
                if hangup || flags & libc::EPOLLIN as u32 != 0 {
                    if congested {
                        self.defer_read(token, hangup);
                    } else {
                        self.read(token, hangup);
                    }
                }
                if flags & libc::EPOLLOUT as u32 != 0 {
                    self.mark_dirty(token);
                }
            }
            if !congested {
                // Deferred reads may name a connection more than once.
                self.unread.sort_unstable();
                self.unread.dedup();
                for token in std::mem::take(&mut self.unread) {
                    self.read(token, false);
                }
            }
            self.remote.inbox(self.index).take(&mut tasks);
            let mut stop = false;
            for task in tasks.drain(..) {
                match task {
                    Task::Accept(fd) => self.adopt(fd),
                    Task::Deliver(token, msg) => self.deliver(token, msg),
                    Task::Behind(token, msg) => {
                        self.deliver(token, msg);
                        if let Some(conn) = self.conn(token) {
                            conn.out.handed_behind();
                        }
                    }
                    Task::Flush(token) => self.mark_dirty(token),
                    Task::Close(token) => self.request_close(token),
                    Task::Run(f) => f(),
                    Task::Shutdown => stop = true,
                }
            }
            self.remote.flush_unflushed();
            self.flush_dirty();
            self.handler.turn_end();
            if stop {
                self.remote.flush_unflushed();
                self.shutdown();
                return Ok(());
            }
            if self.now.duration_since(last_sweep) >= SWEEP_EVERY {
                last_sweep = self.now;
                self.sweep();
            }
        }
    }

    fn conn(&mut self, token: u64) -> Option<&mut Connection<H::Session>> {
        find(&mut self.slots, token)
    }

    fn adopt(&mut self, fd: OwnedFd) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot { generation: 0, conn: None, draining: None });
                (self.slots.len() - 1) as u32
            }
        };
        let token = token_of(index, self.slots[index as usize].generation);
        let raw = fd.as_raw_fd();
        if let Err(e) = self.epoll.add(raw, sys::CONN_EVENTS, token) {
            crate::error!("worker {}: cannot watch a new connection: {e}", self.index);
            self.free.push(index);
            self.live.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let out = Writer::new(fd);
        let session = self.handler.open(ConnId { worker: self.index, token }, out.clone());
        self.slots[index as usize].conn = Some(Connection {
            fd: raw,
            decoder: FrameDecoder::new(self.config.max_frame),
            out,
            session,
            last_active: self.now,
            stalled_since: None,
            closing: None,
            close_at: None,
            paused: false,
            hung_up: false,
            ended: false,
            dirty: false,
        });
    }

    /// Reads until the socket is empty or the budget is spent, handing each
    /// frame to the handler. A short read means the socket is empty, unless
    /// the peer also hung up: then the end of the stream must still be read,
    /// as no further edge will report it.
    fn read(&mut self, token: u64, hangup: bool) {
        let handler = &*self.handler;
        let scratch = &mut self.scratch;
        let now = self.now;
        let mut budget = READ_BUDGET;
        let mut end = None;
        let mut more = false;
        if let Some(conn) = find(&mut self.slots, token) {
            conn.hung_up |= hangup;
            while conn.closing.is_none() && !conn.paused && !conn.ended {
                match sys::read(conn.socket(), scratch) {
                    Ok(0) => {
                        // Half-closed or closed: what it sent is answered
                        // first; the handler says when that is done.
                        conn.ended = true;
                        let mut no_release = false;
                        let (session, mut outbox) = conn.parts(&mut no_release, now);
                        handler.end_of_input(session, &mut outbox);
                        break;
                    }
                    Ok(n) => {
                        conn.last_active = now;
                        let Connection { decoder, out, session, closing, paused, .. } = conn;
                        let mut no_release = false;
                        let mut outbox = Outbox { out: &*out, close: closing, paused, release: &mut no_release, now };
                        let fed = decoder.feed(&scratch[..n], |frame| {
                            handler.frame(session, frame, &mut outbox);
                            outbox.close.is_none()
                        });
                        if fed.is_err() {
                            handler.too_large(session, &mut outbox);
                            *outbox.close = Some(CloseReason::TooLarge);
                        }
                        budget = budget.saturating_sub(n);
                        if n < scratch.len() && !conn.hung_up {
                            break;
                        }
                        if budget == 0 {
                            more = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        end = Some(CloseReason::Error);
                        break;
                    }
                }
            }
        }
        if more {
            self.unread.push(token);
        }
        match end {
            Some(reason) => self.close(token, reason),
            None => self.mark_dirty(token),
        }
    }

    /// Notes that `token` has something to read, to be read once no loop is
    /// congested; an edge-triggered event does not come again.
    fn defer_read(&mut self, token: u64, hangup: bool) {
        if let Some(conn) = find(&mut self.slots, token) {
            conn.hung_up |= hangup;
            self.unread.push(token);
        }
    }

    fn deliver(&mut self, token: u64, msg: H::Message) {
        let handler = &*self.handler;
        let now = self.now;
        // A closing connection still gets its messages: its session must see
        // them, and frames it cannot write come back to `closed` as unsent.
        match find(&mut self.slots, token) {
            Some(conn) => {
                let was_paused = conn.paused;
                let mut no_release = false;
                let (session, mut outbox) = conn.parts(&mut no_release, now);
                handler.message(session, msg, &mut outbox);
                if was_paused && !conn.paused {
                    // Edge-triggered: bytes that arrived while paused bring no
                    // new event, so read again on the next turn.
                    self.unread.push(token);
                }
            }
            None => return self.deliver_draining(token, msg),
        }
        self.mark_dirty(token);
    }

    /// A message for a closed connection whose session still drains; what
    /// it writes goes nowhere.
    fn deliver_draining(&mut self, token: u64, msg: H::Message) {
        let index = index_of(token);
        let slot = match self.slots.get_mut(index) {
            Some(slot) if token_of(index as u32, slot.generation) == token => slot,
            _ => return self.handler.undeliverable(msg),
        };
        let Some(session) = slot.draining.as_mut() else { return self.handler.undeliverable(msg) };
        let (mut closing, mut paused, mut release) = (None, false, false);
        let mut outbox =
            Outbox { out: &self.void, close: &mut closing, paused: &mut paused, release: &mut release, now: self.now };
        self.handler.message(session, msg, &mut outbox);
        self.void.lock().buf.clear();
        if release {
            slot.draining = None;
            self.free_slot(index);
        }
    }

    /// Makes slot `index` free: its tokens miss from now on.
    fn free_slot(&mut self, index: usize) {
        if let Some(slot) = self.slots.get_mut(index) {
            slot.generation = slot.generation.wrapping_add(1);
            self.free.push(index as u32);
        }
    }

    fn request_close(&mut self, token: u64) {
        if let Some(conn) = self.conn(token) {
            conn.closing.get_or_insert(CloseReason::Requested);
            self.mark_dirty(token);
        }
    }

    fn mark_dirty(&mut self, token: u64) {
        if let Some(conn) = self.conn(token)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(token);
        }
    }

    fn flush_dirty(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for token in dirty.drain(..) {
            if let Some(conn) = self.conn(token) {
                conn.dirty = false;
            }
            self.flush(token);
        }
        self.dirty = dirty;
    }

    /// Writes pending output, reports finished marks, and closes the
    /// connection if it asked to or if it stopped reading.
    fn flush(&mut self, token: u64) {
        let handler = &*self.handler;
        let max_output = self.config.max_output;
        let now = self.now;
        let done = &mut self.done_marks;
        let Some(conn) = find(&mut self.slots, token) else { return };
        let (written_before, waiting) = {
            let out = conn.out.lock();
            (out.buf.written(), out.buf.len() as u64)
        };
        if conn.closing.is_some() && conn.close_at.is_none() {
            conn.close_at = Some(written_before + waiting);
        }
        let result = loop {
            let mut out = conn.out.lock();
            if let Err(e) = out.flush() {
                break Some(if e.kind() == std::io::ErrorKind::WriteZero {
                    CloseReason::PeerClosed
                } else {
                    CloseReason::Error
                });
            }
            done.extend(std::iter::from_fn(|| out.buf.pop_done_mark()));
            drop(out);
            if done.is_empty() {
                break None;
            }
            // What a mark's handler queues is written on the next round.
            for mark in done.drain(..) {
                let mut no_release = false;
                let (session, mut outbox) = conn.parts(&mut no_release, now);
                handler.written(session, mark, &mut outbox);
            }
        };
        let out = conn.out.lock();
        let (empty, written, capped) = (out.buf.is_empty(), out.buf.written(), out.buf.capped_len());
        drop(out);
        conn.stalled_since = match conn.stalled_since {
            _ if empty => None,
            Some(_) if written != written_before => Some(now),
            stalled => stalled.or(Some(now)),
        };
        let cut_out = conn.close_at.is_some_and(|at| written >= at);
        let reason = result.or(if capped > max_output {
            Some(CloseReason::OutputOverflow)
        } else if empty || cut_out {
            conn.closing
        } else {
            None
        });
        if let Some(reason) = reason {
            self.close(token, reason);
        }
    }

    fn close(&mut self, token: u64, reason: CloseReason) {
        if self.conn(token).is_none() {
            return;
        }
        let index = index_of(token);
        let Some(mut conn) = self.slots[index].conn.take() else { return };
        let now = self.now;
        self.live.fetch_sub(1, Ordering::Relaxed);
        // Marks written out but not yet reported (a write failed after a
        // partial one, or a flush at shutdown): reported first, so that
        // `closed` sees only what truly did not go.
        let rest = loop {
            match conn.out.close_after_marks() {
                Closing::Mark(mark) => {
                    let mut no_release = false;
                    let (session, mut outbox) = conn.parts(&mut no_release, now);
                    self.handler.written(session, mark, &mut outbox);
                }
                Closing::Closed(rest) => break rest,
            }
        };
        let pending = Pending { inbox: self.remote.inbox(self.index), token };
        match self.handler.closed(&mut conn.session, reason, rest.unsent(), pending) {
            AfterClose::Drain if reason != CloseReason::Shutdown => self.slots[index].draining = Some(conn.session),
            _ => self.free_slot(index),
        }
    }

    /// Once a second: closes the connections whose output has been stuck
    /// past the send timeout, and frees the buffers of those that sent
    /// nothing since the last sweep (see `OutBuffer::release_if_empty`).
    /// Quiet connections stay: the kernel's keepalive probes find the dead
    /// ones (`sys::set_dead_peer`), and a socket error closes them.
    fn sweep(&mut self) {
        let send_timeout = self.config.send_timeout;
        let now = self.now;
        let mut stuck = Vec::new();
        for (i, slot) in self.slots.iter_mut().enumerate() {
            let Some(conn) = slot.conn.as_mut() else { continue };
            if conn.stalled_since.is_some_and(|since| now.duration_since(since) >= send_timeout) {
                stuck.push(token_of(i as u32, slot.generation));
            } else if now.duration_since(conn.last_active) >= SWEEP_EVERY && !conn.dirty {
                conn.out.lock().buf.release_if_empty();
                conn.decoder.release_if_empty();
            }
        }
        for token in stuck {
            self.close(token, CloseReason::SendTimeout);
        }
    }

    /// Flushes what the sockets take now and closes every connection.
    fn shutdown(&mut self) {
        let tokens: Vec<u64> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.conn.is_some())
            .map(|(i, slot)| token_of(i as u32, slot.generation))
            .collect();
        for token in tokens {
            if let Some(conn) = self.conn(token) {
                let _ = conn.out.lock().flush();
            }
            self.close(token, CloseReason::Shutdown);
        }
    }
}
