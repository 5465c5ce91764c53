//! The server's command line and environment (SPEC §1).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::net::NetConfig;
use crate::service::Limits;

/// Everything `ChatServer` is started with.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where to listen.
    pub addr: SocketAddr,
    /// Reactor settings from the flags.
    pub net: NetConfig,
    /// `CHAT_MYSQL_URL`.
    pub mysql_url: String,
    /// `CHAT_REDIS_URL`.
    pub redis_url: String,
    /// `CHAT_DB_POOL`: MySQL connections, also the number of job threads.
    pub db_pool: usize,
    /// Flood control (`--rate`).
    pub limits: Limits,
    /// `CHAT_TOKEN_TTL` (seconds): how long a resume token is valid.
    pub token_ttl: Duration,
    /// `CHAT_STATS_INTERVAL` (seconds): how often the stats line is logged.
    pub stats_interval: Duration,
}

/// Largest `--idle-timeout`: Linux takes keepalive times up to 32767 s.
const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(32767);

/// Largest `--max-frame`: a stored message must fit MySQL's packet limit.
const MAX_FRAME_LIMIT: usize = 8 << 20;

pub const USAGE: &str = "usage: ChatServer IP PORT [--threads N] [--max-frame BYTES] [--idle-timeout SECS] [--send-timeout SECS] [--max-stored N] [--max-conns N] [--rate MSGS_PER_SEC]; ChatServer --help for more";

/// Default of `CHAT_MYSQL_URL`.
const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306/chat";
/// Default of `CHAT_REDIS_URL`.
const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379/";
/// Default of `CHAT_DB_POOL`.
const DEFAULT_DB_POOL: usize = 8;
/// Default of `CHAT_STATS_INTERVAL`: the spec's once a minute.
const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(60);

/// Whether the arguments ask for `--help` (anywhere, as other tools do).
pub fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "--help" || a == "-h")
}

/// `ChatServer --help`: every flag and variable with its default.
pub fn help() -> String {
    let net = NetConfig::default();
    let limits = Limits::default();
    format!(
        "ChatServer: a cluster chat server speaking the original C++ ChatServer's protocol.

usage: ChatServer IP PORT [flags]    serve on IP:PORT (PORT 0: any free port)
       ChatServer --help             this text

flags (default in brackets):
  --threads N            epoll worker threads [number of cores: {threads}]
  --max-frame BYTES      largest message a client may send; a longer one gets
                         error 103 and the connection is closed [{max_frame}]
  --idle-timeout SECS    after this long without data the peer's host is probed
                         with TCP keepalives; closed (its user offline) only if
                         they go unanswered [{idle}]
  --send-timeout SECS    a connection whose pending output makes no progress for
                         this long is closed; what it missed is stored [{send}]
  --max-stored N         messages one user's offline store holds; past it the
                         sender gets errno 106 [{max_stored}]
  --max-conns N          open connections; past it new ones are closed at once [{max_conns}]
  --rate N               messages per second per connection (bursts of 2N); over
                         it: error 104, not carried out [{rate}]
  --help, -h             print this and exit

environment variables (default in brackets):
  CHAT_MYSQL_URL         the database, mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE;
                         created if missing, with the tables of chat.sql; a
                         database of the original C++ ChatServer is upgraded in
                         place [{mysql}]
  CHAT_REDIS_URL         the cluster bus; unreachable, the server runs alone and
                         says so once [{redis}]
  CHAT_DB_POOL           MySQL connections in the pool, also the job threads [{pool}]
  CHAT_TOKEN_TTL         seconds a resume token stays valid [{ttl}]
  CHAT_STATS_INTERVAL    seconds between two stats lines in the log [{stats}]

The log goes to stderr, one line per event: an RFC 3339 UTC timestamp, a level
(INFO, WARN, ERROR, FATAL) and the text. SIGINT or SIGTERM stop the server
cleanly: its users are marked offline and it exits 0.
",
        threads = net.threads,
        max_frame = net.max_frame,
        idle = net.idle_timeout.as_secs(),
        send = net.send_timeout.as_secs(),
        max_stored = limits.max_stored,
        max_conns = net.max_conns,
        rate = limits.rate,
        mysql = DEFAULT_MYSQL_URL,
        redis = DEFAULT_REDIS_URL,
        pool = DEFAULT_DB_POOL,
        ttl = crate::service::token::DEFAULT_TTL.as_secs(),
        stats = DEFAULT_STATS_INTERVAL.as_secs(),
    )
}

fn number<T: std::str::FromStr>(what: &str, value: Option<&str>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{what} needs a value"))?;
    value.parse().map_err(|_| format!("{what}: '{value}' is not a valid number"))
}

