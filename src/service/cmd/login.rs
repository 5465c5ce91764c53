//! LOGIN: check the password, go online once in the cluster, and hand back
//! friends, groups and stored messages.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use super::{Caller, Outcome, SessionChange};
use crate::model::{Friend, Group, OfflineMessage, friend, group, offline_message, user};
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol::{self, Errno, msgid};
use crate::service::session::User;
use crate::service::{password, router};

fn refuse(errno: Errno, errmsg: &str) -> Result<Outcome, ServiceError> {
    Ok(Outcome::reply(protocol::ack_error(msgid::LOGIN_ACK, errno, errmsg)))
}

pub fn apply(ctx: &Ctx, caller: &Caller, id: i32, password: &str) -> Result<Outcome, ServiceError> {
    if caller.user.is_some() {
        return refuse(Errno::InUse, "already logged in on this connection; log out first");
    }
    let invalid = || Outcome {
        replies: vec![protocol::ack_error(msgid::LOGIN_ACK, Errno::Invalid, Errno::Invalid.text())],
        change: Some(SessionChange::LoginFailed),
    };
    if !ctx.throttle.allows(id, Instant::now()) {
        return Ok(invalid());
    }
    let found = ctx.db.run(|c| user::find(c, id))?;
    // A missing id costs a hash check too, so timing does not tell.
    let stored = found.as_ref().map_or(ctx.dummy_hash.as_str(), |u| u.password.as_str());
    let password_ok = password::verify(password, stored);
    let Some(found) = found.filter(|_| password_ok) else {
        ctx.throttle.failed(id, Instant::now());
        return Ok(invalid());
    };
    ctx.throttle.succeeded(id);
    let me = User { id, name: Arc::from(found.name.as_str()) };

    let guard = ctx.locks.lock(id);
    let mut conn = ctx.db.get()?;
    if !conn.run(|c| user::set_online_if_offline(c, id))? {
        return refuse(Errno::InUse, Errno::InUse.text());
    }
    let loaded = conn.run(|c| Ok((friend::list(c, id)?, group::list_for_user(c, id)?, offline_message::list(c, id)?)));
    let (friends, groups, offline) = match loaded {
        Ok(lists) => lists,
        Err(e) => {
            // Not logged in after all: undo the online mark.
            let _ = conn.run(|c| user::set_offline(c, id));
            return Err(e.into());
        }
    };
    let followers = conn.run(|c| friend::added_by(c, id)).unwrap_or_default();
    drop(conn);
    let ack = login_ack(&me, &friends, &groups, &offline);
    ctx.registry.insert(id, caller.conn);
    drop(guard);

    let payload: Arc<str> = protocol::presence(id, &me.name, true).into();
    let presence = followers.into_iter().map(|to| Delivery { to, payload: Arc::clone(&payload), keep: false });
    router::route(ctx, presence.collect())?;

    let offline_upto = offline.last().map(|m| m.id);
    Ok(Outcome { replies: vec![ack], change: Some(SessionChange::LoggedIn { user: me, offline_upto }) })
}

/// The LOGIN_ACK in the original's shape: list elements are JSON strings.
fn login_ack(me: &User, friends: &[Friend], groups: &[Group], offline: &[OfflineMessage]) -> String {
    let mut fields = json!({"id": me.id, "name": &*me.name});
    let friends: Vec<Value> = friends
        .iter()
        .map(|f| json!({"id": f.id, "name": f.name, "state": f.state.as_str()}).to_string().into())
        .collect();
    let groups: Vec<Value> = groups.iter().map(|g| group_json(g).into()).collect();
    let offline: Vec<Value> = offline.iter().map(|m| m.message.clone().into()).collect();
    for (key, list) in [("friends", friends), ("groups", groups), ("offlinemsg", offline)] {
        if !list.is_empty() {
            fields[key] = Value::Array(list);
        }
    }
    protocol::ack_ok(msgid::LOGIN_ACK, fields)
}

fn group_json(g: &Group) -> String {
    let users: Vec<Value> = g
        .users
        .iter()
        .map(|u| {
            json!({"id": u.id, "name": u.name, "state": u.state.as_str(), "role": u.role.as_str()}).to_string().into()
        })
        .collect();
    json!({"id": g.id, "groupname": g.name, "groupdesc": g.desc, "users": users}).to_string()
}
