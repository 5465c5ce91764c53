//! The subscriber thread: one Redis connection in subscribe mode holding the
//! channels of this server's users, restored after every reconnect.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Duration;

use parking_lot::Mutex;

use super::error::BusError;
use super::publisher::Publisher;
use super::{OnMessage, channel, user_of};

/// How often the thread stops waiting for messages to apply subscription
/// changes: the worst extra delay of a login.
const POLL: Duration = Duration::from_millis(10);
/// How long a reply to SUBSCRIBE or UNSUBSCRIBE may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(2);
/// Reconnect back-off bounds.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// A change of subscriptions, applied by the thread in order.
enum Change {
    /// Subscribe; the sender learns whether Redis confirmed it.
    Subscribe(i32, SyncSender<bool>),
    /// Unsubscribe; the sender learns when it is done.
    Unsubscribe(i32, SyncSender<bool>),
}

pub(super) struct Subscriber {
    /// Changes waiting for the thread.
    changes: Mutex<Vec<Change>>,
    /// Set to end the thread.
    stopping: AtomicBool,
    /// Opens the subscribe connection.
    client: redis::Client,
    /// Channel namespace.
    namespace: String,
}

/// What the thread owns.
struct Worker {
    /// Shared with the handles.
    shared: Arc<Subscriber>,
    /// Where messages go.
    on_message: OnMessage,
    /// Told when Redis fails or answers, so outages are logged once.
    publisher: Arc<Publisher>,
    /// Users whose channels this server wants, kept across reconnects.
    wanted: HashSet<i32>,
    /// The current outage was logged; each outage is logged once.
    outage_logged: bool,
}

impl Subscriber {
    pub(super) fn new(client: redis::Client, namespace: &str) -> Subscriber {
        Subscriber {
            changes: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            client,
            namespace: namespace.to_owned(),
        }
    }

    pub(super) fn start(self: &Arc<Self>, on_message: OnMessage, publisher: Arc<Publisher>) -> Result<(), BusError> {
        let worker =
            Worker { shared: Arc::clone(self), on_message, publisher, wanted: HashSet::new(), outage_logged: false };
        std::thread::Builder::new().name("redis-sub".into()).spawn(move || worker.run()).map_err(BusError::Thread)?;
        Ok(())
    }

    pub(super) fn subscribe(&self, user: i32, wait: Duration) -> bool {
        // Once stopped nobody answers: do not wait for the timeout.
        if self.stopping.load(Ordering::Relaxed) {
            return false;
        }
        let (tx, rx): (SyncSender<bool>, Receiver<bool>) = sync_channel(1);
        self.changes.lock().push(Change::Subscribe(user, tx));
        rx.recv_timeout(wait).unwrap_or(false)
    }

    pub(super) fn unsubscribe(&self, user: i32, wait: Duration) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let (tx, rx): (SyncSender<bool>, Receiver<bool>) = sync_channel(1);
        self.changes.lock().push(Change::Unsubscribe(user, tx));
        let _ = rx.recv_timeout(wait);
    }

    pub(super) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }
}

impl Worker {
    fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        while !self.shared.stopping.load(Ordering::Relaxed) {
            match self.serve() {
                Ok(()) => break,
                Err(e) => {
                    self.publisher.down();
                    if !self.outage_logged {
                        self.outage_logged = true;
                        eprintln!(
                            "ChatServer: Redis unavailable ({e}); running alone, storing what cannot be routed, retrying"
                        );
                    }
                    self.wait_out(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        // Changes that came in meanwhile: dropping them answers their waiters.
        self.shared.changes.lock().clear();
    }

    /// Connects, restores the subscriptions and serves until Redis fails
    /// (`Err`) or the bus stops (`Ok`).
    fn serve(&mut self) -> redis::RedisResult<()> {
        let mut conn = self.shared.client.get_connection_with_timeout(Duration::from_secs(1))?;
        let mut pubsub = conn.as_pubsub();
        pubsub.set_read_timeout(Some(REPLY_TIMEOUT))?;
        let namespace = self.shared.namespace.clone();
        let channels: Vec<String> = self.wanted.iter().map(|&u| channel(&namespace, u)).collect();
        if !channels.is_empty() {
            pubsub.subscribe(channels)?;
        }
        pubsub.set_read_timeout(Some(POLL))?;
        self.publisher.back_up();
        if self.outage_logged {
            self.outage_logged = false;
            eprintln!("ChatServer: Redis is back; cross-server routing resumed");
        }
        loop {
            if self.shared.stopping.load(Ordering::Relaxed) {
                return Ok(());
            }
            let changes = std::mem::take(&mut *self.shared.changes.lock());
            if !changes.is_empty() {
                // Replies to (un)subscribe may take longer than the poll.
                pubsub.set_read_timeout(Some(REPLY_TIMEOUT))?;
                for change in changes {
                    match change {
                        Change::Subscribe(user, done) => {
                            self.wanted.insert(user);
                            pubsub.subscribe(channel(&namespace, user))?;
                            let _ = done.try_send(true);
                        }
                        Change::Unsubscribe(user, done) => {
                            self.wanted.remove(&user);
                            pubsub.unsubscribe(channel(&namespace, user))?;
                            let _ = done.try_send(true);
                        }
                    }
                }
                pubsub.set_read_timeout(Some(POLL))?;
            }
            match pubsub.get_message() {
                Ok(msg) => {
                    let user = user_of(&namespace, msg.get_channel_name());
                    if let (Some(user), Ok(payload)) = (user, std::str::from_utf8(msg.get_payload_bytes())) {
                        (self.on_message)(user, payload);
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits before reconnecting, still taking subscription changes: they
    /// are remembered for the reconnect and answered "not confirmed".
    fn wait_out(&mut self, backoff: Duration) {
        let until = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < until && !self.shared.stopping.load(Ordering::Relaxed) {
            let changes = std::mem::take(&mut *self.shared.changes.lock());
            for change in changes {
                match change {
                    Change::Subscribe(user, done) => {
                        self.wanted.insert(user);
                        let _ = done.try_send(false);
                    }
                    Change::Unsubscribe(user, done) => {
                        self.wanted.remove(&user);
                        let _ = done.try_send(false);
                    }
                }
            }
            std::thread::sleep(POLL);
        }
    }
}
