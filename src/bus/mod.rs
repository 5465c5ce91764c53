//! The cluster bus: servers reach each other's users through Redis.
//!
//! Each server listens on one inbox channel of its own and on the cluster's
//! presence channel; nothing it listens to changes when users come and go.
//! Logins and leaves are announced on the presence channel, so every
//! server knows where each user is ([`locations`]). A message for a user on
//! another server goes to that server's inbox as number n of a stream from
//! this server ([`outbound`]); the receiver takes each number once, and
//! acknowledges what it has written to its user, stored or forwarded
//! ([`inbound`]). Unacknowledged messages are sent again; a dead server's
//! come back to be stored. Publishing never waits for Redis: commands are
//! written straight to one pipelined connection ([`link`]).
//!
//! The bus knows Redis, server ids and user ids; nothing of sockets to
//! clients, JSON or SQL.

mod conn;
mod envelope;
mod error;
mod inbound;
mod link;
mod locations;
mod outbound;
mod resp;
mod subscriber;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use parking_lot::Mutex;

pub use error::BusError;
pub use inbound::Tag;
pub use outbound::Outgoing;

use conn::Endpoint;
use envelope::Envelope;
use inbound::{Inbound, Verdict};
use link::{Link, LinkEvents};
use locations::Locations;
use outbound::{Outbound, inbox};
use subscriber::{SubEvents, Subscriber};

/// A message that came over the bus for a user of this server.
#[derive(Clone, Debug)]
pub struct Incoming {
    pub to: i32,
    pub frame: Arc<str>,
    /// Stored if the user is gone, or dropped.
    pub keep: bool,
    /// Servers it went through before this one.
    pub hops: u8,
    /// Report it with [`Bus::complete`] once it is written, stored or
    /// forwarded.
    pub tag: Tag,
}

/// What the bus hands to the service.
pub trait Sink: Send + Sync + 'static {
    /// Messages for users of this server, as one read brought them.
    fn deliver(&self, batch: Vec<Incoming>);
    /// Messages the bus gives back (their server died, or Redis is gone
    /// too long, or their user is nowhere known): route them again,
    /// storing what has nowhere to go.
    fn reroute(&self, messages: Vec<Outgoing>);
    /// Redis is back: read again who is where, and announce who is here.
    fn resync(&self);
    /// Another server took over `user`'s session (a token login there).
    fn replaced(&self, user: i32);
    /// Another server added a member to `group`.
    fn group_changed(&self, group: i32);
}

/// A handle to the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    core: Arc<Core>,
}

struct Core {
    /// This server's id.
    me: Arc<str>,
    /// Channel namespace (the database name).
    namespace: Arc<str>,
    /// The cluster's presence channel.
    presence: String,
    /// Publishing.
    link: Arc<Link>,
    /// Listening.
    subscriber: Arc<Subscriber>,
    /// Streams to other servers; its lock also orders their writes.
    outbound: Mutex<Outbound>,
    /// Streams from other servers.
    inbound: Mutex<Inbound>,
    /// Where users of other servers are.
    locations: Locations,
    /// The service, once started.
    sink: OnceLock<Arc<dyn Sink>>,
    /// The current outage was logged; each outage is logged once.
    outage_logged: AtomicBool,
    /// Once stopped, nothing is sent.
    stopped: AtomicBool,
    /// Users with messages pending in `outbound` (see [`OutboundGuard`]).
    routed: AtomicUsize,
}

impl Bus {
    /// A bus for `url`, not yet connected: see [`Bus::start`]. Only a
    /// malformed URL fails; an unreachable Redis does not.
    pub fn new(url: &str, namespace: &str, server_id: &str) -> Result<Bus, BusError> {
        let endpoint = Endpoint::parse(url)?;
        let me: Arc<str> = server_id.into();
        let namespace: Arc<str> = namespace.into();
        let inbox = inbox(&namespace, &me);
        let presence = format!("{{{namespace}}}:presence");
        let subscriber = Arc::new(Subscriber::new(endpoint.clone(), vec![inbox.clone(), presence.clone()]));
        let core = Core {
            outbound: Mutex::new(Outbound::new(Arc::clone(&me), Arc::clone(&namespace))),
            me,
            namespace,
            presence,
            link: Arc::new(Link::new(endpoint)),
            subscriber,
            inbound: Mutex::new(Inbound::default()),
            locations: Locations::default(),
            sink: OnceLock::new(),
            outage_logged: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            routed: AtomicUsize::new(0),
        };
        Ok(Bus { core: Arc::new(core) })
    }

