//! The acceptor: it takes new connections and hands them, round robin, to
//! the worker loops that will own them.

use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use super::config::NetConfig;
use super::error::NetError;
use super::event_loop::EventLoop;
use super::handler::Handler;
use super::remote::{Remote, Task};
use super::sys::{self, Epoll, EventFd};
use crate::log::{Every, also};
use crate::stats;

/// At most one line per period for refused connections and failed
/// accepts, which a flood of connections repeats at will.
static REFUSED: Every = Every::new(Duration::from_secs(10));
static ACCEPT_FAILED: Every = Every::new(Duration::from_secs(10));

const LISTEN_TOKEN: u64 = 0;
const STOP_TOKEN: u64 = 1;
/// Output the kernel may hold unsent per connection: enough to keep a
/// fast reader's link busy between two turns of its loop.
const KERNEL_UNSENT: usize = 128 * 1024;

/// Asks a running server to stop; safe to trigger from any thread.
#[derive(Clone)]
pub struct StopHandle {
    /// Readable once a stop was asked for.
    fd: Arc<EventFd>,
}

impl StopHandle {
    pub fn new() -> std::io::Result<StopHandle> {
        Ok(StopHandle { fd: Arc::new(EventFd::new()?) })
    }

    pub fn stop(&self) {
        self.fd.notify();
    }
}

/// A bound listening socket, ready to run.
pub struct Server {
    /// The listening socket (non-blocking).
    listener: TcpListener,
    /// Limits for the loops and the acceptor.
    config: NetConfig,
}

impl Server {
    pub fn bind(addr: SocketAddr, config: NetConfig) -> Result<Server, NetError> {
        let listener = TcpListener::bind(addr).map_err(|source| NetError::Bind { addr, source })?;
        listener.set_nonblocking(true)?;
        sys::widen_backlog(listener.as_fd())?;
        Ok(Server { listener, config })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Starts the worker loops and accepts until `stop` fires; then every
    /// loop closes its connections, and this returns once they have ended.
    pub fn run<H: Handler>(
        self,
        handler: Arc<H>,
        remote: Remote<H::Message>,
        stop: StopHandle,
    ) -> Result<(), NetError> {
        let live = Arc::new(AtomicUsize::new(0));
        let mut workers = Vec::new();
        let mut result = Ok(());
        for index in 0..remote.workers() {
            let started =
                EventLoop::new(index, Arc::clone(&handler), remote.clone(), self.config.clone(), &live, &stop)
                    .and_then(|event_loop| {
                        thread::Builder::new().name(format!("worker-{index}")).spawn(move || event_loop.run())
                    });
            match started {
                Ok(worker) => workers.push(worker),
                Err(e) => {
                    // The loops already running are stopped below.
                    result = Err(e.into());
                    break;
                }
            }
        }
        if result.is_ok() {
            result = self.accept_until_stopped(&remote, &live, &stop);
        }
        for index in 0..remote.workers() {
            remote.post(index, Task::Shutdown);
        }
        for worker in workers {
            let failed = match worker.join() {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => NetError::Io(e),
                Err(_) => NetError::Io(std::io::Error::other("a worker loop panicked")),
            };
            // The first failure is the one reported; the server stops anyway.
            if result.is_ok() {
                result = Err(failed);
            }
        }
        result
    }

    fn accept_until_stopped<M: Send + 'static>(
        &self,
        remote: &Remote<M>,
        live: &AtomicUsize,
        stop: &StopHandle,
    ) -> Result<(), NetError> {
        let epoll = Epoll::new()?;
        epoll.add(self.listener.as_raw_fd(), sys::READ_EVENTS, LISTEN_TOKEN)?;
        epoll.add(stop.fd.raw(), sys::READ_EVENTS, STOP_TOKEN)?;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 2];
        let mut next = 0;
        loop {
            let n = epoll.wait(&mut events, -1)?;
            if events[..n].iter().any(|ev| ev.u64 == STOP_TOKEN) {
                return Ok(());
            }
            loop {
                let fd = match sys::accept(self.listener.as_fd()) {
                    Ok(fd) => fd,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                        // Out of descriptors: the pending connection stays
                        // queued and the level-triggered listener would wake
                        // us at once; pause instead of spinning.
                        if let Some(skipped) = ACCEPT_FAILED.ready() {
                            crate::warn!("connections refused: accept failed ({e}); pausing{}", also(skipped));
                        }
                        std::thread::sleep(Duration::from_millis(50));
                        break;
                    }
                    Err(e) => {
                        // An aborted handshake or the like: the listener is
                        // fine, try again on the next event.
                        if let Some(skipped) = ACCEPT_FAILED.ready() {
                            crate::warn!("accept failed: {e}{}", also(skipped));
                        }
                        break;
                    }
                };
                if live.load(Ordering::Relaxed) >= self.config.max_conns {
                    stats::REFUSED.add(1);
                    if let Some(skipped) = REFUSED.ready() {
                        let max = self.config.max_conns;
                        crate::warn!("connection refused: --max-conns {max} connections are open{}", also(skipped));
                    }
                    continue;
                }
                if let Err(e) = sys::set_nodelay(fd.as_fd()) {
                    crate::warn!("cannot set TCP_NODELAY: {e}");
                }
                if let Err(e) = sys::set_dead_peer(fd.as_fd(), self.config.dead_peer()) {
                    crate::warn!("cannot set TCP keepalive: {e}");
                }
                if let Err(e) = sys::limit_unsent(fd.as_fd(), KERNEL_UNSENT) {
                    crate::warn!("cannot set TCP_NOTSENT_LOWAT: {e}");
                }
                live.fetch_add(1, Ordering::Relaxed);
                remote.post(next, Task::Accept(fd));
                next = (next + 1) % remote.workers();
            }
        }
    }
}
