//! The chat service as the reactor sees it: frames in, frames out.
//!
//! Cheap requests run right on the event loop (PING, a chat to a user online
//! here). Anything that needs MySQL or a password hash runs on a job thread;
//! while it does, the connection's later requests wait in its session, so
//! each connection's requests are carried out in the order they were sent.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use super::cmd::{self, Caller, LeaveQueue, Leaver, Outcome, SessionChange};
use super::context::Ctx;
use super::error::ServiceError;
use super::events;
use super::heartbeat;
use super::message::{Delivery, Message};
use super::protocol::{self, Errno, msgid};
use super::recycle;
use super::request::{Request, Secret};
use super::router;
use super::session::{Early, Handed, Job, Mark, Session, State, User};
use crate::bus::{Outgoing, Tag};
use crate::model::offline_message;
use crate::net::{AfterClose, CloseReason, ConnId, Handler, Outbox, Pending, Unsent, Writer};
use crate::stats;

/// Requests one connection may have waiting behind a running job, and their
/// bytes, before the connection is no longer read (the client then waits in
/// TCP) ...
const PAUSE_QUEUED: usize = 256;
const PAUSE_QUEUED_BYTES: usize = 1 << 20;
/// ... and the hard bounds, reached only by frames read in the same batch,
/// past which they are refused with errno 104.
const MAX_QUEUED: usize = 4096;
const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Password checks (LOGIN with a password, REG) waiting for a hashing
/// thread before more are refused with errno 501: about two seconds of
/// hashing on this machine's two threads.
const MAX_WAITING_HASHES: usize = 64;
/// The ERROR (errno 104) sent before a connection is closed for too many
/// failed logins in a row.
pub const TOO_MANY_FAILURES: &str = "too many failed logins on this connection; it is closed";

/// The service; cheap to share between the loops.
pub struct ChatService {
    /// Everything the handlers work with.
    ctx: Arc<Ctx>,
}

impl ChatService {
    pub fn new(ctx: Arc<Ctx>) -> ChatService {
        ChatService { ctx }
    }

