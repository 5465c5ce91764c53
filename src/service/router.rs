//! Getting a frame to a user: live to their connection if they are online
//! here, else into the offline store.

use super::context::Ctx;
use super::error::ServiceError;
use super::message::{Delivery, Message};
use crate::model::offline_message;

/// Sends each delivery live or stores it. Stores first, in one statement,
/// so that a storage failure refuses the message to everyone (the caller
/// answers 500) rather than delivering it to some.
pub fn route(ctx: &Ctx, deliveries: Vec<Delivery>) -> Result<(), ServiceError> {
    let (live, offline): (Vec<Delivery>, Vec<Delivery>) =
        deliveries.into_iter().partition(|d| !d.keep || ctx.registry.get(d.to).is_some());
    let mut live = live;
    if !offline.is_empty() {
        let ids: Vec<i32> = offline.iter().map(|d| d.to).collect();
        // Under the receivers' locks, a user is either still offline (and
        // will read this at login) or has logged in (and gets it live).
        let _guards = ctx.locks.lock_many(&ids);
        let (now_online, store): (Vec<Delivery>, Vec<Delivery>) =
            offline.into_iter().partition(|d| ctx.registry.get(d.to).is_some());
        if !store.is_empty() {
            let rows: Vec<(i32, &str)> = store.iter().map(|d| (d.to, &*d.payload)).collect();
            ctx.db.run(|c| offline_message::insert_many(c, &rows))?;
        }
        live.extend(now_online);
    }
    for delivery in live {
        send_live(ctx, delivery);
    }
    Ok(())
}

/// Hands a delivery to the receiver's connection, if they are online.
pub fn send_live(ctx: &Ctx, delivery: Delivery) -> bool {
    match ctx.registry.get(delivery.to) {
        Some(conn) => {
            ctx.remote.send(conn, Message::Deliver(delivery));
            true
        }
        None => false,
    }
}

/// A delivery that missed its connection (the user logged out meanwhile):
/// try again on a job thread, storing it if it must be kept.
pub fn reroute(ctx: &std::sync::Arc<Ctx>, delivery: Delivery) {
    if !delivery.keep {
        return;
    }
    let ctx2 = std::sync::Arc::clone(ctx);
    ctx.jobs.spawn(move || {
        if let Err(e) = route(&ctx2, vec![delivery]) {
            eprintln!("a message for an offline user could not be stored: {e}");
        }
    });
}
