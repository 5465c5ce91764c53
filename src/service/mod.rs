//! The service layer: msgid -> handler dispatch, sessions and routing. It
//! knows nothing of sockets or epoll; it sees frames through
//! [`crate::net::Handler`].

mod chat;
pub mod clock;
pub mod cmd;
mod combine;
mod context;
mod error;
mod events;
mod heartbeat;
mod jobs;
mod lanes;
mod limits;
mod members;
mod message;
pub mod password;
pub mod protocol;
mod recycle;
mod registry;
pub mod request;
pub mod router;
mod session;
pub mod token;

pub use chat::ChatService;
pub use context::{Ctx, Parts};
pub use error::ServiceError;
pub use heartbeat::Heartbeat;
pub use jobs::{Jobs, Priority};
pub use lanes::Lanes;
pub use limits::Limits;
pub use message::{Delivery, Message};
pub use registry::{Found, Registry};
pub use session::{Session, User};
