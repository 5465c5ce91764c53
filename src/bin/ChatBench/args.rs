//! ChatBench's command line.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

pub const USAGE: &str = "\
usage: ChatBench MODE [options]
       ChatBench relay-server [IP:]PORT [--threads N]

modes (each run against the raw relay and the ChatServer, figures side by side):
  pingpong  --pairs K (100) [--msg-bytes N (32)]   one ONE_CHAT in flight per pair, bounced
  flood     --pairs K (10) --inflight W (16)       W in flight per sender; loss, order, duplicates
  fanout    --group-size G (50) --senders N (4) [--inflight W (1)]   GROUP_CHAT to G-1 members
  login     --users N (64) --conc C (8) [--during-pingpong K | --during-fanout G] [--token]
                                                   LOGIN/LOGOUT cycles; with K pairs or a group of G
                                                   (one sender) measured alone, then during the logins;
                                                   --token: log in with the last LOGIN_ACK's resume
                                                   token, then reconnect (LOGOUT would revoke it)
  idle      --conns N (1000)                       logged-in idle connections; RSS per connection
  failover  --addr A --addr2 B [--users N (1000)] [--conc C (32)] [--server-pid P]
                                                   KILLS the ChatServer at A: that is what it is for.
                                                   N users log in on A; then SIGKILL to P (default: the
                                                   ChatServer listening on A's port) and every user logs
                                                   in on B with its token, C at a time (errno 2 or 501:
                                                   again after 50 ms); time from the kill until all are
                                                   back. Two ChatServers on one database and Redis; no
                                                   relay, one round

options:
  --addr HOST:PORT       the ChatServer to measure (leave out to run the relay alone)
  --addr2 HOST:PORT      a second ChatServer: the far side of each pair (half a group) connects there
  --relay spawn|limit[:PATH]|none|HOST:PORT
                         the raw relay baseline (default spawn: a `ChatBench relay-server` child;
                         limit: ../shared/limit-relay, built by ./autobuild.sh as bin/limit-relay
                         beside ChatBench, started as a child)
  --relay-threads N      worker loops of a spawned relay (default 2; match the server's --threads)
  --server-pid P         ChatServer pid for CPU and memory (repeat for --addr2; default: found by port);
                         failover: the pid of the server at --addr, which it kills
  --relay-pid P          pid of a relay given by address (default: found by port)
  --redis-pid P          with --addr2: pid of the Redis between the servers, for redis_cpu_us_per_msg
                         (default: found by port 6379; without it the row is left out, with a note)
  --secs S (5)  --warmup S (1)
  --rounds R             runs per target, relay and server alternating (default 1); figures are
                         medians over rounds, server/relay the median of each round's ratio
  --threads T            load-generator threads (default 1)
  --setup-conc C         parallel registrations and logins during setup (default 16)
  --users-file FILE      reuse the ChatServer users listed in FILE (one id a line, password benchpw,
                         same database only); users it lacks are registered and appended
  --json                 also print the results as one JSON line

The ChatServer's flood control (200 messages/s per connection) must be raised for
throughput runs: start it with --rate 1000000.";

/// The workload to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    PingPong,
    Flood,
    Fanout,
    Login,
    Idle,
    Failover,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::PingPong => "pingpong",
            Mode::Flood => "flood",
            Mode::Fanout => "fanout",
            Mode::Login => "login",
            Mode::Idle => "idle",
            Mode::Failover => "failover",
        }
    }
}

/// Where the relay baseline comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RelayChoice {
    Spawn,
    /// `../shared/limit-relay` built as `bin/limit-relay` (or the path
    /// given), started as a child.
    Limit(Option<PathBuf>),
    None,
    At(SocketAddr),
}

/// A bench run's settings.
#[derive(Clone, Debug)]
pub struct Options {
    pub mode: Mode,
    pub addr: Option<SocketAddr>,
    pub addr2: Option<SocketAddr>,
    pub relay: RelayChoice,
    pub relay_threads: usize,
    pub server_pids: Vec<u32>,
    pub relay_pid: Option<u32>,
    pub redis_pid: Option<u32>,
    pub secs: f64,
    pub warmup: f64,
    pub rounds: usize,
    pub threads: usize,
    pub setup_conc: usize,
    pub users_file: Option<PathBuf>,
    pub json: bool,
    pub pairs: usize,
    pub msg_bytes: usize,
    pub inflight: usize,
    pub group_size: usize,
    pub senders: usize,
    pub users: usize,
    pub conc: usize,
    pub during_pingpong: usize,
    pub during_fanout: usize,
    /// login: log in with resume tokens instead of the password.
    pub token: bool,
    pub conns: usize,
}

