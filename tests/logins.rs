//! SPEC §2, §3 and §5 on logins, over real processes: resume tokens (a
//! LOGIN with `token` instead of `password`, rotated by every login, ended
//! by LOGOUT, by expiry or by a newer login), takeover of a session on the
//! same server, on another server and on a server killed with `kill -9`
//! (errno 105 for the replaced session), and group chat that keeps its
//! speed while a storm of password logins waits for the hashing threads
//! (errno 501 when too many wait).
//!
//! Every test that touches Redis runs its own `redis-server` (RedisProc),
//! never the shared one.

mod common;

#[path = "support/cluster.rs"]
mod cluster_support;

#[path = "support/faults.rs"]
mod faults;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use cluster_support::{RedisProc, assert_online_on, join_group, server_id_prefix, two_servers};
use common::{
    Client, Server, TestDb, assert_offline_chats, assert_one_chat, keys, offline_count, parse_string_list, poll_until,
    unique_name, user_on, user_state, wait_offline_count, wait_user_state,
};
use faults::{in_parallel, register_many_fast};
use serde_json::{Value, json};

const PW: &str = "pw-Logins-1";
const INVALID: &str = "id or password is invalid!";
const IN_USE: &str = "this account is using, input another!";
/// A login that "succeeds at once" (SPEC §2) may still take this long on a
/// busy 2-core machine: it is one MySQL transaction, no password hash.
const AT_ONCE: Duration = Duration::from_secs(5);
/// The replaced session on another server is told over Redis, with the
/// heartbeat (3 s) as the fallback.
const REPLACED_ACROSS_SERVERS_WITHIN: Duration = Duration::from_secs(10);
/// How long a cross-server ONE_CHAT may take (the first may take a hop).
const CROSS_DELIVERY_WITHIN: Duration = Duration::from_secs(30);
/// SPEC §5: a dead server's users are offline for everyone within 15 s;
/// this file only waits for that event, so it allows more.
const DEATH_DETECTED_WITHIN: Duration = Duration::from_secs(40);

// ------------------------------------------------------------------ tokens

/// The `token` of a successful LOGIN_ACK, asserted to be 64 hex digits.
fn token_of(ack: &Value) -> String {
    let token = ack["token"].as_str().unwrap_or_else(|| panic!("a successful LOGIN_ACK has no string `token`: {ack}"));
    assert!(
        token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit()),
        "the token of a LOGIN_ACK is not 64 hex digits: {token:?} in {ack}"
    );
    token.to_string()
}

/// LOGIN with `id` and `token` instead of a password: the LOGIN_ACK.
fn token_login(c: &mut Client, id: i64, token: &str) -> Value {
    c.send(&json!({"msgid": 1, "id": id, "token": token}));
    c.recv_msgid(2)
}

/// Token LOGIN that must succeed as user (`id`, `name`): the LOGIN_ACK.
fn token_login_ok(c: &mut Client, id: i64, name: &str, token: &str, what: &str) -> Value {
    let ack = token_login(c, id, token);
    assert_eq!(ack["errno"].as_i64(), Some(0), "{what}: token login of {id} refused: {ack}");
    assert_eq!(ack["id"].as_i64(), Some(id), "{what}: token login of {id} answered for another id: {ack}");
    assert_eq!(ack["name"], name, "{what}: token login of {id} answered with another name: {ack}");
    ack
}

/// Asserts `ack` is exactly the refusal of a wrong password (SPEC §2: an
/// unknown, expired or revoked token looks the same).
fn assert_invalid(ack: &Value, what: &str) {
    assert_eq!(
        ack,
        &json!({"msgid": 2, "errno": 1, "errmsg": INVALID}),
        "{what}: should be refused exactly like a wrong password"
    );
}

/// Asserts `ack` is exactly the refusal of a user logged in elsewhere.
fn assert_in_use(ack: &Value, what: &str) {
    assert_eq!(ack, &json!({"msgid": 2, "errno": 2, "errmsg": IN_USE}), "{what}: should be refused with errno 2");
}

/// 64 random hex digits (from the OS): a token no server ever issued.
fn random_hex_token() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read 32 bytes from /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Registers a user `unique_name(prefix)` and logs in with the password on
/// a new connection to `addr`: (client, id, name, token).
fn user_with_token(addr: SocketAddr, prefix: &str) -> (Client, i64, String, String) {
    let mut c = Client::connect(addr);
    let name = unique_name(prefix);
    let id = c.register(&name, PW);
    let ack = c.login_ok(id, PW);
    let token = token_of(&ack);
    (c, id, name, token)
}

/// Closes `c` and waits until its user shows offline in table user.
fn close_and_wait_offline(db: &TestDb, c: Client, id: i64) {
    drop(c);
    wait_user_state(db, id, "offline");
}

