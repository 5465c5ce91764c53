//! Getting a frame to a user: live if they are online on this server, over
//! the bus if they are online on another, else into the offline store.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use mysql::TxOpts;

use super::context::{ALIVE, Ctx};
use super::error::ServiceError;
use super::message::{Delivery, Message};
use super::registry::Found;
use crate::bus::{Incoming, Outgoing, Sink, Tag};
use crate::db::DbError;
use crate::model::{offline_message, online, user};
use crate::net::Wake;

/// Sends each delivery live or stores it; an error means the unsent part
/// was not stored, or only for some receivers (the caller answers 500).
pub fn route(ctx: &Arc<Ctx>, deliveries: Vec<Delivery>) -> Result<(), ServiceError> {
    let missed = send_where_online(ctx, deliveries);
    if missed.is_empty() {
        return Ok(());
    }
    store(ctx, missed)
}

/// Receivers whose offline store was full (`--max-stored`): the message
/// was not kept for them, and its sender is told (errno 106).
#[derive(Debug, Default)]
pub struct Full(pub Vec<i32>);

/// [`route`] for a sender's new message: what must be stored is refused
/// for receivers whose store is full.
pub fn route_new(ctx: &Arc<Ctx>, deliveries: Vec<Delivery>) -> Result<Full, ServiceError> {
    let missed = send_where_online(ctx, deliveries);
    if missed.is_empty() {
        return Ok(Full::default());
    }
    store_new(ctx, missed)
}

/// Delivers to users online here, hands to the bus those known to be on
/// another server, and returns the rest that must be kept. A delivery that
/// came over the bus is not sent on by what this server believes: it goes
/// to the store, which asks MySQL where its user really is.
pub fn send_where_online(ctx: &Ctx, deliveries: Vec<Delivery>) -> Vec<Delivery> {
    send_where_online_by(ctx, deliveries, |out| ctx.bus.send(out))
}

/// [`send_where_online`] from an event loop: what goes over the bus is
/// written at the end of the loop's turn, never waiting for Redis.
pub fn send_from_loop(ctx: &Ctx, deliveries: Vec<Delivery>) -> Vec<Delivery> {
    send_where_online_by(ctx, deliveries, |out| ctx.bus.queue(out))
}

fn send_where_online_by(
    ctx: &Ctx,
    deliveries: Vec<Delivery>,
    bus: impl FnOnce(Vec<Outgoing>) -> Vec<Outgoing>,
) -> Vec<Delivery> {
    let mut elsewhere: Vec<Outgoing> = Vec::new();
    let mut missed = Vec::new();
    let mut wakes = Vec::new();
    let alone = deliveries.len() == 1;
    for delivery in deliveries {
        match queue_live(ctx, &delivery, alone) {
            Found::Live(wake) => wakes.push(wake),
            // Not over the bus: it would come back to this server; stored
            // on the user's lane, behind their going offline.
            Found::Leaving | Found::Absent if delivery.tag.is_some() => missed.push(delivery),
            Found::Leaving if delivery.keep => missed.push(delivery),
            Found::Leaving => {}
            Found::Absent => elsewhere.push(delivery.outgoing()),
        }
    }
    ctx.remote.wake_all(wakes);
    if !elsewhere.is_empty() {
        missed.extend(bus(elsewhere).into_iter().filter(|m| m.keep).map(Delivery::from));
    }
    missed
}

/// Stores deliveries for users found offline, each on its receiver's lane
/// (behind anything re-routed to them earlier), and waits for all. These
/// were accepted already (re-routed, given back by the bus): the store's
/// cap does not apply to them.
pub fn store(ctx: &Arc<Ctx>, deliveries: Vec<Delivery>) -> Result<(), ServiceError> {
    store_on_lanes(ctx, deliveries, None).map(drop)
}