    /// Serves one request now, or starts the job that will (the session
    /// is Idle when this is called).
    fn handle(&self, session: &mut Session, request: Request<'_>, out: &mut Outbox<'_>) {
        let ctx = &self.ctx;
        let mut login = None;
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
            (Some(me), Request::GroupChat { groupid, msg }) if cmd::group_chat_live(ctx, me, *groupid, msg) => return,
            (None, Request::Login { id, .. }) => login = Some(Early { id: *id, deliveries: Vec::new() }),
            _ => {}
        }
        let request = request.into_owned();
        let hashes = matches!(request, Request::Login { secret: Secret::Password(_), .. } | Request::Register { .. });
        if !hashes && self.jobs_overloaded() {
            out.send(cmd::refusal(&request, Errno::Busy).as_bytes());
            return;
        }
        let form = cmd::ReplyForm::of(&request);
        let caller = caller_of(session);
        let job_ctx = Arc::clone(ctx);
        let job = move || {
            // Done must come back whatever happens, or the session stays busy.
            let outcome = catch_unwind(AssertUnwindSafe(|| cmd::apply(&job_ctx, &caller, request)))
                .unwrap_or_else(|_| Outcome::reply(form.refusal(Errno::Storage)));
            job_ctx.remote.send(caller.conn, Message::Done(outcome));
        };
        if hashes {
            // Password checks wait on their own pool, never in front of the
            // jobs chat needs; past the bound the client is told to retry.
            if !ctx.hashing.try_spawn(job, MAX_WAITING_HASHES) {
                out.send(form.refusal(Errno::Busy).as_bytes());
                return;
            }
        } else {
            ctx.jobs.spawn(job);
        }
        session.state = State::Busy(Job { login, ..Job::default() });
    }

    /// Whether the request must be refused (errno 501) because the job
    /// threads have more waiting than their high-water mark: MySQL is not
    /// keeping up, and queueing more would only grow memory.
    fn jobs_overloaded(&self) -> bool {
        self.ctx.jobs.waiting() >= JOBS_WAITING_PER_THREAD * self.ctx.jobs.threads()
    }

    /// Busy -> Idle: applies a finished job to its open session and runs
    /// what waited for it (which may make it Busy again).
    fn finish(&self, session: &mut Session, job: Job, outcome: Outcome, out: &mut Outbox<'_>) {
        let early = job.login.map(|e| e.deliveries).unwrap_or_default();
        let mut replies = outcome.replies.into_iter();
        match outcome.change {
            Some(SessionChange::LoggedIn { user, offline_upto, more_stored }) => {
                if let Some(ack) = replies.next() {
                    match offline_upto {
                        Some(upto) => {
                            session.pending_delete.push_back(Handed { user: user.id, upto, own_frame: false });
                            out.send_marked(ack.as_bytes(), Mark::LoginAck as u64);
                        }
                        None => out.send(ack.as_bytes()),
                    }
                }
                // Ahead of anything live: they were sent before it.
                for (upto, frame) in more_stored {
                    session.pending_delete.push_back(Handed { user: user.id, upto, own_frame: true });
                    out.send_marked(frame.as_bytes(), Mark::Stored as u64);
                }
                for delivery in early {
                    if delivery.to == user.id {
                        send_delivery(session, delivery, out);
                    } else {
                        router::reroute(&self.ctx, delivery);
                    }
                }
                // Only now: a frame written directly must not pass these.
                out.accept_direct(Some(router::direct_key(user.id)));
                session.user = Some(user);
                // The limit is on guessing in a row, not on a connection's
                // lifetime of typos across users.
                session.failed_logins = 0;
            }
            change => {
                // The login did not happen (or this was no login): what came
                // early for that user goes where they really are.
                early.into_iter().for_each(|d| router::reroute(&self.ctx, d));
                match change {
                    Some(SessionChange::LoggedOut) => {
                        if let Some(me) = session.user.take() {
                            out.accept_direct(None);
                            out.mark(Mark::session_end(me.id));
                        }
                    }
                    Some(SessionChange::LoginFailed) => session.failed_logins += 1,
                    _ => {}
                }
            }
        }
        for reply in replies {
            out.send(reply.as_bytes());
        }
        let mut queued = job.queued;
        let then_close = job.then_close;
        if session.failed_logins >= self.ctx.limits.max_login_failures {
            events::failed_logins(session.user.as_ref().map(|u| u.id), session.failed_logins);
            // Said before closing, so the client can tell its user why.
            out.send(protocol::error_with(Errno::RateLimited, TOO_MANY_FAILURES).as_bytes());
            out.close();
            self.run_leftover(session, queued);
            return;
        }
        while let Some((request, size)) = queued.pop_front() {
            match &mut session.state {
                State::Idle => self.handle(session, request, out),
                State::Busy(next) | State::Draining(next) => {
                    next.queued_bytes += size;
                    next.queued.push_back((request, size));
                }
            }
        }
        if then_close {
            match session.job() {
                Some(next) => next.then_close = true,
                None => out.close(),
            }
        }
        let (waiting, bytes) = session.job().map_or((0, 0), |j| (j.queued.len(), j.queued_bytes));
        if waiting < PAUSE_QUEUED / 2 && bytes < PAUSE_QUEUED_BYTES / 2 {
            out.resume_reading();
        }
    }

    /// Draining -> released: a job's result for a session whose connection
    /// closed. A login it made is undone at once (the user goes offline with
    /// what came for them early); the requests that waited still run.
    fn finish_draining(&self, session: &mut Session, job: Job, outcome: Outcome) {
        let conn = session.conn;
        let mut early = job.login.map(|e| e.deliveries).unwrap_or_default();
        match outcome.change {
            Some(SessionChange::LoggedIn { user, .. }) => {
                let marked = self.ctx.registry.mark_leaving(user.id, conn, || {
                    let mine = early.extract_if(.., |d| d.to == user.id).collect();
                    self.go_offline_later(user.clone(), mine);
                });
                if marked {
                    session.user = Some(user);
                }
            }
            Some(SessionChange::LoggedOut) => session.user = None,
            Some(SessionChange::LoginFailed) | None => {}
        }
        early.into_iter().for_each(|d| router::reroute(&self.ctx, d));
        session.state = State::Idle;
        self.run_leftover(session, job.queued);
    }

    /// Takes the user of a closed connection offline, on their lane (the
    /// caller marked them leaving): the messages the connection never wrote
    /// out are stored first, ahead of anything sent later.
    fn go_offline_later(&self, me: User, unsent: Vec<Delivery>) {
        LeaveQueue::push(&self.ctx, Leaver { user: me, unsent, tags: Vec::new() });
    }

    /// Carries out, in order, the requests a closed connection sent that had
    /// not run yet (its messages to others still go out); logging in or out
    /// on a closed connection is moot.
    fn run_leftover(&self, session: &Session, queued: VecDeque<(Request<'static>, usize)>) {
        if queued.is_empty() {
            return;
        }
        let ctx = Arc::clone(&self.ctx);
        let caller = caller_of(session);
        self.ctx.jobs.spawn(move || {
            for (request, _) in queued {
                if !matches!(request, Request::Login { .. } | Request::Logout) {
                    cmd::apply(&ctx, &caller, request);
                }
            }
        });
    }

    /// Stores, at shutdown (the lanes have stopped), what the bus could not
    /// get taken by other servers.
    pub fn store_unacknowledged(&self, messages: Vec<Outgoing>) {
        let rows: Vec<(i32, &str)> = messages.iter().filter(|m| m.keep).map(|m| (m.to, &*m.frame)).collect();
        if let Err(e) = self.ctx.db.run(|c| offline_message::insert_many(c, &rows)) {
            crate::error!("{} messages for other servers' users lost at shutdown: {e}", rows.len());
        }
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

    fn open(&self, id: ConnId, out: Writer) -> Session {
        stats::CONNECTIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Session::new(id, out, &self.ctx.limits)
    }

    fn frame(&self, session: &mut Session, frame: &[u8], out: &mut Outbox<'_>) {
        stats::FRAMES_IN.add(1);
        if !session.bucket.take(&self.ctx.limits, out.now()) {
            events::rate_limited(session.user.as_ref().map(|u| u.id));
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
        let Some(job) = session.job() else { return self.handle(session, request, out) };
        if job.queued.len() < MAX_QUEUED && job.queued_bytes + frame.len() <= MAX_QUEUED_BYTES {
            job.queued_bytes += frame.len();
            job.queued.push_back((request.into_owned(), frame.len()));
            if job.queued.len() >= PAUSE_QUEUED || job.queued_bytes >= PAUSE_QUEUED_BYTES {
                out.pause_reading();
            }
        } else {
            events::rate_limited(session.user.as_ref().map(|u| u.id));
            out.send(protocol::error(Errno::RateLimited).as_bytes());
        }
    }

    /// A half-closed client is answered in full before the close: now if
    /// nothing runs for it, else once its job and the requests behind it
    /// are done.
    fn end_of_input(&self, session: &mut Session, out: &mut Outbox<'_>) {
        match session.job() {
            Some(job) => job.then_close = true,
            None => out.close(),
        }
    }

    fn turn_end(&self) {
        let done = WRITTEN_OUT.with(|w| std::mem::take(&mut *w.borrow_mut()));
        self.ctx.bus.complete(&done);
        recycle::hand_back(&self.ctx.remote);
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
                if session.user.as_ref().is_some_and(|u| u.id == delivery.to) && !session.is_draining() {
                    send_delivery(session, delivery, out);
                } else if let Some(early) = session.job().and_then(|j| j.login.as_mut()).filter(|e| e.id == delivery.to)
                {
                    early.deliveries.push(delivery);
                } else {
                    router::reroute(&self.ctx, delivery);
                }
            }
            Message::Replaced => {
                if !session.is_draining() {
                    out.send(protocol::error(Errno::Replaced).as_bytes());
                    out.close();
                }
            }
            Message::Done(outcome) => match std::mem::replace(&mut session.state, State::Idle) {
                State::Busy(job) => self.finish(session, job, outcome, out),
                State::Draining(job) => {
                    self.finish_draining(session, job, outcome);
                    out.release();
                }
                State::Idle => crate::error!("a job result for a session that ran no job; dropped"),
            },
        }
    }

    /// The slot is gone (the server is stopping): chat goes where its user
    /// is, a job's result has no one left to tell.
    fn undeliverable(&self, msg: Message) {
        if let Message::Deliver(delivery) = msg {
            router::reroute(&self.ctx, delivery);
        }
    }

    fn written(&self, session: &mut Session, mark: u64, _out: &mut Outbox<'_>) {
        if mark == Mark::Tracked as u64 {
            written_out(session.tracked.pop_front());
            return;
        }
        if Mark::ended_session(mark).is_some() {
            return;
        }
        let Some(handed) = session.pending_delete.pop_front() else { return };
        if !handed.own_frame {
            return self.delete_stored(handed.user, handed.upto);
        }
        let count = session.written_stored.map_or(0, |(_, _, n)| n) + 1;
        let more = session.pending_delete.front().is_some_and(|next| next.own_frame && next.user == handed.user);
        if more && count < DELETE_BATCH {
            session.written_stored = Some((handed.user, handed.upto, count));
        } else {
            session.written_stored = None;
            self.delete_stored(handed.user, handed.upto);
        }
    }

    fn closed(
        &self,
        session: &mut Session,
        reason: CloseReason,
        unsent: Unsent<'_>,
        pending: Pending<'_, Message>,
    ) -> AfterClose {
        let conn = session.conn;
        stats::CONNECTIONS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        events::closed(session.user.as_ref().map(|u| u.id), reason);
        if let Some((user, upto, _)) = session.written_stored.take() {
            self.delete_stored(user, upto);
        }
        let mut undelivered = undelivered_chats(session.user.as_ref().map(|me| me.id), &unsent);
        // Bus messages among the unsent frames: acknowledged once stored.
        let mut unsent_tags: Vec<Tag> = session.tracked.drain(..).collect();
        let mut pending = Some(pending);
        let mut finished = None;
        if reason == CloseReason::Shutdown {
            if let Some(me) = &session.user {
                self.ctx.registry.remove(me.id, conn);
            }
            self.split_pending(pending.take(), session, &mut undelivered, &mut finished);
            if let Some(early) = session.job().and_then(|j| j.login.take()) {
                self.ctx.registry.remove(early.id, conn);
                undelivered.extend(early.deliveries.into_iter().filter(|d| d.keep));
            }
            // The job threads are stopping: store what the user missed now.
            let rows: Vec<(i32, &str)> = undelivered.iter().map(|d| (d.to, &*d.payload)).collect();
            match self.ctx.db.run(|c| offline_message::insert_many(c, &rows)) {
                Ok(()) => {
                    unsent_tags.extend(undelivered.iter().filter_map(|d| d.tag.clone()));
                    self.ctx.bus.complete(&unsent_tags);
                }
                Err(e) => crate::error!("{} unsent messages lost at shutdown: {e}", rows.len()),
            }
            return AfterClose::Release;
        }
        // Marked leaving, nothing new is queued for the connection, so what
        // is queued can be taken; and the offline step is put on the user's
        // lane under the mark, ahead of messages others store on seeing it.
        let me = session.user.clone();
        let leaving = me.as_ref().is_some_and(|me| {
            self.ctx.registry.mark_leaving(me.id, conn, || {
                self.split_pending(pending.take(), session, &mut undelivered, &mut finished);
                let tags = std::mem::take(&mut unsent_tags);
                // What an earlier session on this connection missed goes to
                // its own user's lane, not into this user's leaving.
                let (mine, earlier): (Vec<_>, Vec<_>) =
                    std::mem::take(&mut undelivered).into_iter().partition(|d| d.to == me.id);
                earlier.into_iter().for_each(|d| router::reroute(&self.ctx, d));
                LeaveQueue::push(&self.ctx, Leaver { user: me.clone(), unsent: mine, tags });
            })
        });
        if !leaving {
            self.split_pending(pending.take(), session, &mut undelivered, &mut finished);
            undelivered.into_iter().for_each(|d| router::reroute(&self.ctx, d));
            // The user is elsewhere now (a takeover, a LOGOUT): what this
            // connection never wrote goes there, just rerouted.
            unsent_tags.into_iter().for_each(|tag| written_out(Some(tag)));
        }
        match (std::mem::replace(&mut session.state, State::Idle), finished) {
            // The job's result was already queued: it is applied now.
            (State::Busy(job) | State::Draining(job), Some(outcome)) => {
                self.finish_draining(session, job, outcome);
                AfterClose::Release
            }
            (State::Busy(job) | State::Draining(job), None) => {
                session.state = State::Draining(job);
                AfterClose::Drain
            }
            (State::Idle, _) => AfterClose::Release,
        }
    }
}