/// Asserts the frames a replaced connection read before the server closed
/// it end with ERROR 105 (SPEC §2) and hold nothing else but `allowed`.
fn assert_replaced(frames: &[Value], what: &str) {
    let last = frames.last().unwrap_or_else(|| panic!("{what}: closed without ERROR 105 first (nothing was read)"));
    assert!(
        last["msgid"].as_i64() == Some(11)
            && last["errno"].as_i64() == Some(105)
            && last["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: the last frame before the close should be ERROR 105 with a text; frames: {frames:?}"
    );
    assert_eq!(keys(last), common::key_set(&["msgid", "errno", "msg"]), "{what}: ERROR 105 has other fields: {last}");
    assert_eq!(frames.len(), 1, "{what}: the replaced session got more than ERROR 105 before the close: {frames:?}");
}

// ------------------------------------------------------------------ many at once

/// Logs each of `users` in with [`PW`] on a connection of its own to
/// `addr`, `threads` at a time; every login must succeed. The clients and
/// their tokens, in the order of `users`.
fn login_many(addr: SocketAddr, users: &[(i64, String)], threads: usize) -> Vec<(Client, String)> {
    let ids: Vec<i64> = users.iter().map(|(id, _)| *id).collect();
    in_parallel(ids, threads, |id| {
        let mut c = Client::connect(addr);
        let ack = c.login_ok(id, PW);
        let token = token_of(&ack);
        (c, token)
    })
}

/// Sets the flag when dropped, also while unwinding from a panic: threads
/// that loop until the flag is set then end instead of running forever.
struct SetOnDrop<'a>(&'a AtomicBool);

impl Drop for SetOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

// ------------------------------------------------------------------ 1

#[test]
fn token_login_works_without_the_password_and_rotates() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut s, ids, names) = user_on(server.addr, "ts", PW);
    let (idf, namef) = common::offline_user(server.addr, "tf", PW);

    // The user logs in with the password, adds a friend and creates a group.
    let (mut u1, idu, nameu, t1) = user_with_token(server.addr, "tu");
    u1.add_friend_ok(idf);
    let groupname = unique_name("tg");
    let group = u1.new_group(&groupname, "token test");
    close_and_wait_offline(&db, u1, idu);

    // While they are away, a message is stored for them.
    s.send_chat(idu, "while you were away");
    wait_offline_count(&db, idu, 1);

    // Back on a new connection with the token alone: what a password login
    // would give, and a fresh token.
    let mut u2 = Client::connect(server.addr);
    let ack = token_login_ok(&mut u2, idu, &nameu, &t1, "token login after a password login");
    let t2 = token_of(&ack);
    assert_ne!(t2, t1, "a token login must hand out a fresh token, not the one it was given: {ack}");
    assert_eq!(
        keys(&ack),
        common::key_set(&["msgid", "errno", "id", "name", "token", "friends", "groups", "offlinemsg"]),
        "LOGIN_ACK of a token login with a friend, a group and a stored message: {ack}"
    );
    assert_eq!(
        parse_string_list(&ack["friends"]),
        vec![json!({"id": idf, "name": namef, "state": "offline"})],
        "friends in the token login's LOGIN_ACK: {ack}"
    );
    let groups = parse_string_list(&ack["groups"]);
    assert_eq!(groups.len(), 1, "groups in the token login's LOGIN_ACK: {ack}");
    assert_eq!(groups[0]["id"].as_i64(), Some(group), "group id in the LOGIN_ACK: {ack}");
    assert_eq!(groups[0]["groupname"], groupname.as_str(), "group name in the LOGIN_ACK: {ack}");
    assert_offline_chats(&ack, ids, &names, idu, &["while you were away"]);
    assert_eq!(user_state(&db, idu), "online", "a token login leaves the user offline in table user");
    // Logged in for real: a live message arrives.
    s.send_chat(idu, "live now");
    assert_one_chat(&u2.recv_msgid(6), ids, &names, idu, "live now");
    wait_offline_count(&db, idu, 0);
    close_and_wait_offline(&db, u2, idu);

    // T1 was replaced by the newer login: refused like a wrong password...
    let mut u3 = Client::connect(server.addr);
    assert_invalid(&token_login(&mut u3, idu, &t1), "token T1 after the login that replaced it");
    assert_eq!(user_state(&db, idu), "offline", "a refused token login set the user online");
    // ...while T2, the newest, still works, and is itself replaced.
    let ack = token_login_ok(&mut u3, idu, &nameu, &t2, "the newest token T2 after T1 was refused");
    let t3 = token_of(&ack);
    assert!(t3 != t1 && t3 != t2, "the third login handed out an old token: {ack}");
    close_and_wait_offline(&db, u3, idu);
    let mut u4 = Client::connect(server.addr);
    assert_invalid(&token_login(&mut u4, idu, &t2), "token T2 after the login that replaced it");
    s.ping();
}

// ------------------------------------------------------------------ 2

