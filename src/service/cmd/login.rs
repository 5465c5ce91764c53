//! LOGIN: check the password or resume token, go online once in the
//! cluster (a token takes over the user's session wherever it is), and hand
//! back a fresh token, friends, groups and stored messages.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Caller, Outcome, SessionChange};
use mysql::TxOpts;

use crate::model::login::Lists;
use crate::model::{self, Friend, Group, OfflineMessage, online, user};
use crate::net::{ConnId, Writer};
use crate::service::context::{ALIVE, Ctx};
use crate::service::error::ServiceError;
use crate::service::message::{Delivery, Message};
use crate::service::password::Verdict;
use crate::service::protocol::{self, Errno, msgid};
use crate::service::registry::StillLeaving;
use crate::service::request::Secret;
use crate::service::session::User;
use crate::service::{password, router, token};

fn refuse(errno: Errno, errmsg: &str) -> Result<Outcome, ServiceError> {
    Ok(Outcome::reply(protocol::ack_error(msgid::LOGIN_ACK, errno, errmsg)))
}

pub fn apply(ctx: &Arc<Ctx>, caller: &Caller, id: i32, secret: &Secret) -> Result<Outcome, ServiceError> {
    if caller.user.is_some() {
        return refuse(Errno::InUse, "already logged in on this connection; log out first");
    }
    let invalid = || Outcome {
        replies: vec![protocol::ack_error(msgid::LOGIN_ACK, Errno::Invalid, Errno::Invalid.text())],
        change: Some(SessionChange::LoginFailed),
    };
    // Said as it is, so the user stops retrying; ids that do not exist are
    // held back just the same, so this reveals nothing. Nothing was checked,
    // so it is no failure of this connection's either.
    if let Some(wait) = ctx.throttle.held_back(id, Instant::now()) {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        let why = format!("too many failed logins; try again in {secs} s");
        return refuse(Errno::Invalid, &why);
    }
    // A password is checked here; a token inside the login's transaction,
    // under the user's row lock (one statement fewer, and a revocation that
    // committed first is seen).
    let token_hash = match secret {
        Secret::Password(password) => {
            let found = ctx.db.run(|c| user::find(c, id))?;
            // A missing id costs a hash check too, so timing does not tell.
            let stored = found.as_ref().map_or(ctx.dummy_hash.as_str(), |u| u.password.as_str());
            let proven = match password::check(password, stored)? {
                Verdict::Wrong => false,
                Verdict::Right => true,
                // An original user's first login: their plaintext goes now
                // (if this login goes no further, the hash still stands).
                Verdict::RightReplaceWith(hash) => {
                    ctx.db.run(|c| user::replace_password(c, id, stored, &hash))?;
                    true
                }
            };
            if found.is_none() || !proven {
                ctx.throttle.failed(id, Instant::now());
                return Ok(invalid());
            }
            None
        }
        Secret::Token(text) => Some(token::digest(text)),
    };
    let (fresh, fresh_hash) = token::issue().ok_or(ServiceError::Hash)?;

    let loaded = match go_online(ctx, caller, id, token_hash.as_deref(), &fresh_hash)? {
        Online::Invalid => {
            ctx.throttle.failed(id, Instant::now());
            return Ok(invalid());
        }
        // (go_online gives up waiting for a leaving session as InUse.)
        Online::InUse | Online::StillLeaving => {
            ctx.throttle.succeeded(id);
            return refuse(Errno::InUse, Errno::InUse.text());
        }
        Online::Loaded(loaded) => loaded,
    };
    ctx.throttle.succeeded(id);
    let Lists { name, friends, followers, groups, offline } = loaded;
    let me = User { id, name: Arc::from(name.as_str()) };
    let (offline, more_stored) = split_stored(offline);
    let ack = login_ack(&me, &fresh, &friends, &groups, &offline);
    let payload: Arc<str> = protocol::presence(id, &me.name, true).into();
    let presence = followers.into_iter().map(|to| Delivery::notice(to, Arc::clone(&payload)));
    router::route(ctx, presence.collect())?;

    let offline_upto = offline.last().map(|m| m.id);
    let change = SessionChange::LoggedIn { user: me, offline_upto, more_stored };
    Ok(Outcome { replies: vec![ack], change: Some(change) })
}

/// Most bytes of stored messages one LOGIN_ACK carries.
const ACK_STORED_BYTES: usize = 1 << 20;

/// The stored messages that fit in the LOGIN_ACK, and the rest, oldest
/// first, to follow it as frames of their own.
fn split_stored(mut offline: Vec<OfflineMessage>) -> (Vec<OfflineMessage>, Vec<(i64, String)>) {
    let mut bytes = 0;
    let fit = offline
        .iter()
        .position(|m| {
            bytes += m.message.len();
            bytes > ACK_STORED_BYTES
        })
        .unwrap_or(offline.len());
    let rest = offline.split_off(fit).into_iter().map(|m| (m.id, m.message)).collect();
    (offline, rest)
}

/// How long a login waits for the user's old session here to finish
/// going offline before it is refused as in use.
const LEAVING_WAIT: Duration = Duration::from_secs(2);

