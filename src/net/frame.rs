//! Framing: splitting a byte stream into messages.
//!
//! A client ends each message with NUL (0x00) or a newline (0x0A, with an
//! optional 0x0D before it, so `nc` works). Empty messages are skipped. The
//! decoder only finds boundaries; it never looks inside a message.

/// A message was longer than the limit (its terminator not counted).
#[derive(Debug, PartialEq, Eq)]
pub struct TooLarge;

/// Splits incoming bytes into frames, keeping an unfinished tail between
/// reads.
#[derive(Debug)]
pub struct FrameDecoder {
    /// Bytes of an unfinished frame from earlier reads; empty (and without an
    /// allocation) most of the time, which keeps idle connections small.
    partial: Vec<u8>,
    /// Largest frame accepted, terminator excluded (`--max-frame`).
    max_frame: usize,
}

/// Eight copies of one byte, for the word-at-a-time search.
const fn splat(byte: u8) -> u64 {
    0x0101_0101_0101_0101 * byte as u64
}

/// A word with the high bit set in the byte where `word` has its lowest
/// zero byte (and possibly in bytes above it, never below): the classic
/// "has zero byte" test, exact for the first match, which is all we need.
fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(splat(1)) & !word & splat(0x80)
}

/// Position of the first frame terminator (NUL or newline) in `data`.
///
/// Looks at eight bytes per step: byte by byte, this search was the
/// largest user-space cost of a relayed message (callgrind, BENCHMARKS.md).
fn find_end(data: &[u8]) -> Option<usize> {
    let mut chunks = data.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let Ok(bytes) = <[u8; 8]>::try_from(chunk) else { break };
        let word = u64::from_le_bytes(bytes);
        let hits = zero_bytes(word) | zero_bytes(word ^ splat(b'\n'));
        if hits != 0 {
            // Little-endian: the lowest set bit is the first byte in memory.
            return Some(offset + hits.trailing_zeros() as usize / 8);
        }
        offset += 8;
    }
    chunks.remainder().iter().position(|&b| b == 0 || b == b'\n').map(|i| offset + i)
}

/// The frame without a `\r` left before a newline terminator.
fn trim_cr(frame: &[u8]) -> &[u8] {
    frame.strip_suffix(b"\r").unwrap_or(frame)
}

impl FrameDecoder {
    pub fn new(max_frame: usize) -> FrameDecoder {
        FrameDecoder { partial: Vec::new(), max_frame }
    }

    /// Frees the tail buffer if it holds nothing (see
    /// `OutBuffer::release_if_empty`).
    pub(crate) fn release_if_empty(&mut self) {
        if self.partial.is_empty() {
            self.partial = Vec::new();
        }
    }

    /// The bytes of an unfinished frame kept from earlier reads (for a
    /// reader that reports what a stream ended in).
    pub fn pending(&self) -> &[u8] {
        &self.partial
    }

    /// Feeds newly read bytes and calls `on_frame` with each complete,
    /// non-empty frame, in order. `on_frame` returns false to stop early (the
    /// connection is closing; the rest is dropped).
    pub fn feed(&mut self, mut data: &[u8], mut on_frame: impl FnMut(&[u8]) -> bool) -> Result<(), TooLarge> {
        if !self.partial.is_empty() {
            let Some(end) = find_end(data) else {
                return self.keep(data);
            };
            self.partial.extend_from_slice(&data[..end]);
            data = &data[end + 1..];
            let frame = std::mem::take(&mut self.partial);
            if frame.len() > self.max_frame {
                return Err(TooLarge);
            }
            let go_on = self.emit(&frame, &mut on_frame);
            // Give the allocation back for reuse unless it grew large.
            if frame.capacity() <= 4096 {
                self.partial = frame;
                self.partial.clear();
            }
            if !go_on {
                return Ok(());
            }
        }
        while let Some(end) = find_end(data) {
            if end > self.max_frame {
                return Err(TooLarge);
            }
            if !self.emit(&data[..end], &mut on_frame) {
                return Ok(());
            }
            data = &data[end + 1..];
        }
        self.keep(data)
    }

