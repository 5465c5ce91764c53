//! SPEC §2-§3 over real TCP: registration, login, what is served before
//! login, PING, framing, and malformed input.

mod common;

use common::{
    Client, Server, TestDb, assert_refused, key_set, keys, login_when_released, ping_pong, unique_name, user_on,
    user_state, wait_user_state,
};
use serde_json::{Value, json};

const PW: &str = "pw-Secret-1";
const INVALID: &str = "id or password is invalid!";
const IN_USE: &str = "this account is using, input another!";

/// Asserts a REG_ACK is a refusal: errno 1 with a non-empty errmsg, no id.
fn assert_reg_refused(ack: &Value, what: &str) {
    assert_refused(ack, 1, what);
    assert!(ack.get("id").is_none(), "{what}: refused REG_ACK has an id: {ack}");
}

fn user_count(db: &TestDb) -> i64 {
    db.query_i64("SELECT COUNT(*) FROM user", ())
}

// ---------------------------------------------------------------- register

#[test]
fn register_returns_a_new_id_and_stores_only_an_argon2id_hash() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    let name1 = unique_name("reg");
    let name2 = unique_name("reg");
    let plain = "Plain-Text-Secret-42";

    let ack1 = c.reg(&name1, plain);
    assert_eq!(ack1["errno"].as_i64(), Some(0), "{ack1}");
    let id1 = ack1["id"].as_i64().unwrap_or_else(|| panic!("no id: {ack1}"));
    let id2 = c.register(&name2, plain);
    assert!(id1 > 0 && id2 > 0 && id1 != id2, "ids {id1} and {id2}");

    for (id, name) in [(id1, &name1), (id2, &name2)] {
        let row: Option<(String, String, String)> =
            db.query_first("SELECT name, password, state FROM user WHERE id = ?", (id,));
        let (stored_name, hash, state) = row.unwrap_or_else(|| panic!("no row for user {id}"));
        assert_eq!(&stored_name, name);
        assert_eq!(state, "offline", "a new user is offline");
        assert!(hash.starts_with("$argon2id$"), "password column is not an argon2id PHC string: {hash:?}");
        assert!(!hash.contains(plain), "the plain password is stored: {hash:?}");
    }
    let h1 = db.query_string("SELECT password FROM user WHERE id = ?", (id1,));
    let h2 = db.query_string("SELECT password FROM user WHERE id = ?", (id2,));
    assert_ne!(h1, h2, "same password, same hash: not salted");
    // Nothing anywhere in the table holds the password as given.
    let plain_rows = db.query_i64("SELECT COUNT(*) FROM user WHERE password = ? OR name = ?", (plain, plain));
    assert_eq!(plain_rows, 0);
}

#[test]
fn register_a_taken_name_is_errno_1() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    let name = unique_name("dup");
    let id = c.register(&name, PW);
    let ack = c.reg(&name, "another-password");
    assert_reg_refused(&ack, "name taken");
    assert_eq!(user_count(&db), 1, "a second user row was created");
    // The original owner still logs in with the original password.
    let login = c.login_ok(id, PW);
    assert_eq!(login["name"], name.as_str());
}

#[test]
fn register_rejects_empty_and_overlong_names_and_passwords() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    let long51 = "n".repeat(51);
    let cases = [
        ("empty name", String::new(), PW.to_string()),
        ("empty password", unique_name("e"), String::new()),
        ("51-character name", long51.clone(), PW.to_string()),
        ("51-character password", unique_name("e"), "p".repeat(51)),
        ("51-character CJK name", "你".repeat(51), PW.to_string()),
    ];
    for (what, name, password) in &cases {
        let ack = c.reg(name, password);
        assert_reg_refused(&ack, what);
    }
    assert_eq!(user_count(&db), 0, "a refused registration created a row");

    // 50 characters is allowed, counted in characters (not bytes).
    let name50 = "m".repeat(50);
    let id_a = c.register(&name50, &"q".repeat(50));
    let cjk50 = "好".repeat(50);
    let id_b = c.register(&cjk50, PW);
    assert_eq!(c.login_ok(id_a, &"q".repeat(50))["name"], name50.as_str());
    let mut c2 = Client::connect(server.addr);
    assert_eq!(c2.login_ok(id_b, PW)["name"], cjk50.as_str());
}

