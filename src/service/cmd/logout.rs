//! LOGOUT, and going offline however a session ends.

use std::sync::Arc;

use super::{Outcome, SessionChange};
use crate::model::{friend, offline_message, user};
use crate::net::ConnId;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol;
use crate::service::router;
use crate::service::session::User;

pub fn apply(ctx: &Ctx, me: &User, conn: ConnId) -> Result<Outcome, ServiceError> {
    go_offline(ctx, me, conn, Vec::new())?;
    Ok(Outcome { replies: Vec::new(), change: Some(SessionChange::LoggedOut) })
}

/// Marks `me` offline (if still logged in on `conn`) and tells the users
/// who have `me` as a friend. `unsent` (messages for `me` that the
/// connection never wrote out) is stored in the same step, ahead of
/// anything sent to `me` afterwards.
pub fn go_offline(ctx: &Ctx, me: &User, conn: ConnId, unsent: Vec<Delivery>) -> Result<(), ServiceError> {
    let followers = {
        let guard = ctx.locks.lock(me.id);
        if !ctx.registry.remove(me.id, conn) {
            drop(guard);
            return router::route(ctx, unsent);
        }
        let rows: Vec<(i32, &str)> = unsent.iter().map(|d| (me.id, &*d.payload)).collect();
        ctx.db.run(|c| {
            if !rows.is_empty() {
                offline_message::insert_many(c, &rows)?;
            }
            user::set_offline(c, me.id)?;
            friend::added_by(c, me.id)
        })?
    };
    let payload: Arc<str> = protocol::presence(me.id, &me.name, false).into();
    let presence = followers.into_iter().map(|to| Delivery { to, payload: Arc::clone(&payload), keep: false });
    router::route(ctx, presence.collect())
}
