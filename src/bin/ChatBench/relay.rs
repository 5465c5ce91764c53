//! The raw relay: the floor of cost on this machine. It is the project's
//! own reactor (`net::Server` and a `net::Handler`) with everything the chat
//! service adds taken away: no JSON parsing (a byte scan finds `msgid`,
//! `toid`, `groupid`), no database, no Redis, no rate limit. A ONE_CHAT is
//! forwarded to `toid`'s connection as received; a GROUP_CHAT to every other
//! member of the group. "Login" binds the id to the connection (any
//! password or token will do, and the same token comes back); REG,
//! CREATE_GROUP and ADD_GROUP hand out ids from counters.
//!
//! It routes the way the service does (a sharded id -> connection map, then
//! `Remote::deliver` into the receiver's output), so the gap between the two
//! is what JSON, timestamps, sessions and storage cost, not a different
//! design.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use parking_lot::RwLock;

use super::wire::{self, msgid};
use chatserver::net::{
    AfterClose, CloseReason, ConnId, Handler, NetConfig, Outbox, Pending, Remote, Server, StopHandle, Unsent, Wake,
    Writer,
};

/// Shards of the id -> connection map, as in the service's registry.
const SHARDS: usize = 64;
/// Open files the relay asks for.
const MAX_FDS: u64 = 262_144;
/// The resume token of every relay LOGIN_ACK: the relay checks no secret,
/// but a bench logging in with tokens must find one where the server puts it.
const TOKEN: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// A relay connection's state.
pub struct RelaySession {
    conn: ConnId,
    /// Its output, which LOGIN puts in the map for senders to write into.
    out: Writer,
    /// The id bound by LOGIN.
    user: Option<i32>,
}

/// The key a relay session takes frames for directly: its id.
fn key(id: i32) -> u64 {
    u64::from(id as u32)
}

/// The relay handler.
pub struct Relay {
    /// id -> connection and its output, sharded by id.
    users: Vec<RwLock<HashMap<i32, (ConnId, Writer)>>>,
    /// group id -> member ids.
    groups: RwLock<HashMap<i32, Vec<i32>>>,
    next_user: AtomicI32,
    next_group: AtomicI32,
    remote: Remote<Arc<[u8]>>,
}

impl Relay {
    pub fn new(remote: Remote<Arc<[u8]>>) -> Relay {
        Relay {
            users: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            groups: RwLock::new(HashMap::new()),
            next_user: AtomicI32::new(1),
            next_group: AtomicI32::new(1),
            remote,
        }
    }

    fn shard(&self, id: i32) -> &RwLock<HashMap<i32, (ConnId, Writer)>> {
        &self.users[id.unsigned_abs() as usize % SHARDS]
    }

    /// Hands `frame` to `id`'s connection as the service's router does
    /// (into its output when it is for one receiver `alone`, else through
    /// the receiver's loop); None when no one is bound to `id`.
    fn deliver(&self, id: i32, frame: &[u8], alone: bool) -> Option<Wake> {
        let shard = self.shard(id).read();
        let (conn, writer) = shard.get(&id)?;
        let direct = alone.then(|| (key(id), frame));
        Some(self.remote.deliver(*conn, writer, direct, || Arc::from(frame)))
    }

