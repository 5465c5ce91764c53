//! Errors of the bus layer.

use std::fmt;

#[derive(Debug)]
pub enum BusError {
    /// `CHAT_REDIS_URL` is not a Redis URL.
    BadUrl(String),
    /// The subscriber thread could not start.
    Thread(std::io::Error),
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusError::BadUrl(why) => write!(f, "bad CHAT_REDIS_URL: {why}"),
            BusError::Thread(e) => write!(f, "cannot start the Redis subscriber: {e}"),
        }
    }
}

impl std::error::Error for BusError {}
