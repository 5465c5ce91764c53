//! One handler per request, each a plain function from the caller and the
//! request to the replies for the caller (deliveries to others go through
//! the router as part of the work).

use std::sync::Arc;

mod add_friend;
mod add_group;
mod create_group;
mod group_chat;
mod login;
mod logout;
mod one_chat;
mod register;

pub use group_chat::try_live as group_chat_live;
pub use login::Resuming;
pub use logout::{LeaveQueue, Leaver, Left};
pub use one_chat::try_live as one_chat_live;

use super::context::Ctx;
use super::error::ServiceError;
use super::protocol::{self, Errno, msgid};
use super::request::Request;
use super::session::User;
use crate::log::Every;
use crate::net::{ConnId, Writer};

/// Failed requests log one line per period: while MySQL is down every
/// request fails, and the outage itself is logged by the heartbeat.
static FAILED: Every = Every::new(std::time::Duration::from_secs(10));

/// Who a request comes from.
#[derive(Clone, Debug)]
pub struct Caller {
    /// The connection it arrived on.
    pub conn: ConnId,
    /// That connection's output, which a login hands to the registry.
    pub writer: Writer,
    /// The user logged in there, if any.
    pub user: Option<User>,
}

/// A change of who is logged in on the caller's connection.
#[derive(Debug)]
pub enum SessionChange {
    /// `user` logged in; the LOGIN_ACK (the first reply) carries stored
    /// messages up to `offline_upto`, deleted once it is written out. The
    /// stored messages it had no room for follow it as frames of their
    /// own, `(id, frame)` in order, each deleted once written.
    LoggedIn {
        user: User,
        offline_upto: Option<i64>,
        more_stored: Vec<(i64, String)>,
    },
    LoggedOut,
    /// A login was refused for a wrong id or password.
    LoginFailed,
}

/// What a handler hands back to the caller's connection.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Frames for the caller, in order.
    pub replies: Vec<String>,
    /// Set when the request logged someone in or out.
    pub change: Option<SessionChange>,
}

impl Outcome {
    pub fn reply(frame: String) -> Outcome {
        Outcome { replies: vec![frame], change: None }
    }

    pub fn nothing() -> Outcome {
        Outcome::default()
    }
}

/// Carries out `request` for `caller`; a storage failure becomes errno 500
/// in the request's own reply form.
pub fn apply(ctx: &Arc<Ctx>, caller: &Caller, request: Request<'_>) -> Outcome {
    let form = ReplyForm::of(&request);
    let result = match (&caller.user, request) {
        (_, Request::Ping) => Ok(Outcome::reply(protocol::pong())),
        (_, Request::Login { id, secret }) => login::apply(ctx, caller, id, &secret),
        (_, Request::Register { name, password }) => register::apply(ctx, &name, &password),
        (None, _) => Ok(Outcome::reply(protocol::error(Errno::NotLoggedIn))),
        (Some(me), Request::Logout) => logout::apply(ctx, me, caller.conn),
        (Some(me), Request::OneChat { toid, msg }) => one_chat::apply(ctx, me, toid, &msg),
        (Some(me), Request::AddFriend { friendid }) => add_friend::apply(ctx, me, friendid),
        (Some(me), Request::CreateGroup { name, desc }) => create_group::apply(ctx, me, &name, &desc),
        (Some(me), Request::AddGroup { groupid }) => add_group::apply(ctx, me, groupid),
        (Some(me), Request::GroupChat { groupid, msg }) => group_chat::apply(ctx, me, groupid, &msg),
    };
    result.unwrap_or_else(|e| match e {
        ServiceError::Busy => Outcome::reply(form.refusal(Errno::Busy)),
        e => {
            if let Some(skipped) = FAILED.ready() {
                crate::warn!("a request failed: {e}{}", crate::log::also(skipped));
            }
            Outcome::reply(form.refusal(Errno::Storage))
        }
    })
}

/// `errno` (500, 501: the request was not carried out) in the form the
/// client waits for.
pub fn refusal(request: &Request<'_>, errno: Errno) -> String {
    ReplyForm::of(request).refusal(errno)
}

/// How a request is answered: with its ACK (this msgid), or with an ERROR.
/// Taken before the request is carried out, the reply built only when
/// needed (each one built counts as an error sent, in the stats line).
#[derive(Clone, Copy, Debug)]
pub struct ReplyForm(Option<i64>);

impl ReplyForm {
    pub fn of(request: &Request<'_>) -> ReplyForm {
        ReplyForm(match request {
            Request::Login { .. } => Some(msgid::LOGIN_ACK),
            Request::Register { .. } => Some(msgid::REG_ACK),
            Request::AddFriend { .. } => Some(msgid::ADD_FRIEND_ACK),
            Request::CreateGroup { .. } => Some(msgid::CREATE_GROUP_ACK),
            Request::AddGroup { .. } => Some(msgid::ADD_GROUP_ACK),
            _ => None,
        })
    }

    /// `errno` (500, 501: the request was not carried out) in this form.
    pub fn refusal(self, errno: Errno) -> String {
        match self.0 {
            Some(ack) => protocol::ack_error(ack, errno, errno.text()),
            None => protocol::error(errno),
        }
    }
}

/// Counts characters (not bytes), as the VARCHAR columns do.
fn within(s: &str, min: usize, max: usize) -> bool {
    let n = s.chars().count();
    (min..=max).contains(&n)
}
