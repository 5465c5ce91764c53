//! What this server sent to others and they have not acknowledged yet.
//!
//! Each destination server gets a numbered stream. A message stays here
//! until the destination acknowledges it (its user's socket took it, or it
//! was stored or forwarded), and is sent again if no acknowledgement comes;
//! the destination drops what it already has, by number. A message is
//! given back to the service (to be stored) when its destination is dead,
//! when Redis has been gone too long, or when the destination has been
//! silent far too long.
//!
//! Order per receiving user: while a user's messages to one server are
//! unacknowledged, their later messages for another server (the user moved)
//! wait here, so they cannot overtake.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::envelope::{self, Data};
use super::resp;

/// First resend of an unacknowledged message; doubles up to [`MAX_RTO`]
/// while none comes, and starts again at every acknowledgement.
const RTO: Duration = Duration::from_millis(300);
const MAX_RTO: Duration = Duration::from_secs(2);
/// With Redis gone this long, what waits is given back to be stored: a
/// restart of a few seconds rides through (the link retries every 0.5 s at
/// most); a longer outage does not hold messages hostage.
pub const DOWN_GIVE_BACK: Duration = Duration::from_secs(5);
/// A destination that acknowledges nothing for this long, with Redis up
/// here (it cannot hear Redis, or it hangs, or cannot store), has its
/// messages given back to be stored: far longer than any pause a failover
/// makes. (Should it deliver them after all, its user sees them twice.)
const SILENT_GIVE_BACK: Duration = Duration::from_secs(30);

/// A message for a user on another server.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub to: i32,
    /// The frame as the user receives it.
    pub frame: Arc<str>,
    /// Stored if the user is gone (chat), or dropped (presence).
    pub keep: bool,
    /// Servers it went through before.
    pub hops: u8,
}

/// One destination's stream.
struct Stream {
    /// Number of the next message.
    next_seq: u64,
    /// Everything up to this number is acknowledged (or given up).
    acked: u64,
    /// Sent, not acknowledged, oldest first.
    unacked: VecDeque<InFlight>,
    /// When the oldest unacknowledged message was last sent.
    sent_at: Instant,
    /// Current resend timeout.
    rto: Duration,
    /// The destination's inbox channel, named once.
    channel: String,
}

impl Stream {
    fn new(channel: String, now: Instant) -> Stream {
        Stream { next_seq: 1, acked: 0, unacked: VecDeque::new(), sent_at: now, rto: RTO, channel }
    }

    /// The oldest number still held (the receiver skips anything below).
    fn floor(&self) -> u64 {
        self.unacked.front().map_or(self.next_seq, |m| m.seq)
    }
}

/// A message sent and not yet acknowledged.
struct InFlight {
    seq: u64,
    msg: Outgoing,
    /// When it was first sent.
    since: Instant,
}

/// Where a user's messages last went, while that is unresolved.
struct Route {
    dest: Arc<str>,
    /// Number of their last message there.
    last_seq: u64,
    /// Their messages waiting behind it (or behind an outage), oldest first.
    held: VecDeque<Outgoing>,
}

/// The state; the bus keeps it under one lock, which also orders the
/// writes, so each stream goes out in number order.
pub struct Outbound {
    /// This server's id, the origin of everything sent.
    me: Arc<str>,
    /// Channel namespace.
    namespace: Arc<str>,
    /// Every destination ever sent to: their numbers must never restart.
    streams: HashMap<Arc<str>, Stream>,
    /// Users with unresolved messages.
    routes: HashMap<i32, Route>,
    /// Redis has been unreachable since then.
    down_since: Option<Instant>,
    /// Commands encoded and not yet handed to the link.
    wire: Vec<u8>,
}

impl Outbound {
    pub fn new(me: Arc<str>, namespace: Arc<str>) -> Outbound {
        Outbound {
            me,
            namespace,
            streams: HashMap::new(),
            routes: HashMap::new(),
            down_since: Some(Instant::now()),
            wire: Vec::new(),
        }
    }

