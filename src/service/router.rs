//! Getting a frame to a user: live if they are online on this server, over
//! the bus if they are online on another, else into the offline store.

use std::collections::BTreeMap;
use std::sync::Arc;

use mysql::TxOpts;

use super::context::Ctx;
use super::error::ServiceError;
use super::message::{Delivery, Message};
use super::registry::Found;
use crate::model::{offline_message, user};

/// Sends each delivery live or stores it; an error means the unsent part
/// was not stored, or only for some receivers (the caller answers 500).
pub fn route(ctx: &Arc<Ctx>, deliveries: Vec<Delivery>) -> Result<(), ServiceError> {
    let remote = send_where_online(ctx, deliveries);
    if remote.is_empty() {
        return Ok(());
    }
    store(ctx, remote)
}

/// Delivers to users online here or on another server; returns the rest
/// that must be kept.
pub fn send_where_online(ctx: &Ctx, deliveries: Vec<Delivery>) -> Vec<Delivery> {
    let mut elsewhere = Vec::new();
    let mut missed = Vec::new();
    for delivery in deliveries {
        match send_live(ctx, &delivery) {
            Found::Live(()) => {}
            // Not over the bus: it would come back to this server; stored
            // on the user's lane, behind their going offline.
            Found::Leaving if delivery.keep => missed.push(delivery),
            Found::Leaving => {}
            Found::Absent => elsewhere.push(delivery),
        }
    }
    if elsewhere.is_empty() {
        return missed;
    }
    let frames: Vec<String> = elsewhere.iter().map(bus_frame).collect();
    let messages: Vec<(i32, &str)> = elsewhere.iter().zip(&frames).map(|(d, f)| (d.to, f.as_str())).collect();
    let taken = ctx.bus.publish(&messages);
    missed.extend(elsewhere.into_iter().zip(taken).filter(|(d, taken)| d.keep && !taken).map(|(d, _)| d));
    missed
}

/// Stores deliveries for users found offline, each on its receiver's lane
/// (behind anything re-routed to them earlier), and waits for all.
pub fn store(ctx: &Arc<Ctx>, deliveries: Vec<Delivery>) -> Result<(), ServiceError> {
    let mut by_lane: BTreeMap<usize, Vec<Delivery>> = BTreeMap::new();
    for delivery in deliveries {
        by_lane.entry(ctx.lanes.of(delivery.to)).or_default().push(delivery);
    }
    let mut result = Ok(());
    for (lane, batch) in by_lane {
        let lane_ctx = Arc::clone(ctx);
        match ctx.lanes.run(lane, move || store_on_lane(&lane_ctx, batch)) {
            Some(Ok(())) => {}
            Some(Err(e)) => result = Err(e),
            None => result = Err(ServiceError::Stopping),
        }
    }
    result
}

/// Stores on the current lane. The receivers' rows are locked first, and
/// whether they are online is asked again under the lock: a login takes the
/// same lock around "go online, read the store", so a message is either in
/// that read or delivered live after it.
fn store_on_lane(ctx: &Ctx, deliveries: Vec<Delivery>) -> Result<(), ServiceError> {
    let ids: Vec<i32> = deliveries.iter().map(|d| d.to).collect();
    ctx.db.run(|conn| {
        let mut tx = conn.start_transaction(TxOpts::default())?;
        user::lock(&mut tx, &ids)?;
        let left = send_where_online(ctx, deliveries);
        let rows: Vec<(i32, &str)> = left.iter().map(|d| (d.to, &*d.payload)).collect();
        offline_message::insert_many(&mut tx, &rows)?;
        tx.commit()?;
        Ok(())
    })?;
    Ok(())
}

/// Hands a delivery to the receiver's connection if they are online here.
/// Queued under the registry's lock, so a close of that connection, which
/// marks the user leaving and then takes what is queued for it, misses
/// nothing; the loop is woken after the lock is released.
pub fn send_live(ctx: &Ctx, delivery: &Delivery) -> Found<()> {
    match ctx.registry.with_conn(delivery.to, |conn| ctx.remote.queue(conn, Message::Deliver(delivery.clone()))) {
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
    if !delivery.keep {
        return;
    }
    let job_ctx = Arc::clone(ctx);
    ctx.lanes.spawn(delivery.to, move || {
        if let Err(e) = route(&job_ctx, vec![delivery]) {
            eprintln!("a message for an offline user could not be stored: {e}");
        }
    });
}

/// A delivery as it travels over the bus: one byte saying whether it must
/// be kept if its receiver is gone, then the frame.
fn bus_frame(delivery: &Delivery) -> String {
    let flag = if delivery.keep { 'k' } else { 'p' };
    format!("{flag}{}", delivery.payload)
}

/// A delivery that came over the bus for `to`; None if it is not ours.
pub fn from_bus(to: i32, frame: &str) -> Option<Delivery> {
    let keep = match frame.as_bytes().first()? {
        b'k' => true,
        b'p' => false,
        _ => return None,
    };
    Some(Delivery { to, payload: frame[1..].into(), keep })
}

/// Delivers a message another server published for a user of this one.
pub fn receive(ctx: &Arc<Ctx>, to: i32, frame: &str) {
    if let Some(delivery) = from_bus(to, frame)
        && !matches!(send_live(ctx, &delivery), Found::Live(()))
    {
        reroute(ctx, delivery);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_frames_carry_the_keep_flag() {
        let d = Delivery { to: 3, payload: "{\"msgid\":6}".into(), keep: true };
        let back = from_bus(3, &bus_frame(&d)).unwrap();
        assert_eq!((back.to, &*back.payload, back.keep), (3, "{\"msgid\":6}", true));
        let p = Delivery { keep: false, ..d };
        assert!(!from_bus(3, &bus_frame(&p)).unwrap().keep);
        assert!(from_bus(3, "x{}").is_none());
        assert!(from_bus(3, "").is_none());
    }
}
