//! REG: create a user with a hashed password.

use std::sync::Arc;

use serde_json::json;

use super::{Outcome, within};
use crate::model::user;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::password;
use crate::service::protocol::{self, Errno, msgid};
use crate::text;

/// Longest name or password, in characters.
const MAX_LEN: usize = 50;

pub fn apply(ctx: &Arc<Ctx>, name: &str, password: &str) -> Result<Outcome, ServiceError> {
    if !within(name, 1, MAX_LEN) || !within(password, 1, MAX_LEN) {
        let why = "name and password must be 1 to 50 characters";
        return Ok(Outcome::reply(protocol::ack_error(msgid::REG_ACK, Errno::Invalid, why)));
    }
    if !text::is_fit_name(name) {
        let why = "name must not be blank or contain control characters";
        return Ok(Outcome::reply(protocol::ack_error(msgid::REG_ACK, Errno::Invalid, why)));
    }
    let hash = password::hash(password).ok_or(ServiceError::Hash)?;
    let reply = match ctx.db.run(|c| user::insert(c, name, &hash))? {
        Some(id) => protocol::ack_ok(msgid::REG_ACK, json!({"id": id})),
        None => protocol::ack_error(msgid::REG_ACK, Errno::Invalid, "this name is taken, choose another"),
    };
    Ok(Outcome::reply(reply))
}
