//! `bin/ChatClient` against a stand-in for the original C++ ChatServer,
//! which ends its JSON objects with nothing at all, writes them back to
//! back, answers neither ADD_FRIEND nor CREATE_GROUP nor ADD_GROUP, sends no
//! token and passes chat messages on just as the client sent them.

mod common;

#[path = "support/client_proc.rs"]
mod client_proc;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread;
use std::time::Duration;

use client_proc::{BOX_END, ClientProc};
use common::is_stamp_shaped;
use serde_json::{Value, json};

/// What the client says after a request the original does not answer.
const UNANSWERED: &str = "sent; this server does not answer it (the lists show it at the next login)";

/// A one-connection stand-in: every request it reads is handed to the test.
struct StandIn {
    addr: SocketAddr,
    requests: Receiver<Value>,
}

impl StandIn {
    fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a stand-in port");
        let addr = listener.local_addr().expect("stand-in address");
        let (tx, requests) = mpsc::channel();
        thread::spawn(move || {
            if let Ok((stream, _)) = listener.accept() {
                serve(stream, &tx);
            }
        });
        StandIn { addr, requests }
    }

    /// The next request the client sent.
    fn request(&self) -> Value {
        self.requests.recv_timeout(Duration::from_secs(20)).expect("a request from the client within 20 s")
    }
}

/// Reads the client's NUL-terminated requests and answers each as the
/// original would, with unterminated JSON.
fn serve(stream: TcpStream, requests: &Sender<Value>) {
    let mut out = stream.try_clone().expect("clone the stand-in socket");
    let mut input = BufReader::new(stream);
    let mut frame = Vec::new();
    loop {
        frame.clear();
        match input.read_until(0, &mut frame) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let Ok(request) = serde_json::from_slice::<Value>(frame.strip_suffix(&[0]).unwrap_or(&frame)) else {
            continue;
        };
        let reply = answer(&request);
        if requests.send(request).is_err() {
            return;
        }
        for part in reply {
            if out.write_all(part.as_bytes()).and_then(|()| out.flush()).is_err() {
                return;
            }
        }
    }
}

/// What the original writes for `request`, write by write.
fn answer(request: &Value) -> Vec<String> {
    let li = |msg: &str, time: &str| {
        json!({"id": 7, "msgid": 6, "msg": msg, "name": "li", "time": time, "toid": 1552}).to_string()
    };
    match request["msgid"].as_i64() {
        Some(4) if request["name"] == "taken" => vec![json!({"errno": 1, "msgid": 5}).to_string()],
        Some(4) => vec![json!({"errno": 0, "id": 1552, "msgid": 5}).to_string()],
        Some(1) if request["password"] != "pw" => {
            vec![json!({"errmsg": "id or password is invalid!", "errno": 1, "msgid": 2}).to_string()]
        }
        Some(1) => {
            let member = json!({"id": 7, "name": "li", "role": "creator", "state": "online"}).to_string();
            let group = json!({"groupdesc": "all about crabs", "groupname": "crabs", "id": 3, "users": [member]});
            let ack = json!({
                "errno": 0, "id": 1552, "msgid": 2, "name": "zhang",
                "friends": [json!({"id": 7, "name": "li", "state": "online"}).to_string()],
                "groups": [group.to_string()],
                "offlinemsg": [li("while you were out", "2026-11-26 09:00:00")],
            });
            // The LOGIN_ACK and a message right behind it, in one write.
            vec![format!("{ack}{}", li("welcome", "2026-11-26 10:00:00"))]
        }
        Some(6) => {
            // li answers; the answer arrives in two pieces.
            let reply = li(&format!("re: {}", request["msg"].as_str().unwrap_or("")), "2026-11-26 10:00:01");
            let (head, tail) = reply.split_at(reply.len() / 2);
            vec![head.to_string(), tail.to_string()]
        }
        Some(10) => vec![
            json!({"groupid": 3, "id": 7, "msgid": 10, "msg": "re: group", "name": "li", "time": "2026-11-26 10:00:02"})
                .to_string(),
        ],
        // LOGOUT, ADD_FRIEND, CREATE_GROUP, ADD_GROUP: carried out silently.
        _ => Vec::new(),
    }
}

