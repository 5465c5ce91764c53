//! The figures of the once-a-minute stats line: counters bumped where
//! things happen, read and reset by [`Reporter`].
//!
//! Counters on the hot path (frames in and out) are split over cache-line
//! sized cells, one per thread in turn, so the event loops never contend
//! for one line.

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Cells per hot counter; threads beyond this share cells.
const CELLS: usize = 16;

/// One cell on a cache line of its own.
#[repr(align(128))]
struct Cell(AtomicU64);

/// A counter many threads bump often.
pub struct Hot([Cell; CELLS]);

impl Hot {
    const fn new() -> Hot {
        Hot([const { Cell(AtomicU64::new(0)) }; CELLS])
    }

    pub fn add(&self, n: u64) {
        self.0[cell()].0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count since the last `take`, which starts it again from zero.
    fn take(&self) -> u64 {
        self.0.iter().map(|c| c.0.swap(0, Ordering::Relaxed)).sum()
    }
}

/// This thread's cell, handed out in turn at a thread's first use.
fn cell() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static CELL: usize = NEXT.fetch_add(1, Ordering::Relaxed) % CELLS;
    }
    CELL.with(|c| *c)
}

/// A counter bumped now and then.
pub struct Count(AtomicU64);

impl Count {
    const fn new() -> Count {
        Count(AtomicU64::new(0))
    }

    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn take(&self) -> u64 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// Frames read from clients.
pub static FRAMES_IN: Hot = Hot::new();
/// Frames queued for clients.
pub static FRAMES_OUT: Hot = Hot::new();
/// Offline messages written to MySQL.
pub static STORED: Count = Count::new();
/// Replies that carry an error (ERROR, or an ACK with errno other than 0).
pub static ERRORS: Count = Count::new();
/// Connections closed at once because `--max-conns` was reached.
pub static REFUSED: Count = Count::new();
/// Clients closed by the server: too large, too fast, idle, not reading,
/// too many failed logins.
pub static CUT_OFF: Count = Count::new();
/// Connections open now.
pub static CONNECTIONS: AtomicI64 = AtomicI64::new(0);

/// The stats line's figures over one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub connections: i64,
    pub users_online: usize,
    pub in_per_sec: f64,
    pub out_per_sec: f64,
    pub stored: u64,
    pub errors: u64,
    pub refused: u64,
    pub cut_off: u64,
}

impl Figures {
    /// Reads and resets the counters; rates are over `period`.
    pub fn take(period: Duration, users_online: usize) -> Figures {
        let secs = period.as_secs_f64().max(0.001);
        Figures {
            connections: CONNECTIONS.load(Ordering::Relaxed).max(0),
            users_online,
            in_per_sec: FRAMES_IN.take() as f64 / secs,
            out_per_sec: FRAMES_OUT.take() as f64 / secs,
            stored: STORED.take(),
            errors: ERRORS.take(),
            refused: REFUSED.take(),
            cut_off: CUT_OFF.take(),
        }
    }

    /// The line's text (after the timestamp and level).
    pub fn line(&self, period: Duration) -> String {
        format!(
            "stats: connections={} users_online={} msgs_in_per_s={:.2} msgs_out_per_s={:.2} \
             stored={} errors={} refused={} cut_off={} (counts over the last {} s)",
            self.connections,
            self.users_online,
            self.in_per_sec,
            self.out_per_sec,
            self.stored,
            self.errors,
            self.refused,
            self.cut_off,
            period.as_secs()
        )
    }
}

/// The thread that writes the stats line every period.
pub struct Reporter {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Reporter {
    /// Logs a line every `period`; `users_online` counts the users logged
    /// in on this server.
    pub fn start(period: Duration, users_online: impl Fn() -> usize + Send + 'static) -> std::io::Result<Reporter> {
        let (stop, stopped) = channel();
        let thread = std::thread::Builder::new().name("stats".into()).spawn(move || {
            run(period, &stopped, &users_online);
        })?;
        Ok(Reporter { stop, thread })
    }

    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn run(period: Duration, stopped: &Receiver<()>, users_online: &dyn Fn() -> usize) {
    // Counts from before the first period (the start) are not a rate.
    Figures::take(period, 0);
    let mut since = Instant::now();
    loop {
        match stopped.recv_timeout(period) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let now = Instant::now();
        let figures = Figures::take(now - since, users_online());
        since = now;
        crate::info!("{}", figures.line(period));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_add_up_over_threads_and_reset() {
        let threads: Vec<_> = (0..20).map(|_| std::thread::spawn(|| FRAMES_IN.add(5))).collect();
        for t in threads {
            t.join().unwrap();
        }
        STORED.add(3);
        let f = Figures::take(Duration::from_secs(10), 7);
        assert_eq!(f.in_per_sec, 10.0);
        assert_eq!(f.stored, 3);
        assert_eq!(f.users_online, 7);
        let line = f.line(Duration::from_secs(10));
        assert!(line.starts_with("stats: connections="), "{line}");
        assert!(line.contains("msgs_in_per_s=10.00") && line.contains("stored=3"), "{line}");
        assert_eq!(Figures::take(Duration::from_secs(1), 0).stored, 0);
    }
}
