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

pub fn apply(ctx: &Arc<Ctx>, me: &User, conn: ConnId) -> Result<Outcome, ServiceError> {
    go_offline(ctx, me, conn, Vec::new())?;
    Ok(Outcome { replies: Vec::new(), change: Some(SessionChange::LoggedOut) })
}

/// Marks `me` offline (if still logged in on `conn`) and tells the users
/// who have `me` as a friend. `unsent` (messages for `me` that the
/// connection never wrote out) is stored in the same step, under the user's
/// row lock, ahead of anything sent to `me` afterwards.
pub fn go_offline(ctx: &Arc<Ctx>, me: &User, conn: ConnId, unsent: Vec<Delivery>) -> Result<(), ServiceError> {
    let followers = ctx.db.run(|c| {
        let mut tx = c.start_transaction(TxOpts::default())?;
        user::lock(&mut tx, &[me.id])?;
        // Checked under the lock: a LOGOUT and a close may both get here.
        if !ctx.registry.remove(me.id, conn) {
            return Ok(None);
        }
        ctx.bus.unsubscribe(me.id);
        let rows: Vec<(i32, &str)> = unsent.iter().map(|d| (me.id, &*d.payload)).collect();
        offline_message::insert_many(&mut tx, &rows)?;
        online::release(&mut tx, me.id, &ctx.server_id)?;
        let followers = friend::added_by(&mut tx, me.id)?;
        tx.commit()?;
        Ok(Some(followers))
    });
    let followers = match followers {
        Ok(Some(followers)) => followers,
        // Not logged in on `conn` (any more): the unsent go where the user is.
        Ok(None) => return router::route(ctx, unsent),
        Err(e) => {
            // Storage down: the user is gone from here all the same; the
            // heartbeat releases their `online` row once MySQL is back.
            ctx.registry.remove(me.id, conn);
            return Err(e.into());
        }
    };
    let payload: Arc<str> = protocol::presence(me.id, &me.name, false).into();
    let presence = followers.into_iter().map(|to| Delivery { to, payload: Arc::clone(&payload), keep: false });
    router::route(ctx, presence.collect())
}