#[test]
fn register_refuses_blank_names_and_names_with_control_characters() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    let why = "name must not be blank or contain control characters";
    let names = [
        "   ",
        "\t",
        "\u{3000}",
        "ev\u{1b}]0;owned\u{7}il",
        "bell\u{7}",
        "back\u{8}space",
        "cr\rlf",
        "line\nbreak",
        "del\u{7f}",
        "csi\u{9b}2J",
        "evil\u{202e}txt",
        "iso\u{2066}late",
    ];
    for name in names {
        assert_eq!(c.reg(name, PW), json!({"msgid": 5, "errno": 1, "errmsg": why}), "name {name:?}");
    }
    assert_eq!(user_count(&db), 0, "a refused registration created a row");
    // Spaces inside a name, and any script, are fine.
    let id = c.register(&format!("{} 李 wang", unique_name("sp")), PW);
    assert!(id > 0);
}

// ------------------------------------------------------------------- login

#[test]
fn login_ok_has_id_and_name_and_leaves_out_empty_lists() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    let name = unique_name("li");
    let id = c.register(&name, PW);
    assert_eq!(user_state(&db, id), "offline");
    let ack = c.login_ok(id, PW);
    assert_eq!(ack["id"].as_i64(), Some(id), "{ack}");
    assert_eq!(ack["name"], name.as_str(), "{ack}");
    assert_eq!(
        keys(&ack),
        key_set(&["msgid", "errno", "id", "name", "token"]),
        "empty friends/groups/offlinemsg must be left out: {ack}"
    );
    let token = ack["token"].as_str().unwrap_or_else(|| panic!("token is not a string: {ack}"));
    assert!(
        (32..=64).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "token must be URL-safe text of at least 128 bits and at most 64 characters: {token:?}"
    );
    assert_eq!(user_state(&db, id), "online");
}

#[test]
fn login_with_a_wrong_password_or_unknown_id_is_errno_1() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    let id = c.register(&unique_name("w"), PW);

    let wrong = c.login(id, "not-the-password");
    assert_eq!(wrong["errno"].as_i64(), Some(1), "{wrong}");
    assert_eq!(wrong["errmsg"], INVALID, "{wrong}");
    assert!(wrong.get("name").is_none(), "a refused LOGIN_ACK carries a name: {wrong}");

    let unknown = c.login(id + 1000, PW);
    assert_eq!(unknown["errno"].as_i64(), Some(1), "{unknown}");
    assert_eq!(unknown["errmsg"], INVALID, "{unknown}");

    assert_eq!(user_state(&db, id), "offline", "a failed login set the user online");
    // The connection is still not logged in.
    c.send_chat(id, "x");
    c.recv_error(102);
    // And the right password still works.
    c.login_ok(id, PW);
}

#[test]
fn login_while_logged_in_elsewhere_is_errno_2() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut first, id, _) = user_on(server.addr, "twice", PW);
    let mut second = Client::connect(server.addr);
    let ack = second.login(id, PW);
    assert_eq!(ack["errno"].as_i64(), Some(2), "{ack}");
    assert_eq!(ack["errmsg"], IN_USE, "{ack}");
    // The first session is untouched.
    ping_pong(&mut first);
    assert_eq!(user_state(&db, id), "online");
    // The second connection is not logged in.
    second.send(&json!({"msgid": 7, "friendid": id}));
    second.recv_error(102);
}