    /// Connects and starts listening, handing what arrives to `sink`. With
    /// Redis unreachable the server runs alone, says so once, and
    /// reconnects by itself.
    pub fn start(&self, sink: Arc<dyn Sink>) -> Result<(), BusError> {
        let _ = self.core.sink.set(sink);
        let events: Arc<Core> = Arc::clone(&self.core);
        self.core.link.start(Arc::clone(&events) as Arc<dyn LinkEvents>).map_err(BusError::Thread)?;
        self.core.subscriber.start(events as Arc<dyn SubEvents>).map_err(BusError::Thread)?;
        Ok(())
    }

    /// Stops sending and listening (at the end of a shutdown).
    pub fn stop(&self) {
        self.core.stopped.store(true, Ordering::Relaxed);
        self.core.subscriber.stop();
        self.core.link.stop();
    }

    /// Whether `user` is known to be on another server.
    pub fn knows(&self, user: i32) -> bool {
        self.core.locations.get(user).is_some()
    }

    /// Sends each message to the server its user is on; returns those whose
    /// user is nowhere known (to be stored). Never waits for Redis.
    pub fn send(&self, messages: Vec<Outgoing>) -> Vec<Outgoing> {
        let homeless = self.queue(messages);
        self.flush();
        homeless
    }

    /// As [`Bus::send`], but what is sent waits for the next [`Bus::flush`],
    /// so that many messages travel in one write: an event loop queues
    /// during its turn and flushes at the end of it.
    pub fn queue(&self, messages: Vec<Outgoing>) -> Vec<Outgoing> {
        let locations = &self.core.locations;
        self.core.queue(messages.into_iter().map(|m| (locations.get(m.to), m)))
    }

    /// Sends messages to `server`, which holds their users (as the `online`
    /// table says).
    /// With a destination named, nothing is homeless: each is sent or held.
    pub fn send_to(&self, server: &str, messages: Vec<Outgoing>) {
        let dest = self.core.locations.intern(server);
        let homeless = self.core.queue(messages.into_iter().map(|m| (Some(Arc::clone(&dest)), m)));
        debug_assert!(homeless.is_empty(), "a message with a destination came back homeless");
        self.flush();
    }

    /// For a message of this server's to a user who is here now: if
    /// messages of this server's to them are still on their way to the
    /// server they came from, this one waits behind those (and is given
    /// back through [`Sink::reroute`] once they are resolved), so it cannot
    /// overtake them. `Err` gives it back at once when nothing is pending.
    pub fn hold_if_pending(&self, message: Outgoing) -> Result<(), Outgoing> {
        if !self.any_pending() {
            return Err(message);
        }
        self.core.out().hold(message)
    }

    /// Whether any user has messages pending (one atomic load).
    pub fn any_pending(&self) -> bool {
        self.core.routed.load(Ordering::Relaxed) > 0
    }

    /// Writes what was queued, in one write.
    pub fn flush(&self) {
        self.core.with_outbound(|_| Vec::new());
    }

    /// Reports messages from [`Sink::deliver`] done: written to their user,
    /// stored, or forwarded. The acknowledgements go out with the next
    /// [`Bus::flush`].
    pub fn complete(&self, tags: &[Tag]) {
        if tags.is_empty() {
            return;
        }
        let acks = self.core.inbound.lock().complete(tags);
        if acks.is_empty() {
            return;
        }
        let mut outbound = self.core.out();
        for ack in acks {
            let text = envelope::ack(&self.core.me, ack.upto, &ack.also);
            outbound.push_command(&[b"PUBLISH", inbox(&self.core.namespace, &ack.origin).as_bytes(), text.as_bytes()]);
        }
    }

    /// Tells every server that `users` are logged in here now (`online`) or
    /// no longer; one publish for all of them.
    pub fn announce(&self, online: bool, users: &[i32]) {
        if users.is_empty() {
            return;
        }
        let text = envelope::presence(&self.core.me, online, users);
        self.core.out().push_command(&[b"PUBLISH", self.core.presence.as_bytes(), text.as_bytes()]);
        self.flush();
    }

