//! Hostile clients against the real server over TCP (SPEC §2 errors, §3 "Bad
//! input"): malformed and oversize messages, floods, a client that stops
//! reading, too many connections, silent connections, password guessing.
//! Each time the one client gets an error or a closed connection, and the
//! server and every other client carry on.

mod common;

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    Client, POLL_TIMEOUT, RECV_TIMEOUT, Server, TestDb, offline_user, ping_pong, poll_until, unique_name, user_on,
    wait_user_state,
};
use serde_json::{Value, json};

const PW: &str = "pw-Hostile-1";
const INVALID: &str = "id or password is invalid!";

/// Two logged-in users on their own connections: (client, id) each.
fn pair(addr: SocketAddr) -> ((Client, i64), (Client, i64)) {
    let (a, ida, _) = user_on(addr, "ha", PW);
    let (b, idb, _) = user_on(addr, "hb", PW);
    ((a, ida), (b, idb))
}

/// Asserts a and b still chat both ways, and receive nothing else.
fn assert_pair_chats(a: &mut Client, ida: i64, b: &mut Client, idb: i64, tag: &str) {
    let text = format!("a->b {tag} ✓");
    a.send(&json!({"msgid": 6, "toid": idb, "msg": text}));
    let got = b.recv_msgid(6);
    assert_eq!((got["msg"].as_str(), got["id"].as_i64()), (Some(&*text), Some(ida)), "{got}");
    let text = format!("b->a {tag} ✓");
    b.send(&json!({"msgid": 6, "toid": ida, "msg": text}));
    let got = a.recv_msgid(6);
    assert_eq!((got["msg"].as_str(), got["id"].as_i64()), (Some(&*text), Some(idb)), "{got}");
}

/// The text of a panic payload.
fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "(non-string panic)".into())
}

/// A small seeded xorshift generator for reproducible garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Resident memory of a process, in KiB, from /proc/<pid>/status.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/<pid>/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

// ------------------------------------------------------------- bad input

/// What a bad input must get.
#[derive(Clone, Copy, Debug)]
enum Want {
    /// ERROR with this errno; the connection stays usable.
    Error(i64),
    /// ERROR with this errno, then the connection is closed.
    ErrorThenClosed(i64),
    /// The split message: a valid request sent one byte per write.
    Split,
}

