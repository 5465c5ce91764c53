//! SPEC §1 for operators: every log line starts with an RFC 3339 UTC
//! timestamp and a level; the stats line; floods cost a line, not a line
//! each; `--help`; MySQL errors that say what is wrong.

mod common;
#[path = "support/mariadb.rs"]
mod mariadb_support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, Finished, Server, TestDb, base_mysql_url, log_line, poll_until, run_server_to_exit, server_bin};
use mariadb_support::ThrowawayMariaDb;
use serde_json::json;

const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Seconds since 1970 of `2026-11-26T10:00:00.123Z` (whole seconds), by
/// the civil-to-days algorithm (the inverse of the one the server uses).
fn epoch_of(stamp: &str) -> i64 {
    let n = |a: usize, b: usize| stamp[a..b].parse::<i64>().expect("digits");
    let (y, m, d) = (n(0, 4), n(5, 7), n(8, 10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    days * 86_400 + n(11, 13) * 3600 + n(14, 16) * 60 + n(17, 19)
}

fn now_epoch() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// The value of `key=` in a stats line.
fn figure(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    line[at..].split(' ').next()?.parse().ok()
}

#[test]
fn every_line_has_a_utc_timestamp_and_a_level_and_floods_cost_one_line() {
    assert_eq!(epoch_of("1970-01-01T00:00:00.000Z"), 0);
    assert_eq!(epoch_of("2000-03-01T00:00:01.000Z"), 951_868_801);
    let db = TestDb::new();
    let started = now_epoch();
    let args = ["--max-frame", "1024", "--max-conns", "3"];
    let mut server = Server::start_with(&db, &args, &[("CHAT_STATS_INTERVAL", "1")]);
    let mut a = Client::connect(server.addr);
    let id = a.register(&common::unique_name("ops"), "pw-Ops-1");
    a.login_ok(id, "pw-Ops-1");

    // A flood of clients cut off for size: counted, and logged once.
    let flood = 20;
    for _ in 0..flood {
        let mut c = Client::connect(server.addr);
        c.send_raw(&[b'x'; 2048]);
        c.recv_error(103);
        c.expect_closed();
    }
    // Failed logins for one id until it is throttled.
    let mut b = Client::connect(server.addr);
    for _ in 0..3 {
        assert_eq!(b.login(id, "wrong")["errno"], 1);
    }
    let throttled = server.wait_output("failed logins in a row", Duration::from_secs(20));
    assert!(throttled, "no line for the throttled id:\n{}", server.output());

    // With a, b and c open, --max-conns 3 refuses the next (c is retried
    // until the cut-off clients' slots are free).
    let _c = poll_until("a third connection to be served", Duration::from_secs(20), || {
        let mut c = Client::connect(server.addr);
        c.try_send(&json!({"msgid": 16})).ok()?;
        c.try_recv(Duration::from_secs(2)).filter(|v| v["msgid"] == 17).map(|_| c)
    });
    let mut refused = Client::connect(server.addr);
    refused.expect_closed();
    let logged = server.wait_output("connection refused: --max-conns 3", Duration::from_secs(20));
    assert!(logged, "no line for the refused connection:\n{}", server.output());

    // Stats lines, once a second here: the user, the cut-off clients.
    let cut_off = poll_until("stats lines to count the cut-off clients", Duration::from_secs(30), || {
        let out = server.output();
        let stats: Vec<&str> = out.lines().filter(|l| l.contains(" INFO stats: ")).collect();
        let total: f64 = stats.iter().filter_map(|l| figure(l, "cut_off")).sum();
        let refused: f64 = stats.iter().filter_map(|l| figure(l, "refused")).sum();
        let online = stats.last().is_some_and(|l| figure(l, "users_online") == Some(1.0));
        (total >= flood as f64 && refused >= 1.0 && online).then_some(total)
    });
    assert!(cut_off >= flood as f64);
    a.send(&json!({"msgid": 16}));
    a.recv_msgid(17);

    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(EXIT_TIMEOUT).is_some_and(|s| s.success()), "{}", server.output());
    let out = server.output();
    let ended = now_epoch();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        let (stamp, _, _) = log_line(line).unwrap_or_else(|| panic!("not a log line: {line:?}\nin:\n{out}"));
        let at = epoch_of(stamp);
        assert!(at >= started - 2 && at <= ended + 2, "{stamp} is not the UTC time of the run: {line}");
    }
    let cut_lines: Vec<&str> = out.lines().filter(|l| l.contains("cut off a client not logged in")).collect();
    assert!(!cut_lines.is_empty(), "no cut-off line:\n{out}");
    assert!(cut_lines.len() <= 2, "{flood} clients cut off in a few seconds took {} lines:\n{out}", cut_lines.len());
    assert!(cut_lines.iter().all(|l| log_line(l).is_some_and(|(_, level, _)| level == "WARN")), "{out}");
    let stats = out.lines().find(|l| l.contains(" stats: ")).unwrap_or_default();
    for key in ["connections", "users_online", "msgs_in_per_s", "msgs_out_per_s", "stored", "errors"] {
        assert!(figure(stats, key).is_some(), "{key} missing from the stats line {stats:?}");
    }
    assert!(out.contains(" INFO ChatServer stopped; 1 users marked offline"), "{out}");
}

