//! The edges of a connection (SPEC §3): a client that stops reading is cut
//! after `--send-timeout` and what it missed is stored; a dead peer is found
//! by TCP probes while a silent live one stays.

mod common;

#[path = "support/netns.rs"]
mod netns;

use std::io::Read;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Client, POLL_TIMEOUT, Server, TestDb, poll_until, user_on, user_state, wait_user_state};
use serde_json::Value;

const PW: &str = "edge-pw";

/// Shrinks the socket's receive buffer, so the kernel holds little of what
/// the server sends to a client that does not read.
fn small_receive_buffer(client: &Client) {
    let size: libc::c_int = 4096;
    // SAFETY: passes a pointer to a live c_int and its size, on a socket
    // the client keeps open.
    let done = unsafe {
        libc::setsockopt(
            client.stream().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(done, 0, "setsockopt SO_RCVBUF: {}", std::io::Error::last_os_error());
}

/// Everything left in the socket until the server's close, split into
/// frames; an unterminated tail (a frame cut by the close) is dropped.
fn read_to_close(client: &Client) -> Vec<Value> {
    let mut stream = client.stream().try_clone().expect("clone the socket");
    stream.set_read_timeout(Some(common::RECV_TIMEOUT)).expect("set read timeout");
    let mut bytes = Vec::new();
    if let Err(e) = stream.read_to_end(&mut bytes) {
        assert!(
            matches!(e.kind(), std::io::ErrorKind::ConnectionReset),
            "reading what the server sent before closing: {e}"
        );
    }
    let mut frames = Vec::new();
    let fed = chatserver::net::FrameDecoder::new(64 << 20).feed(&bytes, |frame| {
        frames.push(serde_json::from_slice(frame).expect("a JSON frame"));
        true
    });
    assert!(fed.is_ok(), "a frame over 64 MiB");
    frames
}

/// The numbers of the `n<i>-...` chat messages among `frames`.
fn numbers(frames: impl IntoIterator<Item = Value>) -> Vec<u32> {
    frames
        .into_iter()
        .filter(|v| v["msgid"] == 6)
        .map(|v| {
            let msg = v["msg"].as_str().expect("msg is a string").to_string();
            let digits = msg.trim_start_matches('n').split('-').next().unwrap_or_default().to_string();
            digits.parse().unwrap_or_else(|_| panic!("unexpected message {msg:?}"))
        })
        .collect()
}

#[test]
fn a_client_that_stops_reading_is_cut_after_the_send_timeout_and_what_it_missed_is_stored() {
    const COUNT: u32 = 800;
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--send-timeout", "2", "--rate", "100000"], &[]);
    let (mut sender, _, _) = user_on(server.addr, "flood", PW);
    let (reader, reader_id, _) = user_on(server.addr, "stall", PW);
    small_receive_buffer(&reader);

    // 800 KiB: far more than the kernel buffers, far less than the output
    // cap, so only the send timeout can end this connection.
    let pad = "x".repeat(1000);
    let started = Instant::now();
    send_numbered(&mut sender, reader_id, COUNT, &pad);
    wait_user_state(&db, reader_id, "offline");
    assert!(started.elapsed() >= Duration::from_secs(2), "cut before the send timeout");

    // What reached the socket before the cut, then the rest from the store:
    // every message once, in order.
    let mut got = numbers(read_to_close(&reader));
    assert!((got.len() as u32) < COUNT, "the reader got everything live; nothing was stalled");
    login_and_collect(&mut Client::connect(server.addr), reader_id, &mut got, COUNT);
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
}

/// Spawns ChatClient inside `ns` and logs `id` in; the returned child keeps
/// its stdin open, so the client stays logged in and silent.
fn client_in(ns: &netns::Netns, server: SocketAddr, id: i64) -> std::process::Child {
    let mut child = ns
        .command(common::client_bin())
        .args([server.ip().to_string(), server.port().to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ChatClient in the namespace");
    let stdin = child.stdin.as_mut().expect("stdin is piped");
    std::io::Write::write_all(stdin, format!("1\n{id}\n{PW}\n").as_bytes()).expect("feed the client");
    child
}

#[test]
fn a_dead_peer_goes_offline_while_a_silent_live_one_stays() {
    let db = TestDb::new();
    let ns = netns::Netns::new("dead");
    let server = Server::start_args(&db, &["0.0.0.0", "0", "--idle-timeout", "2"], &[]);
    let port = server.addr.port();
    let local = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut friend, _, _) = user_on(local, "watch", PW);
    let (mut silent, silent_id, _) = user_on(local, "silent", PW);
    let silent_since = Instant::now();
    let mut dead = Client::connect(local);
    let dead_id = dead.register(&common::unique_name("dead"), PW);
    drop(dead);

    let mut child = client_in(&ns, SocketAddr::from((ns.host_ip, port)), dead_id);
    wait_user_state(&db, dead_id, "online");
    ns.cut();
    let cut_at = Instant::now();

    // Idle 2 s, then 5 probes 2 s apart: gone in about 12 s; allowed a
    // minute more, as the spec says.
    let limit = Duration::from_secs(2 + 60) + POLL_TIMEOUT;
    poll_until("the dead peer's user to go offline", limit, || (user_state(&db, dead_id) == "offline").then_some(()));
    assert!(cut_at.elapsed() >= Duration::from_secs(2), "offline before its idle timeout");
    // The silent one stays quiet past its own idle time and five probe
    // rounds (the silence is what is tested), and is still here: a message
    // reaches it live.
    let quiet = Duration::from_secs(2 + 5 * 2 + 2);
    std::thread::sleep(quiet.saturating_sub(silent_since.elapsed()));
    assert_eq!(user_state(&db, silent_id), "online");
    friend.send_chat(silent_id, "still there?");
    let got = silent.recv_msgid(6);
    assert_eq!(got["msg"], "still there?");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_full_offline_store_refuses_more_with_errno_106_and_keeps_the_first_in_order() {
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--max-stored", "5"], &[]);
    let (mut sender, sender_id, _) = user_on(server.addr, "full-s", PW);
    let (away, _) = common::offline_user(server.addr, "full-r", PW);
    let (mut member, _, _) = user_on(server.addr, "full-m", PW);

    for i in 0..5 {
        sender.send_chat(away, &format!("n{i}-kept"));
    }
    // A PING answered after them: none of the five was refused.
    assert_eq!(sender.ping()["msgid"], 17);
    sender.send_chat(away, "n5-refused");
    let refusal = sender.recv_error(106);
    assert!(refusal["msg"].as_str().is_some_and(|m| m.contains("full")), "{refusal}");

    // A group message reaches the member with room and is refused, by
    // name, for the full one.
    let group = sender.new_group(&common::unique_name("full-g"), "capped");
    assert_eq!(member.add_group(group)["errno"], 0);
    let mut away_client = Client::connect(server.addr);
    away_client.login_ok(away, PW);
    // (The LOGIN_ACK took the five; fill the store again while away.)
    assert_eq!(away_client.add_group(group)["errno"], 0);
    away_client.logout();
    common::wait_user_state(&db, away, "offline");
    for i in 0..5 {
        sender.send_chat(away, &format!("n{i}-again"));
    }
    sender.ping();
    sender.send_group_chat(group, "to the group");
    let refusal = sender.recv_error(106);
    assert!(refusal["msg"].as_str().is_some_and(|m| m.contains(&away.to_string())), "{refusal}");
    let got = member.recv_msgid(10);
    assert_eq!((got["msg"].as_str(), got["id"].as_i64()), (Some("to the group"), Some(sender_id)));

    let mut back = Client::connect(server.addr);
    let ack = back.login_ok(away, PW);
    let stored: Vec<String> = ack["offlinemsg"]
        .as_array()
        .expect("stored messages")
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(m.as_str().expect("string")).expect("JSON")["msg"]
                .as_str()
                .expect("msg")
                .to_string()
        })
        .collect();
    assert_eq!(stored, (0..5).map(|i| format!("n{i}-again")).collect::<Vec<_>>());
}

#[test]
fn stored_messages_past_the_login_acks_bound_follow_it_in_order_and_are_deleted() {
    const COUNT: u32 = 40;
    let db = TestDb::new();
    let server = Server::start(&db);
    let (mut sender, _, _) = user_on(server.addr, "big-s", PW);
    let (away, _) = common::offline_user(server.addr, "big-r", PW);
    // 40 messages of 50 KB: 2 MB stored, twice what one LOGIN_ACK carries.
    let pad = "y".repeat(50_000);
    send_numbered(&mut sender, away, COUNT, &pad);
    common::wait_offline_count(&db, away, i64::from(COUNT));

    let mut back = Client::connect(server.addr);
    let ack = back.login_ok(away, PW);
    let in_ack = ack["offlinemsg"].as_array().cloned().unwrap_or_default();
    let ack_bytes: usize = in_ack.iter().map(|m| m.as_str().map_or(0, str::len)).sum();
    assert!(!in_ack.is_empty() && ack_bytes <= 1 << 20, "the LOGIN_ACK carried {ack_bytes} bytes of stored messages");
    let mut got = numbers(in_ack.iter().map(|s| serde_json::from_str(s.as_str().expect("a string")).expect("JSON")));
    while got.len() < COUNT as usize {
        got.extend(numbers([back.recv_msgid(6)]));
    }
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
    common::wait_offline_count(&db, away, 0);
}

/// The numbers of the chat messages among `frames`: ONE_CHAT frames and
/// those a LOGIN_ACK carries.
fn numbers_with_acks(frames: Vec<Value>) -> Vec<u32> {
    let mut all = Vec::new();
    for v in frames {
        if v["msgid"] == 2 {
            let stored = v["offlinemsg"].as_array().cloned().unwrap_or_default();
            all.extend(
                stored.iter().map(|s| serde_json::from_str::<Value>(s.as_str().expect("string")).expect("JSON")),
            );
        } else {
            all.push(v);
        }
    }
    numbers(all)
}

/// Sends `count` messages `n<i>-<pad>` to `to`, then a PING: once it is
/// answered, every one of them was handled.
fn send_numbered(sender: &mut Client, to: i64, count: u32, pad: &str) {
    for i in 0..count {
        sender.send_chat(to, &format!("n{i}-{pad}"));
    }
    sender.ping();
}

/// Logs `id` in on `c` and adds to `got` the numbered messages that come:
/// those in the LOGIN_ACK, then those after it, until there are `count`.
fn login_and_collect(c: &mut Client, id: i64, got: &mut Vec<u32>, count: u32) {
    got.extend(numbers_with_acks(vec![c.login_ok(id, PW)]));
    while got.len() < count as usize {
        got.extend(numbers([c.recv_msgid(6)]));
    }
}

#[test]
fn a_login_cut_off_while_its_stored_messages_go_out_loses_and_repeats_none() {
    const COUNT: u32 = 40;
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--send-timeout", "2"], &[]);
    let (mut sender, _, _) = user_on(server.addr, "cut-s", PW);
    let (away, _) = common::offline_user(server.addr, "cut-r", PW);
    // 2 MB stored: a LOGIN_ACK of 1 MiB and frames after it.
    let pad = "y".repeat(50_000);
    send_numbered(&mut sender, away, COUNT, &pad);
    common::wait_offline_count(&db, away, i64::from(COUNT));

    // A login that does not read: cut after the send timeout, in the
    // middle of its LOGIN_ACK or of the frames after it.
    let mut stalled = Client::connect(server.addr);
    small_receive_buffer(&stalled);
    stalled.send(&serde_json::json!({"msgid": 1, "id": away, "password": PW}));
    wait_user_state(&db, away, "online");
    wait_user_state(&db, away, "offline");
    let mut got = numbers_with_acks(read_to_close(&stalled));

    // The next login brings exactly the rest.
    let mut back = Client::connect(server.addr);
    login_and_collect(&mut back, away, &mut got, COUNT);
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
    back.ping();
    common::wait_offline_count(&db, away, 0);
}

#[test]
fn what_a_user_missed_before_logging_out_stays_theirs_when_another_logs_in_on_the_connection() {
    const COUNT: u32 = 800;
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--send-timeout", "2", "--rate", "100000"], &[]);
    let (mut sender, _, _) = user_on(server.addr, "mix-s", PW);
    let (mut shared, first, _) = user_on(server.addr, "mix-a", PW);
    let (second, _) = common::offline_user(server.addr, "mix-b", PW);
    small_receive_buffer(&shared);
    let pad = "x".repeat(1000);
    send_numbered(&mut sender, first, COUNT, &pad);
    // The first user leaves with most of that still unsent; the second logs
    // in on the same connection, which then stalls and is cut.
    shared.logout();
    wait_user_state(&db, first, "offline");
    shared.send(&serde_json::json!({"msgid": 1, "id": second, "password": PW}));
    wait_user_state(&db, second, "online");
    wait_user_state(&db, second, "offline");
    let mut got = numbers(read_to_close(&shared));

    // Nothing of the first user's went to the second; all of it is theirs.
    assert_eq!(common::offline_count(&db, second), 0, "the first user's messages were stored for the second");
    login_and_collect(&mut Client::connect(server.addr), first, &mut got, COUNT);
    assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
}
