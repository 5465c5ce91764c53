//! SPEC §1 and §3 over a real process: bad arguments, MySQL unreachable, a
//! port in use, shutdown on SIGINT/SIGTERM, reconnecting.

mod common;

use std::time::Duration;

use common::{
    Client, Finished, Server, TestDb, assert_presence, log_line, login_when_released, run_server_to_exit, unique_name,
    user_on, user_state, wait_user_state,
};

const PW: &str = "pw-Life-1";
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Asserts the process failed with a short, clear message: non-zero exit,
/// exactly one line that says why (`ChatServer: ...` for a wrong command
/// line, a FATAL log line once it started), besides only a usage line or
/// INFO log lines, no panic or backtrace, and the line that says why
/// contains every one of `mentions` (case-insensitive). Returns that line.
fn assert_clean_failure(what: &str, f: &Finished, mentions: &[&str]) -> String {
    let status = f.status.unwrap_or_else(|| panic!("{what}: still running after {EXIT_TIMEOUT:?}; output: {f:?}"));
    assert!(!status.success(), "{what}: exit status {status}, expected failure; {f:?}");
    assert!(status.code().is_some(), "{what}: killed by a signal ({status}); {f:?}");
    let lower = f.stderr.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("backtrace") && !lower.contains("stack backtrace"),
        "{what}: stderr shows a panic: {}",
        f.stderr
    );
    let lines: Vec<&str> = f.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    let is_main = |l: &str| l.starts_with("ChatServer:") || log_line(l).is_some_and(|(_, level, _)| level == "FATAL");
    let main: Vec<&str> = lines.iter().copied().filter(|l| is_main(l)).collect();
    assert_eq!(main.len(), 1, "{what}: want one line saying why on stderr, got:\n{}", f.stderr);
    assert!(lines.len() <= 4, "{what}: stderr is not short:\n{}", f.stderr);
    for l in &lines {
        let info = log_line(l).is_some_and(|(_, level, _)| level == "INFO");
        assert!(
            is_main(l) || info || l.starts_with("usage:") || l.starts_with("Usage:"),
            "{what}: unexpected stderr line {l:?} in:\n{}",
            f.stderr
        );
    }
    let line = main[0].to_string();
    for m in mentions {
        assert!(line.to_lowercase().contains(&m.to_lowercase()), "{what}: the message {line:?} does not mention {m:?}");
    }
    assert!(!f.stdout.contains("listening") && !f.stderr.contains("listening"), "{what}: it started listening: {f:?}");
    line
}

#[test]
fn bad_arguments_exit_non_zero_with_one_clear_line() {
    // A usable database, so that arguments accepted by mistake would make
    // the server run (and this test time out) rather than fail elsewhere.
    let db = TestDb::new();
    let env = [("CHAT_MYSQL_URL", db.url.as_str())];
    let cases: [(&str, &[&str], &[&str]); 7] = [
        ("no arguments", &[], &[]),
        ("only an IP", &["127.0.0.1"], &[]),
        ("a bad IP", &["not-an-ip", "0"], &["not-an-ip"]),
        ("a bad port", &["127.0.0.1", "99999"], &["99999"]),
        ("a port that is no number", &["127.0.0.1", "http"], &["http"]),
        ("an unknown flag", &["127.0.0.1", "0", "--bogus"], &["--bogus"]),
        ("a flag without its value", &["127.0.0.1", "0", "--threads"], &["--threads"]),
    ];
    for (what, args, mentions) in cases {
        let f = run_server_to_exit(args, &env, EXIT_TIMEOUT);
        assert_clean_failure(what, &f, mentions);
    }
}

#[test]
fn unreachable_mysql_exits_non_zero_with_a_clear_message() {
    let f =
        run_server_to_exit(&["127.0.0.1", "0"], &[("CHAT_MYSQL_URL", "mysql://root@127.0.0.1:1/chat")], EXIT_TIMEOUT);
    assert_clean_failure("MySQL unreachable", &f, &["mysql"]);
}

#[test]
fn a_port_in_use_exits_non_zero_and_says_so() {
    let db = TestDb::new();
    let first = Server::start(&db);
    let port = first.addr.port().to_string();
    let f = run_server_to_exit(&["127.0.0.1", &port], &[("CHAT_MYSQL_URL", db.url.as_str())], EXIT_TIMEOUT);
    assert_clean_failure("port in use", &f, &["in use", &port]);
    // The first server is unharmed.
    let mut c = Client::connect(first.addr);
    c.ping();
}

