//! SPEC §1: a database made by the original C++ ChatServer's `chat.sql`
//! and filled the way the original fills it is upgraded in place at start,
//! keeping every row; an upgrade cut off anywhere finishes at the next
//! start; a database that is neither ours nor the original's is refused
//! before anything in it changes.

mod common;

use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{
    Client, Server, TestDb, parse_string_list, read_lines, run_server_to_exit, server_bin, unique_name, user_state,
};
use serde_json::{Value, json};

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The original's `chat.sql`, as the issue quotes it: no character set (the
/// database's default), plaintext passwords, no key on offlinemessage.
const ORIGINAL_SCHEMA: &[&str] = &[
    "CREATE TABLE user (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(50) NOT NULL UNIQUE, \
     password VARCHAR(50) NOT NULL, state ENUM('online','offline') DEFAULT 'offline') ENGINE=InnoDB",
    "CREATE TABLE friend (userid INT, friendid INT, PRIMARY KEY(userid, friendid)) ENGINE=InnoDB",
    "CREATE TABLE allgroup (id INT AUTO_INCREMENT PRIMARY KEY, groupname VARCHAR(50) NOT NULL UNIQUE, \
     groupdesc VARCHAR(200) DEFAULT '') ENGINE=InnoDB",
    "CREATE TABLE groupuser (groupid INT, userid INT, grouprole ENUM('creator','normal') DEFAULT 'normal', \
     PRIMARY KEY(groupid, userid)) ENGINE=InnoDB",
    "CREATE TABLE offlinemessage (userid INT NOT NULL, message VARCHAR(500) NOT NULL) ENGINE=InnoDB",
];

/// Who the original database holds.
struct Original {
    zhang: (i64, &'static str, &'static str),
    li: (i64, &'static str, &'static str),
    wang: (i64, &'static str, &'static str),
    group: i64,
    /// The messages stored for zhang, in the order stored, as stored.
    zhang_messages: Vec<String>,
    /// The one stored for wang.
    wang_message: String,
}

/// A database with the original's tables in latin1 (the default of the
/// MySQL and MariaDB releases the original was written for), filled as the
/// original's server does it. `filler` more stored messages make the
/// upgrade take a while.
fn original_db(filler: usize) -> (TestDb, Original) {
    let db = TestDb::new();
    db.exec(&format!("ALTER DATABASE `{}` CHARACTER SET latin1 COLLATE latin1_swedish_ci", db.name), ());
    for statement in ORIGINAL_SCHEMA {
        db.exec(statement, ());
    }
    // Register (state offline), then a login sets it online.
    let mut users = Vec::new();
    for (name, password) in [("zhang san", "123456"), ("li si", "666666"), ("wang wu", "abc")] {
        db.exec("INSERT INTO user (name, password, state) VALUES (?, ?, 'offline')", (name, password));
        let id = db.query_i64("SELECT id FROM user WHERE name = ?", (name,));
        users.push((id, name, password));
    }
    let (zhang, li, wang) = (users[0], users[1], users[2]);
    // wang was online when the original crashed.
    db.exec("UPDATE user SET state = 'online' WHERE id = ?", (wang.0,));
    // zhang added li (one row: friendship is one-way).
    db.exec("INSERT INTO friend VALUES (?, ?)", (zhang.0, li.0));
    db.exec("INSERT INTO allgroup (groupname, groupdesc) VALUES (?, ?)", ("cpp fans", "since 2020"));
    let group = db.query_i64("SELECT id FROM allgroup WHERE groupname = 'cpp fans'", ());
    db.exec("INSERT INTO groupuser VALUES (?, ?, 'creator')", (group, zhang.0));
    db.exec("INSERT INTO groupuser VALUES (?, ?, 'normal')", (group, li.0));
    // The original stores the request as its client sent it (nlohmann's
    // dump, keys sorted). Texts in reverse alphabetical order, and one for
    // someone else in between, so no other order passes for the stored one.
    let one = json!({"msgid": 6, "id": li.0, "name": li.1, "toid": zhang.0, "msg": "zulu comes first",
                     "time": "2024-05-01 10:00:00"})
    .to_string();
    let other = json!({"msgid": 6, "id": zhang.0, "name": zhang.1, "toid": wang.0, "msg": "for wang",
                       "time": "2024-05-01 10:00:01"})
    .to_string();
    let two = json!({"msgid": 10, "id": li.0, "name": li.1, "groupid": group, "msg": "alpha comes second",
                     "time": "2024-05-01 10:00:02"})
    .to_string();
    db.exec("INSERT INTO offlinemessage VALUES (?, ?)", (zhang.0, &one));
    db.exec("INSERT INTO offlinemessage VALUES (?, ?)", (wang.0, &other));
    db.exec("INSERT INTO offlinemessage VALUES (?, ?)", (zhang.0, &two));
    let mut conn = db.conn();
    for chunk in 0..filler.div_ceil(500) {
        let rows = 500.min(filler - chunk * 500);
        let values = vec!["(999999, REPEAT('x', 400))"; rows].join(",");
        mysql::prelude::Queryable::query_drop(&mut conn, format!("INSERT INTO offlinemessage VALUES {values}"))
            .unwrap_or_else(|e| panic!("filler rows: {e}"));
    }
    let original = Original { zhang, li, wang, group, zhang_messages: vec![one, two], wang_message: other };
    (db, original)
}

