//! What a run is measured against: the raw relay (spawned as a child
//! process, or given by address) and the ChatServer under test.

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use super::procfs;

/// Where the ChatServers' Redis listens unless told otherwise (the default
/// of `CHAT_REDIS_URL`): where its pid is looked for when `--redis-pid` is
/// not given.
pub const REDIS_ADDR: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6379));

/// Which server a target is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The raw relay: the floor.
    Relay,
    /// The ChatServer under test.
    Chat,
}

/// One server (or pair of servers) to run a workload against.
pub struct Target {
    pub kind: Kind,
    pub addr: SocketAddr,
    /// Second server: the far side of each pair connects here.
    pub addr2: Option<SocketAddr>,
    /// Processes whose CPU and memory are measured (one per server).
    pub pids: Vec<u32>,
    /// The Redis two ChatServers reach each other through (only with
    /// `addr2`), if known; its CPU is reported apart from the servers'.
    pub redis_pid: Option<u32>,
    /// A relay this run started; stopped when the target is dropped.
    _child: Option<RelayChild>,
}

impl Target {
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Relay => "relay",
            Kind::Chat => "server",
        }
    }

    /// Address for side 0 (first server) or side 1 (second, if any).
    pub fn addr_for(&self, side: usize) -> SocketAddr {
        match (side, self.addr2) {
            (1, Some(addr2)) => addr2,
            _ => self.addr,
        }
    }

    /// The ChatServer at `addr` (and `addr2`); pids from the flags or, if
    /// not given, from the processes listening on those ports. With
    /// `addr2`, the same for the Redis between them, at [`REDIS_ADDR`].
    pub fn chat(addr: SocketAddr, addr2: Option<SocketAddr>, pids: &[u32], redis_pid: Option<u32>) -> Target {
        let pids = if pids.is_empty() {
            [Some(addr), addr2].into_iter().flatten().filter_map(listener_pid).collect()
        } else {
            pids.to_vec()
        };
        // With one server both ends of every message are local: Redis is not
        // on the messages' path, so its CPU would say nothing about them.
        let redis_pid = addr2.and_then(|_| redis_pid.or_else(|| listener_pid(REDIS_ADDR)));
        Target { kind: Kind::Chat, addr, addr2, pids, redis_pid, _child: None }
    }

    /// A relay already running at `addr`.
    pub fn relay_at(addr: SocketAddr, pid: Option<u32>) -> Target {
        let pid = pid.or_else(|| listener_pid(addr));
        Target { kind: Kind::Relay, addr, addr2: None, pids: pid.into_iter().collect(), redis_pid: None, _child: None }
    }

    /// Starts `ChatBench relay-server 127.0.0.1:0 --threads N` as a child
    /// and waits for its address.
    pub fn spawn_relay(threads: usize) -> Result<Target, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
        let mut child = Command::new(exe)
            .args(["relay-server", "127.0.0.1:0", "--threads", &threads.to_string(), "--spawned"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start the relay: {e}"))?;
        let pid = child.id();
        let stdout = child.stdout.take().ok_or("the relay's stdout is not piped")?;
        // From here on, dropping `guard` stops the child on every error path.
        let mut guard = RelayChild { child, _stdout: None };
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let read = reader.read_line(&mut line).map_err(|e| format!("reading the relay's address: {e}"))?;
        let addr = line
            .trim()
            .strip_prefix("relay listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("the relay did not start (it printed {:?}, {read} bytes)", line.trim()))?;
        guard._stdout = Some(reader);
        Ok(Target { kind: Kind::Relay, addr, addr2: None, pids: vec![pid], redis_pid: None, _child: Some(guard) })
    }

    /// Starts the C relay (`PATH PORT THREADS`, by default `limit-relay`
    /// beside this executable) on a free port and waits until it accepts.
    pub fn spawn_limit_relay(path: Option<&Path>, threads: usize) -> Result<Target, String> {
        let exe = match path {
            Some(path) => path.to_path_buf(),
            None => {
                let me = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
                me.with_file_name("limit-relay")
            }
        };
        // A port free a moment ago; the relay refuses one in use, so a race
        // is an error, not a wrong measurement.
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        let child = Command::new(&exe)
            .args([port.to_string(), threads.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!("cannot start {} (./autobuild.sh builds it from ../shared/limit-relay): {e}", exe.display())
            })?;
        let pid = child.id();
        let mut guard = RelayChild { child, _stdout: None };
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(addr).is_err() {
            if Instant::now() >= deadline || guard.child.try_wait().ok().flatten().is_some() {
                return Err(format!("{} did not start listening on {addr}", exe.display()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Target { kind: Kind::Relay, addr, addr2: None, pids: vec![pid], redis_pid: None, _child: Some(guard) })
    }

    /// CPU time of the target's processes, microseconds (0 if unknown).
    pub fn cpu_us(&self) -> u64 {
        self.pids.iter().filter_map(|&pid| procfs::cpu_us(pid).ok()).sum()
    }

    /// Resident memory of the target's processes, KiB (None if unknown).
    pub fn rss_kib(&self) -> Option<u64> {
        if self.pids.is_empty() {
            return None;
        }
        self.pids.iter().map(|&pid| procfs::rss_kib(pid).ok()).sum()
    }

    /// Waits (up to `limit`) until the target uses under 5% of a core, so
    /// that one run's aftermath (a server logging out hundreds of users)
    /// does not land in the next run's measurement.
    pub fn wait_quiet(&self, limit: Duration) {
        if self.pids.is_empty() {
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        let deadline = Instant::now() + limit;
        let step = Duration::from_millis(250);
        let mut before = self.cpu_us();
        while Instant::now() < deadline {
            std::thread::sleep(step);
            let now = self.cpu_us();
            if now.saturating_sub(before) < step.as_micros() as u64 / 20 {
                return;
            }
            before = now;
        }
    }
}

/// The pid behind `addr`, the default of every pid flag: the process
/// listening on its port (on any address), if this user may see it.
fn listener_pid(addr: SocketAddr) -> Option<u32> {
    procfs::listener_pid(addr.port())
}

/// A relay process started by this run. Dropping it stops it: SIGTERM,
/// then SIGKILL if it has not ended within a few seconds.
struct RelayChild {
    child: Child,
    /// The rest of its stdout, kept open so a late line cannot hit a
    /// closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Drop for RelayChild {
    fn drop(&mut self) {
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child, not yet reaped (reaping
            // happens only below), so the pid cannot name another process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_)) | Err(_)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