/// How [`go_online`] ended.
enum Online {
    Loaded(Lists),
    /// The token is wrong, expired or revoked (or there is no such user).
    Invalid,
    /// Logged in on a live server already (unless this is a takeover), or
    /// still being taken offline here after [`LEAVING_WAIT`].
    InUse,
    /// The user's old session here began leaving during the transaction,
    /// which changed nothing: wait for it, then try again.
    StillLeaving,
}

/// Claims the user for this server and reads what the LOGIN_ACK carries.
/// `token` is the digest of the token to check, None when a password
/// proved the login; a token takes over the user's session wherever it is.
/// `fresh_hash` is the digest of the token the LOGIN_ACK hands out.
///
/// Under the user's row lock, in order: check and replace the token (or
/// store the new one), claim the `online` row, become reachable here
/// (registry), then read the stored messages. A sender storing a message
/// takes the same lock and asks again where the user is (this registry, or
/// the `online` row from elsewhere), so each message is either in this read
/// or delivered live; live ones wait in the session until the LOGIN_ACK is
/// out. The other servers learn of the login from the bus after the commit,
/// and a replaced session is told then: no Redis call under the lock.
fn go_online(
    ctx: &Arc<Ctx>,
    caller: &Caller,
    id: i32,
    token: Option<&[u8]>,
    fresh_hash: &[u8],
) -> Result<Online, ServiceError> {
    let deadline = Instant::now() + LEAVING_WAIT;
    loop {
        match try_online(ctx, caller, id, token, fresh_hash, deadline)? {
            Online::StillLeaving if Instant::now() < deadline => {}
            Online::StillLeaving => return Ok(Online::InUse),
            done => return Ok(done),
        }
    }
}

/// One attempt of [`go_online`], waiting until `deadline` for the user's
/// old session here to be taken offline.
fn try_online(
    ctx: &Arc<Ctx>,
    caller: &Caller,
    id: i32,
    token: Option<&[u8]>,
    fresh_hash: &[u8],
    deadline: Instant,
) -> Result<Online, ServiceError> {
    let takeover = token.is_some();
    // Leaving takes a transaction; waiting out one beats refusing.
    ctx.registry.wait_until_left(id, deadline.saturating_duration_since(Instant::now()));
    let here = ctx.registry.get(id);
    let busy = ctx.registry.contains(id) && !(takeover && here.is_some());
    let pending = ctx.bus.any_pending();
    // Refusing, or storing what went to a dead server, only for a token
    // that holds (as a password login has checked its password by now).
    if let Some(token) = token
        && (busy || pending)
        && ctx.db.run(|c| model::token::holder_name(c, id, token))?.is_none()
    {
        return Ok(Online::Invalid);
    }
    if busy {
        // Logged in here already (answered without MySQL, whose view may lag
        // after an outage), or their old connection is still closing
        // after LEAVING_WAIT.
        return Ok(Online::InUse);
    }
    // (Only worth asking while this server has messages on their way.)
    let dead = if pending { ctx.db.run(|c| online::dead_holder(c, id, &ctx.server_id, ALIVE))? } else { None };
    if let Some(old) = token
        && !pending
        && let Some(lists) = resume(ctx, caller, id, old, fresh_hash)?
    {
        return Ok(Online::Loaded(lists));
    }
    if let Some(dead) = dead {
        // Taking over from a dead server: what this server sent there is
        // stored first, so this login's LOGIN_ACK carries it.
        let back: Vec<Delivery> =
            ctx.bus.server_dead(&dead).into_iter().filter(|m| m.keep).map(Delivery::from).collect();
        if let Err(e) = router::store(ctx, back.clone()) {
            router::store_later(ctx, back);
            return Err(e);
        }
    }
    let mut entry = RegistryEntry { ctx, id, caller, replaced: None, placed: false, kept: false };
    let result = ctx.db.run(|conn| {
        let mut tx = conn.start_transaction(TxOpts::default())?;
        // (Returning before the commit rolls back.)
        let Some((_, holder)) = user::lock_with_holder(&mut tx, id, &ctx.server_id, ALIVE)? else {
            return Ok(Err(Online::Invalid));
        };
        match token {
            Some(old) => {
                if !model::token::rotate_going_online(&mut tx, id, old, fresh_hash, ctx.token_ttl)? {
                    return Ok(Err(Online::Invalid));
                }
                online::take_row(&mut tx, id, &ctx.server_id)?;
                if entry.place().is_err() {
                    return Ok(Err(Online::StillLeaving));
                }
            }
            None => {
                if holder.is_some() {
                    return Ok(Err(Online::InUse));
                }
                model::token::replace(&mut tx, id, fresh_hash, ctx.token_ttl)?;
                online::take(&mut tx, id, &ctx.server_id)?;
                if entry.place().is_err() {
                    return Ok(Err(Online::StillLeaving));
                }
            }
        }
        let lists = model::login::lists(&mut tx, id)?;
        tx.commit()?;
        Ok(Ok((lists, holder.filter(|h| *h != ctx.server_id))))
    });
    let (loaded, elsewhere) = match result? {
        Ok(done) => done,
        Err(refused) => return Ok(refused),
    };
    if let Some(old) = entry.keep() {
        ctx.remote.send(old, Message::Replaced);
    }
    if let Some(server) = elsewhere {
        ctx.bus.replace_session(&server, id);
    }
    ctx.bus.announce(true, &[id]);
    Ok(Online::Loaded(loaded))
}

