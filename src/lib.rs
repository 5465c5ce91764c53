//! ChatServer: a cluster chat server speaking the original C++ ChatServer's
//! JSON protocol (see `../shared/SPEC.md`).
//!
//! Layers, each knowing only the one below it:
//! - [`net`]: the epoll reactor, connections and framing (no JSON, no SQL);
//! - [`service`]: msgid dispatch, sessions and routing (no sockets);
//! - [`model`]: one struct and one set of queries per table;
//! - [`db`]: the fixed-size MySQL connection pool.

pub mod bus;
pub mod config;
pub mod db;
pub mod id_map;
pub mod log;
pub mod model;
pub mod msgid;
pub mod net;
pub mod service;
pub mod stats;
pub mod text;