/// What the command line asks for.
pub enum Command {
    Bench(Box<Options>),
    Relay { addr: SocketAddr, threads: usize, spawned: bool },
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<&str>) -> Result<T, String> {
    let value = value.ok_or_else(|| format!("{flag} needs a value"))?;
    value.parse().map_err(|_| format!("{flag}: '{value}' is not a valid number"))
}

fn address(flag: &str, value: Option<&str>) -> Result<SocketAddr, String> {
    let value = value.ok_or_else(|| format!("{flag} needs HOST:PORT"))?;
    value
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| format!("{flag}: '{value}' is not HOST:PORT"))
}

/// Parses the arguments (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut iter = args.iter().map(String::as_str);
    let mode = match iter.next() {
        Some("relay-server") => return parse_relay(iter),
        Some("pingpong") => Mode::PingPong,
        Some("flood") => Mode::Flood,
        Some("fanout") => Mode::Fanout,
        Some("login") => Mode::Login,
        Some("idle") => Mode::Idle,
        Some("failover") => Mode::Failover,
        Some("-h" | "--help" | "help") | None => return Err(String::new()),
        Some(other) => return Err(format!("unknown mode '{other}'")),
    };
    let (flood, failover) = (mode == Mode::Flood, mode == Mode::Failover);
    let mut o = Options {
        mode,
        addr: None,
        addr2: None,
        // Failover kills a ChatServer; there is no relay to compare with.
        relay: if failover { RelayChoice::None } else { RelayChoice::Spawn },
        relay_threads: 2,
        server_pids: Vec::new(),
        relay_pid: None,
        redis_pid: None,
        secs: 5.0,
        warmup: 1.0,
        rounds: 1,
        threads: 1,
        setup_conc: 16,
        users_file: None,
        json: false,
        pairs: if flood { 10 } else { 100 },
        msg_bytes: 32,
        inflight: if flood { 16 } else { 1 },
        group_size: 50,
        senders: 4,
        users: if failover { 1000 } else { 64 },
        conc: if failover { 32 } else { 8 },
        during_pingpong: 0,
        during_fanout: 0,
        token: false,
        conns: 1000,
    };
    while let Some(flag) = iter.next() {
        match flag {
            "--addr" => o.addr = Some(address(flag, iter.next())?),
            "--addr2" => o.addr2 = Some(address(flag, iter.next())?),
            "--relay" => {
                o.relay = match iter.next() {
                    Some("spawn") => RelayChoice::Spawn,
                    Some("limit") => RelayChoice::Limit(None),
                    Some(path) if path.starts_with("limit:") => RelayChoice::Limit(Some(PathBuf::from(&path[6..]))),
                    Some("none") => RelayChoice::None,
                    other => RelayChoice::At(address(flag, other)?),
                }
            }
            "--relay-threads" => o.relay_threads = number(flag, iter.next())?,
            "--server-pid" => o.server_pids.push(number(flag, iter.next())?),
            "--relay-pid" => o.relay_pid = Some(number(flag, iter.next())?),
            "--redis-pid" => o.redis_pid = Some(number(flag, iter.next())?),
            "--secs" => o.secs = number(flag, iter.next())?,
            "--warmup" => o.warmup = number(flag, iter.next())?,
            "--rounds" => o.rounds = number(flag, iter.next())?,
            "--threads" => o.threads = number(flag, iter.next())?,
            "--setup-conc" => o.setup_conc = number(flag, iter.next())?,
            "--users-file" => o.users_file = Some(PathBuf::from(iter.next().ok_or("--users-file needs a path")?)),
            "--json" => o.json = true,
            "--pairs" => o.pairs = number(flag, iter.next())?,
            "--msg-bytes" => o.msg_bytes = number(flag, iter.next())?,
            "--inflight" => o.inflight = number(flag, iter.next())?,
            "--group-size" => o.group_size = number(flag, iter.next())?,
            "--senders" => o.senders = number(flag, iter.next())?,
            "--users" => o.users = number(flag, iter.next())?,
            "--conc" => o.conc = number(flag, iter.next())?,
            "--during-pingpong" => o.during_pingpong = number(flag, iter.next())?,
            "--during-fanout" => o.during_fanout = number(flag, iter.next())?,
            "--token" => o.token = true,
            "--conns" => o.conns = number(flag, iter.next())?,
            other => return Err(format!("unknown option {other}")),
        }
    }
    check(&o)?;
    Ok(Command::Bench(Box::new(o)))
}

