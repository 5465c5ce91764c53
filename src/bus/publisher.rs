//! Publishing: a few Redis connections shared by the routing threads.

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
}

impl Publisher {
    pub(super) fn new(client: redis::Client, namespace: &str) -> Publisher {
        Publisher { client, namespace: namespace.to_owned(), idle: Mutex::new(Vec::new()), retry_at: Mutex::new(None) }
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
            Err(_) => {
                self.down();
                none
            }
        }
    }

    /// Redis failed: drop pooled connections and pause publishing. (The
    /// subscriber, which holds the one lasting connection, tells the log.)
    pub(super) fn down(&self) {
        self.idle.lock().clear();
        *self.retry_at.lock() = Some(Instant::now() + RETRY_AFTER);
    }

    /// Redis answers again.
    pub(super) fn back_up(&self) {
        *self.retry_at.lock() = None;
    }
}
