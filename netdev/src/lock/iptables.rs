//! The lock with iptables (ip6tables for IPv6), as criu 4 does it.
//!
//! Per connection: one DROP rule for each direction, in INPUT and OUTPUT of the filter table,
//! for the connection's addresses and ports and only for packets without [`SOCCR_MARK`].
//!
//! Per namespace: a chain `CRIU` that accepts the mark and drops the rest, with a jump to it
//! at the top of INPUT and OUTPUT, loaded by `iptables-restore --noflush` in one transaction.
//! The current state is read first (`iptables -S`), so locking twice adds no second jump and
//! unlocking takes every jump out (a restore into a namespace locked at dump locks again).
//!
//! `-w` waits for the xtables lock instead of failing when another iptables holds it.

use super::{all, with_rollback, Cmd, Ends, LockError, SOCCR_MARK};

/// The chain of the namespace lock.
pub const CHAIN: &str = "CRIU";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Insert,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chain {
    Input,
    Output,
}

/// The rule that drops one direction of a connection: INPUT sees the remote end as source.
pub fn conn_rule(op: Op, chain: Chain, ends: &Ends) -> Cmd {
    let (src, sport, dst, dport, name) = match chain {
        Chain::Input => (ends.remote, ends.rport, ends.local, ends.lport, "INPUT"),
        Chain::Output => (ends.local, ends.lport, ends.remote, ends.rport, "OUTPUT"),
    };
    let op = match op {
        Op::Insert => "-I",
        Op::Delete => "-D",
    };
    let family = if ends.v6 { Family::V6 } else { Family::V4 };
    Cmd::new(
        family.iptables(),
        [
            "-w".to_string(),
            "-t".into(),
            "filter".into(),
            op.into(),
            name.into(),
            "--protocol".into(),
            "tcp".into(),
            "-m".into(),
            "mark".into(),
            "!".into(),
            "--mark".into(),
            mark(),
            "--source".into(),
            src.to_string(),
            "--sport".into(),
            sport.to_string(),
            "--destination".into(),
            dst.to_string(),
            "--dport".into(),
            dport.to_string(),
            "-j".into(),
            "DROP".into(),
        ],
    )
}

fn mark() -> String {
    format!("0x{SOCCR_MARK:X}")
}

fn unlock_one(ends: &Ends) -> Result<(), LockError> {
    all([Chain::Input, Chain::Output], |chain| {
        conn_rule(Op::Delete, chain, ends).run().map(drop)
    })
}

/// The rules of `conns` as one `iptables-restore --noflush` script per family (a thousand
/// connections take one process, not four thousand); each script applies whole or not at all.
fn batch(op: Op, conns: &[Ends]) -> Vec<Cmd> {
    [Family::V4, Family::V6]
        .into_iter()
        .filter_map(|family| {
            let lines: String = conns
                .iter()
                .filter(|e| e.v6 == (family == Family::V6))
                .flat_map(|e| {
                    [
                        conn_rule(op, Chain::Input, e),
                        conn_rule(op, Chain::Output, e),
                    ]
                })
                // The rule without "iptables -w -t filter".
                .map(|cmd| cmd.args[3..].join(" ") + "\n")
                .collect();
            (!lines.is_empty()).then(|| {
                Cmd::new(family.restore(), ["-w", "--noflush"])
                    .with_input(format!("*filter\n{lines}COMMIT\n"))
            })
        })
        .collect()
}

pub(crate) fn lock_connections(conns: &[Ends]) -> Result<(), LockError> {
    let mut done: Vec<Cmd> = Vec::new();
    for cmd in batch(Op::Insert, conns) {
        if let Err(e) = cmd.run() {
            // The other family's rules come out again.
            let v4 = done.iter().any(|c| c.program == Family::V4.restore());
            let back: Vec<Ends> = conns.iter().filter(|c| c.v6 != v4).cloned().collect();
            let undone = if done.is_empty() {
                Ok(())
            } else {
                unlock_connections(&back)
            };
            return Err(with_rollback(e, undone));
        }
        done.push(cmd);
    }
    Ok(())
}

