//! The interface between the reactor and whatever it serves.

use std::time::Instant;

pub use super::buffer::Unsent;
use super::output::Writer;
use super::remote::Inbox;

/// Names one connection for the life of the process: its worker and a slot
/// token that is never reused for another connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    /// Index of the worker loop that owns the connection.
    pub worker: usize,
    /// Slot index in the low 32 bits, the slot's generation in the high 32.
    pub token: u64,
}

/// Why a connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side (read returned 0).
    PeerClosed,
    /// A socket error, such as a reset.
    Error,
    /// Its pending output made no progress for the send timeout.
    SendTimeout,
    /// A frame went over `--max-frame`.
    TooLarge,
    /// The handler asked to close.
    Requested,
    /// The peer stopped reading and its output passed the cap.
    OutputOverflow,
    /// The server is shutting down.
    Shutdown,
}

/// What a handler may do to the connection it was called for. Bytes are
/// buffered and written at the end of the loop's turn (or sooner, by
/// another thread writing to the same output).
pub struct Outbox<'a> {
    /// The connection's output.
    pub(super) out: &'a Writer,
    /// Set when the connection should close once its output is flushed.
    pub(super) close: &'a mut Option<CloseReason>,
    /// Set while the handler wants no more frames from this connection.
    pub(super) paused: &'a mut bool,
    /// Set when the handler is done with a closed, draining connection.
    pub(super) release: &'a mut bool,
    /// When the loop's turn began: close enough to now for rate limits,
    /// and read once per turn instead of once per frame.
    pub(super) now: Instant,
}

impl Outbox<'_> {
    /// The time of this turn of the loop.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Queues one frame; the reactor adds the terminator.
    pub fn send(&mut self, payload: &[u8]) {
        crate::stats::FRAMES_OUT.add(1);
        self.out.lock().buf.push_frame(payload);
    }

    /// Queues one frame and asks for [`Handler::written`] with `mark` once it
    /// has been written out whole. The frame does not count towards the
    /// output cap: the client asked for it, however large it is.
    pub fn send_marked(&mut self, payload: &[u8], mark: u64) {
        crate::stats::FRAMES_OUT.add(1);
        let mut out = self.out.lock();
        out.buf.push_frame(payload);
        out.buf.push_mark(mark);
    }

    /// Queues one frame and asks for [`Handler::written`] with `mark` once
    /// the socket has taken it whole; unlike [`Outbox::send_marked`] it
    /// counts towards the output cap.
    pub fn send_tracked(&mut self, payload: &[u8], mark: u64) {
        crate::stats::FRAMES_OUT.add(1);
        let mut out = self.out.lock();
        out.buf.push_frame(payload);
        out.buf.push_counted_mark(mark);
    }

    /// Asks for [`Handler::written`] with `mark` once everything queued so
    /// far has been written out (at once if nothing is queued).
    pub fn mark(&mut self, mark: u64) {
        self.out.lock().buf.push_counted_mark(mark);
    }

    /// From now on other threads may write frames for `key` straight into
    /// this connection's output (see [`super::Remote::deliver`]); None: no
    /// more. Set it once the frames that must come first are queued.
    pub fn accept_direct(&mut self, key: Option<u64>) {
        self.out.accept_direct(key);
    }

    /// Closes the connection after what is queued has been written.
    pub fn close(&mut self) {
        self.close.get_or_insert(CloseReason::Requested);
    }

    /// Stops reading this connection (frames already read still arrive), so
    /// a client that sends faster than it is served waits in TCP instead of
    /// in server memory.
    pub fn pause_reading(&mut self) {
        *self.paused = true;
    }

    /// Reads this connection again after [`Outbox::pause_reading`].
    pub fn resume_reading(&mut self) {
        *self.paused = false;
    }

    /// For a connection kept after [`Handler::closed`] (draining): the
    /// handler needs it no more, and its slot is freed after this call.
    pub fn release(&mut self) {
        *self.release = true;
    }
}

/// What becomes of a connection's slot once it has closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterClose {
    /// Freed now; messages still sent to it go to `undeliverable`.
    Release,
    /// Kept (muduo's kDisconnecting): messages for it still reach the
    /// session, with output going nowhere, until it calls
    /// [`Outbox::release`].
    Drain,
}

/// The messages still queued for a closed connection.
pub struct Pending<'a, M> {
    /// The inbox of the loop that owned the connection.
    pub(super) inbox: &'a Inbox<M>,
    /// The connection's token.
    pub(super) token: u64,
}

impl<M> Pending<'_, M> {
    /// Takes them out of the loop's queue, oldest first.
    pub fn take(self) -> Vec<M> {
        self.inbox.take_for(self.token)
    }
}

/// What the reactor calls. All calls for one connection come from the loop
/// that owns it, one at a time, so a session needs no lock.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state, owned by the connection's loop.
    type Session: Send;
    /// What other threads send to a connection through [`super::Remote`].
    type Message: Send + 'static;

    /// A connection was accepted; `out` is its output, for other threads to
    /// send to it with [`super::Remote::deliver`].
    fn open(&self, id: ConnId, out: Writer) -> Self::Session;
    /// One complete, non-empty frame arrived.
    fn frame(&self, session: &mut Self::Session, frame: &[u8], out: &mut Outbox<'_>);
    /// The loop finished a turn: everything handlers queued during it has
    /// been handed to the sockets (or waits for them to take more).
    fn turn_end(&self) {}
    /// The peer ended its side of the stream (a half-close, or a close):
    /// no more frames come. The connection stays until the handler calls
    /// [`Outbox::close`], which it does once everything the peer sent is
    /// answered; by default at once.
    fn end_of_input(&self, _session: &mut Self::Session, out: &mut Outbox<'_>) {
        out.close();
    }
    /// A frame went over the limit; the connection closes after this.
    fn too_large(&self, session: &mut Self::Session, out: &mut Outbox<'_>);
    /// A message sent to this connection from elsewhere.
    fn message(&self, session: &mut Self::Session, msg: Self::Message, out: &mut Outbox<'_>);
    /// A message whose connection was gone when it arrived.
    fn undeliverable(&self, msg: Self::Message);
    /// Everything up to a [`Outbox::send_marked`] frame has been written.
    fn written(&self, session: &mut Self::Session, mark: u64, out: &mut Outbox<'_>);
    /// The connection is closed (its socket is gone); every mark written
    /// out was reported before. `unsent` holds the frames the peer never
    /// received whole, with their marks; `pending` hands
    /// over the messages still queued for it (take them once nothing new
    /// can be sent to it). Unless the handler asks to drain, this is the
    /// last call for the session.
    fn closed(
        &self,
        session: &mut Self::Session,
        reason: CloseReason,
        unsent: Unsent<'_>,
        pending: Pending<'_, Self::Message>,
    ) -> AfterClose;
}
