//! A network namespace's firewall, as CRIU built with nftables support keeps it: the whole
//! nftables ruleset (`nft list ruleset`, which holds what iptables-nft made too) in
//! `nftables-N.img`, and the rules of the legacy iptables, when this machine has one, as
//! `iptables-save`/`ip6tables-save` print them in `iptables-N.img`/`ip6tables-N.img` (empty
//! otherwise, so that nothing is restored twice). All raw images; the tools run in the calling
//! thread's network namespace (a child inherits it).

use std::process::Command;

use super::{run, ToolError};

/// The namespace's rules, each as its tool prints them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Firewall {
    pub iptables: Vec<u8>,
    pub ip6tables: Vec<u8>,
    pub nftables: Vec<u8>,
}

/// The legacy (x_tables) variant of `tool` ("iptables-save", ...), if this machine has one:
/// `TOOL-legacy` style names, or the plain tool when it is not the nf_tables one.
fn legacy(family: &str, verb: &str) -> Option<String> {
    let named = format!("{family}-legacy-{verb}");
    if which(&named) {
        return Some(named);
    }
    let plain = format!("{family}-{verb}");
    let version = Command::new(&plain).arg("-V").output().ok()?;
    let text = String::from_utf8_lossy(&version.stdout);
    (version.status.success() && !text.contains("nf_tables")).then_some(plain)
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(program).is_file()))
}

/// The calling thread's namespace's rules.
pub fn dump() -> Result<Firewall, ToolError> {
    let save = |family: &str| match legacy(family, "save") {
        Some(tool) => run(&tool, &[], None),
        None => Ok(Vec::new()),
    };
    Ok(Firewall {
        iptables: save("iptables")?,
        ip6tables: if std::path::Path::new("/proc/sys/net/ipv6").exists() {
            save("ip6tables")?
        } else {
            Vec::new()
        },
        nftables: run("nft", &["list", "ruleset"], None)?,
    })
}

/// Loads `fw` into the calling thread's (fresh) namespace.
pub fn restore(fw: &Firewall) -> Result<(), ToolError> {
    for (family, rules) in [("iptables", &fw.iptables), ("ip6tables", &fw.ip6tables)] {
        if rules.is_empty() {
            continue;
        }
        // Rules saved by a legacy iptables need one here too.
        let tool = legacy(family, "restore").unwrap_or_else(|| format!("{family}-restore"));
        run(&tool, &["-w"], Some(rules))?;
    }
    if !fw.nftables.iter().all(u8::is_ascii_whitespace) {
        run("nft", &["-f", "-"], Some(&fw.nftables))?;
    }
    Ok(())
}
