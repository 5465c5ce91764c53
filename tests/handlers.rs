//! The handlers as plain functions: a request and its caller in, replies
//! out, with no socket and no event loop (real MariaDB behind them).

mod common;

use std::time::Duration;

use chatserver::bus::Bus;
use chatserver::db::{Pool, schema};
use chatserver::model::server;
use chatserver::net::{ConnId, Remote, Writer};
use chatserver::service::cmd::{self, Caller, Outcome, SessionChange};
use chatserver::service::request::{Request, Secret};
use chatserver::service::{Ctx, Jobs, Lanes, Limits, Parts, Priority, User};
use common::TestDb;
use serde_json::Value;

/// A service context on a fresh database; Redis is not started, so what is
/// not online here is stored.
fn context(db: &TestDb) -> std::sync::Arc<Ctx> {
    schema::prepare(&db.url).unwrap();
    let pool = Pool::new(&db.url, 2, Duration::from_secs(5)).unwrap();
    // This "server" is alive, as a running server is from its first beat.
    pool.run(|c| server::beat(c, "handler-test")).unwrap();
    let bus = Bus::new("redis://127.0.0.1:1/", &db.name, "handler-test").unwrap();
    Ctx::new(Parts {
        db: pool,
        server_id: "handler-test".into(),
        bus,
        remote: Remote::new(1).unwrap(),
        jobs: Jobs::new(1, "job", Priority::Normal).unwrap(),
        hashing: Jobs::new(1, "hash", Priority::Background).unwrap(),
        token_ttl: Duration::from_secs(60),
        lanes: Lanes::new(2).unwrap(),
        limits: Limits::default(),
    })
}

fn caller(token: u64, user: Option<User>) -> Caller {
    Caller { conn: ConnId { worker: 0, token }, writer: Writer::detached(), user }
}

fn replies(outcome: &Outcome) -> Vec<Value> {
    outcome.replies.iter().map(|r| serde_json::from_str(r).unwrap()).collect()
}

fn register(ctx: &std::sync::Arc<Ctx>, name: &str) -> i32 {
    let out = cmd::apply(ctx, &caller(1, None), Request::Register { name: name.into(), password: "pw".into() });
    let reply = &replies(&out)[0];
    assert_eq!((reply["msgid"].as_i64(), reply["errno"].as_i64()), (Some(5), Some(0)), "{reply}");
    reply["id"].as_i64().unwrap() as i32
}

#[test]
fn register_then_login_changes_the_session_and_stores_for_the_offline() {
    let db = TestDb::new();
    let ctx = context(&db);
    let a = register(&ctx, "alice");
    let b = register(&ctx, "bob");

    let out = cmd::apply(&ctx, &caller(1, None), Request::Login { id: a, secret: Secret::Password("pw".into()) });
    let ack = &replies(&out)[0];
    assert_eq!((ack["msgid"].as_i64(), ack["errno"].as_i64(), ack["name"].as_str()), (Some(2), Some(0), Some("alice")));
    let Some(SessionChange::LoggedIn { user, offline_upto: None, .. }) = out.change else {
        panic!("expected a login, got {:?}", out.change)
    };
    assert_eq!(user, User { id: a, name: "alice".into() });

    // Bob is offline: the message is stored, and the sender gets no reply.
    let me = Some(user);
    let out = cmd::apply(&ctx, &caller(1, me.clone()), Request::OneChat { toid: b, msg: "hi".into() });
    assert!(out.replies.is_empty() && out.change.is_none());
    let stored: Vec<String> = db.query_all("SELECT message FROM offlinemessage WHERE userid = ?", (b,));
    let stored: Value = serde_json::from_str(&stored[0]).unwrap();
    assert_eq!(
        (stored["id"].as_i64(), stored["toid"].as_i64(), stored["msg"].as_str()),
        (Some(a.into()), Some(b.into()), Some("hi"))
    );

    // A second login of Alice, on another connection, is refused.
    let out = cmd::apply(&ctx, &caller(2, None), Request::Login { id: a, secret: Secret::Password("pw".into()) });
    assert_eq!(replies(&out)[0]["errno"].as_i64(), Some(2));
}

#[test]
fn errors_come_in_the_right_shape() {
    let db = TestDb::new();
    let ctx = context(&db);
    let a = register(&ctx, "carol");
    let me = Some(User { id: a, name: "carol".into() });

    let out = cmd::apply(&ctx, &caller(1, None), Request::OneChat { toid: a, msg: "x".into() });
    assert_eq!(replies(&out)[0], serde_json::json!({"msgid": 11, "errno": 102, "msg": "not logged in"}));
    let out = cmd::apply(&ctx, &caller(1, me.clone()), Request::OneChat { toid: 999_999, msg: "x".into() });
    assert_eq!(replies(&out)[0]["errno"].as_i64(), Some(200));
    let out = cmd::apply(&ctx, &caller(1, me.clone()), Request::GroupChat { groupid: 999_999, msg: "x".into() });
    assert_eq!(replies(&out)[0]["errno"].as_i64(), Some(201));
    let out = cmd::apply(&ctx, &caller(1, me.clone()), Request::AddFriend { friendid: a });
    let ack = &replies(&out)[0];
    assert_eq!((ack["msgid"].as_i64(), ack["errno"].as_i64()), (Some(12), Some(203)));
    let out = cmd::apply(&ctx, &caller(1, me), Request::AddGroup { groupid: 999_999 });
    let ack = &replies(&out)[0];
    assert_eq!((ack["msgid"].as_i64(), ack["errno"].as_i64()), (Some(14), Some(201)));
}