/// Removes the rules of `conns`: by handle with the nf_tables backend (see nft_handles), else
/// in one script per family, or rule by rule when the script fails (a rule already gone makes
/// the whole script fail), going on past failures.
pub(crate) fn unlock_connections(conns: &[Ends]) -> Result<(), LockError> {
    if super::nft_handles::unlock(conns)? {
        return Ok(());
    }
    let whole = batch(Op::Delete, conns)
        .iter()
        .try_for_each(|c| c.run().map(drop));
    match whole {
        Ok(()) => Ok(()),
        Err(_) => all(conns, unlock_one),
    }
}

/// What of the namespace lock one family's filter table holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetnsState {
    pub chain: bool,
    pub input_jumps: usize,
    pub output_jumps: usize,
}

impl NetnsState {
    /// From `iptables -t filter -S`.
    pub fn parse(listing: &str) -> Self {
        let mut state = NetnsState::default();
        let new = format!("-N {CHAIN}");
        let input = format!("-A INPUT -j {CHAIN}");
        let output = format!("-A OUTPUT -j {CHAIN}");
        for line in listing.lines().map(str::trim) {
            if line == new {
                state.chain = true;
            } else if line == input {
                state.input_jumps += 1;
            } else if line == output {
                state.output_jumps += 1;
            }
        }
        state
    }

    fn is_empty(&self) -> bool {
        *self == NetnsState::default()
    }
}

/// The `iptables-restore` input that locks, given what is there: declaring the chain empties
/// it, so its two rules are never doubled; a jump is added only where there is none.
pub fn lock_script(state: &NetnsState) -> String {
    let mut s = format!("*filter\n:{CHAIN} - [0:0]\n");
    for (hook, jumps) in [("INPUT", state.input_jumps), ("OUTPUT", state.output_jumps)] {
        if jumps == 0 {
            s.push_str(&format!("-I {hook} -j {CHAIN}\n"));
        }
    }
    s.push_str(&format!(
        "-A {CHAIN} -m mark --mark {} -j ACCEPT\n-A {CHAIN} -j DROP\nCOMMIT\n",
        mark()
    ));
    s
}

/// The input that unlocks: every jump, then the chain (iptables-nft refuses to delete a
/// chain something still jumps to); None when nothing is locked.
pub fn unlock_script(state: &NetnsState) -> Option<String> {
    if state.is_empty() {
        return None;
    }
    let mut s = String::from("*filter\n");
    if state.chain {
        s.push_str(&format!(":{CHAIN} - [0:0]\n"));
    }
    for (hook, jumps) in [("INPUT", state.input_jumps), ("OUTPUT", state.output_jumps)] {
        for _ in 0..jumps {
            s.push_str(&format!("-D {hook} -j {CHAIN}\n"));
        }
    }
    if state.chain {
        s.push_str(&format!("-X {CHAIN}\n"));
    }
    s.push_str("COMMIT\n");
    Some(s)
}

/// IPv4 always; IPv6 where the kernel has it (criu's kdat.ipv6).
fn families() -> Vec<Family> {
    let mut f = vec![Family::V4];
    if std::path::Path::new("/proc/sys/net/ipv6").exists() {
        f.push(Family::V6);
    }
    f
}

fn state(family: Family) -> Result<NetnsState, LockError> {
    let listing = Cmd::new(family.iptables(), ["-w", "-t", "filter", "-S"]).run()?;
    Ok(NetnsState::parse(&listing))
}

fn restore(family: Family, script: String) -> Result<(), LockError> {
    Cmd::new(family.restore(), ["-w", "--noflush"])
        .with_input(script)
        .run()
        .map(drop)
}

fn unlock_family(family: Family) -> Result<(), LockError> {
    match unlock_script(&state(family)?) {
        Some(script) => restore(family, script),
        None => Ok(()),
    }
}

pub(crate) fn lock_netns() -> Result<(), LockError> {
    // Families this call locked (not those locked before it): what a failure takes back.
    let mut locked = Vec::new();
    for family in families() {
        let step = state(family).and_then(|before| {
            restore(family, lock_script(&before))?;
            Ok(before.is_empty())
        });
        match step {
            Ok(true) => locked.push(family),
            Ok(false) => {}
            Err(e) => return Err(with_rollback(e, all(locked, unlock_family))),
        }
    }
    Ok(())
}

