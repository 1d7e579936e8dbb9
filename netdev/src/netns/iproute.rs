//! Addresses, routes and rules of a network namespace, kept as CRIU keeps them: the binary
//! output of `ip addr save`, `ip route save`, `ip -6 route save` and `ip rule save`, loaded
//! again with `ip ... restore`. Addresses the fresh namespace has already (`lo`'s) are
//! reported by `ip` and skipped.

use super::{run, ToolError};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpState {
    pub addr: Vec<u8>,
    pub route: Vec<u8>,
    pub route6: Vec<u8>,
    pub rule: Vec<u8>,
}

/// The calling thread's namespace's addresses, routes and rules.
pub fn dump() -> Result<IpState, ToolError> {
    Ok(IpState {
        addr: run("ip", &["addr", "save"], None)?,
        route: run("ip", &["route", "save"], None)?,
        route6: run("ip", &["-6", "route", "save"], None)?,
        // As CRIU: a kernel without rule dumps gives none.
        rule: run("ip", &["rule", "save"], None).unwrap_or_default(),
    })
}

/// Loads `ip` into the calling thread's (fresh) namespace, addresses first.
pub fn restore(ip: &IpState) -> Result<(), ToolError> {
    for (what, bytes) in [
        ("addr", &ip.addr),
        ("route", &ip.route),
        ("route", &ip.route6),
    ] {
        if !bytes.is_empty() {
            run("ip", &[what, "restore"], Some(bytes))?;
        }
    }
    if !ip.rule.is_empty() {
        // The kernel's three default rules are in the saved ones too.
        run("ip", &["rule", "flush"], None)?;
        run("ip", &["rule", "delete", "table", "local"], None)?;
        run("ip", &["rule", "restore"], Some(&ip.rule))?;
    }
    Ok(())
}