impl ServerConfig {
    /// Reads the arguments (without the program name) and the environment
    /// through `env`; the error is one line saying what is wrong.
    pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<ServerConfig, String> {
        let mut positional = Vec::new();
        let mut net = NetConfig::default();
        let mut limits = Limits::default();
        let mut iter = args.iter().map(String::as_str);
        while let Some(arg) = iter.next() {
            match arg {
                "--threads" => net.threads = number("--threads", iter.next())?,
                "--max-frame" => net.max_frame = number("--max-frame", iter.next())?,
                "--idle-timeout" => net.idle_timeout = Duration::from_secs(number("--idle-timeout", iter.next())?),
                "--send-timeout" => net.send_timeout = Duration::from_secs(number("--send-timeout", iter.next())?),
                "--max-stored" => limits.max_stored = number("--max-stored", iter.next())?,
                "--max-conns" => net.max_conns = number("--max-conns", iter.next())?,
                "--rate" => {
                    let rate: u32 = number("--rate", iter.next())?;
                    if rate == 0 {
                        return Err("--rate must be at least 1 message per second".into());
                    }
                    limits.rate = f64::from(rate);
                    limits.burst = f64::from(rate) * 2.0;
                }
                flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
                value => positional.push(value),
            }
        }
        let [ip, port] = positional[..] else {
            return Err(format!("expected IP and PORT, got {} arguments", positional.len()));
        };
        let ip: IpAddr = ip.parse().map_err(|_| format!("'{ip}' is not an IP address"))?;
        let port: u16 = port.parse().map_err(|_| format!("'{port}' is not a port number (0-65535)"))?;
        if net.threads == 0 || net.threads > 1024 {
            return Err("--threads must be between 1 and 1024".into());
        }
        if !(64..=MAX_FRAME_LIMIT).contains(&net.max_frame) {
            return Err(format!("--max-frame must be between 64 and {MAX_FRAME_LIMIT} bytes"));
        }
        if net.idle_timeout.is_zero() || net.idle_timeout > MAX_IDLE_TIMEOUT {
            return Err(format!("--idle-timeout must be between 1 and {} seconds", MAX_IDLE_TIMEOUT.as_secs()));
        }
        if limits.max_stored == 0 {
            return Err("--max-stored must be at least 1".into());
        }
        if net.send_timeout.is_zero() {
            return Err("--send-timeout must be at least 1 second".into());
        }
        let db_pool = match env("CHAT_DB_POOL") {
            Some(v) => number("CHAT_DB_POOL", Some(&v))?,
            None => DEFAULT_DB_POOL,
        };
        if db_pool == 0 || db_pool > 1000 {
            return Err("CHAT_DB_POOL must be between 1 and 1000".into());
        }
        let token_ttl = match env("CHAT_TOKEN_TTL") {
            Some(v) => Duration::from_secs(number("CHAT_TOKEN_TTL", Some(&v))?),
            None => crate::service::token::DEFAULT_TTL,
        };
        if token_ttl.is_zero() {
            return Err("CHAT_TOKEN_TTL must be at least 1 second".into());
        }
        let stats_interval = match env("CHAT_STATS_INTERVAL") {
            Some(v) => Duration::from_secs(number("CHAT_STATS_INTERVAL", Some(&v))?),
            None => DEFAULT_STATS_INTERVAL,
        };
        if stats_interval.is_zero() {
            return Err("CHAT_STATS_INTERVAL must be at least 1 second".into());
        }
        Ok(ServerConfig {
            addr: SocketAddr::new(ip, port),
            token_ttl,
            stats_interval,
            net,
            mysql_url: env("CHAT_MYSQL_URL").unwrap_or_else(|| DEFAULT_MYSQL_URL.into()),
            redis_url: env("CHAT_REDIS_URL").unwrap_or_else(|| DEFAULT_REDIS_URL.into()),
            db_pool,
            limits,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<ServerConfig, String> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        ServerConfig::parse(&args, |_| None)
    }

    #[test]
    fn reads_address_flags_and_defaults() {
        let c = parse(&["127.0.0.1", "6000", "--threads", "3", "--idle-timeout", "5"]).unwrap();
        assert_eq!(c.addr, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(c.net.threads, 3);
        assert_eq!(c.net.idle_timeout, Duration::from_secs(5));
        assert_eq!(c.net.max_frame, 65536);
        assert_eq!(c.db_pool, 8);
        assert_eq!(c.mysql_url, "mysql://root@127.0.0.1:3306/chat");
    }

    #[test]
    fn says_what_is_wrong() {
        assert!(parse(&[]).unwrap_err().contains("expected IP and PORT"));
        assert!(parse(&["localhost", "1"]).unwrap_err().contains("not an IP"));
        assert!(parse(&["127.0.0.1", "70000"]).unwrap_err().contains("port"));
        assert!(parse(&["127.0.0.1", "1", "--threads"]).unwrap_err().contains("needs a value"));
        assert!(parse(&["127.0.0.1", "1", "--bogus"]).unwrap_err().contains("unknown option"));
    }

    #[test]
    fn help_names_every_flag_the_parser_takes() {
        let text = help();
        for flag in
            ["--threads", "--max-frame", "--idle-timeout", "--send-timeout", "--max-stored", "--max-conns", "--rate"]
        {
            assert!(text.contains(&format!("  {flag} ")), "{flag} missing from --help");
            // Each flag the help names is one the parser takes.
            let taken = parse(&["127.0.0.1", "1", flag, "1"]);
            assert!(!taken.as_ref().is_err_and(|e| e.contains("unknown option")), "{flag}: {taken:?}");
        }
        assert!(text.contains("[65536]") && text.contains("[300]") && text.contains("[60]"), "{text}");
    }
}
