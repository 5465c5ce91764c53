//! The wire vocabulary of SPEC §2: message ids, error numbers and the JSON
//! shape of everything the server sends.

use std::cell::RefCell;
use std::sync::Arc;

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
pub fn one_chat(from: i32, name: &str, toid: i32, msg: &str, time: &str) -> Arc<str> {
    // Keys in the order serde_json's own maps use, so both forms match.
    // The time is digits, dashes, colons and a space: no escapes.
    Frame::build(|out| {
        out.raw("{\"id\":").int(from).raw(",\"msg\":").string(msg);
        out.raw(",\"msgid\":").int(msgid::ONE_CHAT).raw(",\"name\":").string(name);
        out.raw(",\"time\":\"").raw(time).raw("\",\"toid\":").int(toid).raw("}");
    })
}

/// A group message as delivered (live or stored); serialized once however
/// many members receive it.
pub fn group_chat(from: i32, name: &str, groupid: i32, msg: &str, time: &str) -> Arc<str> {
    Frame::build(|out| {
        out.raw("{\"groupid\":").int(groupid).raw(",\"id\":").int(from).raw(",\"msg\":").string(msg);
        out.raw(",\"msgid\":").int(msgid::GROUP_CHAT).raw(",\"name\":").string(name);
        out.raw(",\"time\":\"").raw(time).raw("\"}");
    })
}

/// Bytes of a thread's frame buffer kept between frames; a larger one (a
/// long message full of escapes) is given back.
const KEEP_BUFFER: usize = 1 << 16;

thread_local! {
    /// Each thread writes its frames here and copies them out once, into
    /// the shared payload, instead of allocating a buffer per frame.
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A JSON object being written by hand; only ever given whole JSON tokens.
struct Frame<'a>(&'a mut String);

impl Frame<'_> {
    fn build(write: impl FnOnce(&mut Frame<'_>)) -> Arc<str> {
        BUFFER.with(|buffer| {
            let mut buffer = buffer.borrow_mut();
            buffer.clear();
            write(&mut Frame(&mut buffer));
            let frame = Arc::from(buffer.as_str());
            if buffer.capacity() > KEEP_BUFFER {
                *buffer = String::new();
            }
            frame
        })
    }

    fn raw(&mut self, s: &str) -> &mut Self {
        self.0.push_str(s);
        self
    }

    /// Digits by hand: `write!` goes through the formatting machinery,
    /// which cost more than the rest of a chat frame's header (callgrind).
    fn int(&mut self, n: impl Into<i64>) -> &mut Self {
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
            self.0.push('-');
        }
        self.0.extend(digits[at..].iter().map(|&d| char::from(d)));
        self
    }

    /// A JSON string: copied between quotes when nothing in it needs an
    /// escape (most chat text), else quoted and escaped by serde_json.
    fn string(&mut self, s: &str) -> &mut Self {
        if needs_escape(s.as_bytes()).is_some() {
            // Serialising a str cannot fail.
            self.0.push_str(&serde_json::to_string(s).unwrap_or_default());
        } else {
            self.0.push('"');
            self.0.push_str(s);
            self.0.push('"');
        }
        self
    }
}

/// Where the first byte that JSON must escape in a string is: a quote, a
/// backslash or a control character. Text without one is its own JSON.
pub(crate) fn needs_escape(bytes: &[u8]) -> Option<usize> {
    let escaped = |b: u8| u8::from(b == b'"') | u8::from(b == b'\\') | u8::from(b < 0x20);
    // Whole chunks first, with no early exit inside one, so the compiler
    // checks each chunk in a few vector instructions.
    let mut start = 0;
    for chunk in bytes.chunks_exact(16) {
        if chunk.iter().fold(0, |any, &b| any | escaped(b)) != 0 {
            break;
        }
        start += 16;
    }
    bytes[start..].iter().position(|&b| escaped(b) != 0).map(|at| start + at)
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
            let frame = super::Frame::build(|f| {
                f.int(n);
            });
            assert_eq!(&*frame, n.to_string());
        }
        for text in ["", "plain words 你好 😀", "tab\there", "a\u{7f}b", "q\"", "back\\slash"] {
            let frame = super::Frame::build(|f| {
                f.string(text);
            });
            assert_eq!(&*frame, serde_json::to_string(text).unwrap());
        }
    }

    #[test]
    fn chat_frames_are_the_json_they_would_be_with_serde() {
        let hostile = "\"q\" \\ '; DROP TABLE user; -- 你好 😀\n\u{0}";
        let one = super::one_chat(1, "li\"", 2, hostile, "2026-11-26 10:00:00");
        let expected =
            json!({"msgid": 6, "id": 1, "name": "li\"", "toid": 2, "msg": hostile, "time": "2026-11-26 10:00:00"});
        assert_eq!(&*one, expected.to_string());
        let group = super::group_chat(-3, "", 9, hostile, "t");
        let expected = json!({"msgid": 10, "id": -3, "name": "", "groupid": 9, "msg": hostile, "time": "t"});
        assert_eq!(&*group, expected.to_string());
    }
}
