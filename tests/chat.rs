//! SPEC §2-§3 over real TCP: one-to-one messages, live and stored, their
//! order, the sender's identity, timestamps, and hostile text.

mod common;

use common::{
    Client, Server, TestDb, assert_offline_chats, assert_one_chat, key_set, keys, logout_and_wait, offline_user,
    user_on, wait_offline_count,
};
use serde_json::json;

const PW: &str = "pw-Chat-1";

/// Quotes, backslashes, SQL, control characters (NUL included, which JSON
/// escapes), CJK and emoji.
const HOSTILE: &str = "it's \"quoted\" \\back\\slash\\ '; DROP TABLE user; -- \
                       你好，世界 😀🎉 tab\tnewline\nend \\u0000 nul\u{0}byte `x` %s %d";

#[test]
fn one_chat_is_delivered_live_with_the_senders_identity_and_time() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, namea) = user_on(server.addr, "a", PW);
    let (mut b, idb, nameb) = user_on(server.addr, "b", PW);

    a.send_chat(idb, "hello b");
    let got = b.recv_msgid(6);
    assert_one_chat(&got, ida, &namea, idb, "hello b");
    assert_eq!(keys(&got), key_set(&["id", "msg", "msgid", "name", "time", "toid"]));

    b.send_chat(ida, "hello a");
    let got = a.recv_msgid(6);
    assert_one_chat(&got, idb, &nameb, ida, "hello a");
    // Nothing stored for anyone: both were online.
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM offlinemessage", ()), 0);
}

#[test]
fn a_forged_id_and_name_in_one_chat_are_ignored() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, namea) = user_on(server.addr, "a", PW);
    let (mut b, idb, _) = user_on(server.addr, "b", PW);
    let (_c, idc, namec) = user_on(server.addr, "c", PW);

    a.send(&json!({"msgid": 6, "id": idc, "name": namec, "toid": idb, "msg": "forged",
                   "time": "1999-01-01 00:00:00"}));
    let got = b.recv_msgid(6);
    assert_one_chat(&got, ida, &namea, idb, "forged");
    // The forged sender is not the one who sent it either way.
    a.send(&json!({"msgid": 6, "id": 424242, "name": "nobody", "toid": idb, "msg": "again"}));
    assert_one_chat(&b.recv_msgid(6), ida, &namea, idb, "again");
}

#[test]
fn three_offline_messages_arrive_in_order_at_the_next_login_then_are_gone() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, namea) = user_on(server.addr, "a", PW);
    let (idb, nameb) = offline_user(server.addr, "b", PW);

    let msgs = ["one", "two", "three"];
    for m in msgs {
        a.send_chat(idb, m);
    }
    wait_offline_count(&db, idb, 3);

    let mut b = Client::connect(server.addr);
    let ack = b.login_ok(idb, PW);
    assert_eq!(ack["name"], nameb.as_str());
    assert_offline_chats(&ack, ida, &namea, idb, &msgs);
    // Nothing else comes live for b: the stored ones are not sent twice.
    b.ping();

    // Deleted once delivered.
    wait_offline_count(&db, idb, 0);
    logout_and_wait(&db, &mut b, idb);
    let ack = b.login_ok(idb, PW);
    assert!(ack.get("offlinemsg").is_none(), "delivered messages came again: {ack}");
}

#[test]
fn one_chat_to_a_missing_user_is_error_200() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, _) = user_on(server.addr, "a", PW);
    a.send_chat(ida + 1000, "anyone?");
    let err = a.recv_error(200);
    assert!(err["msg"].as_str().is_some_and(|s| !s.is_empty()), "{err}");
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM offlinemessage", ()), 0, "stored for nobody");
    // The connection carries on.
    a.ping();
}

#[test]
fn two_hundred_live_messages_arrive_in_order() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, _) = user_on(server.addr, "a", PW);
    let (mut b, idb, _) = user_on(server.addr, "b", PW);
    for i in 1..=200 {
        a.send_chat(idb, &format!("m{i}"));
    }
    for i in 1..=200 {
        let got = b.recv_msgid(6);
        assert_eq!(got["msg"], format!("m{i}"), "message {i} out of order: {got}");
        assert_eq!(got["id"].as_i64(), Some(ida));
    }
    b.ping();
}

#[test]
fn stored_then_live_messages_keep_their_order() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, namea) = user_on(server.addr, "a", PW);
    let mut b = Client::connect(server.addr);
    let idb = b.register(&common::unique_name("b"), PW);

    for m in ["1", "2", "3"] {
        a.send_chat(idb, m);
    }
    wait_offline_count(&db, idb, 3);
    let ack = b.login_ok(idb, PW);
    assert_offline_chats(&ack, ida, &namea, idb, &["1", "2", "3"]);
    for m in ["4", "5", "6"] {
        a.send_chat(idb, m);
    }
    for m in ["4", "5", "6"] {
        assert_one_chat(&b.recv_msgid(6), ida, &namea, idb, m);
    }
}

#[test]
fn hostile_text_arrives_byte_for_byte_live_and_offline() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, namea) = user_on(server.addr, "a", PW);
    let (mut b, idb, _) = user_on(server.addr, "b", PW);

    a.send_chat(idb, HOSTILE);
    let live = b.recv_msgid(6);
    assert_eq!(live["msg"].as_str(), Some(HOSTILE), "live text changed");
    assert_one_chat(&live, ida, &namea, idb, HOSTILE);

    logout_and_wait(&db, &mut b, idb);
    a.send_chat(idb, HOSTILE);
    wait_offline_count(&db, idb, 1);
    let ack = b.login_ok(idb, PW);
    assert_offline_chats(&ack, ida, &namea, idb, &[HOSTILE]);

    assert!(db.tables().contains(&"user".to_string()), "table user is gone");
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM user", ()), 2);
}

#[test]
fn a_hostile_user_name_registers_logs_in_and_signs_messages() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let name = "O'Brien \"x\" \\ '; DROP TABLE user; -- 你好，世界😀🎉";
    assert!(name.chars().count() <= 50);
    let mut h = Client::connect(server.addr);
    let idh = h.register(name, PW);
    let ack = h.login_ok(idh, PW);
    assert_eq!(ack["name"].as_str(), Some(name), "{ack}");

    let (mut b, idb, _) = user_on(server.addr, "b", PW);
    h.send_chat(idb, "from a strange name");
    assert_one_chat(&b.recv_msgid(6), idh, name, idb, "from a strange name");

    // To b offline, stored and signed the same way.
    logout_and_wait(&db, &mut b, idb);
    h.send_chat(idb, "later");
    wait_offline_count(&db, idb, 1);
    let ack = b.login_ok(idb, PW);
    assert_offline_chats(&ack, idh, name, idb, &["later"]);

    assert!(db.tables().contains(&"user".to_string()), "table user is gone");
    assert_eq!(db.query_string("SELECT name FROM user WHERE id = ?", (idh,)).as_deref(), Some(name));
    wait_offline_count(&db, idb, 0);
}
