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
    let parsed = Opts::from_url(url)
        .map_err(|e| DbError::BadUrl(format!("{e}; expected mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE")))?;
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

/// MySQL's "access denied for user" (wrong user or password)...
const ER_ACCESS_DENIED: u16 = 1045;
/// ... and MariaDB's for a user without a password that gave one.
const ER_ACCESS_DENIED_NO_PASSWORD: u16 = 1698;
/// MySQL's "access denied for user to database".
const ER_DBACCESS_DENIED: u16 = 1044;
/// MySQL's "unknown database".
const ER_BAD_DB: u16 = 1049;

/// Opens one connection. A refused login is `Denied` naming the user; any
/// other failure is `Unavailable` with the address (never the password), so
/// the message says where it tried and what to do.
pub(crate) fn connect(opts: &Opts) -> Result<Conn, DbError> {
    Conn::new(opts.clone()).map_err(|e| {
        let (user, db, at) = (opts.get_user().unwrap_or(""), opts.get_db_name().unwrap_or(""), address(opts));
        match &e {
            mysql::Error::MySqlError(m) if [ER_ACCESS_DENIED, ER_ACCESS_DENIED_NO_PASSWORD].contains(&m.code) => {
                DbError::Denied(format!(
                    "MySQL at {at} refused user '{user}' (access denied: {}); check the user and password in \
                 CHAT_MYSQL_URL",
                    m.message
                ))
            }
            mysql::Error::MySqlError(m) if m.code == ER_DBACCESS_DENIED => DbError::Denied(format!(
                "MySQL user '{user}' may not use database `{db}` at {at}; grant it (GRANT ALL ON `{db}`.* TO \
                 '{user}') or set CHAT_MYSQL_URL to a database it may use"
            )),
            mysql::Error::MySqlError(m) if m.code == ER_BAD_DB => {
                DbError::Unavailable(format!("database `{db}` does not exist at {at}"))
            }
            mysql::Error::MySqlError(m) => DbError::Denied(format!("MySQL at {at} refused user '{user}': {m}")),
            _ => DbError::Unavailable(format!(
                "cannot reach {at} ({e}); start MariaDB (./autobuild.sh up does) or set CHAT_MYSQL_URL"
            )),
        }
    })
}

/// `host:port` for messages.
fn address(opts: &Opts) -> String {
    format!("{}:{}", opts.get_ip_or_hostname(), opts.get_tcp_port())
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
