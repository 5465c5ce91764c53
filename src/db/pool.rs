//! A fixed-size pool of plain `mysql::Conn`s.
//!
//! The mutex guards only bookkeeping (the idle list and the open count): no
//! lock is held while connecting, pinging or querying, so one slow or dead
//! MySQL round trip never stalls the other workers' checkouts.

use std::fmt;
use std::mem::ManuallyDrop;
use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use mysql::{Conn, Opts};
use parking_lot::{Condvar, Mutex};

use super::DbError;
use super::connect::{connect, options, target};

/// A connection idle longer than this is pinged before it is handed out:
/// MySQL's wait_timeout or a restart may have closed it meanwhile.
const PING_AFTER: Duration = Duration::from_secs(30);

/// At most `size` connections to one database, shared by all threads.
pub struct Pool {
    /// Where and how to connect; cloned for every new connection.
    opts: Opts,
    /// The fixed upper bound on open connections (CHAT_DB_POOL).
    size: usize,
    /// How long `get` waits for a free connection before giving up.
    checkout_timeout: Duration,
    /// Idle time after which a connection is pinged before reuse.
    ping_after: Duration,
    /// The bookkeeping shared between threads.
    slots: Mutex<Slots>,
    /// Wakes one blocked `get` when a connection or a slot is freed.
    freed: Condvar,
}

/// What the mutex guards.
struct Slots {
    /// Connections not checked out; the most recently returned is last, so
    /// the busy ones stay warm and the spare ones age into a ping.
    idle: Vec<Idle>,
    /// Connections open or being opened (idle or checked out); never above
    /// `size`, counted before connecting so the lock need not be held then.
    open: usize,
}

/// A connection waiting in the pool.
struct Idle {
    /// The connection itself.
    conn: Conn,
    /// When it came back, to decide whether it needs a ping.
    since: Instant,
}

impl Pool {
    /// Builds a pool of at most `size` connections (at least one) to `url`.
    /// One connection is opened now, so a bad URL or an unreachable MySQL
    /// fails here with a clear message; the others open on demand.
    pub fn new(url: &str, size: usize, checkout_timeout: Duration) -> Result<Pool, DbError> {
        let opts = options(url)?;
        let first = connect(&opts)?;
        Ok(Pool {
            opts,
            size: size.max(1),
            checkout_timeout,
            ping_after: PING_AFTER,
            slots: Mutex::new(Slots { idle: vec![Idle { conn: first, since: Instant::now() }], open: 1 }),
            freed: Condvar::new(),
        })
    }

    /// Changes the idle time after which a connection is pinged before reuse
    /// (30 s by default); tests use zero to exercise the check.
    pub fn with_ping_after(mut self, idle: Duration) -> Pool {
        self.ping_after = idle;
        self
    }

    /// The fixed maximum number of connections.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Connections currently open, checked out or idle.
    pub fn open_count(&self) -> usize {
        self.slots.lock().open
    }

    /// Connections currently waiting in the pool.
    pub fn idle_count(&self) -> usize {
        self.slots.lock().idle.len()
    }

