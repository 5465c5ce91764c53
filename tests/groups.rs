//! SPEC §2-§3 over real TCP: friends, groups, group chat and presence.

mod common;

use std::time::Duration;

use common::{
    Client, Server, TestDb, assert_recent_stamp, parse_string_list, unique_name, wait_offline_count, wait_user_state,
};
use serde_json::{Value, json};

const PW: &str = "pw-Group-1";

fn add_friend(c: &mut Client, friendid: i64) -> Value {
    c.send(&json!({"msgid": 7, "friendid": friendid}));
    c.recv_msgid(12)
}

fn create_group(c: &mut Client, name: &str, desc: &str) -> Value {
    c.send(&json!({"msgid": 8, "groupname": name, "groupdesc": desc}));
    c.recv_msgid(13)
}

fn add_group(c: &mut Client, groupid: i64) -> Value {
    c.send(&json!({"msgid": 9, "groupid": groupid}));
    c.recv_msgid(14)
}

/// Creates a group and returns its id (asserting the ACK).
fn new_group(c: &mut Client, name: &str, desc: &str) -> i64 {
    let ack = create_group(c, name, desc);
    assert_eq!(ack["errno"].as_i64(), Some(0), "CREATE_GROUP {name:?}: {ack}");
    ack["groupid"].as_i64().unwrap_or_else(|| panic!("CREATE_GROUP_ACK without groupid: {ack}"))
}

fn join_group(c: &mut Client, groupid: i64) {
    let ack = add_group(c, groupid);
    assert_eq!(ack, json!({"msgid": 14, "errno": 0, "groupid": groupid}), "ADD_GROUP");
}

/// Asserts an ACK is a refusal with `errno` and an errmsg.
fn assert_refused(ack: &Value, errno: i64, what: &str) {
    assert_eq!(ack["errno"].as_i64(), Some(errno), "{what}: {ack}");
    assert!(ack["errmsg"].as_str().is_some_and(|s| !s.is_empty()), "{what}: refusal without errmsg: {ack}");
}

/// PING, and the very next frame must be the PONG: proves nothing else was
/// queued for this client before it.
fn nothing_pending(c: &mut Client) {
    c.send(&json!({"msgid": 16}));
    let v = c.recv();
    assert_eq!(v, json!({"msgid": 17}), "expected nothing before the PONG");
}

fn logout(db: &TestDb, c: &mut Client, id: i64) {
    c.send(&json!({"msgid": 3}));
    wait_user_state(db, id, "offline");
}

// ----------------------------------------------------------------- friends

#[test]
fn add_friend_answers_with_the_friend_and_its_state() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    a.register_login("a", PW);
    let (idb, nameb) = b.register_login("b", PW);
    let namec = unique_name("c");
    let idc = a.register(&namec, PW);

    let ack = add_friend(&mut a, idb);
    assert_eq!(ack, json!({"msgid": 12, "errno": 0, "friend": {"id": idb, "name": nameb, "state": "online"}}));
    let ack = add_friend(&mut a, idc);
    assert_eq!(ack, json!({"msgid": 12, "errno": 0, "friend": {"id": idc, "name": namec, "state": "offline"}}));
}

#[test]
fn add_friend_refuses_oneself_a_missing_user_and_a_second_time() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let (ida, _) = a.register_login("a", PW);
    let idb = a.register(&unique_name("b"), PW);

    let me = add_friend(&mut a, ida);
    assert!(me["errno"].as_i64().is_some_and(|e| e != 0), "adding oneself must be refused: {me}");
    assert!(me.get("friend").is_none(), "{me}");
    assert_refused(&add_friend(&mut a, idb + 1000), 200, "missing user");
    assert_eq!(add_friend(&mut a, idb)["errno"].as_i64(), Some(0));
    assert_refused(&add_friend(&mut a, idb), 203, "second time");
    let rows: Vec<(i64, i64)> = db.query_all("SELECT userid, friendid FROM friend", ());
    assert_eq!(rows, vec![(ida, idb)], "friend table");
}

#[test]
fn login_ack_lists_friends_as_strings_with_their_state_and_friendship_is_one_way() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    let (ida, _) = a.register_login("a", PW);
    let (idb, nameb) = b.register_login("b", PW);
    let namec = unique_name("c");
    let idc = a.register(&namec, PW);
    assert_eq!(add_friend(&mut a, idb)["errno"].as_i64(), Some(0));
    assert_eq!(add_friend(&mut a, idc)["errno"].as_i64(), Some(0));

    logout(&db, &mut a, ida);
    // b is online now and gets nothing from a's logout (b has no friends).
    let ack = a.login_ok(ida, PW);
    let raw = ack["friends"].as_array().unwrap_or_else(|| panic!("LOGIN_ACK without friends: {ack}"));
    assert!(raw.iter().all(Value::is_string), "friends elements must be JSON strings: {ack}");
    let mut friends = parse_string_list(&ack["friends"]);
    friends.sort_by_key(|f| f["id"].as_i64());
    assert_eq!(
        friends,
        vec![
            json!({"id": idb, "name": nameb, "state": "online"}),
            json!({"id": idc, "name": namec, "state": "offline"}),
        ]
    );

    // One-way: b did not add a, so b's list is empty (left out).
    logout(&db, &mut b, idb);
    let back = b.login_ok(idb, PW);
    assert!(back.get("friends").is_none(), "b never added anyone: {back}");
}

