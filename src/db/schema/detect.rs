//! What an unversioned database holds: nothing, ChatServer's tables, the
//! original C++ ChatServer's, or something else. Only reads.

use std::collections::BTreeMap;

use mysql::Conn;
use mysql::prelude::Queryable;

use crate::db::DbError;

/// What [`inspect`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// No tables at all.
    Empty,
    /// ChatServer's tables (some may be missing), from before versions were kept.
    Ours,
    /// At least one table as the original's `chat.sql` makes it.
    Original,
    /// Neither: why, in words.
    Foreign(String),
}

/// The kind of a column, as far as telling schemas apart needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Int,
    Text,
    Enum,
    Time,
    Bytes,
}

impl Kind {
    fn of(data_type: &str) -> Option<Kind> {
        Some(match data_type {
            "int" | "bigint" | "mediumint" | "smallint" | "tinyint" => Kind::Int,
            "varchar" | "char" | "text" | "tinytext" | "mediumtext" | "longtext" => Kind::Text,
            "enum" => Kind::Enum,
            "datetime" | "timestamp" => Kind::Time,
            "binary" | "varbinary" => Kind::Bytes,
            _ => return None,
        })
    }
}

use Kind::{Bytes, Enum, Int, Text, Time};

/// A table ChatServer knows: its columns in our schema, and in the
/// original's (`None` for tables the original did not have).
struct Known {
    name: &'static str,
    ours: &'static [(&'static str, Kind)],
    original: Option<&'static [(&'static str, Kind)]>,
}

const USER: &[(&str, Kind)] = &[("id", Int), ("name", Text), ("password", Text), ("state", Enum)];
const FRIEND: &[(&str, Kind)] = &[("userid", Int), ("friendid", Int)];
const ALLGROUP: &[(&str, Kind)] = &[("id", Int), ("groupname", Text), ("groupdesc", Text)];
const GROUPUSER: &[(&str, Kind)] = &[("groupid", Int), ("userid", Int), ("grouprole", Enum)];

const KNOWN: &[Known] = &[
    Known { name: "user", ours: USER, original: Some(USER) },
    Known { name: "friend", ours: FRIEND, original: Some(FRIEND) },
    Known { name: "allgroup", ours: ALLGROUP, original: Some(ALLGROUP) },
    Known { name: "groupuser", ours: GROUPUSER, original: Some(GROUPUSER) },
    Known {
        name: "offlinemessage",
        ours: &[("id", Int), ("userid", Int), ("message", Text)],
        original: Some(&[("userid", Int), ("message", Text)]),
    },
    Known { name: "server", ours: &[("id", Text), ("heartbeat", Time)], original: None },
    Known { name: "online", ours: &[("userid", Int), ("server", Text)], original: None },
    Known { name: "token", ours: &[("userid", Int), ("hash", Bytes), ("expires", Time)], original: None },
];

/// Our `user.password` holds hashes of up to 255 characters; the original's
/// holds plaintext in VARCHAR(50).
const OUR_PASSWORD_LENGTH: u64 = 255;

/// One column as information_schema describes it.
struct Column {
    name: String,
    data_type: String,
    max_length: Option<u64>,
}

/// Looks at the tables of `database` and says whose they are.
pub(super) fn inspect(conn: &mut Conn, database: &str) -> Result<Found, DbError> {
    let tables: Vec<String> = conn.exec(
        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME <> 'schema_version' \
         ORDER BY TABLE_NAME",
        (database,),
    )?;
    let rows: Vec<(String, String, String, Option<u64>)> = conn.exec(
        "SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE, CHARACTER_MAXIMUM_LENGTH FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, ORDINAL_POSITION",
        (database,),
    )?;
    let mut columns: BTreeMap<String, Vec<Column>> = BTreeMap::new();
    for (table, name, data_type, max_length) in rows {
        columns.entry(table).or_default().push(Column { name, data_type: data_type.to_ascii_lowercase(), max_length });
    }
    Ok(classify(&tables, &columns))
}

