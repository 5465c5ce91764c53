//! Limits of the network layer.

use std::time::Duration;

/// Settings every loop and the acceptor share.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Worker loops (`--threads`).
    pub threads: usize,
    /// Largest frame a client may send (`--max-frame`).
    pub max_frame: usize,
    /// A connection silent this long is closed (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Pending output past which a client that does not read is cut off.
    pub max_output: usize,
    /// Open connections past which new ones are closed at once (`--max-conns`).
    pub max_conns: usize,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_frame: 64 * 1024,
            idle_timeout: Duration::from_secs(300),
            max_output: 4 * 1024 * 1024,
            max_conns: 100_000,
        }
    }
}
