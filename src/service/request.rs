//! Parsing a client's frame into a checked request.

use serde_json::{Map, Value};

use super::protocol::{Errno, msgid};

/// A request a client may send, with its fields checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Login { id: i32, secret: Secret },
    Logout,
    Register { name: String, password: String },
    OneChat { toid: i32, msg: String },
    AddFriend { friendid: i32 },
    CreateGroup { name: String, desc: String },
    AddGroup { groupid: i32 },
    GroupChat { groupid: i32, msg: String },
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

impl Request {
    /// Parses one frame. serde_json refuses invalid UTF-8, numbers out of
    /// range and nesting deeper than 128 without recursing further, so no
    /// input can exhaust the stack.
    pub fn parse(frame: &[u8]) -> Result<Request, Errno> {
        let value: Value = serde_json::from_slice(frame).map_err(|_| Errno::Malformed)?;
        let Value::Object(obj) = value else {
            return Err(Errno::Malformed);
        };
        let mut fields = Fields(obj);
        let request = match fields.int64("msgid")? {
            msgid::LOGIN => {
                let id = fields.int("id")?;
                let secret = match fields.optional_string("token")? {
                    Some(token) => Secret::Token(token),
                    None => Secret::Password(fields.string("password")?),
                };
                Request::Login { id, secret }
            }
            msgid::LOGOUT => Request::Logout,
            msgid::REG => Request::Register { name: fields.string("name")?, password: fields.string("password")? },
            msgid::ONE_CHAT => Request::OneChat { toid: fields.int("toid")?, msg: fields.string("msg")? },
            msgid::ADD_FRIEND => Request::AddFriend { friendid: fields.int("friendid")? },
            msgid::CREATE_GROUP => Request::CreateGroup {
                name: fields.string("groupname")?,
                desc: fields.optional_string("groupdesc")?.unwrap_or_default(),
            },
            msgid::ADD_GROUP => Request::AddGroup { groupid: fields.int("groupid")? },
            msgid::GROUP_CHAT => Request::GroupChat { groupid: fields.int("groupid")?, msg: fields.string("msg")? },
            msgid::PING => Request::Ping,
            _ => return Err(Errno::UnknownMsgid),
        };
        Ok(request)
    }

    /// Whether this request may be served before login.
    pub fn allowed_before_login(&self) -> bool {
        matches!(self, Request::Login { .. } | Request::Register { .. } | Request::Ping)
    }
}

/// Typed access to a message's fields; strings are moved out, not copied.
struct Fields(Map<String, Value>);

impl Fields {
    fn int64(&self, key: &str) -> Result<i64, Errno> {
        self.0.get(key).and_then(Value::as_i64).ok_or(Errno::Malformed)
    }

    fn int(&self, key: &str) -> Result<i32, Errno> {
        i32::try_from(self.int64(key)?).map_err(|_| Errno::Malformed)
    }

    fn string(&mut self, key: &str) -> Result<String, Errno> {
        self.optional_string(key)?.ok_or(Errno::Malformed)
    }

    fn optional_string(&mut self, key: &str) -> Result<Option<String>, Errno> {
        match self.0.remove(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Errno::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Request, Errno> {
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