    /// Tells every server that `group` gained a member, so they read its
    /// members again. Best effort: a lost notice is made good when their
    /// cached list expires (`service::members::FRESH_FOR`).
    pub fn group_changed(&self, group: i32) {
        let text = envelope::group_changed(&self.core.me, group);
        self.core.out().push_command(&[b"PUBLISH", self.core.presence.as_bytes(), text.as_bytes()]);
        self.flush();
    }

    /// Tells `server` that `user`'s session there is replaced by one here.
    /// Best effort: if it is lost, that server's heartbeat finds the
    /// `online` row is no longer its own and ends the session within 3 s.
    pub fn replace_session(&self, server: &str, user: i32) {
        let text = envelope::replaced(&self.core.me, user);
        self.core.out().push_command(&[b"PUBLISH", inbox(&self.core.namespace, server).as_bytes(), text.as_bytes()]);
        self.flush();
    }

    /// Replaces what is known of where users are by a fresh read of the
    /// `online` table: (user, server) of users on live servers.
    pub fn set_locations(&self, entries: Vec<(i32, String)>) {
        let me = &*self.core.me;
        self.core.locations.replace(entries.into_iter().filter(|(_, s)| s != me).collect());
    }

    /// The servers with a fresh heartbeat, read at `asked_at`: any other
    /// server heard of before then is dead, and what was sent to it comes
    /// back to be stored.
    pub fn servers_alive(&self, alive: &[String], asked_at: Instant) {
        let dead: Vec<Arc<str>> = self
            .core
            .locations
            .known_before(asked_at)
            .into_iter()
            .filter(|s| **s != *self.core.me && !alive.iter().any(|a| **a == **s))
            .collect();
        let mut back = Vec::new();
        for server in dead {
            back.extend(self.server_dead(&server));
        }
        self.core.give_back(back);
    }

    /// `server` is dead (its heartbeat stopped): forgets where its users
    /// were and returns what was sent to it and not acknowledged, oldest
    /// first, for the caller to store before its users are released.
    pub fn server_dead(&self, server: &str) -> Vec<Outgoing> {
        self.core.locations.forget(server);
        self.core.out().dead(server)
    }

    /// At shutdown: waits up to `wait` for what was sent to be
    /// acknowledged, then returns what still is not (to be stored).
    pub fn drain(&self, wait: std::time::Duration) -> Vec<Outgoing> {
        let until = Instant::now() + wait;
        while self.in_flight() > 0 && Instant::now() < until {
            std::thread::sleep(link::TICK);
        }
        self.core.out().take_all()
    }

    /// Messages sent and not yet acknowledged, or waiting.
    pub fn in_flight(&self) -> usize {
        self.core.out().in_flight()
    }
}

/// The outbound state under its lock; on release it publishes how many
/// users have messages pending, so that the common case (none) costs local
/// deliveries one atomic load (see [`Bus::hold_if_pending`]).
struct OutboundGuard<'a> {
    guard: parking_lot::MutexGuard<'a, Outbound>,
    routed: &'a AtomicUsize,
}

impl std::ops::Deref for OutboundGuard<'_> {
    type Target = Outbound;
    fn deref(&self) -> &Outbound {
        &self.guard
    }
}

impl std::ops::DerefMut for OutboundGuard<'_> {
    fn deref_mut(&mut self) -> &mut Outbound {
        &mut self.guard
    }
}

impl Drop for OutboundGuard<'_> {
    fn drop(&mut self) {
        self.routed.store(self.guard.routed_users(), Ordering::Relaxed);
    }
}

impl Core {
    fn out(&self) -> OutboundGuard<'_> {
        OutboundGuard { guard: self.outbound.lock(), routed: &self.routed }
    }

    /// Encodes each message for its destination under the outbound lock;
    /// returns those with nowhere to go.
    fn queue(&self, messages: impl Iterator<Item = (Option<Arc<str>>, Outgoing)>) -> Vec<Outgoing> {
        let now = Instant::now();
        let mut homeless = Vec::new();
        let mut outbound = self.out();
        for (dest, msg) in messages {
            if let Err(msg) = outbound.send(dest.as_ref(), msg, now) {
                homeless.push(msg);
            }
        }
        homeless
    }

    fn write(&self, wire: &[u8]) {
        if !wire.is_empty() && !self.stopped.load(Ordering::Relaxed) {
            self.link.write(wire);
        }
    }

    /// Writes what `f` and earlier queueing encoded, while holding the
    /// outbound lock (the lock orders the streams' writes), and gives back
    /// what `f` returned.
    fn with_outbound(&self, f: impl FnOnce(&mut Outbound) -> Vec<Outgoing>) {
        let back = {
            let mut outbound = self.out();
            let back = f(&mut outbound);
            let wire = outbound.take_wire();
            self.write(&wire);
            back
        };
        self.give_back(back);
    }

    fn give_back(&self, messages: Vec<Outgoing>) {
        if messages.is_empty() {
            return;
        }
        if let Some(sink) = self.sink.get() {
            sink.reroute(messages);
        }
    }

    fn locate(&self) -> impl Fn(i32) -> Option<Arc<str>> + '_ {
        |user| self.locations.get(user)
    }
}

