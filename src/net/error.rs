//! Errors of the network layer.

use std::fmt;
use std::io;
use std::net::SocketAddr;

#[derive(Debug)]
pub enum NetError {
    /// The listening address could not be bound.
    Bind { addr: SocketAddr, source: io::Error },
    /// A setup syscall (epoll, eventfd, thread) failed.
    Io(io::Error),
}

impl fmt::Display for NetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetError::Bind { addr, source } if source.kind() == io::ErrorKind::AddrInUse => {
                write!(f, "cannot listen on {addr}: the port is in use; stop the other process or pick another port")
            }
            NetError::Bind { addr, source } => write!(f, "cannot listen on {addr}: {source}"),
            NetError::Io(e) => write!(f, "network setup failed: {e}"),
        }
    }
}

impl std::error::Error for NetError {}

impl From<io::Error> for NetError {
    fn from(e: io::Error) -> Self {
        NetError::Io(e)
    }
}
