//! The database at start: created when missing, recognised, and brought
//! to the current schema version (README, "Schema versions").
//!
//! - No tables: the tables of `chat.sql`, version [`CURRENT`].
//! - A recorded version below [`CURRENT`]: the upgrades from there.
//! - No version but ChatServer's tables (made before versions were kept):
//!   the missing tables, and the version recorded.
//! - No version and the original C++ ChatServer's tables: version 0 is
//!   recorded first, then upgraded in place.
//! - Anything else, or a newer version: refused before anything changes.

mod detect;
mod error;
mod sql;
mod upgrade;
mod version;

use mysql::prelude::Queryable;
use mysql::{Conn, OptsBuilder};

use super::DbError;
use super::connect::{connect, options, target};
use detect::Found;
use version::Recorded;

pub use error::SchemaError;
pub use upgrade::{CURRENT, Failed};

/// What `user.password` starts with while it holds an original user's
/// plaintext password; a hash starts with `$`. The first login with it
/// replaces it with a hash.
pub const PLAINTEXT_MARK: &str = "plain:";

/// How long a start waits for another server preparing the same database.
const LOCK_WAIT_SECS: u32 = 300;

/// What [`prepare`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// A new database (or one without tables) got the schema.
    Created,
    /// It had the current schema already.
    Current,
    /// Upgraded from this version (0: the original C++ ChatServer's).
    Upgraded { from: i32 },
}

/// Makes sure the database named in `url` exists, with every table of the
/// current schema, keeping all data. Safe to run at every start, from
/// several servers at once (they take turns), and again after an
/// interruption.
pub fn prepare(url: &str) -> Result<Prepared, SchemaError> {
    let opts = options(url)?;
    let name = database_name(url)?;
    // The database may not exist yet, so connect to the server alone.
    let server = OptsBuilder::from_opts(opts.clone()).db_name(None::<String>);
    let mut conn = connect(&server.into())?;
    create_database(&mut conn, &name, opts.get_user().unwrap_or(""))?;
    conn.select_db(&name).map_err(DbError::from)?;
    let lock = lock_name(&name);
    let taken: Option<Option<i32>> = conn.exec_first("SELECT GET_LOCK(?, ?)", (&lock, LOCK_WAIT_SECS))?;
    if taken.flatten() != Some(1) {
        return Err(DbError::Unavailable(format!(
            "another ChatServer has been preparing database `{name}` at {} for {LOCK_WAIT_SECS} s",
            target(&opts)
        ))
        .into());
    }
    let result = bring_up_to_date(&mut conn, &name);
    // Closing the connection would release it as well.
    let _ = conn.exec_drop("DO RELEASE_LOCK(?)", (&lock,));
    result
}

fn bring_up_to_date(conn: &mut Conn, name: &str) -> Result<Prepared, SchemaError> {
    let upgrade = |conn: &mut Conn, from: i32| {
        upgrade::run(conn, name, from).map_err(|failed| SchemaError::Upgrade { database: name.to_owned(), failed })
    };
    match version::current(conn, name)? {
        Recorded::Version(found) if found > CURRENT => {
            Err(SchemaError::Newer { database: name.to_owned(), found, known: CURRENT })
        }
        Recorded::Version(CURRENT) => {
            // A table dropped by hand comes back empty.
            sql::apply(conn)?;
            Ok(Prepared::Current)
        }
        Recorded::Version(from) => upgrade(conn, from).map(|()| Prepared::Upgraded { from }),
        Recorded::NotOurs => Err(SchemaError::Foreign {
            database: name.to_owned(),
            why: "its table `schema_version` is another tool's".to_owned(),
        }),
        Recorded::Nothing => match detect::inspect(conn, name)? {
            Found::Empty => {
                sql::apply(conn)?;
                version::record(conn, CURRENT, "created by ChatServer")?;
                Ok(Prepared::Created)
            }
            Found::Ours => {
                sql::apply(conn)?;
                version::record(conn, CURRENT, "ChatServer's tables, found without a version")?;
                Ok(Prepared::Current)
            }
            Found::Original => {
                // Recorded before any change, so an interrupted upgrade is
                // never taken for ChatServer's own tables.
                version::record(conn, 0, "the original C++ ChatServer's tables, found at start")?;
                upgrade(conn, 0).map(|()| Prepared::Upgraded { from: 0 })
            }
            Found::Foreign(why) => Err(SchemaError::Foreign { database: name.to_owned(), why }),
        },
    }
}

/// A MySQL named lock per database (names are at most 64 characters).
fn lock_name(database: &str) -> String {
    format!("chatserver.schema.{database}").chars().take(64).collect()
}

/// The database name in `url`, checked to be `[A-Za-z0-9_]+`: it names the
/// database in SQL text and namespaces Redis keys, so nothing else may pass.
pub fn database_name(url: &str) -> Result<String, DbError> {
    let opts = options(url)?;
    let name = opts.get_db_name().unwrap_or("");
    if name.is_empty() {
        return Err(DbError::BadUrl("it names no database; expected e.g. mysql://root@127.0.0.1:3306/chat".to_owned()));
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(DbError::BadUrl(format!("database name {name:?} may contain only letters, digits and _")));
    }
    Ok(name.to_owned())
}

/// `CREATE DATABASE IF NOT EXISTS`; a user without that privilege can still
/// go on when the database is already there.
fn create_database(conn: &mut Conn, name: &str, user: &str) -> Result<(), SchemaError> {
    // An identifier cannot be a parameter; `name` passed `database_name`.
    let create = format!("CREATE DATABASE IF NOT EXISTS `{name}` DEFAULT CHARACTER SET utf8mb4");
    let Err(err) = conn.query_drop(create) else {
        return Ok(());
    };
    let exists: Option<u8> =
        conn.exec_first("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?", (name,))?;
    match exists {
        Some(_) => Ok(()),
        None => Err(SchemaError::NoDatabase { database: name.to_owned(), user: user.to_owned(), source: err.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_checked() {
        assert_eq!(database_name("mysql://root@127.0.0.1:3306/chat_1").ok(), Some("chat_1".to_owned()));
        for url in [
            "mysql://root@127.0.0.1:3306/",
            "mysql://root@127.0.0.1:3306",
            "mysql://root@127.0.0.1:3306/a-b",
            "mysql://root@127.0.0.1:3306/a%60b",
            "http://x/chat",
        ] {
            assert!(matches!(database_name(url), Err(DbError::BadUrl(_))), "{url}");
        }
    }

    #[test]
    fn lock_names_fit_mysql() {
        assert_eq!(lock_name("chat"), "chatserver.schema.chat");
        assert_eq!(lock_name(&"x".repeat(64)).len(), 64);
    }
}