// ------------------------------------------------------------------ groups

#[test]
fn create_group_answers_with_id_and_name_and_refuses_a_taken_name() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    let (ida, _) = a.register_login("a", PW);
    b.register_login("b", PW);
    let name = unique_name("grp");
    let ack = create_group(&mut a, &name, "a test group");
    assert_eq!(ack["errno"].as_i64(), Some(0), "{ack}");
    assert_eq!(ack["groupname"], name.as_str(), "{ack}");
    let gid = ack["groupid"].as_i64().unwrap_or_else(|| panic!("no groupid: {ack}"));
    assert!(gid > 0);
    // The creator is a member with role creator.
    let role = db.query_string("SELECT grouprole FROM groupuser WHERE groupid = ? AND userid = ?", (gid, ida));
    assert_eq!(role.as_deref(), Some("creator"));

    assert_refused(&create_group(&mut b, &name, "same name"), 203, "group name taken");
    assert_refused(&create_group(&mut a, &name, "same name"), 203, "group name taken");
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM allgroup", ()), 1);
}

#[test]
fn add_group_joins_and_refuses_a_missing_group_and_a_second_time() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    a.register_login("a", PW);
    let (idb, _) = b.register_login("b", PW);
    let gid = new_group(&mut a, &unique_name("grp"), "d");

    join_group(&mut b, gid);
    assert_refused(&add_group(&mut b, gid + 1000), 201, "missing group");
    assert_refused(&add_group(&mut b, gid), 203, "second time");
    // The creator joining its own group is "already a member" too.
    assert_refused(&add_group(&mut a, gid), 203, "creator joins again");
    let role = db.query_string("SELECT grouprole FROM groupuser WHERE groupid = ? AND userid = ?", (gid, idb));
    assert_eq!(role.as_deref(), Some("normal"));
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM groupuser", ()), 2);
}

#[test]
fn login_ack_lists_groups_with_members_roles_and_states() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    let (ida, namea) = a.register_login("a", PW);
    let (idb, nameb) = b.register_login("b", PW);
    let gname = unique_name("grp");
    let desc = "desc with \"quotes\" and 中文";
    let gid = new_group(&mut a, &gname, desc);
    join_group(&mut b, gid);

    logout(&db, &mut b, idb);
    let ack = b.login_ok(idb, PW);
    let raw = ack["groups"].as_array().unwrap_or_else(|| panic!("LOGIN_ACK without groups: {ack}"));
    assert!(raw.iter().all(Value::is_string), "groups elements must be JSON strings: {ack}");
    let groups = parse_string_list(&ack["groups"]);
    assert_eq!(groups.len(), 1, "{ack}");
    let g = &groups[0];
    assert_eq!(g["id"].as_i64(), Some(gid), "{g}");
    assert_eq!(g["groupname"], gname.as_str(), "{g}");
    assert_eq!(g["groupdesc"], desc, "{g}");
    let users_raw = g["users"].as_array().unwrap_or_else(|| panic!("group without users: {g}"));
    assert!(users_raw.iter().all(Value::is_string), "users elements must be JSON strings: {g}");
    let mut users = parse_string_list(&g["users"]);
    users.sort_by_key(|u| u["id"].as_i64());
    assert_eq!(
        users,
        vec![
            json!({"id": ida, "name": namea, "state": "online", "role": "creator"}),
            json!({"id": idb, "name": nameb, "state": "online", "role": "normal"}),
        ]
    );
    let keys: Vec<&String> = g.as_object().expect("object").keys().collect();
    assert_eq!(keys.len(), 4, "group has exactly id, groupname, groupdesc, users: {g}");

    // a offline shows as offline in b's next list.
    logout(&db, &mut a, ida);
    logout(&db, &mut b, idb);
    let ack = b.login_ok(idb, PW);
    let groups = parse_string_list(&ack["groups"]);
    let users = parse_string_list(&groups[0]["users"]);
    let creator =
        users.iter().find(|u| u["id"].as_i64() == Some(ida)).unwrap_or_else(|| panic!("creator missing: {users:?}"));
    assert_eq!(creator["state"], "offline", "{creator}");
}

