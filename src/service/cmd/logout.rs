//! LOGOUT, and going offline however a session ends.

use std::sync::Arc;

use super::{Outcome, SessionChange};
use mysql::TxOpts;

use crate::model::{friend, offline_message, online, user};
use crate::net::ConnId;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol;
use crate::service::router;
use crate::service::session::User;

/// LOGOUT: always logs the connection out; a storage failure on the way is
/// repaired by the heartbeat (it releases rows of users no longer here).
pub fn apply(ctx: &Arc<Ctx>, me: &User, conn: ConnId) -> Result<Outcome, ServiceError> {
    if ctx.registry.mark_leaving(me.id, conn, || {})
        && let Err(e) = leave(ctx, me, Vec::new())
    {
        eprintln!("user {} logged out, but not yet marked offline: {e}", me.id);
    }
    Ok(Outcome { replies: Vec::new(), change: Some(SessionChange::LoggedOut) })
}

/// Takes `me` offline after the caller marked them leaving in the registry
/// (the one that marked them does this, once): leaves their bus channel,
/// stores `unsent` (messages the connection never wrote out) ahead of
/// anything sent to `me` later, releases their `online` row, and tells the
/// users who have `me` as a friend.
pub fn leave(ctx: &Arc<Ctx>, me: &User, unsent: Vec<Delivery>) -> Result<(), ServiceError> {
    ctx.bus.unsubscribe(me.id);
    // Many users leaving at once (a mass disconnect) can deadlock in InnoDB;
    // the transaction is safe to run again.
    let followers = ctx.db.run_retrying(|c| {
        let mut tx = c.start_transaction(TxOpts::default())?;
        user::lock(&mut tx, &[me.id])?;
        let rows: Vec<(i32, &str)> = unsent.iter().map(|d| (me.id, &*d.payload)).collect();
        offline_message::insert_many(&mut tx, &rows)?;
        online::release(&mut tx, me.id, &ctx.server_id)?;
        let followers = friend::added_by(&mut tx, me.id)?;
        tx.commit()?;
        Ok(followers)
    });
    // Gone from here even if MySQL failed: the heartbeat releases the row.
    ctx.registry.remove_leaving(me.id);
    let followers = followers?;
    let payload: Arc<str> = protocol::presence(me.id, &me.name, false).into();
    let presence = followers.into_iter().map(|to| Delivery { to, payload: Arc::clone(&payload), keep: false });
    router::route(ctx, presence.collect())
}
