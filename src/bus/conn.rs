//! Opening a connection to Redis: the address, password and database come
//! from `CHAT_REDIS_URL` as the `redis` crate reads it; the socket is ours,
//! so the bus can pipeline on it and read whole batches of replies.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::error::BusError;
use super::resp::{self, Reply};

/// Connect timeout, so a dead Redis costs little.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long the handshake (AUTH, SELECT, SUBSCRIBE) may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is and how to log in, read once from the URL.
#[derive(Clone, Debug)]
pub struct Endpoint {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

impl Endpoint {
    /// Reads a `redis://` URL; only a malformed URL (or a scheme the bus
    /// cannot speak, such as TLS or a unix socket) fails.
    pub fn parse(url: &str) -> Result<Endpoint, BusError> {
        let client = redis::Client::open(url).map_err(|e| BusError::BadUrl(e.to_string()))?;
        let info = client.get_connection_info();
        let redis::ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
            return Err(BusError::BadUrl("only redis://HOST:PORT/ (plain TCP) is supported".into()));
        };
        let settings = info.redis_settings();
        Ok(Endpoint {
            host,
            port,
            username: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            db: settings.db(),
        })
    }

    /// Connects, logs in and selects the database, then sends `extra`
    /// commands and checks that each of them succeeded. The stream is left
    /// blocking, with no timeouts.
    pub fn connect(&self, extra: &[Vec<&[u8]>]) -> std::io::Result<TcpStream> {
        let addr = (self.host.as_str(), self.port)
            .to_socket_addrs()?
            .next()
            .ok_or_else(|| std::io::Error::other(format!("cannot resolve {}", self.host)))?;
        let mut stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
        let mut commands: Vec<Vec<&[u8]>> = Vec::new();
        let db = self.db.to_string();
        match (&self.username, &self.password) {
            (Some(user), Some(pass)) => commands.push(vec![b"AUTH", user.as_bytes(), pass.as_bytes()]),
            (None, Some(pass)) => commands.push(vec![b"AUTH", pass.as_bytes()]),
            _ => {}
        }
        if self.db != 0 {
            commands.push(vec![b"SELECT", db.as_bytes()]);
        }
        commands.extend(extra.iter().cloned());
        let mut out = Vec::new();
        for command in &commands {
            resp::encode(&mut out, command);
        }
        stream.write_all(&out)?;
        let mut buf = Vec::new();
        for _ in &commands {
            if let Reply::Error(why) = read_reply(&mut stream, &mut buf)? {
                return Err(std::io::Error::other(String::from_utf8_lossy(&why).into_owned()));
            }
        }
        if !buf.is_empty() {
            return Err(std::io::Error::other("Redis sent more than the handshake asked for"));
        }
        stream.set_read_timeout(None)?;
        stream.set_write_timeout(None)?;
        Ok(stream)
    }
}

/// Reads one whole reply, keeping what follows it in `buf`.
fn read_reply(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Reply> {
    let mut chunk = [0u8; 4096];
    loop {
        match resp::parse(buf) {
            Ok(Some((reply, used))) => {
                buf.drain(..used);
                return Ok(reply);
            }
            Ok(None) => {}
            Err(_) => return Err(std::io::Error::other("Redis sent something that is not RESP")),
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}
