//! The listening connection: subscribed to exactly two channels, this
//! server's inbox and the cluster's presence channel, whoever is logged in.
//! Nothing about it changes at a login or a logout, so a reconnect restores
//! it whole and a failure can leave nothing stale behind. Everything one
//! read brings is handed over as one batch.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::conn::Endpoint;
use super::resp;

/// How often a quiet read wakes to see whether the bus is stopping.
const POLL: Duration = Duration::from_millis(100);
/// Reconnect back-off bounds; the back-off starts again once a connection
/// has subscribed.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// What the subscriber tells the bus.
pub trait SubEvents: Send + Sync + 'static {
    /// Subscribed (again): messages flow from now on.
    fn subscribed(&self);
    /// The connection failed or could not be made.
    fn unsubscribed(&self, why: &str);
    /// The payloads of the messages one read brought, in order, with the
    /// channel each came on.
    fn batch(&self, messages: Vec<(Vec<u8>, Vec<u8>)>);
}

pub struct Subscriber {
    /// Where Redis is.
    endpoint: Endpoint,
    /// The channels, fixed for the life of the server.
    channels: Vec<String>,
    /// Set to end the thread.
    stopping: AtomicBool,
}

impl Subscriber {
    pub fn new(endpoint: Endpoint, channels: Vec<String>) -> Subscriber {
        Subscriber { endpoint, channels, stopping: AtomicBool::new(false) }
    }

    pub fn start(self: &Arc<Self>, events: Arc<dyn SubEvents>) -> std::io::Result<()> {
        let sub = Arc::clone(self);
        std::thread::Builder::new().name("bus-sub".into()).spawn(move || sub.run(&*events))?;
        Ok(())
    }

    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn run(&self, events: &dyn SubEvents) {
        let mut backoff = MIN_BACKOFF;
        while !self.stopping.load(Ordering::Relaxed) {
            let why = match self.endpoint.connect(&[]) {
                Ok(stream) => {
                    let (why, subscribed) = self.serve(stream, events);
                    if subscribed {
                        backoff = MIN_BACKOFF;
                    }
                    why
                }
                Err(e) => e.to_string(),
            };
            if self.stopping.load(Ordering::Relaxed) {
                return;
            }
            events.unsubscribed(&why);
            let until = std::time::Instant::now() + backoff;
            while std::time::Instant::now() < until && !self.stopping.load(Ordering::Relaxed) {
                std::thread::sleep(POLL.min(backoff));
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Subscribes, then reads pushes until the connection fails; returns why
    /// it did, and whether Redis had confirmed the subscriptions.
    fn serve(&self, mut stream: TcpStream, events: &dyn SubEvents) -> (String, bool) {
        let mut confirmed = 0;
        let why = self.read_pushes(&mut stream, events, &mut confirmed);
        (why, confirmed >= self.channels.len())
    }

    fn read_pushes(&self, stream: &mut TcpStream, events: &dyn SubEvents, confirmed: &mut usize) -> String {
        let mut command = vec![&b"SUBSCRIBE"[..]];
        command.extend(self.channels.iter().map(|c| c.as_bytes()));
        let mut out = Vec::new();
        resp::encode(&mut out, &command);
        if let Err(e) = stream.write_all(&out).and_then(|()| stream.set_read_timeout(Some(POLL))) {
            return e.to_string();
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut chunk = vec![0u8; 256 * 1024];
        loop {
            if self.stopping.load(Ordering::Relaxed) {
                return "stopping".into();
            }
            match stream.read(&mut chunk) {
                Ok(0) => return "Redis closed the connection".into(),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return e.to_string(),
            }
            let mut used = 0;
            let mut batch = Vec::new();
            loop {
                match resp::parse(&buf[used..]) {
                    Ok(Some((reply, n))) => {
                        used += n;
                        if let resp::Reply::Error(why) = &reply {
                            return format!("Redis refused to subscribe: {}", String::from_utf8_lossy(why));
                        }
                        let Some(mut parts) = reply.into_push() else { continue };
                        if parts.len() != 3 {
                            continue;
                        }
                        if parts[0] == b"subscribe" {
                            *confirmed += 1;
                            if *confirmed == self.channels.len() {
                                events.subscribed();
                            }
                        } else if parts[0] == b"message" {
                            let payload = parts.pop().unwrap_or_default();
                            let channel = parts.pop().unwrap_or_default();
                            batch.push((channel, payload));
                        }
                    }
                    Ok(None) => break,
                    Err(_) => return "Redis sent something that is not RESP".into(),
                }
            }
            buf.drain(..used);
            if !batch.is_empty() {
                events.batch(batch);
            }
        }
    }
}
