//! The hand-written connection pool and the schema bootstrap, against a real
//! MariaDB (`CHAT_MYSQL_URL`, default mysql://root@127.0.0.1:3306/chat).

mod common;

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use chatserver::db::{DbError, Pool, schema};
use chatserver::model::user;
use common::TestDb;
use mysql::prelude::Queryable;

fn connection_id(conn: &mut mysql::Conn) -> u32 {
    conn.query_first("SELECT CONNECTION_ID()").unwrap().unwrap()
}

#[test]
fn pool_and_errors_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Pool>();
    send_sync::<DbError>();
}

#[test]
fn opens_one_connection_eagerly_and_the_rest_on_demand() {
    let db = TestDb::fresh();
    let pool = Pool::new(&db.url, 3, Duration::from_secs(5)).unwrap();
    assert_eq!((pool.size(), pool.open_count(), pool.idle_count()), (3, 1, 1));
    let a = pool.get().unwrap();
    let b = pool.get().unwrap();
    assert_eq!((pool.open_count(), pool.idle_count()), (2, 0));
    drop(a);
    drop(b);
    assert_eq!((pool.open_count(), pool.idle_count()), (2, 2));
}

#[test]
fn exhausted_pool_waits_for_the_timeout_then_is_unavailable() {
    let db = TestDb::fresh();
    let timeout = Duration::from_millis(400);
    let pool = Pool::new(&db.url, 2, timeout).unwrap();
    let _a = pool.get().unwrap();
    let _b = pool.get().unwrap();
    let start = Instant::now();
    let err = pool.get().err().expect("a third connection out of two");
    let waited = start.elapsed();
    assert!(waited >= timeout, "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(30), "hung for {waited:?}");
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(pool.open_count(), 2);
}

#[test]
fn dropped_connection_wakes_a_blocked_waiter() {
    let db = TestDb::fresh();
    let pool = Pool::new(&db.url, 1, Duration::from_secs(20)).unwrap();
    let mut held = pool.get().unwrap();
    let held_id = connection_id(&mut held);
    let pool = &pool;
    thread::scope(|s| {
        let (started_tx, started_rx) = mpsc::channel();
        let (got_tx, got_rx) = mpsc::channel();
        s.spawn(move || {
            started_tx.send(()).unwrap();
            let got = pool.get().map(|mut c| connection_id(&mut c));
            got_tx.send(got).unwrap();
        });
        started_rx.recv().unwrap();
        // While the only connection is held, the waiter must stay blocked.
        assert!(got_rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(held);
        let got = got_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        // The very same connection, handed over, not a new one.
        assert_eq!(got.unwrap(), held_id);
    });
    assert_eq!((pool.open_count(), pool.idle_count()), (1, 1));
}

#[test]
fn killed_connection_is_discarded_and_replaced() {
    let db = TestDb::fresh();
    let pool = Pool::new(&db.url, 2, Duration::from_secs(5)).unwrap();
    let mut admin = db.conn();
    let mut conn = pool.get().unwrap();
    let old_id = connection_id(&mut conn);
    admin.query_drop(format!("KILL {old_id}")).unwrap();

    let lost = conn.run(|c| user::find(c, 1));
    let err = lost.expect_err("query on a killed connection");
    assert!(err.is_unavailable(), "{err}");
    assert!(conn.is_broken());
    drop(conn);
    assert_eq!((pool.open_count(), pool.idle_count()), (0, 0));

    let mut fresh = pool.get().unwrap();
    assert_ne!(connection_id(&mut fresh), old_id);
    assert_eq!(fresh.run(|c| user::find(c, 1)).unwrap(), None);
}

#[test]
fn stale_idle_connection_is_pinged_and_replaced() {
    let db = TestDb::fresh();
    let pool = Pool::new(&db.url, 1, Duration::from_secs(5)).unwrap().with_ping_after(Duration::ZERO);
    let old_id = connection_id(&mut pool.get().unwrap());
    db.conn().query_drop(format!("KILL {old_id}")).unwrap();
    // The caller never sees the dead connection.
    let mut conn = pool.get().unwrap();
    assert_ne!(connection_id(&mut conn), old_id);
    assert_eq!(pool.open_count(), 1);
}

#[test]
fn check_marks_broken_only_when_the_connection_is_gone() {
    let db = TestDb::fresh();
    let pool = Pool::new(&db.url, 1, Duration::from_secs(5)).unwrap();
    let mut conn = pool.get().unwrap();
    let bad = conn.query_drop("SELECT * FROM no_such_table");
    let err = conn.check(bad).unwrap_err();
    assert!(matches!(err, DbError::Query(_)), "{err}");
    assert!(!conn.is_broken());
    drop(conn);
    assert_eq!(pool.idle_count(), 1);
}

#[test]
fn unreachable_mysql_fails_at_start_with_the_address() {
    let start = Instant::now();
    let err = Pool::new("mysql://root@127.0.0.1:1/chat", 2, Duration::from_secs(1)).unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn bad_urls_are_rejected() {
    for url in ["not a url", "postgres://root@127.0.0.1/chat"] {
        let err = Pool::new(url, 1, Duration::from_secs(1)).unwrap_err();
        assert!(matches!(err, DbError::BadUrl(_)), "{url}: {err}");
    }
    for url in ["mysql://root@127.0.0.1:3306/", "mysql://root@127.0.0.1:3306/bad-name"] {
        let err = schema::prepare(url).unwrap_err();
        assert!(matches!(err, schema::SchemaError::Db(DbError::BadUrl(_))), "{url}: {err}");
    }
}

#[test]
fn prepare_creates_the_database_and_twice_keeps_data() {
    let db = TestDb::empty();
    schema::prepare(&db.url).unwrap();
    let mut conn = db.conn();
    let id = user::insert(&mut conn, "keep", "$argon2id$x").unwrap().unwrap();
    drop(conn);

    schema::prepare(&db.url).unwrap();
    let mut conn = db.conn();
    assert_eq!(user::find(&mut conn, id).unwrap().unwrap().name, "keep");

    let tables: Vec<String> = conn
        .exec(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = ? AND engine = 'InnoDB' ORDER BY table_name",
            (&db.name,),
        )
        .unwrap();
    assert_eq!(
        tables,
        ["allgroup", "friend", "groupuser", "offlinemessage", "online", "schema_version", "server", "token", "user"]
    );
    let collation: String = conn
        .exec_first(
            "SELECT collation_name FROM information_schema.columns \
             WHERE table_schema = ? AND table_name = 'user' AND column_name = 'name'",
            (&db.name,),
        )
        .unwrap()
        .unwrap();
    assert_eq!(collation, "utf8mb4_bin");
}
