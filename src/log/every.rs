//! At most one log line per period for an event that may repeat at will
//! (a flood of connections, of wrong passwords): the others are counted and
//! the next line says how many there were.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A period and what was left out during it; one `static` per kind of event.
pub struct Every {
    /// The shortest time between two lines, in milliseconds.
    period_ms: u64,
    /// When the next line may be written, in milliseconds since [`start`].
    next_ms: AtomicU64,
    /// Events left out since the last line.
    skipped: AtomicU64,
}

impl Every {
    pub const fn new(period: Duration) -> Every {
        Every { period_ms: period.as_millis() as u64, next_ms: AtomicU64::new(0), skipped: AtomicU64::new(0) }
    }

    /// `Some(events left out since the last line)` when this event gets a
    /// line; `None` (and counted) when it does not.
    pub fn ready(&self) -> Option<u64> {
        let now = start().elapsed().as_millis() as u64 + 1;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self.next_ms.compare_exchange(next, now + self.period_ms, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            return Some(self.skipped.swap(0, Ordering::Relaxed));
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The end of a line for `skipped` events left out: empty for none.
pub fn also(skipped: u64) -> String {
    match skipped {
        0 => String::new(),
        n => format!(" (and {n} more like it since the last such line)"),
    }
}

/// The process's own clock origin for periods.
fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_and_the_rest_counted() {
        let every = Every::new(Duration::from_secs(3600));
        assert_eq!(every.ready(), Some(0));
        for _ in 0..5 {
            assert_eq!(every.ready(), None);
        }
        let now = every.next_ms.load(Ordering::Relaxed);
        every.next_ms.store(now - 3_600_000, Ordering::Relaxed);
        assert_eq!(every.ready(), Some(5));
        assert_eq!(also(0), "");
        assert!(also(5).contains("5 more"));
    }
}