/// The rows of the tables in the README's section "Configuration" whose
/// first cell starts with `first`: (first cell, default cell), backticks
/// removed.
fn readme_rows(first: &str) -> Vec<(String, String)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).expect("README.md");
    readme
        .lines()
        .skip_while(|l| *l != "## Configuration")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with(&format!("| `{first}")))
        .map(|l| {
            let cells: Vec<String> = l.split('|').map(|c| c.trim().replace('`', "")).collect();
            (cells[1].clone(), cells[2].clone())
        })
        .collect()
}

#[test]
fn help_lists_every_flag_and_variable_with_its_default_and_exits_0() {
    for arg in ["--help", "-h"] {
        let mut child = Command::new(server_bin())
            .arg(arg)
            .env("CHAT_MYSQL_URL", "mysql://root@127.0.0.1:1/never_used")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ChatServer --help");
        let mut help = String::new();
        child.stdout.take().expect("piped").read_to_string(&mut help).expect("read --help");
        let status = child.wait().expect("wait");
        assert!(status.success(), "{arg}: {status}");
        let flags = readme_rows("--");
        let vars = readme_rows("CHAT_");
        assert!(flags.len() >= 5 && vars.len() >= 5, "README tables not found: {flags:?} {vars:?}");
        for (name, default) in flags.iter().chain(&vars) {
            let name = name.split(' ').next().unwrap_or_default();
            let line = help.lines().position(|l| l.trim_start().starts_with(name));
            let line = line.unwrap_or_else(|| panic!("{name} is not in {arg}:\n{help}"));
            // The default is on the flag's line or the ones it wraps onto.
            let entry: String = help.lines().skip(line).take(4).collect::<Vec<_>>().join(" ");
            let first_word = default.split(' ').next().unwrap_or_default();
            assert!(entry.contains(first_word), "{arg}: {name}'s default {default:?} is not in {entry:?}");
        }
    }
}

/// The one FATAL line of a start that must fail.
fn fatal_line(f: &Finished) -> String {
    let status = f.status.unwrap_or_else(|| panic!("still running: {f:?}"));
    assert!(!status.success() && status.code().is_some(), "{status}: {f:?}");
    assert!(!f.stderr.contains("panicked"), "{}", f.stderr);
    let fatal: Vec<&str> = f.stderr.lines().filter(|l| log_line(l).is_some_and(|(_, lv, _)| lv == "FATAL")).collect();
    assert_eq!(fatal.len(), 1, "want one FATAL line: {}", f.stderr);
    fatal[0].to_lowercase()
}

fn start_with_url(url: &str) -> String {
    fatal_line(&run_server_to_exit(&["127.0.0.1", "0"], &[("CHAT_MYSQL_URL", url)], EXIT_TIMEOUT))
}

#[test]
fn mysql_errors_say_what_is_wrong() {
    let line = start_with_url("mysql//root@127.0.0.1:3306/chat");
    assert!(line.contains("chat_mysql_url is malformed") && line.contains("mysql://user"), "{line}");

    let line = start_with_url("mysql://root@127.0.0.1:1/chat");
    assert!(line.contains("mysql unavailable: cannot reach 127.0.0.1:1") && line.contains("start mariadb"), "{line}");
    assert!(!line.contains("access denied"), "{line}");

    // A user MySQL does not know, on the shared server: nothing is created.
    let base = mysql::Opts::from_url(&base_mysql_url()).expect("CHAT_MYSQL_URL");
    let (host, port) = (base.get_ip_or_hostname(), base.get_tcp_port());
    for (user, password) in [("chat_t_nobody", ":wrong"), ("chat_t_nobody_at_all", "")] {
        let line = start_with_url(&format!("mysql://{user}{password}@{host}:{port}/chat"));
        assert!(line.contains(&format!("refused user '{user}'")) && line.contains("access denied"), "{line}");
        assert!(line.contains("check the user and password"), "{line}");
        assert!(!line.contains("start mariadb"), "access denied is no reason to start MariaDB: {line}");
    }
}

#[test]
fn a_missing_database_that_the_user_may_not_create_is_named_with_the_user() {
    // A MariaDB of this test's own, where it may create users.
    let mysqld = ThrowawayMariaDb::start();
    let mut root = mysql::Conn::new(mysql::Opts::from_url(&mysqld.url("")).expect("url")).expect("root login");
    mysql::prelude::Queryable::query_drop(&mut root, "CREATE USER 'limited'@'127.0.0.1' IDENTIFIED BY 'pw-limited'")
        .expect("CREATE USER");
    let url = format!("mysql://limited:pw-limited@127.0.0.1:{}/chat_absent", mysqld.port);
    let line = start_with_url(&url);
    assert!(line.contains("database `chat_absent` does not exist"), "{line}");
    assert!(line.contains("user 'limited' may not create it") && line.contains("create database"), "{line}");
}
