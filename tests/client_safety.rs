//! SPEC §4: text that came from the network never reaches the terminal as a
//! control character. A sender whose name (a row left by an older server)
//! holds escape sequences sends messages full of them to `bin/ChatClient`,
//! live, stored and in a group, through a real `ChatServer`.

mod common;

#[path = "support/client_proc.rs"]
mod client_proc;

use client_proc::{BOX_END, ClientProc, is_chat_line};
use common::{Client, Server, TestDb, offline_user, unique_name, wait_offline_count, wait_user_state};

const PW: &str = "pw-Safety-1";

/// What must never be printed as itself: C0 (but the newline that ends
/// each line), DEL, C1, and the bidi marks, embeddings, overrides and
/// isolates. Written out here rather than taken from the crate, so the
/// test does not share a mistake with what it tests.
fn acts_on_a_terminal(c: char) -> bool {
    let code = u32::from(c);
    (code < 0x20 && c != '\n')
        || (0x7F..=0x9F).contains(&code)
        || (0x202A..=0x202E).contains(&code)
        || (0x2066..=0x2069).contains(&code)
        || matches!(code, 0x200E | 0x200F | 0x061C)
}

/// (what the sender sends, what the receiver must see instead).
const HOSTILE: [(&str, &str); 5] = [
    (
        "\u{1b}[31mRED\u{1b}[0m \u{1b}]0;pwned-title\u{7} \u{1b}[2J",
        "\\x1b[31mRED\\x1b[0m \\x1b]0;pwned-title\\x07 \\x1b[2J",
    ),
    (
        "bell\u{7} bs\u{8}\u{8}X cr\rY del\u{7f} nl\nZ tab\tT",
        "bell\\x07 bs\\x08\\x08X cr\\x0dY del\\x7f nl\\x0aZ tab\\x09T",
    ),
    ("c1 \u{9b}2J \u{85} \u{90}q\u{9c}", "c1 \\x9b2J \\x85 \\x90q\\x9c"),
    (
        "bidi \u{202e}exe.txt\u{202c} \u{2066}iso\u{2069} \u{200f}\u{202a}\u{202b}\u{202d}\u{2067}\u{2068}",
        "bidi \\u{202e}exe.txt\\u{202c} \\u{2066}iso\\u{2069} \\u{200f}\\u{202a}\\u{202b}\\u{202d}\\u{2067}\\u{2068}",
    ),
    ("plain 群消息 ü 😀", "plain 群消息 ü 😀"),
];

const HOSTILE_NAME: &str = "ev\u{1b}]0;owned\u{7}il\u{202e}";
const SHOWN_NAME: &str = "ev\\x1b]0;owned\\x07il\\u{202e}";

#[test]
fn control_characters_from_the_network_are_shown_as_visible_escapes() {
    let db = TestDb::new();
    let server = Server::start(&db);
    let (sender, _) = offline_user(server.addr, "hs", PW);
    // The server refuses such a name now; an older one stored it.
    db.exec("UPDATE user SET name = ? WHERE id = ?", (HOSTILE_NAME, sender));

    let mut r = ClientProc::connect("receiver", server.addr);
    let receiver = r.register(&unique_name("hr"), "pr");
    r.login(receiver, "pr");
    r.expect_exact("show command list >>>");
    r.type_line(&format!("addfriend:{sender}"));
    r.expect_exact(&format!("added friend [{sender}]{SHOWN_NAME} (offline)"));

    let mut s = Client::connect(server.addr);
    s.login_ok(sender, PW);
    r.expect_exact(&format!("[{sender}]{SHOWN_NAME} is online"));
    let said = |shown: &str| format!("[{sender}]{SHOWN_NAME} said: {shown}");

    // Live one-to-one messages.
    for (sent, shown) in HOSTILE {
        s.send_chat(receiver, sent);
        let line = said(shown);
        r.expect_where(&format!("ending in {line:?}"), |l| is_chat_line(l, "", &line));
    }
    r.type_line("friends");
    r.expect_exact(&format!("{sender} {SHOWN_NAME} online"));

    // A group with a hostile name and description (as an older server let
    // them be), and messages in it.
    let group = s.new_group(&unique_name("g"), "d");
    r.type_line(&format!("addgroup:{group}"));
    r.expect_exact(&format!("join group {group} success"));
    db.exec(
        "UPDATE allgroup SET groupname = ?, groupdesc = ? WHERE id = ?",
        ("grp\u{1b}[2J\u{9b}", "desc\u{7}\u{202e}", group),
    );
    let (sent, shown) = HOSTILE[0];
    s.send_group_chat(group, sent);
    let line = said(shown);
    r.expect_where(&format!("ending in {line:?}"), |l| is_chat_line(l, &format!("群消息[{group}]:"), &line));

    // Stored messages, shown at the next login, with the group's names.
    r.type_line("loginout");
    r.expect_menu();
    wait_user_state(&db, receiver, "offline");
    for (sent, _) in HOSTILE {
        s.send_chat(receiver, sent);
    }
    wait_offline_count(&db, receiver, HOSTILE.len() as i64);
    r.login(receiver, "pr");
    r.expect_exact(&format!("{sender} {SHOWN_NAME} online"));
    r.expect_exact(&format!("[{group}] grp\\x1b[2J\\x9b desc\\x07\\u{{202e}}"));
    r.expect_exact(&format!("    {sender} {SHOWN_NAME} online creator"));
    r.expect_exact(BOX_END);
    for (_, shown) in HOSTILE {
        let line = said(shown);
        r.expect_where(&format!("ending in {line:?}"), |l| is_chat_line(l, "", &line));
    }
    r.type_line("groups");
    r.expect_exact(&format!("[{group}] grp\\x1b[2J\\x9b desc\\x07\\u{{202e}}"));

    // Not one character that acts on a terminal in all that was printed.
    r.close_stdin();
    r.expect_exact("end of input, bye");
    assert_eq!(r.wait_exit().code(), Some(0));
    let raw = r.raw_output();
    let bad: Vec<String> = raw.chars().filter(|&c| acts_on_a_terminal(c)).map(|c| format!("{c:?}")).collect();
    assert!(bad.is_empty(), "control characters reached the output: {bad:?}\n{raw}");
    assert!(raw.contains("RED") && raw.contains("pwned-title") && raw.contains("exe.txt"), "{raw}");
}
