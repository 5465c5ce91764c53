//! The network layer: an epoll reactor of our own, one loop per worker
//! thread, and NUL/newline framing. It knows nothing of JSON, users or SQL;
//! it hands frames to a [`Handler`].

mod buffer;
mod config;
mod error;
mod event_loop;
mod frame;
mod handler;
mod output;
mod remote;
mod server;
pub mod sys;

pub use config::NetConfig;
pub use error::NetError;
pub use frame::{FrameDecoder, TooLarge};
pub use handler::{AfterClose, CloseReason, ConnId, Handler, Outbox, Pending, Unsent};
pub use output::Writer;
pub use remote::{Remote, Wake, current_worker};
pub use server::{Server, StopHandle};
pub use sys::raise_nofile_limit;
