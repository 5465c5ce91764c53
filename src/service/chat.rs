//! The chat service as the reactor sees it: frames in, frames out.
//!
//! Cheap requests run right on the event loop (PING, a chat to a user online
//! here). Anything that needs MySQL or a password hash runs on a job thread;
//! while it does, the connection's later requests wait in its session, so
//! each connection's requests are carried out in the order they were sent.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use super::cmd::{self, Caller, LeaveQueue, Leaver, Outcome, SessionChange};
use super::context::Ctx;
use super::error::ServiceError;
use super::heartbeat;
use super::message::{Delivery, Message};
use super::protocol::{self, Errno, msgid};
use super::request::Request;
use super::router;
use super::session::{Leftover, Session, User};
use crate::bus::Tag;
use crate::model::offline_message;
use crate::net::{CloseReason, ConnId, Handler, Outbox, Pending};

/// Requests one connection may have waiting behind a running job, and their
/// bytes, before the connection is no longer read (the client then waits in
/// TCP) ...
const PAUSE_QUEUED: usize = 256;
const PAUSE_QUEUED_BYTES: usize = 1 << 20;
/// ... and the hard bounds, reached only by frames read in the same batch,
/// past which they are refused with errno 104.
const MAX_QUEUED: usize = 4096;
const MAX_QUEUED_BYTES: usize = 4 << 20;

/// The service; cheap to share between the loops.
pub struct ChatService {
    /// Everything the handlers work with.
    ctx: Arc<Ctx>,
}

impl ChatService {
    pub fn new(ctx: Arc<Ctx>) -> ChatService {
        ChatService { ctx }
    }

    /// Serves one request now, or starts the job that will.
    fn handle(&self, session: &mut Session, request: Request, out: &mut Outbox<'_>) {
        let ctx = &self.ctx;
        match (&session.user, &request) {
            (None, r) if !r.allowed_before_login() => {
                out.send(protocol::error(Errno::NotLoggedIn).as_bytes());
                return;
            }
            (_, Request::Ping) => {
                out.send(protocol::pong().as_bytes());
                return;
            }
            (Some(me), Request::OneChat { toid, msg }) if cmd::one_chat_live(ctx, me, *toid, msg) => return,
            (Some(_), Request::Login { .. }) => {}
            (None, Request::Login { id, .. }) => session.logging_in = Some(*id),
            _ => {}
        }
        session.busy = true;
        let caller = Caller { conn: session.conn, user: session.user.clone() };
        let job_ctx = Arc::clone(ctx);
        ctx.jobs.spawn(move || {
            // Done must come back whatever happens, or the session stays busy.
            let storage_failure = cmd::storage_failure_reply(&request);
            let outcome = catch_unwind(AssertUnwindSafe(|| cmd::apply(&job_ctx, &caller, request)))
                .unwrap_or_else(|_| Outcome::reply(storage_failure));
            job_ctx.remote.send(caller.conn, Message::Done { conn: caller.conn, outcome });
        });
    }

    /// Applies a finished job to its session and runs what waited for it.
    fn finish(&self, session: &mut Session, outcome: Outcome, out: &mut Outbox<'_>) {
        session.busy = false;
        session.logging_in = None;
        let early = std::mem::take(&mut session.early);
        let mut replies = outcome.replies.into_iter();
        match outcome.change {
            Some(SessionChange::LoggedIn { user, offline_upto }) => {
                if let Some(ack) = replies.next() {
                    match offline_upto {
                        Some(upto) => {
                            session.pending_delete.push_back((user.id, upto));
                            out.send_marked(ack.as_bytes(), 0);
                        }
                        None => out.send(ack.as_bytes()),
                    }
                }
                for delivery in early {
                    if delivery.to == user.id {
                        out.send(delivery.payload.as_bytes());
                        written_out(delivery.tag);
                    } else {
                        router::reroute(&self.ctx, delivery);
                    }
                }
                session.user = Some(user);
            }
            change => {
                // The login did not happen (or this was no login): what came
                // early for that user goes where they really are.
                early.into_iter().for_each(|d| router::reroute(&self.ctx, d));
                match change {
                    Some(SessionChange::LoggedOut) => session.user = None,
                    Some(SessionChange::LoginFailed) => session.failed_logins += 1,
                    _ => {}
                }
            }
        }
        for reply in replies {
            out.send(reply.as_bytes());
        }
        if session.failed_logins >= self.ctx.limits.max_login_failures {
            out.close();
            return;
        }
        while !session.busy {
            let Some((request, size)) = session.queued.pop_front() else { break };
            session.queued_bytes -= size;
            self.handle(session, request, out);
        }
        if session.queued.len() < PAUSE_QUEUED / 2 && session.queued_bytes < PAUSE_QUEUED_BYTES / 2 {
            out.resume_reading();
        }
    }

