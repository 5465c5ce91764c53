//! The output buffer of one connection.

use std::collections::VecDeque;
use std::io;

/// Bytes waiting to be written to a socket, and marks that report when the
/// bytes before them have left.
#[derive(Debug, Default)]
pub struct OutBuffer {
    /// Pending bytes; `buf[start..]` is still unwritten.
    buf: Vec<u8>,
    /// How much of `buf` has been written; compacted away when all is sent.
    start: usize,
    /// Total bytes ever written to the socket, the clock that marks run on.
    written: u64,
    /// `(end, mark)`: once `written >= end`, `mark` is reported done.
    marks: VecDeque<(u64, u64)>,
    /// Bytes up to this offset belong to marked frames, which the client
    /// asked for (a LOGIN_ACK with its stored messages) and which therefore
    /// do not count towards the cap on a client that does not read.
    exempt_end: u64,
}

/// The frames a closed connection's peer never received whole, in order.
pub struct Unsent<'a> {
    /// NUL-terminated frames.
    frames: &'a [u8],
    /// The output offset (as `OutBuffer::written` counts) of `frames[0]`.
    base: u64,
    /// The buffer's marks not yet reported, by end offset.
    marks: &'a VecDeque<(u64, u64)>,
}

impl<'a> Unsent<'a> {
    /// Each frame (without its NUL) with the mark pushed right after it, if
    /// any: a handler tells by the mark what a frame was.
    pub fn frames(&self) -> impl Iterator<Item = (&'a [u8], Option<u64>)> + '_ {
        let mut end = self.base;
        let mut marks = self.marks.iter().peekable();
        let frames: &'a [u8] = self.frames;
        frames.split_inclusive(|&b| b == 0).filter(|f| f.ends_with(&[0])).map(move |frame| {
            end += frame.len() as u64;
            while marks.next_if(|&&(at, _)| at < end).is_some() {}
            let mark = marks.next_if(|&&(at, _)| at == end).map(|&(_, mark)| mark);
            (&frame[..frame.len() - 1], mark)
        })
    }
}

/// Buffers larger than this are freed once empty, so one burst does not pin
/// memory on an idle connection for ever.
const KEEP_CAPACITY: usize = 64 * 1024;

impl OutBuffer {
    /// Appends one frame: the payload and its NUL terminator.
    pub fn push_frame(&mut self, payload: &[u8]) {
        self.buf.reserve(payload.len() + 1);
        self.buf.extend_from_slice(payload);
        self.buf.push(0);
    }

    /// Adds a mark reported once everything pushed so far has been written;
    /// what was pushed so far is exempt from the cap.
    pub fn push_mark(&mut self, mark: u64) {
        self.exempt_end = self.push_counted_mark(mark);
    }

    /// Adds a mark reported once everything pushed so far has been written,
    /// without exempting anything from the cap; returns its end offset.
    pub fn push_counted_mark(&mut self, mark: u64) -> u64 {
        let end = self.written + (self.buf.len() - self.start) as u64;
        self.marks.push_back((end, mark));
        end
    }

    /// Unwritten bytes that count towards the cap.
    pub fn capped_len(&self) -> usize {
        let exempt = self.exempt_end.saturating_sub(self.written) as usize;
        self.len().saturating_sub(exempt)
    }

    /// Gives the buffers' memory back if nothing is pending. Called for
    /// connections gone quiet, so that an idle connection does not keep a
    /// copy of its last burst (its LOGIN_ACK: kilobytes for a user with
    /// friends and groups); not after every write, so that a busy connection
    /// reuses its buffer instead of allocating per message.
    pub fn release_if_empty(&mut self) {
        if self.is_empty() {
            self.buf = Vec::new();
            self.start = 0;
        }
        if self.marks.is_empty() {
            self.marks = VecDeque::new();
        }
    }

    /// Forgets everything, keeping the memory (for output that goes nowhere).
    pub fn clear(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.marks.clear();
        self.exempt_end = self.written;
    }

