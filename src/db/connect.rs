//! Connection options shared by the pool and the schema bootstrap.

use std::time::Duration;

use mysql::{Conn, Opts, OptsBuilder};

use super::DbError;

/// A dead or firewalled MySQL must fail a connect quickly, not hang a worker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A server that stops answering mid-query gives an error instead of a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Every text column is utf8mb4; the session must be too, or emoji break.
const INIT: &str = "SET NAMES utf8mb4";

/// Parses `url` and adds the timeouts and charset every connection needs
/// (timeouts given in the URL win).
pub(crate) fn options(url: &str) -> Result<Opts, DbError> {
    let parsed = Opts::from_url(url).map_err(|e| DbError::BadUrl(e.to_string()))?;
    let mut init = vec![INIT.to_owned()];
    init.extend(parsed.get_init());
    let mut builder = OptsBuilder::from_opts(parsed.clone()).init(init);
    if parsed.get_tcp_connect_timeout().is_none() {
        builder = builder.tcp_connect_timeout(Some(CONNECT_TIMEOUT));
    }
    if parsed.get_read_timeout().is_none() {
        builder = builder.read_timeout(Some(IO_TIMEOUT));
    }
    if parsed.get_write_timeout().is_none() {
        builder = builder.write_timeout(Some(IO_TIMEOUT));
    }
    Ok(builder.into())
}

/// Opens one connection; any failure is `Unavailable` with the address (never
/// the password) so the message says where it tried.
pub(crate) fn connect(opts: &Opts) -> Result<Conn, DbError> {
    Conn::new(opts.clone())
        .map_err(|e| DbError::Unavailable(format!("cannot connect to MySQL at {}: {e}", target(opts))))
}

/// `user@host:port/db` for messages.
pub(crate) fn target(opts: &Opts) -> String {
    format!(
        "{}@{}:{}/{}",
        opts.get_user().unwrap_or(""),
        opts.get_ip_or_hostname(),
        opts.get_tcp_port(),
        opts.get_db_name().unwrap_or("")
    )
}
