//! Errors of the service layer.

use std::fmt;

use crate::db::DbError;

#[derive(Debug)]
pub enum ServiceError {
    /// MySQL failed or could not be reached: answered with errno 500.
    Db(DbError),
    /// The system's random source failed while salting a password.
    Hash,
    /// The server is shutting down and no longer stores messages.
    Stopping,
    /// Too much work waits (a lane past its high-water mark): answered
    /// with errno 501, not carried out.
    Busy,
}

impl fmt::Display for ServiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServiceError::Db(e) => write!(f, "{e}"),
            ServiceError::Hash => write!(f, "password hashing failed"),
            ServiceError::Stopping => write!(f, "the server is shutting down"),
            ServiceError::Busy => write!(f, "too much work waiting"),
        }
    }
}

impl std::error::Error for ServiceError {}

impl From<DbError> for ServiceError {
    fn from(e: DbError) -> Self {
        ServiceError::Db(e)
    }
}