fn check(o: &Options) -> Result<(), String> {
    if o.addr.is_none() && o.relay == RelayChoice::None {
        return Err("nothing to measure: give --addr, or leave the relay on".into());
    }
    if o.addr2.is_some() && o.addr.is_none() {
        return Err("--addr2 needs --addr".into());
    }
    // Messages cross Redis only between two servers: with one, its CPU
    // would measure nothing of the run.
    if o.redis_pid.is_some() && o.addr2.is_none() {
        return Err("--redis-pid needs --addr2".into());
    }
    // procfs reads pid 0 as the bench itself.
    if o.redis_pid == Some(0) {
        return Err("--redis-pid must be a process id above 0".into());
    }
    if !(o.secs > 0.0 && o.secs <= 86_400.0 && (0.0..=3600.0).contains(&o.warmup)) {
        return Err("--secs must be above 0 and --warmup 0 or more (seconds)".into());
    }
    let positive = [
        ("--rounds", o.rounds),
        ("--threads", o.threads),
        ("--setup-conc", o.setup_conc),
        ("--relay-threads", o.relay_threads),
        ("--pairs", o.pairs),
        ("--inflight", o.inflight),
        ("--senders", o.senders),
        ("--users", o.users),
        ("--conc", o.conc),
        ("--conns", o.conns),
    ];
    if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
        return Err(format!("{flag} must be at least 1"));
    }
    if o.group_size < 2 || o.senders > o.group_size {
        return Err("--group-size must be at least 2 and at least --senders".into());
    }
    if o.mode == Mode::Login && o.users < o.conc {
        return Err("login needs --users at least --conc (each connection cycles its own users)".into());
    }
    if o.during_pingpong > 0 && o.during_fanout > 0 {
        return Err("--during-pingpong and --during-fanout: one chat at a time".into());
    }
    if o.during_fanout == 1 {
        return Err("--during-fanout must be at least 2 (one sender and its receivers)".into());
    }
    if o.mode == Mode::Failover {
        check_failover(o)?;
    }
    if o.msg_bytes > 60_000 {
        return Err("--msg-bytes must stay under the server's 64 KiB frame limit".into());
    }
    Ok(())
}

fn check_failover(o: &Options) -> Result<(), String> {
    if o.addr.is_none() || o.addr2.is_none() {
        return Err("failover needs --addr (the server it kills) and --addr2 (the one users move to)".into());
    }
    if o.addr == o.addr2 {
        return Err("failover needs two different servers: --addr and --addr2 are the same".into());
    }
    if o.relay != RelayChoice::None {
        return Err("failover measures two ChatServers, not the relay: leave out --relay".into());
    }
    // The killed server cannot be measured again.
    if o.rounds != 1 {
        return Err("failover runs one round (it kills the server at --addr)".into());
    }
    // pid 0 would signal the bench's own process group.
    if o.server_pids.contains(&0) {
        return Err("--server-pid must be a process id above 0".into());
    }
    Ok(())
}

