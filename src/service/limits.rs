//! Flood control: a token bucket per connection, and a back-off per user id
//! for failed logins.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Limits the service enforces.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Messages a connection may send per second, sustained (`--rate`).
    pub rate: f64,
    /// Messages a connection may send at once before the rate applies.
    pub burst: f64,
    /// Failed logins on one connection before it is closed.
    pub max_login_failures: u32,
    /// Messages one user's offline store holds; past it a sender gets
    /// errno 106 (`--max-stored`).
    pub max_stored: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { rate: 200.0, burst: 400.0, max_login_failures: 5, max_stored: 10_000 }
    }
}

/// A connection's token bucket.
#[derive(Debug)]
pub struct Bucket {
    /// Messages that may be sent now.
    tokens: f64,
    /// When `tokens` was last topped up.
    refilled: Instant,
}

impl Bucket {
    pub fn new(limits: &Limits) -> Bucket {
        Bucket { tokens: limits.burst, refilled: Instant::now() }
    }

    /// Takes one token; false when the connection is over its rate.
    pub fn take(&mut self, limits: &Limits, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * limits.rate).min(limits.burst);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return true;
        }
        false
    }
}

/// Failed logins in a row before an id is made to wait.
const FREE_FAILURES: u32 = 3;
/// The longest wait.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// Entries kept before stale ones are swept, bounding the table's size.
const SWEEP_ABOVE: usize = 10_000;

/// Failed logins per user id: after a few, every attempt for that id is
/// refused unchecked for a doubling wait. Ids that do not exist are treated
/// exactly like ids that do.
#[derive(Default)]
pub struct LoginThrottle {
    /// id -> (failures in a row, refused until).
    failures: Mutex<HashMap<i32, (u32, Instant)>>,
}

impl LoginThrottle {
    /// How long logins for `id` are still refused unchecked; None when one
    /// may be checked now.
    pub fn held_back(&self, id: i32, now: Instant) -> Option<Duration> {
        let until = self.failures.lock().get(&id).map(|&(_, until)| until)?;
        Some(until.saturating_duration_since(now)).filter(|left| !left.is_zero())
    }

    pub fn failed(&self, id: i32, now: Instant) {
        let mut failures = self.failures.lock();
        if failures.len() > SWEEP_ABOVE {
            failures.retain(|_, &mut (_, until)| until > now);
        }
        let entry = failures.entry(id).or_insert((0, now));
        entry.0 += 1;
        if entry.0 >= FREE_FAILURES {
            let doublings = (entry.0 - FREE_FAILURES).min(6);
            let wait = (Duration::from_secs(1) * (1 << doublings)).min(MAX_WAIT);
            entry.1 = now + wait;
            let count = entry.0;
            // Logged without the lock held: a slow stderr must not stall logins.
            drop(failures);
            super::events::login_throttled(id, count, wait);
        }
    }

    pub fn succeeded(&self, id: i32) {
        self.failures.lock().remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_the_rate() {
        let limits = Limits { rate: 10.0, burst: 5.0, ..Limits::default() };
        let start = Instant::now();
        let mut bucket = Bucket::new(&limits);
        assert_eq!((0..8).filter(|_| bucket.take(&limits, start)).count(), 5);
        let later = start + Duration::from_millis(300);
        assert_eq!((0..8).filter(|_| bucket.take(&limits, later)).count(), 3);
    }

    #[test]
    fn throttle_waits_after_repeated_failures_and_forgets_on_success() {
        let t = LoginThrottle::default();
        let now = Instant::now();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed(7, now);
            assert_eq!(t.held_back(7, now), None);
        }
        t.failed(7, now);
        assert_eq!(t.held_back(7, now), Some(Duration::from_secs(1)));
        assert_eq!(t.held_back(8, now), None);
        assert_eq!(t.held_back(7, now + Duration::from_secs(2)), None);
        t.failed(7, now);
        assert_eq!(t.held_back(7, now), Some(Duration::from_secs(2)));
        t.succeeded(7);
        assert_eq!(t.held_back(7, now), None);
    }
}