#[test]
fn login_again_after_logout_works() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut c, id, name) = user_on(server.addr, "out", PW);
    c.send(&json!({"msgid": 3, "id": id}));
    // LOGOUT has no reply; after it, the connection is logged out.
    c.send(&json!({"msgid": 7, "friendid": id}));
    c.recv_error(102);
    wait_user_state(&db, id, "offline");
    // Same connection, then another one.
    let ack = c.login_ok(id, PW);
    assert_eq!(ack["name"], name.as_str());
    c.logout();
    let mut other = Client::connect(server.addr);
    let ack = login_when_released(&mut other, id, PW);
    assert_eq!(ack["id"].as_i64(), Some(id));
    assert_eq!(user_state(&db, id), "online");
}

#[test]
fn login_again_after_an_abrupt_close_works() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (c, id, name) = user_on(server.addr, "drop", PW);
    drop(c);
    let mut again = Client::connect(server.addr);
    let ack = login_when_released(&mut again, id, PW);
    assert_eq!(ack["name"], name.as_str());
    assert_eq!(user_state(&db, id), "online");
}

// ----------------------------------------------------- before login, PING

#[test]
fn before_login_only_login_reg_and_ping_are_served() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut b, idb, _) = user_on(server.addr, "b", PW);

    let mut anon = Client::connect(server.addr);
    ping_pong(&mut anon);
    let refused = [
        json!({"msgid": 6, "id": idb, "name": "x", "toid": idb, "msg": "sneaky"}),
        json!({"msgid": 7, "friendid": idb}),
        json!({"msgid": 8, "groupname": unique_name("g"), "groupdesc": "d"}),
        json!({"msgid": 9, "groupid": 1}),
        json!({"msgid": 10, "groupid": 1, "msg": "sneaky"}),
        json!({"msgid": 3, "id": idb}),
    ];
    for req in &refused {
        anon.send(req);
        let err = anon.recv_error(102);
        assert!(err["msg"].as_str().is_some_and(|s| !s.is_empty()), "ERROR without msg for {req}: {err}");
    }
    // Nothing was carried out: no message reached b, no group was made,
    // and b's LOGOUT-by-a-stranger did not log b out.
    ping_pong(&mut b);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM allgroup", ()), 0);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM friend", ()), 0);
    assert_eq!(user_state(&db, idb), "online");
    // REG and LOGIN are served.
    let id = anon.register(&unique_name("anon"), PW);
    anon.login_ok(id, PW);
}

#[test]
fn ping_gets_pong_before_and_after_login() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    ping_pong(&mut c);
    c.register_login("p", PW);
    ping_pong(&mut c);
    ping_pong(&mut c);
}

// ----------------------------------------------------------------- framing

#[test]
fn two_requests_in_one_write_are_both_answered() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    let name = unique_name("co");
    let mut bytes = Vec::new();
    bytes.extend_from_slice(json!({"msgid": 4, "name": name, "password": PW}).to_string().as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(br#"{"msgid":16}"#);
    bytes.push(0);
    c.send_raw(&bytes);
    let ack = c.recv_msgid(5);
    assert_eq!(ack["errno"].as_i64(), Some(0), "{ack}");
    c.recv_msgid(17);

    // Logged in, two chats coalesced into one write both arrive.
    let id = ack["id"].as_i64().expect("id");
    c.login_ok(id, PW);
    let (mut b, idb, _) = user_on(server.addr, "cob", PW);
    let mut two = Vec::new();
    for msg in ["first", "second"] {
        two.extend_from_slice(json!({"msgid": 6, "toid": idb, "msg": msg}).to_string().as_bytes());
        two.push(0);
    }
    c.send_raw(&two);
    assert_eq!(b.recv_msgid(6)["msg"], "first");
    assert_eq!(b.recv_msgid(6)["msg"], "second");
}

#[test]
fn one_request_split_into_single_bytes_is_answered() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    let name = unique_name("split");
    let id = c.register(&name, PW);
    let mut bytes = json!({"msgid": 1, "id": id, "password": PW}).to_string().into_bytes();
    bytes.push(0);
    for byte in &bytes {
        c.send_raw(std::slice::from_ref(byte));
    }
    let ack = c.recv_msgid(2);
    assert_eq!(ack["errno"].as_i64(), Some(0), "{ack}");
    assert_eq!(ack["name"], name.as_str());
    // Split UTF-8 inside a multi-byte character too.
    let mut ping = r#"{"msgid":16,"pad":"你好😀"}"#.as_bytes().to_vec();
    ping.push(0);
    for byte in &ping {
        c.send_raw(std::slice::from_ref(byte));
    }
    c.recv_msgid(17);
}