fn bad_inputs() -> Vec<(&'static str, Vec<u8>, Want)> {
    let mut rng = Rng(0x0bad_5eed);
    let mut random: Vec<u8> = (0..4096).map(|_| rng.next() as u8).filter(|&b| b != 0 && b != b'\n').collect();
    random.push(0);
    let deep = |s: String| {
        let mut v = s.into_bytes();
        v.push(0);
        v
    };
    let nest = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let mut big = serde_json::to_vec(&json!({"msgid": 6, "toid": 1, "msg": "x".repeat(100 * 1024)})).unwrap();
    big.push(0);
    let z = |s: &str| {
        let mut v = s.as_bytes().to_vec();
        v.push(0);
        v
    };
    vec![
        ("garbage bytes", b"\x13\x37garbage\xde\xad\xbe\xef{{{ \x7f\0".to_vec(), Want::Error(100)),
        ("4 KiB of seeded random bytes", random, Want::Error(100)),
        ("invalid UTF-8", b"{\"msgid\":16,\"x\":\"\xff\xfe\xc0\x80\"}\0".to_vec(), Want::Error(100)),
        (
            "invalid UTF-8 in a used field",
            b"{\"msgid\":4,\"name\":\"\xe4\xbd\",\"password\":\"p\"}\0".to_vec(),
            Want::Error(100),
        ),
        ("[]", z("[]"), Want::Error(100)),
        ("\"x\"", z("\"x\""), Want::Error(100)),
        ("{\"msgid\":\"1\"}", z(r#"{"msgid":"1"}"#), Want::Error(100)),
        ("{\"msgid\":99}", z(r#"{"msgid":99}"#), Want::Error(101)),
        ("{\"msgid\":1} (fields missing)", z(r#"{"msgid":1}"#), Want::Error(100)),
        ("wrong type: id a string", z(r#"{"msgid":1,"id":"1","password":"pw"}"#), Want::Error(100)),
        ("wrong type: name a number", z(r#"{"msgid":4,"name":5,"password":"pw"}"#), Want::Error(100)),
        ("wrong type: toid an object", z(r#"{"msgid":6,"toid":{},"msg":"x"}"#), Want::Error(100)),
        ("wrong type: msg an array", z(r#"{"msgid":6,"toid":1,"msg":["x"]}"#), Want::Error(100)),
        ("10,000-deep nesting", deep(nest.clone()), Want::Error(100)),
        ("10,000-deep nesting in a PING", deep(format!("{{\"msgid\":16,\"x\":{nest}}}")), Want::Error(100)),
        ("msgid 1e999", z(r#"{"msgid":1e999}"#), Want::Error(100)),
        ("toid 1e999", z(r#"{"msgid":6,"toid":1e999,"msg":"x"}"#), Want::Error(100)),
        ("100 KiB message", big, Want::ErrorThenClosed(103)),
        ("100 KiB that never ends", vec![b'a'; 100 * 1024], Want::ErrorThenClosed(103)),
        ("a message split one byte per write", Vec::new(), Want::Split),
    ]
}

/// Runs one bad input on a fresh connection (logged in first as a fresh
/// user if `logged_in`) and checks the answer; `a` is the receiver of the
/// split message.
fn run_bad_input(addr: SocketAddr, bytes: &[u8], want: Want, logged_in: bool, a: &mut Client, ida: i64) {
    let mut c = Client::connect(addr);
    if logged_in {
        c.register_login("hx", PW);
    }
    match want {
        Want::Error(errno) => {
            c.send_raw(bytes);
            c.recv_error(errno);
            // This client carries on.
            ping_pong(&mut c);
        }
        Want::ErrorThenClosed(errno) => {
            // The server may close before it has read everything.
            let _ = c.try_send_raw(bytes);
            c.recv_error(errno);
            let rest = c.expect_closed();
            assert!(rest.is_empty(), "frames after ERROR {errno}: {rest:?}");
        }
        Want::Split => {
            let msg = if logged_in {
                json!({"msgid": 6, "toid": ida, "msg": "split, byte by byte: ✓ 你好 😀"})
            } else {
                json!({"msgid": 4, "name": unique_name("split"), "password": "pässwörd ✓"})
            };
            let mut bytes = serde_json::to_vec(&json!({"msgid": 16})).unwrap();
            bytes.push(0);
            bytes.extend(serde_json::to_vec(&msg).unwrap());
            bytes.push(0);
            for byte in bytes.chunks(1) {
                c.send_raw(byte);
                // Pace the writes so they arrive as separate segments.
                thread::sleep(Duration::from_millis(1));
            }
            c.recv_msgid(17);
            if logged_in {
                let got = a.recv_msgid(6);
                assert_eq!(got["msg"], msg["msg"], "{got}");
            } else {
                let ack = c.recv_msgid(5);
                assert_eq!(ack["errno"].as_i64(), Some(0), "REG sent byte by byte: {ack}");
            }
            ping_pong(&mut c);
        }
    }
}

#[test]
fn bad_inputs_each_on_its_own_connection_get_an_error_and_a_logged_in_pair_still_chats() {
    let db = TestDb::new();
    let mut server = Server::start(&db);
    let ((mut a, ida), (mut b, idb)) = pair(server.addr);
    let mut problems = Vec::new();
    for logged_in in [false, true] {
        for (name, bytes, want) in bad_inputs() {
            let outcome =
                catch_unwind(AssertUnwindSafe(|| run_bad_input(server.addr, &bytes, want, logged_in, &mut a, ida)));
            if let Err(payload) = outcome {
                let who = if logged_in { "logged in" } else { "not logged in" };
                problems.push(format!("{name} ({who}; expected {want:?}): {}", panic_text(payload)));
            }
            assert!(server.is_running(), "ChatServer died on {name}:\n{}", server.output());
        }
    }
    assert_pair_chats(&mut a, ida, &mut b, idb, "after the bad inputs");
    ping_pong(&mut a);
    ping_pong(&mut b);
    assert!(problems.is_empty(), "{} bad input(s) not answered as expected:\n{}", problems.len(), problems.join("\n"));
}

// ------------------------------------------------------------------ flood

#[test]
fn flood_of_5000_messages_every_one_delivered_in_order_or_refused_with_104() {
    const SENT: usize = 5_000;
    let db = TestDb::new();
    // Default rate: 200 messages/s, burst 400.
    let server = Server::start(&db);
    let ((mut a, ida), (mut b, idb)) = pair(server.addr);

    // B reads concurrently: the numbers of the flood messages it gets, in
    // order, until the "end" marker.
    let delivered = Arc::new(AtomicUsize::new(0));
    let reader = {
        let delivered = Arc::clone(&delivered);
        thread::spawn(move || {
            let mut got: Vec<usize> = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                assert!(Instant::now() < deadline, "B: no end marker within 300 s");
                let Some(v) = b.try_recv(Duration::from_secs(1)) else { continue };
                assert_eq!(v["msgid"].as_i64(), Some(6), "B got something other than a ONE_CHAT: {v}");
                assert_eq!(v["id"].as_i64(), Some(ida), "{v}");
                let msg = v["msg"].as_str().unwrap_or_else(|| panic!("no msg: {v}"));
                if msg == "end" {
                    return (b, got);
                }
                let n: usize = msg.strip_prefix("flood-").and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{v}"));
                got.push(n);
                delivered.fetch_add(1, Ordering::SeqCst);
            }
        })
    };

    // A writes the flood from another thread as fast as it can.
    let mut out = a.stream().try_clone().expect("clone A's socket");
    let writer = thread::spawn(move || {
        let mut bytes = Vec::new();
        for i in 0..SENT {
            bytes.extend(serde_json::to_vec(&json!({"msgid": 6, "toid": idb, "msg": format!("flood-{i}")})).unwrap());
            bytes.push(0);
        }
        out.write_all(&bytes).expect("write the flood");
    });

    // A counts the refusals until every message is accounted for.
    let mut refused = 0usize;
    let deadline = Instant::now() + Duration::from_secs(120);
    while refused + delivered.load(Ordering::SeqCst) < SENT {
        assert!(
            Instant::now() < deadline,
            "after 120 s only {} of {SENT} messages accounted for: {} delivered, {refused} refused with 104",
            refused + delivered.load(Ordering::SeqCst),
            delivered.load(Ordering::SeqCst)
        );
        if let Some(v) = a.try_recv(Duration::from_millis(100)) {
            assert!(v["msgid"] == 11 && v["errno"] == 104, "A got something other than ERROR 104: {v}");
            refused += 1;
        }
    }
    writer.join().expect("writer thread");
    let total = refused + delivered.load(Ordering::SeqCst);
    assert_eq!(total, SENT, "more outcomes than messages");

    // Barrier: a third user writes to A. A's loop handled every flood
    // message before the count above was complete, so any late ERROR for
    // the flood would arrive before this.
    let (mut sync, ids, _) = user_on(server.addr, "hs", PW);
    sync.send_chat(ida, "sync");
    loop {
        let v = a.recv();
        if v["msgid"] == 6 && v["msg"] == "sync" && v["id"] == ids {
            break;
        }
        assert!(v["msgid"] == 11 && v["errno"] == 104, "A got something other than ERROR 104: {v}");
        refused += 1;
    }
    // The end marker, retried while A's bucket is empty.
    poll_until("A's end marker to be accepted", POLL_TIMEOUT, || {
        a.send_chat(idb, "end");
        match a.try_recv(Duration::from_millis(200)) {
            None => Some(()),
            Some(v) if v["msgid"] == 11 && v["errno"] == 104 => None,
            Some(v) => panic!("A got something other than ERROR 104: {v}"),
        }
    });
    let (mut b, got) = reader.join().expect("B's reader");
    assert_eq!(got.len() + refused, SENT, "delivered {} + refused {refused} != sent {SENT}", got.len());
    assert!(got.windows(2).all(|w| w[0] < w[1]), "deliveries out of order or repeated: {got:?}");
    assert!(got.iter().all(|&n| n < SENT));
    // The limiter did its job: the burst went through, the rest was refused.
    assert!(got.len() >= 390, "only {} delivered; the burst of 400 should pass", got.len());
    assert!(refused > 0, "no message refused with 104 out of {SENT} sent at once");
    eprintln!("flood: {} delivered, {refused} refused", got.len());
    ping_pong(&mut b);
}

// ------------------------------------------------------------ slow reader

/// Logs `c` in as `id` and collects the numbers of the stored messages
/// from `from` that come: those in the LOGIN_ACK (at most 1 MiB of them),
/// then those that follow it as frames of their own, until `count`.
fn stored_at_login(c: &mut Client, id: i64, from: i64, count: usize) -> Vec<usize> {
    c.send(&json!({"msgid": 1, "id": id, "password": PW}));
    let ack = c.recv_msgid(2);
    assert_eq!(ack["errno"].as_i64(), Some(0), "{}", short(&ack));
    let mut got: Vec<usize> = common::parse_string_list(&ack["offlinemsg"]).iter().map(|v| seq_of(v, from)).collect();
    while got.len() < count {
        got.push(seq_of(&c.recv_msgid(6), from));
    }
    got
}

/// The start of a frame, for failure messages.
fn short(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

/// Asserts `got` is exactly `from..to`; on failure says where it first
/// differs, with the numbers around that place.
fn assert_run(got: &[usize], from: usize, to: usize, what: &str) {
    if let Err(problem) = check_run(got, from, to, what) {
        panic!("{problem}");
    }
}

/// Whether `got` is exactly `from..to`; if not, where it first differs.
fn check_run(got: &[usize], from: usize, to: usize, what: &str) -> Result<(), String> {
    let want: Vec<usize> = (from..to).collect();
    if got == want.as_slice() {
        return Ok(());
    }
    let at = got.iter().zip(&want).position(|(g, w)| g != w).unwrap_or(got.len().min(want.len()));
    let lo = at.saturating_sub(5);
    let mut dups = got.to_vec();
    dups.sort_unstable();
    let repeated = dups.windows(2).filter(|w| w[0] == w[1]).count();
    let missing = want.iter().filter(|n| dups.binary_search(n).is_err()).count();
    Err(format!(
        "{what}: expected {from}..{to} in order ({} numbers), got {} numbers ({repeated} repeated, {missing} missing); \
         first difference at position {at}: got {:?}, expected {:?}",
        want.len(),
        got.len(),
        &got[lo.min(got.len())..(at + 10).min(got.len())],
        &want[lo.min(want.len())..(at + 10).min(want.len())],
    ))
}

/// The number in a flood message `NNNNN|xxxx...` from A.
fn seq_of(v: &Value, ida: i64) -> usize {
    assert_eq!((v["msgid"].as_i64(), v["id"].as_i64()), (Some(6), Some(ida)), "not a ONE_CHAT from A: {}", short(v));
    let msg = v["msg"].as_str().unwrap_or_else(|| panic!("no msg: {}", short(v)));
    msg.split_once('|').and_then(|(n, _)| n.parse().ok()).unwrap_or_else(|| panic!("bad msg: {}", short(v)))
}

#[test]
fn a_client_that_stops_reading_is_cut_off_memory_stays_bounded_and_the_rest_is_stored() {
    /// Messages of about 60 KiB, about 46 MiB in all: many times the 4 MiB
    /// output cap, and twice the memory bound below.
    const COUNT: usize = 800;
    const FILL: usize = 60 * 1024;
    const BATCH: usize = 8;
    const RSS_BOUND_KIB: u64 = 24 * 1024;
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--rate", "100000"], &[]);
    let ((mut a, ida), (mut b, idb)) = pair(server.addr);
    let ((mut c, idc), (mut d, idd)) = pair(server.addr);
    // B logged in and now never reads (its socket stays open).
    ping_pong(&mut a);
    let base = rss_kib(server.pid());
    let mut peak = base;
    let mut sent_bytes = 0usize;
    let filler = "x".repeat(FILL);
    for i in 0..COUNT {
        let frame = json!({"msgid": 6, "toid": idb, "msg": format!("{i:05}|{filler}")});
        sent_bytes += frame.to_string().len() + 1;
        a.send(&frame);
        if i % BATCH == BATCH - 1 {
            // Pace A by its own replies, so what piles up is B's, not A's
            // unread requests.
            ping_pong(&mut a);
            peak = peak.max(rss_kib(server.pid()));
        }
        if i % 100 == 0 {
            // Others are unaffected meanwhile.
            assert_pair_chats(&mut c, idc, &mut d, idd, &format!("while B is flooded ({i})"));
        }
    }
    ping_pong(&mut a);
    peak = peak.max(rss_kib(server.pid()));
    eprintln!(
        "slow reader: sent {} MiB; server RSS {} MiB before, peak {} MiB",
        sent_bytes >> 20,
        base >> 10,
        peak >> 10
    );
    assert!(
        peak.saturating_sub(base) < RSS_BOUND_KIB,
        "server memory grew by {} MiB (from {} to {} MiB) while {} MiB were sent to a client that does not read",
        (peak - base) >> 10,
        base >> 10,
        peak >> 10,
        sent_bytes >> 20
    );

    // B was cut off and is offline; what reached its socket before is
    // still readable, then the end of the stream.
    wait_user_state(&db, idb, "offline");
    let received: Vec<usize> = b.expect_closed().iter().map(|v| seq_of(v, ida)).collect();
    let k = received.len();
    assert!(k < COUNT, "B received all {COUNT} messages without reading");
    assert_run(&received, 0, k, "B's messages before the cut");
    assert_pair_chats(&mut c, idc, &mut d, idd, "after B was cut off");

    // The rest is stored, in order, without duplicates.
    common::wait_offline_count(&db, idb, (COUNT - k) as i64);
    let rows: Vec<String> = db.query_all("SELECT message FROM offlinemessage WHERE userid = ? ORDER BY id", (idb,));
    let stored: Vec<usize> = rows
        .iter()
        .map(|r| seq_of(&serde_json::from_str(r).unwrap_or_else(|e| panic!("stored row is not JSON ({e})")), ida))
        .collect();
    // Checked at the end, so the login below is checked too.
    let mut problems: Vec<String> =
        check_run(&stored, k, COUNT, "the messages stored for B").err().into_iter().collect();

    // B logs in again and gets them all: in offlinemsg, then right after.
    let mut b2 = Client::connect(server.addr);
    let offline = stored_at_login(&mut b2, idb, ida, COUNT - k);
    problems.extend(check_run(&offline, k, COUNT, "B's stored messages at login").err());
    assert_pair_chats(&mut a, ida, &mut b2, idb, "after B's new login");
    assert_pair_chats(&mut c, idc, &mut d, idd, "at the end");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn stored_messages_past_the_output_cap_still_reach_their_user_at_login() {
    // 300 messages of 60 KiB (18 MiB, well past the 4 MiB output cap) for a
    // user who is offline; the LOGIN_ACK and the frames that follow it with
    // the rest are read at once.
    const COUNT: usize = 300;
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--rate", "100000"], &[]);
    let (mut a, ida, _) = user_on(server.addr, "hs", PW);
    let (idb, _) = offline_user(server.addr, "hr", PW);
    let filler = "y".repeat(60 * 1024);
    for i in 0..COUNT {
        a.send(&json!({"msgid": 6, "toid": idb, "msg": format!("{i:05}|{filler}")}));
    }
    ping_pong(&mut a);
    common::wait_offline_count(&db, idb, COUNT as i64);
    let mut b = Client::connect(server.addr);
    let offline = stored_at_login(&mut b, idb, ida, COUNT);
    assert_run(&offline, 0, COUNT, "stored messages at login");
    // Delivered whole: they are deleted.
    common::wait_offline_count(&db, idb, 0);
}

// ------------------------------------------------------------- max-conns

/// How a probe connection was answered.
#[derive(Debug, PartialEq)]
enum Probe {
    Pong,
    Closed,
}

/// Connects, sends PING, and reads: PONG, or the end of the stream.
fn probe(addr: SocketAddr) -> Probe {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(RECV_TIMEOUT)).unwrap();
    // The server may have closed it already: a failed write is fine.
    let _ = s.write_all(b"{\"msgid\":16}\0");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 256];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => {
                assert!(buf.is_empty(), "closed after sending {:?}", String::from_utf8_lossy(&buf));
                return Probe::Closed;
            }
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.ends_with(b"\0") {
                    assert_eq!(buf, b"{\"msgid\":17}\0", "expected PONG");
                    return Probe::Pong;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Probe::Closed,
            Err(e) => panic!("probe read failed: {e}"),
        }
    }
}

#[test]
fn max_conns_closes_new_connections_past_the_limit_at_once() {
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--max-conns", "5"], &[]);
    let mut conns: Vec<Client> = (0..5).map(|_| Client::connect(server.addr)).collect();
    for c in &mut conns {
        ping_pong(c);
    }
    let (id0, _) = conns[0].register_login("hm", PW);
    // Past the limit: closed at once, without a reply.
    for _ in 0..3 {
        let mut extra = Client::connect(server.addr);
        let frames = extra.expect_closed();
        assert!(frames.is_empty(), "a connection past --max-conns got frames: {frames:?}");
    }
    assert_eq!(probe(server.addr), Probe::Closed, "a PING past --max-conns was answered");
    // The five are untouched.
    for c in &mut conns {
        ping_pong(c);
    }
    conns[1].send_chat(id0, "still here");
    conns[1].recv_error(102);
    // One leaves: a new connection is served again.
    drop(conns.pop());
    poll_until("a connection to be accepted after one closed", POLL_TIMEOUT, || {
        (probe(server.addr) == Probe::Pong).then_some(())
    });
}

// ----------------------------------------------------------- login abuse

#[test]
fn login_failures_look_the_same_for_a_wrong_id_and_a_wrong_password() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (id, _) = offline_user(server.addr, "hl", PW);
    let missing = id + 1_000_000;
    let mut c = Client::connect(server.addr);
    let wrong_id = c.login(missing, PW);
    let wrong_pw = c.login(id, "not-the-password");
    assert_eq!(wrong_id, wrong_pw, "a wrong id and a wrong password are answered differently");
    assert_eq!(wrong_id, json!({"msgid": 2, "errno": 1, "errmsg": INVALID}));
    // The wrong password did not lock the account at once.
    c.login_ok(id, PW);
}

/// What a LOGIN for an id held back after 3 failures gets: it says so.
fn held_back(secs: u64) -> Value {
    json!({"msgid": 2, "errno": 1, "errmsg": format!("too many failed logins; try again in {secs} s")})
}

/// Three wrong passwords for an id, then `last`, in one write, on a fresh
/// connection: the reply to `last`, which comes while the id is held back
/// (unless the machine stalled past the 1 s wait; then try again, with
/// `id_of(try)`: an id just checked once more is held back longer).
fn fourth_after_three_failures(addr: SocketAddr, id_of: impl Fn(i64) -> i64, last: &str) -> Value {
    let refusal = json!({"msgid": 2, "errno": 1, "errmsg": INVALID});
    for attempt in 0..5 {
        let id = id_of(attempt);
        let mut c = Client::connect(addr);
        let mut bytes = Vec::new();
        for pw in ["wrong-1", "wrong-2", "wrong-3", last] {
            bytes.extend(serde_json::to_vec(&json!({"msgid": 1, "id": id, "password": pw})).unwrap());
            bytes.push(0);
        }
        c.send_raw(&bytes);
        for i in 0..3 {
            assert_eq!(c.recv_msgid(2), refusal, "wrong password {i}");
        }
        let fourth = c.recv_msgid(2);
        if fourth != refusal && fourth["errno"] != 0 {
            return fourth;
        }
        eprintln!("the 4th login was checked right after 3 failures; trying again");
        if fourth["errno"] == 0 {
            c.logout();
        }
    }
    panic!("after 3 failed logins the 4th was checked at once, 5 times out of 5");
}

#[test]
fn repeated_login_failures_for_one_id_are_throttled_then_allowed_again() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (id, _) = offline_user(server.addr, "ht", PW);
    let (other, _) = offline_user(server.addr, "ho", PW);

    // The right password while the id is held back is refused, and says why.
    assert_eq!(
        fourth_after_three_failures(server.addr, |_| id, PW),
        held_back(1),
        "the right password while held back"
    );
    // Another id is not held back meanwhile.
    Client::connect(server.addr).login_ok(other, PW);
    // An id that does not exist is held back exactly alike.
    let missing = id + 1_000_000;
    assert_eq!(
        fourth_after_three_failures(server.addr, |n| missing + n, PW),
        held_back(1),
        "an id that does not exist"
    );

    // The wait ends: the right password gets in (each try on a fresh
    // connection, so the per-connection limit does not interfere).
    let ack = poll_until("the right password to be accepted after the wait", Duration::from_secs(90), || {
        let mut c = Client::connect(server.addr);
        let ack = c.login(id, PW);
        match ack["errno"].as_i64() {
            Some(0) => Some(ack),
            _ => {
                let why = ack["errmsg"].as_str().unwrap_or_default();
                assert!(
                    why.starts_with("too many failed logins; try again in "),
                    "refused login while held back: {ack}"
                );
                thread::sleep(Duration::from_millis(200));
                None
            }
        }
    });
    assert_eq!(ack["id"].as_i64(), Some(id));
}

/// The ERROR that comes before a connection is closed for failed logins.
fn closed_for_failures() -> Value {
    json!({"msgid": 11, "errno": 104, "msg": "too many failed logins on this connection; it is closed"})
}

#[test]
fn the_failure_count_of_a_connection_restarts_at_each_login() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (alice, _) = offline_user(server.addr, "ha", PW);
    let (dave, _) = offline_user(server.addr, "hd", PW);
    let mut c = Client::connect(server.addr);
    // One typo for alice, three for dave: four failures on this connection.
    c.login(alice, "typo");
    for _ in 0..3 {
        assert_eq!(c.login(dave, "typo")["errmsg"], INVALID);
    }
    // Dave's right password, retried while dave is held back (which is no
    // failure of the connection's), gets in.
    poll_until("dave's login to be accepted", Duration::from_secs(90), || {
        let ack = c.login(dave, PW);
        match ack["errno"].as_i64() {
            Some(0) => Some(ack),
            _ => {
                assert_eq!(ack["errno"], 1, "{ack}");
                thread::sleep(Duration::from_millis(200));
                None
            }
        }
    });
    c.logout();
    // A fresh count: four more typos (different ids, none held back) are
    // served, the fifth closes the connection and says why.
    for i in 0..4 {
        assert_eq!(c.login(alice + 1_000_000 + i, "typo")["errmsg"], INVALID, "typo {i} after the login");
    }
    ping_pong(&mut c);
    assert_eq!(c.login(alice, "typo")["errmsg"], INVALID);
    assert_eq!(c.expect_closed(), vec![closed_for_failures()]);
}

#[test]
fn five_failed_logins_on_one_connection_close_it() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (base, _) = offline_user(server.addr, "hf", PW);
    let mut c = Client::connect(server.addr);
    // Different ids (none of them held back), missing or with a wrong password.
    for i in 0..4 {
        let ack = c.login(base + 1 + i * 7919, "nope");
        assert_eq!(ack["errno"].as_i64(), Some(1), "{ack}");
    }
    // Still served after four.
    ping_pong(&mut c);
    let ack = c.login(base, "nope");
    assert_eq!(ack, json!({"msgid": 2, "errno": 1, "errmsg": INVALID}));
    let rest = c.expect_closed();
    assert_eq!(rest, vec![closed_for_failures()], "frames after the fifth failure");
    // Only that connection: the account itself still logs in elsewhere.
    Client::connect(server.addr).login_ok(base, PW);
}
