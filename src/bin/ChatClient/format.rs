//! What the client prints for each message kind: pure functions from the
//! server's JSON to text lines, so every format is unit-tested here.

use serde_json::Value;

use super::command::COMMANDS;
use super::wire;

/// The first menu, exactly as the original client printed it (the `choice:`
/// prompt that follows is printed by the caller).
pub const MAIN_MENU: [&str; 5] =
    ["========================", "1. login", "2. register", "3. quit", "========================"];

/// A field as display text: strings without quotes, numbers as digits,
/// anything else as compact JSON, and a missing field as nothing.
pub fn text(msg: &Value, key: &str) -> String {
    match msg.get(key) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// The `errno` of a reply; a reply without one counts as success, as the
/// spec says every reply has one and only failures need explaining.
pub fn errno(msg: &Value) -> i64 {
    msg.get("errno").and_then(Value::as_i64).unwrap_or(0)
}

/// The human-readable reason of an ERROR: `msg`, else `errmsg`, else errno.
pub fn error_reason(msg: &Value) -> String {
    first_text(msg, &["msg", "errmsg"])
}

/// The reason an ACK failed: ACKs carry `errmsg`, ERROR frames carry `msg`.
pub fn ack_reason(ack: &Value) -> String {
    first_text(ack, &["errmsg", "msg"])
}

fn first_text(msg: &Value, keys: &[&str]) -> String {
    keys.iter()
        .map(|key| text(msg, key))
        .find(|reason| !reason.is_empty())
        .unwrap_or_else(|| format!("errno {}", text(msg, "errno")))
}

/// `[ERROR]: <reason>` for an ERROR frame (msgid 11).
pub fn error(msg: &Value) -> String {
    format!("[ERROR]: {}", error_reason(msg))
}

/// `[ERROR]: <reason>` for a failed ACK.
pub fn ack_error(ack: &Value) -> String {
    format!("[ERROR]: {}", ack_reason(ack))
}

/// ONE_CHAT: `<time> [<id>]<name> said: <msg>`.
pub fn one_chat(msg: &Value) -> String {
    format!("{} [{}]{} said: {}", text(msg, "time"), text(msg, "id"), text(msg, "name"), text(msg, "msg"))
}

/// GROUP_CHAT: `群消息[<groupid>]:<time> [<id>]<name> said: <msg>`.
pub fn group_chat(msg: &Value) -> String {
    format!("群消息[{}]:{}", text(msg, "groupid"), one_chat(msg))
}

/// PRESENCE: `[<id>]<name> is online` (or `offline`).
pub fn presence(msg: &Value) -> String {
    format!("[{}]{} is {}", text(msg, "id"), text(msg, "name"), text(msg, "state"))
}

/// The line for a message the server pushes unasked, or `None` for a kind
/// that is not printed that way.
pub fn push(msg: &Value) -> Option<String> {
    match wire::msgid(msg)? {
        wire::ONE_CHAT => Some(one_chat(msg)),
        wire::GROUP_CHAT => Some(group_chat(msg)),
        wire::PRESENCE => Some(presence(msg)),
        wire::ERROR => Some(error(msg)),
        _ => None,
    }
}

/// An element of LOGIN_ACK's lists: a JSON string holding a JSON object, as
/// the original sends it, or (tolerated) the object itself. `Err` carries
/// the element as text when it is neither, so it is shown rather than lost.
pub fn nested(element: &Value) -> Result<Value, String> {
    match element {
        Value::Object(_) => Ok(element.clone()),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(value) if value.is_object() => Ok(value),
            _ => Err(s.clone()),
        },
        other => Err(other.to_string()),
    }
}

/// The elements of a list field; a missing or non-array field is empty.
fn list<'a>(msg: &'a Value, key: &str) -> &'a [Value] {
    msg.get(key).and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[])
}

/// What a successful LOGIN_ACK shows: the user, the friend list, the group
/// list with their members, then each offline message exactly as it would
/// have been printed live, oldest first.
pub fn login(ack: &Value) -> Vec<String> {
    let mut lines = vec![
        "======================login user======================".to_string(),
        format!("current login user => id:{} name:{}", text(ack, "id"), text(ack, "name")),
        "----------------------friend list---------------------".to_string(),
    ];
    for friend in list(ack, "friends") {
        lines.push(match nested(friend) {
            Ok(f) => format!("{} {} {}", text(&f, "id"), text(&f, "name"), text(&f, "state")),
            Err(raw) => raw,
        });
    }
    lines.push("----------------------group list----------------------".to_string());
    for group in list(ack, "groups") {
        match nested(group) {
            Ok(g) => {
                lines.push(format!("[{}] {} {}", text(&g, "id"), text(&g, "groupname"), text(&g, "groupdesc")));
                for user in list(&g, "users") {
                    lines.push(match nested(user) {
                        Ok(u) => format!(
                            "    {} {} {} {}",
                            text(&u, "id"),
                            text(&u, "name"),
                            text(&u, "state"),
                            text(&u, "role")
                        ),
                        Err(raw) => format!("    {raw}"),
                    });
                }
            }
            Err(raw) => lines.push(raw),
        }
    }
    lines.push("======================================================".to_string());
    lines.extend(stored(ack));
    lines
}