/// Jobs waiting per job thread (per MySQL connection) past which a request
/// that needs one is refused (501): 2,048 with the default pool of 8.
const JOBS_WAITING_PER_THREAD: usize = 256;

/// Stored messages written out in frames of their own are deleted this
/// many at a time (and at a close), not one statement each.
const DELETE_BATCH: u32 = 256;

impl ChatService {
    /// Deletes `user`'s stored messages up to `upto`, now written out.
    /// On the user's lane: a close queues their going offline there after
    /// this, and a new login waits for that, so it never reads again what
    /// this session was handed.
    fn delete_stored(&self, user: i32, upto: i64) {
        let ctx = Arc::clone(&self.ctx);
        self.ctx.lanes.spawn(user, move || {
            if let Err(e) = ctx.db.run(|c| offline_message::delete_up_to(c, user, upto)) {
                // They stay stored and come again at the next login.
                crate::warn!("stored messages of user {user} not deleted: {e}");
            }
        });
    }

    /// Sorts the messages still queued for a closed connection: chat to
    /// keep (or, for a login in flight, to hold for that user), and the
    /// running job's result.
    fn split_pending(
        &self,
        pending: Option<Pending<'_, Message>>,
        session: &mut Session,
        undelivered: &mut Vec<Delivery>,
        finished: &mut Option<Outcome>,
    ) {
        for msg in pending.map(Pending::take).unwrap_or_default() {
            match msg {
                Message::Deliver(delivery) => {
                    if let Some(early) = session.job().and_then(|j| j.login.as_mut()).filter(|e| e.id == delivery.to) {
                        early.deliveries.push(delivery);
                    } else if delivery.keep {
                        undelivered.push(delivery);
                    } else {
                        // Presence for a user gone: nothing to keep.
                        written_out(delivery.tag);
                    }
                }
                Message::Done(outcome) => *finished = Some(outcome),
                Message::Replaced => {}
            }
        }
    }
}

