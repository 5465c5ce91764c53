//! Log lines for what clients do to the server: cut off (too large, not
//! reading, stuck past the send timeout), over their rate,
//! failing logins. An attacker can cause these at will, so each kind gets
//! one line per period at most, with a count of the ones left out.

use std::time::Duration;

use crate::log::{Every, also};
use crate::net::CloseReason;
use crate::stats;

/// The shortest time between two lines of one kind.
const PERIOD: Duration = Duration::from_secs(10);

static TOO_LARGE: Every = Every::new(PERIOD);
static SEND_TIMEOUT: Every = Every::new(PERIOD);
static NOT_READING: Every = Every::new(PERIOD);
static RATE: Every = Every::new(PERIOD);
static FAILED_LOGINS: Every = Every::new(PERIOD);
static THROTTLED: Every = Every::new(PERIOD);

/// "user 5", or "a client not logged in".
fn who(user: Option<i32>) -> String {
    user.map_or_else(|| "a client not logged in".to_owned(), |id| format!("user {id}"))
}

/// A connection closed for `reason`: logged (and counted) when the server
/// cut the client off.
pub fn closed(user: Option<i32>, reason: CloseReason) {
    let (every, why) = match reason {
        CloseReason::TooLarge => (&TOO_LARGE, "sent a message over --max-frame"),
        CloseReason::SendTimeout => (&SEND_TIMEOUT, "took no output for --send-timeout"),
        CloseReason::OutputOverflow => (&NOT_READING, "stopped reading (its pending output passed the cap)"),
        _ => return,
    };
    stats::CUT_OFF.add(1);
    if let Some(skipped) = every.ready() {
        crate::warn!("cut off {}: it {why}{}", who(user), also(skipped));
    }
}

/// A request refused with errno 104.
pub fn rate_limited(user: Option<i32>) {
    if let Some(skipped) = RATE.ready() {
        crate::warn!("{} is over its rate (--rate); requests refused with errno 104{}", who(user), also(skipped));
    }
}

/// A connection closed after `failures` failed logins on it.
pub fn failed_logins(user: Option<i32>, failures: u32) {
    stats::CUT_OFF.add(1);
    if let Some(skipped) = FAILED_LOGINS.ready() {
        crate::warn!("cut off {} after {failures} failed logins on one connection{}", who(user), also(skipped));
    }
}

/// Logins for user `id` are refused unchecked for `wait` after `failures`
/// failures in a row.
pub fn login_throttled(id: i32, failures: u32, wait: Duration) {
    if let Some(skipped) = THROTTLED.ready() {
        crate::warn!(
            "user {id}: {failures} failed logins in a row; its logins are refused for {} s{}",
            wait.as_secs(),
            also(skipped)
        );
    }
}