#[test]
fn wrong_expired_and_revoked_tokens_are_refused_like_a_wrong_password() {
    let db = TestDb::new();
    let server = Server::start(&db);

    // A token nobody issued.
    let (c, id, name, token) = user_with_token(server.addr, "wu");
    close_and_wait_offline(&db, c, id);
    let mut c = Client::connect(server.addr);
    assert_invalid(&token_login(&mut c, id, &random_hex_token()), "a random 64-hex-digit token");
    assert_invalid(&token_login(&mut c, id, ""), "an empty token");
    assert_eq!(user_state(&db, id), "offline", "a refused token login set the user online");

    // A real token, but for a user id that does not exist, and for another
    // user: a token is its own user's only.
    let missing = db.query_i64("SELECT COALESCE(MAX(id), 0) + 1000 FROM user", ());
    let mut other = Client::connect(server.addr);
    assert_invalid(&token_login(&mut other, missing, &token), "a real token with a user id that does not exist");
    let (idv, _) = common::offline_user(server.addr, "wv", PW);
    assert_invalid(&token_login(&mut other, idv, &token), "another user's token");
    assert_eq!(user_state(&db, idv), "offline", "another user's token set the user online");
    // The wrong attempts did not spoil the real token.
    let ack = token_login_ok(&mut c, id, &name, &token, "the real token after wrong ones");
    let _ = token_of(&ack);

    // Revoked: LOGOUT ends the session's token.
    let (mut r, idr, _, tr) = user_with_token(server.addr, "wr");
    r.logout();
    wait_user_state(&db, idr, "offline");
    let mut r2 = Client::connect(server.addr);
    assert_invalid(&token_login(&mut r2, idr, &tr), "the token of a session that logged out");
    // The account itself is fine: the password still logs in.
    r2.login_ok(idr, PW);
    drop(server);

    // Expired: a server whose tokens last 2 s. The token is good right after
    // it was issued...
    const TTL: Duration = Duration::from_secs(2);
    let db2 = TestDb::new();
    let short = Server::start_with(&db2, &[], &[("CHAT_TOKEN_TTL", "2")]);
    let (e1, ide, namee, te1) = user_with_token(short.addr, "we");
    close_and_wait_offline(&db2, e1, ide);
    let mut e2 = Client::connect(short.addr);
    let ack = token_login_ok(&mut e2, ide, &namee, &te1, "a fresh token on a server with CHAT_TOKEN_TTL=2");
    let issued = Instant::now(); // the server issued te2 before this
    let te2 = token_of(&ack);
    close_and_wait_offline(&db2, e2, ide);
    // ...and refused once CHAT_TOKEN_TTL has passed since it was issued.
    // Every login that succeeds hands out a new token, so the test cannot
    // keep trying the same one until it fails: it waits out the lifetime
    // (what is awaited here is the clock itself) and tries once.
    let age = TTL + Duration::from_millis(500);
    thread::sleep(age.saturating_sub(issued.elapsed()));
    let mut e3 = Client::connect(short.addr);
    let ack = token_login(&mut e3, ide, &te2);
    assert_invalid(
        &ack,
        &format!("a token {:.1?} after it was issued, on a server with CHAT_TOKEN_TTL=2", issued.elapsed()),
    );
    assert_eq!(user_state(&db2, ide), "offline", "an expired token set the user online");
    // The password still works, and hands out a token that works.
    let ack = e3.login_ok(ide, PW);
    let te3 = token_of(&ack);
    close_and_wait_offline(&db2, e3, ide);
    let mut e4 = Client::connect(short.addr);
    token_login_ok(&mut e4, ide, &namee, &te3, "the token of the password login after the expiry");
}

// ------------------------------------------------------------------ 3

#[test]
fn takeover_on_the_same_server() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut c, idc, namec) = user_on(server.addr, "oc", PW);
    let (mut a, idu, nameu, token) = user_with_token(server.addr, "ou");

    // B, on the same server, logs in with A's token while A is logged in.
    let mut b = Client::connect(server.addr);
    let started = Instant::now();
    let ack = token_login_ok(&mut b, idu, &nameu, &token, "token login while the user is logged in on A");
    let took = started.elapsed();
    assert!(took <= AT_ONCE, "the takeover login took {took:?}; it should succeed at once");
    let tb = token_of(&ack);
    assert_ne!(tb, token, "the takeover login handed out the token it was given");

    // Right after the takeover, C's message goes to B...
    c.send_chat(idu, "for whoever holds the account now");
    assert_one_chat(&b.recv_msgid(6), idc, &namec, idu, "for whoever holds the account now");
    // ...and A is told ERROR 105, then closed, without the message.
    let frames = a.expect_closed();
    assert_replaced(&frames, "connection A after the token login on B");

    // A's close does not take B's user offline.
    c.send_chat(idu, "after A was closed");
    assert_one_chat(&b.recv_msgid(6), idc, &namec, idu, "after A was closed");
    assert_eq!(user_state(&db, idu), "online", "the replaced connection's close took the user offline");
    assert_eq!(offline_count(&db, idu), 0, "a message to the user, online on B, was stored");

    // A password login on a third connection is still refused.
    let mut d = Client::connect(server.addr);
    assert_in_use(&d.login(idu, PW), "password login while the user is logged in on B");
    c.send_chat(idu, "after the refused password login");
    assert_one_chat(&b.recv_msgid(6), idc, &namec, idu, "after the refused password login");
    b.ping();
    d.ping();
}

