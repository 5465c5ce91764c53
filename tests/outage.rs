//! SPEC §3 "Storage down": MySQL stopped and started again under a running
//! server. The test runs its own throwaway MariaDB (own data directory, own
//! port), so the shared one is never stopped.

mod common;
#[path = "support/faults.rs"]
mod faults;
#[path = "support/mariadb.rs"]
mod mariadb_support;

use std::thread;
use std::time::{Duration, Instant};

use common::{Client, Server, TestDb, parse_string_list, unique_name};
use mariadb_support::ThrowawayMariaDb;
use mysql::prelude::Queryable;
use serde_json::{Value, json};

const PW: &str = "pw-Outage-1";
/// A request that needs MySQL must be answered within this while it is down
/// (the pool gives up after its 5 s checkout timeout; this leaves room for a
/// busy machine).
const ANSWER_BOUND: Duration = Duration::from_secs(60);
/// How long the server may take to notice MySQL is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(90);
/// The outage lasts at least this long: longer than the 9 s after which a
/// server that has not beaten counts as dead, plus one 3 s heartbeat.
const OUTAGE_AT_LEAST: Duration = Duration::from_secs(13);

/// The next frame within [`ANSWER_BOUND`]; panics if none comes.
fn answer(c: &mut Client, what: &str) -> Value {
    c.try_recv(ANSWER_BOUND)
        .unwrap_or_else(|| panic!("no answer to {what} within {ANSWER_BOUND:?} while MySQL is down"))
}

/// Asserts `v` is the refusal of a request for storage: msgid `msgid` with
/// errno 500 (and a message in `errmsg` for ACKs, `msg` for ERROR).
fn assert_500(v: &Value, msgid: i64, what: &str) {
    assert_eq!(v["msgid"].as_i64(), Some(msgid), "{what} while MySQL is down: expected msgid {msgid}, got {v}");
    assert_eq!(v["errno"].as_i64(), Some(500), "{what} while MySQL is down: expected errno 500, got {v}");
    let text = if msgid == 11 { &v["msg"] } else { &v["errmsg"] };
    assert!(text.as_str().is_some_and(|s| !s.is_empty()), "{what}: errno 500 without a message: {v}");
}

/// One direct connection to the throwaway server's chat database.
fn count(url: &str, sql: &str, params: impl Into<mysql::Params>) -> i64 {
    let mut conn = mysql::Conn::new(mysql::Opts::from_url(url).expect("url")).expect("connect to throwaway MariaDB");
    conn.exec_first::<i64, _, _>(sql, params).expect("query").expect("one row")
}