/// A token login of a user no one holds, as most reconnects are: one
/// statement checks the token and claims the user, then the lists are
/// read, with no transaction, both for every such login waiting then
/// ([`Ctx::resumes`]). The registry entry is made first, so a sender who
/// finds the claim under the user's row lock finds the entry too, and one
/// who stored before the claim has its message in the read after it.
/// None when the claim did not hold (a wrong token, a holder, or a first
/// login, with no `online` row yet): [`go_online`]'s transaction decides.
fn resume(
    ctx: &Arc<Ctx>,
    caller: &Caller,
    id: i32,
    old: &[u8],
    fresh_hash: &[u8],
) -> Result<Option<Lists>, ServiceError> {
    if !ctx.registry.insert_new(id, caller.conn, caller.writer.clone()) {
        return Ok(None);
    }
    let entry = RegistryEntry { ctx, id, caller, replaced: None, placed: true, kept: false };
    let request = || Resuming { id, old: old.to_vec(), fresh: fresh_hash.to_vec() };
    let lists = match ctx.resumes.submit(request(), |batch| resume_together(ctx, &batch).ok()) {
        Some(lists) => lists,
        // The batch failed: alone, this login gets its own answer.
        None => resume_together(ctx, &[request()])?.pop().flatten(),
    };
    if lists.is_some() {
        entry.keep();
    }
    Ok(lists)
}

/// A token login waiting in [`Ctx::resumes`].
pub struct Resuming {
    /// The user logging in.
    id: i32,
    /// The hash of the token it sent.
    old: Vec<u8>,
    /// The hash of the token its LOGIN_ACK hands out.
    fresh: Vec<u8>,
}

/// Claims the users of `batch` (the ids differ: each has the registry
/// entry) and reads their lists, in two statements, and announces those
/// claimed; the lists of each login, None where the claim did not hold.
fn resume_together(ctx: &Ctx, batch: &[Resuming]) -> Result<Vec<Option<Lists>>, ServiceError> {
    let logins: Vec<model::token::Resume<'_>> =
        batch.iter().map(|r| model::token::Resume { userid: r.id, old: &r.old, new: &r.fresh }).collect();
    let fresh: Vec<(i32, &[u8])> = batch.iter().map(|r| (r.id, &r.fresh[..])).collect();
    // Only the claim can be a deadlock victim, and it changed nothing then.
    let mut lists = ctx.db.run_retrying(|c| {
        model::token::resume(c, &logins, ctx.token_ttl, &ctx.server_id)?;
        model::login::lists_of_resumed(c, &fresh)
    })?;
    // One presence message for the batch; the registry entries are there.
    let claimed: Vec<i32> = batch.iter().map(|r| r.id).filter(|id| lists.contains_key(id)).collect();
    ctx.bus.announce(true, &claimed);
    Ok(batch.iter().map(|r| lists.remove(&r.id)).collect())
}

/// The registry entry a login makes (inside its transaction): undone when
/// the login does not commit, however it ends (an error, or a panic caught
/// by the job), so no entry is left pointing at a session that is not
/// logged in.
struct RegistryEntry<'a> {
    ctx: &'a Ctx,
    id: i32,
    /// The connection logging in, with its output.
    caller: &'a Caller,
    /// The connection the user was live on here before (a takeover).
    replaced: Option<(ConnId, Writer)>,
    placed: bool,
    kept: bool,
}

impl RegistryEntry<'_> {
    /// Makes the entry, unless the user's old session here is still
    /// leaving (its release would undo the claim): then nothing changes.
    fn place(&mut self) -> Result<(), StillLeaving> {
        self.replaced = self.ctx.registry.replace(self.id, self.caller.conn, self.caller.writer.clone())?;
        self.placed = true;
        Ok(())
    }

    /// The login committed: the entry stays; returns the replaced session.
    fn keep(mut self) -> Option<ConnId> {
        self.kept = true;
        self.replaced.take().map(|(conn, _)| conn)
    }
}

impl Drop for RegistryEntry<'_> {
    fn drop(&mut self) {
        if self.placed && !self.kept {
            self.ctx.registry.remove(self.id, self.caller.conn);
            if let Some((old, writer)) = self.replaced.take() {
                self.ctx.registry.insert(self.id, old, writer);
            }
        }
    }
}

/// The LOGIN_ACK in the original's shape: list elements are JSON strings.
fn login_ack(me: &User, token: &str, friends: &[Friend], groups: &[Group], offline: &[OfflineMessage]) -> String {
    let mut fields = json!({"id": me.id, "name": &*me.name, "token": token});
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