/// A client that reconnects the moment its connection dropped (ChatClient
/// does, and so does anything behind a flaky link) finds its session
/// however far the server got with the close: still live (taken over),
/// being taken offline, or gone. None of those is "in use".
#[test]
fn a_token_login_right_after_the_close_always_gets_in() {
    const ROUNDS: usize = 150;
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut c, id, name, mut token) = user_with_token(server.addr, "rc");
    for round in 0..ROUNDS {
        drop(c);
        c = Client::connect(server.addr);
        let ack = token_login_ok(&mut c, id, &name, &token, &format!("reconnect {round} of {ROUNDS}"));
        token = token_of(&ack);
    }
    // The last one is the session: a message finds it, and nothing was stored.
    let (mut s, ids, names) = user_on(server.addr, "rs", PW);
    s.send_chat(id, "after the reconnects");
    assert_one_chat(&c.recv_msgid(6), ids, &names, id, "after the reconnects");
    assert_eq!(user_state(&db, id), "online", "the user is offline after reconnecting");
    assert_eq!(offline_count(&db, id), 0, "a message to the reconnected user was stored");
}

#[test]
fn token_reconnects_many_at_once_each_get_their_own_answer() {
    // Logins waiting together are claimed together (one statement for all
    // of them): each must still get its own user, its own fresh token, and
    // a refusal only for its own wrong token.
    const USERS: usize = 32;
    const THREADS: usize = 8;
    const ROUNDS: usize = 20;
    const WRONG: usize = 4;
    let db = TestDb::new();
    let server = Server::start(&db);
    let users = register_many_fast(&db, server.addr, "st", PW, USERS + WRONG);
    let first = login_many(server.addr, &users, THREADS);
    let mut tokens = Vec::new();
    for ((id, _), (c, token)) in users.iter().zip(first) {
        close_and_wait_offline(&db, c, *id);
        tokens.push(token);
    }
    let (storm, kept) = users.split_at(USERS);
    let (storm_tokens, kept_tokens) = tokens.split_at(USERS);
    let wrong_ones = thread::scope(|scope| {
        // Wrong tokens for users who keep a valid one, among the storm;
        // two each, short of the throttle.
        let wrong = scope.spawn(|| {
            let mut answers = Vec::new();
            for _ in 0..2 {
                for (id, _) in kept {
                    let mut c = Client::connect(server.addr);
                    answers.push((*id, token_login(&mut c, *id, &random_hex_token())));
                }
            }
            answers
        });
        let work: Vec<((i64, String), String)> = storm.iter().cloned().zip(storm_tokens.iter().cloned()).collect();
        let sessions = in_parallel(work, THREADS, |((id, name), mut token)| {
            let mut c = Client::connect(server.addr);
            for round in 0..ROUNDS {
                let ack = token_login_ok(&mut c, id, &name, &token, &format!("round {round} of {ROUNDS}"));
                let fresh = token_of(&ack);
                assert_ne!(fresh, token, "round {round}: the token was not rotated");
                token = fresh;
                if round + 1 < ROUNDS {
                    c.shutdown_write();
                    let after = c.expect_closed();
                    assert!(after.is_empty(), "round {round}: frames for {id} after its half-close: {after:?}");
                    c = Client::connect(server.addr);
                }
            }
            (id, name, c)
        });
        (wrong.join().expect("the wrong-token thread panicked"), sessions)
    });
    let (wrong, mut sessions) = wrong_ones;
    for (id, ack) in &wrong {
        assert_invalid(ack, &format!("a wrong token for {id} among the storm"));
    }
    // Each storm session is its user's, live: a message to each arrives.
    let (mut s, ids, names) = user_on(server.addr, "sts", PW);
    for (id, _, _) in &sessions {
        s.send_chat(*id, &format!("to {id}"));
    }
    for (id, _, c) in &mut sessions {
        assert_one_chat(&c.recv_msgid(6), ids, &names, *id, &format!("to {id}"));
        assert_eq!(user_state(&db, *id), "online");
    }
    // The wrong tokens changed nothing: the valid ones still log in.
    for ((id, name), token) in kept.iter().zip(kept_tokens) {
        let mut c = Client::connect(server.addr);
        token_login_ok(&mut c, *id, name, token, "a valid token after wrong ones for the same user");
    }
}