/// The stored password of `id`.
fn password_of(db: &TestDb, id: i64) -> String {
    db.query_string("SELECT password FROM user WHERE id = ?", (id,)).unwrap_or_else(|| panic!("no user {id}"))
}

#[test]
fn the_originals_users_log_in_and_find_everything_then_a_restart_and_new_users_work() {
    let (db, o) = original_db(0);
    let server = Server::start(&db);
    assert!(
        server.wait_output("upgraded from schema version 0", Duration::from_secs(10)),
        "no upgrade line in the log:\n{}",
        server.output()
    );
    assert_eq!(user_state(&db, o.wang.0), "offline", "a user the original left online is offline");

    // zhang: his password, his friend, his group with both roles, his two
    // messages exactly as stored and in the order stored.
    let mut zhang = Client::connect(server.addr);
    let ack = zhang.login_ok(o.zhang.0, o.zhang.2);
    assert_eq!(ack["name"], o.zhang.1);
    let friends = parse_string_list(&ack["friends"]);
    assert_eq!(friends, [json!({"id": o.li.0, "name": o.li.1, "state": "offline"})], "{ack}");
    let groups = parse_string_list(&ack["groups"]);
    assert_eq!(groups.len(), 1, "{ack}");
    assert_eq!((groups[0]["id"].as_i64(), &groups[0]["groupname"]), (Some(o.group), &json!("cpp fans")));
    assert_eq!(groups[0]["groupdesc"], "since 2020");
    let mut members: Vec<(i64, String)> = parse_string_list(&groups[0]["users"])
        .iter()
        .map(|u| (u["id"].as_i64().unwrap_or(-1), u["role"].as_str().unwrap_or("").to_owned()))
        .collect();
    members.sort();
    assert_eq!(members, [(o.zhang.0, "creator".to_owned()), (o.li.0, "normal".to_owned())]);
    let stored: Vec<&str> =
        ack["offlinemsg"].as_array().map_or(Vec::new(), |l| l.iter().flat_map(Value::as_str).collect());
    assert_eq!(stored, o.zhang_messages, "offlinemsg: the original's rows as stored, in order");

    // That login replaced his plaintext with a hash; li's waits for his.
    assert!(password_of(&db, o.zhang.0).starts_with("$argon2id$"), "{}", password_of(&db, o.zhang.0));
    assert!(!password_of(&db, o.li.0).starts_with("$argon2"), "li has not logged in yet");
    let mut li = Client::connect(server.addr);
    assert_eq!(li.login(o.li.0, "wrong")["errno"], 1);
    assert!(!password_of(&db, o.li.0).starts_with("$argon2"), "a wrong password replaced nothing");
    li.login_ok(o.li.0, o.li.2);
    assert!(password_of(&db, o.li.0).starts_with("$argon2id$"));
    zhang.send_chat(o.li.0, "hello after the upgrade");
    assert_eq!(li.recv_msgid(6)["msg"], "hello after the upgrade");

    // wang's message went to no one else.
    let mut wang = Client::connect(server.addr);
    let ack = wang.login_ok(o.wang.0, o.wang.2);
    let stored: Vec<&str> =
        ack["offlinemsg"].as_array().map_or(Vec::new(), |l| l.iter().flat_map(Value::as_str).collect());
    assert_eq!(stored, [o.wang_message.as_str()]);

    // A restart on the upgraded database changes nothing and serves as before.
    drop((zhang, li, wang));
    let mut server = server;
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(EXIT_TIMEOUT).is_some_and(|s| s.success()), "{}", server.output());
    let server = Server::start(&db);
    assert!(server.wait_output("has schema version 1", Duration::from_secs(10)), "{}", server.output());
    let versions: Vec<i32> = db.query_all("SELECT version FROM schema_version ORDER BY version", ());
    assert_eq!(versions, [0, 1]);
    let mut zhang = Client::connect(server.addr);
    let ack = zhang.login_ok(o.zhang.0, o.zhang.2);
    assert!(ack.get("offlinemsg").is_none(), "delivered messages came again: {ack}");

    // A new user registers and chats with an old one.
    let mut new = Client::connect(server.addr);
    let name = unique_name("new");
    let id = new.register(&name, "pw-new-1");
    assert!(id > o.wang.0, "new id {id}");
    new.login_ok(id, "pw-new-1");
    new.send_chat(o.zhang.0, "hi zhang");
    let got = zhang.recv_msgid(6);
    assert_eq!((got["id"].as_i64(), &got["msg"]), (Some(id), &json!("hi zhang")));
    zhang.send_chat(id, "hi newcomer");
    assert_eq!(new.recv_msgid(6)["msg"], "hi newcomer");
}

