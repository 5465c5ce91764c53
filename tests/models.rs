//! Every model function against a fresh real database per test.

mod common;

use chatserver::model::{
    Friend, GroupMember, OfflineMessage, Role, State, friend, group, group_user, login, offline_message, online,
    server, token, user,
};
use common::TestDb;
use std::time::Duration;

use mysql::Conn;
use mysql::prelude::Queryable;

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo";

/// Registers users named as given; returns their ids.
fn users(conn: &mut Conn, names: &[&str]) -> Vec<i32> {
    names.iter().map(|name| user::insert(conn, name, HASH).unwrap().unwrap()).collect()
}

/// A fresh database with users a and b and two live servers, s1 and s2.
fn two_users_two_servers() -> (TestDb, Conn, i32, i32) {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a, b] = users(&mut conn, &["a", "b"])[..] else { panic!() };
    server::beat(&mut conn, "s1").unwrap();
    server::beat(&mut conn, "s2").unwrap();
    (db, conn, a, b)
}

/// The friends and followers of `id`, as a login reads them.
fn both_ways(conn: &mut impl Queryable, id: i32) -> (Vec<Friend>, Vec<i32>) {
    let lists = login::lists(conn, id).unwrap();
    (lists.friends, lists.followers)
}

/// The messages stored for `id`, as a login reads them.
fn stored(conn: &mut impl Queryable, id: i32) -> Vec<OfflineMessage> {
    login::lists(conn, id).unwrap().offline
}

#[test]
fn user_insert_find_and_duplicate_name() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let id = user::insert(&mut conn, "zhang san", HASH).unwrap().unwrap();
    assert!(id > 0);
    assert_eq!(user::insert(&mut conn, "zhang san", "$argon2id$other").unwrap(), None);
    // utf8mb4_bin: case matters, so this is a different name.
    let other = user::insert(&mut conn, "Zhang San", HASH).unwrap().unwrap();
    assert_ne!(other, id);

    let found = user::find(&mut conn, id).unwrap().unwrap();
    assert_eq!(
        found,
        user::User { id, name: "zhang san".to_owned(), password: HASH.to_owned(), state: State::Offline }
    );
    assert_eq!(user::find(&mut conn, id + 1000).unwrap(), None);
}

#[test]
fn online_claim_is_won_once_while_the_holder_lives() {
    let (_db, mut conn, a, b) = two_users_two_servers();
    let alive = Duration::from_secs(9);

    assert!(online::claim(&mut conn, a, "s1", alive).unwrap());
    assert_eq!(user::find(&mut conn, a).unwrap().unwrap().state, State::Online);
    assert!(!online::claim(&mut conn, a, "s2", alive).unwrap());
    assert_eq!(online::of_server(&mut conn, "s1").unwrap(), vec![a]);

    // Releasing by another server changes nothing; by the holder it frees.
    assert!(!online::release_one(&mut conn, a, "s2").unwrap());
    assert_eq!(user::find(&mut conn, a).unwrap().unwrap().state, State::Online);
    assert!(online::release_one(&mut conn, a, "s1").unwrap());
    assert_eq!(user::find(&mut conn, a).unwrap().unwrap().state, State::Offline);
    assert!(online::claim(&mut conn, a, "s2", alive).unwrap());

    // A holder whose heartbeat is stale is dead: its users can be claimed.
    assert!(online::claim(&mut conn, b, "s1", alive).unwrap());
    conn.query_drop("UPDATE server SET heartbeat = NOW(3) - INTERVAL 60 SECOND WHERE id = 's1'").unwrap();
    assert_eq!(server::dead(&mut conn, alive).unwrap(), vec!["s1".to_string()]);
    assert!(online::claim(&mut conn, b, "s2", alive).unwrap());

    assert_eq!(online::release_server(&mut conn, "s2").unwrap().len(), 2);
    for id in [a, b] {
        assert_eq!(user::find(&mut conn, id).unwrap().unwrap().state, State::Offline);
    }
    server::remove(&mut conn, "s1").unwrap();
    assert!(server::dead(&mut conn, alive).unwrap().is_empty());
}