#[test]
fn mysql_outage_gives_500_live_chat_continues_and_the_server_recovers_without_restart() {
    let mut mariadb = ThrowawayMariaDb::start();
    let db_name = format!("chat_outage_{}", std::process::id());
    let url = mariadb.url(&db_name);
    // The harness wants a TestDb for the server; its database stays unused,
    // CHAT_MYSQL_URL points at the throwaway server instead.
    let unused = TestDb::new();
    let mut server = Server::start_with(&unused, &["--rate", "100000"], &[("CHAT_MYSQL_URL", &url)]);
    let pid = server.pid();

    let mut a = Client::connect(server.addr);
    let mut b = Client::connect(server.addr);
    let mut setup = Client::connect(server.addr);
    let (ida, _) = a.register_login("oa", PW);
    let (idb, _) = b.register_login("ob", PW);
    let idc = setup.register(&unique_name("oc"), PW);
    // Everything works before the outage.
    a.send_chat(idb, "before");
    assert_eq!(b.recv_msgid(6)["msg"], "before");

    // ---- MySQL goes away.
    mariadb.stop();
    assert!(!mariadb.is_running());

    // Every request during the whole outage is checked, and the outage is
    // made to outlast the cluster's liveness window, so the server's own
    // heartbeat row is stale when MySQL comes back.
    let down_since = Instant::now();
    let mut n = Client::connect(server.addr);
    let mut down_names = Vec::new();
    let mut round = 0;
    while round == 0 || down_since.elapsed() < OUTAGE_AT_LEAST {
        round += 1;
        // A logged-out connection: REG and LOGIN need MySQL.
        let down_name = unique_name("down");
        n.send(&json!({"msgid": 4, "name": down_name, "password": PW}));
        assert_500(&answer(&mut n, "REG"), 5, "REG");
        down_names.push(down_name);
        n.send(&json!({"msgid": 1, "id": idc, "password": PW}));
        assert_500(&answer(&mut n, "LOGIN"), 2, "LOGIN");
        // Logged-in users: what needs MySQL is refused...
        a.send(&json!({"msgid": 7, "friendid": idb}));
        assert_500(&answer(&mut a, "ADD_FRIEND"), 12, "ADD_FRIEND");
        a.send(&json!({"msgid": 8, "groupname": unique_name("og"), "groupdesc": "d"}));
        assert_500(&answer(&mut a, "CREATE_GROUP"), 13, "CREATE_GROUP");
        a.send(&json!({"msgid": 6, "toid": idc, "msg": format!("refused-while-down-{round}")}));
        assert_500(&answer(&mut a, "ONE_CHAT to an offline user"), 11, "ONE_CHAT to an offline user");
        // ...while live chat between users online here needs no MySQL.
        for i in 0..3 {
            let text = format!("live-a-{round}-{i}");
            a.send(&json!({"msgid": 6, "toid": idb, "msg": text}));
            let got = b.try_recv(ANSWER_BOUND).expect("live ONE_CHAT A->B while MySQL is down");
            assert_eq!((got["msgid"].as_i64(), got["msg"].as_str()), (Some(6), Some(&*text)), "{got}");
            assert_eq!(got["id"].as_i64(), Some(ida), "{got}");
            let text = format!("live-b-{round}-{i}");
            b.send(&json!({"msgid": 6, "toid": ida, "msg": text}));
            let got = a.try_recv(ANSWER_BOUND).expect("live ONE_CHAT B->A while MySQL is down");
            assert_eq!((got["msgid"].as_i64(), got["msg"].as_str()), (Some(6), Some(&*text)), "{got}");
        }
        for c in [&mut a, &mut b, &mut n] {
            c.send(&json!({"msgid": 16}));
            assert_eq!(answer(c, "PING")["msgid"], 17);
        }
        thread::sleep(Duration::from_millis(500));
    }
    assert!(server.is_running(), "ChatServer exited while MySQL was down:\n{}", server.output());

    // ---- MySQL comes back on the same data directory and port.
    mariadb.restart();
    let deadline = Instant::now() + RECOVERY_BOUND;
    let mut refusals = 0;
    let idd = loop {
        n.send(&json!({"msgid": 4, "name": unique_name("back"), "password": PW}));
        let ack = n.try_recv(ANSWER_BOUND).expect("REG_ACK after MySQL came back");
        assert_eq!(ack["msgid"].as_i64(), Some(5), "{ack}");
        match ack["errno"].as_i64() {
            Some(0) => break ack["id"].as_i64().expect("id"),
            Some(500) => refusals += 1,
            _ => panic!("REG after MySQL came back: {ack}"),
        }
        assert!(
            Instant::now() < deadline,
            "the server did not recover within {RECOVERY_BOUND:?} of MySQL coming back \
             ({refusals} REGs refused with 500); its output:\n{}",
            server.output()
        );
        thread::sleep(Duration::from_millis(250));
    };
    assert!(idd > 0);
    assert_eq!(server.pid(), pid);
    assert!(server.is_running(), "ChatServer is not running after the outage");

    // A and B are still logged in here, once: a second login is refused,
    // even now, before the server's heartbeat has caught up.
    let mut again = Client::connect(server.addr);
    let second_ack = again.login(ida, PW);
    // Checked at the end, so the rest of the recovery is checked too.
    let second_login_ok = second_ack["errno"].as_i64() == Some(2)
        && second_ack["errmsg"].as_str() == Some("this account is using, input another!");

    // Nothing refused was done: no user from the REGs, no stored message.
    for name in &down_names {
        let n = count(&url, "SELECT COUNT(*) FROM user WHERE name = ?", (name,));
        assert_eq!(n, 0, "REG of {name} refused with 500 was done");
    }
    assert_eq!(
        count(&url, "SELECT COUNT(*) FROM offlinemessage WHERE userid = ?", (idc,)),
        0,
        "a ONE_CHAT refused with 500 was stored all the same"
    );

    // Everything works again: friends, live chat, stored messages, login.
    let ack = a.add_friend(idb);
    assert_eq!(ack["errno"].as_i64(), Some(0), "ADD_FRIEND after the outage: {ack}");
    a.send_chat(idb, "after-live");
    assert_eq!(b.recv_msgid(6)["msg"], "after-live");
    a.send_chat(idc, "after-stored");
    let deadline = Instant::now() + RECOVERY_BOUND;
    while count(&url, "SELECT COUNT(*) FROM offlinemessage WHERE userid = ?", (idc,)) < 1 {
        assert!(Instant::now() < deadline, "the ONE_CHAT to offline user {idc} was not stored after the outage");
        thread::sleep(Duration::from_millis(100));
    }
    let mut c = Client::connect(server.addr);
    let login = c.login_ok(idc, PW);
    let stored: Vec<String> = parse_string_list(&login["offlinemsg"])
        .iter()
        .map(|m| m["msg"].as_str().unwrap_or_else(|| panic!("stored message without msg: {m}")).to_string())
        .collect();
    assert_eq!(stored, ["after-stored"], "offlinemsg after the outage: {login}");
    assert!(
        second_login_ok,
        "a second login of user {ida}, logged in here all through the outage, right after MySQL came back \
         (before the server's next heartbeat): expected errno 2 `this account is using, input another!`, got {second_ack}"
    );
}

