//! What every handler works with: storage, the online users and the way to
//! reach their connections.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::jobs::Jobs;
use super::limits::{Limits, LoginThrottle};
use super::locks::UserLocks;
use super::message::Message;
use super::password;
use super::registry::Registry;
use super::session::Leftover;
use crate::db::Pool;
use crate::net::{ConnId, Remote};

/// Shared state of the chat service.
pub struct Ctx {
    /// MySQL connections.
    pub db: Pool,
    /// Users logged in on this server.
    pub registry: Registry,
    /// Orders offline storage against logins, per user.
    pub locks: UserLocks,
    /// Reaches connections on any worker loop.
    pub remote: Remote<Message>,
    /// Threads for blocking work.
    pub jobs: Jobs,
    /// Work of connections that closed while a job of theirs was running,
    /// finished when that job's result comes back undeliverable.
    pub leftovers: Mutex<HashMap<ConnId, Leftover>>,
    /// Flood and login limits.
    pub limits: Limits,
    /// Back-off for ids with failed logins.
    pub throttle: LoginThrottle,
    /// A hash checked when a login names no user, so a wrong id costs the
    /// same time as a wrong password and does not reveal which ids exist.
    pub dummy_hash: String,
}

impl Ctx {
    pub fn new(db: Pool, remote: Remote<Message>, jobs: Jobs, limits: Limits) -> Arc<Ctx> {
        Arc::new(Ctx {
            db,
            registry: Registry::default(),
            locks: UserLocks::default(),
            remote,
            jobs,
            leftovers: Mutex::new(HashMap::new()),
            limits,
            throttle: LoginThrottle::default(),
            dummy_hash: password::hash("no such user").unwrap_or_default(),
        })
    }
}