impl LinkEvents for Core {
    fn link_up(&self) {
        let now = Instant::now();
        self.with_outbound(|out| out.up(&self.locate(), now));
        if let Some(sink) = self.sink.get() {
            sink.resync();
        }
    }

    fn link_down(&self, _why: &str) {
        self.out().down(Instant::now());
    }

    fn tick(&self, now: Instant) {
        self.with_outbound(|out| out.tick(now));
    }
}

impl SubEvents for Core {
    fn subscribed(&self) {
        if self.outage_logged.swap(false, Ordering::Relaxed) {
            crate::info!("Redis is back; cross-server routing resumed");
        }
        if let Some(sink) = self.sink.get() {
            sink.resync();
        }
    }

    fn unsubscribed(&self, why: &str) {
        if !self.outage_logged.swap(true, Ordering::Relaxed) && !self.stopped.load(Ordering::Relaxed) {
            crate::warn!("Redis unavailable ({why}); running alone, storing what cannot be routed, retrying");
        }
    }

    fn batch(&self, messages: Vec<(Vec<u8>, Vec<u8>)>) {
        let now = Instant::now();
        let mut incoming = Vec::new();
        let mut reacks: Vec<(Arc<str>, u64)> = Vec::new();
        let mut back = Vec::new();
        for (_channel, payload) in &messages {
            let Ok(text) = std::str::from_utf8(payload) else { continue };
            match envelope::parse(text) {
                Some(Envelope::Data(d)) => {
                    let (verdict, origin) = self.inbound.lock().receive(d.origin, d.seq, d.floor);
                    match verdict {
                        Verdict::Take => incoming.push(Incoming {
                            to: d.to,
                            frame: d.frame.into(),
                            keep: d.keep,
                            hops: d.hops,
                            tag: Tag { origin, seq: d.seq },
                        }),
                        Verdict::Duplicate { reack: Some(upto) } => {
                            // One per origin and batch, however many resends came.
                            match reacks.iter_mut().find(|(o, _)| *o == origin) {
                                Some(entry) => entry.1 = entry.1.max(upto),
                                None => reacks.push((origin, upto)),
                            }
                        }
                        Verdict::Duplicate { reack: None } | Verdict::Gap => {}
                    }
                }
                Some(Envelope::Ack { from, upto, also }) => {
                    back.extend(self.out().acked(from, upto, &also, &self.locate(), now));
                }
                Some(Envelope::Presence { server, online, users }) if server != &*self.me => {
                    if online {
                        self.locations.online(server, &users);
                    } else {
                        self.locations.offline(server, &users);
                    }
                }
                Some(Envelope::Replaced { user, .. }) => {
                    if let Some(sink) = self.sink.get() {
                        sink.replaced(user);
                    }
                }
                Some(Envelope::GroupChanged { from, group }) if from != &*self.me => {
                    if let Some(sink) = self.sink.get() {
                        sink.group_changed(group);
                    }
                }
                Some(Envelope::GroupChanged { .. }) => {}
                Some(Envelope::Presence { .. }) | None => {}
            }
        }
        self.with_outbound(|out| {
            for (origin, upto) in reacks {
                let ack = envelope::ack(&self.me, upto, &[]);
                out.push_command(&[b"PUBLISH", inbox(&self.namespace, &origin).as_bytes(), ack.as_bytes()]);
            }
            Vec::new()
        });
        if let Some(sink) = self.sink.get()
            && !incoming.is_empty()
        {
            sink.deliver(incoming);
        }
        self.give_back(back);
    }
}