/// Keeps a paused MariaDB from staying frozen when the test fails.
struct Resume<'a>(&'a ThrowawayMariaDb);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.resume();
    }
}

#[test]
fn requests_past_the_job_queues_mark_get_501_at_once_and_the_rest_are_answered_when_mysql_is_back() {
    const CLIENTS: usize = 300;
    // One MySQL connection, so one job thread and a mark of 256 waiting.
    const MARK: usize = 256;
    let mariadb = ThrowawayMariaDb::start();
    let url = mariadb.url(&format!("chat_queue_{}", std::process::id()));
    let unused = TestDb::new();
    let server = Server::start_with(&unused, &["--rate", "100000"], &[("CHAT_MYSQL_URL", &url), ("CHAT_DB_POOL", "1")]);
    let mut conn = mysql::Conn::new(mysql::Opts::from_url(&url).expect("url")).expect("connect to throwaway MariaDB");
    let users = faults::register_many_fast_in(&mut conn, server.addr, "hw", PW, CLIENTS + 1);
    drop(conn);
    let target = users[0].0;
    let mut clients = faults::login_many(server.addr, &users[1..], PW, 4);

    // MySQL hangs: the job thread waits on it, the others queue behind it.
    mariadb.pause();
    let resume = Resume(&mariadb);
    for c in &mut clients {
        c.send(&json!({"msgid": 7, "friendid": target}));
    }
    let mut answers: Vec<Option<Value>> = vec![None; CLIENTS];
    let refused = |answers: &[Option<Value>]| answers.iter().flatten().filter(|v| v["errno"] == 501).count();
    common::poll_until("the requests past the mark to be refused", common::POLL_TIMEOUT, || {
        for (c, answer) in clients.iter_mut().zip(answers.iter_mut()).filter(|(_, a)| a.is_none()) {
            *answer = c.try_recv(Duration::from_millis(1));
        }
        (refused(&answers) >= CLIENTS - MARK - 1).then_some(())
    });
    for v in answers.iter().flatten().filter(|v| v["errno"] == 501) {
        assert_eq!(
            (v["msgid"].as_i64(), v["errmsg"].as_str()),
            (Some(12), Some("server busy, not done; try again later"))
        );
    }

    // MySQL is back: every request still waiting is carried out (or, had
    // the pool given up meanwhile, refused with 500), each answered once.
    drop(resume);
    for (c, answer) in clients.iter_mut().zip(answers.iter_mut()) {
        let v = match answer.take() {
            Some(v) => v,
            None => c.try_recv(ANSWER_BOUND).unwrap_or_else(|| panic!("a queued request was never answered")),
        };
        assert_eq!(v["msgid"], 12, "{v}");
        assert!([0, 500, 501].contains(&v["errno"].as_i64().unwrap_or(-1)), "{v}");
        assert_eq!(c.ping()["msgid"], 17, "a second answer came to one request");
        *answer = Some(v);
    }
    // Only those past the mark were refused: the queued ones were served.
    let refused = refused(&answers);
    assert!(refused <= CLIENTS - MARK + 8, "{refused} of {CLIENTS} refused with 501, the mark being {MARK}");
}
