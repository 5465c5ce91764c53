//! What travels between threads to a connection's loop.

use std::sync::Arc;

use crate::bus::{Incoming, Outgoing, Tag};

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
    /// Servers it went through before this one; one that came over the bus
    /// is forwarded at most once more, so nothing circles.
    pub hops: u8,
    /// Set when it came over the bus: reported to the bus once it is in
    /// its user's output, stored or forwarded, so the sender can let go.
    pub tag: Option<Tag>,
    /// The loop whose thread allocated `payload`, which frees it (see
    /// `recycle`); None when another thread did.
    pub origin: Option<usize>,
}

impl Delivery {
    /// A chat message, stored if its user is offline.
    pub fn chat(to: i32, payload: Arc<str>) -> Delivery {
        Delivery { to, payload, keep: true, hops: 0, tag: None, origin: crate::net::current_worker() }
    }

    /// A presence notice, dropped if its user is offline.
    pub fn notice(to: i32, payload: Arc<str>) -> Delivery {
        Delivery { to, payload, keep: false, hops: 0, tag: None, origin: crate::net::current_worker() }
    }

    /// As it leaves for another server.
    pub fn outgoing(&self) -> Outgoing {
        Outgoing { to: self.to, frame: Arc::clone(&self.payload), keep: self.keep, hops: self.hops }
    }
}

impl From<Incoming> for Delivery {
    fn from(m: Incoming) -> Delivery {
        Delivery { to: m.to, payload: m.frame, keep: m.keep, hops: m.hops, tag: Some(m.tag), origin: None }
    }
}

impl From<Outgoing> for Delivery {
    /// One the bus gave back: it never reached another server's user.
    fn from(m: Outgoing) -> Delivery {
        Delivery { to: m.to, payload: m.frame, keep: m.keep, hops: m.hops, tag: None, origin: None }
    }
}

/// A message for a connection's loop.
pub enum Message {
    /// Something for the user logged in on the connection.
    Deliver(Delivery),
    /// A job of the connection finished.
    Done(Outcome),
    /// A login elsewhere replaced this connection's session: ERROR 105,
    /// then close.
    Replaced,
}