#[test]
fn lock_returns_the_existing_ids() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a, b] = users(&mut conn, &["a", "b"])[..] else { panic!() };
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    assert_eq!(user::lock(&mut tx, &[b, 999_999, a, b]).unwrap(), vec![a, b]);
    tx.commit().unwrap();
}

#[test]
fn lock_with_holder_locks_the_user_row_alone_and_reads_after_the_lock() {
    let (db, mut conn, a, b) = two_users_two_servers();
    let alive = Duration::from_secs(9);
    assert!(online::claim(&mut conn, a, "s2", alive).unwrap());
    let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
    assert_eq!(user::lock_with_holder(&mut tx, a, "s1", alive).unwrap(), Some(("a".into(), Some("s2".into()))));
    assert_eq!(user::lock_with_holder(&mut tx, b, "s1", alive).unwrap(), Some(("b".into(), None)));
    assert_eq!(user::lock_with_holder(&mut tx, 999_999, "s1", alive).unwrap(), None);

    // Heartbeats and the online rows are not held up by the lock (MariaDB
    // locks no rows of a FOR UPDATE's subqueries); the user row is.
    let mut other = db.conn();
    other.query_drop("SET SESSION innodb_lock_wait_timeout = 1").unwrap();
    server::beat(&mut other, "s2").unwrap();
    other.exec_drop("UPDATE online SET server = 's2' WHERE userid = ?", (a,)).unwrap();
    let locked = other.exec_drop("UPDATE user SET state = 'offline' WHERE id = ?", (a,));
    assert!(locked.is_err(), "the user row of a lock_with_holder is not locked");
    tx.commit().unwrap();

    // Waiting for the lock, it reads what the holder of the lock committed,
    // and so does the rest of its transaction (its snapshot is taken then).
    let mut holder = db.conn();
    let mut first = holder.start_transaction(mysql::TxOpts::default()).unwrap();
    user::lock(&mut first, &[a]).unwrap();
    let waiter = {
        let mut conn = db.conn();
        std::thread::spawn(move || {
            let mut tx = conn.start_transaction(mysql::TxOpts::default()).unwrap();
            let locked = user::lock_with_holder(&mut tx, a, "s1", alive).unwrap();
            let stored = stored(&mut tx, a).len();
            (locked, stored)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    online::take(&mut first, a, "s1").unwrap();
    offline_message::insert(&mut first, a, "stored while the login waited").unwrap();
    first.commit().unwrap();
    let (locked, stored) = waiter.join().unwrap();
    assert_eq!(locked, Some(("a".into(), Some("s1".into()))), "the holder as it was before the lock was granted");
    assert_eq!(stored, 1, "a message stored before the lock was granted is missing from the read after it");
}

#[test]
fn token_rotate_going_online_needs_the_valid_token() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a] = users(&mut conn, &["a"])[..] else { panic!() };
    let ttl = Duration::from_secs(60);
    // Token digests are 32 bytes (BINARY(32)).
    let [old, new, newer, wrong] = [[1u8; 32], [2; 32], [3; 32], [4; 32]];
    assert!(!token::rotate_going_online(&mut conn, a, &old, &new, ttl).unwrap(), "no token yet");
    token::replace(&mut conn, a, &old, ttl).unwrap();
    assert!(!token::rotate_going_online(&mut conn, a, &wrong, &new, ttl).unwrap());
    assert_eq!(user::find(&mut conn, a).unwrap().unwrap().state, State::Offline, "a wrong token marked them online");
    assert!(token::rotate_going_online(&mut conn, a, &old, &new, ttl).unwrap());
    assert_eq!(user::find(&mut conn, a).unwrap().unwrap().state, State::Online);
    assert_eq!(token::holder_name(&mut conn, a, &new).unwrap(), Some("a".into()));
    assert_eq!(token::holder_name(&mut conn, a, &old).unwrap(), None, "the old token still holds");
    conn.exec_drop("UPDATE token SET expires = NOW() - INTERVAL 1 SECOND WHERE userid = ?", (a,)).unwrap();
    assert!(!token::rotate_going_online(&mut conn, a, &new, &newer, ttl).unwrap(), "an expired token holds");
}

/// Resumes `id` alone for "s1" with `old`, handing out `new`: whether the
/// claim held (its lists came back, under the user's name).
fn resumed(conn: &mut Conn, id: i32, old: &[u8], new: &[u8]) -> bool {
    token::resume(conn, &[token::Resume { userid: id, old, new }], Duration::from_secs(60), "s1").unwrap();
    let lists = login::lists_of_resumed(conn, &[(id, new)]).unwrap();
    lists.get(&id).map(|l| l.name.clone()).inspect(|name| assert!(!name.is_empty())).is_some()
}

#[test]
fn token_resume_claims_only_a_user_no_one_holds_with_the_valid_token() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a] = users(&mut conn, &["a"])[..] else { panic!() };
    let ttl = Duration::from_secs(60);
    let state = |conn: &mut Conn| user::find(conn, a).unwrap().unwrap().state;
    let [old, new, newer, wrong] = [[1u8; 32], [2; 32], [3; 32], [4; 32]];
    token::replace(&mut conn, a, &old, ttl).unwrap();
    assert!(!resumed(&mut conn, a, &old, &new), "a first login has no online row");
    online::take(&mut conn, a, "s2").unwrap();
    assert!(!resumed(&mut conn, a, &old, &new), "held by s2");
    assert!(online::release_one(&mut conn, a, "s2").unwrap());
    assert_eq!(online::of_server(&mut conn, "s2").unwrap(), Vec::<i32>::new());
    assert!(!resumed(&mut conn, a, &wrong, &new), "a wrong token");
    assert_eq!(state(&mut conn), State::Offline);
    assert!(resumed(&mut conn, a, &old, &new));
    assert_eq!(state(&mut conn), State::Online);
    assert_eq!(online::of_server(&mut conn, "s1").unwrap(), vec![a]);
    assert_eq!(token::holder_name(&mut conn, a, &new).unwrap(), Some("a".into()));
    assert_eq!(token::holder_name(&mut conn, a, &old).unwrap(), None, "the old token still holds");
    assert!(online::release_one(&mut conn, a, "s1").unwrap());
    conn.exec_drop("UPDATE token SET expires = NOW() - INTERVAL 1 SECOND WHERE userid = ?", (a,)).unwrap();
    assert!(!resumed(&mut conn, a, &new, &newer), "an expired token");
    assert_eq!(state(&mut conn), State::Offline);
}

