//! `ChatServer IP PORT [--threads N] ...`: the chat server (SPEC §1).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatserver::bus::Bus;
use chatserver::config::{ServerConfig, USAGE, help, wants_help};
use chatserver::db::Pool;
use chatserver::db::schema::{self, Prepared};
use chatserver::net::{Remote, Server, StopHandle, raise_nofile_limit};
use chatserver::service::router::BusSink;
use chatserver::service::{ChatService, Ctx, Heartbeat, Jobs, Lanes, Parts, Priority};
use chatserver::stats::Reporter;
use chatserver::{info, log, warn};

/// Threads that store messages in order, each for a share of the users.
const LANES: usize = 4;

/// How long a stopping server waits for others to acknowledge what it sent.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(2);
/// How long a request waits for a MySQL connection before answering 500.
const DB_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if wants_help(&args) {
        print!("{}", help());
        return ExitCode::SUCCESS;
    }
    // A wrong command line is no log line: the server never started.
    let config = match ServerConfig::parse(&args, |k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(why) => {
            eprintln!("ChatServer: {why}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            log::fatal(&why);
            ExitCode::FAILURE
        }
    }
}

fn run(config: ServerConfig) -> Result<(), String> {
    give_large_blocks_back();
    if let Err(e) = raise_nofile_limit() {
        warn!("cannot raise the open-file limit ({e}); fewer connections will fit");
    }
    let prepared = schema::prepare(&config.mysql_url).map_err(|e| e.to_string())?;
    let namespace = schema::database_name(&config.mysql_url).map_err(|e| e.to_string())?;
    match prepared {
        Prepared::Created => info!("database `{namespace}` created with schema version {}", schema::CURRENT),
        Prepared::Current => info!("database `{namespace}` has schema version {}", schema::CURRENT),
        Prepared::Upgraded { from } => info!(
            "database `{namespace}` upgraded from schema version {from}{} to {}; every row kept",
            if from == 0 { " (the original C++ ChatServer's)" } else { "" },
            schema::CURRENT
        ),
    }
    let pool = Pool::new(&config.mysql_url, config.db_pool, DB_CHECKOUT_TIMEOUT).map_err(|e| e.to_string())?;
    let server = Server::bind(config.addr, config.net.clone()).map_err(|e| e.to_string())?;
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    let server_id = server_id(addr);
    let bus = Bus::new(&config.redis_url, &namespace, &server_id).map_err(|e| e.to_string())?;

    let remote = Remote::new(config.net.threads).map_err(|e| format!("cannot create worker queues: {e}"))?;
    let jobs =
        Jobs::new(config.db_pool, "job", Priority::Normal).map_err(|e| format!("cannot start job threads: {e}"))?;
    let hashing = Jobs::new(hashing_threads(), "hash", Priority::Background)
        .map_err(|e| format!("cannot start hashing threads: {e}"))?;
    let lanes = Lanes::new(LANES).map_err(|e| format!("cannot start lane threads: {e}"))?;
    let ctx = Ctx::new(Parts {
        db: pool,
        server_id,
        bus: bus.clone(),
        remote: remote.clone(),
        jobs,
        hashing,
        token_ttl: config.token_ttl,
        lanes,
        limits: config.limits,
    });
    let sink = Arc::new(BusSink { ctx: OnceLock::new() });
    let _ = sink.ctx.set(Arc::downgrade(&ctx));
    bus.start(sink).map_err(|e| e.to_string())?;
    let heartbeat_db = Pool::new(&config.mysql_url, 1, DB_CHECKOUT_TIMEOUT).map_err(|e| e.to_string())?;
    let heartbeat = Heartbeat::start(Arc::clone(&ctx), heartbeat_db).map_err(|e| e.to_string())?;
    let service = Arc::new(ChatService::new(Arc::clone(&ctx)));

    let stop = StopHandle::new().map_err(|e| e.to_string())?;
    let on_signal = stop.clone();
    ctrlc::set_handler(move || on_signal.stop()).map_err(|e| format!("cannot install the signal handler: {e}"))?;

    let counted = Arc::clone(&ctx);
    let stats = Reporter::start(config.stats_interval, move || counted.registry.users().len())
        .map_err(|e| format!("cannot start the stats thread: {e}"))?;

    info!(
        "ChatServer {} (pid {}), {} worker threads",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        config.net.threads
    );
    info!("ChatServer listening on {addr}");
    // However the loops end, the users are released and what is queued is
    // stored before the error (if any) is reported.
    let ran = server.run(Arc::clone(&service), remote, stop).map_err(|e| e.to_string());

    stats.stop();
    heartbeat.stop();
    ctx.hashing.shutdown();
    ctx.jobs.shutdown();
    ctx.lanes.shutdown();
    let marked = service.mark_all_offline().map_err(|e| format!("could not mark this server's users offline: {e}"));
    // What this server sent to others and they have not taken yet is stored
    // (what comes for its users from now on is not acknowledged: it goes
    // back to its senders, who store it once this server is gone).
    service.store_unacknowledged(bus.drain(SHUTDOWN_DRAIN));
    bus.stop();
    info!("ChatServer stopped; {} users marked offline", marked?);
    ran
}

/// Makes glibc serve blocks of 128 KiB and more with mmap, so argon2's
/// 19 MiB working memory goes back to the system after each hash instead of
/// staying in each job thread's arena (over 1 GB after a few hundred logins).
fn give_large_blocks_back() {
    // SAFETY: mallopt only changes an allocator setting; called before the
    // other threads start.
    if unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) } != 1 {
        warn!("cannot set the malloc mmap threshold; memory may grow after logins");
    }
}

/// Threads checking passwords: one core fewer than the machine has (one at
/// least). A hash keeps its core busy for tens of milliseconds, and even at
/// a lower priority, hashes on every core slow chat to a third on a
/// two-core machine; with one core left free it keeps its speed. At most
/// this many 19 MiB argon2 blocks are live.
fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

/// A name unique to this process in the cluster's tables.
fn server_id(addr: SocketAddr) -> String {
    let started = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros());
    format!("{addr}/{}/{started}", std::process::id())
}
