//! Chat payloads go back to the loop that allocated them to be freed.
//!
//! A payload is allocated on the sender's loop and dropped on the
//! receiver's. glibc then frees it into the sender's arena under that
//! arena's lock, against the sender's own allocations: in a flood between
//! two loops (perf), malloc, free and their futex waits took a fifth of the
//! server's CPU. So the receiving loop keeps the payloads it holds last and,
//! once per turn, hands each loop back its own, which it frees without
//! contention.

use std::cell::RefCell;
use std::sync::Arc;

use crate::net::{self, Remote};

use super::message::Message;

thread_local! {
    /// Per loop index, the payloads this loop is to hand back to it.
    static BACK: RefCell<Vec<Vec<Arc<str>>>> = const { RefCell::new(Vec::new()) };
}

/// Done with `payload` (allocated on loop `origin`): dropped now if that is
/// this loop or someone else still holds it, else kept to be handed back.
pub fn done_with(origin: Option<usize>, payload: Arc<str>) {
    let (Some(origin), Some(here)) = (origin, net::current_worker()) else { return };
    if origin == here || Arc::strong_count(&payload) != 1 {
        return;
    }
    BACK.with(|back| {
        let mut back = back.borrow_mut();
        if back.len() <= origin {
            back.resize_with(origin + 1, Vec::new);
        }
        back[origin].push(payload);
    });
}

/// Hands the payloads kept this turn back to their loops, without waking
/// them: a loop that sent them is busy, or soon wakes for its sockets.
pub fn hand_back(remote: &Remote<Message>) {
    BACK.with(|back| {
        for (origin, payloads) in back.borrow_mut().iter_mut().enumerate() {
            if !payloads.is_empty() {
                // Sized like this turn's: the next one is likely the same.
                let batch = std::mem::replace(payloads, Vec::with_capacity(payloads.len()));
                remote.run_on_next_turn(origin, move || drop(batch));
            }
        }
    });
}
