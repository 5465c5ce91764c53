//! Parsing a client's frame into a checked request.

mod flat;
mod visitor;

use std::borrow::Cow;

use super::protocol::{Errno, msgid};

/// A request a client may send, with its fields checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request<'a> {
    Login {
        id: i32,
        secret: Secret,
    },
    Logout,
    Register {
        name: String,
        password: String,
    },
    /// The text borrowed from the frame when it had no escapes: the chat
    /// fast path runs without copying it.
    OneChat {
        toid: i32,
        msg: Cow<'a, str>,
    },
    AddFriend {
        friendid: i32,
    },
    CreateGroup {
        name: String,
        desc: String,
    },
    AddGroup {
        groupid: i32,
    },
    GroupChat {
        groupid: i32,
        msg: Cow<'a, str>,
    },
    Ping,
}

/// How a LOGIN proves who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    /// Checked against the stored hash: slow on purpose.
    Password(String),
    /// A resume token from an earlier LOGIN_ACK: one fast hash.
    Token(String),
}

impl Request<'_> {
    /// Parses one frame. serde_json refuses invalid UTF-8, numbers out of
    /// range and nesting deeper than 128 without recursing further, so no
    /// input can exhaust the stack.
    pub fn parse(frame: &[u8]) -> Result<Request<'_>, Errno> {
        // Chat messages take the fast path; anything it does not read
        // whole, serde_json reads (or refuses).
        let fields = match flat::fields(frame) {
            Some(fields) => fields,
            None => visitor::fields(frame).map_err(|_| Errno::Malformed)?,
        };
        let request = match fields.msgid.int64()? {
            msgid::LOGIN => {
                let id = fields.id.int()?;
                let secret = match fields.token.optional_string()? {
                    Some(token) => Secret::Token(token),
                    None => Secret::Password(fields.password.string()?),
                };
                Request::Login { id, secret }
            }
            msgid::LOGOUT => Request::Logout,
            msgid::REG => Request::Register { name: fields.name.string()?, password: fields.password.string()? },
            msgid::ONE_CHAT => Request::OneChat { toid: fields.toid.int()?, msg: fields.msg.text()? },
            msgid::ADD_FRIEND => Request::AddFriend { friendid: fields.friendid.int()? },
            msgid::CREATE_GROUP => Request::CreateGroup {
                name: fields.groupname.string()?,
                desc: fields.groupdesc.optional_string()?.unwrap_or_default(),
            },
            msgid::ADD_GROUP => Request::AddGroup { groupid: fields.groupid.int()? },
            msgid::GROUP_CHAT => Request::GroupChat { groupid: fields.groupid.int()?, msg: fields.msg.text()? },
            msgid::PING => Request::Ping,
            _ => return Err(Errno::UnknownMsgid),
        };
        Ok(request)
    }

    /// The request with nothing borrowed, to wait or to go to a job.
    pub fn into_owned(self) -> Request<'static> {
        match self {
            Request::OneChat { toid, msg } => Request::OneChat { toid, msg: Cow::Owned(msg.into_owned()) },
            Request::GroupChat { groupid, msg } => Request::GroupChat { groupid, msg: Cow::Owned(msg.into_owned()) },
            Request::Login { id, secret } => Request::Login { id, secret },
            Request::Logout => Request::Logout,
            Request::Register { name, password } => Request::Register { name, password },
            Request::AddFriend { friendid } => Request::AddFriend { friendid },
            Request::CreateGroup { name, desc } => Request::CreateGroup { name, desc },
            Request::AddGroup { groupid } => Request::AddGroup { groupid },
            Request::Ping => Request::Ping,
        }
    }

    /// Whether this request may be served before login.
    pub fn allowed_before_login(&self) -> bool {
        matches!(self, Request::Login { .. } | Request::Register { .. } | Request::Ping)
    }
}

/// The fields a request can have, read in one pass over the object: no
/// tree, and strings without escapes borrowed from the frame. A field is
/// checked only by the request that uses it (as its type in the original
/// protocol), so a client's extra or odd fields do no harm.
#[derive(Default, Debug, PartialEq)]
struct Fields<'a> {
    msgid: Scalar<'a>,
    id: Scalar<'a>,
    toid: Scalar<'a>,
    friendid: Scalar<'a>,
    groupid: Scalar<'a>,
    msg: Scalar<'a>,
    name: Scalar<'a>,
    password: Scalar<'a>,
    token: Scalar<'a>,
    groupname: Scalar<'a>,
    groupdesc: Scalar<'a>,
}

/// One field's value as far as requests care.
#[derive(Default, Debug, PartialEq)]
enum Scalar<'a> {
    /// Not in the object, or `null`.
    #[default]
    Absent,
    Int(i64),
    Str(Cow<'a, str>),
    /// Anything else: a float, a bool, an array, an object, a huge number.
    Other,
}

