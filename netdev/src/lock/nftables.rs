//! The lock with nftables: one table `inet CRIU-<run id>` of criu 4's shape, written by the
//! `nft` tool from a script on stdin. `nft -f` applies a script as one transaction, so a
//! failed lock adds nothing; an unlock deletes the table.
//!
//! Per connection the table has a set of 4-tuples per family that both hooks drop (each
//! connection goes in once per direction); per namespace its chains drop by policy. In both
//! the first rule accepts [`SOCCR_MARK`].

use super::{Cmd, Ends, LockError, SOCCR_MARK};

/// `inet CRIU-<run_id>`; the run id must be a plain nft name past the prefix.
pub fn table(run_id: &str) -> Result<String, LockError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    // nft names are at most 256 bytes with their NUL.
    if run_id.is_empty() || run_id.len() > 200 || !run_id.chars().all(plain) {
        return Err(LockError::RunId(run_id.to_string()));
    }
    Ok(format!("inet CRIU-{run_id}"))
}

fn hook_chains(table: &str, policy: &str) -> String {
    let mut s = String::new();
    for hook in ["output", "input"] {
        s.push_str(&format!(
            "add chain {table} {hook} {{ type filter hook {hook} priority 0;{policy} }}\n\
             add rule {table} {hook} meta mark 0x{SOCCR_MARK:X} accept\n"
        ));
    }
    s
}

/// The table of the per-connection lock, before any connection is in it.
pub fn conns_table_script(table: &str) -> String {
    let mut s = format!("create table {table}\n{}", hook_chains(table, ""));
    for (set, ip, addr) in [
        ("conns4", "ip", "ipv4_addr"),
        ("conns6", "ip6", "ipv6_addr"),
    ] {
        s.push_str(&format!(
            "add set {table} {set} {{ type {addr} . inet_service . {addr} . inet_service; }}\n"
        ));
        for hook in ["output", "input"] {
            s.push_str(&format!(
                "add rule {table} {hook} {ip} saddr . tcp sport . {ip} daddr . tcp dport @{set} drop\n"
            ));
        }
    }
    s
}

/// A connection's two 4-tuples: as its packets in and out carry them.
pub fn element(table: &str, ends: &Ends) -> String {
    let set = if ends.v6 { "conns6" } else { "conns4" };
    let (l, lp, r, rp) = (ends.local, ends.lport, ends.remote, ends.rport);
    format!("add element {table} {set} {{ {r} . {rp} . {l} . {lp}, {l} . {lp} . {r} . {rp} }}\n")
}

/// The namespace lock: nothing passes but the mark.
pub fn netns_script(table: &str) -> String {
    format!(
        "create table {table}\n{}",
        hook_chains(table, " policy drop;")
    )
}

fn exists(table: &str) -> Result<bool, LockError> {
    // `list tables` prints one line per table, without their contents (which may be large).
    let listing = Cmd::new("nft", ["list", "tables", "inet"]).run()?;
    let line = format!("table {table}");
    Ok(listing.lines().any(|l| l.trim() == line))
}

fn apply(script: String) -> Result<(), LockError> {
    Cmd::new("nft", ["-f", "-"])
        .with_input(script)
        .run()
        .map(drop)
}

pub(crate) fn lock_connections(run_id: &str, conns: &[Ends]) -> Result<(), LockError> {
    let table = table(run_id)?;
    let mut script = if exists(&table)? {
        String::new()
    } else {
        conns_table_script(&table)
    };
    for ends in conns {
        script.push_str(&element(&table, ends));
    }
    if script.is_empty() {
        return Ok(());
    }
    apply(script)
}

pub(crate) fn lock_netns(run_id: &str) -> Result<(), LockError> {
    let table = table(run_id)?;
    if exists(&table)? {
        return Err(LockError::Locked(table));
    }
    apply(netns_script(&table))
}

/// A namespace's lock goes with its table; none is no error (a namespace joined at restore,
/// which the dump may have locked).
pub(crate) fn unlock_netns(run_id: &str) -> Result<(), LockError> {
    if !exists(&table(run_id)?)? {
        return Ok(());
    }
    unlock(run_id)
}

/// Both locks go with their table.
pub(crate) fn unlock(run_id: &str) -> Result<(), LockError> {
    let table = table(run_id)?;
    let mut args = vec!["delete".to_string(), "table".into()];
    args.extend(table.split(' ').map(String::from));
    Cmd::new("nft", args).run().map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::Conn;

    #[test]
    fn run_ids_make_plain_names() {
        assert_eq!(table("1234-abcd_5.6").unwrap(), "inet CRIU-1234-abcd_5.6");
        for bad in [
            "",
            "a b",
            "x;delete table inet filter",
            "a}",
            "é",
            &"x".repeat(201),
        ] {
            assert!(
                matches!(table(bad), Err(LockError::RunId(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn connection_table_is_criu_s() {
        assert_eq!(
            conns_table_script("inet CRIU-7"),
            "create table inet CRIU-7\n\
             add chain inet CRIU-7 output { type filter hook output priority 0; }\n\
             add rule inet CRIU-7 output meta mark 0xC114 accept\n\
             add chain inet CRIU-7 input { type filter hook input priority 0; }\n\
             add rule inet CRIU-7 input meta mark 0xC114 accept\n\
             add set inet CRIU-7 conns4 { type ipv4_addr . inet_service . ipv4_addr . inet_service; }\n\
             add rule inet CRIU-7 output ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
             add rule inet CRIU-7 input ip saddr . tcp sport . ip daddr . tcp dport @conns4 drop\n\
             add set inet CRIU-7 conns6 { type ipv6_addr . inet_service . ipv6_addr . inet_service; }\n\
             add rule inet CRIU-7 output ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n\
             add rule inet CRIU-7 input ip6 saddr . tcp sport . ip6 daddr . tcp dport @conns6 drop\n"
        );
    }

    #[test]
    fn elements_hold_both_directions() {
        let ends = |l: &str, r: &str| {
            Ends::of(&Conn {
                local: l.parse().unwrap(),
                remote: r.parse().unwrap(),
            })
            .unwrap()
        };
        assert_eq!(
            element("inet CRIU-7", &ends("10.0.0.1:80", "10.0.0.2:4000")),
            "add element inet CRIU-7 conns4 { 10.0.0.2 . 4000 . 10.0.0.1 . 80, \
             10.0.0.1 . 80 . 10.0.0.2 . 4000 }\n"
        );
        assert_eq!(
            element(
                "inet CRIU-7",
                &ends("[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.2]:4000")
            ),
            "add element inet CRIU-7 conns4 { 10.0.0.2 . 4000 . 10.0.0.1 . 80, \
             10.0.0.1 . 80 . 10.0.0.2 . 4000 }\n"
        );
        assert_eq!(
            element("inet CRIU-7", &ends("[::1]:80", "[2001:db8::2]:4000")),
            "add element inet CRIU-7 conns6 { 2001:db8::2 . 4000 . ::1 . 80, \
             ::1 . 80 . 2001:db8::2 . 4000 }\n"
        );
    }

    #[test]
    fn netns_table_drops_by_policy() {
        assert_eq!(
            netns_script("inet CRIU-7"),
            "create table inet CRIU-7\n\
             add chain inet CRIU-7 output { type filter hook output priority 0; policy drop; }\n\
             add rule inet CRIU-7 output meta mark 0xC114 accept\n\
             add chain inet CRIU-7 input { type filter hook input priority 0; policy drop; }\n\
             add rule inet CRIU-7 input meta mark 0xC114 accept\n"
        );
    }
}
