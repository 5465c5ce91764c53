//! A connection's output, shared between its loop and the threads that
//! send to it.
//!
//! muduo would queue a frame for another loop's connection to that loop.
//! Writing it from the sending thread instead, as a plain relay does, saves
//! the owning loop a wake-up and the frame a second thread: with two loops
//! that hop was most of what a relayed message cost beyond the kernel's
//! share. The loop still owns the connection (it reads it, flushes what the
//! socket did not take, closes it); the lock only keeps the bytes of two
//! writers apart and in order.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use super::buffer::OutBuffer;
use super::sys;

/// What the lock guards.
pub(super) struct Shared {
    /// Bytes the socket has not taken yet, with their marks.
    pub(super) buf: OutBuffer,
    /// The socket, until the loop closes it: dropped under this lock, so a
    /// writer never uses a descriptor number the kernel gave to another file.
    fd: Option<OwnedFd>,
    /// Frames for this key may be written directly (the handler names it:
    /// the chat service, its logged-in user); None takes none.
    direct_key: Option<u64>,
    /// Messages queued to the loop for this connection and not yet handed
    /// to its handler: a frame written directly now would overtake them.
    behind: u32,
    /// The last write left bytes (or failed): until a flush has written it
    /// all, frames go through the loop, which applies the output cap and
    /// the send timeout.
    stalled: bool,
}

impl Shared {
    /// Whether a frame for `key` may go into the output now: the connection
    /// is open, expects it, nothing sent to it earlier waits in the loop's
    /// queue, and the socket is not behind (what the buffer holds then is
    /// about to be written by whoever put it there).
    fn takes_direct(&self, key: u64) -> bool {
        self.fd.is_some() && self.direct_key == Some(key) && self.behind == 0 && !self.stalled
    }

    /// Writes what the socket takes now; `WouldBlock` is no error.
    pub(super) fn flush(&mut self) -> std::io::Result<()> {
        let Shared { buf, fd, .. } = self;
        let done = match fd {
            Some(fd) => buf.flush(|bytes| sys::write(fd.as_fd(), bytes)),
            None => Ok(()),
        };
        self.stalled = done.is_err() || !self.buf.is_empty();
        done
    }
}

/// Where [`Writer::push_or_queue`] put a frame.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Pushed {
    /// Into an empty output: the caller flushes it ([`Writer::flush`]).
    First,
    /// Behind bytes someone flushes already (the loop at the end of its
    /// turn, or the thread that pushed them first).
    Joined,
    /// Not into the output: queued to the loop.
    Queued,
}

/// What [`Writer::close_after_marks`] did.
pub(super) enum Closing {
    /// Found a mark whose bytes are all written: report it, then ask again.
    Mark(u64),
    /// Closed the socket; this is what it never took.
    Closed(OutBuffer),
}

/// A handle on one connection's output that any thread may hold: frames for
/// the connection written through it keep their order with those its loop
/// writes.
#[derive(Clone)]
pub struct Writer(Arc<Mutex<Shared>>);

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

impl Writer {
    /// The output of a freshly accepted socket, which it now owns.
    pub(super) fn new(fd: OwnedFd) -> Writer {
        Writer::with_fd(Some(fd))
    }

    /// An output with no socket behind it, for a session served without one
    /// (the handler tests): it never takes a frame directly.
    pub fn detached() -> Writer {
        Writer::with_fd(None)
    }

    fn with_fd(fd: Option<OwnedFd>) -> Writer {
        let shared = Shared { buf: OutBuffer::default(), fd, direct_key: None, behind: 0, stalled: false };
        Writer(Arc::new(Mutex::new(shared)))
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.0.lock()
    }

    /// From now on, frames for `key` may be written directly (None: none).
    pub(super) fn accept_direct(&self, key: Option<u64>) {
        self.lock().direct_key = key;
    }

    /// Appends `direct`'s frame to the output if it takes frames for its
    /// key now (see [`Shared::takes_direct`]); else (or with no frame) runs
    /// `queue`, which queues the message to the loop, and counts it, under
    /// the lock, so that nothing appended after it overtakes it.
    pub(super) fn push_or_queue(&self, direct: Option<(u64, &[u8])>, queue: impl FnOnce()) -> Pushed {
        let mut shared = self.lock();
        let Some((_, frame)) = direct.filter(|&(key, _)| shared.takes_direct(key)) else {
            shared.behind += 1;
            queue();
            return Pushed::Queued;
        };
        crate::stats::FRAMES_OUT.add(1);
        let first = shared.buf.is_empty();
        shared.buf.push_frame(frame);
        if first { Pushed::First } else { Pushed::Joined }
    }

    /// Writes what the socket takes now; false when it left bytes (or
    /// failed), which the loop must then see to.
    pub(super) fn flush(&self) -> bool {
        let mut shared = self.lock();
        let _ = shared.flush();
        !shared.stalled
    }

