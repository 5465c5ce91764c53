//! MySQL access: one error type, connection options, a hand-written
//! fixed-size connection pool and the schema bootstrap.
//!
//! Nothing here knows about users or messages; that is [`crate::model`].

mod connect;
mod error;
mod pool;
pub mod schema;

pub use error::DbError;
pub use pool::{Pool, PooledConn};
