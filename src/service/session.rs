//! Per-connection state, owned by the connection's loop.
//!
//! The life of a session, one state at a time (`State`):
//!
//! ```text
//!              request that needs a job (MySQL, a hash)
//!     +------+ -------------------------------------> +------+
//!     | Idle |                                        | Busy |--+ later requests
//!     +------+ <------------------------------------- +------+<-+ wait in order
//!        |      its result (Done): replies go out,       |
//!        |      waiting requests run, maybe Busy again   | the connection closes
//!        |                                               v
//!        | the connection closes                   +----------+
//!        |                                         | Draining |  the reactor keeps
//!        |                                         +----------+  the slot, socket gone
//!        |                                               | its result (Done): a login it
//!        |                                               | made is undone, waiting
//!        v                                               v requests still run
//!     released: the reactor frees the slot  <------------+
//! ```
//!
//! A LOGIN job carries the id it logs in (`Job::login`): deliveries for that
//! user that arrive before the LOGIN_ACK wait there and go out right after
//! it, so nothing overtakes the stored messages. Who is logged in (`user`)
//! is kept beside the state: it changes only when a job's result says so.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::bus::Tag;
use crate::net::{ConnId, Writer};

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

/// What an output mark stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// A LOGIN_ACK with stored messages: delete them once it is out.
    LoginAck = 0,
    /// A message from the bus: acknowledge it once it is out.
    Tracked = 1,
    /// A stored message sent as a frame of its own after a LOGIN_ACK that
    /// was full: delete it once it is out.
    Stored = 2,
    /// A session ended (LOGOUT) here; the user's id is in the mark's high
    /// bits ([`Mark::session_end`]). Frames before it that never went out
    /// are that user's, whoever logs in on the connection next.
    SessionEnd = 3,
}

impl Mark {
    /// The mark that ends `user`'s session.
    pub fn session_end(user: i32) -> u64 {
        (u64::from(user as u32) << 8) | Mark::SessionEnd as u64
    }

    /// The user whose session `mark` ended, if it is such a mark.
    pub fn ended_session(mark: u64) -> Option<i32> {
        (mark & 0xff == Mark::SessionEnd as u64).then_some((mark >> 8) as u32 as i32)
    }
}

/// Stored messages written to the output, deleted once written out whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Handed {
    /// Whose store they are in.
    pub user: i32,
    /// Everything of `user`'s up to this id.
    pub upto: i64,
    /// One message in a frame of its own ([`Mark::Stored`]), not a
    /// LOGIN_ACK: a close counts these among the unsent frames.
    pub own_frame: bool,
}

/// What the session is doing; see the module's diagram.
pub enum State {
    /// No job runs: requests are served as they come.
    Idle,
    /// A job runs; the connection is open.
    Busy(Job),
    /// A job runs; the connection closed. Its result releases the slot.
    Draining(Job),
}

/// A running job and what waits for it.
#[derive(Default)]
pub struct Job {
    /// Requests that arrived meanwhile, with their frame sizes, in order.
    pub queued: VecDeque<(Request<'static>, usize)>,
    /// Sum of the sizes in `queued`, for its byte bound.
    pub queued_bytes: usize,
    /// Set when the job is a LOGIN.
    pub login: Option<Early>,
    /// The peer ended its input: close once this job and the requests that
    /// wait for it are answered.
    pub then_close: bool,
}

/// A LOGIN job's user, and deliveries for them that came before its ACK.
pub struct Early {
    pub id: i32,
    pub deliveries: Vec<Delivery>,
}

/// One connection's session.
pub struct Session {
    /// The connection, as other threads address it.
    pub conn: ConnId,
    /// Its output, through which other threads write chat to it directly;
    /// the registry keeps it with the connection of the user logged in.
    pub writer: Writer,
    /// Who is logged in here; identity comes from this, never from input.
    pub user: Option<User>,
    pub state: State,
    /// Stored messages carried by LOGIN_ACKs and the frames after them,
    /// not yet written out whole, in the order sent.
    pub pending_delete: VecDeque<Handed>,
    /// Stored messages sent in frames of their own, written out but not
    /// yet deleted (deleted a batch at a time): `(user, up to id, count)`.
    pub written_stored: Option<(i32, i64, u32)>,
    /// Bus messages written to the output, in order, each reported to the
    /// bus once the socket has taken it ([`Mark::Tracked`]); what is left
    /// at a close was never written and goes with the unsent frames.
    pub tracked: VecDeque<Tag>,
    /// Flood control for what this connection sends.
    pub bucket: Bucket,
    /// Failed logins on this connection; too many close it.
    pub failed_logins: u32,
}

impl Session {
    pub fn new(conn: ConnId, writer: Writer, limits: &Limits) -> Session {
        Session {
            conn,
            writer,
            user: None,
            state: State::Idle,
            pending_delete: VecDeque::new(),
            written_stored: None,
            tracked: VecDeque::new(),
            bucket: Bucket::new(limits),
            failed_logins: 0,
        }
    }

    /// Whether the connection has closed (the slot drains).
    pub fn is_draining(&self) -> bool {
        matches!(self.state, State::Draining(_))
    }

    /// The running job, open or draining.
    pub fn job(&mut self) -> Option<&mut Job> {
        match &mut self.state {
            State::Idle => None,
            State::Busy(job) | State::Draining(job) => Some(job),
        }
    }
}
