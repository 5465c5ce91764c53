//! Thin wrappers over the Linux syscalls the reactor uses.
//!
//! Each wrapper retries `EINTR` and turns `-1` into `io::Error`, so callers
//! only see `WouldBlock` (nothing more to do now) or a real failure.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// Runs a syscall until it is not interrupted by a signal.
fn retry(mut call: impl FnMut() -> isize) -> io::Result<usize> {
    loop {
        let ret = call();
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Takes ownership of a descriptor a syscall just returned.
fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by no one else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An epoll instance.
pub struct Epoll {
    /// The epoll descriptor itself; closed on drop.
    fd: OwnedFd,
}

/// Interest used for every connection: edge-triggered reads and writes.
///
/// Edge-triggered, registered once: a connection is never re-armed with
/// `epoll_ctl`, so the loop must read until `WouldBlock` (or remember that it
/// stopped early) and keep a write pending until `EPOLLOUT` comes back.
pub const CONN_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

/// Interest for the wake-up eventfd and listening sockets: level-triggered
/// reads, so a pending wake-up or connection is never lost.
pub const READ_EVENTS: u32 = libc::EPOLLIN as u32;

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        owned(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) }).map(|fd| Epoll { fd })
    }

    /// Registers `fd` with `events`; `token` comes back in each event.
    pub fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        let epfd = self.fd.as_raw_fd();
        // SAFETY: `ev` is a valid epoll_event that outlives the call.
        retry(|| unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) as isize }).map(drop)
    }

    /// Waits for events; returns how many of `events` were filled in.
    pub fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        let max = events.len().min(i32::MAX as usize) as i32;
        let ptr = events.as_mut_ptr();
        // SAFETY: `ptr` points to `max` writable epoll_event slots.
        retry(|| unsafe { libc::epoll_wait(self.fd.as_raw_fd(), ptr, max, timeout_ms) as isize })
    }
}

/// An eventfd used to wake a loop blocked in `epoll_wait`.
pub struct EventFd {
    /// The eventfd; non-blocking so draining it never blocks.
    fd: OwnedFd,
}

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        owned(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) }).map(|fd| EventFd { fd })
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Adds one to the counter, making the fd readable.
    pub fn notify(&self) {
        let one: u64 = 1;
        let fd = self.fd.as_raw_fd();
        // SAFETY: writes 8 bytes from a live u64. A full counter (EAGAIN) is
        // already readable, so the error can be ignored.
        let _ = retry(|| unsafe { libc::write(fd, (&one as *const u64).cast(), 8) });
    }

    /// Resets the counter so the level-triggered fd stops reporting.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        let fd = self.fd.as_raw_fd();
        // SAFETY: reads at most 8 bytes into a live u64. EAGAIN means the
        // counter was already zero.
        let _ = retry(|| unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) });
    }
}

/// Accepts one connection as a non-blocking, close-on-exec socket.
pub fn accept(listener: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
    // SAFETY: null address pointers are allowed: we do not want the peer.
    let fd = retry(|| unsafe {
        libc::accept4(listener.as_raw_fd(), std::ptr::null_mut(), std::ptr::null_mut(), flags) as isize
    })?;
    owned(fd as libc::c_int)
}

/// Sets one integer socket option.
fn set_int_option(fd: BorrowedFd<'_>, level: libc::c_int, name: libc::c_int, value: libc::c_int) -> io::Result<()> {
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    let raw = fd.as_raw_fd();
    // SAFETY: passes a pointer to a live c_int and its exact size.
    retry(|| unsafe { libc::setsockopt(raw, level, name, (&value as *const libc::c_int).cast(), len) as isize })
        .map(drop)
}

/// Turns off Nagle's algorithm: chat messages are small and must leave at
/// once (the original C++ server's 40 ms stalls came from leaving it on).
pub fn set_nodelay(fd: BorrowedFd<'_>) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Lets the kernel keep at most `bytes` of this socket's output not yet
/// sent (past that the socket is not writable): the rest waits in the
/// connection's own buffer, where a stalled reader is seen (the send
/// timeout) and what it never got can be stored for its user.
pub fn limit_unsent(fd: BorrowedFd<'_>, bytes: usize) -> io::Result<()> {
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_NOTSENT_LOWAT, bytes.min(i32::MAX as usize) as libc::c_int)
}

/// How the kernel finds out that a peer's host is gone.
#[derive(Clone, Copy, Debug)]
pub struct DeadPeer {
    /// Quiet time (nothing received) before the first keepalive probe.
    pub idle: std::time::Duration,
    /// Time between unanswered probes.
    pub interval: std::time::Duration,
    /// Unanswered probes after which the connection fails.
    pub probes: u32,
}

impl DeadPeer {
    /// How long after the last sign of life the peer is declared dead.
    pub fn limit(&self) -> std::time::Duration {
        self.idle + self.interval * self.probes
    }
}

/// Probes a quiet peer with TCP keepalives, and bounds how long sent data
/// may stay unacknowledged (`TCP_USER_TIMEOUT`, as keepalives are not sent
/// while data is in flight): a dead host makes the socket fail with
/// ETIMEDOUT, a live but silent one answers the probes and stays.
pub fn set_dead_peer(fd: BorrowedFd<'_>, dead: DeadPeer) -> io::Result<()> {
    // Linux refuses keepalive times over 32767 s.
    let secs = |d: std::time::Duration| d.as_secs().clamp(1, 32767) as libc::c_int;
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs(dead.idle))?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs(dead.interval))?;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT, dead.probes.clamp(1, 127) as libc::c_int)?;
    let millis = dead.limit().as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, millis)
}

/// Reads what the socket has, up to `buf.len()` bytes.
pub fn read(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, exclusively borrowed slice of `buf.len()` bytes.
    retry(|| unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) })
}

/// Writes as much of `buf` as the socket takes now.
pub fn write(fd: BorrowedFd<'_>, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live slice of `buf.len()` readable bytes. MSG_NOSIGNAL
    // turns a write to a closed peer into EPIPE instead of SIGPIPE.
    retry(|| unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
}

/// Lets `listener` queue as many pending connections as the kernel allows
/// (`SOMAXCONN`, capped by `net.core.somaxconn`), so a reconnect storm is
/// not met with dropped SYNs; calling `listen` again on a listening socket
/// only changes its backlog.
pub fn widen_backlog(listener: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: listen takes a descriptor, kept open by the borrow, and an int.
    retry(|| unsafe { libc::listen(listener.as_raw_fd(), libc::SOMAXCONN) as isize }).map(drop)
}

/// Raises the soft open-file limit to the hard limit, so that many
/// connections fit; returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write one live rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
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
