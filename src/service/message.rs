//! What travels between threads to a connection's loop.

use std::sync::Arc;

use crate::net::ConnId;

use super::cmd::Outcome;

/// A frame for one user, live if they are online, else stored if `keep`.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The receiving user.
    pub to: i32,
    /// The frame, serialized once however many receive it.
    pub payload: Arc<str>,
    /// Store it offline when the user is not online (chat), or drop it
    /// (presence).
    pub keep: bool,
}

/// A message for a connection's loop.
pub enum Message {
    /// Something for the user logged in on the connection.
    Deliver(Delivery),
    /// A job of the connection finished.
    Done { conn: ConnId, outcome: Outcome },
}
