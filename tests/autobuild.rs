//! SPEC §1: `./autobuild.sh up` takes its ports and thread counts from
//! environment variables, `status` shows each server and nginx it started
//! (pid, address, users online) and what is not running, logs are appended
//! across restarts, and `down` stops the servers before nginx.
//!
//! Everything runs on ports and in a run directory of this test's own, with
//! the binaries cargo built (CHAT_BIN_DIR), so nothing of anyone else's is
//! touched: `down` stops only what this `up` wrote pid files for.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Client, TestDb, poll_until, server_bin, unique_name};

/// Three distinct TCP ports that were free a moment ago, below the
/// ephemeral range (so no outgoing connection takes one meanwhile).
fn free_ports() -> [u16; 3] {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut candidate = 20_000 + (std::process::id().wrapping_mul(7919) ^ nanos) % 12_000;
    let mut found = Vec::new();
    for _ in 0..12_000 {
        let port = u16::try_from(candidate).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            found.push(port);
            if found.len() == 3 {
                return [found[0], found[1], found[2]];
            }
        }
        candidate = 20_000 + (candidate - 20_000 + 1) % 12_000;
    }
    panic!("no three free TCP ports between 20000 and 32000 on 127.0.0.1");
}

/// One `up` of this test's own; `down` when dropped, even on a panic.
struct Up {
    dir: PathBuf,
    env: Vec<(&'static str, String)>,
}

impl Up {
    fn new(db: &TestDb, ports: [u16; 3]) -> Up {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("chat-autobuild-{}-{nanos}", std::process::id()));
        let bin_dir = Path::new(server_bin()).parent().expect("binary dir").to_path_buf();
        let env = vec![
            ("CHAT_MYSQL_URL", db.url.clone()),
            ("CHAT_RUN_DIR", dir.display().to_string()),
            ("CHAT_BIN_DIR", bin_dir.display().to_string()),
            ("CHAT_IP", "127.0.0.1".to_owned()),
            ("CHAT_PORTS", format!("{} {}", ports[0], ports[1])),
            ("CHAT_NGINX_PORT", ports[2].to_string()),
            ("CHAT_THREADS", "1".to_owned()),
        ];
        Up { dir, env }
    }

    fn run(&self, command: &str) -> Output {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/autobuild.sh");
        Command::new("bash")
            .arg(script)
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run autobuild.sh {command}: {e}"))
    }

    fn ok(&self, command: &str) -> Output {
        let out = self.run(command);
        assert!(out.status.success(), "autobuild.sh {command} failed ({}):\n{}", out.status, text(&out));
        out
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.run("down");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// What `status` says of the line for `addr`: (running, pid, users online).
fn status_of(status: &str, addr: &str) -> (bool, Option<u32>, Option<String>) {
    let line = status.lines().find(|l| l.split_whitespace().nth(1) == Some(addr));
    let line = line.unwrap_or_else(|| panic!("status has no line for {addr}:\n{status}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |w: &str| words.iter().position(|x| *x == w).and_then(|i| words.get(i + 1)).map(|s| s.to_string());
    let users = words.windows(3).find(|w| w[0] == "users" && w[1] == "online").map(|w| w[2].to_owned());
    (words.get(2) == Some(&"running"), after("pid").and_then(|p| p.parse().ok()), users)
}

/// The name of process `pid` (`/proc/PID/comm`), if it runs.
fn comm(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).ok().map(|s| s.trim().to_owned())
}

#[test]
fn status_shows_what_up_started_and_down_stops_servers_before_nginx() {
    let db = TestDb::new();
    let ports = free_ports();
    let up = Up::new(&db, ports);
    let [s1, s2, lb] = ports.map(|p| format!("127.0.0.1:{p}"));
    up.ok("up");

    // A user logged in through nginx counts on the server holding them.
    let nginx: SocketAddr = lb.parse().expect("address");
    let mut c = Client::connect(nginx);
    let name = unique_name("st");
    let id = c.register(&name, "pw-Status-1");
    c.login_ok(id, "pw-Status-1");
    let out = up.ok("status");
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    let (run1, pid1, users1) = status_of(&status, &s1);
    let (run2, pid2, users2) = status_of(&status, &s2);
    assert!(run1 && run2, "{status}");
    let (pid1, pid2) = (pid1.expect("pid of server 1"), pid2.expect("pid of server 2"));
    for pid in [pid1, pid2] {
        assert_eq!(comm(pid).as_deref(), Some("ChatServer"), "pid {pid} in:\n{status}");
        let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        assert!(cmdline.contains("--threads\u{0}1\u{0}"), "CHAT_THREADS not passed on: {cmdline:?}");
    }
    let mut online: Vec<String> = vec![users1.unwrap_or_default(), users2.unwrap_or_default()];
    online.sort();
    assert_eq!(online, ["0", "1"], "users online per server:\n{status}");
    let (run_lb, pid_lb, _) = status_of(&status, &lb);
    assert!(run_lb, "{status}");
    assert_eq!(pid_lb.and_then(comm).as_deref(), Some("nginx"), "{status}");

    // A server that died is reported as not running, and status says so
    // in its exit code.
    // SAFETY: kill(2) of the server this test had `up` start (its pid from
    // `status`, checked above to be a ChatServer).
    let rc = unsafe { libc::kill(pid2 as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill {pid2}");
    poll_until("server 2 to be gone", Duration::from_secs(20), || {
        comm(pid2).is_none_or(|c| c != "ChatServer").then_some(())
    });
    let out = up.run("status");
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{status}");
    assert!(!status_of(&status, &s2).0 && status_of(&status, &s1).0, "{status}");
    assert!(status.contains("NOT RUNNING"), "{status}");

    // `up` again starts what is missing; the log of the earlier run stays.
    up.ok("up");
    let log = std::fs::read_to_string(up.dir.join(format!("server-{}.log", ports[1]))).expect("server 2's log");
    assert_eq!(log.matches("ChatServer listening on").count(), 2, "log not appended:\n{log}");
    let status = String::from_utf8_lossy(&up.ok("status").stdout).to_string();
    assert_eq!(status_of(&status, &s1).1, Some(pid1), "server 1 was restarted:\n{status}");

    // `down`: both servers before nginx; afterwards nothing runs.
    let out = up.ok("down");
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    let at = |what: &str| said.find(what).unwrap_or_else(|| panic!("down did not say {what:?}:\n{said}"));
    let nginx_at = at("stopping nginx");
    assert!(at(&format!("stopping server-{}", ports[0])) < nginx_at, "{said}");
    assert!(at(&format!("stopping server-{}", ports[1])) < nginx_at, "{said}");
    let out = up.run("status");
    let status = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(out.status.code(), Some(3), "{status}");
    for addr in [&s1, &s2, &lb] {
        assert!(!status_of(&status, addr).0, "{addr} still running:\n{status}");
    }
    assert!(comm(pid1).is_none_or(|c| c != "ChatServer"), "server 1 still runs after down");
    c.expect_closed();
}