/// Every row of the original, as the upgrade must leave it (before any
/// login): counts, the order of the stored messages, passwords marked
/// exactly once, everyone offline, version 1.
fn assert_upgraded(db: &TestDb, o: &Original, filler: usize) {
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM user", ()), 3);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM friend", ()), 1);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM groupuser", ()), 2);
    let stored: Vec<String> =
        db.query_all("SELECT message FROM offlinemessage WHERE userid = ? ORDER BY id", (o.zhang.0,));
    assert_eq!(stored, o.zhang_messages);
    let all = db.query_i64("SELECT COUNT(*) FROM offlinemessage", ());
    assert_eq!(all, 3 + filler as i64);
    for (id, _, password) in [o.zhang, o.li, o.wang] {
        assert_eq!(password_of(db, id), format!("plain:{password}"), "user {id}'s password, marked once");
        assert_eq!(user_state(db, id), "offline");
    }
    assert_eq!(db.query_i64("SELECT MAX(version) FROM schema_version", ()), 1);
}

#[test]
fn an_upgrade_killed_at_any_step_finishes_at_the_next_start() {
    // Enough stored messages that the offlinemessage step takes a while.
    let filler = 20_000;
    let steps = 7;
    for step in 1..=steps {
        let (db, o) = original_db(filler);
        let mut child = Command::new(server_bin())
            .args(["127.0.0.1", "0"])
            .env("CHAT_MYSQL_URL", &db.url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", server_bin()));
        let (tx, lines) = mpsc::channel();
        read_lines(child.stderr.take().expect("piped"), move |line| {
            let _ = tx.send(line.trim_end().to_owned());
        });
        let needle = format!("step {step} of {steps}:");
        let deadline = Instant::now() + EXIT_TIMEOUT;
        let mut seen = Vec::new();
        let mut found = false;
        while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            found = line.contains(&needle);
            seen.push(line);
            if found {
                break;
            }
        }
        // Killed the moment the step begins (or, if it is quick, just
        // after): the worst a crash can do.
        let _ = child.kill();
        let _ = child.wait();
        assert!(found, "the server never logged {needle:?}; it logged:\n{}", seen.join("\n"));

        let server = Server::start(&db);
        assert_upgraded(&db, &o, filler);
        let mut zhang = Client::connect(server.addr);
        let ack = zhang.login_ok(o.zhang.0, o.zhang.2);
        assert_eq!(ack["offlinemsg"].as_array().map(Vec::len), Some(2), "killed at step {step}: {ack}");
    }
}

