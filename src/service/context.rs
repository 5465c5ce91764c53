//! What every handler works with: storage, the online users, the cluster
//! bus and the way to reach connections.

use std::sync::Arc;
use std::time::Duration;

use super::cmd::{LeaveQueue, Left, Resuming};
use super::combine::Combiner;
use super::jobs::Jobs;
use super::lanes::Lanes;
use super::limits::{Limits, LoginThrottle};
use super::members::Members;
use super::message::Message;
use super::password;
use super::registry::Registry;
use crate::bus::Bus;
use crate::db::Pool;
use crate::model::login::Lists;
use crate::net::Remote;

/// How often a server records that it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(3);
/// A server silent this long is dead and its users offline: well inside the
/// 15 s the spec allows, with the sweep that notices it every heartbeat.
pub const ALIVE: Duration = Duration::from_secs(9);

/// Most logins or leaves carried out in one statement.
const BATCH: usize = 64;

/// Shared state of the chat service.
pub struct Ctx {
    /// MySQL connections.
    pub db: Pool,
    /// This server's name in the `server` and `online` tables.
    pub server_id: String,
    /// Users logged in on this server.
    pub registry: Registry,
    /// Reaches users on the other servers.
    pub bus: Bus,
    /// Reaches connections on any worker loop.
    pub remote: Remote<Message>,
    /// Threads for blocking work.
    pub jobs: Jobs,
    /// Threads for password hashes, apart from `jobs` and below them in
    /// priority, with a bound on the logins that wait.
    pub hashing: Jobs,
    /// How long a resume token is valid.
    pub token_ttl: Duration,
    /// Per-receiver queues for storing and re-routing messages in order.
    pub lanes: Lanes,
    /// Users of closed connections waiting to be taken offline, in batches.
    pub leave_queue: LeaveQueue,
    /// Token logins of users no one holds, claimed together.
    pub resumes: Combiner<Resuming, Option<Lists>>,
    /// Users leaving with nothing unsent, released together across lanes.
    pub releases: Combiner<Vec<i32>, Vec<Left>>,
    /// Flood and login limits.
    pub limits: Limits,
    /// Groups' members, so GROUP_CHAT seldom asks MySQL.
    pub members: Members,
    /// Back-off for ids with failed logins.
    pub throttle: LoginThrottle,
    /// A hash checked when a login names no user, so a wrong id costs the
    /// same time as a wrong password and does not reveal which ids exist.
    pub dummy_hash: String,
}

/// The parts a [`Ctx`] is made of.
pub struct Parts {
    pub db: Pool,
    pub server_id: String,
    pub bus: Bus,
    pub remote: Remote<Message>,
    pub jobs: Jobs,
    pub hashing: Jobs,
    pub token_ttl: Duration,
    pub lanes: Lanes,
    pub limits: Limits,
}

impl Ctx {
    pub fn new(parts: Parts) -> Arc<Ctx> {
        Arc::new(Ctx {
            db: parts.db,
            server_id: parts.server_id,
            registry: Registry::default(),
            bus: parts.bus,
            remote: parts.remote,
            jobs: parts.jobs,
            hashing: parts.hashing,
            token_ttl: parts.token_ttl,
            leave_queue: LeaveQueue::new(parts.lanes.count()),
            resumes: Combiner::new(BATCH),
            releases: Combiner::new(BATCH),
            lanes: parts.lanes,
            limits: parts.limits,
            members: Members::default(),
            throttle: LoginThrottle::default(),
            dummy_hash: password::hash("no such user").unwrap_or_default(),
        })
    }
}
