//! `bin/ChatBench`: a short run of each mode against a real ChatServer and
//! the relay it spawns, asserting that it completes and reports sane,
//! non-zero figures. Never a speed: the machine running the tests may be
//! slow or busy; BENCHMARKS.md is where speeds are written down.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, TestDb};
use serde_json::Value;

/// Longest a smoke run may take (setup hashes passwords: seconds, not more).
const RUN_TIMEOUT: Duration = Duration::from_secs(180);

fn bench_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ChatBench")
}

/// Runs `ChatBench <args> --json`, waits (bounded), and returns its exit
/// status success, its stdout and its stderr.
fn run_bench(args: &[&str]) -> (bool, String, String) {
    let mut child = Command::new(bench_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bench_bin()));
    let mut stdout = child.stdout.take().expect("piped");
    let mut stderr = child.stderr.take().expect("piped");
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + RUN_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait on ChatBench") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap_or_default(), err.join().unwrap_or_default());
    let status = status.unwrap_or_else(|| panic!("ChatBench {args:?} ran over {RUN_TIMEOUT:?}; stderr:\n{err}"));
    (status.success(), out, err)
}

/// Held by each measured bench run; see [`summary_of`].
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs ChatBench with `args` (which include `--json`), asserts it
/// succeeded, and returns its JSON summary.
fn summary_of(args: &[&str]) -> Value {
    // One run at a time: each one keeps both cores busy, and a server's
    // password checks, which by design yield to chat, would then make no
    // progress beside another test's run.
    let _alone = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (ok, out, err) = run_bench(args);
    assert!(ok, "ChatBench {args:?} failed; stdout:\n{out}\nstderr:\n{err}");
    let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap_or_else(|| panic!("no JSON line in:\n{out}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON line ({e}): {line}"))
}

/// The run's notes.
fn notes(summary: &Value) -> Vec<String> {
    let notes = summary["notes"].as_array().unwrap_or_else(|| panic!("no notes in {summary}"));
    notes.iter().map(|n| n.as_str().unwrap_or_default().to_string()).collect()
}

/// Runs one mode against a fresh server (flood control raised, as for
/// any throughput run) and the spawned relay; returns the JSON summary.
fn smoke_with_notes(mode_args: &[&str]) -> Value {
    let db = TestDb::new();
    let server = Server::start_with(&db, &["--rate", "1000000"], &[]);
    let addr = server.addr.to_string();
    let pid = server.pid().to_string();
    let mut args = mode_args.to_vec();
    args.extend(["--addr", &addr, "--server-pid", &pid, "--warmup", "0.2", "--json"]);
    if !mode_args.contains(&"--secs") {
        args.extend(["--secs", "1"]);
    }
    summary_of(&args)
}

/// [`smoke_with_notes`] of a run that must report no problem.
fn smoke(mode_args: &[&str]) -> Value {
    let summary = smoke_with_notes(mode_args);
    assert!(notes(&summary).is_empty(), "the run reported problems: {summary}");
    summary
}

/// `summary[target][key]` as a number.
fn figure(summary: &Value, target: &str, key: &str) -> f64 {
    summary[target][key].as_f64().unwrap_or_else(|| panic!("no {target}.{key} in {summary}"))
}

/// Asserts `key` is above zero for both the relay and the server.
fn positive(summary: &Value, key: &str) {
    for target in ["relay", "server"] {
        let v = figure(summary, target, key);
        assert!(v > 0.0, "{target}.{key} = {v}, expected > 0: {summary}");
    }
}

/// Asserts the latency figures with `prefix` are positive and ordered.
fn latencies(summary: &Value, prefix: &str) {
    for target in ["relay", "server"] {
        let get = |name: &str| figure(summary, target, &format!("{prefix}{name}_us"));
        let (p50, p99, max) = (get("p50"), get("p99"), get("max"));
        assert!(p50 > 0.0 && p50 <= p99 && p99 <= max, "{target}: p50 {p50}, p99 {p99}, max {max}: {summary}");
    }
}

#[test]
fn pingpong_reports_throughput_latency_and_cost() {
    let s = smoke(&["pingpong", "--pairs", "4"]);
    positive(&s, "msgs_per_s");
    latencies(&s, "");
    positive(&s, "cpu_us_per_msg");
    assert!(s["ratio"]["msgs_per_s"].as_f64().is_some_and(|r| r > 0.0), "no ratio: {s}");
}

#[test]
fn flood_loses_reorders_and_duplicates_nothing() {
    let s = smoke(&["flood", "--pairs", "2", "--inflight", "8"]);
    positive(&s, "delivered_per_s");
    latencies(&s, "");
    for target in ["relay", "server"] {
        assert!(figure(&s, target, "sent") > 0.0, "{s}");
        for key in ["lost", "reordered", "duplicated", "refused"] {
            assert_eq!(figure(&s, target, key), 0.0, "{target}.{key}: {s}");
        }
    }
}

#[test]
fn fanout_reaches_every_member() {
    let s = smoke(&["fanout", "--group-size", "4", "--senders", "2"]);
    positive(&s, "deliveries_per_s");
    positive(&s, "msgs_per_s");
    latencies(&s, "last_");
    for target in ["relay", "server"] {
        // Each message reaches the 3 other members.
        let per_msg = figure(&s, target, "deliveries_per_s") / figure(&s, target, "msgs_per_s");
        assert!((2.5..=3.5).contains(&per_msg), "{target}: {per_msg} deliveries per message: {s}");
    }
}

