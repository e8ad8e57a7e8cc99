//! A network namespace joined to the tool's own by a veth pair, as
//! scripts/halfopen.sh and scripts/storm.sh used to build with `ip`: the
//! `halfopen` and `storm --cut link` clients open their sockets inside it
//! (keepalive's `--client-netns`), the broker and the will watcher stay
//! outside, and [`NetNs::cut`] takes the clients' side of the link down so
//! that no FIN and no RST ever reach the broker.
//!
//! Owns: the namespace `rmqbN<pid>` and the veth pair `rmqbh<pid>` (host
//! side, in the tool's namespace) / `rmqbc<pid>` (client side), made with
//! `ip` through `std::process::Command`.
//!
//! Invariants: names carry the process id, so two runs never share them
//! (interface names stay within 15 bytes). The pair is a /30 inside the
//! `--subnet` (a /16, default 10.213.0.0/16) picked from the pid: host
//! side .1, client side .2 of that /30. Once [`NetNs::create`] has started
//! making things, the guard's Drop deletes the namespace and the veth
//! pair, also when creation fails half-way. Needs root (CAP_NET_ADMIN,
//! CAP_SYS_ADMIN) and `ip` (iproute2); without either the error says so.

use std::net::Ipv4Addr;
use std::process::Command;

use crate::error::BenchError;

/// The two ends of the pair's /30.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PairAddrs {
    /// Host side (the broker must be reachable there).
    pub host: Ipv4Addr,
    /// Client side (inside the namespace).
    pub client: Ipv4Addr,
}

/// Parse a subnet flag "A.B.0.0/16" (only a /16 is accepted: the pair's
/// /30 is picked inside it).
pub fn parse_subnet(s: &str) -> Result<Ipv4Addr, String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("{s}: A.B.0.0/16 expected"))?;
    let addr: Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("{s}: not an IPv4 subnet"))?;
    if len != "16" {
        return Err(format!("{s}: a /16 is needed (the /30 is picked in it)"));
    }
    let o = addr.octets();
    if o[2] != 0 || o[3] != 0 {
        return Err(format!("{s}: the last two bytes of a /16 must be 0"));
    }
    Ok(addr)
}

/// The /30 of process `pid` inside the /16 `subnet`: one of its 16,384
/// /30s, the host side .1 and the client side .2 of it.
pub fn pick_pair(subnet: Ipv4Addr, pid: u32) -> PairAddrs {
    let base = u32::from(subnet) & 0xFFFF_0000;
    let block = (pid % 16_384) * 4;
    PairAddrs {
        host: Ipv4Addr::from(base + block + 1),
        client: Ipv4Addr::from(base + block + 2),
    }
}

/// The namespace and its veth pair; dropped, both are deleted.
#[derive(Debug)]
pub struct NetNs {
    /// Namespace name (/var/run/netns/NAME).
    pub name: String,
    /// Host-side veth.
    pub veth_host: String,
    /// Client-side veth (inside the namespace).
    pub veth_client: String,
    /// The pair's addresses.
    pub addrs: PairAddrs,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        format!("cannot run `ip` ({e}): iproute2 is needed for a network namespace")
    })?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

impl NetNs {
    /// Make the namespace and pair of this process inside `subnet`, address
    /// and bring up both sides (and the namespace's lo).
    pub fn create(subnet: Ipv4Addr) -> Result<NetNs, BenchError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err(BenchError::Setup(
                "a network namespace needs root (ip netns, veth, setns): run as root, \
                 or use `storm --cut close`, which needs neither"
                    .into(),
            ));
        }
        let pid = std::process::id();
        let ns = NetNs {
            name: format!("rmqbn{pid}"),
            veth_host: format!("rmqbh{pid}"),
            veth_client: format!("rmqbc{pid}"),
            addrs: pick_pair(subnet, pid),
        };
        // From here on, Drop cleans up whatever was made.
        ns.build().map_err(BenchError::Setup)?;
        Ok(ns)
    }

    fn build(&self) -> Result<(), String> {
        let (n, h, c) = (&*self.name, &*self.veth_host, &*self.veth_client);
        let host = format!("{}/30", self.addrs.host);
        let client = format!("{}/30", self.addrs.client);
        ip(&["netns", "add", n])?;
        ip(&["link", "add", h, "type", "veth", "peer", "name", c])?;
        ip(&["link", "set", c, "netns", n])?;
        ip(&["addr", "add", &host, "dev", h])?;
        ip(&["link", "set", h, "up"])?;
        ip(&["-n", n, "addr", "add", &client, "dev", c])?;
        ip(&["-n", n, "link", "set", c, "up"])?;
        ip(&["-n", n, "link", "set", "lo", "up"])
    }

    /// The command that takes the clients' side down (no FIN, no RST).
    pub fn cut_command(&self) -> String {
        format!("ip -n {} link set dev {} down", self.name, self.veth_client)
    }

    /// Take the clients' side of the link down now.
    pub fn cut(&self) -> Result<(), BenchError> {
        ip(&[
            "-n",
            &self.name,
            "link",
            "set",
            "dev",
            &self.veth_client,
            "down",
        ])
        .map_err(BenchError::Setup)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting the host side removes its peer too; the namespace goes
        // with any peer still in it. Errors: nothing left to delete.
        let _ = ip(&["link", "del", &self.veth_host]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// The hint for a broker unreachable at the pair's host side.
pub fn unreachable_hint(host: &str, port: u16) -> String {
    format!(
        "the broker must listen on {host}:{port} or 0.0.0.0:{port} to be reachable from \
         the namespace (a broker on 127.0.0.1 only is not)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        assert_eq!(
            parse_subnet("10.213.0.0/16"),
            Ok(Ipv4Addr::new(10, 213, 0, 0))
        );
        assert!(parse_subnet("10.213.0.0/24").is_err());
        assert!(parse_subnet("10.213.1.0/16").is_err());
        assert!(parse_subnet("10.213.0.0").is_err());
        assert!(parse_subnet("x/16").is_err());
    }

    #[test]
    fn pairs_are_a_slash_30_inside_the_subnet() {
        let s = Ipv4Addr::new(10, 213, 0, 0);
        let p = pick_pair(s, 0);
        assert_eq!(p.host, Ipv4Addr::new(10, 213, 0, 1));
        assert_eq!(p.client, Ipv4Addr::new(10, 213, 0, 2));
        let p = pick_pair(s, 16_383);
        assert_eq!(p.host, Ipv4Addr::new(10, 213, 255, 253));
        assert_eq!(p.client, Ipv4Addr::new(10, 213, 255, 254));
        assert_eq!(pick_pair(s, 16_384 + 5), pick_pair(s, 5));
        for pid in [1, 77, 4242, 99_999] {
            let p = pick_pair(s, pid);
            assert_eq!(u32::from(p.host) & !3, u32::from(p.client) & !3);
            assert_eq!(p.host.octets()[..2], [10, 213]);
        }
    }
}