#[test]
fn the_client_works_against_the_original_servers_unterminated_replies() {
    let standin = StandIn::start();
    let mut c = ClientProc::connect("client", standin.addr);

    c.type_line("2");
    c.expect_exact("username:");
    c.type_line("zhang");
    c.expect_exact("userpassword:");
    c.type_line("pw");
    c.expect_exact("name=zhang register success, userid is 1552, do not forget it!");
    assert_eq!(standin.request(), json!({"msgid": 4, "name": "zhang", "password": "pw"}));
    c.expect_menu();
    c.type_line("2");
    c.type_line("taken");
    c.type_line("pw");
    c.expect_exact("name=taken register error: errno 1");
    standin.request();
    c.expect_menu();

    c.login(1552, "wrong");
    c.expect_exact("id or password is invalid!");
    standin.request();
    c.expect_menu();
    c.login(1552, "pw");
    c.expect_exact("current login user => id:1552 name:zhang");
    for line in [
        "----------------------friend list---------------------",
        "7 li online",
        "----------------------group list----------------------",
        "[3] crabs all about crabs",
        "    7 li online creator",
        BOX_END,
    ] {
        assert_eq!(c.next_line(), line);
    }
    assert_eq!(c.next_line(), "2026-11-26 09:00:00 [7]li said: while you were out");
    // The message that came right behind the LOGIN_ACK, after the login
    // box (before or after the help that follows it).
    let box_end = c.mark();
    c.expect_exact("2026-11-26 10:00:00 [7]li said: welcome");
    c.rewind(box_end);
    c.expect_exact("show command list >>>");
    standin.request();

    // Chat: what the original passes on carries the sender and a time.
    c.type_line("chat:7:hello:there");
    let sent = standin.request();
    assert_eq!((&sent["msgid"], &sent["id"], &sent["name"]), (&json!(6), &json!(1552), &json!("zhang")), "{sent}");
    assert_eq!((&sent["toid"], &sent["msg"]), (&json!(7), &json!("hello:there")), "{sent}");
    assert!(is_stamp_shaped(sent["time"].as_str().unwrap_or("")), "{sent}");
    c.expect_exact("2026-11-26 10:00:01 [7]li said: re: hello:there");
    c.type_line("groupchat:3:hi all");
    let sent = standin.request();
    assert_eq!((&sent["msgid"], &sent["groupid"], &sent["msg"]), (&json!(10), &json!(3), &json!("hi all")), "{sent}");
    c.expect_exact("群消息[3]:2026-11-26 10:00:02 [7]li said: re: group");

    // Requests the original carries out without a word: said at once,
    // never a 30 s wait for an answer that does not come.
    c.type_line("addfriend:9");
    c.expect_exact(UNANSWERED);
    assert_eq!(standin.request(), json!({"msgid": 7, "id": 1552, "friendid": 9}));
    c.type_line("creategroup:rust:crabs");
    c.expect_exact(UNANSWERED);
    assert_eq!(standin.request(), json!({"msgid": 8, "id": 1552, "groupname": "rust", "groupdesc": "crabs"}));
    c.type_line("addgroup:3");
    c.expect_exact(UNANSWERED);
    assert_eq!(standin.request(), json!({"msgid": 9, "id": 1552, "groupid": 3}));

    c.type_line("loginout");
    c.expect_menu();
    assert_eq!(standin.request(), json!({"msgid": 3, "id": 1552}));
    c.type_line("3");
    c.expect_exact("bye");
    assert_eq!(c.wait_exit().code(), Some(0), "{}", c.transcript());
}