    /// Bytes written to the socket so far: it moves when the peer reads.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Unwritten bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes through `write` until it is all out or the socket is full
    /// (`WouldBlock`, not an error). Other errors are returned.
    pub fn flush(&mut self, mut write: impl FnMut(&[u8]) -> io::Result<usize>) -> io::Result<()> {
        while self.start < self.buf.len() {
            match write(&self.buf[self.start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.start += n;
                    self.written += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.start == self.buf.len() {
            self.start = 0;
            if self.buf.capacity() > KEEP_CAPACITY {
                self.buf = Vec::new();
            } else {
                self.buf.clear();
            }
        } else if self.start > KEEP_CAPACITY {
            // A reader that always lags a little never empties the buffer:
            // drop the written frames so it does not keep everything sent.
            // The frame being written stays whole for `unsent`.
            if let Some(end) = self.buf[..self.start].iter().rposition(|&b| b == 0) {
                self.buf.drain(..=end);
                self.start -= end + 1;
            }
        }
        Ok(())
    }

    /// The frames not yet written whole, from the start of the frame the
    /// socket stopped in (what the peer never received), with their marks.
    pub fn unsent(&self) -> Unsent<'_> {
        let begin = self.unsent_begin();
        let base = self.written - (self.start - begin) as u64;
        Unsent { frames: &self.buf[begin..], base, marks: &self.marks }
    }

    fn unsent_begin(&self) -> usize {
        self.buf[..self.start].iter().rposition(|&b| b == 0).map_or(0, |i| i + 1)
    }

    /// Takes the next mark whose bytes have all been written.
    pub fn pop_done_mark(&mut self) -> Option<u64> {
        match self.marks.front() {
            Some(&(end, mark)) if end <= self.written => {
                self.marks.pop_front();
                Some(mark)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_writes_keep_the_rest_and_marks_wait_for_it() {
        let mut out = OutBuffer::default();
        out.push_frame(b"hello");
        out.push_mark(7);
        out.push_frame(b"x");
        let mut sent = Vec::new();
        out.flush(|b| {
            let n = b.len().min(4);
            if sent.len() >= 4 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            sent.extend_from_slice(&b[..n]);
            Ok(n)
        })
        .unwrap();
        assert_eq!(sent, b"hell");
        let frames: Vec<(&[u8], Option<u64>)> = out.unsent().frames().collect();
        assert_eq!(frames, [(&b"hello"[..], Some(7)), (&b"x"[..], None)]);
        assert_eq!(out.pop_done_mark(), None);
        out.flush(|b| {
            sent.extend_from_slice(b);
            Ok(b.len())
        })
        .unwrap();
        assert_eq!(sent, b"hello\0x\0");
        assert_eq!(out.pop_done_mark(), Some(7));
        assert!(out.is_empty());
    }

    #[test]
    fn release_frees_only_an_empty_buffer() {
        let mut out = OutBuffer::default();
        out.push_frame(b"pending");
        out.push_mark(1);
        out.release_if_empty();
        assert_eq!(out.unsent().frames().collect::<Vec<_>>(), [(&b"pending"[..], Some(1))]);
        out.flush(|b| Ok(b.len())).unwrap();
        assert_eq!(out.pop_done_mark(), Some(1));
        assert!(out.buf.capacity() > 0);
        out.release_if_empty();
        assert_eq!((out.buf.capacity(), out.marks.capacity()), (0, 0));
        out.push_frame(b"again");
        out.push_mark(2);
        out.flush(|b| Ok(b.len())).unwrap();
        assert_eq!(out.pop_done_mark(), Some(2));
    }

    #[test]
    fn marked_frames_do_not_count_towards_the_cap() {
        let mut out = OutBuffer::default();
        out.push_frame(b"live");
        out.push_frame(b"login ack");
        out.push_mark(1);
        assert_eq!(out.capped_len(), 0);
        out.push_frame(b"later");
        assert_eq!(out.capped_len(), 6);
        let mut budget = 3;
        out.flush(|b| {
            let n = b.len().min(budget);
            budget -= n;
            if n == 0 { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(n) }
        })
        .unwrap();
        assert_eq!(out.capped_len(), 6);
    }
}
