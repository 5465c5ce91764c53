//! The chat commands typed after login (SPEC §4), parsed without any I/O.

use std::fmt;

/// One chat command line, checked and split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Chat {
        to: i64,
        msg: String,
    },
    AddFriend {
        friend: i64,
    },
    CreateGroup {
        name: String,
        desc: String,
    },
    AddGroup {
        group: i64,
    },
    GroupChat {
        group: i64,
        msg: String,
    },
    /// The friend list with each one's current state.
    Friends,
    /// The group list.
    Groups,
    LoginOut,
    /// Ends the client (`quit` or `exit`).
    Quit,
}

/// Why a line is not a command; `Display` is what the client prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandError {
    /// A blank line: nothing to do and nothing to print.
    Empty,
    Unknown,
    InvalidId,
    /// A chat or group message that is empty or only white space.
    BlankMessage,
    /// A known command with a part missing; holds its usage.
    Usage(&'static str),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Empty => Ok(()),
            CommandError::Unknown => f.write_str("invalid command; type help"),
            CommandError::InvalidId => f.write_str("invalid id!"),
            CommandError::BlankMessage => f.write_str("empty message; not sent"),
            CommandError::Usage(usage) => write!(f, "invalid command; usage: {usage}"),
        }
    }
}

/// Each command's syntax and what it does: the `help` table.
pub const COMMANDS: [(&str, &str); 10] = [
    ("help", "list the commands"),
    ("chat:FRIENDID:MESSAGE", "one-to-one message (MESSAGE may contain ':')"),
    ("addfriend:FRIENDID", "add a friend"),
    ("friends", "list your friends, each online or offline"),
    ("creategroup:NAME:DESC", "create a group and print its id"),
    ("addgroup:GROUPID", "join a group"),
    ("groupchat:GROUPID:MESSAGE", "group message"),
    ("groups", "list your groups and their members"),
    ("loginout", "log out, back to the first menu (also: logout)"),
    ("quit", "log out and end the client (also: exit)"),
];

const CHAT_USAGE: &str = "chat:FRIENDID:MESSAGE";
const ADD_FRIEND_USAGE: &str = "addfriend:FRIENDID";
const CREATE_GROUP_USAGE: &str = "creategroup:NAME:DESC";
const ADD_GROUP_USAGE: &str = "addgroup:GROUPID";
const GROUP_CHAT_USAGE: &str = "groupchat:GROUPID:MESSAGE";

/// Parses one input line. The command name is what comes before the first
/// ':'; messages are split off at the second ':' only, so they may hold
/// colons themselves, and are kept as typed (spaces included).
pub fn parse_command(line: &str) -> Result<Command, CommandError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Err(CommandError::Empty);
    }
    let (name, rest) = match line.split_once(':') {
        Some((name, rest)) => (name.trim(), Some(rest)),
        None => (line.trim(), None),
    };
    match name {
        "help" => Ok(Command::Help),
        "friends" => Ok(Command::Friends),
        "groups" => Ok(Command::Groups),
        "loginout" | "logout" => Ok(Command::LoginOut),
        "quit" | "exit" => Ok(Command::Quit),
        "chat" => {
            let (to, msg) = two_parts(rest, CHAT_USAGE)?;
            Ok(Command::Chat { to: parse_id(to)?, msg: message(msg)? })
        }
        "addfriend" => Ok(Command::AddFriend { friend: parse_id(rest.ok_or(CommandError::Usage(ADD_FRIEND_USAGE))?)? }),
        "creategroup" => {
            let (name, desc) = two_parts(rest, CREATE_GROUP_USAGE)?;
            if name.trim().is_empty() {
                return Err(CommandError::Usage(CREATE_GROUP_USAGE));
            }
            Ok(Command::CreateGroup { name: name.to_string(), desc: desc.to_string() })
        }
        "addgroup" => Ok(Command::AddGroup { group: parse_id(rest.ok_or(CommandError::Usage(ADD_GROUP_USAGE))?)? }),
        "groupchat" => {
            let (group, msg) = two_parts(rest, GROUP_CHAT_USAGE)?;
            Ok(Command::GroupChat { group: parse_id(group)?, msg: message(msg)? })
        }
        _ => Err(CommandError::Unknown),
    }
}

/// A user or group id: a positive integer, spaces around it allowed.
pub fn parse_id(text: &str) -> Result<i64, CommandError> {
    match text.trim().parse::<i64>() {
        Ok(id) if id > 0 => Ok(id),
        _ => Err(CommandError::InvalidId),
    }
}

