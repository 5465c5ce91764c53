//! Why a database cannot be used; each says what to do about it.

use std::fmt;

use super::upgrade::Failed;
use crate::db::DbError;

/// Everything [`super::prepare`] can fail with.
#[derive(Debug)]
pub enum SchemaError {
    /// MySQL could not be reached, refused the login, or failed a statement.
    Db(DbError),
    /// The database does not exist and this user may not create it.
    NoDatabase { database: String, user: String, source: DbError },
    /// The tables are neither ChatServer's nor the original's.
    Foreign { database: String, why: String },
    /// A newer ChatServer made this database.
    Newer { database: String, found: i32, known: i32 },
    /// An upgrade step failed; what was done stays done.
    Upgrade { database: String, failed: Failed },
}

impl From<DbError> for SchemaError {
    fn from(err: DbError) -> Self {
        SchemaError::Db(err)
    }
}

impl From<mysql::Error> for SchemaError {
    fn from(err: mysql::Error) -> Self {
        SchemaError::Db(err.into())
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SchemaError::Db(err) => write!(f, "{err}"),
            SchemaError::NoDatabase { database, user, source } => write!(
                f,
                "database `{database}` does not exist and MySQL user '{user}' may not create it ({source}); \
                 create it as an administrator (CREATE DATABASE `{database}`; GRANT ALL ON `{database}`.* TO \
                 '{user}'), or set CHAT_MYSQL_URL to a database that user may use"
            ),
            SchemaError::Foreign { database, why } => write!(
                f,
                "database `{database}` is neither ChatServer's nor the original C++ ChatServer's: {why}; \
                 nothing was changed. Set CHAT_MYSQL_URL to another database (it is created if missing)"
            ),
            SchemaError::Newer { database, found, known } => write!(
                f,
                "database `{database}` has schema version {found}, made by a newer ChatServer (this one knows \
                 up to {known}); nothing was changed. Run the newer ChatServer"
            ),
            SchemaError::Upgrade { database, failed } => write!(
                f,
                "cannot upgrade database `{database}` (step: {}): {}; no row was lost and what was done stays \
                 done: fix that and start again, the upgrade goes on from where it stopped",
                failed.step, failed.source
            ),
        }
    }
}

impl std::error::Error for SchemaError {}
