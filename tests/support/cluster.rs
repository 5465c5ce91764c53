//! Helpers for the cluster tests (tests/cluster.rs): a throwaway
//! `redis-server` child, a foreground `nginx` child with a `stream` load
//! balancer in front of two ChatServers, free ports, temp directories, and
//! what the cluster tests check about the servers' tables. The frames they
//! send and check are the shared ones of tests/common.
//!
//! Included from tests/cluster.rs with
//! `#[path = "support/cluster.rs"] mod cluster_support;`; it uses the
//! shared harness through `crate::common`.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::common::{Client, Server, TestDb, assert_one_chat, poll_until_deadline, terminate, wait_process_ready};

/// How long a helper process (redis-server, nginx) may take to accept
/// connections after it was started.
pub const PROCESS_START_TIMEOUT: Duration = Duration::from_secs(30);

/// A TCP port that was free a moment ago: bound on 127.0.0.1:0, then
/// released.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 to find a free port");
    listener.local_addr().expect("local_addr of a bound listener").port()
}

/// A directory of its own under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let path = std::env::temp_dir().join(format!(
            "{prefix}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot create temp dir {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The text of `path`, or a note saying it could not be read.
fn read_text(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| format!("<cannot read {}: {e}>", path.display()))
}

/// An executable named `name` on PATH or in one of `extra` directories.
fn find_binary(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path_dirs = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect::<Vec<_>>()).unwrap_or_default();
    path_dirs.into_iter().chain(extra.iter().map(PathBuf::from)).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Kills `child` (SIGKILL) unless it already exited, and reaps it.
fn kill_and_reap(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

// ------------------------------------------------------------------ redis

/// A `redis-server` child process of this test on 127.0.0.1:`port`, with
/// no persistence; killed (SIGKILL) on drop. Never the shared Redis.
pub struct RedisProc {
    pub port: u16,
    child: Child,
    dir: TempDir,
}

impl RedisProc {
    /// Starts one on a free port.
    pub fn start_on_free_port() -> RedisProc {
        RedisProc::start(free_port())
    }

    /// Starts `redis-server` on `port` and waits until it answers PING.
    pub fn start(port: u16) -> RedisProc {
        let bin = find_binary("redis-server", &["/usr/bin", "/usr/sbin", "/usr/local/bin"]).unwrap_or_else(|| {
            panic!("redis-server is not installed (not on PATH nor in /usr/bin): run `./autobuild.sh test`, which installs it")
        });
        let dir = TempDir::new("chat-redis");
        let log = File::create(dir.join("redis.out")).expect("create redis.out");
        let child = Command::new(&bin)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(&dir.path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut redis = RedisProc { port, child, dir };
        redis.wait_ready();
        redis
    }

    /// `redis://127.0.0.1:<port>/`, for `CHAT_REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// What it printed.
    pub fn log(&self) -> String {
        read_text(&self.dir.join("redis.out"))
    }

    fn wait_ready(&mut self) {
        let (port, dir) = (self.port, &self.dir);
        wait_process_ready(
            &mut self.child,
            &format!("redis-server on port {port} to answer PING"),
            PROCESS_START_TIMEOUT,
            || redis_ping(port),
            || format!("its log:\n{}", read_text(&dir.join("redis.out"))),
        );
    }

    /// Kills it with SIGKILL (a crash, as far as its clients can tell) and
    /// waits until it is gone.
    pub fn kill(mut self) -> u16 {
        kill_and_reap(&mut self.child);
        self.port
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
    }
}

/// Whether a Redis on 127.0.0.1:`port` answers `PING` with `+PONG`.
fn redis_ping(port: u16) -> bool {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    let mut got = Vec::new();
    while got.len() < 7 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    got.starts_with(b"+PONG")
}

// ------------------------------------------------------------------ nginx

/// The nginx binary: /usr/sbin/nginx or on PATH. Panics (never skips) when
/// it is missing, saying how to get it.
pub fn nginx_binary() -> PathBuf {
    find_binary("nginx", &["/usr/sbin", "/usr/local/sbin", "/usr/local/nginx/sbin"]).unwrap_or_else(|| {
        panic!(
            "nginx is not installed (neither /usr/sbin/nginx nor `nginx` on PATH), so the load-balancer \
             test cannot run. Run `./autobuild.sh test`, which installs nginx (with its stream module) \
             before running the tests."
        )
    })
}

/// The `load_module` line nginx needs for `stream`, if any: empty when
/// stream is built in; the line when it is a dynamic module whose .so is
/// found. Panics when nginx has no usable stream module.
fn stream_module_line(nginx: &Path) -> String {
    let out =
        Command::new(nginx).arg("-V").output().unwrap_or_else(|e| panic!("cannot run `{} -V`: {e}", nginx.display()));
    // nginx -V prints to stderr.
    let info = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    let flags: Vec<&str> = info.split_whitespace().collect();
    if flags.contains(&"--with-stream") {
        return String::new();
    }
    let mut dirs: Vec<PathBuf> =
        flags.iter().filter_map(|f| f.strip_prefix("--modules-path=")).map(PathBuf::from).collect();
    dirs.extend(["/usr/lib/nginx/modules", "/usr/share/nginx/modules", "/usr/lib64/nginx/modules"].map(PathBuf::from));
    if let Some(so) = dirs.iter().map(|d| d.join("ngx_stream_module.so")).find(|p| p.is_file()) {
        return format!("load_module {};\n", so.display());
    }
    panic!(
        "nginx at {} has no stream module (not built in, and ngx_stream_module.so is in none of {dirs:?}); \
         run `./autobuild.sh test`, which installs nginx with its stream module (Debian: libnginx-mod-stream). \
         nginx -V says:\n{info}",
        nginx.display()
    )
}

/// A foreground nginx child process balancing TCP (`stream`) over the given
/// upstreams, as in the original's configuration; killed on drop.
pub struct Nginx {
    /// Where clients connect.
    pub addr: SocketAddr,
    child: Child,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx on a free port in front of `upstreams` and waits until it
    /// accepts connections.
    pub fn start(upstreams: &[SocketAddr]) -> Nginx {
        let bin = nginx_binary();
        let load = stream_module_line(&bin);
        let dir = TempDir::new("chat-nginx");
        let port = free_port();
        let servers: String =
            upstreams.iter().map(|a| format!("        server {a} max_fails=3 fail_timeout=10s;\n")).collect();
        let conf = format!(
            "{load}worker_processes 1;\n\
             events {{\n    worker_connections 1024;\n}}\n\
             stream {{\n    upstream chat {{\n{servers}    }}\n    \
             server {{\n        listen 127.0.0.1:{port};\n        proxy_pass chat;\n        \
             tcp_nodelay on;\n        proxy_timeout 24h;\n    }}\n}}\n"
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, &conf).expect("write nginx.conf");
        let globals = format!(
            "daemon off; master_process on; pid {}; error_log {} info;",
            dir.join("nginx.pid").display(),
            dir.join("error.log").display()
        );
        let out = File::create(dir.join("nginx.out")).expect("create nginx.out");
        let child = Command::new(&bin)
            .arg("-p")
            .arg(&dir.path)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg(&globals)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().expect("clone log handle")))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let mut nginx = Nginx { addr: SocketAddr::from(([127, 0, 0, 1], port)), child, dir };
        nginx.wait_ready(&conf);
        nginx
    }

    /// What nginx printed and logged.
    pub fn logs(&self) -> String {
        nginx_logs(&self.dir)
    }

    fn wait_ready(&mut self, conf: &str) {
        let (addr, dir) = (self.addr, &self.dir);
        wait_process_ready(
            &mut self.child,
            &format!("nginx to listen on {addr}"),
            PROCESS_START_TIMEOUT,
            || TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok(),
            || format!("config:\n{conf}\n{}", nginx_logs(dir)),
        );
    }
}