#[test]
fn a_batch_of_resumes_claims_each_valid_one_and_lists_only_those() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a, b, c, d] = users(&mut conn, &["a", "b", "c", "d"])[..] else { panic!() };
    let ttl = Duration::from_secs(60);
    let [old, new_a, new_b, new_c, wrong] = [[1u8; 32], [2; 32], [3; 32], [4; 32], [5; 32]];
    for id in [a, b, c] {
        token::replace(&mut conn, id, &old, ttl).unwrap();
        online::take(&mut conn, id, "s0").unwrap();
        assert!(online::release_one(&mut conn, id, "s0").unwrap());
    }
    online::take(&mut conn, b, "s2").unwrap();
    assert!(friend::add(&mut conn, a, d).unwrap());
    assert!(friend::add(&mut conn, d, a).unwrap());
    assert!(friend::add(&mut conn, c, d).unwrap());
    offline_message::insert(&mut conn, a, "for a").unwrap();
    offline_message::insert(&mut conn, c, "for c").unwrap();
    let logins = [
        token::Resume { userid: a, old: &old, new: &new_a },
        token::Resume { userid: b, old: &old, new: &new_b },
        token::Resume { userid: c, old: &wrong, new: &new_c },
    ];
    token::resume(&mut conn, &logins, ttl, "s1").unwrap();
    let lists = login::lists_of_resumed(&mut conn, &[(a, &new_a), (b, &new_b), (c, &new_c)]).unwrap();
    assert_eq!(lists.keys().copied().collect::<Vec<_>>(), vec![a], "b is held by s2, c sent a wrong token");
    let mine = &lists[&a];
    assert_eq!(mine.name, "a");
    assert_eq!(mine.friends.iter().map(|f| f.id).collect::<Vec<_>>(), vec![d]);
    assert_eq!(mine.followers, vec![d]);
    assert_eq!(mine.offline.iter().map(|m| m.message.as_str()).collect::<Vec<_>>(), vec!["for a"]);
    assert_eq!(online::of_server(&mut conn, "s1").unwrap(), vec![a]);
    assert_eq!(online::of_server(&mut conn, "s2").unwrap(), vec![b]);
    assert_eq!(token::holder_name(&mut conn, c, &old).unwrap(), Some("c".into()), "c's token is untouched");
    assert_eq!(user::find(&mut conn, c).unwrap().unwrap().state, State::Offline);
}

