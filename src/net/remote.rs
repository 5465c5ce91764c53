//! Queues through which any thread hands work to a worker loop (muduo's
//! `runInLoop`): the loop owns its connections, everyone else asks it; only
//! a frame whose connection's output takes it at once skips the queue
//! (see `output.rs`).

use std::cell::{Cell, RefCell};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::handler::ConnId;
use super::output::{Pushed, Writer};
use super::sys::EventFd;

/// Work for a loop.
pub(super) enum Task<M> {
    /// A freshly accepted socket to adopt.
    Accept(OwnedFd),
    /// A message for the connection with this token.
    Deliver(u64, M),
    /// A message for the connection with this token, counted in its output
    /// (see [`Remote::deliver`]): frames written directly wait for it.
    Behind(u64, M),
    /// Another thread wrote to the connection and the socket did not take
    /// it all: the loop takes over (output cap, send timeout, EPOLLOUT).
    Flush(u64),
    /// Close the connection with this token once its output is flushed.
    Close(u64),
    /// Run this on the loop's thread (see [`Remote::run_on_next_turn`]).
    Run(Box<dyn FnOnce() + Send>),
    /// Close every connection and stop.
    Shutdown,
}

/// One loop's inbox. Aligned to its own cache lines: the inboxes sit side
/// by side, and each is written by its loop and by the others.
#[repr(align(128))]
pub(super) struct Inbox<M> {
    /// Tasks not yet taken by the loop.
    tasks: Mutex<Vec<Task<M>>>,
    /// `tasks.len()` as last seen, read without the lock by the loops that
    /// check for [`INBOX_HIGH_WATER`].
    queued: AtomicUsize,
    /// True while a wake-up is pending, so a burst of posts costs one write.
    notified: AtomicBool,
    /// True while the loop is in, or about to enter, a blocking
    /// `epoll_wait`: only then does a post need the eventfd. An awake loop
    /// looks at its inbox before it sleeps (see [`Inbox::going_to_sleep`]).
    sleeping: AtomicBool,
    /// Makes the loop's `epoll_wait` return.
    pub(super) wake: EventFd,
}

/// Tasks waiting in one inbox past which every loop stops reading from its
/// sockets until that loop catches up (clients then wait in TCP), so a slow
/// loop cannot make the others queue without bound.
const INBOX_HIGH_WATER: usize = 64 * 1024;

thread_local! {
    /// Index of the loop running on this thread, if any: a loop posting to
    /// itself needs no wake-up, it checks its inbox before sleeping.
    static CURRENT_WORKER: Cell<Option<usize>> = const { Cell::new(None) };
    /// Outputs this loop wrote frames into during its turn and flushes at
    /// its end, so that a burst for one connection costs one write.
    static UNFLUSHED: RefCell<Vec<(ConnId, Writer)>> = const { RefCell::new(Vec::new()) };
}

pub(super) fn set_current_worker(index: usize) {
    CURRENT_WORKER.with(|c| c.set(Some(index)));
}

/// The index of the loop running on this thread; None off the loops.
pub fn current_worker() -> Option<usize> {
    CURRENT_WORKER.with(Cell::get)
}

/// What is left to do after [`Remote::deliver`], once the caller's locks
/// are let go: wake a loop, or flush an output.
#[must_use = "the loop must be woken with Remote::wake"]
pub struct Wake(Later);

enum Later {
    Nothing,
    /// Wake this loop: something was queued to it.
    Loop(usize),
    /// Write this connection's output, where a frame went.
    Flush(ConnId, Writer),
}

impl Wake {
    /// Nothing to wake (nothing was queued).
    pub fn none() -> Wake {
        Wake(Later::Nothing)
    }
}

/// A cloneable handle to every loop's inbox.
pub struct Remote<M> {
    /// One inbox per worker, indexed by `ConnId::worker`.
    inboxes: Arc<[Inbox<M>]>,
}

impl<M> Clone for Remote<M> {
    fn clone(&self) -> Self {
        Remote { inboxes: Arc::clone(&self.inboxes) }
    }
}

