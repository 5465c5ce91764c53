//! Per-connection state, owned by the connection's loop.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::net::ConnId;

use super::limits::{Bucket, Limits};
use super::message::Delivery;
use super::request::Request;

/// A logged-in user as the service knows them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub id: i32,
    /// Shared, since every message the user sends carries it.
    pub name: Arc<str>,
}

/// One connection's session.
pub struct Session {
    /// The connection, as other threads address it.
    pub conn: ConnId,
    /// Who is logged in here; identity comes from this, never from input.
    pub user: Option<User>,
    /// A job of this connection is running; later requests wait so that
    /// they are carried out in the order they were sent.
    pub busy: bool,
    /// Requests waiting for the running job, with their frame sizes.
    pub queued: VecDeque<(Request, usize)>,
    /// Sum of the sizes in `queued`, for its byte bound.
    pub queued_bytes: usize,
    /// The id a running LOGIN job is logging in, if any.
    pub logging_in: Option<i32>,
    /// Deliveries for `logging_in` that arrived before its LOGIN_ACK; sent
    /// right after it, so nothing overtakes the stored messages.
    pub early: Vec<Delivery>,
    /// Stored messages `(user, up to id)` carried by LOGIN_ACKs not yet
    /// written out whole, in the order sent; each deleted once its ACK is.
    pub pending_delete: VecDeque<(i32, i64)>,
    /// Flood control for what this connection sends.
    pub bucket: Bucket,
    /// Failed logins on this connection; too many close it.
    pub failed_logins: u32,
}

impl Session {
    pub fn new(conn: ConnId, limits: &Limits) -> Session {
        Session {
            conn,
            user: None,
            busy: false,
            queued: VecDeque::new(),
            queued_bytes: 0,
            logging_in: None,
            early: Vec::new(),
            pending_delete: VecDeque::new(),
            bucket: Bucket::new(limits),
            failed_logins: 0,
        }
    }
}

/// What a connection that closed while a job of its ran still owes: its
/// waiting requests, carried out in order once that job is done.
#[derive(Default)]
pub struct Leftover {
    /// The user of the closed connection, if logged in.
    pub user: Option<User>,
    /// Requests it sent that had not run yet.
    pub queued: VecDeque<Request>,
}
