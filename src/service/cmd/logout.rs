//! LOGOUT, and going offline however a session ends.

use std::sync::Arc;

use super::{Outcome, SessionChange};
use crate::model::{friend, user};
use crate::net::ConnId;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol;
use crate::service::router;
use crate::service::session::User;

pub fn apply(ctx: &Ctx, me: &User, conn: ConnId) -> Result<Outcome, ServiceError> {
    go_offline(ctx, me, conn)?;
    Ok(Outcome { replies: Vec::new(), change: Some(SessionChange::LoggedOut) })
}

/// Marks `me` offline (if still logged in on `conn`) and tells the users
/// who have `me` as a friend.
pub fn go_offline(ctx: &Ctx, me: &User, conn: ConnId) -> Result<(), ServiceError> {
    let followers = {
        let _guard = ctx.locks.lock(me.id);
        if !ctx.registry.remove(me.id, conn) {
            return Ok(());
        }
        ctx.db.run(|c| {
            user::set_offline(c, me.id)?;
            friend::added_by(c, me.id)
        })?
    };
    let payload: Arc<str> = protocol::presence(me.id, &me.name, false).into();
    let presence = followers.into_iter().map(|to| Delivery { to, payload: Arc::clone(&payload), keep: false });
    router::route(ctx, presence.collect())
}