#[test]
fn the_upgrade_runs_once_and_leaves_the_tables_as_chat_sql_makes_them() {
    let (db, o) = original_db(0);
    drop(Server::start(&db));
    assert_upgraded(&db, &o, 0);
    let fresh = TestDb::fresh();
    // Column by column, the upgraded tables equal those chat.sql makes.
    let columns = |db: &TestDb| -> Vec<(String, String, String, String)> {
        db.query_all(
            "SELECT TABLE_NAME, COLUMN_NAME, COLUMN_TYPE, CONCAT(IS_NULLABLE, ' ', IFNULL(COLLATION_NAME, '')) \
             FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? ORDER BY TABLE_NAME, COLUMN_NAME",
            (&db.name,),
        )
    };
    assert_eq!(columns(&db), columns(&fresh));
    let indexes = |db: &TestDb| -> Vec<(String, String, String)> {
        db.query_all(
            "SELECT TABLE_NAME, INDEX_NAME, GROUP_CONCAT(COLUMN_NAME ORDER BY SEQ_IN_INDEX) \
             FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? GROUP BY TABLE_NAME, INDEX_NAME \
             ORDER BY TABLE_NAME, INDEX_NAME",
            (&db.name,),
        )
    };
    assert_eq!(indexes(&db), indexes(&fresh));
    // A second start upgrades nothing again: the marks stay single.
    drop(Server::start(&db));
    assert_upgraded(&db, &o, 0);
}

/// Runs the server on `db` expecting it to refuse: non-zero exit, one
/// FATAL line (returned), and the database exactly as before.
fn refused(db: &TestDb) -> String {
    let before = db.tables();
    let f = run_server_to_exit(&["127.0.0.1", "0"], &[("CHAT_MYSQL_URL", db.url.as_str())], EXIT_TIMEOUT);
    let status = f.status.unwrap_or_else(|| panic!("still running: {f:?}"));
    assert!(!status.success() && status.code().is_some(), "{status}: {f:?}");
    let fatal: Vec<&str> =
        f.stderr.lines().filter(|l| common::log_line(l).is_some_and(|(_, lv, _)| lv == "FATAL")).collect();
    assert_eq!(fatal.len(), 1, "want one FATAL line: {}", f.stderr);
    assert!(!f.stderr.contains("listening") && !f.stderr.contains("panicked"), "{}", f.stderr);
    assert_eq!(db.tables(), before, "a refused database was changed");
    fatal[0].to_owned()
}

#[test]
fn a_database_of_something_else_is_refused_untouched() {
    let db = TestDb::new();
    db.exec("CREATE TABLE wp_posts (ID BIGINT PRIMARY KEY, post_title TEXT)", ());
    let line = refused(&db);
    assert!(line.contains("neither ChatServer's nor the original") && line.contains("wp_posts"), "{line}");
    assert!(line.contains(&db.name) && line.contains("CHAT_MYSQL_URL"), "says what to do: {line}");

    let db = TestDb::new();
    db.exec("CREATE TABLE user (uid INT PRIMARY KEY, login VARCHAR(20))", ());
    db.exec("INSERT INTO user VALUES (1, 'admin')", ());
    let line = refused(&db);
    assert!(line.contains("`user`") && line.contains("uid, login"), "{line}");
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM user", ()), 1);
    // Flyway's old history table has the same name as ours.
    let db = TestDb::new();
    db.exec("CREATE TABLE schema_version (installed_rank INT PRIMARY KEY, version VARCHAR(50))", ());
    db.exec("INSERT INTO schema_version VALUES (1, '1.0.3')", ());
    let line = refused(&db);
    assert!(line.contains("`schema_version` is another tool's"), "{line}");
}

#[test]
fn a_database_of_a_newer_chatserver_is_refused() {
    let db = TestDb::fresh();
    db.exec("INSERT INTO schema_version (version, note) VALUES (99, 'from the future')", ());
    let line = refused(&db);
    assert!(line.contains("schema version 99") && line.contains("newer"), "{line}");
}

#[test]
fn an_unversioned_database_of_ours_is_adopted_without_changes() {
    // As ChatServer made them before versions were kept: chat.sql alone.
    let db = TestDb::fresh();
    db.exec("DROP TABLE schema_version", ());
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    db.exec("INSERT INTO user (name, password) VALUES ('ours', ?)", (hash,));
    let started = Instant::now();
    drop(Server::start(&db));
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(db.query_string("SELECT password FROM user WHERE name = 'ours'", ()).as_deref(), Some(hash));
    assert_eq!(db.query_i64("SELECT MAX(version) FROM schema_version", ()), 1);
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM schema_version", ()), 1, "no version 0: nothing was upgraded");
}