    /// The loop handed one counted message to the handler.
    pub(super) fn handed_behind(&self) {
        let mut shared = self.lock();
        debug_assert!(shared.behind > 0, "more messages handed over than were queued");
        shared.behind = shared.behind.saturating_sub(1);
    }

    /// Takes the next mark whose bytes are all written; once none is left,
    /// closes the socket and takes what it never took, in the same hold of
    /// the lock, so that no other writer completes a mark in between. From
    /// then on nothing is written here, directly or not. Only the loop calls
    /// this, as it closes the connection.
    pub(super) fn close_after_marks(&self) -> Closing {
        let mut shared = self.lock();
        if let Some(mark) = shared.buf.pop_done_mark() {
            return Closing::Mark(mark);
        }
        shared.fd = None;
        shared.direct_key = None;
        Closing::Closed(std::mem::take(&mut shared.buf))
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::net::UnixStream;

    use super::*;

    fn connected() -> (Writer, UnixStream) {
        let (ours, peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Writer::new(OwnedFd::from(ours)), peer)
    }

    /// Pushes `frame` for `key`; a message it queues instead is counted in
    /// `queued`.
    fn push(writer: &Writer, key: Option<u64>, frame: &[u8], queued: &mut u32) -> Pushed {
        writer.push_or_queue(key.map(|key| (key, frame)), || *queued += 1)
    }

    fn read_some(peer: &mut UnixStream) -> Vec<u8> {
        let mut got = vec![0; 1 << 20];
        let n = peer.read(&mut got).unwrap();
        got.truncate(n);
        got
    }

    #[test]
    fn frames_go_directly_only_for_the_key_the_session_accepts() {
        let (writer, mut peer) = connected();
        let mut queued = 0;
        assert_eq!(push(&writer, Some(7), b"early", &mut queued), Pushed::Queued);
        writer.handed_behind();
        writer.accept_direct(Some(7));
        assert_eq!(push(&writer, Some(8), b"someone else's", &mut queued), Pushed::Queued);
        writer.handed_behind();
        assert_eq!(push(&writer, Some(7), b"a", &mut queued), Pushed::First);
        assert_eq!(push(&writer, Some(7), b"b", &mut queued), Pushed::Joined);
        assert!(writer.flush());
        assert_eq!(read_some(&mut peer), b"a\0b\0");
        assert_eq!(queued, 2);
        writer.accept_direct(None);
        assert_eq!(push(&writer, Some(7), b"after logout", &mut queued), Pushed::Queued);
    }

    #[test]
    fn a_queued_message_holds_back_direct_frames_until_the_loop_hands_it_over() {
        let (writer, _peer) = connected();
        let mut queued = 0;
        writer.accept_direct(Some(7));
        assert_eq!(push(&writer, None, b"tracked", &mut queued), Pushed::Queued);
        assert_eq!(push(&writer, Some(7), b"next", &mut queued), Pushed::Queued);
        writer.handed_behind();
        assert_eq!(push(&writer, Some(7), b"still behind one", &mut queued), Pushed::Queued);
        writer.handed_behind();
        writer.handed_behind();
        assert_eq!(push(&writer, Some(7), b"now", &mut queued), Pushed::First);
        assert_eq!(queued, 3);
    }

    #[test]
    fn a_socket_that_takes_no_more_sends_frames_through_the_loop_until_flushed() {
        let (writer, mut peer) = connected();
        let mut queued = 0;
        writer.accept_direct(Some(7));
        let frame = vec![b'x'; 64 * 1024];
        let mut pushed = 0;
        while push(&writer, Some(7), &frame, &mut queued) == Pushed::First && writer.flush() {
            pushed += 1;
            assert!(pushed < 1_000, "the socket never filled up");
        }
        assert_eq!(push(&writer, Some(7), b"waits", &mut queued), Pushed::Queued);
        writer.handed_behind();
        let mut drained = 0;
        while !writer.flush() {
            drained += read_some(&mut peer).len();
        }
        assert!(drained > 0);
        assert_eq!(push(&writer, Some(7), b"direct again", &mut queued), Pushed::First);
    }

    #[test]
    fn a_closed_output_takes_nothing_and_gives_back_what_was_not_written() {
        let (writer, _peer) = connected();
        let mut queued = 0;
        writer.accept_direct(Some(7));
        assert_eq!(push(&writer, Some(7), b"never flushed", &mut queued), Pushed::First);
        let Closing::Closed(rest) = writer.close_after_marks() else { panic!("no mark was pushed") };
        let frames: Vec<_> = rest.unsent().frames().map(|(f, _)| f.to_vec()).collect();
        assert_eq!(frames, [b"never flushed".to_vec()]);
        assert_eq!(push(&writer, Some(7), b"late", &mut queued), Pushed::Queued);
        assert!(writer.flush());
        assert_eq!(queued, 1);
    }

    #[test]
    fn a_detached_output_never_takes_a_frame_directly() {
        let writer = Writer::detached();
        let mut queued = 0;
        writer.accept_direct(Some(7));
        assert_eq!(push(&writer, Some(7), b"x", &mut queued), Pushed::Queued);
    }
}