#[test]
fn messages_sent_while_their_receiver_keeps_reconnecting_arrive_once_each() {
    // Each reconnect half-closes, reads to the server's close, and logs in
    // again with its token at once: every message sent meanwhile is
    // written out before the close, stored and handed over by a LOGIN_ACK,
    // or delivered live after it; never two of these, never none. And the
    // stream into the closing connection does not keep it open.
    const ROUNDS: usize = 800;
    const PER_SEC: f64 = 20_000.0;
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--rate", "1000000"], &[]);
    let (mut r, rid, rname, mut token) = user_with_token(server.addr, "rr");
    let (mut s, sid, _) = user_on(server.addr, "rs", PW);
    let done = AtomicBool::new(false);
    let (sent, mut live, stored) = thread::scope(|scope| {
        let sender = scope.spawn(|| {
            let start = Instant::now();
            let mut sent = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let text = format!("m{}", sent.len());
                s.send_chat(rid, &text);
                sent.push(text);
                // (Paced in steps: a sleep per message would cap the rate.)
                if sent.len() % 32 == 0 {
                    faults::pace(start, sent.len(), PER_SEC);
                }
            }
            sent
        });
        let _stop = SetOnDrop(&done);
        let (mut live, mut stored) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            r.shutdown_write();
            let (texts, other) = faults::chats_from(&r.expect_closed(), sid, rid);
            assert!(other.is_empty(), "round {round}: frames other than the chats: {other:?}");
            live.extend(texts);
            r = Client::connect(server.addr);
            let ack = token_login_ok(&mut r, rid, &rname, &token, &format!("reconnect {round} of {ROUNDS}"));
            token = token_of(&ack);
            stored.extend(
                parse_string_list(&ack["offlinemsg"]).iter().filter_map(|m| m["msg"].as_str().map(String::from)),
            );
        }
        done.store(true, Ordering::SeqCst);
        (sender.join().expect("the sender panicked"), live, stored)
    });
    // What is still on its way arrives on the last connection (a lost one
    // times out here; a duplicate leaves another one missing).
    let mut rest = Vec::new();
    while live.len() + stored.len() + rest.len() < sent.len() {
        rest.push(r.recv_msgid(6));
    }
    let (texts, other) = faults::chats_from(&rest, sid, rid);
    assert!(other.is_empty(), "frames other than the chats: {other:?}");
    live.extend(texts);
    let accounting = faults::Accounting::new(&sent, &live, &stored);
    assert!(accounting.is_exact(), "{}", accounting.summary());
    // The ones a LOGIN_ACK handed over are deleted (on the user's lane).
    wait_offline_count(&db, rid, 0);
}

// ------------------------------------------------------------------ 4

#[test]
fn takeover_across_two_servers() {
    let db = TestDb::new();
    let redis = RedisProc::start_on_free_port();
    let url = redis.url();
    let (s1, s2) = two_servers(&db, &[("CHAT_REDIS_URL", url.as_str())]);
    let (mut x, idx, namex) = user_on(s1.addr, "xx", PW);
    let (mut a, idu, nameu, token) = user_with_token(s1.addr, "xu");
    assert_online_on(&db, idu, &s1);

    // The token logs the user in on server 2 at once, though they are on 1.
    let mut b = Client::connect(s2.addr);
    let started = Instant::now();
    let ack = token_login_ok(&mut b, idu, &nameu, &token, "token login on server 2 while on server 1");
    let took = started.elapsed();
    assert!(took <= AT_ONCE, "the takeover login on server 2 took {took:?}; it should succeed at once");
    assert_ne!(token_of(&ack), token, "the takeover login handed out the token it was given");
    assert_online_on(&db, idu, &s2);

    // Server 1 tells the old session ERROR 105 and closes it.
    let frames = a.expect_closed();
    let closed_after = started.elapsed();
    assert_replaced(&frames, "the connection on server 1 after the token login on server 2");
    assert!(
        closed_after <= REPLACED_ACROSS_SERVERS_WITHIN,
        "the replaced session on server 1 was closed {closed_after:?} after the takeover on server 2 \
         (allowed: {REPLACED_ACROSS_SERVERS_WITHIN:?})"
    );

    // A user on server 1 reaches the user on server 2.
    x.send_chat(idu, "to you on server 2");
    let got = b.try_recv(CROSS_DELIVERY_WITHIN).unwrap_or_else(|| {
        panic!("a ONE_CHAT from server 1 did not reach the user on server 2 within {CROSS_DELIVERY_WITHIN:?}")
    });
    assert_one_chat(&got, idx, &namex, idu, "to you on server 2");
    assert_eq!(offline_count(&db, idu), 0, "a message to the user, online on server 2, was stored");
    assert_online_on(&db, idu, &s2);
    assert_eq!(user_state(&db, idu), "online", "the replaced session's close took the user offline");

    // A password login on server 1 is still refused: the user is on 2.
    let mut d = Client::connect(s1.addr);
    assert_in_use(&d.login(idu, PW), "password login on server 1 while the user is on server 2");
    b.ping();
    x.ping();
}