#[test]
fn release_many_frees_only_its_own_servers_rows_and_tells_who_is_offline() {
    let (_db, mut conn, a, b) = two_users_two_servers();
    let [c] = users(&mut conn, &["c"])[..] else { panic!() };
    assert!(friend::add(&mut conn, b, a).unwrap());
    assert!(friend::add(&mut conn, c, a).unwrap());
    online::take(&mut conn, a, "s1").unwrap();
    online::take(&mut conn, b, "s2").unwrap();
    online::take(&mut conn, c, "s1").unwrap();
    online::release_many(&mut conn, &[a, b, c], "s1").unwrap();
    assert!(online::of_server(&mut conn, "s1").unwrap().is_empty());
    assert_eq!(online::of_server(&mut conn, "s2").unwrap(), vec![b], "taken over by s2: not s1's to release");
    for (id, state) in [(a, State::Offline), (b, State::Online), (c, State::Offline)] {
        assert_eq!(user::find(&mut conn, id).unwrap().unwrap().state, state);
    }
    let left = friend::offline_with_followers(&mut conn, &[a, b, c]).unwrap();
    assert_eq!(left, vec![(a, "a".to_owned(), vec![b, c]), (c, "c".to_owned(), vec![])]);
}

#[test]
fn release_one_frees_only_its_own_servers_row_and_keeps_state_in_step() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a, b] = users(&mut conn, &["a", "b"])[..] else { panic!() };
    let state = |conn: &mut Conn, id| user::find(conn, id).unwrap().unwrap().state;
    online::take(&mut conn, a, "s1").unwrap();
    online::take(&mut conn, b, "s2").unwrap();
    assert!(online::release_one(&mut conn, a, "s1").unwrap());
    assert_eq!(state(&mut conn, a), State::Offline);
    assert!(online::of_server(&mut conn, "s1").unwrap().is_empty());
    // Taken over by s2: s1 releases nothing and the user stays online.
    assert!(!online::release_one(&mut conn, b, "s1").unwrap());
    assert_eq!(state(&mut conn, b), State::Online);
    assert_eq!(online::of_server(&mut conn, "s2").unwrap(), vec![b]);
    // Held by no one: offline.
    assert!(!online::release_one(&mut conn, a, "s1").unwrap());
    assert_eq!(state(&mut conn, a), State::Offline);
}

#[test]
fn state_and_role_spellings() {
    for state in [State::Online, State::Offline] {
        assert_eq!(State::parse(state.as_str()), Some(state));
    }
    for role in [Role::Creator, Role::Normal] {
        assert_eq!(Role::parse(role.as_str()), Some(role));
    }
    assert_eq!(State::Online.to_string(), "online");
    assert_eq!(Role::Creator.to_string(), "creator");
    assert_eq!(State::parse("Online"), None);
}

#[test]
fn friends_are_one_way_listed_by_id_and_added_once() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a, b, c] = users(&mut conn, &["a", "b", "c"])[..] else { panic!() };
    conn.exec_drop("UPDATE user SET state = 'online' WHERE id = ?", (b,)).unwrap();

    assert!(friend::add(&mut conn, a, c).unwrap());
    assert!(friend::add(&mut conn, a, b).unwrap());
    assert!(!friend::add(&mut conn, a, b).unwrap());
    let (friends_of_a, followers_of_a) = both_ways(&mut conn, a);
    assert_eq!(
        friends_of_a,
        [
            Friend { id: b, name: "b".into(), state: State::Online },
            Friend { id: c, name: "c".into(), state: State::Offline },
        ]
    );
    assert!(followers_of_a.is_empty());
    // One-way: b did not add a.
    assert_eq!(both_ways(&mut conn, b), (vec![], vec![a]));
    assert!(friend::add(&mut conn, c, b).unwrap());
    assert_eq!(both_ways(&mut conn, b), (vec![], vec![a, c]));
}

