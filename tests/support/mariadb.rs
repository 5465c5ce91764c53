//! A throwaway MariaDB server for one test: its own data directory (under
//! the temp dir), its own port on 127.0.0.1, started and stopped by the test
//! itself, so a test can take MySQL away without touching the shared one.
//!
//! Use from a test file as
//! `#[path = "support/mariadb.rs"] mod mariadb_support;`, next to
//! `mod common;` (it uses the shared harness through `crate::common`).
//!
//! Dropping the value kills the server (if running) and deletes its data
//! directory, also when the test panics.
#![allow(dead_code)]

use std::fs;
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::common::{terminate, wait_process_ready};

/// How long an install or a start may take on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a SIGTERM shutdown may take before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// A MariaDB server process of our own.
pub struct ThrowawayMariaDb {
    /// Holds `data/`, the socket, the pid file and the error log.
    dir: PathBuf,
    /// The TCP port it listens on (kept across restarts).
    pub port: u16,
    /// The running server, if any.
    child: Option<Child>,
}

/// The first program of `names` found on PATH or in the usual sbin
/// directories.
fn find_program(names: &[&str]) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    dirs.extend(["/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin"].map(PathBuf::from));
    for name in names {
        for dir in &dirs {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("none of {names:?} found on PATH or in /usr/sbin: install mariadb-server to run this test");
}

/// A TCP port that was free a moment ago, below the kernel's ephemeral
/// range (32768 and up by default), so no outgoing connection takes it
/// while the server is down between a stop and a restart.
fn free_port() -> u16 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let mut candidate = 20_000 + (std::process::id().wrapping_mul(7919) ^ nanos) % 12_000;
    for _ in 0..12_000 {
        let port = u16::try_from(candidate).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
        candidate = 20_000 + (candidate - 20_000 + 1) % 12_000;
    }
    panic!("no free TCP port between 20000 and 32000 on 127.0.0.1");
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl ThrowawayMariaDb {
    /// Creates a data directory with `mariadb-install-db` (root may log in
    /// over TCP without a password) and starts a server on a free port.
    pub fn start() -> ThrowawayMariaDb {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_nanos();
        let dir = std::env::temp_dir().join(format!("chat-mariadb-{}-{nanos}", std::process::id()));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        // From here on, Drop cleans up.
        let mut db = ThrowawayMariaDb { dir, port: free_port(), child: None };
        db.install();
        db.restart();
        db
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn error_log(&self) -> PathBuf {
        self.dir.join("error.log")
    }

    /// The server's error log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.error_log()).unwrap_or_default()
    }

    /// Temporary files of this server alone (mariadbd's tmpdir follows
    /// TMPDIR), apart from other tests' servers.
    fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Bootstraps the data directory. Debian's mariadbd has been seen to
    /// crash in its bootstrap (signal 11 dropping an Aria temporary table,
    /// beside another test's bootstrap): that is no outcome of the test, so
    /// the bootstrap is tried again on a clean directory, up to 3 times.
    fn install(&self) {
        let mut failures = Vec::new();
        for _ in 0..3 {
            let _ = fs::remove_dir_all(self.data_dir());
            fs::create_dir_all(self.tmp_dir()).unwrap_or_else(|e| panic!("cannot create the tmpdir: {e}"));
            let mut cmd = Command::new(find_program(&["mariadb-install-db", "mysql_install_db"]));
            cmd.arg("--no-defaults")
                .arg(format!("--datadir={}", self.data_dir().display()))
                .arg("--auth-root-authentication-method=normal")
                .arg("--skip-test-db")
                .arg("--skip-name-resolve")
                .env("TMPDIR", self.tmp_dir());
            if is_root() {
                cmd.arg("--user=root");
            }
            let out =
                cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run mariadb-install-db: {e}"));
            if out.status.success() {
                return;
            }
            failures.push(format!(
                "({}):\n{}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        panic!("mariadb-install-db failed 3 times: {}", failures.join("\n---\n"));
    }

    /// `mysql://root@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("mysql://root@127.0.0.1:{}/{database}", self.port)
    }

    /// Whether the server process is running (started and not exited).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => child.try_wait().expect("try_wait on mariadbd").is_none(),
            None => false,
        }
    }

    /// Starts the server on the same data directory and port, and waits
    /// until it accepts a login.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "mariadbd is already running");
        let mut cmd = Command::new(find_program(&["mariadbd", "mysqld"]));
        cmd.env("TMPDIR", self.tmp_dir());
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", self.data_dir().display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .arg(format!("--pid-file={}", self.dir.join("mariadbd.pid").display()))
            .arg(format!("--log-error={}", self.error_log().display()))
            .arg("--bind-address=127.0.0.1")
            .arg("--skip-log-bin")
            .arg("--skip-name-resolve")
            .arg("--innodb-buffer-pool-size=32M")
            .arg("--max-connections=200");
        if is_root() {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run mariadbd: {e}"));
        let (port, log) = (self.port, self.error_log());
        let opts = mysql::Opts::from_url(&format!("mysql://root@127.0.0.1:{port}")).expect("url");
        let opts = mysql::OptsBuilder::from_opts(opts).tcp_connect_timeout(Some(Duration::from_secs(2)));
        wait_process_ready(
            self.child.insert(child),
            &format!("mariadbd on port {port} to accept logins"),
            START_TIMEOUT,
            || mysql::Conn::new(opts.clone()).is_ok(),
            || format!("its log:\n{}", fs::read_to_string(&log).unwrap_or_default()),
        );
    }

    /// SIGTERM, and waits for the process to exit (SIGKILL after
    /// [`STOP_TIMEOUT`]); afterwards the port refuses connections.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        // A paused server would not see the SIGTERM.
        // SAFETY: as in `signal`.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) };
        if !terminate(&mut child, STOP_TIMEOUT) {
            eprintln!("mariadbd on port {} ignored SIGTERM for {STOP_TIMEOUT:?}; killed it", self.port);
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, queries hang
    /// until [`ThrowawayMariaDb::resume`].
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let child = self.child.as_ref().expect("mariadbd is running");
        // SAFETY: kill takes a pid (of our own child, not yet reaped) and a
        // signal number.
        let done = unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        assert_eq!(done, 0, "signal {sig} to mariadbd: {}", io::Error::last_os_error());
    }

    /// The data directory's parent, for diagnostics.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for ThrowawayMariaDb {
    fn drop(&mut self) {
        // No panics here: this may run while unwinding.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Err(e) = fs::remove_dir_all(&self.dir)
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!("could not remove {}: {e}", self.dir.display());
        }
    }
}
