//! What the bench reads about processes from `/proc`: CPU time, resident
//! memory, and which process listens on a port; plus the open-file limit.

use std::fs;
use std::io;

/// Clock ticks per second of `utime`/`stime` in `/proc/PID/stat`.
pub fn ticks_per_sec() -> u64 {
    // SAFETY: sysconf takes no pointers.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as u64 } else { 100 }
}

/// User plus system CPU time of all threads of `pid`, in microseconds
/// (`pid` 0 means this process).
pub fn cpu_us(pid: u32) -> io::Result<u64> {
    let path = if pid == 0 { "/proc/self/stat".to_string() } else { format!("/proc/{pid}/stat") };
    let text = fs::read_to_string(path)?;
    // The command name (field 2) may hold spaces and parentheses; the
    // numeric fields start after its last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).ok_or_else(|| bad("no ')' in stat"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let field = |n: usize| -> io::Result<u64> {
        fields.get(n - 3).and_then(|f| f.parse().ok()).ok_or_else(|| bad("short stat"))
    };
    Ok((field(14)? + field(15)?) * 1_000_000 / ticks_per_sec())
}

/// Resident memory of `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> io::Result<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| bad("no VmRSS in status"))
}

/// Context switches (voluntary and not) of all threads of `pid`: how often
/// its threads slept and woke, the cost that grows with wake-ups per message.
pub fn context_switches(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for task in fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let Ok(text) = fs::read_to_string(task.path().join("status")) else { continue };
        total += text
            .lines()
            .filter_map(|l| {
                l.strip_prefix("voluntary_ctxt_switches:").or(l.strip_prefix("nonvoluntary_ctxt_switches:"))
            })
            .filter_map(|v| v.trim().parse::<u64>().ok())
            .sum::<u64>();
    }
    Ok(total)
}

/// The command name of `pid` (`/proc/PID/comm`: at most 15 bytes).
pub fn comm(pid: u32) -> io::Result<String> {
    Ok(fs::read_to_string(format!("/proc/{pid}/comm"))?.trim_end().to_string())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// The process listening on TCP `port` (any address), if this user may see
/// it: the socket's inode from `/proc/net/tcp{,6}`, then the process holding
/// a descriptor to that inode.
pub fn listener_pid(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"].iter().find_map(|table| listening_inode(table, port))?;
    let target = format!("socket:[{inode}]");
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            if fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target.as_str()) {
                return Some(pid);
            }
        }
    }
    None
}

/// Inode of the socket in LISTEN state (0A) on `port` in one table.
fn listening_inode(table: &str, port: u16) -> Option<u64> {
    let text = fs::read_to_string(table).ok()?;
    let want = format!(":{port:04X}");
    text.lines().skip(1).find_map(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (local, state, inode) = (cols.get(1)?, cols.get(3)?, cols.get(9)?);
        (local.ends_with(&want) && *state == "0A").then(|| inode.parse().ok()).flatten()
    })
}

/// Raises the open-file limit to at least `needed` descriptors, the hard
/// limit too if allowed (as root); returns the soft limit now in force.
pub fn raise_fd_limit(needed: u64) -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write one live rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_max < needed {
            let raised = libc::rlimit { rlim_cur: needed, rlim_max: needed };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Ok(needed);
            }
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        assert!(super::rss_kib(std::process::id()).unwrap() > 0);
        let before = super::cpu_us(0).unwrap();
        let spin = std::time::Instant::now();
        while spin.elapsed() < std::time::Duration::from_millis(30) {}
        assert!(super::cpu_us(0).unwrap() > before);
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(super::context_switches(std::process::id()).unwrap() > 0);
        assert!(!super::comm(std::process::id()).unwrap().is_empty());
    }

    #[test]
    fn finds_the_listener_of_a_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert_eq!(super::listener_pid(port), Some(std::process::id()));
    }
}