pub(crate) fn unlock_netns() -> Result<(), LockError> {
    all(families(), unlock_family)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::Conn;

    fn ends(local: &str, remote: &str) -> Ends {
        Ends::of(&Conn {
            local: local.parse().unwrap(),
            remote: remote.parse().unwrap(),
        })
        .unwrap()
    }

    #[test]
    fn connection_rules_are_criu_s() {
        let e = ends("10.0.0.1:80", "10.0.0.2:4000");
        assert_eq!(
            conn_rule(Op::Insert, Chain::Input, &e).line(),
            "iptables -w -t filter -I INPUT --protocol tcp -m mark ! --mark 0xC114 \
             --source 10.0.0.2 --sport 4000 --destination 10.0.0.1 --dport 80 -j DROP"
        );
        assert_eq!(
            conn_rule(Op::Delete, Chain::Output, &e).line(),
            "iptables -w -t filter -D OUTPUT --protocol tcp -m mark ! --mark 0xC114 \
             --source 10.0.0.1 --sport 80 --destination 10.0.0.2 --dport 4000 -j DROP"
        );
        let cmd = conn_rule(Op::Insert, Chain::Output, &e);
        assert_eq!(cmd.args.len(), 22, "one argument per word, no shell");
        assert_eq!(cmd.input, None);
    }

    #[test]
    fn ipv6_uses_ip6tables_and_mapped_addresses_iptables() {
        let v6 = conn_rule(
            Op::Insert,
            Chain::Input,
            &ends("[::1]:80", "[2001:db8::2]:4000"),
        );
        assert_eq!(v6.program, "ip6tables");
        assert!(v6
            .line()
            .contains("--source 2001:db8::2 --sport 4000 --destination ::1 --dport 80"));
        let mapped = conn_rule(
            Op::Insert,
            Chain::Output,
            &ends("[::ffff:127.0.0.1]:80", "[::ffff:127.0.0.2]:4000"),
        );
        assert_eq!(mapped.program, "iptables");
        assert!(mapped
            .line()
            .contains("--source 127.0.0.1 --sport 80 --destination 127.0.0.2 --dport 4000"));
    }

    #[test]
    fn state_is_read_from_the_listing() {
        let listing =
            "# Table `filter' contains incompatible base-chains, use 'nft' tool to list them.\n\
                       -P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT\n-N CRIU\n-N CRIUX\n\
                       -A INPUT -j CRIU\n-A INPUT -j CRIU\n-A INPUT -j CRIUX\n-A OUTPUT -j CRIU\n\
                       -A CRIU -m mark --mark 0xc114 -j ACCEPT\n-A CRIU -j DROP\n";
        assert_eq!(
            NetnsState::parse(listing),
            NetnsState {
                chain: true,
                input_jumps: 2,
                output_jumps: 1
            }
        );
        assert!(NetnsState::parse("-P INPUT ACCEPT\n").is_empty());
    }

    #[test]
    fn netns_scripts() {
        assert_eq!(
            lock_script(&NetnsState::default()),
            "*filter\n:CRIU - [0:0]\n-I INPUT -j CRIU\n-I OUTPUT -j CRIU\n\
             -A CRIU -m mark --mark 0xC114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n"
        );
        let half = NetnsState {
            chain: true,
            input_jumps: 1,
            output_jumps: 0,
        };
        assert_eq!(
            lock_script(&half),
            "*filter\n:CRIU - [0:0]\n-I OUTPUT -j CRIU\n\
             -A CRIU -m mark --mark 0xC114 -j ACCEPT\n-A CRIU -j DROP\nCOMMIT\n"
        );
        assert_eq!(unlock_script(&NetnsState::default()), None);
        let twice = NetnsState {
            chain: true,
            input_jumps: 2,
            output_jumps: 2,
        };
        assert_eq!(
            unlock_script(&twice).unwrap(),
            "*filter\n:CRIU - [0:0]\n-D INPUT -j CRIU\n-D INPUT -j CRIU\n\
             -D OUTPUT -j CRIU\n-D OUTPUT -j CRIU\n-X CRIU\nCOMMIT\n"
        );
    }
}
