//! What a network namespace holds besides its devices: its sysctls (`netns-N.img` as CRIU
//! keeps them) and its firewall (`iptables-save`/`ip6tables-save` output and the nftables
//! ruleset, raw images as CRIU's). Every function works on the calling thread's network
//! namespace (the caller joins the tree's first).

pub mod firewall;
pub mod sysctl;