/// The offline messages a LOGIN_ACK carries, each as it would have been
/// printed live.
pub fn stored(ack: &Value) -> Vec<String> {
    list(ack, "offlinemsg")
        .iter()
        .map(|stored| match nested(stored) {
            Ok(m) => push(&m).unwrap_or_else(|| m.to_string()),
            Err(raw) => raw,
        })
        .collect()
}

/// The `help` table.
pub fn help() -> Vec<String> {
    let width = COMMANDS.iter().map(|(cmd, _)| cmd.len()).max().unwrap_or(0);
    let mut lines = vec!["show command list >>>".to_string()];
    lines.extend(COMMANDS.iter().map(|(cmd, what)| format!("{cmd:<width$} : {what}")));
    lines
}

/// The answer to a REG_ACK for the name that was registered.
pub fn register(name: &str, ack: &Value) -> String {
    if errno(ack) == 0 {
        format!("name={name} register success, userid is {}, do not forget it!", text(ack, "id"))
    } else {
        format!("name={name} register error: {}", ack_reason(ack))
    }
}

/// The answer to an ADD_FRIEND_ACK: `added friend [<id>]<name> (<state>)`.
pub fn add_friend(ack: &Value) -> String {
    if errno(ack) != 0 {
        return ack_error(ack);
    }
    // `friend` is an object; tolerate it arriving as a JSON string as well.
    let friend = ack.get("friend").and_then(|f| nested(f).ok()).unwrap_or_default();
    format!("added friend [{}]{} ({})", text(&friend, "id"), text(&friend, "name"), text(&friend, "state"))
}

/// The answer to a CREATE_GROUP_ACK: `create group success, groupid is <id>`.
pub fn create_group(ack: &Value) -> String {
    if errno(ack) != 0 {
        return ack_error(ack);
    }
    format!("create group success, groupid is {}", text(ack, "groupid"))
}

