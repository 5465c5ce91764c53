//! `bin/ChatClient` driven through its standard input against a real
//! `ChatServer` (SPEC §4): what a person would type, and what they would see.

mod common;

#[path = "support/client_proc.rs"]
mod client_proc;
#[path = "support/cluster.rs"]
mod cluster_support;

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use client_proc::{BOX_END, ClientProc, is_chat_line};
use cluster_support::{Nginx, RedisProc, online_server_of, server_id_prefix, two_servers};
use common::{Server, TestDb, client_bin, unique_name, user_on};

#[test]
fn two_users_chat_through_their_clients() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = ClientProc::connect("client A", server.addr);
    let mut b = ClientProc::connect("client B", server.addr);

    let (name_a, name_b) = (unique_name("ca"), unique_name("cb"));
    let id_a = a.register(&name_a, "pa");
    let id_b = b.register(&name_b, "pb");
    assert_ne!(id_a, id_b);

    // Input mistakes at the menu never reach the server.
    a.type_line("9");
    a.expect_exact("invalid input!");
    a.expect_menu();
    a.type_line("1");
    a.expect_exact("userid:");
    a.type_line("abc");
    a.expect_exact("invalid userid!");
    a.expect_menu();
    a.login(id_a, "wrong");
    a.expect_exact("id or password is invalid!");
    a.expect_menu();

    // A logs in; B is a friend before B ever logs in.
    a.login(id_a, "pa");
    a.expect_exact("======================login user======================");
    a.expect_exact(&format!("current login user => id:{id_a} name:{name_a}"));
    a.expect_exact("----------------------friend list---------------------");
    a.expect_exact("----------------------group list----------------------");
    a.expect_exact(BOX_END);
    a.expect_exact("show command list >>>");
    a.type_line(&format!("addfriend:{id_b}"));
    a.expect_exact(&format!("added friend [{id_b}]{name_b} (offline)"));

    // Mistyped commands.
    a.type_line("hello");
    a.expect_exact("invalid command; type help");
    a.type_line("chat:abc:hi");
    a.expect_exact("invalid id!");
    a.type_line(&format!("addfriend:{id_a}"));
    a.expect("[ERROR]: ");

    // A message to B while B is offline is shown at B's login; the group
    // ACK that follows tells the server handled the chat before it.
    a.type_line(&format!("chat:{id_b}:while you were out"));
    a.type_line("creategroup:crabs:all: about crabs");
    let line = a.expect("create group success, groupid is ");
    let group: i64 =
        line.rsplit(' ').next().and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("no group id in {line:?}"));

    b.login(id_b, "pb");
    b.expect_exact(&format!("current login user => id:{id_b} name:{name_b}"));
    b.expect_exact(BOX_END);
    let offline = b.next_line();
    assert!(
        is_chat_line(&offline, "", &format!("[{id_a}]{name_a} said: while you were out")),
        "offline message line: {offline:?}"
    );
    a.expect_exact(&format!("[{id_b}]{name_b} is online"));

    // Live one-to-one chat; the message keeps its colons.
    a.type_line(&format!("chat:{id_b}:hello:with colon"));
    let line = b.expect(&format!("[{id_a}]{name_a} said: hello:with colon"));
    assert!(is_chat_line(&line, "", &format!("[{id_a}]{name_a} said: hello:with colon")), "{line:?}");

    // B joins the group; group messages reach the other member.
    b.type_line(&format!("addgroup:{group}"));
    b.expect_exact(&format!("join group {group} success"));
    a.type_line(&format!("groupchat:{group}:hi crabs"));
    let line = b.expect(&format!("[{id_a}]{name_a} said: hi crabs"));
    assert!(is_chat_line(&line, &format!("群消息[{group}]:"), &format!("[{id_a}]{name_a} said: hi crabs")), "{line:?}");
    b.type_line(&format!("groupchat:{group}:hi back"));
    let line = a.expect(&format!("[{id_b}]{name_b} said: hi back"));
    assert!(line.starts_with(&format!("群消息[{group}]:")), "{line:?}");

    // B logs out: back to the menu on the same connection; A sees it.
    b.type_line("loginout");
    b.expect_menu();
    a.expect_exact(&format!("[{id_b}]{name_b} is offline"));
    b.type_line(&format!("chat:{id_a}:not logged in"));
    b.expect_exact("invalid input!");
    b.expect_menu();
    // ...and may log in again on it.
    b.login(id_b, "pb");
    b.expect_exact(&format!("current login user => id:{id_b} name:{name_b}"));
    b.expect_exact(&format!("[{group}] crabs all: about crabs"));
    b.type_line("loginout");
    b.expect_menu();
    b.type_line("3");
    assert!(b.wait_exit().success(), "quit: {}", b.transcript());

    // End of input in the middle of a session ends the client cleanly.
    a.close_stdin();
    a.expect_exact("end of input, bye");
    assert!(a.wait_exit().success(), "EOF: {}", a.transcript());
}

#[test]
fn end_of_input_at_the_first_menu_exits_cleanly() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = ClientProc::connect("client", server.addr);
    c.close_stdin();
    c.expect_exact("end of input, bye");
    assert!(c.wait_exit().success(), "{}", c.transcript());
}