    /// Sends `msg` to `dest` (None: nowhere known), or holds it; gives it
    /// back when it has no destination and nothing of its user is pending.
    pub fn send(&mut self, dest: Option<&Arc<str>>, msg: Outgoing, now: Instant) -> Result<(), Outgoing> {
        if let Some(route) = self.routes.get(&msg.to) {
            let blocked = !route.held.is_empty()
                || (dest != Some(&route.dest)
                    && self.streams.get(&route.dest).is_some_and(|s| s.acked < route.last_seq));
            if blocked {
                if let Some(route) = self.routes.get_mut(&msg.to) {
                    route.held.push_back(msg);
                }
                return Ok(());
            }
        }
        let Some(dest) = dest else { return Err(msg) };
        if self.down_since.is_some() {
            let route = self.routes.entry(msg.to).or_insert_with(|| Route {
                dest: Arc::clone(dest),
                last_seq: 0,
                held: VecDeque::new(),
            });
            route.held.push_back(msg);
            return Ok(());
        }
        let namespace = &self.namespace;
        let stream = self.streams.entry(Arc::clone(dest)).or_insert_with(|| Stream::new(inbox(namespace, dest), now));
        let seq = stream.next_seq;
        stream.next_seq += 1;
        if stream.unacked.is_empty() {
            stream.sent_at = now;
        }
        let floor = stream.floor().min(seq);
        encode(&mut self.wire, &stream.channel, &self.me, seq, floor, &msg);
        let to = msg.to;
        stream.unacked.push_back(InFlight { seq, msg, since: now });
        self.routes.insert(to, Route { dest: Arc::clone(dest), last_seq: seq, held: VecDeque::new() });
        Ok(())
    }

    /// `from` acknowledged everything up to `upto`, and the numbers in
    /// `also`. Returns messages that were waiting on it and now have no
    /// destination.
    pub fn acked(
        &mut self,
        from: &str,
        upto: u64,
        also: &[u64],
        locate: &dyn Fn(i32) -> Option<Arc<str>>,
        now: Instant,
    ) -> Vec<Outgoing> {
        let Some(stream) = self.streams.get_mut(from) else { return Vec::new() };
        let before = stream.unacked.len();
        stream.unacked.retain(|m| m.seq > upto && !also.contains(&m.seq));
        let moved = upto > stream.acked;
        if moved {
            stream.acked = upto.min(stream.next_seq - 1);
        }
        if stream.unacked.len() < before {
            stream.rto = RTO;
            stream.sent_at = now;
        }
        if !moved {
            return Vec::new();
        }
        let done: Vec<i32> =
            self.routes.iter().filter(|(_, r)| &*r.dest == from && r.last_seq <= upto).map(|(&user, _)| user).collect();
        self.release(&done, locate, now)
    }

    /// Sends again what waited for `users`, each by where they are now.
    fn release(&mut self, users: &[i32], locate: &dyn Fn(i32) -> Option<Arc<str>>, now: Instant) -> Vec<Outgoing> {
        let mut homeless = Vec::new();
        for user in users {
            let Some(route) = self.routes.remove(user) else { continue };
            let dest = locate(*user);
            for msg in route.held {
                if let Err(msg) = self.send(dest.as_ref(), msg, now) {
                    homeless.push(msg);
                }
            }
        }
        homeless
    }

    /// Redis is reachable again: resend what is unacknowledged and send
    /// what waited for the outage.
    pub fn up(&mut self, locate: &dyn Fn(i32) -> Option<Arc<str>>, now: Instant) -> Vec<Outgoing> {
        self.down_since = None;
        for stream in self.streams.values_mut() {
            resend(&mut self.wire, &self.me, stream, now);
        }
        let waiting: Vec<i32> = self.routes.iter().filter(|(_, r)| !r.held.is_empty()).map(|(&u, _)| u).collect();
        self.release(&waiting, locate, now)
    }

    pub fn down(&mut self, now: Instant) {
        self.down_since.get_or_insert(now);
    }

    /// Resends what waited too long for an acknowledgement; past
    /// [`DOWN_GIVE_BACK`] of outage, gives everything back.
    pub fn tick(&mut self, now: Instant) -> Vec<Outgoing> {
        if let Some(since) = self.down_since {
            if now.duration_since(since) < DOWN_GIVE_BACK {
                return Vec::new();
            }
            let mut back = self.take_all();
            // Counted as forwarded already: the store keeps them rather
            // than handing them back to a bus that is down.
            for msg in &mut back {
                msg.hops = msg.hops.max(1);
            }
            return back;
        }
        let mut silent = Vec::new();
        for (dest, stream) in &mut self.streams {
            let Some(oldest) = stream.unacked.front().map(|m| m.since) else { continue };
            if now.duration_since(oldest) >= SILENT_GIVE_BACK {
                silent.push(Arc::clone(dest));
            } else if now.duration_since(stream.sent_at) >= stream.rto {
                resend(&mut self.wire, &self.me, stream, now);
                stream.rto = (stream.rto * 2).min(MAX_RTO);
            }
        }
        let mut back: Vec<Outgoing> = silent.iter().flat_map(|dest| self.dead(dest)).collect();
        // Stored, not forwarded: their server is alive, just silent.
        for msg in &mut back {
            msg.hops = msg.hops.max(1);
        }
        back
    }