impl<'a> Fields<'a> {
    /// Where the value of `key` goes; None for keys no request reads.
    fn slot(&mut self, key: &str) -> Option<&mut Scalar<'a>> {
        Some(match key {
            "msgid" => &mut self.msgid,
            "id" => &mut self.id,
            "toid" => &mut self.toid,
            "friendid" => &mut self.friendid,
            "groupid" => &mut self.groupid,
            "msg" => &mut self.msg,
            "name" => &mut self.name,
            "password" => &mut self.password,
            "token" => &mut self.token,
            "groupname" => &mut self.groupname,
            "groupdesc" => &mut self.groupdesc,
            _ => return None,
        })
    }
}

impl<'a> Scalar<'a> {
    fn int64(&self) -> Result<i64, Errno> {
        match self {
            Scalar::Int(n) => Ok(*n),
            _ => Err(Errno::Malformed),
        }
    }

    fn int(&self) -> Result<i32, Errno> {
        i32::try_from(self.int64()?).map_err(|_| Errno::Malformed)
    }

    fn text(self) -> Result<Cow<'a, str>, Errno> {
        match self {
            Scalar::Str(s) => Ok(s),
            _ => Err(Errno::Malformed),
        }
    }

    fn string(self) -> Result<String, Errno> {
        self.optional_string()?.ok_or(Errno::Malformed)
    }

    fn optional_string(self) -> Result<Option<String>, Errno> {
        match self {
            Scalar::Absent => Ok(None),
            Scalar::Str(s) => Ok(Some(s.into_owned())),
            _ => Err(Errno::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request<'_>, Errno> {
        Request::parse(s.as_bytes())
    }

    #[test]
    fn parses_each_request() {
        assert_eq!(
            parse(r#"{"msgid":1,"id":3,"password":"pw"}"#),
            Ok(Request::Login { id: 3, secret: Secret::Password("pw".into()) })
        );
        assert_eq!(
            parse(r#"{"msgid":1,"id":3,"token":"t"}"#),
            Ok(Request::Login { id: 3, secret: Secret::Token("t".into()) })
        );
        assert_eq!(parse(r#"{"msgid":3,"id":99}"#), Ok(Request::Logout));
        assert_eq!(
            parse(r#"{"msgid":6,"id":1,"name":"x","toid":2,"msg":"hi"}"#),
            Ok(Request::OneChat { toid: 2, msg: "hi".into() })
        );
        assert_eq!(
            parse(r#"{"msgid":8,"groupname":"g"}"#),
            Ok(Request::CreateGroup { name: "g".into(), desc: String::new() })
        );
        assert_eq!(parse(r#"{"msgid":16}"#), Ok(Request::Ping));
    }

    #[test]
    fn reads_escapes_duplicates_and_ignores_what_the_request_does_not_use() {
        assert_eq!(
            parse(r#"{"time":[1,{"a":2}],"id":"x","msgid":6,"toid":2,"msg":"a\"b\u00e9\n","extra":1.5}"#),
            Ok(Request::OneChat { toid: 2, msg: "a\"b\u{e9}\n".into() })
        );
        assert_eq!(
            parse(r#"{"msgid":6,"toid":1,"toid":3,"msg":null,"msg":"m"}"#),
            Ok(Request::OneChat { toid: 3, msg: "m".into() })
        );
        assert_eq!(parse(r#"{"msgid":6,"toid":2,"msg":7}"#), Err(Errno::Malformed));
        assert_eq!(parse(r#"{"msgid":6.0,"toid":2,"msg":"m"}"#), Err(Errno::Malformed));
        assert_eq!(parse(r#"{"msgid":16} x"#), Err(Errno::Malformed));
    }

    #[test]
    fn refuses_bad_input_with_the_right_errno() {
        for bad in
            ["", "[]", "\"x\"", "{", r#"{"msgid":"1"}"#, r#"{"msgid":1}"#, r#"{"msgid":1,"id":"3","password":"p"}"#]
        {
            assert_eq!(parse(bad), Err(Errno::Malformed), "{bad}");
        }
        assert_eq!(parse(r#"{"msgid":6,"toid":1e999,"msg":"x"}"#), Err(Errno::Malformed));
        assert_eq!(parse(r#"{"msgid":6,"toid":4294967296,"msg":"x"}"#), Err(Errno::Malformed));
        assert_eq!(Request::parse(b"{\"msgid\":6,\"toid\":1,\"msg\":\"\xff\"}"), Err(Errno::Malformed));
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert_eq!(parse(&deep), Err(Errno::Malformed));
        assert_eq!(parse(r#"{"msgid":99}"#), Err(Errno::UnknownMsgid));
    }
}
