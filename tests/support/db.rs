//! A throwaway database per test: a unique name on the server of
//! `CHAT_MYSQL_URL`, dropped when the guard goes (even if the test panics).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder};

const DEFAULT_URL: &str = "mysql://root@127.0.0.1:3306/chat";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Owns one test database; dropping it drops the database.
pub struct TestDb {
    /// The URL of the test database (the base URL with the name replaced).
    pub url: String,
    /// The database name, `chat_t_<pid>_<counter>_<nanos>`.
    pub name: String,
}

impl TestDb {
    /// A unique name; the database itself is not created yet.
    pub fn empty() -> TestDb {
        let base = std::env::var("CHAT_MYSQL_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        let name = format!("chat_t_{}_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed), nanos);
        TestDb { url: with_db_name(&base, &name), name }
    }

    /// A unique database with the schema applied.
    pub fn fresh() -> TestDb {
        let db = TestDb::empty();
        chatserver::db::schema::prepare(&db.url).unwrap();
        db
    }

    /// A plain connection to the test database.
    pub fn conn(&self) -> Conn {
        Conn::new(Opts::from_url(&self.url).unwrap()).unwrap()
    }

    /// A plain connection to the server, no database selected.
    pub fn server_conn(&self) -> Conn {
        let opts = OptsBuilder::from_opts(Opts::from_url(&self.url).unwrap()).db_name(None::<String>);
        Conn::new(opts).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // No unwrap here: a panic while unwinding would abort the test run.
        let dropped = Opts::from_url(&self.url)
            .map_err(mysql::Error::from)
            .and_then(|opts| Conn::new(OptsBuilder::from_opts(opts).db_name(None::<String>)))
            .and_then(|mut c| c.query_drop(format!("DROP DATABASE IF EXISTS `{}`", self.name)));
        if let Err(e) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// `base` with its database name (the path) replaced by `name`, keeping any
/// `?query`.
fn with_db_name(base: &str, name: &str) -> String {
    let (head, query) = match base.find('?') {
        Some(i) => base.split_at(i),
        None => (base, ""),
    };
    let authority_start = head.find("://").map_or(0, |i| i + 3);
    let authority_end = head[authority_start..].find('/').map_or(head.len(), |i| authority_start + i);
    format!("{}/{}{}", &head[..authority_end], name, query)
}