thread_local! {
    /// Bus messages whose frames the sockets took during this loop's turn;
    /// reported to the bus together at the end of the turn.
    static WRITTEN_OUT: std::cell::RefCell<Vec<Tag>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes a delivery to its user's connection; one from the bus is
/// acknowledged once the socket has taken it, not before.
fn send_delivery(session: &mut Session, delivery: Delivery, out: &mut Outbox<'_>) {
    match delivery.tag {
        Some(tag) => {
            session.tracked.push_back(tag);
            out.send_tracked(delivery.payload.as_bytes(), Mark::Tracked as u64);
        }
        None => out.send(delivery.payload.as_bytes()),
    }
    recycle::done_with(delivery.origin, delivery.payload);
}

/// Who a job of `session`'s runs for.
fn caller_of(session: &Session) -> Caller {
    Caller { conn: session.conn, writer: session.writer.clone(), user: session.user.clone() }
}

/// Notes a bus message as written out (see [`WRITTEN_OUT`]).
fn written_out(tag: Option<Tag>) {
    if let Some(tag) = tag {
        WRITTEN_OUT.with(|w| w.borrow_mut().push(tag));
    }
}

/// The chat messages among frames the peer never received, each for the
/// user whose session it was sent in (`current`, or one that logged out
/// on this connection since: [`Mark::SessionEnd`]); but not stored
/// messages sent after a LOGIN_ACK ([`Mark::Stored`]): those are still in
/// the store.
fn undelivered_chats(current: Option<i32>, unsent: &Unsent<'_>) -> Vec<Delivery> {
    let frames: Vec<(&[u8], Option<u64>)> = unsent.frames().collect();
    let mut owner = current;
    let mut found = Vec::new();
    // From the newest: each session's end mark follows its last frame.
    for (frame, mark) in frames.into_iter().rev() {
        if let Some(user) = mark.and_then(Mark::ended_session) {
            owner = Some(user);
        }
        if mark == Some(Mark::Stored as u64) {
            continue;
        }
        if let Some(user) = owner
            && let Some(text) = chat_text(frame)
        {
            found.push(Delivery::chat(user, text.into()));
        }
    }
    found.reverse();
    found
}

/// `frame` as text if it is a ONE_CHAT or GROUP_CHAT.
fn chat_text(frame: &[u8]) -> Option<&str> {
    let value: serde_json::Value = serde_json::from_slice(frame).ok()?;
    let id = value.get("msgid")?.as_i64()?;
    (id == msgid::ONE_CHAT || id == msgid::GROUP_CHAT).then(|| std::str::from_utf8(frame).ok()).flatten()
}
