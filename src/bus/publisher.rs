//! Publishing: a few Redis connections shared by the routing threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::channel;

/// How long a failed Redis is left alone before publishing tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Connect timeout, so a dead Redis costs little.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// Read/write timeout of a publish round trip.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

pub(super) struct Publisher {
    /// Opens connections.
    client: redis::Client,
    /// Channel namespace.
    namespace: String,
    /// Idle connections, reused so a publish costs one round trip.
    idle: Mutex<Vec<redis::Connection>>,
    /// No publishing before this instant, after a failure.
    retry_at: Mutex<Option<Instant>>,
    /// Whether the outage was already logged, so it is logged once.
    logged_down: AtomicBool,
}

impl Publisher {
    pub(super) fn new(client: redis::Client, namespace: &str) -> Publisher {
        Publisher {
            client,
            namespace: namespace.to_owned(),
            idle: Mutex::new(Vec::new()),
            retry_at: Mutex::new(None),
            logged_down: AtomicBool::new(false),
        }
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        if let Some(conn) = self.idle.lock().pop() {
            return Ok(conn);
        }
        let conn = self.client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
        conn.set_read_timeout(Some(IO_TIMEOUT))?;
        conn.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(conn)
    }

    pub(super) fn publish(&self, messages: &[(i32, &str)]) -> Vec<bool> {
        let none = vec![false; messages.len()];
        if messages.is_empty() || self.retry_at.lock().is_some_and(|at| Instant::now() < at) {
            return none;
        }
        let mut pipe = redis::pipe();
        for (user, payload) in messages {
            pipe.cmd("PUBLISH").arg(channel(&self.namespace, *user)).arg(*payload);
        }
        let result = self.connection().and_then(|mut conn| {
            let counts: Vec<i64> = pipe.query(&mut conn)?;
            self.idle.lock().push(conn);
            Ok(counts)
        });
        match result {
            Ok(counts) => {
                self.back_up();
                counts.into_iter().map(|n| n > 0).collect()
            }
            Err(e) => {
                self.down(&e);
                none
            }
        }
    }

    /// Redis failed: drop pooled connections, pause, and log once.
    pub(super) fn down(&self, e: &redis::RedisError) {
        self.idle.lock().clear();
        *self.retry_at.lock() = Some(Instant::now() + RETRY_AFTER);
        if !self.logged_down.swap(true, Ordering::Relaxed) {
            eprintln!("ChatServer: Redis unavailable ({e}); running alone, storing what cannot be routed, retrying");
        }
    }

    /// Redis answers again.
    pub(super) fn back_up(&self) {
        *self.retry_at.lock() = None;
        if self.logged_down.swap(false, Ordering::Relaxed) {
            eprintln!("ChatServer: Redis is back; cross-server routing resumed");
        }
    }
}
