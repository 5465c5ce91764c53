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
    NoSuchUser = 200,
    NoSuchGroup = 201,
    NotMember = 202,
    Exists = 203,
    Storage = 500,
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
            Errno::NoSuchUser => "no such user",
            Errno::NoSuchGroup => "no such group",
            Errno::NotMember => "not a member of that group",
            Errno::Exists => "already exists",
            Errno::Storage => "storage unavailable, not done; try again later",
        }
    }
}

/// An ERROR (msgid 11) with the standard text for `errno`.
pub fn error(errno: Errno) -> String {
    error_with(errno, errno.text())
}

/// An ERROR (msgid 11) with a specific text.
pub fn error_with(errno: Errno, msg: &str) -> String {
    json!({"msgid": msgid::ERROR, "errno": errno.code(), "msg": msg}).to_string()
}

/// A failed ACK of kind `ack` (`errno` and `errmsg`).
pub fn ack_error(ack: i64, errno: Errno, errmsg: &str) -> String {
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
pub fn one_chat(from: i32, name: &str, toid: i32, msg: &str, time: &str) -> String {
    json!({"msgid": msgid::ONE_CHAT, "id": from, "name": name, "toid": toid, "msg": msg, "time": time}).to_string()
}

/// A group message as delivered (live or stored).
pub fn group_chat(from: i32, name: &str, groupid: i32, msg: &str, time: &str) -> String {
    json!({"msgid": msgid::GROUP_CHAT, "id": from, "name": name, "groupid": groupid, "msg": msg, "time": time})
        .to_string()
}

/// A friend's presence change.
pub fn presence(id: i32, name: &str, online: bool) -> String {
    let state = if online { "online" } else { "offline" };
    json!({"msgid": msgid::PRESENCE, "id": id, "name": name, "state": state}).to_string()
}