/// [`store`] for a sender's new messages, refused for full stores.
pub fn store_new(ctx: &Arc<Ctx>, deliveries: Vec<Delivery>) -> Result<Full, ServiceError> {
    store_on_lanes(ctx, deliveries, Some(ctx.limits.max_stored))
}

/// Jobs waiting on one lane past which a sender's new message is refused
/// (errno 501) instead of queued: MySQL is not keeping up.
const LANE_HIGH_WATER: usize = 4096;

fn store_on_lanes(ctx: &Arc<Ctx>, deliveries: Vec<Delivery>, cap: Option<u64>) -> Result<Full, ServiceError> {
    let mut by_lane: BTreeMap<usize, Vec<Delivery>> = BTreeMap::new();
    for delivery in deliveries {
        by_lane.entry(ctx.lanes.of(delivery.to)).or_default().push(delivery);
    }
    if cap.is_some() && by_lane.keys().any(|&lane| ctx.lanes.waiting(lane) >= LANE_HIGH_WATER) {
        return Err(ServiceError::Busy);
    }
    let mut result = Ok(Full::default());
    for (lane, batch) in by_lane {
        let lane_ctx = Arc::clone(ctx);
        match ctx.lanes.run(lane, move || store_on_lane(&lane_ctx, batch, cap)) {
            Some(Ok(full)) => {
                if let Ok(all) = &mut result {
                    all.0.extend(full.0);
                }
            }
            Some(Err(e)) => result = Err(e),
            None => result = Err(ServiceError::Stopping),
        }
    }
    result
}

/// Tries of a store that fails before giving up (the first wait, doubling).
const STORE_RETRIES: u32 = 3;
const STORE_RETRY_AFTER: std::time::Duration = std::time::Duration::from_millis(200);

/// Stores deliveries (see [`store`]) without waiting: one job and one
/// transaction per lane, queued behind what is on that lane already.
pub fn store_later(ctx: &Arc<Ctx>, deliveries: Vec<Delivery>) {
    let mut by_lane: BTreeMap<usize, Vec<Delivery>> = BTreeMap::new();
    for delivery in deliveries {
        by_lane.entry(ctx.lanes.of(delivery.to)).or_default().push(delivery);
    }
    for (lane, batch) in by_lane {
        let job_ctx = Arc::clone(ctx);
        ctx.lanes.spawn_on(lane, move || {
            let count = batch.len();
            if let Err(e) = store_on_lane(&job_ctx, batch, None) {
                crate::error!("{count} messages could not be stored: {e}");
            }
        });
    }
}

