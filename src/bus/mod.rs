//! The cluster bus: Redis publish/subscribe between servers.
//!
//! Routing design: one channel per user, `<namespace>:user:<id>`, as in the
//! original. A server subscribes to the channel of each user logged in on
//! it; a message for a user on another server is PUBLISHed to their channel,
//! and PUBLISH's count of receivers says whether anyone took it (0: store it
//! offline). The namespace is the database name, so clusters on different
//! databases can share one Redis.
//!
//! The bus knows Redis and user ids; it knows nothing of sockets or JSON.

mod error;
mod publisher;
mod subscriber;

use std::sync::Arc;
use std::time::Duration;

pub use error::BusError;
use publisher::Publisher;
use subscriber::Subscriber;

/// Called on the subscriber thread with (user id, payload) for each message.
pub type OnMessage = Box<dyn Fn(i32, &str) + Send + Sync>;

/// How long a login or logout waits for Redis to confirm its channel.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// A handle to the bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    /// Publishes messages; shared by every thread that routes.
    publisher: Arc<Publisher>,
    /// The thread holding the subscriptions.
    subscriber: Arc<Subscriber>,
}

/// The channel of one user.
fn channel(namespace: &str, user: i32) -> String {
    format!("{namespace}:user:{user}")
}

/// The user of a channel of this namespace.
fn user_of(namespace: &str, channel: &str) -> Option<i32> {
    channel.strip_prefix(namespace)?.strip_prefix(":user:")?.parse().ok()
}

impl Bus {
    /// A bus for `url`, not yet receiving: see [`Bus::start`]. Only a
    /// malformed URL fails; an unreachable Redis does not.
    pub fn new(url: &str, namespace: &str) -> Result<Bus, BusError> {
        let client = redis::Client::open(url).map_err(|e| BusError::BadUrl(e.to_string()))?;
        let publisher = Arc::new(Publisher::new(client.clone(), namespace));
        let subscriber = Arc::new(Subscriber::new(client, namespace));
        Ok(Bus { publisher, subscriber })
    }

    /// Starts the subscriber thread, handing each message to `on_message`.
    /// With Redis unreachable the server runs alone, says so once, and
    /// reconnects by itself.
    pub fn start(&self, on_message: OnMessage) -> Result<(), BusError> {
        self.subscriber.start(on_message, Arc::clone(&self.publisher))
    }

    /// Subscribes to `user`'s channel and waits until Redis confirms it, so
    /// nothing published after this returns can miss this server. False when
    /// Redis is down (the subscription is restored when it is back).
    pub fn subscribe(&self, user: i32) -> bool {
        self.subscriber.subscribe(user, SUBSCRIBE_WAIT)
    }

    /// Drops `user`'s channel and waits until Redis confirms it, so that
    /// from then on a message for `user` finds no one here and is stored.
    pub fn unsubscribe(&self, user: i32) {
        self.subscriber.unsubscribe(user, SUBSCRIBE_WAIT);
    }

    /// Publishes each `(user, payload)` in one round trip; `true` where some
    /// server took the message. All `false` while Redis is down.
    pub fn publish(&self, messages: &[(i32, &str)]) -> Vec<bool> {
        self.publisher.publish(messages)
    }

    /// Stops the subscriber thread.
    pub fn stop(&self) {
        self.subscriber.stop();
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn channels_are_namespaced_and_parse_back() {
        let ch = super::channel("chat_a", 42);
        assert_eq!(ch, "chat_a:user:42");
        assert_eq!(super::user_of("chat_a", &ch), Some(42));
        assert_eq!(super::user_of("chat_b", &ch), None);
        assert_eq!(super::user_of("chat_a", "chat_a:user:x"), None);
    }
}
