//! Lanes: single-threaded queues keyed by the receiving user. Storing
//! messages for a user, re-routing messages that missed their connection,
//! and taking a closed connection's user offline run on that user's lane,
//! one after another, so a user's stored messages keep the order they were
//! sent in. (A LOGOUT stores nothing, so it runs on a job thread.)

use std::cell::Cell;
use std::sync::mpsc::sync_channel;

use super::jobs::{Jobs, Priority};

thread_local! {
    /// The lane this thread runs, so work already on a lane runs inline.
    static CURRENT_LANE: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The lanes, one thread each.
pub struct Lanes {
    /// Lane `i` serves the users with `id % len == i`.
    lanes: Vec<Jobs>,
}

impl Lanes {
    pub fn new(count: usize) -> std::io::Result<Lanes> {
        let lanes = (0..count.max(1))
            .map(|i| Jobs::new(1, &format!("lane{i}"), Priority::Normal))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Lanes { lanes })
    }

    /// The lane of `user`.
    pub fn of(&self, user: i32) -> usize {
        user.unsigned_abs() as usize % self.lanes.len()
    }

    /// The number of lanes.
    pub fn count(&self) -> usize {
        self.lanes.len()
    }

    /// Queues `job` on `user`'s lane.
    pub fn spawn(&self, user: i32, job: impl FnOnce() + Send + 'static) {
        self.spawn_on(self.of(user), job);
    }

    /// Queues `job` on lane `lane`.
    pub fn spawn_on(&self, lane: usize, job: impl FnOnce() + Send + 'static) {
        let Some(jobs) = self.lanes.get(lane) else { return };
        jobs.spawn(move || {
            CURRENT_LANE.with(|c| c.set(Some(lane)));
            job();
        });
    }

    /// Jobs waiting on lane `lane`.
    pub fn waiting(&self, lane: usize) -> usize {
        self.lanes.get(lane).map_or(0, Jobs::waiting)
    }

    /// Runs `job` on lane `lane` and waits for its result; inline when this
    /// thread is that lane already. None if the lane is shut down.
    pub fn run<T: Send + 'static>(&self, lane: usize, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        if CURRENT_LANE.with(Cell::get) == Some(lane) {
            return Some(job());
        }
        let (tx, rx) = sync_channel(1);
        self.lanes[lane].spawn(move || {
            CURRENT_LANE.with(|c| c.set(Some(lane)));
            let _ = tx.send(job());
        });
        rx.recv().ok()
    }

    /// Runs what is queued, then stops the lanes.
    pub fn shutdown(&self) {
        for lane in &self.lanes {
            lane.shutdown();
        }
    }
}