/// Stores on the current lane. The receivers' rows are locked first, and
/// where they are is asked again under the lock: a login takes the same
/// lock around "go online, read the store", so a message is either in that
/// read, or delivered live here, or sent to the server that holds the user
/// (after the transaction: no Redis call under a row lock), once at most
/// for what came over the bus. With a `cap`, receivers with that many
/// messages stored already get none of these (returned as full).
fn store_on_lane(ctx: &Ctx, deliveries: Vec<Delivery>, cap: Option<u64>) -> Result<Full, ServiceError> {
    let ids: Vec<i32> = deliveries.iter().map(|d| d.to).collect();
    let tags: Vec<Tag> = deliveries.iter().filter_map(|d| d.tag.clone()).collect();
    let mut attempt = 0;
    let stored = loop {
        let tried = ctx.db.run_retrying(|conn| {
            let mut tx = conn.start_transaction(TxOpts::default())?;
            user::lock(&mut tx, &ids)?;
            let mut rows: Vec<(i32, &str)> = Vec::new();
            let mut absent = Vec::new();
            let mut wakes = Vec::new();
            for d in &deliveries {
                match queue_live(ctx, d, deliveries.len() == 1) {
                    Found::Live(wake) => wakes.push(wake),
                    Found::Leaving if d.keep => rows.push((d.to, &d.payload)),
                    Found::Leaving => {}
                    Found::Absent => absent.push(d),
                }
            }
            ctx.remote.wake_all(wakes);
            let absent_ids: Vec<i32> = absent.iter().map(|d| d.to).collect();
            let holders = online::holders(&mut tx, &absent_ids, &ctx.server_id, ALIVE)?;
            let mut forwards: HashMap<String, Vec<Outgoing>> = HashMap::new();
            for d in absent {
                match holders.get(&d.to) {
                    Some(server) if *server != ctx.server_id && d.hops == 0 => {
                        let mut out = d.outgoing();
                        out.hops = if d.tag.is_some() { 1 } else { 0 };
                        forwards.entry(server.clone()).or_default().push(out);
                    }
                    _ if d.keep => rows.push((d.to, &d.payload)),
                    _ => {}
                }
            }
            let full = match cap {
                Some(max) => keep_within(&mut tx, &mut rows, max)?,
                None => Full::default(),
            };
            offline_message::insert_many(&mut tx, &rows)?;
            tx.commit()?;
            Ok((forwards, full))
        });
        match tried {
            // A MySQL blip: this lane waits for it, as what it stores must
            // keep its order anyway.
            Err(_) if attempt < STORE_RETRIES => {
                std::thread::sleep(STORE_RETRY_AFTER * (1 << attempt));
                attempt += 1;
            }
            done => break done,
        }
    };
    // Not stored: what came over the bus stays unacknowledged, so that its
    // sender gives it back and stores it itself (outbound's silence limit).
    let (forwards, full) = stored?;
    for (server, messages) in forwards {
        // Its user is held by a live server: the bus keeps it until that
        // server takes it, or gives it back if the server dies.
        ctx.bus.send_to(&server, messages);
    }
    ctx.bus.complete(&tags);
    ctx.bus.flush();
    Ok(full)
}

/// Drops the rows of receivers whose store holds `max` messages (counting
/// the rows before them), under their row locks; returns those receivers.
fn keep_within(tx: &mut mysql::Transaction<'_>, rows: &mut Vec<(i32, &str)>, max: u64) -> Result<Full, DbError> {
    let mut receivers: Vec<i32> = rows.iter().map(|r| r.0).collect();
    receivers.sort_unstable();
    receivers.dedup();
    let mut counts = offline_message::counts(tx, &receivers)?;
    let mut full = Vec::new();
    rows.retain(|&(to, _)| {
        let count = counts.entry(to).or_default();
        if *count >= max {
            full.push(to);
            return false;
        }
        *count += 1;
        true
    });
    full.sort_unstable();
    full.dedup();
    Ok(Full(full))
}

/// Hands a delivery to the receiver's connection if they are online here
/// (into its output, or queued to its loop); the result must then be passed
/// to `Remote::wake`. Done under the registry's lock, so a close of that
/// connection, which marks the user leaving and then takes what is queued
/// for it, misses nothing: a frame is either in the output before the
/// close takes what the socket never took, or queued before the close takes
/// the queue.
///
/// A frame for one receiver (`alone`) is written into their output from
/// this thread; one of many (a group message, a presence notice to the
/// followers) goes through each receiver's loop, which then writes in one
/// go what all senders had for them during its turn.
fn queue_live(ctx: &Ctx, delivery: &Delivery, alone: bool) -> Found<Wake> {
    // A user who just came here from another server may still have messages
    // from this server on their way there: this one waits behind them.
    if delivery.tag.is_none()
        && ctx.bus.any_pending()
        && ctx.registry.get(delivery.to).is_some()
        && ctx.bus.hold_if_pending(delivery.outgoing()).is_ok()
    {
        return Found::Live(Wake::none());
    }
    // Written straight to the socket unless it came over the bus: that one
    // is tracked until the socket has taken it, which its loop reports.
    let direct = (alone && delivery.tag.is_none()).then(|| (direct_key(delivery.to), delivery.payload.as_bytes()));
    ctx.registry.with_conn(delivery.to, |conn, writer| {
        ctx.remote.deliver(conn, writer, direct, || Message::Deliver(delivery.clone()))
    })
}

