//! Framing of the wire protocol (SPEC §2): every message is one compact
//! JSON object followed by one NUL byte.

use serde_json::Value;

pub use crate::msgid::*;

/// Largest server frame the client buffers. The server's own limit only
/// applies to what clients send; a LOGIN_ACK carrying many offline messages
/// may be big, so this is generous and only guards against a runaway peer.
pub const MAX_FRAME: usize = 64 << 20;

/// The message as bytes ready to write: compact JSON, then NUL.
pub fn encode(msg: &Value) -> Vec<u8> {
    // `Display` of a `Value` is the compact form and cannot fail.
    let mut bytes = msg.to_string().into_bytes();
    bytes.push(0);
    bytes
}

/// The msgid of a message, if it has an integer one.
pub fn msgid(msg: &Value) -> Option<i64> {
    msg.get("msgid").and_then(Value::as_i64)
}

/// A frame that is not a JSON object (or not JSON at all) is `None`: the
/// client skips what it cannot understand instead of giving up.
pub fn parse_frame(frame: &[u8]) -> Option<Value> {
    match serde_json::from_slice::<Value>(frame) {
        Ok(value) if value.is_object() => Some(value),
        _ => None,
    }
}

/// The peer sent more than [`MAX_FRAME`] bytes without ending a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameTooLarge;

/// Splits a byte stream into frames, whatever the TCP segmentation: several
/// frames per read and one frame over many reads come out the same.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already searched for a terminator, so a big frame that
    /// arrives in many reads is scanned once, not once per read.
    scanned: usize,
}

impl FrameDecoder {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, without its terminator; empty frames are
    /// skipped. A newline also ends a frame (JSON never holds a raw one), so
    /// a line-based test server works too.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameTooLarge> {
        loop {
            let unscanned = &self.buf[self.scanned..];
            let Some(offset) = unscanned.iter().position(|&b| b == 0 || b == b'\n') else {
                self.scanned = self.buf.len();
                if self.buf.len() > MAX_FRAME {
                    return Err(FrameTooLarge);
                }
                return Ok(None);
            };
            let end = self.scanned + offset;
            let mut frame: Vec<u8> = self.buf.drain(..=end).collect();
            self.scanned = 0;
            frame.pop();
            if frame.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Ok(Some(frame));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frames(decoder: &mut FrameDecoder) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(frame) = decoder.next_frame().unwrap() {
            out.push(String::from_utf8(frame).unwrap());
        }
        out
    }

    #[test]
    fn encode_is_compact_json_and_nul() {
        let bytes = encode(&json!({"msgid": 1, "id": 13, "password": "a b"}));
        assert_eq!(bytes.last(), Some(&0));
        let text = std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap();
        assert!(!text.contains(' ') || text.contains("a b"));
        assert!(!text.contains('\n'));
        let back: Value = serde_json::from_str(text).unwrap();
        assert_eq!(back, json!({"msgid": 1, "id": 13, "password": "a b"}));
    }

    #[test]
    fn several_frames_in_one_read() {
        let mut d = FrameDecoder::default();
        d.push(b"{\"msgid\":17}\0{\"msgid\":6}\0{\"a\"");
        assert_eq!(frames(&mut d), vec!["{\"msgid\":17}", "{\"msgid\":6}"]);
        d.push(b":1}\0");
        assert_eq!(frames(&mut d), vec!["{\"a\":1}"]);
    }

    #[test]
    fn one_frame_over_many_reads() {
        let whole = b"{\"msgid\":6,\"msg\":\"hello\"}\0";
        let mut d = FrameDecoder::default();
        let mut got = Vec::new();
        for byte in whole {
            d.push(&[*byte]);
            got.extend(frames(&mut d));
        }
        assert_eq!(got, vec!["{\"msgid\":6,\"msg\":\"hello\"}"]);
    }

    #[test]
    fn empty_frames_are_skipped_and_newline_ends_a_frame() {
        let mut d = FrameDecoder::default();
        d.push(b"\0\0{\"x\":1}\r\n\n{\"y\":2}\0");
        assert_eq!(frames(&mut d), vec!["{\"x\":1}\r", "{\"y\":2}"]);
    }

    #[test]
    fn runaway_frame_is_an_error() {
        let mut d = FrameDecoder::default();
        d.push(&vec![b'x'; MAX_FRAME + 1]);
        assert_eq!(d.next_frame(), Err(FrameTooLarge));
    }

    #[test]
    fn parse_frame_accepts_only_objects() {
        assert_eq!(parse_frame(b"{\"msgid\":2}"), Some(json!({"msgid": 2})));
        assert_eq!(parse_frame(b"{\"msgid\":2}\r"), Some(json!({"msgid": 2})));
        assert_eq!(parse_frame(b"[1]"), None);
        assert_eq!(parse_frame(b"garbage"), None);
        assert_eq!(parse_frame(b"\xff\xfe"), None);
    }

    #[test]
    fn msgid_reads_integers_only() {
        assert_eq!(msgid(&json!({"msgid": 15})), Some(15));
        assert_eq!(msgid(&json!({"msgid": "15"})), None);
        assert_eq!(msgid(&json!({})), None);
    }
}