impl<M: Send + 'static> Remote<M> {
    /// Creates the inboxes of `workers` loops.
    pub fn new(workers: usize) -> std::io::Result<Remote<M>> {
        let inboxes = (0..workers.max(1))
            .map(|_| {
                Ok(Inbox {
                    tasks: Mutex::new(Vec::new()),
                    queued: AtomicUsize::new(0),
                    notified: AtomicBool::new(false),
                    sleeping: AtomicBool::new(false),
                    wake: EventFd::new()?,
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Remote { inboxes: inboxes.into() })
    }

    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    /// Sends `msg` to connection `to`. If it is gone by the time its loop
    /// looks, the handler's `undeliverable` gets the message back.
    pub fn send(&self, to: ConnId, msg: M) {
        self.post(to.worker, Task::Deliver(to.token, msg));
    }

    /// Sends connection `to`, whose output is `writer`, a frame: from this
    /// thread into its output when it takes frames for `direct`'s key now,
    /// else as `msg()` queued to its loop. Either way it stays behind what
    /// was sent to `to` before. The caller may hold a lock of its own around
    /// this but not around the syscalls: it must call [`Remote::wake`] with
    /// the result after (which writes the frame, off the loops; a loop
    /// writes what it sent during its turn at the end of it).
    pub fn deliver(&self, to: ConnId, writer: &Writer, direct: Option<(u64, &[u8])>, msg: impl FnOnce() -> M) -> Wake {
        let Some(inbox) = self.inboxes.get(to.worker) else { return Wake::none() };
        match writer.push_or_queue(direct, || inbox.push(Task::Behind(to.token, msg()))) {
            Pushed::Queued => Wake(Later::Loop(to.worker)),
            Pushed::Joined => Wake::none(),
            Pushed::First if current_worker().is_some() => {
                UNFLUSHED.with(|u| u.borrow_mut().push((to, writer.clone())));
                Wake::none()
            }
            Pushed::First => Wake(Later::Flush(to, writer.clone())),
        }
    }

    /// Flushes what this loop wrote into other connections' outputs during
    /// its turn (see [`Remote::deliver`]).
    pub(super) fn flush_unflushed(&self) {
        UNFLUSHED.with(|u| {
            for (to, writer) in u.borrow_mut().drain(..) {
                if let Some(worker) = self.flush_for(to, &writer) {
                    self.notify(worker);
                }
            }
        });
    }

    /// Flushes `to`'s output from this thread; what the socket does not
    /// take is left to its loop, which is then to be woken.
    fn flush_for(&self, to: ConnId, writer: &Writer) -> Option<usize> {
        if writer.flush() {
            return None;
        }
        self.inboxes.get(to.worker)?.push(Task::Flush(to.token));
        Some(to.worker)
    }

    /// Does what a [`Remote::deliver`] left to do.
    pub fn wake(&self, wake: Wake) {
        if let Some(worker) = self.finish(wake) {
            self.notify(worker);
        }
    }

    /// Does what many [`Remote::deliver`] calls left to do, waking each
    /// loop once.
    pub fn wake_all(&self, wakes: Vec<Wake>) {
        let mut workers: Vec<usize> = wakes.into_iter().filter_map(|w| self.finish(w)).collect();
        workers.sort_unstable();
        workers.dedup();
        for worker in workers {
            self.notify(worker);
        }
    }

    /// Flushes what `wake` holds; the loop to wake after, if any.
    fn finish(&self, wake: Wake) -> Option<usize> {
        match wake.0 {
            Later::Nothing => None,
            Later::Loop(worker) => Some(worker),
            Later::Flush(to, writer) => self.flush_for(to, &writer),
        }
    }

    /// Runs `f` on loop `worker`'s thread at its next turn, without waking
    /// it for that: for work that can wait until the loop wakes for its own
    /// sockets (at the latest its once-a-second sweep).
    pub fn run_on_next_turn(&self, worker: usize, f: impl FnOnce() + Send + 'static) {
        if let Some(inbox) = self.inboxes.get(worker) {
            inbox.push(Task::Run(Box::new(f)));
        }
    }

    /// Closes connection `to` after its pending output.
    pub fn close(&self, to: ConnId) {
        self.post(to.worker, Task::Close(to.token));
    }

    pub(super) fn post(&self, worker: usize, task: Task<M>) {
        let Some(inbox) = self.inboxes.get(worker) else { return };
        inbox.push(task);
        self.notify(worker);
    }

    fn notify(&self, worker: usize) {
        let Some(inbox) = self.inboxes.get(worker) else { return };
        if current_worker() == Some(worker) {
            return;
        }
        // SeqCst pairs with `going_to_sleep`: either this sees the loop
        // sleeping, or the loop sees this post (pushed under the lock).
        if inbox.sleeping.load(Ordering::SeqCst) && !inbox.notified.swap(true, Ordering::AcqRel) {
            inbox.wake.notify();
        }
    }

    pub(super) fn inbox(&self, worker: usize) -> &Inbox<M> {
        &self.inboxes[worker]
    }

    /// Whether some loop has more tasks waiting than its high-water mark.
    pub(super) fn congested(&self) -> bool {
        self.inboxes.iter().any(|inbox| inbox.queued.load(Ordering::Relaxed) >= INBOX_HIGH_WATER)
    }
}

impl<M> Inbox<M> {
    fn push(&self, task: Task<M>) {
        let mut tasks = self.tasks.lock();
        tasks.push(task);
        self.queued.store(tasks.len(), Ordering::Relaxed);
    }

    /// Whether tasks are waiting.
    pub(super) fn has_tasks(&self) -> bool {
        !self.tasks.lock().is_empty()
    }

    /// The loop is about to block: from now on posts wake it. False when a
    /// task came first (posted while the loop was awake, so without a
    /// wake-up): the loop must not block then.
    pub(super) fn going_to_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::SeqCst);
        !self.has_tasks()
    }

    /// The loop is awake again: posts need not wake it.
    pub(super) fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Takes the messages still waiting for connection `token`, in order.
    pub(super) fn take_for(&self, token: u64) -> Vec<M> {
        let mut tasks = self.tasks.lock();
        let mut taken = Vec::new();
        let mut kept = Vec::with_capacity(tasks.len());
        for task in tasks.drain(..) {
            match task {
                Task::Deliver(t, msg) | Task::Behind(t, msg) if t == token => taken.push(msg),
                other => kept.push(other),
            }
        }
        *tasks = kept;
        self.queued.store(tasks.len(), Ordering::Relaxed);
        taken
    }

    /// Moves every pending task into `into` (kept by the loop for reuse).
    pub(super) fn take(&self, into: &mut Vec<Task<M>>) {
        self.notified.store(false, Ordering::Release);
        let mut tasks = self.tasks.lock();
        std::mem::swap(&mut *tasks, into);
        self.queued.store(0, Ordering::Relaxed);
    }
}