/// The key under which a session takes its user's chat directly (see
/// `Outbox::accept_direct`).
pub fn direct_key(user: i32) -> u64 {
    u64::from(user as u32)
}

/// Hands a delivery to the receiver's connection if they are online here.
pub fn send_live(ctx: &Ctx, delivery: &Delivery) -> Found<()> {
    match queue_live(ctx, delivery, true) {
        Found::Live(wake) => {
            ctx.remote.wake(wake);
            Found::Live(())
        }
        Found::Leaving => Found::Leaving,
        Found::Absent => Found::Absent,
    }
}

/// A delivery that missed its connection (the user logged out meanwhile):
/// route it again on the receiver's lane, behind the logout of the closed
/// connection, so the user's messages are stored in the order sent.
pub fn reroute(ctx: &Arc<Ctx>, delivery: Delivery) {
    if !delivery.keep && delivery.tag.is_none() {
        return;
    }
    let job_ctx = Arc::clone(ctx);
    ctx.lanes.spawn(delivery.to, move || {
        if let Err(e) = route(&job_ctx, vec![delivery]) {
            crate::error!("a message for an offline user could not be stored: {e}");
        }
    });
}

/// The service as the bus sees it.
pub struct BusSink {
    /// Set once the context exists (it holds the bus, which holds this).
    pub ctx: std::sync::OnceLock<std::sync::Weak<Ctx>>,
}

impl BusSink {
    fn ctx(&self) -> Option<Arc<Ctx>> {
        self.ctx.get().and_then(std::sync::Weak::upgrade)
    }
}

impl Sink for BusSink {
    /// Queues what came for users online here, waking each loop once for
    /// the batch; the rest goes to its user's lane to be stored, or
    /// forwarded once to where the user really is.
    fn deliver(&self, batch: Vec<Incoming>) {
        let Some(ctx) = self.ctx() else { return };
        let mut wakes = Vec::new();
        for incoming in batch {
            let delivery = Delivery::from(incoming);
            match queue_live(&ctx, &delivery, false) {
                Found::Live(wake) => wakes.push(wake),
                Found::Leaving | Found::Absent => reroute(&ctx, delivery),
            }
        }
        ctx.remote.wake_all(wakes);
    }

    /// Straight to the store path, which asks MySQL where each user is.
    fn reroute(&self, messages: Vec<Outgoing>) {
        let Some(ctx) = self.ctx() else { return };
        store_later(&ctx, messages.into_iter().filter(|m| m.keep).map(Delivery::from).collect());
    }

    fn replaced(&self, user: i32) {
        let Some(ctx) = self.ctx() else { return };
        let job_ctx = Arc::clone(&ctx);
        // Only if the user's row is no longer this server's: a late notice
        // must not end a newer session of theirs here.
        ctx.jobs.spawn(move || {
            let holder = job_ctx.db.run(|c| online::holder(c, user, &job_ctx.server_id, ALIVE));
            if let (Ok(holder), Some(conn)) = (holder, job_ctx.registry.get(user))
                && holder.is_some_and(|h| h != job_ctx.server_id)
            {
                job_ctx.remote.send(conn, Message::Replaced);
            }
        });
    }

    fn group_changed(&self, group: i32) {
        if let Some(ctx) = self.ctx() {
            ctx.members.changed(group);
        }
    }

    fn resync(&self) {
        let Some(ctx) = self.ctx() else { return };
        // Notices of new members may have been missed while Redis was away.
        ctx.members.clear();
        let job_ctx = Arc::clone(&ctx);
        ctx.jobs.spawn(move || {
            job_ctx.bus.announce(true, &job_ctx.registry.users());
            match job_ctx.db.run(|c| online::everyone(c, ALIVE)) {
                Ok(entries) => job_ctx.bus.set_locations(entries),
                Err(e) => crate::warn!("cannot read who is online where ({e}); learning it from the bus"),
            }
        });
    }
}
