//! Framing of the wire protocol (SPEC §2): every message is one compact
//! JSON object followed by one NUL byte.

use serde_json::Value;

pub use chatserver::msgid::*;

/// Largest server frame the client buffers. The server's own limit only
/// applies to what clients send; a LOGIN_ACK carrying many offline messages
/// may be big, so this is generous and only guards against a runaway peer.
pub const MAX_FRAME: usize = 64 << 20;

/// The longest message the server takes (its default `--max-frame`): the
/// client refuses to send a longer one rather than have the server close
/// the connection over it.
pub const MAX_SEND: usize = 64 << 10;

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
pub struct ValueTooLarge;

/// Splits a byte stream into JSON values, whatever the TCP segmentation and
/// whatever ends them: this server's NUL, a newline, or nothing at all (the
/// original C++ server writes its objects back to back, unterminated). It
/// finds where each top-level object or array ends by following its
/// brackets and strings, so each byte is looked at once however the value
/// is split over reads; the value itself is then parsed by serde_json.
/// (Not `net::FrameDecoder`, which needs a terminator the original never
/// sends: this reads JSON values, of which NUL-terminated frames are one
/// case.)
#[derive(Debug, Default)]
pub struct JsonStream {
    buf: Vec<u8>,
    /// Bytes of `buf` before this are done with (handed out or skipped).
    done: usize,
    /// Where the value being followed starts, if one has started.
    start: Option<usize>,
    /// The next byte of `buf` to look at.
    pos: usize,
    /// Open brackets of that value.
    depth: usize,
    in_string: bool,
    /// The previous byte was a backslash inside a string.
    escaped: bool,
}

impl JsonStream {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole value, as its bytes. Between values, NUL, white space
    /// and anything that cannot start an object or array are skipped; a NUL
    /// (never part of JSON text) inside a value ends it as broken, so the
    /// stream finds its feet again at the next frame.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, ValueTooLarge> {
        while let Some(&byte) = self.buf.get(self.pos) {
            self.pos += 1;
            let Some(start) = self.start else {
                if matches!(byte, b'{' | b'[') {
                    self.start = Some(self.pos - 1);
                    self.depth = 1;
                } else {
                    self.done = self.pos;
                }
                continue;
            };
            if byte == 0 || (self.in_string && byte == b'\n') {
                self.abandon();
                continue;
            }
            if self.in_string {
                match byte {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match byte {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        let frame = self.buf[start..self.pos].to_vec();
                        self.abandon();
                        return Ok(Some(frame));
                    }
                }
                _ => {}
            }
        }
        // Everything was looked at: keep only the value in progress.
        self.buf.drain(..self.done);
        self.pos -= self.done;
        self.start = self.start.map(|start| start - self.done);
        self.done = 0;
        if self.buf.len() > MAX_FRAME {
            return Err(ValueTooLarge);
        }
        Ok(None)
    }

    /// Forgets the value in progress, up to the byte just looked at.
    fn abandon(&mut self) {
        self.done = self.pos;
        self.start = None;
        self.depth = 0;
        self.in_string = false;
        self.escaped = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn frames(decoder: &mut JsonStream) -> Vec<String> {
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
        let mut d = JsonStream::default();
        d.push(b"{\"msgid\":17}\0{\"msgid\":6}\0{\"a\"");
        assert_eq!(frames(&mut d), vec!["{\"msgid\":17}", "{\"msgid\":6}"]);
        d.push(b":1}\0");
        assert_eq!(frames(&mut d), vec!["{\"a\":1}"]);
    }

    #[test]
    fn one_frame_over_many_reads() {
        let whole = b"{\"msgid\":6,\"msg\":\"hello\"}\0";
        let mut d = JsonStream::default();
        let mut got = Vec::new();
        for byte in whole {
            d.push(&[*byte]);
            got.extend(frames(&mut d));
        }
        assert_eq!(got, vec!["{\"msgid\":6,\"msg\":\"hello\"}"]);
    }

    #[test]
    fn empty_frames_are_skipped_and_newline_ends_a_frame() {
        let mut d = JsonStream::default();
        d.push(b"\0\0{\"x\":1}\r\n\n{\"y\":2}\0");
        assert_eq!(frames(&mut d), vec!["{\"x\":1}", "{\"y\":2}"]);
    }

    #[test]
    fn unterminated_and_back_to_back_objects() {
        // As the original C++ server writes them: nothing after each.
        let mut d = JsonStream::default();
        d.push(b"{\"errno\":0,\"id\":1552,\"msgid\":5}");
        assert_eq!(frames(&mut d), vec!["{\"errno\":0,\"id\":1552,\"msgid\":5}"]);
        d.push(b"{\"a\":{\"b\":[1,{}]}}{\"c\":\"}{\\\"\"}{\"d\"");
        assert_eq!(frames(&mut d), vec!["{\"a\":{\"b\":[1,{}]}}", "{\"c\":\"}{\\\"\"}"]);
        d.push(b":1}");
        assert_eq!(frames(&mut d), vec!["{\"d\":1}"]);
    }

    #[test]
    fn garbage_is_skipped_and_a_broken_frame_ends_at_its_nul() {
        let mut d = JsonStream::default();
        d.push(b"garbage 12 \"s\" {\"ok\":1}{\"broken\":\0{\"x\":\"a\nb\"}{\"after\":2}");
        assert_eq!(frames(&mut d), vec!["{\"ok\":1}", "{\"after\":2}"]);
        // What was looked at is not kept.
        assert!(d.buf.is_empty());
    }

    #[test]
    fn runaway_frame_is_an_error() {
        let mut d = JsonStream::default();
        d.push(b"{\"x\":\"");
        d.push(&vec![b'x'; MAX_FRAME]);
        assert_eq!(d.next_frame(), Err(ValueTooLarge));
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
