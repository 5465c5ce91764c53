//! Which server each user logged in elsewhere is on, as the presence
//! channel tells it (and the `online` table, read again after every
//! reconnect). A stale entry costs at most one hop: the server named stores
//! the message or forwards it once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::id_map::IdMap;

#[derive(Default)]
pub struct Locations {
    /// user -> server id.
    users: RwLock<IdMap<Arc<str>>>,
    /// Every server id heard of, shared by the entries, with when it was
    /// first heard of: a server unknown to an older heartbeat read is not
    /// dead, only new.
    servers: RwLock<HashMap<Arc<str>, Instant>>,
}

impl Locations {
    pub fn get(&self, user: i32) -> Option<Arc<str>> {
        self.users.read().get(&user).cloned()
    }

    /// The shared id of `server`, noting it if new.
    pub fn intern(&self, server: &str) -> Arc<str> {
        if let Some((id, _)) = self.servers.read().get_key_value(server) {
            return Arc::clone(id);
        }
        let mut servers = self.servers.write();
        let id = servers.get_key_value(server).map(|(id, _)| Arc::clone(id));
        id.unwrap_or_else(|| {
            let id: Arc<str> = server.into();
            servers.insert(Arc::clone(&id), Instant::now());
            id
        })
    }

    /// `server` holds `users` now.
    pub fn online(&self, server: &str, users: &[i32]) {
        let server = self.intern(server);
        let mut map = self.users.write();
        for &user in users {
            map.insert(user, Arc::clone(&server));
        }
    }

    /// `server` no longer holds `users`.
    pub fn offline(&self, server: &str, users: &[i32]) {
        let mut map = self.users.write();
        for user in users {
            if map.get(user).is_some_and(|s| &**s == server) {
                map.remove(user);
            }
        }
    }

    /// Everything known, replaced by a fresh read of who is where.
    pub fn replace(&self, entries: Vec<(i32, String)>) {
        let fresh: IdMap<Arc<str>> = entries.into_iter().map(|(u, s)| (u, self.intern(&s))).collect();
        *self.users.write() = fresh;
    }

    /// Forgets a dead server and its users; it is not heard of again (a
    /// restarted server has a new id).
    pub fn forget(&self, server: &str) {
        self.users.write().retain(|_, s| &**s != server);
        self.servers.write().remove(server);
    }

    /// Servers first heard of before `when`.
    pub fn known_before(&self, when: Instant) -> Vec<Arc<str>> {
        self.servers.read().iter().filter(|(_, t)| **t < when).map(|(s, _)| Arc::clone(s)).collect()
    }
}