    fn login(&self, session: &mut RelaySession, frame: &[u8], out: &mut Outbox<'_>) {
        let id = wire::int_field(frame, wire::ID).and_then(|id| i32::try_from(id).ok());
        let Some(id) = id.filter(|_| session.user.is_none()) else {
            return out.send(br#"{"msgid":2,"errno":1,"errmsg":"id or password is invalid!"}"#);
        };
        let mut shard = self.shard(id).write();
        // A token takes the id over, as it takes over the session on the
        // server (SPEC §2), though the old connection is not told: in the
        // bench it is one that is closing. When it closes, the new one stays.
        let takeover = wire::str_field(frame, wire::TOKEN).is_some();
        if shard.contains_key(&id) && !takeover {
            return out.send(br#"{"msgid":2,"errno":2,"errmsg":"this account is using, input another!"}"#);
        }
        shard.insert(id, (session.conn, session.out.clone()));
        drop(shard);
        session.user = Some(id);
        out.send(format!(r#"{{"msgid":2,"errno":0,"id":{id},"name":"relay","token":"{TOKEN}"}}"#).as_bytes());
        out.accept_direct(Some(key(id)));
    }

    fn logout(&self, session: &mut RelaySession) {
        if let Some(id) = session.user.take() {
            let mut shard = self.shard(id).write();
            if shard.get(&id).is_some_and(|(conn, _)| *conn == session.conn) {
                shard.remove(&id);
            }
        }
    }

    fn one_chat(&self, frame: &[u8], out: &mut Outbox<'_>) {
        let to = wire::int_field(frame, wire::TOID).and_then(|id| i32::try_from(id).ok());
        match to.and_then(|to| self.deliver(to, frame, true)) {
            Some(wake) => self.remote.wake(wake),
            None => out.send(br#"{"msgid":11,"errno":200,"msg":"no such user"}"#),
        }
    }

    fn group_chat(&self, me: i32, frame: &[u8], out: &mut Outbox<'_>) {
        let group = wire::int_field(frame, wire::GROUPID).and_then(|id| i32::try_from(id).ok());
        let groups = self.groups.read();
        let Some(members) = group.and_then(|g| groups.get(&g)) else {
            return out.send(br#"{"msgid":11,"errno":201,"msg":"no such group"}"#);
        };
        let wakes: Vec<Wake> =
            members.iter().filter(|&&m| m != me).filter_map(|&member| self.deliver(member, frame, false)).collect();
        drop(groups);
        self.remote.wake_all(wakes);
    }

    fn create_group(&self, me: i32, out: &mut Outbox<'_>) {
        let id = self.next_group.fetch_add(1, Ordering::Relaxed);
        self.groups.write().insert(id, vec![me]);
        out.send(format!(r#"{{"msgid":13,"errno":0,"groupid":{id},"groupname":"g{id}"}}"#).as_bytes());
    }

    fn add_group(&self, me: i32, frame: &[u8], out: &mut Outbox<'_>) {
        let group = wire::int_field(frame, wire::GROUPID).and_then(|id| i32::try_from(id).ok()).unwrap_or(0);
        match self.groups.write().get_mut(&group) {
            Some(members) => {
                if !members.contains(&me) {
                    members.push(me);
                }
                out.send(format!(r#"{{"msgid":14,"errno":0,"groupid":{group}}}"#).as_bytes());
            }
            None => out.send(br#"{"msgid":14,"errno":201,"errmsg":"no such group"}"#),
        }
    }
}

impl Handler for Relay {
    type Session = RelaySession;
    type Message = Arc<[u8]>;

    fn open(&self, id: ConnId, out: Writer) -> RelaySession {
        RelaySession { conn: id, out, user: None }
    }

    fn frame(&self, session: &mut RelaySession, frame: &[u8], out: &mut Outbox<'_>) {
        let id = wire::int_field(frame, wire::MSGID).unwrap_or(-1);
        match (session.user, id) {
            (_, msgid::PING) => out.send(br#"{"msgid":17}"#),
            (_, msgid::LOGIN) => self.login(session, frame, out),
            (_, msgid::REG) => {
                let id = self.next_user.fetch_add(1, Ordering::Relaxed);
                out.send(format!(r#"{{"msgid":5,"errno":0,"id":{id}}}"#).as_bytes());
            }
            (None, _) => out.send(br#"{"msgid":11,"errno":102,"msg":"not logged in"}"#),
            (Some(_), msgid::ONE_CHAT) => self.one_chat(frame, out),
            (Some(me), msgid::GROUP_CHAT) => self.group_chat(me, frame, out),
            (Some(_), msgid::LOGOUT) => {
                out.accept_direct(None);
                self.logout(session);
            }
            (Some(me), msgid::CREATE_GROUP) => self.create_group(me, out),
            (Some(me), msgid::ADD_GROUP) => self.add_group(me, frame, out),
            (Some(_), _) => out.send(br#"{"msgid":11,"errno":101,"msg":"unknown msgid"}"#),
        }
    }

    fn too_large(&self, _session: &mut RelaySession, out: &mut Outbox<'_>) {
        out.send(br#"{"msgid":11,"errno":103,"msg":"message too large"}"#);
    }

    fn message(&self, _session: &mut RelaySession, msg: Arc<[u8]>, out: &mut Outbox<'_>) {
        out.send(&msg);
    }

    fn undeliverable(&self, _msg: Arc<[u8]>) {}

    fn written(&self, _session: &mut RelaySession, _mark: u64, _out: &mut Outbox<'_>) {}

    fn closed(
        &self,
        session: &mut RelaySession,
        _reason: CloseReason,
        _unsent: Unsent<'_>,
        _pending: Pending<'_, Arc<[u8]>>,
    ) -> AfterClose {
        self.logout(session);
        AfterClose::Release
    }
}

/// `ChatBench relay-server [IP:]PORT [--threads N]`: serves until SIGINT or
/// SIGTERM. With `spawned` (a relay started by a bench run) it also ends
/// with the process that started it, and leaves that process's session: with
/// the kernel's autogroup scheduling a session shares one slice of the CPU,
/// and the relay must compete for it as a separately started ChatServer
/// does, not share the load generator's.
pub fn serve(addr: SocketAddr, threads: usize, spawned: bool) -> Result<(), String> {
    if spawned {
        // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number and setsid
        // takes nothing; neither touches memory. setsid failing (already a
        // session leader) leaves things as they were, which is fine.
        unsafe {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            libc::setsid();
        }
    }
    // Above the hard limit if allowed (as root): a bench of 20,000
    // connections needs as many descriptors here.
    if let Err(e) = super::procfs::raise_fd_limit(MAX_FDS) {
        eprintln!("relay: cannot raise the open-file limit: {e}");
    }
    let config = NetConfig { threads, ..NetConfig::default() };
    let server = Server::bind(addr, config).map_err(|e| e.to_string())?;
    let local = server.local_addr().map_err(|e| e.to_string())?;
    let remote = Remote::new(threads).map_err(|e| format!("cannot create worker queues: {e}"))?;
    let stop = StopHandle::new().map_err(|e| e.to_string())?;
    let on_signal = stop.clone();
    ctrlc::set_handler(move || on_signal.stop()).map_err(|e| format!("cannot install the signal handler: {e}"))?;
    println!("relay listening on {local}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    server.run(Arc::new(Relay::new(remote.clone())), remote, stop).map_err(|e| e.to_string())
}
