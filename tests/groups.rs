//! SPEC §2-§3 over real TCP: friends, groups, group chat and presence.

mod common;

use std::time::Duration;

use common::{
    Client, Server, TestDb, assert_group_chat, assert_presence, assert_refused, logout_and_wait, parse_string_list,
    ping_pong, unique_name, user_on, wait_offline_count, wait_user_state,
};
use serde_json::{Value, json};

const PW: &str = "pw-Group-1";

fn join_group(c: &mut Client, groupid: i64) {
    let ack = c.add_group(groupid);
    assert_eq!(ack, json!({"msgid": 14, "errno": 0, "groupid": groupid}), "ADD_GROUP");
}

// ----------------------------------------------------------------- friends

#[test]
fn add_friend_answers_with_the_friend_and_its_state() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, _, _) = user_on(server.addr, "a", PW);
    let (_b, idb, nameb) = user_on(server.addr, "b", PW);
    let namec = unique_name("c");
    let idc = a.register(&namec, PW);

    let ack = a.add_friend(idb);
    assert_eq!(ack, json!({"msgid": 12, "errno": 0, "friend": {"id": idb, "name": nameb, "state": "online"}}));
    let ack = a.add_friend(idc);
    assert_eq!(ack, json!({"msgid": 12, "errno": 0, "friend": {"id": idc, "name": namec, "state": "offline"}}));
}

#[test]
fn add_friend_refuses_oneself_a_missing_user_and_a_second_time() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, _) = user_on(server.addr, "a", PW);
    let idb = a.register(&unique_name("b"), PW);

    let me = a.add_friend(ida);
    assert!(me["errno"].as_i64().is_some_and(|e| e != 0), "adding oneself must be refused: {me}");
    assert!(me.get("friend").is_none(), "{me}");
    assert_refused(&a.add_friend(idb + 1000), 200, "missing user");
    assert_eq!(a.add_friend(idb)["errno"].as_i64(), Some(0));
    assert_refused(&a.add_friend(idb), 203, "second time");
    let rows: Vec<(i64, i64)> = db.query_all("SELECT userid, friendid FROM friend", ());
    assert_eq!(rows, vec![(ida, idb)], "friend table");
}

#[test]
fn login_ack_lists_friends_as_strings_with_their_state_and_friendship_is_one_way() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, _) = user_on(server.addr, "a", PW);
    let (mut b, idb, nameb) = user_on(server.addr, "b", PW);
    let namec = unique_name("c");
    let idc = a.register(&namec, PW);
    assert_eq!(a.add_friend(idb)["errno"].as_i64(), Some(0));
    assert_eq!(a.add_friend(idc)["errno"].as_i64(), Some(0));

    logout_and_wait(&db, &mut a, ida);
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
    logout_and_wait(&db, &mut b, idb);
    let back = b.login_ok(idb, PW);
    assert!(back.get("friends").is_none(), "b never added anyone: {back}");
}

// ------------------------------------------------------------------ groups

#[test]
fn create_group_answers_with_id_and_name_and_refuses_a_taken_name() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, _) = user_on(server.addr, "a", PW);
    let (mut b, _, _) = user_on(server.addr, "b", PW);
    let name = unique_name("grp");
    let ack = a.create_group(&name, "a test group");
    assert_eq!(ack["errno"].as_i64(), Some(0), "{ack}");
    assert_eq!(ack["groupname"], name.as_str(), "{ack}");
    let gid = ack["groupid"].as_i64().unwrap_or_else(|| panic!("no groupid: {ack}"));
    assert!(gid > 0);
    // The creator is a member with role creator.
    let role = db.query_string("SELECT grouprole FROM groupuser WHERE groupid = ? AND userid = ?", (gid, ida));
    assert_eq!(role.as_deref(), Some("creator"));

    assert_refused(&b.create_group(&name, "same name"), 203, "group name taken");
    assert_refused(&a.create_group(&name, "same name"), 203, "group name taken");
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM allgroup", ()), 1);
}

#[test]
fn create_group_refuses_blank_names_and_names_with_control_characters() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, _, _) = user_on(server.addr, "a", PW);
    let why = "group name must not be blank or contain control characters";
    for name in [" ", "\u{a0}\u{3000}", "red\u{1b}[31m", "title\u{1b}]0;x\u{7}", "c1\u{85}", "rl\u{202e}o", "d\u{7f}"] {
        let ack = a.create_group(name, "desc");
        assert_eq!(ack, json!({"msgid": 13, "errno": 100, "errmsg": why}), "group name {name:?}");
    }
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM allgroup", ()), 0, "a refused group was created");
    let ack = a.create_group(&format!("{} crabs", unique_name("g")), "all: about crabs");
    assert_eq!(ack["errno"], 0, "{ack}");
}

#[test]
fn add_group_joins_and_refuses_a_missing_group_and_a_second_time() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, _, _) = user_on(server.addr, "a", PW);
    let (mut b, idb, _) = user_on(server.addr, "b", PW);
    let gid = a.new_group(&unique_name("grp"), "d");

    join_group(&mut b, gid);
    assert_refused(&b.add_group(gid + 1000), 201, "missing group");
    assert_refused(&b.add_group(gid), 203, "second time");
    // The creator joining its own group is "already a member" too.
    assert_refused(&a.add_group(gid), 203, "creator joins again");
    let role = db.query_string("SELECT grouprole FROM groupuser WHERE groupid = ? AND userid = ?", (gid, idb));
    assert_eq!(role.as_deref(), Some("normal"));
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM groupuser", ()), 2);
}

