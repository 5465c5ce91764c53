//! Limits of the network layer.

use std::time::Duration;

use super::sys::DeadPeer;

/// Unanswered keepalive probes after which a quiet peer is dead.
const DEAD_PEER_PROBES: u32 = 5;
/// Longest wait between probes: a dead peer is found within a minute of
/// the idle timeout.
const DEAD_PEER_INTERVAL: Duration = Duration::from_secs(10);

/// Settings every loop and the acceptor share.
#[derive(Clone, Debug)]
pub struct NetConfig {
    /// Worker loops (`--threads`).
    pub threads: usize,
    /// Largest frame a client may send (`--max-frame`).
    pub max_frame: usize,
    /// After this long without data the peer's host is probed at the TCP
    /// level; it is closed only if it does not answer (`--idle-timeout`).
    pub idle_timeout: Duration,
    /// Pending output that makes no progress this long closes the
    /// connection: its client stopped reading (`--send-timeout`).
    pub send_timeout: Duration,
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
            send_timeout: Duration::from_secs(30),
            max_output: 4 * 1024 * 1024,
            max_conns: 100_000,
        }
    }
}

impl NetConfig {
    /// The keepalive probing of quiet connections; a short idle timeout
    /// (in tests) probes as often.
    pub fn dead_peer(&self) -> DeadPeer {
        DeadPeer {
            idle: self.idle_timeout,
            interval: DEAD_PEER_INTERVAL.min(self.idle_timeout),
            probes: DEAD_PEER_PROBES,
        }
    }
}
