//! The logged-in user's friends and groups as the client last heard of
//! them: from the LOGIN_ACK, kept up to date by ADD_FRIEND_ACK, PRESENCE and
//! the groups created or joined since. What `friends` and `groups` print.

use serde_json::Value;

use super::format::{nested, text};
use super::wire;

/// A friend, or a member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub id: i64,
    pub name: String,
    /// `online` or `offline`, as the server said.
    pub state: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub person: Person,
    /// `creator` or `normal`.
    pub role: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: i64,
    /// None for a group joined since the login: ADD_GROUP_ACK carries only
    /// its id, the rest comes with the next login.
    pub about: Option<(String, String)>,
    pub members: Vec<Member>,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Roster {
    friends: Vec<Person>,
    groups: Vec<Group>,
}

impl Roster {
    /// Takes in what a message from the server says about friends: a
    /// successful LOGIN_ACK starts over, a successful ADD_FRIEND_ACK adds
    /// one, a PRESENCE changes a state. Called in the order the messages
    /// arrive, so a state is never overwritten by an older one.
    pub fn observe(&mut self, msg: &Value) {
        let ok = msg.get("errno").and_then(Value::as_i64).unwrap_or(0) == 0;
        match wire::msgid(msg) {
            Some(wire::LOGIN_ACK) if ok => *self = Roster::from_login(msg),
            Some(wire::ADD_FRIEND_ACK) if ok => {
                if let Some(friend) = msg.get("friend").and_then(|f| nested(f).ok()).and_then(|f| person(&f)) {
                    self.friends.retain(|f| f.id != friend.id);
                    self.friends.push(friend);
                }
            }
            Some(wire::PRESENCE) => {
                let (Some(id), state) = (msg.get("id").and_then(Value::as_i64), text(msg, "state")) else {
                    return;
                };
                let members = self.groups.iter_mut().flat_map(|g| g.members.iter_mut().map(|m| &mut m.person));
                for someone in self.friends.iter_mut().chain(members).filter(|p| p.id == id) {
                    someone.state.clone_from(&state);
                }
            }
            _ => {}
        }
    }

    fn from_login(ack: &Value) -> Roster {
        let friends = elements(ack, "friends").filter_map(|f| person(&f)).collect();
        let groups = elements(ack, "groups")
            .filter_map(|g| {
                let members = elements(&g, "users")
                    .filter_map(|u| Some(Member { person: person(&u)?, role: text(&u, "role") }))
                    .collect();
                let about = Some((text(&g, "groupname"), text(&g, "groupdesc")));
                Some(Group { id: g.get("id")?.as_i64()?, about, members })
            })
            .collect();
        Roster { friends, groups }
    }

    /// A group this user just created: they are its only member.
    pub fn created(&mut self, id: i64, name: &str, desc: &str, me: Person) {
        let creator = Member { person: me, role: "creator".into() };
        self.add_group(Group { id, about: Some((name.into(), desc.into())), members: vec![creator] });
    }

    /// A group this user just joined.
    pub fn joined(&mut self, id: i64) {
        self.add_group(Group { id, about: None, members: Vec::new() });
    }

    fn add_group(&mut self, group: Group) {
        self.groups.retain(|g| g.id != group.id);
        self.groups.push(group);
    }

    /// What `friends` prints: one line per friend, as in the login box.
    pub fn friend_lines(&self) -> Vec<String> {
        let mut lines = vec!["----------------------friend list---------------------".to_string()];
        lines.extend(self.friends.iter().map(|f| format!("{} {} {}", f.id, f.name, f.state)));
        if self.friends.is_empty() {
            lines.push("(no friends yet; addfriend:FRIENDID adds one)".into());
        }
        lines
    }

