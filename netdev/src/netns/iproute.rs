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

/// The kernel's state flags of a route (RTNH_F_DEAD, RTNH_F_LINKDOWN): shown in `ip route
/// save` (a route over a device without carrier, such as a tap nobody reads), refused when a
/// route is added.
const STATE_FLAGS: u32 = 0x01 | 0x10;

/// `ip route save` output (a u32 magic, then RTM_NEWROUTE messages: nlmsghdr, rtmsg with its
/// flags at byte 8) with the state flags cleared; a message cut short is left as it is.
fn without_state_flags(saved: &[u8]) -> Vec<u8> {
    let mut out = saved.to_vec();
    let mut at = 4;
    while let Some(len) = out
        .get(at..at + 4)
        .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize)
    {
        let flags = at + 16 + 8;
        if len < 16 + 12 || at + len > out.len() {
            break;
        }
        let f = u32::from_ne_bytes([out[flags], out[flags + 1], out[flags + 2], out[flags + 3]]);
        out[flags..flags + 4].copy_from_slice(&(f & !STATE_FLAGS).to_ne_bytes());
        at += (len + 3) & !3;
    }
    out
}

/// Loads `ip` into the calling thread's (fresh) namespace, addresses first.
pub fn restore(ip: &IpState) -> Result<(), ToolError> {
    if !ip.addr.is_empty() {
        run("ip", &["addr", "restore"], Some(&ip.addr))?;
    }
    for bytes in [&ip.route, &ip.route6] {
        if !bytes.is_empty() {
            run(
                "ip",
                &["route", "restore"],
                Some(&without_state_flags(bytes)),
            )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_flags_are_cleared_and_the_rest_kept() {
        // Magic, then two route messages as `ip route save` writes them (192.168.97.0/24 over
        // a tap without carrier: linkdown, 0x10), one with RTM_F_CLONED (0x200) too.
        let mut saved = vec![0x24, 0x12, 0x31, 0x45];
        let mut msg = vec![0u8; 0x3c];
        msg[..4].copy_from_slice(&0x3cu32.to_ne_bytes());
        msg[16..24].copy_from_slice(&[2, 24, 0, 0, 0xfe, 2, 0xfd, 1]);
        msg[24..28].copy_from_slice(&0x210u32.to_ne_bytes());
        saved.extend(&msg);
        msg[24..28].copy_from_slice(&0x11u32.to_ne_bytes());
        saved.extend(&msg);
        let out = without_state_flags(&saved);
        assert_eq!(out.len(), saved.len());
        assert_eq!(out[4 + 24..4 + 28], 0x200u32.to_ne_bytes());
        assert_eq!(out[4 + 0x3c + 24..4 + 0x3c + 28], 0u32.to_ne_bytes());
        assert_eq!(out[..4 + 24], saved[..4 + 24]);
        // Cut short: left alone.
        assert_eq!(without_state_flags(&saved[..30]), saved[..30]);
    }
}