#[test]
fn login_storm_reports_logins_and_chat_latency_with_and_without() {
    // Password checks run below everything else: on a busy machine a second
    // may pass without one, so the storm gets longer.
    let s = smoke(&["login", "--users", "4", "--conc", "2", "--during-pingpong", "2", "--secs", "4"]);
    positive(&s, "logins_per_s");
    latencies(&s, "login_");
    for key in ["chat_msgs_per_s_alone", "chat_msgs_per_s_during", "chat_p99_us_alone", "chat_p99_us_during"] {
        positive(&s, key);
    }
}

#[test]
fn login_storm_measures_a_group_alone_and_during() {
    // Token logins: group chat keeps the cores busy, and password checks,
    // which by design yield to it, could make no progress in a short run
    // on a machine loaded by the other tests.
    let s =
        smoke_with_notes(&["login", "--users", "4", "--conc", "2", "--during-fanout", "3", "--secs", "4", "--token"]);
    // As in the token test: a quick next login may find the user not yet
    // taken offline, and moves on to the next user.
    let problems: Vec<String> = notes(&s).into_iter().filter(|n| !n.contains("already logged in")).collect();
    assert!(problems.is_empty(), "the run reported problems: {s}");
    positive(&s, "token_logins_per_s");
    for key in [
        "fanout_alone_deliveries_per_s",
        "fanout_during_deliveries_per_s",
        "fanout_during_over_alone",
        "fanout_alone_p99_us",
        "fanout_during_p99_us",
        "fanout_p99_during_over_alone",
    ] {
        positive(&s, key);
    }
    for target in ["relay", "server"] {
        assert_eq!(figure(&s, target, "logins_refused_busy"), 0.0, "{target}: {s}");
    }
}

#[test]
fn token_logins_are_counted_under_their_own_name() {
    let s = smoke_with_notes(&["login", "--users", "8", "--conc", "2", "--token"]);
    // A user's next login may reach the server before its closed
    // connection has been taken offline: refused as in use, and retried
    // with the next user. Nothing else may go wrong.
    let problems: Vec<String> = notes(&s).into_iter().filter(|n| !n.contains("already logged in")).collect();
    assert!(problems.is_empty(), "the run reported problems: {s}");
    positive(&s, "token_logins_per_s");
    latencies(&s, "token_login_");
    assert!(s["server"]["logins_per_s"].is_null(), "password row in a token run: {s}");
}

#[test]
fn failover_brings_every_user_back_on_the_other_server() {
    let db = TestDb::new();
    let mut doomed = Server::start_with(&db, &["--rate", "1000000"], &[]);
    let mut other = Server::start_with(&db, &["--rate", "1000000"], &[]);
    let (addr, addr2, pid) = (doomed.addr.to_string(), other.addr.to_string(), doomed.pid().to_string());
    let args = ["failover", "--addr", &addr, "--addr2", &addr2, "--server-pid", &pid, "--users", "6", "--conc", "3"];
    let s = summary_of(&[&args[..], &["--json"]].concat());
    assert!(notes(&s).is_empty(), "the run reported problems: {s}");
    assert!(doomed.wait_exit(Duration::from_secs(10)).is_some(), "the server at --addr was not killed");
    assert!(other.is_running(), "the server at --addr2 died too");
    assert_eq!(figure(&s, "server", "failover_users"), 6.0, "{s}");
    assert_eq!(figure(&s, "server", "failover_back"), 6.0, "{s}");
    assert_eq!(figure(&s, "server", "failover_failed"), 0.0, "{s}");
    let get = |key: &str| figure(&s, "server", key);
    let (p50, p99, all) = (get("failover_p50_ms"), get("failover_p99_ms"), get("failover_all_back_ms"));
    assert!(p50 > 0.0 && p50 <= p99 && p99 <= all, "p50 {p50}, p99 {p99}, all back {all}: {s}");
}

#[test]
fn idle_connections_stay_open_and_memory_is_read() {
    let s = smoke(&["idle", "--conns", "6"]);
    for target in ["relay", "server"] {
        assert_eq!(figure(&s, target, "conns"), 6.0, "{s}");
        assert!(figure(&s, target, "rss_empty_kib") > 0.0, "{s}");
        assert!(figure(&s, target, "rss_loaded_kib") > 0.0, "{s}");
        assert!(figure(&s, target, "rss_per_conn_bytes") >= 0.0, "{s}");
    }
}

#[test]
fn a_bad_command_line_is_one_line_and_status_2() {
    let (ok, out, err) = run_bench(&["pingpong", "--pairs", "0"]);
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("--pairs") && err.lines().count() == 1, "{err}");
    let (ok, _, err) = run_bench(&["warp"]);
    assert!(!ok && err.contains("unknown mode"), "{err}");
    // failover kills a server: without the one to move to, it must not start.
    let (ok, out, err) = run_bench(&["failover", "--addr", "127.0.0.1:1"]);
    assert!(!ok && out.is_empty() && err.contains("--addr2") && err.lines().count() == 1, "{err}");
    let (ok, _, err) = run_bench(&["login", "--during-pingpong", "2", "--during-fanout", "3"]);
    assert!(!ok && err.contains("one chat at a time"), "{err}");
}