    fn emit(&self, frame: &[u8], on_frame: &mut impl FnMut(&[u8]) -> bool) -> bool {
        let frame = trim_cr(frame);
        frame.is_empty() || on_frame(frame)
    }

    /// Stores an unfinished tail, refusing one that is already too long.
    fn keep(&mut self, tail: &[u8]) -> Result<(), TooLarge> {
        if self.partial.len() + tail.len() > self.max_frame + 1 {
            return Err(TooLarge);
        }
        self.partial.extend_from_slice(tail);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(decoder: &mut FrameDecoder, chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, TooLarge> {
        let mut out = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, |f| {
                out.push(f.to_vec());
                true
            })?;
        }
        Ok(out)
    }

    #[test]
    fn whole_frames_with_each_terminator() {
        let mut d = FrameDecoder::new(64);
        let got = frames(&mut d, &[b"{\"a\":1}\0{\"b\":2}\n{\"c\":3}\r\n"]).unwrap();
        assert_eq!(got, vec![b"{\"a\":1}".to_vec(), b"{\"b\":2}".to_vec(), b"{\"c\":3}".to_vec()]);
    }

    #[test]
    fn empty_frames_are_skipped() {
        let mut d = FrameDecoder::new(64);
        assert_eq!(frames(&mut d, &[b"\0\n\r\n\0x\0"]).unwrap(), vec![b"x".to_vec()]);
    }

    #[test]
    fn split_at_every_byte_boundary() {
        let stream: &[u8] = b"{\"msgid\":16}\0{\"msgid\":6,\"msg\":\"hi\"}\r\nlast\0";
        let expected = vec![b"{\"msgid\":16}".to_vec(), b"{\"msgid\":6,\"msg\":\"hi\"}".to_vec(), b"last".to_vec()];
        for cut in 0..=stream.len() {
            let mut d = FrameDecoder::new(64);
            let got = frames(&mut d, &[&stream[..cut], &stream[cut..]]).unwrap();
            assert_eq!(got, expected, "cut at {cut}");
        }
        let mut d = FrameDecoder::new(64);
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(frames(&mut d, &bytes).unwrap(), expected);
    }

    #[test]
    fn frame_at_the_limit_passes_and_one_over_fails() {
        let mut d = FrameDecoder::new(8);
        assert_eq!(frames(&mut d, &[b"12345678\0"]).unwrap(), vec![b"12345678".to_vec()]);
        assert_eq!(frames(&mut FrameDecoder::new(8), &[b"123456789\0"]), Err(TooLarge));
        // An oversize frame is refused before its terminator arrives.
        assert_eq!(frames(&mut FrameDecoder::new(8), &[b"1234", b"567890"]), Err(TooLarge));
        // Split over reads, the limit is the same.
        let mut d = FrameDecoder::new(8);
        assert_eq!(frames(&mut d, &[b"1234", b"5678\0"]).unwrap(), vec![b"12345678".to_vec()]);
    }

    #[test]
    fn word_search_finds_what_a_byte_search_finds() {
        let naive = |d: &[u8]| d.iter().position(|&b| b == 0 || b == b'\n');
        // Every byte value at every offset of a 20-byte window, before and
        // after a terminator, so borrows between bytes are exercised.
        for value in 0..=255u8 {
            for at in 0..20 {
                let mut data = vec![b'a'; 20];
                data[at] = value;
                assert_eq!(find_end(&data), naive(&data), "{value} at {at}");
                for end in [0u8, b'\n'] {
                    let mut with_end = data.clone();
                    with_end[(at + 3) % 20] = end;
                    assert_eq!(find_end(&with_end), naive(&with_end), "{value} at {at}, end {end}");
                }
            }
        }
        for data in [&b""[..], b"\x01\x00", b"\x80\x80\x80\x80\x80\x80\x80\x80\x0b\x0a", b"\xff\x01\x01\x00\x01"] {
            assert_eq!(find_end(data), naive(data), "{data:?}");
        }
    }

    #[test]
    fn stopping_drops_the_rest() {
        let mut d = FrameDecoder::new(64);
        let mut seen = 0;
        d.feed(b"a\0b\0c\0", |_| {
            seen += 1;
            false
        })
        .unwrap();
        assert_eq!(seen, 1);
    }
}