// ------------------------------------------------------------------ 5

#[test]
fn kill_9_with_a_hundred_users_they_all_come_back_through_the_other_server_with_tokens_within_3_s() {
    const USERS: usize = 100;
    const THREADS: usize = 10;
    /// The bound, from the kill to the last LOGIN_ACK.
    const BACK_WITHIN: Duration = Duration::from_secs(3);
    let db = TestDb::new();
    let redis = RedisProc::start_on_free_port();
    let url = redis.url();
    let (s1, s2) = two_servers(&db, &[("CHAT_REDIS_URL", url.as_str())]);
    let (mut x, idx, namex) = user_on(s1.addr, "kx", PW);

    let setup = Instant::now();
    let users = register_many_fast(&db, s1.addr, "ku", PW, USERS);
    let sessions = login_many(s2.addr, &users, THREADS);
    let p2 = server_id_prefix(&s2);
    let on_s2 = db.query_i64("SELECT COUNT(*) FROM online WHERE LEFT(server, ?) = ?", (p2.len(), &p2));
    assert_eq!(on_s2, USERS as i64, "table online should hold the {USERS} users on server 2");
    eprintln!("{USERS} users logged in on server 2 in {:.1?}", setup.elapsed());
    let (clients, tokens): (Vec<Client>, Vec<String>) = sessions.into_iter().unzip();

    s2.signal(libc::SIGKILL);
    let killed = Instant::now();
    let back = in_parallel(users.iter().cloned().zip(tokens).collect(), THREADS, |((id, name), token)| {
        let mut c = Client::connect(s1.addr);
        let ack = token_login(&mut c, id, &token);
        let at = killed.elapsed();
        (id, name, ack, at, c)
    });
    drop(clients);
    let refused: Vec<&Value> = back.iter().filter(|r| r.2["errno"].as_i64() != Some(0)).map(|r| &r.2).collect();
    let mut times: Vec<Duration> = back.iter().map(|r| r.3).collect();
    times.sort();
    let last = *times.last().expect("some users");
    eprintln!(
        "token logins on server 1 after kill -9 of server 2: {} of {USERS} ok; since the kill: first {:.0?}, \
         median {:.0?}, last {:.0?}",
        USERS - refused.len(),
        times[0],
        times[USERS / 2],
        last
    );
    assert!(
        refused.is_empty(),
        "{} of {USERS} token logins through server 1 after server 2 was killed were refused, e.g. {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    for (id, name, ack, _, _) in &back {
        assert_eq!(ack["id"].as_i64(), Some(*id), "LOGIN_ACK for another user: {ack}");
        assert_eq!(ack["name"], name.as_str(), "LOGIN_ACK with another name: {ack}");
        let _ = token_of(ack);
    }
    assert!(
        last <= BACK_WITHIN,
        "the last of {USERS} users was back through server 1 {last:?} after the kill -9 of server 2 \
         (allowed: {BACK_WITHIN:?})"
    );
    let p1 = server_id_prefix(&s1);
    let ids: Vec<i64> = users.iter().map(|(id, _)| *id).collect();
    let id_list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    let on_s1 = db.query_i64(
        &format!("SELECT COUNT(*) FROM online WHERE LEFT(server, ?) = ? AND userid IN ({id_list})"),
        (p1.len(), &p1),
    );
    assert_eq!(on_s1, USERS as i64, "table online should hold the {USERS} users on server 1 now");

    // One of them gets a message from a user on server 1.
    let mut back: Vec<Client> = back.into_iter().map(|(_, _, _, _, c)| c).collect();
    let (idu, _) = users[USERS / 2].clone();
    x.send_chat(idu, "welcome back");
    assert_one_chat(&back[USERS / 2].recv_msgid(6), idx, &namex, idu, "welcome back");

    // Once server 1 has found server 2 dead, it releases what server 2 held:
    // none of the users who came back.
    let s2_id: String = db
        .query_string("SELECT id FROM server WHERE LEFT(id, ?) = ?", (p2.len(), &p2))
        .unwrap_or_else(|| panic!("server 2 ({p2}) is not in table server right after its death"));
    poll_until("server 1 to find server 2 dead (its row gone from table server)", DEATH_DETECTED_WITHIN, || {
        db.query_string("SELECT id FROM server WHERE id = ?", (&s2_id,)).is_none().then_some(())
    });
    let still_online =
        db.query_i64(&format!("SELECT COUNT(*) FROM user WHERE state = 'online' AND id IN ({id_list})"), ());
    assert_eq!(
        still_online, USERS as i64,
        "after server 2 was found dead, only {still_online} of the {USERS} users who came back through \
         server 1 are still online in table user"
    );
    let (idv, _) = users[0].clone();
    x.send_chat(idv, "still here after the cleanup");
    assert_one_chat(&back[0].recv_msgid(6), idx, &namex, idv, "still here after the cleanup");
    back[USERS / 2].ping();
}