/// What the nginx running in `dir` printed and logged.
fn nginx_logs(dir: &TempDir) -> String {
    format!(
        "--- nginx stdout/stderr:\n{}--- error.log:\n{}",
        read_text(&dir.join("nginx.out")),
        read_text(&dir.join("error.log"))
    )
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGKILL of the master leaves its workers behind; SIGTERM (fast
        // shutdown) takes them down too. Falls back to SIGKILL if it hangs.
        terminate(&mut self.child, Duration::from_secs(10));
    }
}

// ------------------------------------------------------------------ cluster

/// Two ChatServers on one database, with `env` (e.g. `CHAT_REDIS_URL`).
pub fn two_servers(db: &TestDb, env: &[(&str, &str)]) -> (Server, Server) {
    (Server::start_with(db, &[], env), Server::start_with(db, &[], env))
}

/// The prefix of `server`'s id in tables `server` and `online`: its
/// listening address then `/`.
pub fn server_id_prefix(server: &Server) -> String {
    format!("{}/", server.addr)
}

/// The server holding `user` in table `online`, if any (a row of a user
/// who left says '').
pub fn online_server_of(db: &TestDb, user: i64) -> Option<String> {
    db.query_string("SELECT server FROM online WHERE userid = ? AND server <> ''", (user,))
}

/// Asserts table `online` says `user` is on `server`.
pub fn assert_online_on(db: &TestDb, user: i64, server: &Server) {
    let held = online_server_of(db, user);
    assert!(
        held.as_deref().is_some_and(|s| s.starts_with(&server_id_prefix(server))),
        "table online: user {user} should be on the server at {}, but holds {held:?}",
        server.addr
    );
}

// ------------------------------------------------------------------ frames

/// ADD_GROUP that must succeed.
pub fn join_group(c: &mut Client, groupid: i64) {
    let ack = c.add_group(groupid);
    assert_eq!(ack["errno"].as_i64(), Some(0), "ADD_GROUP {groupid} failed: {ack}");
}

/// Waits until chat crosses between A and B live again, both ways (after a
/// Redis outage), probing every second until `deadline`.
pub fn wait_live_both_ways(a: (&mut Client, i64, &str), b: (&mut Client, i64, &str), deadline: std::time::Instant) {
    let ((a, ida, namea), (b, idb, nameb)) = (a, b);
    wait_live((&mut *a, ida, namea), (&mut *b, idb), "A -> B", "probe", deadline);
    wait_live((b, idb, nameb), (a, ida), "B -> A", "reply", deadline);
}

/// Probes `from` -> `to` every second until a probe arrives live.
fn wait_live(
    from: (&mut Client, i64, &str),
    to: (&mut Client, i64),
    label: &str,
    prefix: &str,
    deadline: std::time::Instant,
) {
    let ((from, idf, namef), (to, idt)) = (from, to);
    let mut k = 0;
    poll_until_deadline(&format!("{label} to be delivered live again"), deadline, || {
        k += 1;
        from.send_chat(idt, &format!("{prefix} {k}"));
        let v = to.try_recv(Duration::from_secs(1))?;
        let text = v["msg"].as_str().unwrap_or_default();
        assert!(v["msgid"] == 6 && text.starts_with(prefix), "{label}: got {v}");
        assert_one_chat(&v, idf, namef, idt, text);
        Some(())
    });
}