/// Two users online here and a third marked online "by another server":
/// `sig` stops the server with status 0 and marks exactly its own users
/// offline.
fn signal_marks_exactly_this_servers_users_offline(sig: libc::c_int) {
    let db = TestDb::new();
    let mut server = Server::start(&db);
    let (mut a, ida, _) = user_on(server.addr, "a", PW);
    let (mut b, idb, _) = user_on(server.addr, "b", PW);
    let idc = a.register(&unique_name("c"), PW);
    db.exec("UPDATE user SET state = 'online' WHERE id = ?", (idc,));
    assert_eq!(user_state(&db, ida), "online");
    assert_eq!(user_state(&db, idb), "online");

    server.signal(sig);
    let status = server.wait_exit(EXIT_TIMEOUT).unwrap_or_else(|| {
        panic!("server still running {EXIT_TIMEOUT:?} after signal {sig}; output:\n{}", server.output())
    });
    assert!(status.success(), "exit status after signal {sig}: {status}; output:\n{}", server.output());
    assert_eq!(user_state(&db, ida), "offline", "a is still online after shutdown");
    assert_eq!(user_state(&db, idb), "offline", "b is still online after shutdown");
    assert_eq!(user_state(&db, idc), "online", "a user online on another server was marked offline");
    let out = server.output().to_lowercase();
    assert!(!out.contains("panicked"), "output:\n{}", server.output());
    // The clients see their connections closed.
    a.expect_closed();
    b.expect_closed();
}

#[test]
fn sigint_marks_exactly_this_servers_users_offline() {
    signal_marks_exactly_this_servers_users_offline(libc::SIGINT);
}

#[test]
fn sigterm_marks_exactly_this_servers_users_offline() {
    signal_marks_exactly_this_servers_users_offline(libc::SIGTERM);
}

#[test]
fn an_abrupt_close_makes_the_user_offline_tells_friends_and_allows_a_new_login() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut a, _, _) = user_on(server.addr, "a", PW);
    let nameb = unique_name("b");
    let idb = a.register(&nameb, PW);
    assert_eq!(a.add_friend(idb)["errno"].as_i64(), Some(0));

    let mut b = Client::connect(server.addr);
    b.login_ok(idb, PW);
    assert_presence(&a.recv_msgid(15), idb, &nameb, "online");

    drop(b);
    assert_presence(&a.recv_msgid(15), idb, &nameb, "offline");
    wait_user_state(&db, idb, "offline");

    let mut b = Client::connect(server.addr);
    let ack = login_when_released(&mut b, idb, PW);
    assert_eq!(ack["name"], nameb.as_str());
    assert_presence(&a.recv_msgid(15), idb, &nameb, "online");
    // And chats again.
    a.send_chat(idb, "welcome back");
    assert_eq!(b.recv_msgid(6)["msg"], "welcome back");
}

/// A client that sends `pings` PINGs behind its LOGIN and then half-closes
/// (`shutdown(SHUT_WR)`, as `nc -N` or a script's end of input does): it
/// gets every answer, then the server closes, and its user is offline.
fn half_closed_client_is_answered_in_full_then_closed(pings: usize) {
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--rate", "1000000"], &[]);
    let (_, id, _) = {
        let mut c = Client::connect(server.addr);
        let (id, name) = c.register_login("hc", PW);
        c.logout();
        (c, id, name)
    };
    wait_user_state(&db, id, "offline");
    let mut c = Client::connect(server.addr);
    let mut batch = serde_json::json!({"msgid": 1, "id": id, "password": PW}).to_string().into_bytes();
    batch.push(0);
    for _ in 0..pings {
        batch.extend_from_slice(b"{\"msgid\":16}\0");
    }
    c.send_raw(&batch);
    c.shutdown_write();
    let frames = c.expect_closed();
    // One answer per request. Requests read in one batch behind the running
    // LOGIN past the queue's bound are refused with errno 104 at once (README,
    // Limits), so those may come before the LOGIN_ACK.
    let acks: Vec<&serde_json::Value> = frames.iter().filter(|f| f["msgid"] == 2).collect();
    assert_eq!(acks.len(), 1, "LOGIN_ACKs before the close: {acks:?}");
    assert_eq!(acks[0]["errno"].as_i64(), Some(0), "LOGIN_ACK: {}", acks[0]);
    let pongs = frames.iter().filter(|f| f["msgid"] == 17).count();
    let refused = frames.iter().filter(|f| f["msgid"] == 11 && f["errno"] == 104).count();
    assert_eq!(pongs + refused, pings, "answers to {pings} PINGs before the close ({pongs} PONGs, {refused} refused)");
    assert_eq!(frames.len(), pings + 1, "frames other than the LOGIN_ACK, PONGs and refusals");
    assert!(pongs > 0, "no PING was answered with a PONG");
    // Offline at once, not after the idle timeout.
    wait_user_state(&db, id, "offline");
}

#[test]
fn a_half_closed_client_with_a_few_requests_is_answered_then_closed() {
    half_closed_client_is_answered_in_full_then_closed(10);
}

#[test]
fn a_half_closed_client_with_thousands_of_requests_is_answered_then_closed() {
    half_closed_client_is_answered_in_full_then_closed(8000);
}
