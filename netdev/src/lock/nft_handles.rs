//! Deleting many per-connection iptables rules fast. iptables-nft finds a rule given by its
//! text with a search of the whole chain, once per rule: 4,000 rules took 7.9 s here in one
//! `iptables-restore`. With the nf_tables backend the same rules are visible to `nft`, each
//! with a stable handle: one listing per chain finds them all and one `nft -f -` transaction
//! deletes them by handle (0.1 s). Deleting by position would be as fast but would hit the
//! wrong rule if someone changed the chain meanwhile; a handle never names another rule.

use std::collections::HashSet;
use std::net::IpAddr;

use super::{Cmd, Ends, LockError, SOCCR_MARK};

/// One direction of a connection as a rule matches it: (IPv6, chain, source, source port,
/// destination, destination port).
type RuleKey = (bool, &'static str, IpAddr, u16, IpAddr, u16);

fn keys(conns: &[Ends]) -> HashSet<RuleKey> {
    conns
        .iter()
        .flat_map(|e| {
            [
                (e.v6, "INPUT", e.remote, e.rport, e.local, e.lport),
                (e.v6, "OUTPUT", e.local, e.lport, e.remote, e.rport),
            ]
        })
        .collect()
}

/// Whether iptables is the nf_tables one (`iptables -V` says so).
fn nft_backend() -> Result<bool, LockError> {
    Ok(Cmd::new("iptables", ["-V"]).run()?.contains("nf_tables"))
}

/// The key and handle of one line of `nft -a list chain`, if it is one of the lock's rules:
/// `ip saddr A ip daddr B meta mark != 0x0000c114 tcp sport P tcp dport Q counter ... drop
/// # handle H`.
fn parse(line: &str, v6: bool, chain: &'static str) -> Option<(RuleKey, u64)> {
    let (rule, handle) = line.trim().split_once(" # handle ")?;
    let w: Vec<&str> = rule.split_whitespace().collect();
    let mark = format!("0x{SOCCR_MARK:08x}");
    let after = |key: &str| w.windows(2).find(|p| p[0] == key).map(|p| p[1]);
    let ok = w.last() == Some(&"drop")
        && w.windows(4)
            .any(|p| p == ["meta", "mark", "!=", mark.as_str()]);
    if !ok {
        return None;
    }
    let key = (
        v6,
        chain,
        after("saddr")?.parse().ok()?,
        after("sport")?.parse().ok()?,
        after("daddr")?.parse().ok()?,
        after("dport")?.parse().ok()?,
    );
    Some((key, handle.trim().parse().ok()?))
}

/// Deletes the rules of `conns` by handle; false (nothing done) when iptables is the legacy
/// one. A rule not found is left alone.
pub(crate) fn unlock(conns: &[Ends]) -> Result<bool, LockError> {
    if !nft_backend()? {
        return Ok(false);
    }
    let mut want = keys(conns);
    let mut script = String::new();
    for (v6, table) in [(false, "ip"), (true, "ip6")] {
        if !conns.iter().any(|c| c.v6 == v6) {
            continue;
        }
        for chain in ["INPUT", "OUTPUT"] {
            let listing = Cmd::new("nft", ["-a", "list", "chain", table, "filter", chain]).run()?;
            for (key, handle) in listing.lines().filter_map(|l| parse(l, v6, chain)) {
                if want.remove(&key) {
                    script.push_str(&format!(
                        "delete rule {table} filter {chain} handle {handle}\n"
                    ));
                }
            }
        }
    }
    if !script.is_empty() {
        Cmd::new("nft", ["-f", "-"]).with_input(script).run()?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_rules_are_read_from_nft_listings() {
        let line =
            "\t\tip saddr 127.0.0.1 ip daddr 127.0.0.2 meta mark != 0x0000c114 tcp sport 1111 \
                    tcp dport 2222 counter packets 0 bytes 0 drop # handle 12004";
        let (key, handle) = parse(line, false, "INPUT").unwrap();
        assert_eq!(handle, 12004);
        assert_eq!(
            key,
            (
                false,
                "INPUT",
                "127.0.0.1".parse().unwrap(),
                1111,
                "127.0.0.2".parse().unwrap(),
                2222
            )
        );
        let v6 = "ip6 saddr ::1 ip6 daddr 2001:db8::1 meta mark != 0x0000c114 tcp sport 1 tcp dport 2 counter packets 0 bytes 0 drop # handle 2";
        assert!(parse(v6, true, "OUTPUT").is_some());
        // Someone else's rules: another mark, an accept, no handle.
        assert!(parse(&line.replace("c114", "c115"), false, "INPUT").is_none());
        assert!(parse(&line.replace("drop", "accept"), false, "INPUT").is_none());
        assert!(parse("ip saddr 1.2.3.4 drop", false, "INPUT").is_none());
    }
}
