//! The command line: exactly `IP PORT`.

use std::net::IpAddr;

/// The one-line usage text printed (with what is wrong) on a bad command line.
pub const USAGE: &str = "usage: ChatClient IP PORT";

/// Where to connect, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// An IP address or, for convenience, a host name such as `localhost`.
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // IPv6 literals need brackets to be read back as HOST:PORT.
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => write!(f, "[{}]:{}", self.host, self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// Checks the arguments (program name excluded); `Err` says what is wrong.
pub fn parse_args(args: &[String]) -> Result<Target, String> {
    let [host, port] = args else {
        return Err(format!("expected 2 arguments, got {}", args.len()));
    };
    let host = host.trim();
    if host.is_empty() || host.starts_with('-') {
        return Err(format!("invalid IP '{host}'"));
    }
    let port = match port.trim().parse::<u16>() {
        Ok(port) if port != 0 => port,
        _ => return Err(format!("invalid PORT '{port}': expected 1-65535")),
    };
    Ok(Target { host: host.to_string(), port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn accepts_ip_and_port() {
        let target = parse_args(&args(&["127.0.0.1", "6000"])).unwrap();
        assert_eq!(target.host, "127.0.0.1");
        assert_eq!(target.port, 6000);
        assert_eq!(target.to_string(), "127.0.0.1:6000");
    }

    #[test]
    fn brackets_ipv6_in_display() {
        let target = parse_args(&args(&["::1", "8000"])).unwrap();
        assert_eq!(target.to_string(), "[::1]:8000");
    }

    #[test]
    fn rejects_wrong_count() {
        assert_eq!(parse_args(&args(&[])).unwrap_err(), "expected 2 arguments, got 0");
        assert_eq!(parse_args(&args(&["127.0.0.1"])).unwrap_err(), "expected 2 arguments, got 1");
        assert!(parse_args(&args(&["a", "1", "c"])).is_err());
    }

    #[test]
    fn rejects_bad_port() {
        for port in ["0", "65536", "abc", "-1", ""] {
            let err = parse_args(&args(&["127.0.0.1", port])).unwrap_err();
            assert!(err.contains("invalid PORT"), "{port}: {err}");
        }
    }

    #[test]
    fn rejects_flags_as_ip() {
        assert!(parse_args(&args(&["--help", "1"])).is_err());
    }
}