// ------------------------------------------------------------------ 6

/// What stretches of group chat measured.
struct GroupFigures {
    /// Latency of each message, from its send to the last receiver, sorted.
    latencies: Vec<Duration>,
    /// Receivers of each message.
    receivers: usize,
    elapsed: Duration,
}

impl GroupFigures {
    fn deliveries(&self) -> usize {
        self.latencies.len() * self.receivers
    }

    fn per_sec(&self) -> f64 {
        self.deliveries() as f64 / self.elapsed.as_secs_f64()
    }

    /// The `q`-quantile (0..=1) of the latencies.
    fn quantile(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        assert!(n > 0, "no group message made it in the measured time");
        self.latencies[((n as f64 * q).ceil() as usize).clamp(1, n) - 1]
    }

    fn p99(&self) -> Duration {
        self.quantile(0.99)
    }

    /// Both stretches as one.
    fn pooled(&self, other: &GroupFigures) -> GroupFigures {
        let mut latencies = [&self.latencies[..], &other.latencies[..]].concat();
        latencies.sort();
        GroupFigures { latencies, receivers: self.receivers, elapsed: self.elapsed + other.elapsed }
    }
}

impl std::fmt::Display for GroupFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} messages, {} deliveries in {:.2?}: {:.0} deliveries/s, latency to the last receiver p50 {:.2?}, \
             p99 {:.2?}",
            self.latencies.len(),
            self.deliveries(),
            self.elapsed,
            self.per_sec(),
            self.quantile(0.5),
            self.p99()
        )
    }
}

/// Group chat in a closed loop for `length`: `sender` sends message k+1
/// only once every receiver got message k; the latency of each is from its
/// send to its arrival at the last receiver. `label` starts each text.
fn group_chat_loop(
    sender: &mut Client,
    sender_id: i64,
    sender_name: &str,
    receivers: &mut [Client],
    group: i64,
    length: Duration,
    label: &str,
) -> GroupFigures {
    let start = Instant::now();
    let mut latencies = Vec::new();
    while start.elapsed() < length {
        let text = format!("{label} {}", latencies.len());
        let sent = Instant::now();
        sender.send_group_chat(group, &text);
        for (r, receiver) in receivers.iter_mut().enumerate() {
            let got = receiver.recv_msgid(10);
            assert!(
                got["msg"] == text.as_str()
                    && got["id"].as_i64() == Some(sender_id)
                    && got["name"] == sender_name
                    && got["groupid"].as_i64() == Some(group),
                "receiver {r} expected GROUP_CHAT {text:?} from {sender_id} in group {group}, got {got}"
            );
        }
        latencies.push(sent.elapsed());
    }
    let elapsed = start.elapsed();
    latencies.sort();
    GroupFigures { latencies, receivers: receivers.len(), elapsed }
}