    /// Everything unacknowledged or waiting, oldest first per destination
    /// (at shutdown, when nothing more will be acknowledged).
    pub fn take_all(&mut self) -> Vec<Outgoing> {
        let dests: Vec<Arc<str>> = self.streams.keys().cloned().collect();
        let mut back: Vec<Outgoing> = dests.iter().flat_map(|d| self.give_up(d)).collect();
        back.extend(self.routes.drain().flat_map(|(_, r)| r.held));
        back
    }

    /// `dest` is dead: everything for it comes back, oldest first, followed
    /// by what waited behind it.
    pub fn dead(&mut self, dest: &str) -> Vec<Outgoing> {
        let mut back = self.give_up(dest);
        let users: Vec<i32> = self.routes.iter().filter(|(_, r)| &*r.dest == dest).map(|(&u, _)| u).collect();
        for user in users {
            if let Some(route) = self.routes.remove(&user) {
                back.extend(route.held);
            }
        }
        back
    }

    /// Takes back the unacknowledged messages of `dest`; its numbers go on,
    /// and the floor tells it not to wait for these.
    fn give_up(&mut self, dest: &str) -> Vec<Outgoing> {
        let Some(stream) = self.streams.get_mut(dest) else { return Vec::new() };
        stream.acked = stream.next_seq - 1;
        stream.unacked.drain(..).map(|m| m.msg).collect()
    }

    /// Holds `msg` behind its user's pending messages, if they have any.
    pub fn hold(&mut self, msg: Outgoing) -> Result<(), Outgoing> {
        match self.routes.get_mut(&msg.to) {
            Some(route) => {
                route.held.push_back(msg);
                Ok(())
            }
            None => Err(msg),
        }
    }

    /// How many users have messages pending.
    pub fn routed_users(&self) -> usize {
        self.routes.len()
    }

    /// Appends a command of the caller's (an acknowledgement, a presence
    /// notice) to what goes out next, in order with the streams.
    pub fn push_command(&mut self, args: &[&[u8]]) {
        resp::encode(&mut self.wire, args);
    }

    /// Takes the encoded commands, to be written in this order.
    pub fn take_wire(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.wire)
    }

    /// Unacknowledged messages, for tests and the stats line.
    pub fn in_flight(&self) -> usize {
        self.streams.values().map(|s| s.unacked.len()).sum::<usize>()
            + self.routes.values().map(|r| r.held.len()).sum::<usize>()
    }
}

/// The channel of a server's inbox; the hash tag keeps it on one shard of a
/// Redis Cluster (sharded pub/sub).
pub fn inbox(namespace: &str, server: &str) -> String {
    format!("{{{namespace}:{server}}}:inbox")
}

fn encode(wire: &mut Vec<u8>, channel: &str, me: &str, seq: u64, floor: u64, msg: &Outgoing) {
    let mut payload = Vec::with_capacity(msg.frame.len() + 64);
    let data = Data { origin: me, seq, floor, to: msg.to, keep: msg.keep, hops: msg.hops, frame: &msg.frame };
    envelope::data(&mut payload, &data);
    resp::encode(wire, &[b"PUBLISH", channel.as_bytes(), &payload]);
}