    /// Takes the user of a closed connection offline, on their lane (the
    /// caller marked them leaving): the messages the connection never wrote
    /// out are stored first, ahead of anything sent later.
    fn go_offline_later(&self, me: User, unsent: Vec<Delivery>) {
        LeaveQueue::push(&self.ctx, Leaver { user: me, unsent });
    }

    /// Carries out, in order, the requests a closed connection sent that had
    /// not run yet (its messages to others still go out); logging in or out
    /// on a closed connection is moot.
    fn run_leftover(&self, conn: ConnId, user: Option<User>, queued: VecDeque<Request>) {
        if queued.is_empty() {
            return;
        }
        let ctx = Arc::clone(&self.ctx);
        self.ctx.jobs.spawn(move || {
            let caller = Caller { conn, user };
            for request in queued {
                if !matches!(request, Request::Login { .. } | Request::Logout) {
                    cmd::apply(&ctx, &caller, request);
                }
            }
        });
    }

    /// Marks exactly this server's users offline and removes the server
    /// from the cluster; for shutdown, after the loops and jobs stopped.
    pub fn mark_all_offline(&self) -> Result<usize, ServiceError> {
        let users = heartbeat::release_server(&self.ctx, &self.ctx.db, &self.ctx.server_id)?;
        self.ctx.bus.announce(false, &users);
        Ok(users.len())
    }
}

impl Handler for ChatService {
    type Session = Session;
    type Message = Message;

    fn open(&self, id: ConnId) -> Session {
        Session::new(id, &self.ctx.limits)
    }

    fn frame(&self, session: &mut Session, frame: &[u8], out: &mut Outbox<'_>) {
        if !session.bucket.take(&self.ctx.limits, Instant::now()) {
            out.send(protocol::error(Errno::RateLimited).as_bytes());
            return;
        }
        let request = match Request::parse(frame) {
            Ok(request) => request,
            Err(errno) => {
                out.send(protocol::error(errno).as_bytes());
                return;
            }
        };
        if !session.busy {
            self.handle(session, request, out);
        } else if session.queued.len() < MAX_QUEUED && session.queued_bytes + frame.len() <= MAX_QUEUED_BYTES {
            session.queued_bytes += frame.len();
            session.queued.push_back((request, frame.len()));
            if session.queued.len() >= PAUSE_QUEUED || session.queued_bytes >= PAUSE_QUEUED_BYTES {
                out.pause_reading();
            }
        } else {
            out.send(protocol::error(Errno::RateLimited).as_bytes());
        }
    }

    fn turn_end(&self) {
        let done = WRITTEN_OUT.with(|w| std::mem::take(&mut *w.borrow_mut()));
        self.ctx.bus.complete(&done);
        // One write for what the turn sent to other servers, and the
        // acknowledgements of what it wrote out.
        self.ctx.bus.flush();
    }

    fn too_large(&self, _session: &mut Session, out: &mut Outbox<'_>) {
        out.send(protocol::error(Errno::TooLarge).as_bytes());
    }

    fn message(&self, session: &mut Session, msg: Message, out: &mut Outbox<'_>) {
        match msg {
            Message::Deliver(delivery) => {
                let to = Some(delivery.to);
                if session.user.as_ref().map(|u| u.id) == to {
                    out.send(delivery.payload.as_bytes());
                    written_out(delivery.tag);
                } else if session.logging_in == to {
                    session.early.push(delivery);
                } else {
                    router::reroute(&self.ctx, delivery);
                }
            }
            Message::Done { outcome, .. } => self.finish(session, outcome, out),
        }
    }

    fn undeliverable(&self, msg: Message) {
        match msg {
            Message::Deliver(delivery) => router::reroute(&self.ctx, delivery),
            Message::Done { conn, outcome } => {
                // The connection closed while this job ran.
                let leftover = self.ctx.leftovers.lock().remove(&conn).unwrap_or_default();
                let user = match outcome.change {
                    Some(SessionChange::LoggedIn { user, .. }) => {
                        self.ctx
                            .registry
                            .mark_leaving(user.id, conn, || self.go_offline_later(user.clone(), Vec::new()));
                        Some(user)
                    }
                    Some(SessionChange::LoggedOut) => None,
                    Some(SessionChange::LoginFailed) | None => leftover.user,
                };
                self.run_leftover(conn, user, leftover.queued);
            }
        }
    }