#[test]
fn a_closed_server_ends_the_client_cleanly() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = ClientProc::connect("client", server.addr);
    server.signal(libc::SIGKILL);
    c.expect_exact("server closed the connection");
    assert!(c.wait_exit().success(), "{}", c.transcript());
}

#[test]
fn bad_arguments_and_no_server_are_reported() {
    let run = |args: &[&str]| {
        Command::new(client_bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", client_bin()))
    };
    for args in [&[][..], &["127.0.0.1"], &["127.0.0.1", "x"], &["a", "1", "b"]] {
        let out = run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("usage: ChatClient IP PORT"), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }

    // A port nobody listens on: take a free one and let it go.
    let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port().to_string();
    let out = run(&["127.0.0.1", &port]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(&format!("cannot connect to 127.0.0.1:{port}: "))
            && stderr.trim_end().ends_with("is ChatServer running?"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// What the client says for a line typed while it reconnects.
const NOT_CONNECTED: &str = "[ERROR]: not connected to the server (reconnecting); that was not sent";

#[test]
fn the_client_reconnects_through_nginx_when_its_server_is_killed() {
    let db = TestDb::new();
    let redis = RedisProc::start_on_free_port();
    let url = redis.url();
    let (s1, s2) = two_servers(&db, &[("CHAT_REDIS_URL", url.as_str())]);
    let nginx = Nginx::start(&[s1.addr, s2.addr]);
    let mut c = ClientProc::connect("client", nginx.addr);
    let name = unique_name("rc");
    let id = c.register(&name, "pw-rc");
    c.login(id, "pw-rc");
    c.expect(&format!("current login user => id:{id} name:{name}"));
    c.expect_exact(BOX_END);
    c.expect_exact("show command list >>>");

    // The server the client landed on dies.
    let holder = online_server_of(&db, id).unwrap_or_else(|| panic!("user {id} is not in table online"));
    let (mut gone, survivor) = if holder.starts_with(&server_id_prefix(&s1)) { (s1, s2) } else { (s2, s1) };
    gone.signal(libc::SIGKILL);
    c.expect("[connection lost] reconnecting");
    c.expect_exact("reconnected");

    // It is logged in again, on the other server: a message reaches it.
    let (mut other, other_id, other_name) = user_on(survivor.addr, "rs", "pw-rs");
    other.send_chat(id, "after the failover");
    let said = format!("[{other_id}]{other_name} said: after the failover");
    c.expect_where(&format!("ending in {said:?}"), |l| is_chat_line(l, "", &said));
    assert!(gone.wait_exit(Duration::from_secs(30)).is_some(), "the killed server still runs");
}

#[test]
fn a_line_typed_while_the_client_reconnects_is_refused_not_sent_later() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut c = ClientProc::connect("client", server.addr);
    let name = unique_name("rl");
    let id = c.register(&name, "pw-rl");
    c.login(id, "pw-rl");
    c.expect_exact(BOX_END);
    // The command loop has started: the session is the client's now.
    c.expect_exact("show command list >>>");

    server.signal(libc::SIGKILL);
    c.expect("[connection lost] reconnecting");
    c.type_line(&format!("chat:{id}:typed while offline"));
    c.expect_exact(NOT_CONNECTED);

    // End of input still ends it cleanly.
    c.close_stdin();
    let status = c.wait_exit();
    assert_eq!(status.code(), Some(0), "exit status after end of input; output:\n{}", c.transcript());
}

/// Logs in through the menu and waits for the command loop to start.
fn log_in(c: &mut ClientProc, id: i64, password: &str) {
    c.login(id, password);
    c.expect_exact(BOX_END);
    c.expect_exact("show command list >>>");
}

#[test]
fn friends_shows_each_friend_going_online_and_offline() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = ClientProc::connect("client A", server.addr);
    let mut b = ClientProc::connect("client B", server.addr);
    let (name_a, name_b) = (unique_name("fa"), unique_name("fb"));
    let id_a = a.register(&name_a, "pa");
    let id_b = b.register(&name_b, "pb");
    log_in(&mut a, id_a, "pa");

    a.type_line("friends");
    a.expect_exact("----------------------friend list---------------------");
    assert_eq!(a.next_line(), "(no friends yet; addfriend:FRIENDID adds one)");
    a.type_line(&format!("addfriend:{id_b}"));
    a.expect_exact(&format!("added friend [{id_b}]{name_b} (offline)"));
    let friend = |state: &str| format!("{id_b} {name_b} {state}");
    a.type_line("friends");
    a.expect_exact("----------------------friend list---------------------");
    assert_eq!(a.next_line(), friend("offline"));

    // B logs in: A is told, and `friends` says so from then on.
    log_in(&mut b, id_b, "pb");
    a.expect_exact(&format!("[{id_b}]{name_b} is online"));
    a.type_line("friends");
    a.expect_exact("----------------------friend list---------------------");
    assert_eq!(a.next_line(), friend("online"));

    // `logout` is `loginout`: B is back at the menu, and offline for A.
    b.type_line("logout");
    b.expect_menu();
    a.expect_exact(&format!("[{id_b}]{name_b} is offline"));
    a.type_line("friends");
    a.expect_exact("----------------------friend list---------------------");
    assert_eq!(a.next_line(), friend("offline"));

    // B again, then `quit`: logged out (A sees it) and the client ends, 0.
    log_in(&mut b, id_b, "pb");
    a.expect_exact(&format!("[{id_b}]{name_b} is online"));
    b.type_line("quit");
    b.expect_exact("bye");
    assert_eq!(b.wait_exit().code(), Some(0), "quit: {}", b.transcript());
    a.expect_exact(&format!("[{id_b}]{name_b} is offline"));
    a.type_line("friends");
    a.expect_exact("----------------------friend list---------------------");
    assert_eq!(a.next_line(), friend("offline"));

    // A logs in again: the list comes from the server, still right.
    a.type_line("loginout");
    a.expect_menu();
    log_in(&mut a, id_a, "pa");
    a.type_line("friends");
    a.expect_exact("----------------------friend list---------------------");
    assert_eq!(a.next_line(), friend("offline"));
    a.type_line("exit");
    a.expect_exact("bye");
    assert_eq!(a.wait_exit().code(), Some(0), "exit: {}", a.transcript());
}

#[test]
fn groups_lists_the_groups_help_names_every_command_and_mistakes_name_help() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = ClientProc::connect("client A", server.addr);
    let name_a = unique_name("ga");
    let id_a = a.register(&name_a, "pa");
    log_in(&mut a, id_a, "pa");
    for command in ["friends ", "groups ", "(also: logout)", "(also: exit)"] {
        a.expect(command);
    }

    a.type_line("groups");
    a.expect_exact("----------------------group list----------------------");
    assert_eq!(a.next_line(), "(no groups yet; creategroup:NAME:DESC or addgroup:GROUPID)");
    let group_name = unique_name("crabs");
    a.type_line(&format!("creategroup:{group_name}:all: about crabs"));
    let line = a.expect("create group success, groupid is ");
    let group: i64 = line.rsplit(' ').next().and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    a.type_line("groups");
    a.expect_exact("----------------------group list----------------------");
    assert_eq!(a.next_line(), format!("[{group}] {group_name} all: about crabs"));
    assert_eq!(a.next_line(), format!("    {id_a} {name_a} online creator"));

    // Unknown commands, and `/help`, name `help`.
    for typo in ["hello", "/help", "logoff"] {
        a.type_line(typo);
        a.expect_exact("invalid command; type help");
    }
    a.type_line("chat:5");
    a.expect_exact("invalid command; usage: chat:FRIENDID:MESSAGE");
    // At the first menu too, `quit` ends the client.
    a.type_line("logout");
    a.expect_menu();
    a.type_line("quit");
    a.expect_exact("bye");
    assert_eq!(a.wait_exit().code(), Some(0), "{}", a.transcript());
}

#[test]
fn blank_messages_reach_nobody_and_overlong_ones_are_refused_before_sending() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let mut a = ClientProc::connect("client A", server.addr);
    let mut b = ClientProc::connect("client B", server.addr);
    let (name_a, name_b) = (unique_name("ba"), unique_name("bb"));
    let id_a = a.register(&name_a, "pa");
    let id_b = b.register(&name_b, "pb");
    let id_c = a.register(&unique_name("bc"), "pc");
    log_in(&mut a, id_a, "pa");
    log_in(&mut b, id_b, "pb");
    a.type_line(&format!("creategroup:{}:d", unique_name("g")));
    let line = a.expect("create group success, groupid is ");
    let group: i64 = line.rsplit(' ').next().and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("{line:?}"));
    b.type_line(&format!("addgroup:{group}"));
    b.expect_exact(&format!("join group {group} success"));

    for blank in [
        format!("chat:{id_b}:"),
        format!("chat:{id_b}:   "),
        format!("chat:{id_b}:\t \u{3000}"),
        format!("chat:{id_c}: "),
        format!("groupchat:{group}:  "),
    ] {
        a.type_line(&blank);
        a.expect_exact("empty message; not sent");
    }
    // One character too many for the server's 64 KiB frame: refused here,
    // and the connection carries on.
    let big = "x".repeat(64 * 1024);
    a.type_line(&format!("chat:{id_b}:{big}"));
    let refused = a.expect("[ERROR]: message too long (");
    assert!(refused.ends_with("bytes; the server takes 65536); not sent"), "{refused}");
    a.type_line(&format!("chat:{id_b}:after the blanks"));
    let said = format!("[{id_a}]{name_a} said: after the blanks");
    b.expect_where(&format!("ending in {said:?}"), |l| is_chat_line(l, "", &said));
    // Nothing else reached B, live or stored for C.
    let chats: Vec<String> = b.transcript().lines().filter(|l| l.contains(" said:")).map(String::from).collect();
    assert_eq!(chats.len(), 1, "B got more than the one message: {chats:?}");
    assert_eq!(common::offline_count(&db, id_c), 0, "a blank message was stored for C");
}