    /// What `groups` prints: each group, then its members, as in the login box.
    pub fn group_lines(&self) -> Vec<String> {
        let mut lines = vec!["----------------------group list----------------------".to_string()];
        for group in &self.groups {
            lines.push(match &group.about {
                Some((name, desc)) => format!("[{}] {name} {desc}", group.id),
                None => format!("[{}] (joined just now; its name and members show at the next login)", group.id),
            });
            for Member { person, role } in &group.members {
                lines.push(format!("    {} {} {} {role}", person.id, person.name, person.state));
            }
        }
        if self.groups.is_empty() {
            lines.push("(no groups yet; creategroup:NAME:DESC or addgroup:GROUPID)".into());
        }
        lines
    }
}

/// The elements of a list field as objects (see [`nested`]); a missing
/// list, or an element that is no object, gives nothing.
fn elements(msg: &Value, key: &str) -> impl Iterator<Item = Value> {
    let list = msg.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    list.into_iter().filter_map(|element| nested(&element).ok())
}

fn person(obj: &Value) -> Option<Person> {
    Some(Person { id: obj.get("id")?.as_i64()?, name: text(obj, "name"), state: text(obj, "state") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn login_ack() -> Value {
        let member = json!({"id": 3, "name": "wang", "state": "offline", "role": "normal"}).to_string();
        let group = json!({"id": 1, "groupname": "g", "groupdesc": "d", "users": [member, "garbage"]}).to_string();
        json!({
            "msgid": 2, "errno": 0, "id": 1, "name": "zhang",
            "friends": [json!({"id": 2, "name": "li", "state": "online"}).to_string(),
                        {"id": 3, "name": "wang", "state": "offline"}, "not json"],
            "groups": [group],
        })
    }

    fn roster() -> Roster {
        let mut roster = Roster::default();
        roster.observe(&login_ack());
        roster
    }

    #[test]
    fn login_ack_gives_friends_and_groups() {
        let roster = roster();
        assert_eq!(roster.friend_lines()[1..], ["2 li online", "3 wang offline"]);
        assert_eq!(roster.group_lines()[1..], ["[1] g d", "    3 wang offline normal"]);
    }

    #[test]
    fn presence_changes_friends_and_members() {
        let mut roster = roster();
        roster.observe(&json!({"msgid": 15, "id": 3, "name": "wang", "state": "online"}));
        roster.observe(&json!({"msgid": 15, "id": 2, "name": "li", "state": "offline"}));
        roster.observe(&json!({"msgid": 15, "id": 9, "name": "nobody", "state": "online"}));
        assert_eq!(roster.friend_lines()[1..], ["2 li offline", "3 wang online"]);
        assert_eq!(roster.group_lines()[2], "    3 wang online normal");
    }

    #[test]
    fn added_friends_and_failed_acks() {
        let mut roster = roster();
        roster.observe(&json!({"msgid": 12, "errno": 0, "friend": {"id": 4, "name": "zhao", "state": "online"}}));
        roster.observe(&json!({"msgid": 12, "errno": 203, "errmsg": "already a friend"}));
        roster.observe(&json!({"msgid": 2, "errno": 1, "errmsg": "id or password is invalid!"}));
        assert_eq!(roster.friend_lines()[1..], ["2 li online", "3 wang offline", "4 zhao online"]);
    }

    #[test]
    fn groups_created_and_joined() {
        let mut roster = roster();
        let me = Person { id: 1, name: "zhang".into(), state: "online".into() };
        roster.created(5, "crabs", "all about crabs", me);
        roster.joined(7);
        assert_eq!(
            roster.group_lines()[1..],
            [
                "[1] g d",
                "    3 wang offline normal",
                "[5] crabs all about crabs",
                "    1 zhang online creator",
                "[7] (joined just now; its name and members show at the next login)",
            ]
        );
    }

    #[test]
    fn empty_lists_say_how_to_fill_them() {
        let roster = Roster::default();
        assert_eq!(roster.friend_lines().len(), 2);
        assert!(roster.friend_lines()[1].contains("addfriend:FRIENDID"));
        assert!(roster.group_lines()[1].contains("creategroup:NAME:DESC"));
    }
}
