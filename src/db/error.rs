//! The one error type of the storage layer.

use std::fmt;

use mysql::{DriverError, Error as MyError};

/// MySQL error code for a duplicate key (a UNIQUE or PRIMARY KEY clash).
const ER_DUP_ENTRY: u16 = 1062;
/// InnoDB chose this transaction as a deadlock victim; it may be retried.
const ER_LOCK_DEADLOCK: u16 = 1213;

/// Everything the storage layer can fail with.
#[derive(Debug)]
pub enum DbError {
    /// MySQL cannot be reached or the connection was lost (connect failed,
    /// pool checkout timed out, server went away): the request was not
    /// carried out. Upstream answers errno 500.
    Unavailable(String),
    /// MySQL answered but refused the statement (constraint, syntax, ...).
    Query(MyError),
    /// The connection URL (or the database name in it) is unusable.
    BadUrl(String),
    /// MySQL refused the login or the database to this user; the text
    /// names the user and what to do.
    Denied(String),
}

impl DbError {
    /// True when the connection is gone or could not be had: callers answer
    /// errno 500 and the pooled connection must be discarded.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_) | DbError::Denied(_))
    }

    /// True when InnoDB rolled the transaction back to break a deadlock:
    /// running it again is the documented remedy.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, DbError::Query(MyError::MySqlError(e)) if e.code == ER_LOCK_DEADLOCK)
    }

    /// True for a duplicate-key error: a name taken, a friend or member added
    /// twice. Models turn it into `None` / `false`.
    pub fn is_duplicate_key(&self) -> bool {
        matches!(self, DbError::Query(MyError::MySqlError(e)) if e.code == ER_DUP_ENTRY)
    }
}

impl From<MyError> for DbError {
    fn from(err: MyError) -> Self {
        if connection_lost(&err) { DbError::Unavailable(err.to_string()) } else { DbError::Query(err) }
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbError::Unavailable(why) => write!(f, "MySQL unavailable: {why}"),
            DbError::Query(err) => write!(f, "MySQL query failed: {err}"),
            DbError::BadUrl(why) => write!(f, "CHAT_MYSQL_URL is malformed: {why}"),
            DbError::Denied(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbError::Query(err) => Some(err),
            _ => None,
        }
    }
}

/// Whether `err` means the connection is unusable (as opposed to a statement
/// the server rejected on a healthy connection).
fn connection_lost(err: &MyError) -> bool {
    match err {
        MyError::IoError(_) | MyError::CodecError(_) => true,
        MyError::DriverError(e) => matches!(
            e,
            DriverError::ConnectTimeout
                | DriverError::CouldNotConnect(_)
                | DriverError::UnsupportedProtocol(_)
                | DriverError::PacketOutOfSync
                | DriverError::Protocol41NotSet
                | DriverError::UnexpectedPacket
                | DriverError::SetupError
                | DriverError::TlsNotSupported
                | DriverError::CouldNotParseVersion
                | DriverError::Timeout
                | DriverError::UnknownAuthPlugin(_)
                | DriverError::OldMysqlPasswordDisabled
                | DriverError::CleartextPluginDisabled
                | DriverError::InvalidParsecSalt
        ),
        MyError::MySqlError(e) => server_gone(e.code),
        _ => false,
    }
}

/// Server error codes that mean this connection (or the whole server) is
/// going away, or cannot take writes now, rather than "your statement is
/// wrong".
fn server_gone(code: u16) -> bool {
    matches!(
        code,
        // too many connections / per-user connection limit
        1040 | 1203
        // server shutting down or forcing connections closed
        | 1053 | 1077..=1080
        // aborted connection, network read/write errors
        | 1152 | 1154..=1161 | 1184
        // read-only server (--read-only, failover in progress)
        | 1290 | 1836
        // MariaDB: connection was killed
        | 1927
        // MySQL 8: idle connection closed by the server
        | 4031
    )
}