    fn written(&self, session: &mut Session, _mark: u64, _out: &mut Outbox<'_>) {
        let Some((user, upto)) = session.pending_delete.pop_front() else { return };
        let ctx = Arc::clone(&self.ctx);
        self.ctx.jobs.spawn(move || {
            if let Err(e) = ctx.db.run(|c| offline_message::delete_up_to(c, user, upto)) {
                // They stay stored and come again at the next login.
                eprintln!("stored messages of user {user} not deleted: {e}");
            }
        });
    }

    fn closed(&self, session: Session, reason: CloseReason, unsent: &[u8], pending: Pending<'_, Message>) {
        let conn = session.conn;
        let mut undelivered = match &session.user {
            Some(me) => undelivered_chats(me.id, unsent),
            None => Vec::new(),
        };
        undelivered.extend(session.early);
        let mut pending = Some(pending);
        let mut finished = Vec::new();
        if reason == CloseReason::Shutdown {
            if let Some(me) = &session.user {
                self.ctx.registry.remove(me.id, conn);
            }
            split_pending(pending.take(), &mut undelivered, &mut finished);
            // The job threads are stopping: store what the user missed now.
            let rows: Vec<(i32, &str)> = undelivered.iter().map(|d| (d.to, &*d.payload)).collect();
            if !rows.is_empty()
                && let Err(e) = self.ctx.db.run(|c| offline_message::insert_many(c, &rows))
            {
                eprintln!("{} unsent messages lost at shutdown: {e}", rows.len());
            }
            return;
        }
        // Marked leaving, nothing new is queued for the connection, so what
        // is queued can be taken; and the offline step is put on the user's
        // lane under the mark, ahead of messages others store on seeing it.
        let leaving = session.user.as_ref().is_some_and(|me| {
            self.ctx.registry.mark_leaving(me.id, conn, || {
                split_pending(pending.take(), &mut undelivered, &mut finished);
                self.go_offline_later(me.clone(), std::mem::take(&mut undelivered));
            })
        });
        if !leaving {
            split_pending(pending.take(), &mut undelivered, &mut finished);
            undelivered.into_iter().for_each(|d| router::reroute(&self.ctx, d));
        }
        let queued = session.queued.into_iter().map(|(request, _)| request).collect();
        if session.busy {
            self.ctx.leftovers.lock().insert(conn, Leftover { user: session.user, queued });
        } else {
            self.run_leftover(conn, session.user, queued);
        }
        // Job results that were queued for the connection: as if they had
        // arrived after the close.
        for done in finished {
            self.undeliverable(done);
        }
    }
}

thread_local! {
    /// Bus messages this loop put into their users' output during this
    /// turn; reported to the bus together once the turn's writes are done.
    static WRITTEN_OUT: std::cell::RefCell<Vec<Tag>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Notes a bus message as in its user's output (see [`WRITTEN_OUT`]).
fn written_out(tag: Option<Tag>) {
    if let Some(tag) = tag {
        WRITTEN_OUT.with(|w| w.borrow_mut().push(tag));
    }
}

/// Sorts the messages still queued for a closed connection: chat to keep,
/// job results to finish.
fn split_pending(pending: Option<Pending<'_, Message>>, undelivered: &mut Vec<Delivery>, finished: &mut Vec<Message>) {
    for msg in pending.map(Pending::take).unwrap_or_default() {
        match msg {
            Message::Deliver(delivery) if delivery.keep => undelivered.push(delivery),
            Message::Deliver(_) => {}
            done @ Message::Done { .. } => finished.push(done),
        }
    }
}

/// The chat messages for `user` among frames the peer never received.
fn undelivered_chats(user: i32, unsent: &[u8]) -> Vec<Delivery> {
    unsent
        .split(|&b| b == 0)
        .filter_map(|frame| {
            let value: serde_json::Value = serde_json::from_slice(frame).ok()?;
            let id = value.get("msgid")?.as_i64()?;
            let text = std::str::from_utf8(frame).ok()?;
            (id == msgid::ONE_CHAT || id == msgid::GROUP_CHAT).then(|| Delivery::chat(user, text.into()))
        })
        .collect()
}
