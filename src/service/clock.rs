//! The server's timestamp for messages: `YYYY-MM-DD HH:MM:SS`, local time.

use std::cell::RefCell;

thread_local! {
    /// The last second formatted on this thread: most messages of a second
    /// reuse it, sparing `localtime_r` (which takes a process-wide lock).
    static LAST: RefCell<(libc::time_t, String)> = const { RefCell::new((-1, String::new())) };
}

/// Now, formatted in the server's local time zone.
pub fn now_stamp() -> String {
    with_now(str::to_owned)
}

/// Runs `f` with now, formatted as [`now_stamp`], without copying it.
pub fn with_now<R>(f: impl FnOnce(&str) -> R) -> R {
    // SAFETY: time(NULL) takes no pointer to fill.
    let now = unsafe { libc::time(std::ptr::null_mut()) };
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != now {
            *last = (now, format_local(now));
        }
        f(&last.1)
    })
}

fn format_local(t: libc::time_t) -> String {
    // SAFETY: localtime_r writes only into the zeroed `tm` we own.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        if libc::localtime_r(&t, &mut tm).is_null() {
            return String::from("1970-01-01 00:00:00");
        }
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn stamp_has_the_spec_shape() {
        let s = super::now_stamp();
        let b = s.as_bytes();
        assert_eq!(s.len(), 19, "{s}");
        assert!(b[4] == b'-' && b[7] == b'-' && b[10] == b' ' && b[13] == b':' && b[16] == b':', "{s}");
    }
}