#[test]
fn login_ack_lists_groups_with_members_roles_and_states() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, namea) = user_on(server.addr, "a", PW);
    let (mut b, idb, nameb) = user_on(server.addr, "b", PW);
    let gname = unique_name("grp");
    let desc = "desc with \"quotes\" and 中文";
    let gid = a.new_group(&gname, desc);
    join_group(&mut b, gid);

    logout_and_wait(&db, &mut b, idb);
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
    logout_and_wait(&db, &mut a, ida);
    logout_and_wait(&db, &mut b, idb);
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
    let (mut a, ida, namea) = user_on(server.addr, "a", PW);
    let (mut b, _, _) = user_on(server.addr, "b", PW);
    let (mut c, _, _) = user_on(server.addr, "c", PW);
    let (mut outsider, _, _) = user_on(server.addr, "o", PW);
    let gid = a.new_group(&unique_name("grp"), "d");
    join_group(&mut b, gid);
    join_group(&mut c, gid);

    a.send(&json!({"msgid": 10, "groupid": gid, "msg": "hi all", "id": 9999, "name": "forged"}));
    for member in [&mut b, &mut c] {
        assert_group_chat(&member.recv_msgid(10), ida, &namea, gid, "hi all");
    }
    ping_pong(&mut a);
    ping_pong(&mut outsider);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM offlinemessage", ()), 0);
}

#[test]
fn group_chat_to_an_offline_member_arrives_in_offlinemsg() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, _, _) = user_on(server.addr, "a", PW);
    let (mut b, _, _) = user_on(server.addr, "b", PW);
    let (mut d, idd, _) = user_on(server.addr, "d", PW);
    let gid = a.new_group(&unique_name("grp"), "d");
    join_group(&mut b, gid);
    join_group(&mut d, gid);
    logout_and_wait(&db, &mut d, idd);

    a.send_group_chat(gid, "while you were away");
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
    let (mut a, _, _) = user_on(server.addr, "a", PW);
    let (mut b, _, _) = user_on(server.addr, "b", PW);
    let (mut o, _, _) = user_on(server.addr, "o", PW);
    let gid = a.new_group(&unique_name("grp"), "d");
    join_group(&mut b, gid);

    o.send_group_chat(gid, "let me in");
    o.recv_error(202);
    o.send_group_chat(gid + 1000, "anyone?");
    o.recv_error(201);
    a.send_group_chat(gid + 1000, "anyone?");
    a.recv_error(201);
    // The members received none of it.
    ping_pong(&mut b);
    ping_pong(&mut a);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM offlinemessage", ()), 0);
}

// ---------------------------------------------------------------- presence

#[test]
fn presence_tells_friends_of_login_logout_and_close_and_nobody_else() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, _) = user_on(server.addr, "a", PW);
    let (mut c, idc, _) = user_on(server.addr, "c", PW);
    let nameb = unique_name("b");
    let idb = a.register(&nameb, PW);
    assert_eq!(a.add_friend(idb)["errno"].as_i64(), Some(0));
    // c has a friend (a), just not b.
    assert_eq!(c.add_friend(ida)["errno"].as_i64(), Some(0));

    let mut b = Client::connect(server.addr);
    b.login_ok(idb, PW);
    assert_presence(&a.recv_msgid(15), idb, &nameb, "online");
    // b adding c does not make b a friend *of* c (one-way).
    assert_eq!(b.add_friend(idc)["errno"].as_i64(), Some(0));

    b.logout();
    assert_presence(&a.recv_msgid(15), idb, &nameb, "offline");
    wait_user_state(&db, idb, "offline");

    let mut b = Client::connect(server.addr);
    b.login_ok(idb, PW);
    assert_presence(&a.recv_msgid(15), idb, &nameb, "online");
    drop(b);
    assert_presence(&a.recv_msgid(15), idb, &nameb, "offline");

    // c, who does not have b as a friend, heard none of it.
    c.expect_silence(Duration::from_millis(500));
    ping_pong(&mut c);
    ping_pong(&mut a);
}

#[test]
fn a_member_who_joins_gets_the_next_group_message_although_the_group_was_in_use() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, ida, namea) = user_on(server.addr, "ja", PW);
    let (mut b, _, _) = user_on(server.addr, "jb", PW);
    let (mut c, idc, _) = user_on(server.addr, "jc", PW);
    let group = a.new_group(&unique_name("join"), "grows");
    assert_eq!(b.add_group(group)["errno"], 0);
    // The group is in use (its members are known to the server) ...
    a.send_group_chat(group, "before c");
    assert_group_chat(&b.recv_msgid(10), ida, &namea, group, "before c");
    // ... and C's joining reaches the very next message, live and stored.
    assert_eq!(c.add_group(group)["errno"], 0);
    a.send_group_chat(group, "after c");
    assert_group_chat(&c.recv_msgid(10), ida, &namea, group, "after c");
    assert_group_chat(&b.recv_msgid(10), ida, &namea, group, "after c");
    c.logout();
    wait_user_state(&db, idc, "offline");
    a.send_group_chat(group, "c away");
    wait_offline_count(&db, idc, 1);
}