fn resend(wire: &mut Vec<u8>, me: &str, stream: &mut Stream, now: Instant) {
    let floor = stream.floor();
    for m in &stream.unacked {
        encode(wire, &stream.channel, me, m.seq, floor, &m.msg);
    }
    stream.sent_at = now;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(to: i32, text: &str) -> Outgoing {
        Outgoing { to, frame: text.into(), keep: true, hops: 0 }
    }

    fn up(out: &mut Outbound, now: Instant) {
        assert!(out.up(&|_| None, now).is_empty());
    }

    #[test]
    fn unacknowledged_messages_are_resent_and_acks_release_them() {
        let now = Instant::now();
        let mut out = Outbound::new("me".into(), "ns".into());
        up(&mut out, now);
        let x: Arc<str> = "x".into();
        out.send(Some(&x), msg(1, "a"), now).unwrap();
        out.send(Some(&x), msg(1, "b"), now).unwrap();
        let wire = String::from_utf8(out.take_wire()).unwrap();
        assert!(
            wire.contains("{ns:x}:inbox") && wire.contains("D me 1 1 1 k0\na") && wire.contains("D me 2 1 1 k0\nb")
        );
        assert!(out.tick(now + RTO / 2).is_empty());
        assert!(out.take_wire().is_empty(), "resent before the timeout");
        out.tick(now + RTO);
        assert_eq!(String::from_utf8(out.take_wire()).unwrap(), wire, "not resent after the timeout");
        out.acked("x", 0, &[2], &|_| None, now);
        assert_eq!(out.in_flight(), 1, "a selective acknowledgement took more than its message");
        out.acked("x", 2, &[], &|_| None, now);
        assert_eq!(out.in_flight(), 0);
        out.tick(now + MAX_RTO * 4);
        assert!(out.take_wire().is_empty(), "resent after the acknowledgement");
    }

    #[test]
    fn a_user_who_moved_waits_for_the_old_server() {
        let now = Instant::now();
        let mut out = Outbound::new("me".into(), "ns".into());
        up(&mut out, now);
        let (x, y): (Arc<str>, Arc<str>) = ("x".into(), "y".into());
        out.send(Some(&x), msg(1, "first"), now).unwrap();
        out.send(Some(&y), msg(1, "second"), now).unwrap();
        out.send(Some(&y), msg(2, "other user"), now).unwrap();
        let wire = String::from_utf8(out.take_wire()).unwrap();
        assert!(wire.contains("first") && !wire.contains("second") && wire.contains("other user"));
        let y2 = y.clone();
        assert!(out.acked("x", 1, &[], &move |_| Some(y2.clone()), now).is_empty());
        assert!(String::from_utf8(out.take_wire()).unwrap().contains("D me 2 1 1 k0\nsecond"));
    }

    #[test]
    fn a_user_who_came_here_gets_local_messages_after_those_still_on_their_way() {
        let now = Instant::now();
        let mut out = Outbound::new("me".into(), "ns".into());
        up(&mut out, now);
        let x: Arc<str> = "x".into();
        out.send(Some(&x), msg(1, "first, to x"), now).unwrap();
        assert!(out.hold(msg(1, "second, local")).is_ok(), "not held behind the first");
        assert!(out.hold(msg(2, "no one pending")).is_err());
        // x takes the first (forwarding it here); the second comes back.
        let back: Vec<String> = out.acked("x", 1, &[], &|_| None, now).iter().map(|m| m.frame.to_string()).collect();
        assert_eq!(back, ["second, local"]);
        assert_eq!(out.routed_users(), 0);
    }

    #[test]
    fn a_dead_server_gives_its_messages_back_in_order_and_its_numbers_go_on() {
        let now = Instant::now();
        let mut out = Outbound::new("me".into(), "ns".into());
        up(&mut out, now);
        let x: Arc<str> = "x".into();
        for text in ["a", "b", "c"] {
            out.send(Some(&x), msg(1, text), now).unwrap();
        }
        let back: Vec<String> = out.dead("x").iter().map(|m| m.frame.to_string()).collect();
        assert_eq!(back, ["a", "b", "c"]);
        out.take_wire();
        out.send(Some(&x), msg(1, "d"), now).unwrap();
        assert!(String::from_utf8(out.take_wire()).unwrap().contains("D me 4 4 1 k0\nd"));
    }

    #[test]
    fn a_destination_silent_too_long_gives_its_messages_back() {
        let now = Instant::now();
        let mut out = Outbound::new("me".into(), "ns".into());
        up(&mut out, now);
        let x: Arc<str> = "x".into();
        out.send(Some(&x), msg(1, "a"), now).unwrap();
        assert!(out.tick(now + SILENT_GIVE_BACK / 2).is_empty(), "given back while it may still arrive");
        let back: Vec<String> = out.tick(now + SILENT_GIVE_BACK).iter().map(|m| m.frame.to_string()).collect();
        assert_eq!(back, ["a"]);
        assert_eq!(out.in_flight(), 0);
    }

    #[test]
    fn an_outage_holds_messages_then_gives_them_back() {
        let now = Instant::now();
        let mut out = Outbound::new("me".into(), "ns".into());
        let x: Arc<str> = "x".into();
        out.send(Some(&x), msg(1, "a"), now).unwrap();
        assert!(out.take_wire().is_empty(), "written while Redis is down");
        assert!(out.send(None, msg(2, "nowhere"), now).is_err());
        let back: Vec<String> = out.tick(now + DOWN_GIVE_BACK * 2).iter().map(|m| m.frame.to_string()).collect();
        assert_eq!(back, ["a"]);
    }
}