#[test]
fn group_chat_keeps_its_speed_during_a_login_storm() {
    const RECEIVERS: usize = 19;
    const STORMERS: usize = 50;
    const LENGTH: Duration = Duration::from_secs(2);
    /// A floor for p99 on a noisy machine.
    const P99_SLACK: Duration = Duration::from_millis(20);
    let db = TestDb::new();
    // The closed loop sends far more than the default 200 messages/s.
    let server = Server::start_with(&db, &["--rate", "100000"], &[]);

    let members = register_many_fast(&db, server.addr, "gm", PW, RECEIVERS + 1);
    let mut clients: Vec<Client> = login_many(server.addr, &members, 4).into_iter().map(|(c, _)| c).collect();
    let mut sender = clients.remove(0);
    let (sender_id, sender_name) = members[0].clone();
    let group = sender.new_group(&unique_name("gg"), "login storm");
    for c in clients.iter_mut() {
        join_group(c, group);
    }
    let mut receivers = clients;
    let stormers = register_many_fast(&db, server.addr, "gs", PW, STORMERS);

    // Warm up, then group chat alone.
    group_chat_loop(&mut sender, sender_id, &sender_name, &mut receivers, group, Duration::from_millis(300), "warm");
    let before = group_chat_loop(&mut sender, sender_id, &sender_name, &mut receivers, group, LENGTH, "before");
    eprintln!("group chat alone, before the storm: {before}");

    // The same during a storm of password logins and logouts.
    let stop = AtomicBool::new(false);
    let (ok, busy) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let addr = server.addr;
    let during = thread::scope(|scope| {
        let _stop_on_exit = SetOnDrop(&stop);
        for (id, _) in &stormers {
            let (stop, ok, busy, id) = (&stop, &ok, &busy, *id);
            scope.spawn(move || {
                let mut c = Client::connect(addr);
                while !stop.load(Ordering::SeqCst) {
                    let ack = c.login(id, PW);
                    match ack["errno"].as_i64() {
                        Some(0) => {
                            ok.fetch_add(1, Ordering::SeqCst);
                            c.logout();
                        }
                        Some(501) => {
                            busy.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            stop.store(true, Ordering::SeqCst);
                            panic!("login storm: LOGIN of {id} should be errno 0 or 501 (server busy), got {ack}");
                        }
                    }
                }
            });
        }
        poll_until("the login storm's first LOGIN_ACK", Duration::from_secs(30), || {
            (ok.load(Ordering::SeqCst) + busy.load(Ordering::SeqCst) > 0).then_some(())
        });
        let before = (ok.load(Ordering::SeqCst), busy.load(Ordering::SeqCst));
        let during = group_chat_loop(&mut sender, sender_id, &sender_name, &mut receivers, group, LENGTH, "storm");
        let after = (ok.load(Ordering::SeqCst), busy.load(Ordering::SeqCst));
        (during, after.0 - before.0, after.1 - before.1)
    });
    let (during, ok_during, busy_during) = during;
    let (ok_total, busy_total) = (ok.load(Ordering::SeqCst), busy.load(Ordering::SeqCst));
    eprintln!("group chat during the login storm: {during}");
    // Alone again once the storm is over: the baseline is both stretches
    // alone, so other load on the machine that drifts meanwhile (a busy
    // 2-core box) weighs on both sides alike.
    let after = group_chat_loop(&mut sender, sender_id, &sender_name, &mut receivers, group, LENGTH, "after");
    eprintln!("group chat alone, after the storm: {after}");
    let alone = before.pooled(&after);
    eprintln!("group chat alone, both stretches: {alone}");
    eprintln!(
        "login storm ({STORMERS} connections): {ok_during} logins ok and {busy_during} refused with 501 while \
         group chat was measured; {ok_total} ok and {busy_total} with 501 in all"
    );
    eprintln!(
        "rate during / alone: {:.2}; p99 during {:.2?} vs bound 2 x alone + {P99_SLACK:?} = {:.2?}",
        during.per_sec() / alone.per_sec(),
        during.p99(),
        alone.p99() * 2 + P99_SLACK
    );

    assert!(ok_during > 0, "the login storm made no progress while group chat was measured (501s: {busy_during})");
    assert!(
        during.per_sec() >= 0.5 * alone.per_sec(),
        "group chat slowed down during the login storm: {:.0} deliveries/s, alone {:.0}",
        during.per_sec(),
        alone.per_sec()
    );
    assert!(
        during.p99() <= alone.p99() * 2 + P99_SLACK,
        "group chat latency p99 during the login storm is {:.2?}, alone {:.2?}",
        during.p99(),
        alone.p99()
    );
    sender.ping();
}

/// SPEC §2/§3: when more password checks wait than the server holds (64),
/// a LOGIN is answered errno 501 at once, not carried out; the others are
/// answered as usual, and a token login is not held up by them.
#[test]
fn password_checks_past_the_bound_are_refused_with_501_and_token_logins_go_on() {
    const STORM: usize = 200;
    let db = TestDb::new();
    let server = Server::start(&db);
    let (c, id, name, token) = user_with_token(server.addr, "bd");
    close_and_wait_offline(&db, c, id);
    // Ids that do not exist: each costs a full hash all the same, and none
    // is throttled (a different id each).
    let mut storm: Vec<Client> = (0..STORM).map(|_| Client::connect(server.addr)).collect();
    for (i, s) in storm.iter_mut().enumerate() {
        s.send(&json!({"msgid": 1, "id": 1_000_000 + i as i64, "password": "wrong"}));
    }
    let mut t = Client::connect(server.addr);
    let started = Instant::now();
    let ack = token_login_ok(&mut t, id, &name, &token, "a token login during the storm");
    let token_took = started.elapsed();
    let acks: Vec<Value> = storm.iter_mut().map(|s| s.recv_msgid(2)).collect();
    let busy: Vec<&Value> = acks.iter().filter(|a| a["errno"] == 501).collect();
    let invalid = acks.iter().filter(|a| a["errno"] == 1 && a["errmsg"] == INVALID).count();
    eprintln!(
        "{STORM} password LOGINs at once: {} refused busy, {invalid} checked; token login took {token_took:?}",
        busy.len()
    );
    assert_eq!(busy.len() + invalid, STORM, "every LOGIN is answered 1 or 501: {acks:?}");
    assert!(!busy.is_empty(), "{STORM} password checks at once, none refused with 501");
    assert!(invalid >= 64, "at least the bound of checks is carried out, {invalid} were");
    assert_eq!(
        busy[0],
        &json!({"msgid": 2, "errno": 501, "errmsg": "server busy, not done; try again later"}),
        "the refusal"
    );
    assert_eq!(ack["id"].as_i64(), Some(id));
}
