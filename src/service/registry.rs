//! Who is logged in on this server, and on which connection.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};

use crate::id_map::IdMap;
use crate::net::{ConnId, Writer};

/// Shards keep the relay path from contending on one lock.
const SHARDS: usize = 64;

/// A logged-in user's entry.
enum Entry {
    /// Reachable on this connection, whose output other threads write
    /// chat into directly.
    Live(ConnId, Writer),
    /// Their connection closed and they are being taken offline on their
    /// lane; messages for them are stored on that lane, behind it, instead
    /// of going out over the bus (which would bring them back here late).
    Leaving,
}

impl Entry {
    fn is_live_on(&self, conn: ConnId) -> bool {
        matches!(self, Entry::Live(c, _) if *c == conn)
    }

    fn is_leaving(&self) -> bool {
        matches!(self, Entry::Leaving)
    }
}

/// Where a user is, as far as this server knows.
pub enum Found<R> {
    /// Online here; `f`'s result.
    Live(R),
    /// Being taken offline here.
    Leaving,
    /// Not on this server.
    Absent,
}

/// [`Registry::replace`] found the user's old session still being taken
/// offline here.
#[derive(Debug, PartialEq, Eq)]
pub struct StillLeaving;

/// Logged-in users of this server.
pub struct Registry {
    /// user id -> entry, sharded by id.
    shards: Vec<Shard>,
    /// Logins waiting for a leaving user to be gone park here; it is
    /// notified, under `left_lock`, after every removal of a leaving entry.
    left: Condvar,
    /// Pairs with `left`: a waiter checks the registry while holding it, so
    /// a removal cannot slip between its check and its wait.
    left_lock: Mutex<()>,
}

/// One shard, on cache lines of its own: taking a read lock writes the
/// lock word, and neighbouring shards are read by different loops.
#[repr(align(128))]
#[derive(Default)]
struct Shard(RwLock<IdMap<Entry>>);

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            left: Condvar::new(),
            left_lock: Mutex::new(()),
        }
    }
}

impl Registry {
    fn shard(&self, user: i32) -> &RwLock<IdMap<Entry>> {
        &self.shards[user.unsigned_abs() as usize % SHARDS].0
    }

    /// The connection `user` is logged in on, if they are reachable here.
    pub fn get(&self, user: i32) -> Option<ConnId> {
        match self.shard(user).read().get(&user) {
            Some(Entry::Live(conn, _)) => Some(*conn),
            _ => None,
        }
    }

    /// Whether `user` is logged in here, or still being taken offline.
    pub fn contains(&self, user: i32) -> bool {
        self.shard(user).read().contains_key(&user)
    }

    /// Runs `f` with the connection of `user` and its output, if reachable
    /// here, while no one can mark them leaving: whatever `f` writes into
    /// that output or queues for that connection is there before a close
    /// takes what the connection never sent and its pending messages.
    pub fn with_conn<R>(&self, user: i32, f: impl FnOnce(ConnId, &Writer) -> R) -> Found<R> {
        match self.shard(user).read().get(&user) {
            Some(Entry::Live(conn, writer)) => Found::Live(f(*conn, writer)),
            Some(Entry::Leaving) => Found::Leaving,
            None => Found::Absent,
        }
    }

    pub fn insert(&self, user: i32, conn: ConnId, writer: Writer) {
        self.shard(user).write().insert(user, Entry::Live(conn, writer));
    }

    /// Makes `user` reachable on `conn` unless this server has an entry for
    /// them already; true when it did.
    pub fn insert_new(&self, user: i32, conn: ConnId, writer: Writer) -> bool {
        let mut shard = self.shard(user).write();
        if shard.contains_key(&user) {
            return false;
        }
        shard.insert(user, Entry::Live(conn, writer));
        true
    }

    /// Makes `user` reachable on `conn`; returns the connection they were
    /// live on here before, if any (a session this login replaces). While
    /// their old session is being taken offline here nothing changes: its
    /// release would undo this login's claim.
    pub fn replace(&self, user: i32, conn: ConnId, writer: Writer) -> Result<Option<(ConnId, Writer)>, StillLeaving> {
        let mut shard = self.shard(user).write();
        if shard.get(&user).is_some_and(Entry::is_leaving) {
            return Err(StillLeaving);
        }
        match shard.insert(user, Entry::Live(conn, writer)) {
            Some(Entry::Live(old, writer)) if old != conn => Ok(Some((old, writer))),
            _ => Ok(None),
        }
    }

    /// Removes `user` if still live on `conn` (a login that did not finish).
    pub fn remove(&self, user: i32, conn: ConnId) -> bool {
        let mut shard = self.shard(user).write();
        if shard.get(&user).is_some_and(|e| e.is_live_on(conn)) {
            shard.remove(&user);
            return true;
        }
        false
    }

    /// Marks `user` leaving if live on `conn`, and runs `then` before anyone
    /// can see the mark (so work it queues comes before work others queue
    /// on seeing it). True for the one caller that does it, which then takes
    /// them offline.
    pub fn mark_leaving(&self, user: i32, conn: ConnId, then: impl FnOnce()) -> bool {
        let mut shard = self.shard(user).write();
        match shard.get_mut(&user) {
            Some(entry) if entry.is_live_on(conn) => {
                *entry = Entry::Leaving;
                then();
                true
            }
            _ => false,
        }
    }

    /// Forgets a user who has been taken offline.
    pub fn remove_leaving(&self, user: i32) {
        let mut shard = self.shard(user).write();
        if shard.get(&user).is_some_and(Entry::is_leaving) {
            shard.remove(&user);
            drop(shard);
            let _held = self.left_lock.lock();
            self.left.notify_all();
        }
    }

    /// Waits, up to `within`, while `user` is being taken offline here: a
    /// client that reconnects the moment its old connection closed finds
    /// that session gone instead of in use.
    pub fn wait_until_left(&self, user: i32, within: Duration) {
        let leaving = || self.shard(user).read().get(&user).is_some_and(Entry::is_leaving);
        // Almost every login: no server-wide lock for it.
        if !leaving() {
            return;
        }
        let deadline = Instant::now() + within;
        let mut held = self.left_lock.lock();
        while leaving() {
            if self.left.wait_until(&mut held, deadline).timed_out() {
                return;
            }
        }
    }

    /// Every user reachable here.
    pub fn users(&self) -> Vec<i32> {
        self.shards
            .iter()
            .flat_map(|s| {
                s.0.read().iter().filter(|(_, e)| matches!(e, Entry::Live(..))).map(|(&u, _)| u).collect::<Vec<_>>()
            })
            .collect()
    }
}