#[test]
fn groups_create_join_and_list_with_members() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a, b, c] = users(&mut conn, &["a", "b", "c"])[..] else { panic!() };

    let g1 = group::create(&mut conn, "rust", "crabs", b).unwrap().unwrap();
    assert_eq!(group::create(&mut conn, "rust", "again", a).unwrap(), None);
    // The failed create left no member row behind.
    assert_eq!(group_user::member_ids(&mut conn, g1).unwrap(), [b]);
    let g2 = group::create(&mut conn, "go", "", c).unwrap().unwrap();
    let _g3 = group::create(&mut conn, "other", "not a's", c).unwrap().unwrap();
    assert!(g2 > g1);

    assert!(group::exists(&mut conn, g1).unwrap());
    assert!(!group::exists(&mut conn, g2 + 1000).unwrap());

    assert!(group_user::add(&mut conn, g1, a, Role::Normal).unwrap());
    assert!(!group_user::add(&mut conn, g1, a, Role::Normal).unwrap());
    assert!(group_user::add(&mut conn, g2, a, Role::Normal).unwrap());
    assert!(group_user::add(&mut conn, g1, c, Role::Normal).unwrap());
    assert!(!group_user::member_ids(&mut conn, g2).unwrap().contains(&b));
    assert_eq!(group_user::member_ids(&mut conn, g1).unwrap(), [a, b, c]);

    conn.exec_drop("UPDATE user SET state = 'online' WHERE id = ?", (c,)).unwrap();
    let member = |id, name: &str, state, role| GroupMember { id, name: name.to_owned(), state, role };
    let groups = login::lists(&mut conn, a).unwrap().groups;
    assert_eq!(groups.len(), 2);
    assert_eq!((groups[0].id, groups[0].name.as_str(), groups[0].desc.as_str()), (g1, "rust", "crabs"));
    assert_eq!(
        groups[0].users,
        [
            member(a, "a", State::Offline, Role::Normal),
            member(b, "b", State::Offline, Role::Creator),
            member(c, "c", State::Online, Role::Normal),
        ]
    );
    assert_eq!((groups[1].id, groups[1].name.as_str(), groups[1].desc.as_str()), (g2, "go", ""));
    assert_eq!(
        groups[1].users,
        [member(a, "a", State::Offline, Role::Normal), member(c, "c", State::Online, Role::Creator),]
    );
    assert!(login::lists(&mut conn, 999_999).unwrap().groups.is_empty());
}

#[test]
fn offline_messages_keep_order_and_delete_up_to() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a, b] = users(&mut conn, &["a", "b"])[..] else { panic!() };
    let m1 = offline_message::insert(&mut conn, a, "first").unwrap();
    let other = offline_message::insert(&mut conn, b, "for b").unwrap();
    let m2 = offline_message::insert(&mut conn, a, "second").unwrap();
    let m3 = offline_message::insert(&mut conn, a, "third").unwrap();
    assert!(m1 < other && other < m2 && m2 < m3);

    let msg = |id, message: &str| OfflineMessage { id, userid: a, message: message.to_owned() };
    assert_eq!(stored(&mut conn, a), [msg(m1, "first"), msg(m2, "second"), msg(m3, "third")]);

    // A login delivered up to m2; m3 arrived meanwhile and must stay.
    assert_eq!(offline_message::delete_up_to(&mut conn, a, m2).unwrap(), 2);
    assert_eq!(stored(&mut conn, a), [msg(m3, "third")]);
    assert_eq!(stored(&mut conn, b).len(), 1);
    assert_eq!(offline_message::delete_up_to(&mut conn, a, m2).unwrap(), 0);
    assert!(stored(&mut conn, 999_999).is_empty());
}