#[test]
fn group_chat_reaches_every_other_member_live_but_not_the_sender() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    let mut c = Client::connect(server.addr);
    let mut outsider = Client::connect(server.addr);
    let (ida, namea) = a.register_login("a", PW);
    b.register_login("b", PW);
    c.register_login("c", PW);
    outsider.register_login("o", PW);
    let gid = new_group(&mut a, &unique_name("grp"), "d");
    join_group(&mut b, gid);
    join_group(&mut c, gid);

    a.send(&json!({"msgid": 10, "groupid": gid, "msg": "hi all", "id": 9999, "name": "forged"}));
    for member in [&mut b, &mut c] {
        let got = member.recv_msgid(10);
        assert_recent_stamp(&got);
        assert_eq!(
            got,
            json!({"msgid": 10, "id": ida, "name": namea, "groupid": gid, "msg": "hi all",
                   "time": got["time"].clone()})
        );
    }
    nothing_pending(&mut a);
    nothing_pending(&mut outsider);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM offlinemessage", ()), 0);
}

#[test]
fn group_chat_to_an_offline_member_arrives_in_offlinemsg() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    let mut d = Client::connect(server.addr);
    a.register_login("a", PW);
    b.register_login("b", PW);
    let (idd, _) = d.register_login("d", PW);
    let gid = new_group(&mut a, &unique_name("grp"), "d");
    join_group(&mut b, gid);
    join_group(&mut d, gid);
    logout(&db, &mut d, idd);

    a.send(&json!({"msgid": 10, "groupid": gid, "msg": "while you were away"}));
    let live = b.recv_msgid(10);
    wait_offline_count(&db, idd, 1);
    let ack = d.login_ok(idd, PW);
    let raw = ack["offlinemsg"].as_array().unwrap_or_else(|| panic!("LOGIN_ACK without offlinemsg: {ack}"));
    assert!(raw.iter().all(Value::is_string), "offlinemsg elements must be strings: {ack}");
    let stored = parse_string_list(&ack["offlinemsg"]);
    assert_eq!(stored, vec![live], "stored GROUP_CHAT differs from the live one");
    wait_offline_count(&db, idd, 0);
}

#[test]
fn group_chat_by_a_non_member_is_202_and_to_a_missing_group_201() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    let mut o = Client::connect(server.addr);
    a.register_login("a", PW);
    b.register_login("b", PW);
    o.register_login("o", PW);
    let gid = new_group(&mut a, &unique_name("grp"), "d");
    join_group(&mut b, gid);

    o.send(&json!({"msgid": 10, "groupid": gid, "msg": "let me in"}));
    o.recv_error(202);
    o.send(&json!({"msgid": 10, "groupid": gid + 1000, "msg": "anyone?"}));
    o.recv_error(201);
    a.send(&json!({"msgid": 10, "groupid": gid + 1000, "msg": "anyone?"}));
    a.recv_error(201);
    // The members received none of it.
    nothing_pending(&mut b);
    nothing_pending(&mut a);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM offlinemessage", ()), 0);
}

// ---------------------------------------------------------------- presence

#[test]
fn presence_tells_friends_of_login_logout_and_close_and_nobody_else() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = Client::connect(server.addr);
    let mut c = Client::connect(server.addr);
    let (ida, _) = a.register_login("a", PW);
    let (idc, _) = c.register_login("c", PW);
    let nameb = unique_name("b");
    let idb = a.register(&nameb, PW);
    assert_eq!(add_friend(&mut a, idb)["errno"].as_i64(), Some(0));
    // c has a friend (a), just not b.
    assert_eq!(add_friend(&mut c, ida)["errno"].as_i64(), Some(0));
    let online = json!({"msgid": 15, "id": idb, "name": nameb, "state": "online"});
    let offline = json!({"msgid": 15, "id": idb, "name": nameb, "state": "offline"});

    let mut b = Client::connect(server.addr);
    b.login_ok(idb, PW);
    assert_eq!(a.recv_msgid(15), online);
    // b adding c does not make b a friend *of* c (one-way).
    assert_eq!(add_friend(&mut b, idc)["errno"].as_i64(), Some(0));

    b.send(&json!({"msgid": 3}));
    assert_eq!(a.recv_msgid(15), offline);
    wait_user_state(&db, idb, "offline");

    let mut b = Client::connect(server.addr);
    b.login_ok(idb, PW);
    assert_eq!(a.recv_msgid(15), online);
    drop(b);
    assert_eq!(a.recv_msgid(15), offline);

    // c, who does not have b as a friend, heard none of it.
    c.expect_silence(Duration::from_millis(500));
    nothing_pending(&mut c);
    nothing_pending(&mut a);
}
