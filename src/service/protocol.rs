//! The wire vocabulary of SPEC §2: message ids, error numbers and the JSON
//! shape of everything the server sends.

use serde_json::{Value, json};

pub use crate::msgid;

/// Error numbers of ERROR and the ACKs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Errno {
    /// LOGIN: bad id or password. REG: name taken or invalid.
    Invalid = 1,
    /// LOGIN: the user is already logged in somewhere.
    InUse = 2,
    Malformed = 100,
    UnknownMsgid = 101,
    NotLoggedIn = 102,
    TooLarge = 103,
    RateLimited = 104,
    /// This session was replaced by a login elsewhere (then closed).
    Replaced = 105,
    /// The receiver's offline store is full: the message was not stored.
    StoreFull = 106,
    NoSuchUser = 200,
    NoSuchGroup = 201,
    NotMember = 202,
    Exists = 203,
    Storage = 500,
    /// Too much waits (password checks): not done, try again later.
    Busy = 501,
}

impl Errno {
    pub fn code(self) -> i64 {
        self as i64
    }

    /// The text sent with the number.
    pub fn text(self) -> &'static str {
        match self {
            Errno::Invalid => "id or password is invalid!",
            Errno::InUse => "this account is using, input another!",
            Errno::Malformed => "malformed message",
            Errno::UnknownMsgid => "unknown msgid",
            Errno::NotLoggedIn => "not logged in",
            Errno::TooLarge => "message too large",
            Errno::RateLimited => "too many messages",
            Errno::Replaced => "this session was replaced by a login elsewhere",
            Errno::StoreFull => "the receiver's offline store is full: this message was not stored",
            Errno::NoSuchUser => "no such user",
            Errno::NoSuchGroup => "no such group",
            Errno::NotMember => "not a member of that group",
            Errno::Exists => "already exists",
            Errno::Storage => "storage unavailable, not done; try again later",
            Errno::Busy => "server busy, not done; try again later",
        }
    }
}

/// An ERROR (msgid 11) with the standard text for `errno`.
pub fn error(errno: Errno) -> String {
    error_with(errno, errno.text())
}

/// An ERROR (msgid 11) with a specific text.
pub fn error_with(errno: Errno, msg: &str) -> String {
    crate::stats::ERRORS.add(1);
    json!({"msgid": msgid::ERROR, "errno": errno.code(), "msg": msg}).to_string()
}

/// A failed ACK of kind `ack` (`errno` and `errmsg`).
pub fn ack_error(ack: i64, errno: Errno, errmsg: &str) -> String {
    crate::stats::ERRORS.add(1);
    json!({"msgid": ack, "errno": errno.code(), "errmsg": errmsg}).to_string()
}

/// A successful ACK of kind `ack` with `fields` added.
pub fn ack_ok(ack: i64, fields: Value) -> String {
    let mut obj = json!({"msgid": ack, "errno": 0});
    if let (Value::Object(target), Value::Object(extra)) = (&mut obj, fields) {
        target.extend(extra);
    }
    obj.to_string()
}

pub fn pong() -> String {
    json!({"msgid": msgid::PONG}).to_string()
}

/// A one-to-one message as delivered (live or stored).
///
/// Written straight into one buffer rather than through a `Value` tree: this
/// is the hot path, and the tree cost most of a relayed message's CPU.
pub fn one_chat(from: i32, name: &str, toid: i32, msg: &str, time: &str) -> String {
    // Keys in the order serde_json's own maps use, so both forms match.
    let mut out = Frame::with_room(msg.len() + name.len());
    out.raw("{\"id\":").int(from).raw(",\"msg\":").string(msg);
    out.raw(",\"msgid\":").int(msgid::ONE_CHAT).raw(",\"name\":").string(name);
    out.raw(",\"time\":").string(time).raw(",\"toid\":").int(toid).raw("}");
    out.finish()
}

/// A group message as delivered (live or stored); serialized once however
/// many members receive it.
pub fn group_chat(from: i32, name: &str, groupid: i32, msg: &str, time: &str) -> String {
    let mut out = Frame::with_room(msg.len() + name.len());
    out.raw("{\"groupid\":").int(groupid).raw(",\"id\":").int(from).raw(",\"msg\":").string(msg);
    out.raw(",\"msgid\":").int(msgid::GROUP_CHAT).raw(",\"name\":").string(name);
    out.raw(",\"time\":").string(time).raw("}");
    out.finish()
}

/// A JSON object being written by hand; only ever given whole JSON tokens.
struct Frame(Vec<u8>);

impl Frame {
    fn with_room(text: usize) -> Frame {
        Frame(Vec::with_capacity(text + 96))
    }

    fn raw(&mut self, s: &str) -> &mut Frame {
        self.0.extend_from_slice(s.as_bytes());
        self
    }

    /// Digits by hand: `write!` goes through the formatting machinery,
    /// which cost more than the rest of a chat frame's header (callgrind).
    fn int(&mut self, n: impl Into<i64>) -> &mut Frame {
        let n: i64 = n.into();
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = n.unsigned_abs();
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            self.0.push(b'-');
        }
        self.0.extend_from_slice(&digits[at..]);
        self
    }

    /// A JSON string: copied between quotes when nothing in it needs an
    /// escape (most chat text), else quoted and escaped by serde_json.
    fn string(&mut self, s: &str) -> &mut Frame {
        if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
            // Writing into a Vec cannot fail.
            let _ = serde_json::to_writer(&mut self.0, s);
        } else {
            self.0.push(b'"');
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(b'"');
        }
        self
    }

    fn finish(&mut self) -> String {
        // Only UTF-8 went in: str slices and serde_json's output.
        String::from_utf8(std::mem::take(&mut self.0)).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }
}

/// A friend's presence change.
pub fn presence(id: i32, name: &str, online: bool) -> String {
    let state = if online { "online" } else { "offline" };
    json!({"msgid": msgid::PRESENCE, "id": id, "name": name, "state": state}).to_string()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn numbers_and_plain_text_are_written_as_serde_would() {
        for n in [0, 7, -7, 1_234_567, i64::from(i32::MIN), i64::MAX, i64::MIN] {
            let mut frame = super::Frame::with_room(0);
            frame.int(n);
            assert_eq!(frame.finish(), n.to_string());
        }
        for text in ["", "plain words 你好 😀", "tab\there", "a\u{7f}b", "q\"", "back\\slash"] {
            let mut frame = super::Frame::with_room(0);
            frame.string(text);
            assert_eq!(frame.finish(), serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn chat_frames_are_the_json_they_would_be_with_serde() {
        let hostile = "\"q\" \\ '; DROP TABLE user; -- 你好 😀\n\u{0}";
        let one = super::one_chat(1, "li\"", 2, hostile, "2026-11-26 10:00:00");
        let expected =
            json!({"msgid": 6, "id": 1, "name": "li\"", "toid": 2, "msg": hostile, "time": "2026-11-26 10:00:00"});
        assert_eq!(one, expected.to_string());
        let group = super::group_chat(-3, "", 9, hostile, "t");
        let expected = json!({"msgid": 10, "id": -3, "name": "", "groupid": 9, "msg": hostile, "time": "t"});
        assert_eq!(group, expected.to_string());
    }
}
