//! The heartbeat: keeps this server's row fresh, releases the users of dead
//! servers, and repairs this server's own `online` rows.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Instant;

use mysql::TxOpts;

use super::context::{ALIVE, Ctx, HEARTBEAT};
use super::message::{Delivery, Message};
use super::{protocol, router};
use crate::db::{DbError, Pool};
use crate::model::{friend, online, server, user};

/// The running heartbeat thread.
pub struct Heartbeat {
    /// Dropping or sending on it ends the thread.
    stop: Sender<()>,
    /// Joined on stop.
    thread: JoinHandle<()>,
}

impl Heartbeat {
    /// Beats once now (so this server counts as alive before it accepts
    /// anyone), then every [`HEARTBEAT`] on a thread of its own. `db` is the
    /// heartbeat's own connection: a busy request pool must not delay the
    /// beat until other servers take this one for dead.
    pub fn start(ctx: Arc<Ctx>, db: Pool) -> Result<Heartbeat, DbError> {
        beat(&ctx, &db)?;
        let (stop, stopped) = channel();
        let thread = std::thread::Builder::new()
            .name("heartbeat".into())
            .spawn(move || run(&ctx, &db, &stopped))
            .map_err(|e| DbError::Unavailable(format!("cannot start the heartbeat thread: {e}")))?;
        Ok(Heartbeat { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn run(ctx: &Arc<Ctx>, db: &Pool, stopped: &Receiver<()>) {
    let mut failing = false;
    loop {
        match stopped.recv_timeout(HEARTBEAT) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        match beat(ctx, db).and_then(|()| reap(ctx, db)).and_then(|()| repair(ctx, db)) {
            Ok(()) if failing => {
                failing = false;
                crate::info!("MySQL is back; storage and heartbeat resumed");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                crate::warn!(
                    "MySQL unavailable ({e}); requests that need it are answered errno 500 meanwhile; retrying"
                );
            }
            Err(_) => {}
        }
    }
}

fn beat(ctx: &Ctx, db: &Pool) -> Result<(), DbError> {
    db.run(|c| server::beat(c, &ctx.server_id))
}

/// Releases the users of servers whose heartbeat stopped (crashed, killed),
/// and tells the bus which servers live, so what it sent to a dead one
/// comes back to be stored.
fn reap(ctx: &Arc<Ctx>, db: &Pool) -> Result<(), DbError> {
    for dead in db.run(|c| server::dead(c, ALIVE))? {
        // What this server sent there is stored, on the lanes and in order,
        // without holding up the next beat (a login that takes over one of
        // its users stores what it finds first, see cmd::login).
        let back = ctx.bus.server_dead(&dead).into_iter().filter(|m| m.keep).map(Delivery::from).collect();
        router::store_later(ctx, back);
        let users = release_server(ctx, db, &dead)?;
        crate::warn!("server {dead} stopped beating; {} of its users are offline now", users.len());
    }
    let asked_at = Instant::now();
    let alive = db.run(|c| server::alive(c, ALIVE))?;
    ctx.bus.servers_alive(&alive, asked_at);
    Ok(())
}

/// Brings this server's `online` rows back in line with who is logged in
/// here: releases rows whose user left during a MySQL outage, and claims
/// again users whose rows were released while this server could not beat
/// (another server took it for dead). A user who meanwhile logged in on a
/// live server is disconnected here, so they are logged in once.
fn repair(ctx: &Ctx, db: &Pool) -> Result<(), DbError> {
    let held: HashSet<i32> = db.run(|c| online::of_server(c, &ctx.server_id))?.into_iter().collect();
    for &user in held.iter().filter(|&&u| !ctx.registry.contains(u)) {
        db.run(|c| {
            let mut tx = c.start_transaction(TxOpts::default())?;
            user::lock(&mut tx, &[user])?;
            // A login here since the read above made its registry entry
            // before its claim, which waits for this lock: not released.
            if !ctx.registry.contains(user) {
                online::release_one(&mut tx, user, &ctx.server_id)?;
            }
            tx.commit()?;
            Ok(())
        })?;
    }
    for user in ctx.registry.users().into_iter().filter(|u| !held.contains(u)) {
        let claimed = db.run(|c| {
            let mut tx = c.start_transaction(TxOpts::default())?;
            user::lock(&mut tx, &[user])?;
            // A login that finished since the read above holds it already.
            let ours = online::holder(&mut tx, user, &ctx.server_id, ALIVE)?.is_some_and(|h| h == ctx.server_id);
            let claimed = ours || online::claim(&mut tx, user, &ctx.server_id, ALIVE)?;
            tx.commit()?;
            Ok(claimed)
        })?;
        if !claimed && let Some(conn) = ctx.registry.get(user) {
            crate::info!("user {user} logged in elsewhere while this server was cut off; disconnecting here");
            ctx.remote.send(conn, Message::Replaced);
        }
    }
    Ok(())
}

/// Marks every user `server` holds offline, forgets the server, and tells
/// the users who have them as friends.
pub fn release_server(ctx: &Arc<Ctx>, db: &Pool, server_id: &str) -> Result<Vec<i32>, DbError> {
    let (users, followers) = db.run(|c| {
        let mut tx = c.start_transaction(TxOpts::default())?;
        let users = online::release_server(&mut tx, server_id)?;
        server::remove(&mut tx, server_id)?;
        let followers = friend::followers_of_many(&mut tx, &users)?;
        tx.commit()?;
        Ok((users, followers))
    })?;
    let presence =
        followers.into_iter().map(|(id, name, to)| Delivery::notice(to, protocol::presence(id, &name, false).into()));
    // Presence is never stored, so routing it cannot fail on storage.
    let _ = router::route(ctx, presence.collect());
    Ok(users)
}
