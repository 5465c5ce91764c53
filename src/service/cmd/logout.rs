//! LOGOUT, and going offline however a session ends.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Outcome, SessionChange};
use mysql::TxOpts;

use crate::bus::Tag;
use crate::model::{friend, offline_message, online, token};
use crate::net::ConnId;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol;
use crate::service::router;
use crate::service::session::User;

/// A user to take offline, with the messages their connection never wrote
/// out (stored ahead of anything sent to them later).
pub struct Leaver {
    pub user: User,
    pub unsent: Vec<Delivery>,
    /// Bus messages among the frames the connection never wrote out (not
    /// in `unsent`'s own tags): acknowledged once those are stored.
    pub tags: Vec<Tag>,
}

/// LOGOUT: always logs the connection out; a storage failure on the way is
/// repaired by the heartbeat (it releases rows of users no longer here).
pub fn apply(ctx: &Arc<Ctx>, me: &User, conn: ConnId) -> Result<Outcome, ServiceError> {
    // The session's resume token ends with it (a closed connection keeps
    // it: that is what it is for).
    if let Err(e) = ctx.db.run(|c| token::revoke(c, me.id)) {
        crate::warn!("user {} logged out, but their resume token is not yet revoked: {e}", me.id);
    }
    if ctx.registry.mark_leaving(me.id, conn, || {})
        && let Err(e) = leave(ctx, vec![Leaver { user: me.clone(), unsent: Vec::new(), tags: Vec::new() }])
    {
        crate::warn!("user {} logged out, but not yet marked offline: {e}", me.id);
    }
    Ok(Outcome { replies: Vec::new(), change: Some(SessionChange::LoggedOut) })
}

/// Takes `leavers` offline together, after the caller marked each leaving
/// in the registry (the one that marked them does this, once): their
/// `online` rows are released (in one transaction with what their
/// connections never wrote out, if anything); one bus message tells the
/// other servers; then the users who have them as friends are told.
pub fn leave(ctx: &Arc<Ctx>, leavers: Vec<Leaver>) -> Result<(), ServiceError> {
    let ids: Vec<i32> = leavers.iter().map(|l| l.user.id).collect();
    // The common case, closed connections with nothing left unsent: released
    // together with the others leaving then, with no transaction.
    let result = if leavers.iter().all(|l| l.unsent.is_empty()) {
        release(ctx, ids.clone())
    } else {
        release_storing(ctx, &leavers)
    };
    // Gone from here even if MySQL failed: the heartbeat releases the rows.
    for id in &ids {
        ctx.registry.remove_leaving(*id);
    }
    let (released, followers) = match result {
        Ok(done) => done,
        Err(e) => {
            // Nothing was stored: the unsent messages go where their users
            // are (their senders keep the tagged ones until then).
            let tags: Vec<Tag> = leavers.iter().flat_map(|l| l.tags.iter().cloned()).collect();
            ctx.bus.complete(&tags);
            let unsent = leavers.into_iter().flat_map(|l| l.unsent).collect();
            router::store_later(ctx, unsent);
            return Err(e);
        }
    };
    let (stored, moved): (Vec<Leaver>, Vec<Leaver>) = leavers.into_iter().partition(|l| released.contains(&l.user.id));
    let tags: Vec<Tag> = stored
        .iter()
        .flat_map(|l| l.tags.iter().cloned().chain(l.unsent.iter().filter_map(|d| d.tag.clone())))
        .collect();
    ctx.bus.complete(&tags);
    ctx.bus.announce(false, &ids);
    // What a replaced session never wrote out follows its user.
    let moved_tags: Vec<Tag> = moved.iter().flat_map(|l| l.tags.iter().cloned()).collect();
    ctx.bus.complete(&moved_tags);
    ctx.bus.flush();
    router::store_later(ctx, moved.into_iter().flat_map(|l| l.unsent).collect());
    let presence =
        followers.into_iter().map(|(id, name, to)| Delivery::notice(to, protocol::presence(id, &name, false).into()));
    router::route(ctx, presence.collect())
}

/// Who [`leave`] released, and each released user's followers as
/// (released user, name, follower).
type Released = (Vec<i32>, Vec<(i32, String, i32)>);

/// What [`Ctx::releases`] answers for a user: their name and followers
/// when no one holds them now, None when someone does (a takeover, or
/// already a new login).
pub type Left = Option<(String, Vec<i32>)>;