/// The answer to an ADD_GROUP_ACK for the group asked for:
/// `join group <id> success`.
pub fn add_group(ack: &Value, asked: i64) -> String {
    if errno(ack) != 0 {
        return ack_error(ack);
    }
    let group = match text(ack, "groupid") {
        id if id.is_empty() => asked.to_string(),
        id => id,
    };
    format!("join group {group} success")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_chat_line() {
        let msg = json!({"msgid": 6, "id": 2, "name": "li", "toid": 1,
                         "msg": "hello:with colon", "time": "2026-11-26 10:00:00"});
        assert_eq!(one_chat(&msg), "2026-11-26 10:00:00 [2]li said: hello:with colon");
        assert_eq!(push(&msg), Some(one_chat(&msg)));
    }

    #[test]
    fn group_chat_line() {
        let msg = json!({"msgid": 10, "id": 2, "name": "li", "groupid": 1,
                         "msg": "hello", "time": "2026-11-26 10:00:00"});
        assert_eq!(group_chat(&msg), "群消息[1]:2026-11-26 10:00:00 [2]li said: hello");
        assert_eq!(push(&msg), Some(group_chat(&msg)));
    }

    #[test]
    fn presence_lines() {
        let on = json!({"msgid": 15, "id": 2, "name": "li", "state": "online"});
        let off = json!({"msgid": 15, "id": 2, "name": "li", "state": "offline"});
        assert_eq!(push(&on).unwrap(), "[2]li is online");
        assert_eq!(push(&off).unwrap(), "[2]li is offline");
    }

    #[test]
    fn error_lines_fall_back() {
        assert_eq!(
            push(&json!({"msgid": 11, "errno": 102, "msg": "not logged in"})).unwrap(),
            "[ERROR]: not logged in"
        );
        assert_eq!(error(&json!({"msgid": 11, "errno": 1, "errmsg": "bad"})), "[ERROR]: bad");
        assert_eq!(error(&json!({"msgid": 11, "errno": 104})), "[ERROR]: errno 104");
        assert_eq!(
            ack_error(&json!({"msgid": 12, "errno": 200, "errmsg": "no such user", "msg": "x"})),
            "[ERROR]: no such user"
        );
        assert_eq!(ack_error(&json!({"msgid": 12, "errno": 200, "msg": "no such user"})), "[ERROR]: no such user");
    }

    #[test]
    fn other_kinds_are_not_pushed() {
        assert_eq!(push(&json!({"msgid": 17})), None);
        assert_eq!(push(&json!({"msgid": 2, "errno": 0})), None);
        assert_eq!(push(&json!({"nomsgid": 1})), None);
    }

    #[test]
    fn nested_parses_strings_and_objects() {
        assert_eq!(nested(&json!("{\"id\":2}")), Ok(json!({"id": 2})));
        assert_eq!(nested(&json!({"id": 2})), Ok(json!({"id": 2})));
        assert_eq!(nested(&json!("not json")), Err("not json".into()));
        assert_eq!(nested(&json!(5)), Err("5".into()));
    }

    #[test]
    fn login_shows_user_lists_and_offline_messages() {
        let user = json!({"id": 2, "name": "li", "state": "online", "role": "creator"}).to_string();
        let group = json!({"id": 1, "groupname": "g", "groupdesc": "d e",
                           "users": [user, {"id": 3, "name": "wang", "state": "offline", "role": "normal"}]})
        .to_string();
        let ack = json!({
            "msgid": 2, "errno": 0, "id": 1, "name": "zhang",
            "friends": [json!({"id": 2, "name": "li", "state": "online"}).to_string(),
                        {"id": 3, "name": "wang", "state": "offline"}],
            "groups": [group],
            "offlinemsg": [
                json!({"msgid": 6, "id": 2, "name": "li", "toid": 1, "msg": "first",
                       "time": "2026-11-26 10:00:00"}).to_string(),
                json!({"msgid": 10, "id": 3, "name": "wang", "groupid": 1, "msg": "second",
                       "time": "2026-11-26 10:00:01"}).to_string(),
            ],
        });
        assert_eq!(
            login(&ack),
            vec![
                "======================login user======================",
                "current login user => id:1 name:zhang",
                "----------------------friend list---------------------",
                "2 li online",
                "3 wang offline",
                "----------------------group list----------------------",
                "[1] g d e",
                "    2 li online creator",
                "    3 wang offline normal",
                "======================================================",
                "2026-11-26 10:00:00 [2]li said: first",
                "群消息[1]:2026-11-26 10:00:01 [3]wang said: second",
            ]
        );
    }

    #[test]
    fn login_without_lists() {
        let ack = json!({"msgid": 2, "errno": 0, "id": 7, "name": "solo"});
        assert_eq!(
            login(&ack),
            vec![
                "======================login user======================",
                "current login user => id:7 name:solo",
                "----------------------friend list---------------------",
                "----------------------group list----------------------",
                "======================================================",
            ]
        );
    }

    #[test]
    fn register_lines() {
        assert_eq!(
            register("zhang", &json!({"msgid": 5, "errno": 0, "id": 13})),
            "name=zhang register success, userid is 13, do not forget it!"
        );
        assert_eq!(
            register("zhang", &json!({"msgid": 5, "errno": 1, "errmsg": "name taken"})),
            "name=zhang register error: name taken"
        );
    }

    #[test]
    fn ack_lines() {
        assert_eq!(
            add_friend(&json!({"msgid": 12, "errno": 0,
                               "friend": {"id": 2, "name": "li", "state": "online"}})),
            "added friend [2]li (online)"
        );
        assert_eq!(
            add_friend(&json!({"msgid": 12, "errno": 0,
                               "friend": "{\"id\":2,\"name\":\"li\",\"state\":\"offline\"}"})),
            "added friend [2]li (offline)"
        );
        assert_eq!(
            add_friend(&json!({"msgid": 12, "errno": 203, "errmsg": "already a friend"})),
            "[ERROR]: already a friend"
        );
        assert_eq!(
            create_group(&json!({"msgid": 13, "errno": 0, "groupid": 4, "groupname": "g"})),
            "create group success, groupid is 4"
        );
        assert_eq!(
            create_group(&json!({"msgid": 13, "errno": 203, "errmsg": "group name taken"})),
            "[ERROR]: group name taken"
        );
        assert_eq!(add_group(&json!({"msgid": 14, "errno": 0, "groupid": 4}), 4), "join group 4 success");
        assert_eq!(add_group(&json!({"msgid": 14, "errno": 0}), 9), "join group 9 success");
        assert_eq!(add_group(&json!({"msgid": 14, "errno": 201, "msg": "no such group"}), 9), "[ERROR]: no such group");
    }

    #[test]
    fn help_table_lists_every_command() {
        let lines = help();
        assert_eq!(lines.len(), COMMANDS.len() + 1);
        assert!(lines[2].starts_with("chat:FRIENDID:MESSAGE     : "));
        assert!(lines.iter().any(|l| l.starts_with("loginout ")));
    }
}