#[test]
fn offline_insert_many_stores_each_row_in_order() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let [a, b, c] = users(&mut conn, &["a", "b", "c"])[..] else { panic!() };
    offline_message::insert_many(&mut conn, &[]).unwrap();
    offline_message::insert_many(&mut conn, &[(b, "g1"), (c, "g1"), (b, "g2")]).unwrap();
    let texts = |conn: &mut Conn, id| -> Vec<String> { stored(conn, id).into_iter().map(|m| m.message).collect() };
    assert_eq!(texts(&mut conn, b), ["g1", "g2"]);
    assert_eq!(texts(&mut conn, c), ["g1"]);
    assert!(texts(&mut conn, a).is_empty());

    // Many rows and large messages: several statements in one transaction.
    let big = "m".repeat(300 * 1024);
    let mut rows: Vec<(i32, &str)> = (0..450).map(|_| (a, "small")).collect();
    rows.extend((0..8).map(|_| (c, big.as_str())));
    offline_message::insert_many(&mut conn, &rows).unwrap();
    assert_eq!(texts(&mut conn, a).len(), 450);
    let stored = texts(&mut conn, c);
    assert_eq!(stored.len(), 9);
    assert!(stored[1..].iter().all(|m| *m == big));
}

#[test]
fn hostile_strings_round_trip_byte_for_byte() {
    let db = TestDb::fresh();
    let mut conn = db.conn();
    let hostile = "emoji 😀🎉👨‍👩‍👧 中文消息 «quotes» \"double\" 'single' back\\slash \\' \
                   '; DROP TABLE user; -- %_ \u{0} tab\tnew\nline {\"json\":\"x\"}";
    let name = "名字😀'\\\"; --";

    let id = user::insert(&mut conn, name, HASH).unwrap().unwrap();
    assert_eq!(user::find(&mut conn, id).unwrap().unwrap().name, name);
    assert_eq!(user::insert(&mut conn, name, HASH).unwrap(), None);

    let mid = offline_message::insert(&mut conn, id, hostile).unwrap();
    offline_message::insert_many(&mut conn, &[(id, hostile), (id, name)]).unwrap();
    let stored = stored(&mut conn, id);
    assert_eq!(stored[0], OfflineMessage { id: mid, userid: id, message: hostile.to_owned() });
    assert_eq!(stored[0].message.as_bytes(), hostile.as_bytes());
    assert_eq!(stored[1].message, hostile);
    assert_eq!(stored[2].message, name);

    let g = group::create(&mut conn, name, hostile, id).unwrap().unwrap();
    assert_eq!(group::create(&mut conn, name, "", id).unwrap(), None);
    let groups = login::lists(&mut conn, id).unwrap().groups;
    assert_eq!((groups[0].id, groups[0].name.as_str()), (g, name));
    assert_eq!(groups[0].desc, hostile);
    assert_eq!(groups[0].users[0].name, name);

    // Every table is still there.
    let tables: Option<i64> =
        conn.exec_first("SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = ?", (&db.name,)).unwrap();
    assert_eq!(tables, Some(9), "the eight of chat.sql and schema_version");
}

#[test]
fn models_work_inside_a_caller_transaction_and_on_a_pooled_conn() {
    let db = TestDb::fresh();
    let pool = chatserver::db::Pool::new(&db.url, 2, std::time::Duration::from_secs(5)).unwrap();
    let mut pooled = pool.get().unwrap();
    let id = pooled.run(|c| user::insert(c, "p", HASH)).unwrap().unwrap();
    {
        let mut tx = pooled.start_transaction(mysql::TxOpts::default()).unwrap();
        offline_message::insert(&mut tx, id, "rolled back").unwrap();
        // Dropped without commit.
    }
    assert!(stored(&mut *pooled, id).is_empty());
    let mut tx = pooled.start_transaction(mysql::TxOpts::default()).unwrap();
    offline_message::insert(&mut tx, id, "kept").unwrap();
    tx.commit().unwrap();
    assert_eq!(stored(&mut *pooled, id).len(), 1);
}
