//! Who is logged in on this server, and on which connection.

use std::collections::HashMap;

use parking_lot::RwLock;

use crate::net::ConnId;

/// Shards keep the relay path from contending on one lock.
const SHARDS: usize = 64;

/// Logged-in users of this server.
pub struct Registry {
    /// user id -> connection, sharded by id.
    shards: Vec<RwLock<HashMap<i32, ConnId>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry { shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect() }
    }
}

impl Registry {
    fn shard(&self, user: i32) -> &RwLock<HashMap<i32, ConnId>> {
        &self.shards[user.unsigned_abs() as usize % SHARDS]
    }

    /// The connection `user` is logged in on, if any.
    pub fn get(&self, user: i32) -> Option<ConnId> {
        self.shard(user).read().get(&user).copied()
    }

    pub fn insert(&self, user: i32, conn: ConnId) {
        self.shard(user).write().insert(user, conn);
    }

    /// Removes `user` only if still bound to `conn` (a newer login wins).
    pub fn remove(&self, user: i32, conn: ConnId) -> bool {
        let mut shard = self.shard(user).write();
        if shard.get(&user) == Some(&conn) {
            shard.remove(&user);
            return true;
        }
        false
    }

    /// Every logged-in user, for shutdown.
    pub fn users(&self) -> Vec<i32> {
        self.shards.iter().flat_map(|s| s.read().keys().copied().collect::<Vec<_>>()).collect()
    }
}