/// A message as typed, unless there is nothing in it to send.
fn message(msg: &str) -> Result<String, CommandError> {
    if msg.trim().is_empty() {
        return Err(CommandError::BlankMessage);
    }
    Ok(msg.to_string())
}

/// `A:B` split at its first ':' (B may hold more colons).
fn two_parts<'a>(rest: Option<&'a str>, usage: &'static str) -> Result<(&'a str, &'a str), CommandError> {
    rest.and_then(|rest| rest.split_once(':')).ok_or(CommandError::Usage(usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_keeps_colons_in_message() {
        assert_eq!(
            parse_command("chat:2:hello:with colon"),
            Ok(Command::Chat { to: 2, msg: "hello:with colon".into() })
        );
        assert_eq!(parse_command("chat: 7 : spaced \r\n"), Ok(Command::Chat { to: 7, msg: " spaced ".into() }));
        assert_eq!(parse_command("chat:3:"), Err(CommandError::BlankMessage));
        assert_eq!(parse_command("chat:3: \t "), Err(CommandError::BlankMessage));
        assert_eq!(parse_command("groupchat:3:\u{3000}"), Err(CommandError::BlankMessage));
    }

    #[test]
    fn group_commands() {
        assert_eq!(
            parse_command("creategroup:rust:fans: of crabs"),
            Ok(Command::CreateGroup { name: "rust".into(), desc: "fans: of crabs".into() })
        );
        assert_eq!(parse_command("addgroup:12"), Ok(Command::AddGroup { group: 12 }));
        assert_eq!(parse_command("groupchat:12:hi:all"), Ok(Command::GroupChat { group: 12, msg: "hi:all".into() }));
        assert_eq!(parse_command("creategroup::desc"), Err(CommandError::Usage("creategroup:NAME:DESC")));
    }

    #[test]
    fn simple_commands() {
        assert_eq!(parse_command("help"), Ok(Command::Help));
        assert_eq!(parse_command("help:"), Ok(Command::Help));
        assert_eq!(parse_command(" loginout \n"), Ok(Command::LoginOut));
        assert_eq!(parse_command("logout"), Ok(Command::LoginOut));
        assert_eq!(parse_command("quit"), Ok(Command::Quit));
        assert_eq!(parse_command(" exit"), Ok(Command::Quit));
        assert_eq!(parse_command("friends"), Ok(Command::Friends));
        assert_eq!(parse_command("groups"), Ok(Command::Groups));
        assert_eq!(parse_command("addfriend: 5 "), Ok(Command::AddFriend { friend: 5 }));
    }

    #[test]
    fn errors() {
        assert_eq!(parse_command(""), Err(CommandError::Empty));
        assert_eq!(parse_command("  \r\n"), Err(CommandError::Empty));
        assert_eq!(parse_command("hello"), Err(CommandError::Unknown));
        assert_eq!(parse_command("/help"), Err(CommandError::Unknown));
        assert_eq!(parse_command("Chat:1:x"), Err(CommandError::Unknown));
        assert_eq!(parse_command("chat:x:hi"), Err(CommandError::InvalidId));
        assert_eq!(parse_command("chat:-1:hi"), Err(CommandError::InvalidId));
        assert_eq!(parse_command("chat:0:hi"), Err(CommandError::InvalidId));
        assert_eq!(parse_command("addfriend:"), Err(CommandError::InvalidId));
        assert_eq!(parse_command("addgroup:1:2"), Err(CommandError::InvalidId));
        assert_eq!(parse_command("addfriend:99999999999999999999"), Err(CommandError::InvalidId));
        assert_eq!(parse_command("chat:5"), Err(CommandError::Usage("chat:FRIENDID:MESSAGE")));
        assert_eq!(parse_command("addfriend"), Err(CommandError::Usage("addfriend:FRIENDID")));
        assert_eq!(parse_command("groupchat:1"), Err(CommandError::Usage("groupchat:GROUPID:MESSAGE")));
    }

    #[test]
    fn error_texts() {
        assert_eq!(CommandError::Unknown.to_string(), "invalid command; type help");
        assert_eq!(CommandError::InvalidId.to_string(), "invalid id!");
        assert_eq!(CommandError::BlankMessage.to_string(), "empty message; not sent");
        assert_eq!(CommandError::Usage("addgroup:GROUPID").to_string(), "invalid command; usage: addgroup:GROUPID");
        assert_eq!(CommandError::Empty.to_string(), "");
    }
}
