//! A network namespace of the test's own, joined to this one by a veth
//! pair: a client run inside it reaches the server through the pair, and
//! taking the inner end down makes that client's host vanish without a
//! word (no FIN, no RST), as a machine that loses power does.
//!
//! Included with `#[path = "support/netns.rs"] mod netns;`. Needs root (the
//! tests run as root, as `./autobuild.sh test` does on its machine).
#![allow(dead_code)]

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// The namespace and its link; removed (with the pair) on drop.
pub struct Netns {
    /// The namespace's name, for `ip netns exec`.
    pub name: String,
    /// The host's end of the pair, outside the namespace.
    pub host_ip: Ipv4Addr,
    /// The address of the namespace's end.
    pub inner_ip: Ipv4Addr,
    /// The namespace's end of the pair.
    inner_dev: String,
    /// The host's end, removed on drop should the pair not have been
    /// moved into the namespace.
    host_dev: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    /// A namespace named after this process, with `10.X.Y.1` (host) and
    /// `10.X.Y.2` (inside) on a /30 picked from the pid.
    pub fn new(tag: &str) -> Netns {
        let pid = std::process::id();
        let name = format!("chat-{tag}-{pid}");
        let (host_dev, inner_dev) = (format!("cv{pid}h"), format!("cv{pid}n"));
        let (x, y) = (200 + (pid >> 14) as u8 % 50, ((pid >> 6) & 0xff) as u8);
        let z = ((pid & 0x3f) as u8) << 2;
        let host_ip = Ipv4Addr::new(10, x, y, z + 1);
        let inner_ip = Ipv4Addr::new(10, x, y, z + 2);
        ip(&["netns", "add", &name]);
        let ns = Netns { name, host_ip, inner_ip, inner_dev, host_dev: host_dev.clone() };
        ip(&["link", "add", &host_dev, "type", "veth", "peer", "name", &ns.inner_dev]);
        ip(&["link", "set", &ns.inner_dev, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{host_ip}/30"), "dev", &host_dev]);
        ip(&["link", "set", &host_dev, "up"]);
        ns.exec_ip(&["addr", "add", &format!("{inner_ip}/30"), "dev", &ns.inner_dev]);
        ns.exec_ip(&["link", "set", &ns.inner_dev, "up"]);
        ns.exec_ip(&["link", "set", "lo", "up"]);
        ns
    }

    fn exec_ip(&self, args: &[&str]) {
        let mut all = vec!["netns", "exec", &self.name, "ip"];
        all.extend_from_slice(args);
        ip(&all);
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Takes the namespace's end of the link down: from then on nothing
    /// sent to it is answered, and it sends nothing.
    pub fn cut(&self) {
        self.exec_ip(&["link", "set", &self.inner_dev, "down"]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its end of the pair, and with it
        // the host's end.
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
        let _ = Command::new("ip").args(["link", "del", &self.host_dev]).stderr(Stdio::null()).status();
    }
}