#[test]
fn newline_and_crlf_terminators_are_accepted() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    c.send_raw(b"{\"msgid\":16}\n");
    c.recv_msgid(17);
    c.send_raw(b"{\"msgid\":16}\r\n");
    c.recv_msgid(17);
    let name = unique_name("nl");
    let line = format!("{}\r\n", json!({"msgid": 4, "name": name, "password": PW}));
    c.send_raw(line.as_bytes());
    let ack = c.recv_msgid(5);
    assert_eq!(ack["errno"].as_i64(), Some(0), "{ack}");
    // The \r is not part of the password.
    let id = ack["id"].as_i64().expect("id");
    c.send_raw(format!("{}\n", json!({"msgid": 1, "id": id, "password": PW})).as_bytes());
    let login = c.recv_msgid(2);
    assert_eq!(login["errno"].as_i64(), Some(0), "{login}");
    // All three terminators mixed in one write.
    c.send_raw(b"{\"msgid\":16}\0{\"msgid\":16}\n{\"msgid\":16}\r\n");
    for _ in 0..3 {
        c.recv_msgid(17);
    }
}

#[test]
fn empty_frames_are_ignored() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    c.send_raw(b"\0\0\n\r\n\0");
    c.send_raw(b"\n\0{\"msgid\":16}\0\0\r\n");
    // The very next frame is the PONG: no ERROR for the empty frames.
    c.recv_msgid(17);
    c.send_raw(b"{\"msgid\":16}\0");
    c.recv_msgid(17);
}

/// A frame of exactly `len` bytes: a ONE_CHAT to `toid` padded in `msg`.
fn chat_frame_of_len(toid: i64, len: usize) -> Vec<u8> {
    let empty = json!({"msgid": 6, "toid": toid, "msg": ""}).to_string();
    assert!(len >= empty.len());
    let frame = json!({"msgid": 6, "toid": toid, "msg": "x".repeat(len - empty.len())}).to_string();
    assert_eq!(frame.len(), len);
    frame.into_bytes()
}

#[test]
fn a_frame_of_exactly_64_kib_is_served() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, _, _) = user_on(server.addr, "big", PW);
    let (mut b, idb, _) = user_on(server.addr, "bigb", PW);
    let mut frame = chat_frame_of_len(idb, 64 * 1024);
    let sent: Value = serde_json::from_slice(&frame).expect("json");
    frame.push(0);
    a.send_raw(&frame);
    let got = b.recv_msgid(6);
    assert_eq!(got["msg"], sent["msg"], "the 64 KiB message arrived changed");
    ping_pong(&mut a);
}

#[test]
fn a_frame_over_64_kib_gets_103_and_is_closed_while_others_chat_on() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, _) = user_on(server.addr, "a", PW);
    let (mut b, idb, _) = user_on(server.addr, "b", PW);
    let (mut x, idx, _) = user_on(server.addr, "x", PW);

    let mut frame = chat_frame_of_len(idb, 64 * 1024 + 1);
    frame.push(0);
    // The server may close before reading all of it: a write error is fine.
    let _ = x.try_send_raw(&frame);
    let frames = x.expect_closed();
    assert!(
        frames.len() == 1 && frames[0]["msgid"].as_i64() == Some(11) && frames[0]["errno"].as_i64() == Some(103),
        "expected exactly one ERROR errno 103 before the close, got {frames:?}"
    );
    wait_user_state(&db, idx, "offline");

    // The oversize message was not delivered; a and b chat on.
    a.send_chat(idb, "still here");
    let got = b.recv_msgid(6);
    assert_eq!(got["msg"], "still here", "b got something else first: {got}");
    assert_eq!(got["id"].as_i64(), Some(ida));
    b.send_chat(ida, "me too");
    assert_eq!(a.recv_msgid(6)["msg"], "me too");
    let mut fresh = Client::connect(server.addr);
    ping_pong(&mut fresh);
}

