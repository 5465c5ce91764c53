//! Fixed pools of threads for work that blocks (MySQL, password hashes), so
//! the event loops never wait on it. Password checks have a pool of their
//! own, at a lower priority and with a bound on what waits, so that a storm
//! of logins never stands in front of chat, storing or group requests.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The queue the threads take jobs from.
struct Queue {
    /// Jobs waiting, oldest first, and whether the pool is stopping.
    state: Mutex<(VecDeque<Job>, bool)>,
    /// Signalled when a job is queued or the pool stops.
    ready: Condvar,
}

/// The job threads.
pub struct Jobs {
    /// Shared with the threads.
    queue: Arc<Queue>,
    /// Joined on shutdown.
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// How many threads there are, for high-water marks that scale with it.
    count: usize,
}

/// How a pool's threads are scheduled against the event loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Priority {
    /// As the loops: work that chat waits for (MySQL, storing).
    Normal,
    /// Below them: password hashes (tens of milliseconds of CPU each) must
    /// not take the cores from chat.
    Background,
}

impl Jobs {
    /// `threads` threads named `name-N`.
    pub fn new(threads: usize, name: &str, priority: Priority) -> std::io::Result<Jobs> {
        let queue = Arc::new(Queue { state: Mutex::new((VecDeque::new(), false)), ready: Condvar::new() });
        let handles = (0..threads.max(1))
            .map(|i| {
                let queue = Arc::clone(&queue);
                std::thread::Builder::new().name(format!("{name}-{i}")).spawn(move || {
                    if priority == Priority::Background {
                        lower_priority();
                    }
                    work(&queue)
                })
            })
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Jobs { queue, count: handles.len(), threads: Mutex::new(handles) })
    }

    /// Queues `job`; jobs start in the order they were queued.
    pub fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let _ = self.try_spawn(job, usize::MAX);
    }

    /// Queues `job` unless `max_waiting` jobs wait already (or the pool is
    /// stopping); false when it was not queued.
    pub fn try_spawn(&self, job: impl FnOnce() + Send + 'static, max_waiting: usize) -> bool {
        let mut state = self.queue.state.lock();
        if state.1 || state.0.len() >= max_waiting {
            return false;
        }
        state.0.push_back(Box::new(job));
        drop(state);
        self.queue.ready.notify_one();
        true
    }

    /// The number of threads.
    pub fn threads(&self) -> usize {
        self.count
    }

    /// Jobs queued and not yet started.
    pub fn waiting(&self) -> usize {
        self.queue.state.lock().0.len()
    }

    /// Runs what is queued, then stops and joins the threads.
    pub fn shutdown(&self) {
        self.queue.state.lock().1 = true;
        self.queue.ready.notify_all();
        for handle in self.threads.lock().drain(..) {
            let _ = handle.join();
        }
    }
}

/// How much lower than the event loops [`Priority::Background`] threads run.
const NICENESS: libc::c_int = 10;

/// Lowers this thread's scheduling priority (a decrease needs no privilege).
fn lower_priority() {
    // SAFETY: gettid and setpriority take plain integers; on Linux a thread
    // id given to setpriority(PRIO_PROCESS) names that one thread.
    let done = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, NICENESS) };
    if done != 0 {
        crate::warn!("job thread: cannot lower its priority: {}", std::io::Error::last_os_error());
    }
}

fn work(queue: &Queue) {
    loop {
        let job = {
            let mut state = queue.state.lock();
            loop {
                if let Some(job) = state.0.pop_front() {
                    break job;
                }
                if state.1 {
                    return;
                }
                queue.ready.wait(&mut state);
            }
        };
        // A bug in one job must not take a thread of the pool with it.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            crate::error!("a job panicked; the server carries on");
        }
    }
}