/// The decision, on what [`inspect`] read.
fn classify(tables: &[String], columns: &BTreeMap<String, Vec<Column>>) -> Found {
    if tables.is_empty() {
        return Found::Empty;
    }
    let mut any_known = false;
    let mut original = false;
    for known in KNOWN {
        if !tables.iter().any(|t| t == known.name) {
            continue;
        }
        any_known = true;
        let have = columns.get(known.name).map_or(&[][..], Vec::as_slice);
        let shape = shape(have);
        if shape == sorted(known.ours) {
            original |= known.name == "user" && short_password(have);
        } else if known.original.is_some_and(|o| shape == sorted(o)) {
            original = true;
        } else {
            let names: Vec<&str> = have.iter().map(|c| c.name.as_str()).collect();
            let wanted: Vec<&str> = known.ours.iter().map(|(n, _)| *n).collect();
            return Found::Foreign(format!(
                "its table `{}` has the columns ({}), where ChatServer and the original C++ ChatServer have ({})",
                known.name,
                names.join(", "),
                wanted.join(", ")
            ));
        }
    }
    if !any_known {
        let shown: Vec<&str> = tables.iter().take(5).map(String::as_str).collect();
        let more = if tables.len() > shown.len() { ", ..." } else { "" };
        return Found::Foreign(format!("it holds other tables ({}{more}) and none of ChatServer's", shown.join(", ")));
    }
    if original { Found::Original } else { Found::Ours }
}

/// Column names and kinds, sorted; a type ChatServer never uses is its own
/// kind-less entry, so it matches nothing.
fn shape(columns: &[Column]) -> Vec<(String, Option<Kind>)> {
    let mut shape: Vec<_> = columns.iter().map(|c| (c.name.to_ascii_lowercase(), Kind::of(&c.data_type))).collect();
    shape.sort();
    shape
}

fn sorted(columns: &[(&str, Kind)]) -> Vec<(String, Option<Kind>)> {
    let mut shape: Vec<_> = columns.iter().map(|&(n, k)| (n.to_owned(), Some(k))).collect();
    shape.sort();
    shape
}

/// Whether `user.password` is too short for a hash: the original's plaintext.
fn short_password(user: &[Column]) -> bool {
    user.iter().any(|c| c.name == "password" && c.max_length.is_some_and(|n| n < OUR_PASSWORD_LENGTH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(name: &str, data_type: &str, max_length: Option<u64>) -> Column {
        Column { name: name.into(), data_type: data_type.into(), max_length }
    }

    fn found(tables: &[(&str, Vec<Column>)]) -> Found {
        let names: Vec<String> = tables.iter().map(|(t, _)| t.to_string()).collect();
        let mut columns = BTreeMap::new();
        for (t, c) in tables {
            columns.insert(t.to_string(), c.iter().map(|c| col(&c.name, &c.data_type, c.max_length)).collect());
        }
        classify(&names, &columns)
    }

    fn user(password_length: u64) -> Vec<Column> {
        vec![
            col("id", "int", None),
            col("name", "varchar", Some(50)),
            col("password", "varchar", Some(password_length)),
            col("state", "enum", Some(7)),
        ]
    }

    #[test]
    fn tells_the_schemas_apart() {
        assert_eq!(found(&[]), Found::Empty);
        assert_eq!(found(&[("user", user(255))]), Found::Ours);
        assert_eq!(found(&[("user", user(50))]), Found::Original);
        let original_messages = vec![col("userid", "int", None), col("message", "varchar", Some(500))];
        assert_eq!(found(&[("user", user(255)), ("offlinemessage", original_messages)]), Found::Original);
        let ours_messages =
            vec![col("id", "bigint", None), col("userid", "int", None), col("message", "mediumtext", None)];
        assert_eq!(found(&[("user", user(255)), ("offlinemessage", ours_messages), ("extra", vec![])]), Found::Ours);
    }

    #[test]
    fn refuses_what_is_neither() {
        let Found::Foreign(why) = found(&[("wp_posts", vec![col("ID", "bigint", None)])]) else { panic!() };
        assert!(why.contains("wp_posts"), "{why}");
        let odd_user = vec![col("uid", "int", None), col("login", "varchar", Some(20))];
        let Found::Foreign(why) = found(&[("user", odd_user)]) else { panic!() };
        assert!(why.contains("`user`") && why.contains("uid, login"), "{why}");
        let mut typed = user(50);
        typed[0] = col("id", "blob", None);
        assert!(matches!(found(&[("user", typed)]), Found::Foreign(_)));
    }
}