    /// Checks a connection out, waiting up to the checkout timeout while all
    /// `size` are in use; then `Unavailable`. A stale idle connection is
    /// pinged first and replaced if dead.
    pub fn get(&self) -> Result<PooledConn<'_>, DbError> {
        // No deadline at all if the timeout is too large to add to now.
        let deadline = Instant::now().checked_add(self.checkout_timeout);
        let mut slots = self.slots.lock();
        loop {
            if let Some(idle) = slots.idle.pop() {
                drop(slots);
                return self.revive(idle).map(|conn| self.wrap(conn));
            }
            if slots.open < self.size {
                slots.open += 1;
                drop(slots);
                return self.open_reserved().map(|conn| self.wrap(conn));
            }
            // Spurious wakeups and lost races just go round the loop again.
            match deadline {
                Some(deadline) if Instant::now() >= deadline => {
                    return Err(DbError::Unavailable(format!(
                        "timed out after {:?} waiting for one of {} connections to {}",
                        self.checkout_timeout,
                        self.size,
                        target(&self.opts)
                    )));
                }
                Some(deadline) => {
                    self.freed.wait_until(&mut slots, deadline);
                }
                None => self.freed.wait(&mut slots),
            }
        }
    }

    /// Like [`Pool::run`] for a transaction, run again (up to 3 times) when
    /// InnoDB picks it as a deadlock victim.
    pub fn run_retrying<T>(&self, mut f: impl FnMut(&mut Conn) -> Result<T, DbError>) -> Result<T, DbError> {
        let mut attempt = 1;
        loop {
            match self.run(&mut f) {
                Err(e) if e.is_deadlock() && attempt < 3 => attempt += 1,
                result => return result,
            }
        }
    }

    /// Checks a connection out, runs `f` on it and discards the connection
    /// if `f` found it dead.
    pub fn run<T>(&self, f: impl FnOnce(&mut Conn) -> Result<T, DbError>) -> Result<T, DbError> {
        self.get()?.run(f)
    }

    /// Hands out an idle connection, replacing it if it sat long enough to
    /// have died and a ping says it has. Its slot stays reserved throughout.
    fn revive(&self, mut idle: Idle) -> Result<Conn, DbError> {
        if idle.since.elapsed() < self.ping_after || idle.conn.ping().is_ok() {
            return Ok(idle.conn);
        }
        drop(idle);
        self.open_reserved()
    }

    /// Opens a connection for a slot already counted in `open`; gives the
    /// slot back if that fails.
    fn open_reserved(&self) -> Result<Conn, DbError> {
        connect(&self.opts).inspect_err(|_| self.release_slot())
    }

    /// Forgets one open connection and lets a waiter open a new one.
    fn release_slot(&self) {
        self.slots.lock().open -= 1;
        self.freed.notify_one();
    }

    /// Puts a healthy connection back and wakes one waiter.
    fn give_back(&self, conn: Conn) {
        self.slots.lock().idle.push(Idle { conn, since: Instant::now() });
        self.freed.notify_one();
    }

    fn wrap(&self, conn: Conn) -> PooledConn<'_> {
        PooledConn { pool: self, conn: ManuallyDrop::new(conn), broken: false }
    }
}

impl fmt::Debug for Pool {
    // Not derived: `Opts` would print the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let slots = self.slots.lock();
        f.debug_struct("Pool")
            .field("target", &target(&self.opts))
            .field("size", &self.size)
            .field("open", &slots.open)
            .field("idle", &slots.idle.len())
            .finish()
    }
}

/// A checked-out connection; derefs to `mysql::Conn` and goes back to the
/// pool when dropped (or is discarded if marked broken).
pub struct PooledConn<'a> {
    /// The pool the connection goes back to.
    pool: &'a Pool,
    /// Taken out exactly once, in `Drop`.
    conn: ManuallyDrop<Conn>,
    /// Set when the connection is known dead, so `Drop` discards it.
    broken: bool,
}

impl PooledConn<'_> {
    /// Whether the connection was marked broken.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Marks the connection broken when `err` says the connection is gone.
    pub fn observe(&mut self, err: &DbError) {
        if err.is_unavailable() {
            self.broken = true;
        }
    }

    /// Converts a result to `DbError`, observing the error on the way, so a
    /// lost connection is never put back: `let n = c.check(c.ping())?;`.
    pub fn check<T, E: Into<DbError>>(&mut self, result: Result<T, E>) -> Result<T, DbError> {
        result.map_err(|e| {
            let err = e.into();
            self.observe(&err);
            err
        })
    }

    /// Runs `f` on the connection and observes its error, if any:
    /// `conn.run(|c| user::find(c, id))`.
    pub fn run<T>(&mut self, f: impl FnOnce(&mut Conn) -> Result<T, DbError>) -> Result<T, DbError> {
        let result = f(&mut self.conn);
        self.check(result)
    }
}

impl Deref for PooledConn<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.conn
    }
}

impl DerefMut for PooledConn<'_> {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }
}

impl Drop for PooledConn<'_> {
    fn drop(&mut self) {
        // SAFETY: `conn` is taken only here, and `self` is never used again.
        let conn = unsafe { ManuallyDrop::take(&mut self.conn) };
        // A panic may have left a statement half-read: do not reuse that.
        if self.broken || std::thread::panicking() {
            drop(conn);
            self.pool.release_slot();
        } else {
            self.pool.give_back(conn);
        }
    }
}
