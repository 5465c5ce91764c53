//! The frames ChatBench sends, and a cheap scan of the frames it receives.
//!
//! The timed path never builds a JSON tree, on either side: frames are
//! formatted straight into an output buffer, and replies are classified by
//! searching for `"key":`. That search cannot be fooled by a string value:
//! inside a JSON string a quote is always escaped, so `"msgid":` only ever
//! matches a key. (It would match a key of a nested object; the frames
//! scanned this way, chat deliveries and short replies, have none. LOGIN_ACK,
//! which nests, is parsed with serde_json.)

use std::io::Write;

pub const MSGID: &[u8] = b"\"msgid\":";
pub const ERRNO: &[u8] = b"\"errno\":";
pub const ID: &[u8] = b"\"id\":";
pub const TOID: &[u8] = b"\"toid\":";
pub const GROUPID: &[u8] = b"\"groupid\":";
pub const MSG: &[u8] = b"\"msg\":\"";

/// Message ids of SPEC §2, shared with the server and the client.
pub use crate::msgid;

/// Position just past the first occurrence of `key` in `frame`.
fn after(frame: &[u8], key: &[u8]) -> Option<usize> {
    let first = *key.first()?;
    let mut from = 0;
    while let Some(i) = frame[from..].iter().position(|&b| b == first) {
        let at = from + i;
        if frame[at..].starts_with(key) {
            return Some(at + key.len());
        }
        from = at + 1;
    }
    None
}

/// The integer value of `key` (given with its quotes and colon, e.g.
/// [`MSGID`]), if present and a plain integer.
pub fn int_field(frame: &[u8], key: &[u8]) -> Option<i64> {
    let mut i = after(frame, key)?;
    while frame.get(i) == Some(&b' ') {
        i += 1;
    }
    let negative = frame.get(i) == Some(&b'-');
    if negative {
        i += 1;
    }
    let digits = frame[i..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 18 {
        return None;
    }
    let value = frame[i..i + digits].iter().fold(0i64, |acc, &d| acc * 10 + i64::from(d - b'0'));
    Some(if negative { -value } else { value })
}

/// The raw bytes of the string value of [`MSG`], up to the next quote. The
/// bench's own payloads never contain escapes, so no unescaping is needed.
pub fn msg_field(frame: &[u8]) -> Option<&[u8]> {
    let start = after(frame, MSG)?;
    let len = frame[start..].iter().position(|&b| b == b'"')?;
    Some(&frame[start..start + len])
}

/// What the bench puts in every chat message: who sent it, its number, and
/// when (nanoseconds since the run's epoch), so that the receiving side can
/// check order and measure latency without any shared table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// The sending pair, sender or member index.
    pub src: u32,
    /// Sequence number within `src`, from 0.
    pub seq: u64,
    /// Send time, nanoseconds since the run's epoch.
    pub t_ns: u64,
}

impl Stamp {
    /// Writes `src.seq.t_ns.` padded with `x` to `pad_to` bytes.
    fn write(&self, out: &mut Vec<u8>, pad_to: usize) {
        let start = out.len();
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{}.{}.{}.", self.src, self.seq, self.t_ns);
        let len = out.len() - start;
        if len < pad_to {
            out.resize(out.len() + pad_to - len, b'x');
        }
    }

    /// Reads a stamp written by [`Stamp::write`].
    pub fn parse(msg: &[u8]) -> Option<Stamp> {
        let mut parts = msg.split(|&b| b == b'.');
        let mut next = || -> Option<u64> {
            let digits = parts.next()?;
            if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            Some(digits.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0')))
        };
        let src = u32::try_from(next()?).ok()?;
        Some(Stamp { src, seq: next()?, t_ns: next()? })
    }
}

/// Appends `{"msgid":6,"toid":T,"msg":"STAMP"}` and its NUL terminator.
pub fn one_chat(out: &mut Vec<u8>, toid: i32, stamp: Stamp, pad_to: usize) {
    let _ = write!(out, "{{\"msgid\":6,\"toid\":{toid},\"msg\":\"");
    stamp.write(out, pad_to);
    out.extend_from_slice(b"\"}\0");
}

/// Appends `{"msgid":10,"groupid":G,"msg":"STAMP"}` and its terminator.
pub fn group_chat(out: &mut Vec<u8>, groupid: i32, stamp: Stamp, pad_to: usize) {
    let _ = write!(out, "{{\"msgid\":10,\"groupid\":{groupid},\"msg\":\"");
    stamp.write(out, pad_to);
    out.extend_from_slice(b"\"}\0");
}

/// Appends a LOGIN for `id` and its terminator.
pub fn login(out: &mut Vec<u8>, id: i32, password: &str) {
    let _ = write!(out, "{{\"msgid\":1,\"id\":{id},\"password\":\"{password}\"}}\0");
}

/// Appends a PING.
pub fn ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"msgid\":16}\0");
}

/// Appends a LOGOUT followed by a PING: the PONG is answered only once the
/// LOGOUT has been carried out (a connection's requests run in order), which
/// gives the logout the reply it does not have.
pub fn logout_then_ping(out: &mut Vec<u8>) {
    out.extend_from_slice(b"{\"msgid\":3}\0{\"msgid\":16}\0");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_fields_but_not_inside_strings() {
        let f = br#"{"id":3,"msg":"a\"msgid\":9","msgid":6,"name":"x","time":"t","toid":-4}"#;
        assert_eq!(int_field(f, MSGID), Some(6));
        assert_eq!(int_field(f, ID), Some(3));
        assert_eq!(int_field(f, TOID), Some(-4));
        assert_eq!(int_field(f, GROUPID), None);
        assert_eq!(int_field(br#"{"msgid":"6"}"#, MSGID), None);
    }

    #[test]
    fn chat_frames_carry_a_stamp_that_reads_back() {
        let stamp = Stamp { src: 7, seq: 123, t_ns: 456_789 };
        let mut out = Vec::new();
        one_chat(&mut out, 42, stamp, 40);
        assert_eq!(out.last(), Some(&0));
        let frame = &out[..out.len() - 1];
        let value: serde_json::Value = serde_json::from_slice(frame).unwrap();
        assert_eq!(value["toid"], 42);
        assert_eq!(value["msg"].as_str().unwrap().len(), 40);
        assert_eq!(Stamp::parse(msg_field(frame).unwrap()), Some(stamp));
        out.clear();
        group_chat(&mut out, 9, stamp, 0);
        assert_eq!(int_field(&out, MSGID), Some(10));
        assert_eq!(Stamp::parse(msg_field(&out).unwrap()), Some(stamp));
        assert_eq!(Stamp::parse(b"1.2"), None);
        assert_eq!(Stamp::parse(b"1.x.3."), None);
    }
}
