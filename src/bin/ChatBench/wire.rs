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
pub const TOKEN: &[u8] = b"\"token\":\"";

/// Message ids of SPEC §2, shared with the server and the client.
pub use chatserver::msgid;

/// The error numbers (SPEC §2) the bench reacts to, taken from the
/// service's own table so the two cannot drift apart.
pub mod errno {
    use chatserver::service::protocol::Errno;

    /// LOGIN: already logged in (or still being taken offline).
    pub const IN_USE: i64 = Errno::InUse as i64;
    /// Flood control refused the message.
    pub const RATE_LIMITED: i64 = Errno::RateLimited as i64;
    /// Server busy (too many password checks waiting): try again later.
    pub const BUSY: i64 = Errno::Busy as i64;
}

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

/// The raw bytes of the string value of `key` (given with its quotes,
/// colon and opening quote, e.g. [`MSG`]), up to the next quote: no
/// unescaping, so only for values that never hold escapes.
pub fn str_field<'a>(frame: &'a [u8], key: &[u8]) -> Option<&'a [u8]> {
    let start = after(frame, key)?;
    let len = frame[start..].iter().position(|&b| b == b'"')?;
    Some(&frame[start..start + len])
}

/// The stamp text of a chat frame: the bench's own payloads never contain
/// escapes.
pub fn msg_field(frame: &[u8]) -> Option<&[u8]> {
    str_field(frame, MSG)
}

/// The resume token of a LOGIN_ACK, if it has a [`usable_token`].
pub fn token_field(frame: &[u8]) -> Option<&[u8]> {
    str_field(frame, TOKEN).and_then(usable_token)
}

/// `token`, if the bench can send it back in a LOGIN as it is: SPEC §2
/// makes a token URL-safe text of at most 64 characters, so anything else
/// (which would need escaping) is not taken.
pub fn usable_token(token: &[u8]) -> Option<&[u8]> {
    let url_safe = |b: &u8| b.is_ascii_alphanumeric() || b"-_.~".contains(b);
    (!token.is_empty() && token.len() <= 64 && token.iter().all(url_safe)).then_some(token)
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

/// What a LOGIN proves itself with.
#[derive(Clone, Copy, Debug)]
pub enum Secret<'a> {
    /// The bench's password (plain text without escapes).
    Password(&'a str),
    /// A resume token from an earlier LOGIN_ACK, as [`token_field`] gave it.
    Token(&'a [u8]),
}

/// Appends a LOGIN for `id` with `secret` and its terminator.
pub fn login(out: &mut Vec<u8>, id: i32, secret: Secret<'_>) {
    let _ = write!(out, "{{\"msgid\":1,\"id\":{id},");
    match secret {
        Secret::Password(password) => {
            let _ = write!(out, "\"password\":\"{password}\"}}");
        }
        Secret::Token(token) => {
            out.extend_from_slice(b"\"token\":\"");
            out.extend_from_slice(token);
            out.extend_from_slice(b"\"}");
        }
    }
    out.push(0);
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

    #[test]
    fn logins_carry_a_password_or_the_token_a_login_ack_gave() {
        let token = "0123456789abcdef".repeat(4);
        let ack = format!(r#"{{"errno":0,"id":5,"msgid":2,"name":"n","token":"{token}"}}"#);
        let got = token_field(ack.as_bytes()).unwrap();
        assert_eq!(got, token.as_bytes());
        let mut out = Vec::new();
        login(&mut out, 5, Secret::Token(got));
        login(&mut out, 6, Secret::Password("pw"));
        let frames: Vec<serde_json::Value> =
            out.split(|&b| b == 0).filter(|f| !f.is_empty()).map(|f| serde_json::from_slice(f).unwrap()).collect();
        assert_eq!(frames[0], serde_json::json!({"msgid": 1, "id": 5, "token": token}));
        assert_eq!(frames[1], serde_json::json!({"msgid": 1, "id": 6, "password": "pw"}));
        // None, or one that would need escaping in a LOGIN, is not taken.
        assert_eq!(token_field(br#"{"errno":0,"msgid":2}"#), None);
        assert_eq!(token_field(br#"{"token":"a\"b"}"#), None);
        assert_eq!(token_field(br#"{"token":""}"#), None);
        assert_eq!(token_field(br#"{"token":"a b"}"#), None);
    }
}