// --------------------------------------------------------------- bad input

#[test]
fn malformed_messages_get_100_and_the_connection_stays_usable() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let cases: [&[u8]; 10] = [
        b"hello",
        b"{not json",
        b"[]",
        b"\"x\"",
        b"42",
        b"{\"msgid\":\"1\"}",
        b"{\"msgid\":1}",
        b"{\"msgid\":1,\"id\":\"3\",\"password\":\"p\"}",
        b"{\"msgid\":4,\"name\":5,\"password\":\"p\"}",
        b"{\"msgid\":4,\"name\":\"n\",\"password\":[]}",
    ];
    for case in cases {
        let mut c = Client::connect(server.addr);
        let mut bytes = case.to_vec();
        bytes.push(0);
        c.send_raw(&bytes);
        let err = c.recv_msgid(11);
        assert_eq!(err["errno"].as_i64(), Some(100), "for {:?}: {err}", String::from_utf8_lossy(case));
        assert!(err["msg"].as_str().is_some_and(|s| !s.is_empty()), "{err}");
        ping_pong(&mut c);
    }
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM user", ()), 0);
}

#[test]
fn wrong_field_types_after_login_get_100() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut c, _, _) = user_on(server.addr, "t", PW);
    let (mut b, idb, _) = user_on(server.addr, "tb", PW);
    let cases = [
        json!({"msgid": 6, "toid": idb.to_string(), "msg": "x"}),
        json!({"msgid": 6, "toid": idb, "msg": 5}),
        json!({"msgid": 6, "toid": idb}),
        json!({"msgid": 7, "friendid": "2"}),
        json!({"msgid": 9, "groupid": 1.5}),
        json!({"msgid": 10, "groupid": 1, "msg": {"a": 1}}),
    ];
    for case in &cases {
        c.send(case);
        let err = c.recv_msgid(11);
        assert_eq!(err["errno"].as_i64(), Some(100), "for {case}: {err}");
    }
    ping_pong(&mut c);
    // Nothing reached b.
    c.send_chat(idb, "ok");
    assert_eq!(b.recv_msgid(6)["msg"], "ok");
}

#[test]
fn unknown_msgid_gets_101_and_the_connection_stays_usable() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = Client::connect(server.addr);
    for id in [99, 0, -1, 18, 1_000_000] {
        c.send(&json!({"msgid": id}));
        let err = c.recv_msgid(11);
        assert_eq!(err["errno"].as_i64(), Some(101), "msgid {id}: {err}");
    }
    ping_pong(&mut c);
    c.register_login("u", PW);
    c.send(&json!({"msgid": 99}));
    c.recv_error(101);
    ping_pong(&mut c);
}

#[test]
fn invalid_utf8_gets_100_and_others_carry_on() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut other, _, _) = user_on(server.addr, "utf", PW);
    let mut c = Client::connect(server.addr);
    c.send_raw(b"{\"msgid\":16,\"x\":\"\xff\xfe\"}\0{\"msgid\":16}\0");
    // JSON text is UTF-8: invalid bytes make the message malformed (100).
    let err = c.recv_msgid(11);
    assert_eq!(err["errno"].as_i64(), Some(100), "{err}");
    c.recv_msgid(17);
    ping_pong(&mut other);
}