/// Releases leavers with nothing unsent, in a batch with those of the
/// other lanes ([`Ctx::releases`]).
fn release(ctx: &Ctx, ids: Vec<i32>) -> Result<Released, ServiceError> {
    let left = match ctx.releases.submit(ids.clone(), |lists| release_together(ctx, lists).ok()) {
        Some(left) => left,
        // The batch failed: alone, these leaves get their own answer.
        None => release_together(ctx, vec![ids.clone()])?.pop().unwrap_or_default(),
    };
    Ok(released(ids.into_iter().zip(left).filter_map(|(id, left)| left.map(|(name, to)| (id, name, to)))))
}

/// Releases the users of `lists` this server holds, in one statement, and
/// reads who is offline now with their followers, in another; answers each
/// list in its order.
fn release_together(ctx: &Ctx, lists: Vec<Vec<i32>>) -> Result<Vec<Vec<Left>>, ServiceError> {
    let mut sorted: Vec<i32> = lists.iter().flatten().copied().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let left = ctx.db.run_retrying(|c| {
        online::release_many(c, &sorted, &ctx.server_id)?;
        friend::offline_with_followers(c, &sorted)
    })?;
    let left: HashMap<i32, (String, Vec<i32>)> =
        left.into_iter().map(|(id, name, followers)| (id, (name, followers))).collect();
    Ok(lists.into_iter().map(|ids| ids.iter().map(|id| left.get(id).cloned()).collect()).collect())
}

/// Releases `leavers` as [`release_together`] does, and stores what their
/// connections never wrote out, in one transaction. Users whose session
/// was taken over elsewhere are not offline: what was theirs follows them.
fn release_storing(ctx: &Ctx, leavers: &[Leaver]) -> Result<Released, ServiceError> {
    let mut sorted: Vec<i32> = leavers.iter().map(|l| l.user.id).collect();
    sorted.sort_unstable();
    sorted.dedup();
    // Many users leaving at once can deadlock in InnoDB against logins; the
    // transaction is safe to run again.
    let left = ctx.db.run_retrying(|c| {
        let mut tx = c.start_transaction(TxOpts::default())?;
        online::release_many(&mut tx, &sorted, &ctx.server_id)?;
        let left = friend::offline_with_followers(&mut tx, &sorted)?;
        let rows: Vec<(i32, &str)> = leavers
            .iter()
            .filter(|l| left.iter().any(|(id, ..)| *id == l.user.id))
            .flat_map(|l| l.unsent.iter().map(|d| (l.user.id, &*d.payload)))
            .collect();
        offline_message::insert_many(&mut tx, &rows)?;
        tx.commit()?;
        Ok(left)
    })?;
    Ok(released(left))
}

/// [`Released`] from who is offline now, each with their name and followers.
fn released(left: impl IntoIterator<Item = (i32, String, Vec<i32>)>) -> Released {
    let mut released = Released::default();
    for (id, name, followers) in left {
        released.0.push(id);
        released.1.extend(followers.into_iter().map(|to| (id, name.clone(), to)));
    }
    released
}

/// Users whose connections closed, waiting on their lane to be taken
/// offline: a close queues its user here, and the first of a run queues the
/// one lane job that takes the whole run, so a mass disconnect costs a few
/// transactions instead of one per user.
pub struct LeaveQueue {
    /// One list per lane.
    lanes: Vec<parking_lot::Mutex<Vec<Leaver>>>,
}

impl LeaveQueue {
    pub fn new(lanes: usize) -> LeaveQueue {
        LeaveQueue { lanes: (0..lanes.max(1)).map(|_| parking_lot::Mutex::new(Vec::new())).collect() }
    }

    /// Queues `leaver` on their lane, ahead of anything queued there after
    /// this call.
    pub fn push(ctx: &Arc<Ctx>, leaver: Leaver) {
        let lane = ctx.lanes.of(leaver.user.id);
        let Some(list) = ctx.leave_queue.lanes.get(lane % ctx.leave_queue.lanes.len()) else { return };
        let first = {
            let mut list = list.lock();
            list.push(leaver);
            list.len() == 1
        };
        if !first {
            return;
        }
        let job_ctx = Arc::clone(ctx);
        ctx.lanes.spawn_on(lane, move || {
            let batch = match job_ctx.leave_queue.lanes.get(lane % job_ctx.leave_queue.lanes.len()) {
                Some(list) => std::mem::take(&mut *list.lock()),
                None => Vec::new(),
            };
            let count = batch.len();
            if let Err(e) = leave(&job_ctx, batch) {
                crate::warn!("{count} users could not be taken offline yet: {e}");
            }
        });
    }
}