fn parse_relay<'a>(mut iter: impl Iterator<Item = &'a str>) -> Result<Command, String> {
    let mut addr = None;
    let mut threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut spawned = false;
    while let Some(arg) = iter.next() {
        match arg {
            "--threads" => threads = number(arg, iter.next())?,
            "--spawned" => spawned = true,
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            value if addr.is_none() => {
                addr = Some(match value.parse::<u16>() {
                    Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
                    Err(_) => address("relay-server", Some(value))?,
                })
            }
            extra => return Err(format!("unexpected argument '{extra}'")),
        }
    }
    if threads == 0 {
        return Err("--threads must be at least 1".into());
    }
    let addr = addr.ok_or("relay-server needs a PORT or IP:PORT")?;
    Ok(Command::Relay { addr, threads, spawned })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(line: &str) -> Result<Command, String> {
        parse(&line.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn modes_take_their_defaults_and_flags() {
        let Ok(Command::Bench(o)) = parse_str("flood --addr 127.0.0.1:6000 --secs 2 --json") else { panic!() };
        assert_eq!((o.mode, o.pairs, o.inflight, o.secs, o.json), (Mode::Flood, 10, 16, 2.0, true));
        let Ok(Command::Bench(o)) = parse_str("pingpong --relay none --addr 127.0.0.1:1") else { panic!() };
        assert_eq!((o.pairs, o.relay, o.redis_pid), (100, RelayChoice::None, None));
        let line = "fanout --addr 127.0.0.1:1 --addr2 127.0.0.1:2 --redis-pid 42";
        let Ok(Command::Bench(o)) = parse_str(line) else { panic!() };
        assert_eq!((o.addr2.map(|a| a.port()), o.redis_pid), (Some(2), Some(42)));
        let Ok(Command::Relay { addr, threads, .. }) = parse_str("relay-server 7000 --threads 3") else { panic!() };
        assert_eq!((addr.port(), threads), (7000, 3));
    }

    #[test]
    fn login_takes_a_group_or_tokens_and_failover_two_servers() {
        let Ok(Command::Bench(o)) = parse_str("login --addr 127.0.0.1:1 --during-fanout 10 --token") else { panic!() };
        assert_eq!((o.during_fanout, o.during_pingpong, o.token, o.users), (10, 0, true, 64));
        let Ok(Command::Bench(o)) = parse_str("login --addr 127.0.0.1:1") else { panic!() };
        assert_eq!((o.during_fanout, o.token, o.relay), (0, false, RelayChoice::Spawn));
        let line = "failover --addr 127.0.0.1:1 --addr2 127.0.0.1:2 --server-pid 42 --threads 2";
        let Ok(Command::Bench(o)) = parse_str(line) else { panic!() };
        assert_eq!((o.mode, o.users, o.conc, o.relay), (Mode::Failover, 1000, 32, RelayChoice::None));
        assert_eq!((o.server_pids.as_slice(), o.threads), (&[42][..], 2));
        // Fewer users than logins in flight is fine here (not in login).
        assert!(parse_str("failover --addr 127.0.0.1:1 --addr2 127.0.0.1:2 --users 4").is_ok());
    }

    #[test]
    fn says_what_is_wrong() {
        let err = |line: &str| parse_str(line).err().unwrap_or_default();
        assert!(err("warp").contains("unknown mode"));
        assert!(err("pingpong --pairs 0").contains("--pairs"));
        assert!(err("pingpong --bogus").contains("unknown option"));
        assert!(err("pingpong --relay none").contains("nothing to measure"));
        assert!(err("login --users 2 --conc 4").contains("--users"));
        assert!(err("pingpong --addr 127.0.0.1:1 --redis-pid 42").contains("needs --addr2"));
        assert!(err("pingpong --addr 127.0.0.1:1 --addr2 127.0.0.1:2 --redis-pid 0").contains("--redis-pid"));
        assert!(err("pingpong --addr 127.0.0.1:1 --addr2 127.0.0.1:2 --redis-pid x").contains("not a valid number"));
        assert!(err("login --during-pingpong 2 --during-fanout 3").contains("one chat at a time"));
        assert!(err("login --during-fanout 1").contains("--during-fanout"));
        assert!(err("failover --addr 127.0.0.1:1").contains("--addr2"));
        assert!(err("failover --addr2 127.0.0.1:2").contains("--addr"));
        assert!(err("failover --addr 127.0.0.1:1 --addr2 127.0.0.1:1").contains("the same"));
        let two = "failover --addr 127.0.0.1:1 --addr2 127.0.0.1:2";
        assert!(err(&format!("{two} --relay spawn")).contains("not the relay"));
        assert!(err(&format!("{two} --rounds 2")).contains("one round"));
        assert!(err(&format!("{two} --server-pid 0")).contains("above 0"));
    }
}
