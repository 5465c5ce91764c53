//! Parsing a client's frame into a checked request.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

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
        let fields: Fields<'_> = serde_json::from_slice(frame).map_err(|_| Errno::Malformed)?;
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
            msgid::ONE_CHAT => Request::OneChat { toid: fields.toid.int()?, msg: fields.msg.string()? },
            msgid::ADD_FRIEND => Request::AddFriend { friendid: fields.friendid.int()? },
            msgid::CREATE_GROUP => Request::CreateGroup {
                name: fields.groupname.string()?,
                desc: fields.groupdesc.optional_string()?.unwrap_or_default(),
            },
            msgid::ADD_GROUP => Request::AddGroup { groupid: fields.groupid.int()? },
            msgid::GROUP_CHAT => Request::GroupChat { groupid: fields.groupid.int()?, msg: fields.msg.string()? },
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

/// The fields a request can have, read in one pass over the object: no
/// tree, and strings without escapes borrowed from the frame. A field is
/// checked only by the request that uses it (as its type in the original
/// protocol), so a client's extra or odd fields do no harm.
#[derive(Default)]
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
#[derive(Default)]
enum Scalar<'a> {
    /// Not in the object, or `null`.
    #[default]
    Absent,
    Int(i64),
    Str(Cow<'a, str>),
    /// Anything else: a float, a bool, an array, an object, a huge number.
    Other,
}

impl Scalar<'_> {
    fn int64(&self) -> Result<i64, Errno> {
        match self {
            Scalar::Int(n) => Ok(*n),
            _ => Err(Errno::Malformed),
        }
    }

    fn int(&self) -> Result<i32, Errno> {
        i32::try_from(self.int64()?).map_err(|_| Errno::Malformed)
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

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fields<'de>, A::Error> {
        let mut fields = Fields::default();
        // A later duplicate wins, as in serde_json's own maps.
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let slot = match &*key {
                "msgid" => &mut fields.msgid,
                "id" => &mut fields.id,
                "toid" => &mut fields.toid,
                "friendid" => &mut fields.friendid,
                "groupid" => &mut fields.groupid,
                "msg" => &mut fields.msg,
                "name" => &mut fields.name,
                "password" => &mut fields.password,
                "token" => &mut fields.token,
                "groupname" => &mut fields.groupname,
                "groupdesc" => &mut fields.groupdesc,
                _ => {
                    map.next_value::<Skip>()?;
                    continue;
                }
            };
            *slot = map.next_value()?;
        }
        Ok(fields)
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Int(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Scalar<'de>, E> {
        Ok(i64::try_from(n).map_or(Scalar::Other, Scalar::Int))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Absent)
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Scalar<'de>, E> {
        Ok(Scalar::Str(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

/// A value read and dropped. Unlike serde's `IgnoredAny`, it is read the
/// way a `Value` would be: strings are checked (no lone surrogates) and
/// serde_json's nesting limit applies, so what is refused stays the same.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Skip, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_entry::<Skip, Skip>()?.is_some() {}
        Ok(Skip)
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
